//! The built-in implementations, by the names the configuration uses.
//!
//! `siren-host` has no backend-specific code beyond this table: each entry turns a configuration
//! into an implementation of a `siren-api` trait. An unknown name is an error that lists the
//! names that exist.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use siren_api::Error;
use siren_api::auth::{AuthMechanism, CredentialBackend};
use siren_api::registry::{Origin, Registry};
use siren_api::storage::Storage;

use crate::config::Config;

/// Opens a store for a configuration.
pub type StorageFactory = fn(&Config) -> Result<Arc<dyn Storage>, Error>;

/// A boxed future (credential backends may need to do work when they start).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds a credential backend over the store.
pub type CredentialFactory =
    fn(&Config, Arc<dyn Storage>) -> BoxFuture<Result<Arc<dyn CredentialBackend>, Error>>;

/// Builds a mechanism over the configured credential backend.
pub type MechanismFactory = fn(&Config, Arc<dyn CredentialBackend>) -> Arc<dyn AuthMechanism>;

/// The interface version of the built-in implementations: they are compiled with this host.
pub const INTERFACE: &str = concat!("siren-api ", env!("CARGO_PKG_VERSION"));

/// Storage backends.
pub fn storage() -> Registry<StorageFactory> {
    let mut r: Registry<StorageFactory> = Registry::new("storage backend");
    let entries: [(&str, StorageFactory); 2] = [
        ("memory", |_| Ok(Arc::new(siren_storage_memory::storage()))),
        ("rocksdb", |config| {
            let path = config.storage_path();
            open_rocksdb(&path)
        }),
    ];
    for (name, factory) in entries {
        // Names in this table are distinct; a duplicate would be a bug caught by the tests.
        let _ = r.register(name, Origin::BuiltIn, factory);
    }
    r
}

fn open_rocksdb(path: &Path) -> Result<Arc<dyn Storage>, Error> {
    let storage = siren_storage_rocksdb::open(path).map_err(|e| {
        Error::new(
            e.code,
            format!(
                "cannot open the RocksDB store at {}: {}",
                path.display(),
                e.message
            ),
        )
    })?;
    Ok(Arc::new(storage))
}

/// Credential backends.
pub fn credentials() -> Registry<CredentialFactory> {
    let mut r: Registry<CredentialFactory> = Registry::new("credential backend");
    let _ = r.register("password", Origin::BuiltIn, |config, storage| {
        let cost = siren_auth_password::Cost {
            memory_kib: config.auth.argon2_memory_kib,
            iterations: config.auth.argon2_iterations,
            parallelism: 1,
        };
        Box::pin(async move {
            let backend = siren_auth_password::PasswordBackend::with_cost(storage, cost).await?;
            Ok(Arc::new(backend) as Arc<dyn CredentialBackend>)
        })
    });
    r
}

/// Authentication mechanisms.
pub fn mechanisms() -> Registry<MechanismFactory> {
    let mut r: Registry<MechanismFactory> = Registry::new("authentication mechanism");
    let _ = r.register("PLAIN", Origin::BuiltIn, |config, credentials| {
        Arc::new(crate::auth::Plain::new(
            config.server.name.clone(),
            credentials,
        ))
    });
    r
}

/// Checks every name in `config` against the registries; the error names the key.
pub fn check_names(config: &Config) -> Result<(), (String, Error)> {
    storage()
        .get(&config.storage.backend)
        .map_err(|e| ("storage.backend".to_owned(), e))?;
    credentials()
        .get(&config.auth.credentials)
        .map_err(|e| ("auth.credentials".to_owned(), e))?;
    let mechanisms = mechanisms();
    for (i, name) in config.auth.mechanisms.iter().enumerate() {
        mechanisms
            .get(name)
            .map_err(|e| (format!("auth.mechanisms[{i}]"), e))?;
    }
    Ok(())
}

/// Opens the configured store.
pub fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    let registry = storage();
    let factory = registry.get(&config.storage.backend)?;
    factory(config)
}

/// What `sirend plugins list` prints: every registered implementation.
pub fn describe() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, origin, _) in storage().entries() {
        out.push(("storage".into(), name.to_owned(), origin.to_string()));
    }
    for (name, origin, _) in credentials().entries() {
        out.push(("credentials".into(), name.to_owned(), origin.to_string()));
    }
    for (name, origin, _) in mechanisms().entries() {
        out.push(("mechanism".into(), name.to_owned(), origin.to_string()));
    }
    out
}

/// Builds the credential backend named in the configuration.
pub async fn open_credentials(
    config: &Config,
    storage: Arc<dyn Storage>,
) -> Result<Arc<dyn CredentialBackend>, Error> {
    let factory = *credentials().get(&config.auth.credentials)?;
    factory(config, storage).await
}

/// Builds the configured mechanisms, in order.
pub fn open_mechanisms(
    config: &Config,
    credentials: Arc<dyn CredentialBackend>,
) -> Result<Vec<Arc<dyn AuthMechanism>>, Error> {
    let registry = mechanisms();
    config
        .auth
        .mechanisms
        .iter()
        .map(|name| {
            let factory = registry.get(name)?;
            Ok(factory(config, credentials.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_api::ErrorCode;

    #[test]
    fn unknown_names_are_reported_with_their_key_and_the_alternatives() {
        let mut c = Config::default();
        c.storage.backend = "mongo".into();
        let (key, e) = check_names(&c).unwrap_err();
        assert_eq!(key, "storage.backend");
        assert!(
            e.message.contains("available: memory, rocksdb"),
            "{}",
            e.message
        );
        assert_eq!(e.code, ErrorCode::Internal);

        let mut c = Config::default();
        c.auth.mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-1".into()];
        let (key, e) = check_names(&c).unwrap_err();
        assert_eq!(key, "auth.mechanisms[1]");
        assert!(e.message.contains("available: PLAIN"), "{}", e.message);

        check_names(&Config::default()).unwrap();
    }
}
