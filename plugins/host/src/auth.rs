//! [`WasmAuthMechanism`]: an authentication mechanism plugin as an [`AuthMechanism`].

use std::sync::Arc;

use async_trait::async_trait;
use siren_api::auth::{AuthContext, AuthExchange, AuthMechanism, AuthStep};
use siren_api::{Error, Username};
use wasmtime::component::ResourceAny;

use crate::bindings::auth::exports::siren::plugin::auth_mechanism as wit;
use crate::blocking::off_executor;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{AuthKind, Plugin, WasmRuntime};

/// Longest mechanism name accepted (SASL's limit).
const MAX_MECHANISM_NAME: usize = 20;

/// A wasm authentication mechanism. Each login attempt is one `exchange` resource in the
/// plugin, made on the attempt's first step and dropped with the attempt. Steps run on tokio's
/// blocking pool. If the plugin instance is replaced (after a trap), attempts in progress fail
/// and new ones start on the fresh instance.
pub struct WasmAuthMechanism {
    plugin: Arc<Plugin<AuthKind>>,
    mechanism: String,
}

impl WasmRuntime {
    /// Loads an auth mechanism plugin (world `auth-plugin`). Its mechanism name is read once
    /// and must be 1 to 20 characters of `A-Z 0-9 - _` (SASL style).
    pub fn auth_mechanism(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmAuthMechanism, PluginError> {
        let plugin = self.load::<AuthKind>(name, config)?;
        let mechanism = plugin.run("name", |b, store| {
            b.siren_plugin_auth_mechanism().call_name(store)
        })?;
        let valid = !mechanism.is_empty()
            && mechanism.len() <= MAX_MECHANISM_NAME
            && mechanism
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if !valid {
            return Err(PluginError::Contract {
                name: name.to_owned(),
                message: format!(
                    "mechanism name {mechanism:?} is not 1 to {MAX_MECHANISM_NAME} characters \
                     of A-Z, 0-9, '-' and '_'"
                ),
            });
        }
        Ok(WasmAuthMechanism { plugin, mechanism })
    }
}

impl AuthMechanism for WasmAuthMechanism {
    fn name(&self) -> &str {
        &self.mechanism
    }

    fn begin(&self, ctx: AuthContext) -> Box<dyn AuthExchange> {
        Box::new(WasmAuthExchange {
            plugin: self.plugin.clone(),
            pending: Some(ctx),
            handle: None,
        })
    }
}

/// One login attempt: the context until the first step, then the plugin's resource.
struct WasmAuthExchange {
    plugin: Arc<Plugin<AuthKind>>,
    pending: Option<AuthContext>,
    handle: Option<(u64, ResourceAny)>,
}

impl WasmAuthExchange {
    /// One step, on the calling thread: begins the exchange in the plugin first if needed.
    /// Returns the handle (to drop later) even when the step failed.
    fn step_blocking(
        plugin: &Plugin<AuthKind>,
        pending: Option<AuthContext>,
        handle: Option<(u64, ResourceAny)>,
        response: &[u8],
    ) -> (
        Option<(u64, ResourceAny)>,
        Result<wit::AuthStep, PluginError>,
    ) {
        let handle = match (handle, pending) {
            (Some(handle), _) => handle,
            (None, Some(ctx)) => {
                let ctx = wit::AuthContext {
                    server: ctx.server.to_string(),
                    peer: ctx.peer.map(|ip| ip.to_string()),
                    channel_binding: ctx.channel_binding.to_vec(),
                    device_key: ctx.device_key.to_vec(),
                };
                match plugin.call(None, "begin", |b, store| {
                    b.siren_plugin_auth_mechanism().call_begin(store, &ctx)
                }) {
                    Ok((resource, generation)) => (generation, resource),
                    Err(e) => return (None, Err(e)),
                }
            }
            (None, None) => {
                let e = PluginError::Contract {
                    name: plugin.name.to_string(),
                    message: "step after the exchange failed".to_owned(),
                };
                return (None, Err(e));
            }
        };
        let step = plugin
            .call(Some(handle.0), "exchange.step", |b, store| {
                b.siren_plugin_auth_mechanism()
                    .exchange()
                    .call_step(store, handle.1, response)
            })
            .and_then(|(step, _)| {
                step.map_err(|message| PluginError::Guest {
                    name: plugin.name.to_string(),
                    message,
                })
            });
        (Some(handle), step)
    }
}

#[async_trait]
impl AuthExchange for WasmAuthExchange {
    async fn step(&mut self, response: &[u8]) -> Result<AuthStep, Error> {
        let plugin = self.plugin.clone();
        let (pending, handle, response) = (self.pending.take(), self.handle, response.to_vec());
        let (handle, step) =
            off_executor(move || Self::step_blocking(&plugin, pending, handle, &response)).await?;
        self.handle = handle;
        match step? {
            wit::AuthStep::Challenge(challenge) => Ok(AuthStep::Challenge(challenge)),
            wit::AuthStep::Success(user) => match Username::parse(&user) {
                Ok(user) => Ok(AuthStep::Success(user)),
                Err(e) => Err(PluginError::Contract {
                    name: self.plugin.name.to_string(),
                    message: format!("success names an invalid username {user:?}: {e}"),
                }
                .into()),
            },
            wit::AuthStep::Failure(attempted) => Ok(AuthStep::Failure {
                attempted: attempted.and_then(|u| Username::parse(&u).ok()),
            }),
        }
    }
}

impl Drop for WasmAuthExchange {
    fn drop(&mut self) {
        let Some((generation, resource)) = self.handle.take() else {
            return;
        };
        let plugin = self.plugin.clone();
        let drop_resource = move || {
            // A replaced instance took the resource with it: nothing to drop then.
            let _ = plugin.call(Some(generation), "exchange drop", |_, store| {
                resource.resource_drop(store)
            });
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(drop_resource);
            }
            Err(_) => drop_resource(),
        }
    }
}
