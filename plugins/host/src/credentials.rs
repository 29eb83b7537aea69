//! [`WasmCredentials`]: a credential backend plugin as a [`CredentialBackend`].

use std::sync::Arc;

use async_trait::async_trait;
use siren_api::auth::CredentialBackend;
use siren_api::{Error, Username};

use crate::blocking::off_executor;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{CredentialsKind, Plugin, WasmRuntime};

/// A wasm credential backend (for the host's password mechanisms). It has no user
/// management ([`CredentialBackend::admin`] is `None`). Calls run on tokio's blocking pool.
#[derive(Clone)]
pub struct WasmCredentials {
    plugin: Arc<Plugin<CredentialsKind>>,
}

impl WasmRuntime {
    /// Loads a credential backend plugin (world `credentials-plugin`).
    pub fn credentials(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmCredentials, PluginError> {
        Ok(WasmCredentials {
            plugin: self.load(name, config)?,
        })
    }
}

impl WasmCredentials {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    /// `verify` on the calling thread.
    pub fn verify_blocking(&self, user: &Username, password: &str) -> Result<bool, PluginError> {
        let answer = self.plugin.run("verify", |b, store| {
            b.siren_plugin_credentials()
                .call_verify(store, user.as_str(), password)
        })?;
        answer.map_err(|message| PluginError::Guest {
            name: self.plugin.name.to_string(),
            message,
        })
    }

    /// `user-exists` on the calling thread.
    pub fn user_exists_blocking(&self, user: &Username) -> Result<bool, PluginError> {
        let answer = self.plugin.run("user-exists", |b, store| {
            b.siren_plugin_credentials()
                .call_user_exists(store, user.as_str())
        })?;
        answer.map_err(|message| PluginError::Guest {
            name: self.plugin.name.to_string(),
            message,
        })
    }
}

#[async_trait]
impl CredentialBackend for WasmCredentials {
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error> {
        let (this, user, password) = (self.clone(), user.clone(), password.to_owned());
        Ok(off_executor(move || this.verify_blocking(&user, &password)).await??)
    }

    async fn user_exists(&self, user: &Username) -> Result<bool, Error> {
        let (this, user) = (self.clone(), user.clone());
        Ok(off_executor(move || this.user_exists_blocking(&user)).await??)
    }
}
