//! The built-in implementations, by the names the configuration uses.
//!
//! `siren-host` has no backend-specific code beyond this table: each entry turns a configuration
//! into an implementation of a `siren-api` trait. An unknown name is an error that lists the
//! names that exist.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use siren_api::auth::{AuthMechanism, CredentialBackend};
use siren_api::federation::{Decision, Direction, FederationPolicy};
use siren_api::registry::{Origin, Registry};
use siren_api::storage::Storage;
use siren_api::{Error, ErrorCode, ServerName};

use crate::config::{Config, PluginKind, PluginSection};

/// A boxed future (backends may need to connect or migrate when they open).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What opening a backend yields.
pub type Opened<'a, T> = BoxFuture<'a, Result<Arc<T>, Error>>;

/// Opens a store.
pub type OpenStorage = for<'a> fn(&'a Config) -> Opened<'a, dyn Storage>;

/// Builds a credential backend (given its registered name and the store).
pub type OpenCredentials =
    for<'a> fn(&'a Config, &'a str, Arc<dyn Storage>) -> Opened<'a, dyn CredentialBackend>;

/// Builds a mechanism (given its registered name and the credential backend).
pub type OpenMechanism =
    fn(&Config, &str, Arc<dyn CredentialBackend>) -> Result<Arc<dyn AuthMechanism>, Error>;

/// A storage backend: how to check its settings and how to open it.
#[derive(Clone, Copy)]
pub struct StorageEntry {
    /// Checks `[storage.options]` without opening anything (`sirend check-config`).
    pub check: fn(&Config) -> Result<(), Error>,
    /// Opens the store.
    pub open: OpenStorage,
}

/// A credential backend (behind `PLAIN`): how to check its settings and how to build it.
/// Both get the name it is registered under (a plugin finds its `[[plugins]]` entry by it).
#[derive(Clone, Copy)]
pub struct CredentialEntry {
    /// Checks `[auth.options.<name>]`.
    pub check: fn(&Config, &str) -> Result<(), Error>,
    /// Builds the backend over the store.
    pub open: OpenCredentials,
}

/// An authentication mechanism: how to check its settings and how to build it.
#[derive(Clone, Copy)]
pub struct MechanismEntry {
    /// Checks `[auth.options.<NAME>]`.
    pub check: fn(&Config) -> Result<(), Error>,
    /// Builds the mechanism (given the configured credential backend, which it may ignore).
    pub open: OpenMechanism,
}

/// The interface version of the built-in implementations: they are compiled with this host.
pub const INTERFACE: &str = concat!("siren-api ", env!("CARGO_PKG_VERSION"));

/// Reads a backend's settings from its options table; errors name the full key
/// (`storage.options.url: missing field`).
pub fn options<T: DeserializeOwned>(table: &toml::Table, key: &str) -> Result<T, Error> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            key.to_owned()
        } else {
            format!("{key}.{path}")
        };
        Error::new(ErrorCode::Internal, format!("`{at}`: {}", e.inner()))
    })
}

/// The options table of an auth mechanism or credential backend (empty if absent).
pub fn auth_options(config: &Config, name: &str) -> toml::Table {
    config.auth.options.get(name).cloned().unwrap_or_default()
}

/// A backend without settings refuses any.
fn no_options(table: &toml::Table, key: &str) -> Result<(), Error> {
    match table.keys().next() {
        None => Ok(()),
        Some(k) => Err(Error::new(
            ErrorCode::Internal,
            format!("`{key}.{k}`: this backend has no settings"),
        )),
    }
}

/// Storage backends.
pub fn storage(config: &Config) -> Registry<StorageEntry> {
    let mut r: Registry<StorageEntry> = Registry::new("storage backend");
    let entries: [(&str, StorageEntry); 3] = [
        (
            "memory",
            StorageEntry {
                check: |c| no_options(&c.storage.options, "storage.options"),
                open: open_memory,
            },
        ),
        (
            "rocksdb",
            StorageEntry {
                check: |c| no_options(&c.storage.options, "storage.options"),
                open: open_rocksdb,
            },
        ),
        (
            "postgres",
            StorageEntry {
                check: |c| {
                    options::<siren_storage_postgres::PgConfig>(
                        &c.storage.options,
                        "storage.options",
                    )
                    .map(drop)
                },
                open: open_postgres,
            },
        ),
    ];
    for (name, entry) in entries {
        // Names in this table are distinct; a duplicate would be a bug caught by the tests.
        let _ = r.register(name, Origin::BuiltIn, entry);
    }
    for plugin in plugins_of(config, PluginKind::Storage) {
        let entry = StorageEntry {
            check: |_| Ok(()),
            open: open_wasm_storage,
        };
        let _ = r.register(&plugin.name, plugin_origin(plugin), entry);
    }
    r
}

/// The process's one wasm engine (its epoch ticker thread starts with it).
fn wasm_runtime() -> Result<&'static siren_plugins::WasmRuntime, Error> {
    static RUNTIME: std::sync::OnceLock<Result<siren_plugins::WasmRuntime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| siren_plugins::WasmRuntime::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot start the wasm engine: {e}"),
            )
        })
}

/// Where a `[[plugins]]` entry comes from.
fn plugin_origin(plugin: &PluginSection) -> Origin {
    match (&plugin.native, &plugin.wasm) {
        (Some(path), _) => Origin::Plugin {
            path: path.display().to_string(),
            interface: format!("native-abi-{}", siren_plugin_native::abi::ABI_VERSION),
        },
        (None, Some(path)) => Origin::Plugin {
            path: path.display().to_string(),
            interface: format!(
                "{}@{}",
                siren_plugins::INTERFACE_PACKAGE,
                siren_plugins::INTERFACE_VERSION
            ),
        },
        (None, None) => Origin::BuiltIn,
    }
}

/// The wasm settings of a `[[plugins]]` entry.
fn wasm_config(plugin: &PluginSection) -> Result<siren_plugins::WasmPluginConfig, Error> {
    let Some(path) = plugin.wasm.clone() else {
        return Err(Error::new(
            ErrorCode::Internal,
            format!("plugin {:?} is not a wasm component", plugin.name),
        ));
    };
    let memory = u32::try_from(plugin.memory_limit_mib).unwrap_or(u32::MAX);
    let mut config =
        siren_plugins::WasmPluginConfig::new(path).with_limits(memory, plugin.deadline_ms);
    config.config = plugin.config.clone();
    Ok(config)
}

fn open_wasm_storage(config: &Config) -> BoxFuture<'_, Result<Arc<dyn Storage>, Error>> {
    Box::pin(async move {
        let name = config.storage.backend.as_str();
        let section = plugin_section(config, PluginKind::Storage, name)?;
        let engine = wasm_runtime()?.kv_engine(name, &wasm_config(section)?)?;
        Ok(Arc::new(siren_storage_kv::KvStorage::new(engine)) as Arc<dyn Storage>)
    })
}

fn open_memory(_: &Config) -> BoxFuture<'_, Result<Arc<dyn Storage>, Error>> {
    Box::pin(async { Ok(Arc::new(siren_storage_memory::storage()) as Arc<dyn Storage>) })
}

fn open_rocksdb(config: &Config) -> BoxFuture<'_, Result<Arc<dyn Storage>, Error>> {
    let path = config.storage_path();
    Box::pin(async move {
        let storage = siren_storage_rocksdb::open(&path).map_err(|e| {
            Error::new(
                e.code,
                format!(
                    "cannot open the RocksDB store at {}: {}",
                    path.display(),
                    e.message
                ),
            )
        })?;
        Ok(Arc::new(storage) as Arc<dyn Storage>)
    })
}

fn open_postgres(config: &Config) -> BoxFuture<'_, Result<Arc<dyn Storage>, Error>> {
    Box::pin(async move {
        let pg: siren_storage_postgres::PgConfig =
            options(&config.storage.options, "storage.options")?;
        let storage = siren_storage_postgres::open(&pg).await?;
        Ok(Arc::new(storage) as Arc<dyn Storage>)
    })
}

/// Credential backends: the built-in ones and the configuration's credential plugins.
pub fn credentials(config: &Config) -> Registry<CredentialEntry> {
    let mut r: Registry<CredentialEntry> = Registry::new("credential backend");
    let _ = r.register(
        "password",
        Origin::BuiltIn,
        CredentialEntry {
            check: |c, _| no_options(&auth_options(c, "password"), "auth.options.password"),
            open: open_password,
        },
    );
    let _ = r.register(
        "ldap",
        Origin::BuiltIn,
        CredentialEntry {
            check: |c, _| ldap_backend(c).map(drop),
            open: |c, _, _| {
                Box::pin(
                    async move { Ok(Arc::new(ldap_backend(c)?) as Arc<dyn CredentialBackend>) },
                )
            },
        },
    );
    for plugin in plugins_of(config, PluginKind::Credentials) {
        let entry = CredentialEntry {
            check: |_, _| Ok(()),
            open: if plugin.native.is_some() {
                open_native_credentials
            } else {
                open_wasm_credentials
            },
        };
        // A plugin named like a built-in is refused when registered: the built-in stays.
        let _ = r.register(&plugin.name, plugin_origin(plugin), entry);
    }
    r
}

/// The LDAP backend of `[auth.options.ldap]` (validated; nothing is contacted yet).
fn ldap_backend(config: &Config) -> Result<siren_auth_ldap::LdapBackend, Error> {
    let settings: siren_auth_ldap::LdapConfig =
        options(&auth_options(config, "ldap"), "auth.options.ldap")?;
    siren_auth_ldap::LdapBackend::new(settings.relative_to(&config.base_dir))
}

/// The certificate mechanism of `[auth.options.X509]` (reads the CA file).
fn x509_mechanism(config: &Config) -> Result<siren_auth_certificate::CertMechanism, Error> {
    let settings: siren_auth_certificate::CertConfig =
        options(&auth_options(config, "X509"), "auth.options.X509")?;
    siren_auth_certificate::CertMechanism::new(
        &settings,
        &config.base_dir,
        config.server.name.clone(),
    )
}

/// The configuration's plugins of one kind.
fn plugins_of(config: &Config, kind: PluginKind) -> impl Iterator<Item = &PluginSection> {
    config.plugins.iter().filter(move |p| p.kind == kind)
}

/// The `[[plugins]]` entry of `kind` called `name`.
fn plugin_section<'a>(
    config: &'a Config,
    kind: PluginKind,
    name: &str,
) -> Result<&'a PluginSection, Error> {
    plugins_of(config, kind)
        .find(|p| p.name == name)
        .ok_or_else(|| Error::new(ErrorCode::Internal, format!("no plugin called {name:?}")))
}

fn open_native_credentials<'a>(
    config: &'a Config,
    name: &'a str,
    _: Arc<dyn Storage>,
) -> BoxFuture<'a, Result<Arc<dyn CredentialBackend>, Error>> {
    Box::pin(async move {
        let section = plugin_section(config, PluginKind::Credentials, name)?;
        let Some(path) = section.native.clone() else {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("plugin {name:?} is not native"),
            ));
        };
        let native = siren_plugin_native::NativePluginConfig {
            path,
            config: section.config.clone(),
        };
        let loaded = siren_plugin_native::load(&native, &config.base_dir)?;
        tracing::info!(
            plugin = name,
            path = %loaded.path().display(),
            abi = loaded.abi_version(),
            "loaded a native credential plugin"
        );
        Ok(Arc::new(loaded) as Arc<dyn CredentialBackend>)
    })
}

fn open_wasm_credentials<'a>(
    config: &'a Config,
    name: &'a str,
    _: Arc<dyn Storage>,
) -> BoxFuture<'a, Result<Arc<dyn CredentialBackend>, Error>> {
    Box::pin(async move {
        let section = plugin_section(config, PluginKind::Credentials, name)?;
        let loaded = wasm_runtime()?.credentials(name, &wasm_config(section)?)?;
        Ok(Arc::new(loaded) as Arc<dyn CredentialBackend>)
    })
}

fn open_password<'a>(
    config: &'a Config,
    _: &'a str,
    storage: Arc<dyn Storage>,
) -> BoxFuture<'a, Result<Arc<dyn CredentialBackend>, Error>> {
    let cost = siren_auth_password::Cost {
        memory_kib: config.auth.argon2_memory_kib,
        iterations: config.auth.argon2_iterations,
        parallelism: 1,
    };
    Box::pin(async move {
        let backend = match password_choice_key(config) {
            Some(key) => {
                siren_auth_password::PasswordBackend::with_cost_and_key(storage, cost, key).await?
            }
            None => siren_auth_password::PasswordBackend::with_cost(storage, cost).await?,
        };
        Ok(Arc::new(backend) as Arc<dyn CredentialBackend>)
    })
}

/// The key the password backend chooses the cost of unknown users with: derived from the SEK,
/// so the choice for a name survives restarts (and clients cannot compute it). `None` when the
/// key file cannot be read (a `sirend user` command before the first start), which only ever
/// checks passwords it just set.
fn password_choice_key(config: &Config) -> Option<[u8; 32]> {
    use sha2::{Digest as _, Sha256};
    let sek = crate::keyfile::read(&config.server.key_file).ok()?;
    Some(
        Sha256::new()
            .chain_update(b"siren/v1/password-dummy-cost-key")
            .chain_update(sek.to_bytes().as_slice())
            .finalize()
            .into(),
    )
}

/// Authentication mechanisms.
pub fn mechanisms(config: &Config) -> Registry<MechanismEntry> {
    let mut r: Registry<MechanismEntry> = Registry::new("authentication mechanism");
    let _ = r.register(
        "PLAIN",
        Origin::BuiltIn,
        MechanismEntry {
            check: |c| no_options(&auth_options(c, "PLAIN"), "auth.options.PLAIN"),
            open: |config, _, credentials| {
                Ok(Arc::new(crate::auth::Plain::new(
                    config.server.name.clone(),
                    credentials,
                )))
            },
        },
    );
    let _ = r.register(
        "X509",
        Origin::BuiltIn,
        MechanismEntry {
            check: |c| x509_mechanism(c).map(drop),
            open: |c, _, _| Ok(Arc::new(x509_mechanism(c)?)),
        },
    );
    for plugin in plugins_of(config, PluginKind::Mechanism) {
        let entry = MechanismEntry {
            check: |_| Ok(()),
            open: |config, name, _| {
                let section = plugin_section(config, PluginKind::Mechanism, name)?;
                let loaded = wasm_runtime()?.auth_mechanism(name, &wasm_config(section)?)?;
                Ok(Arc::new(loaded) as Arc<dyn AuthMechanism>)
            },
        };
        let _ = r.register(&plugin.name, plugin_origin(plugin), entry);
    }
    r
}

/// Checks every name in `config` against the registries, and each selected backend's settings;
/// the error names the key.
pub fn check_names(config: &Config) -> Result<(), (String, Error)> {
    let policy = config.federation.policy.as_str();
    if !["open", "allowlist", "denylist"].contains(&policy)
        && !plugins_of(config, PluginKind::Federation).any(|p| p.name == policy)
    {
        return Err((
            "federation.policy".to_owned(),
            Error::new(
                ErrorCode::Internal,
                format!(
                    "unknown policy {policy:?}; available: open, allowlist, denylist, or a federation plugin's name"
                ),
            ),
        ));
    }
    let storage = storage(config);
    let entry = storage
        .get(&config.storage.backend)
        .map_err(|e| ("storage.backend".to_owned(), e))?;
    (entry.check)(config).map_err(|e| ("storage.options".to_owned(), e))?;
    let credentials = credentials(config);
    let entry = credentials
        .get(&config.auth.credentials)
        .map_err(|e| ("auth.credentials".to_owned(), e))?;
    (entry.check)(config, &config.auth.credentials).map_err(|e| ("auth.options".to_owned(), e))?;
    let mechanisms = mechanisms(config);
    for (i, name) in config.auth.mechanisms.iter().enumerate() {
        let entry = mechanisms
            .get(name)
            .map_err(|e| (format!("auth.mechanisms[{i}]"), e))?;
        (entry.check)(config).map_err(|e| ("auth.options".to_owned(), e))?;
    }
    for name in config.auth.options.keys() {
        let known = credentials
            .names()
            .chain(mechanisms.names())
            .any(|n| n == name);
        if !known {
            return Err((
                format!("auth.options.{name}"),
                Error::new(
                    ErrorCode::Internal,
                    format!(
                        "no mechanism or credential backend is called {name:?}; available: {}",
                        credentials
                            .names()
                            .chain(mechanisms.names())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            ));
        }
    }
    Ok(())
}

/// Loads every `[[plugins]]` entry once, so a missing file, a corrupt component, a wrong
/// interface or ABI version, or a plugin of another kind than declared stops the server at
/// start-up with an error naming the plugin — not at the first login that needs it.
pub fn check_plugins(config: &Config) -> Result<(), Error> {
    for plugin in &config.plugins {
        let named =
            |e: Error| Error::new(e.code, format!("plugin {:?}: {}", plugin.name, e.message));
        match (&plugin.native, &plugin.wasm) {
            (Some(path), _) => {
                if plugin.kind != PluginKind::Credentials {
                    return Err(named(Error::new(
                        ErrorCode::Internal,
                        "native plugins implement credential backends only (kind = \"credentials\")",
                    )));
                }
                let native = siren_plugin_native::NativePluginConfig {
                    path: path.clone(),
                    config: plugin.config.clone(),
                };
                siren_plugin_native::load(&native, &config.base_dir).map_err(named)?;
            }
            (None, Some(path)) => {
                let info = wasm_runtime()?
                    .inspect(&plugin.name, path)
                    .map_err(|e| named(e.into()))?;
                let wanted = match plugin.kind {
                    PluginKind::Credentials => siren_plugins::PluginKind::Credentials,
                    PluginKind::Mechanism => siren_plugins::PluginKind::AuthMechanism,
                    PluginKind::Storage => siren_plugins::PluginKind::KvEngine,
                    PluginKind::Federation => siren_plugins::PluginKind::FederationPolicy,
                    PluginKind::MessageFilter => siren_plugins::PluginKind::MessageFilter,
                    PluginKind::DirectoryHook => siren_plugins::PluginKind::DirectoryHook,
                };
                if !info.kinds.contains(&wanted) {
                    return Err(named(Error::new(
                        ErrorCode::Internal,
                        format!("{} is not a {wanted:?} plugin", path.display()),
                    )));
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

/// A built-in policy: every peer, or only (or all but) the listed ones.
struct ListPolicy {
    name: &'static str,
    peers: Vec<ServerName>,
    allow_listed: bool,
}

impl FederationPolicy for ListPolicy {
    fn name(&self) -> &str {
        self.name
    }

    fn decide(&self, peer: &ServerName, _: Direction) -> Decision {
        let listed = self.peers.contains(peer);
        if listed == self.allow_listed {
            Decision::Allow
        } else if self.allow_listed {
            Decision::Deny(format!("{peer} is not in the allowlist"))
        } else {
            Decision::Deny(format!("{peer} is in the denylist"))
        }
    }

    fn decides_at_once(&self) -> bool {
        true
    }
}

/// The federation policy `[federation] policy` names: `open`, `allowlist`, `denylist`, or a
/// `kind = "federation"` plugin.
pub fn open_federation_policy(config: &Config) -> Result<Arc<dyn FederationPolicy>, Error> {
    let f = &config.federation;
    let list = |name, allow_listed| -> Arc<dyn FederationPolicy> {
        Arc::new(ListPolicy {
            name,
            peers: f.peers.clone(),
            allow_listed,
        })
    };
    match f.policy.as_str() {
        // `open` is a denylist with nothing in it.
        "open" => Ok(list("open", false)),
        "allowlist" => Ok(list("allowlist", true)),
        "denylist" => Ok(list("denylist", false)),
        name => match plugins_of(config, PluginKind::Federation).find(|p| p.name == name) {
            Some(section) => {
                let loaded = wasm_runtime()?.federation_policy(name, &wasm_config(section)?)?;
                Ok(Arc::new(loaded))
            }
            None => Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "`federation.policy`: unknown policy {name:?}; available: open, allowlist, denylist{}",
                    plugins_of(config, PluginKind::Federation)
                        .map(|p| format!(", {}", p.name))
                        .collect::<String>()
                ),
            )),
        },
    }
}

/// Every message filter of the configuration (`kind = "message_filter"`), in order.
pub fn open_filters(
    config: &Config,
) -> Result<Vec<Arc<dyn siren_api::hooks::MessageFilter>>, Error> {
    plugins_of(config, PluginKind::MessageFilter)
        .map(|p| {
            let loaded = wasm_runtime()?.message_filter(&p.name, &wasm_config(p)?)?;
            Ok(Arc::new(loaded) as Arc<dyn siren_api::hooks::MessageFilter>)
        })
        .collect()
}

/// Every directory hook of the configuration (`kind = "directory_hook"`), in order.
pub fn open_directory_hooks(
    config: &Config,
) -> Result<Vec<Arc<dyn siren_api::hooks::DirectoryHook>>, Error> {
    plugins_of(config, PluginKind::DirectoryHook)
        .map(|p| {
            let loaded = wasm_runtime()?.directory_hook(&p.name, &wasm_config(p)?)?;
            Ok(Arc::new(loaded) as Arc<dyn siren_api::hooks::DirectoryHook>)
        })
        .collect()
}

/// Opens the configured store.
pub async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    let entry = *storage(config).get(&config.storage.backend)?;
    (entry.check)(config)?;
    (entry.open)(config).await
}

/// Opens the store named `backend` with `options` in place of the configured one (for
/// `sirend migrate-store`).
pub async fn open_storage_as(
    config: &Config,
    backend: &str,
    options: toml::Table,
    path: Option<std::path::PathBuf>,
) -> Result<Arc<dyn Storage>, Error> {
    let mut config = config.clone();
    config.storage.backend = backend.to_owned();
    config.storage.options = options;
    if path.is_some() {
        config.storage.path = path;
    }
    open_storage(&config).await
}

/// What `sirend plugins list` prints: every registered implementation.
pub fn describe(config: &Config) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, origin, _) in storage(config).entries() {
        out.push(("storage".into(), name.to_owned(), describe_origin(origin)));
    }
    for (name, origin, _) in credentials(config).entries() {
        out.push((
            "credentials".into(),
            name.to_owned(),
            describe_origin(origin),
        ));
    }
    for (name, origin, _) in mechanisms(config).entries() {
        out.push(("mechanism".into(), name.to_owned(), describe_origin(origin)));
    }
    for policy in ["open", "allowlist", "denylist"] {
        out.push((
            "federation".into(),
            policy.to_owned(),
            describe_origin(&Origin::BuiltIn),
        ));
    }
    for (kind, label) in [
        (PluginKind::Federation, "federation"),
        (PluginKind::MessageFilter, "filter"),
        (PluginKind::DirectoryHook, "hook"),
    ] {
        for plugin in plugins_of(config, kind) {
            out.push((
                label.into(),
                plugin.name.clone(),
                describe_origin(&plugin_origin(plugin)),
            ));
        }
    }
    out
}

fn describe_origin(origin: &Origin) -> String {
    match origin {
        Origin::BuiltIn => format!("built-in (interface {INTERFACE})"),
        plugin => plugin.to_string(),
    }
}

/// Builds the credential backend named in the configuration.
pub async fn open_credentials(
    config: &Config,
    storage: Arc<dyn Storage>,
) -> Result<Arc<dyn CredentialBackend>, Error> {
    let name = config.auth.credentials.as_str();
    let entry = *credentials(config).get(name)?;
    (entry.check)(config, name)?;
    (entry.open)(config, name, storage).await
}

/// Builds the configured mechanisms, in order.
pub fn open_mechanisms(
    config: &Config,
    credentials: Arc<dyn CredentialBackend>,
) -> Result<Vec<Arc<dyn AuthMechanism>>, Error> {
    let registry = mechanisms(config);
    config
        .auth
        .mechanisms
        .iter()
        .map(|name| {
            let entry = registry.get(name)?;
            (entry.check)(config)?;
            (entry.open)(config, name, credentials.clone())
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
            e.message.contains("available: memory, postgres, rocksdb"),
            "{}",
            e.message
        );
        assert_eq!(e.code, ErrorCode::Internal);

        let mut c = Config::default();
        c.auth.mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-1".into()];
        let (key, e) = check_names(&c).unwrap_err();
        assert_eq!(key, "auth.mechanisms[1]");
        assert!(
            e.message.contains("available: PLAIN, X509"),
            "{}",
            e.message
        );

        check_names(&Config::default()).unwrap();

        let c = Config::parse("[storage.options]\nurl = \"x\"\n", "t").unwrap();
        let (key, e) = check_names(&c).unwrap_err();
        assert_eq!(key, "storage.options");
        assert!(e.message.contains("`storage.options.url`"), "{}", e.message);

        let c = Config::parse("[auth.options.ldapp]\nurl = \"x\"\n", "t").unwrap();
        let (key, e) = check_names(&c).unwrap_err();
        assert_eq!(key, "auth.options.ldapp");
        assert!(
            e.message.contains("available: ldap, password, PLAIN, X509"),
            "{}",
            e.message
        );
    }
}
