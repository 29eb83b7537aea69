//! `sirend.toml`: the server's configuration.
//!
//! Every key has a default, so an empty file (or no file at all) is a working server on
//! `0.0.0.0:7453` named `localhost`, storing its data under `./siren-data` with RocksDB. Unknown
//! keys are errors, and every error names the exact key (`limits.queue_ttl_secs: invalid type…`),
//! so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use siren_api::ServerName;

/// The default port of the SRV record and the listener.
pub const DEFAULT_PORT: u16 = 7453;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity, listener, files.
    pub server: ServerSection,
    /// Timeouts and bounds.
    pub limits: Limits,
    /// Which store, and where.
    pub storage: StorageSection,
    /// Authentication mechanisms and their backends.
    pub auth: AuthSection,
    /// Rosters: what happens to messages from non-contacts.
    pub roster: RosterSection,
    /// Federation (server-to-server links).
    pub federation: FederationSection,
    /// Logging.
    pub log: LogSection,
    /// The Prometheus metrics and health listener.
    pub metrics: MetricsSection,
    /// The web listener: the browser client's page and its WebSocket.
    pub web: WebSection,
    /// One domain on several nodes sharing one store.
    pub cluster: ClusterSection,
    /// Plugins loaded from files (`[[plugins]]`), each registered under its name next to the
    /// built-in implementations.
    pub plugins: Vec<PluginSection>,
    /// The directory relative paths are resolved against (the configuration file's); not a
    /// key of the file.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// This server's DNS name; users are `user@name`.
    pub name: ServerName,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The SEK file (32 secret bytes, mode 0600), relative to the configuration file.
    pub key_file: PathBuf,
    /// SEKs retired by a rotation, still answered so pinned peers learn the new key.
    pub retired_key_files: Vec<PathBuf>,
    /// Where the store and other state live, relative to the configuration file.
    pub data_dir: PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            name: ServerName::parse("localhost").unwrap_or_else(|_| unreachable!("valid name")),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            key_file: PathBuf::from("sek.key"),
            retired_key_files: Vec::new(),
            data_dir: PathBuf::from("siren-data"),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame accepted, in bytes.
    pub max_frame: u32,
    /// Seconds allowed for each handshake message.
    pub handshake_timeout_secs: u64,
    /// Seconds allowed from the handshake to a completed login.
    pub auth_timeout_secs: u64,
    /// Seconds of silence after which a session is closed.
    pub idle_timeout_secs: u64,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// How long a queued item waits for its device, in seconds (default 7 days).
    pub queue_ttl_secs: u64,
    /// How long an unused session stays resumable, in seconds (default 30 days).
    pub session_ttl_secs: u64,
    /// How often the sweeper removes expired items and sessions, in seconds.
    pub sweep_interval_secs: u64,
    /// Most queue items delivered to a device and not yet acknowledged.
    pub max_in_flight: usize,
    /// How long a new device waits for one of the user's devices to approve it, in seconds.
    pub approval_timeout_secs: u64,
    /// Most connections that have not logged in yet, per client address (IPv4 address or IPv6
    /// /64).
    pub unauthenticated_per_address: u32,
    /// Most connections that have not logged in yet, server-wide (the rest of
    /// `max_connections` stays free for logged-in sessions).
    pub max_unauthenticated: usize,
    /// New connections per second from one address (bursts of four seconds' worth).
    pub handshakes_per_address_per_second: u32,
    /// Most messages waiting in one device's queue.
    pub max_queue_items_per_device: u64,
    /// Most bytes of messages waiting in one device's queue.
    pub max_queue_bytes_per_device: u64,
    /// Envelopes one user may send per second, and in a burst.
    pub send_envelopes_per_second: u32,
    /// Envelopes one user may send in a burst.
    pub send_envelope_burst: u32,
    /// Bytes of envelopes one user may send per second.
    pub send_bytes_per_second: u64,
    /// Bytes of envelopes one user may send in a burst.
    pub send_byte_burst: u64,
    /// Envelopes of ephemeral signals (`typing`) one session may send per second.
    pub signal_envelopes_per_second: u32,
    /// Envelopes of ephemeral signals one session may send in a burst.
    pub signal_envelope_burst: u32,
    /// Most presence subscriptions of one session (local and remote topics together).
    pub max_subscriptions_per_session: usize,
    /// Device registrations and revocations one user may make per hour (and in a burst).
    pub directory_changes_per_hour: u32,
    /// Most entries in one user's device chain (registrations and revocations ever made).
    pub max_directory_entries: u64,
    /// Most devices of one account waiting for approval at once.
    pub pending_approvals_per_account: usize,
    /// Most devices waiting for approval at once from one client address.
    pub pending_approvals_per_address: usize,
    /// Whether the server also verifies each envelope's signature under its sender's USK
    /// (error 301), as every recipient does; off by default: it costs ~35 µs of CPU per
    /// envelope and proves nothing a recipient does not check itself (PROTOCOL.md §12).
    pub check_envelope_signatures: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: siren_proto::frame::DEFAULT_MAX_FRAME as u32,
            handshake_timeout_secs: 10,
            auth_timeout_secs: 20,
            idle_timeout_secs: 300,
            max_connections: 20_000,
            queue_ttl_secs: 7 * 24 * 3600,
            session_ttl_secs: 30 * 24 * 3600,
            sweep_interval_secs: 60,
            max_in_flight: 256,
            approval_timeout_secs: 300,
            unauthenticated_per_address: 32,
            max_unauthenticated: 5_000,
            handshakes_per_address_per_second: 20,
            max_queue_items_per_device: 20_000,
            max_queue_bytes_per_device: 256 << 20,
            send_envelopes_per_second: 200,
            send_envelope_burst: 2_000,
            send_bytes_per_second: 1 << 20,
            send_byte_burst: 64 << 20,
            signal_envelopes_per_second: 50,
            signal_envelope_burst: 256,
            max_subscriptions_per_session: 5_000,
            directory_changes_per_hour: 60,
            max_directory_entries: 20_000,
            pending_approvals_per_account: 4,
            pending_approvals_per_address: 8,
            check_envelope_signatures: false,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The backend's registered name: `rocksdb` (default) or `memory`.
    pub backend: String,
    /// The backend's directory (default `<data_dir>/store`).
    pub path: Option<PathBuf>,
    /// Settings of the selected backend (`[storage.options]`): each backend documents its keys
    /// and refuses unknown ones.
    pub options: toml::Table,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: "rocksdb".into(),
            path: None,
            options: toml::Table::new(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Mechanisms offered, most preferred first.
    pub mechanisms: Vec<String>,
    /// The credential backend behind `PLAIN`: `password` (argon2id hashes in the store).
    pub credentials: String,
    /// Failed logins allowed per account per minute from addresses that never logged in to it
    /// (many addresses guessing one account; known addresses are not slowed down).
    pub failures_per_account_per_minute: u32,
    /// Failed logins allowed per client address per minute, all accounts together.
    pub failures_per_address_per_minute: u32,
    /// Failed logins allowed per client address and account per minute.
    pub failures_per_address_and_account_per_minute: u32,
    /// Password checks running at once, server-wide (each argon2id check takes its memory
    /// cost); more logins at the same moment get error 207 at once. 0: twice the CPU cores.
    pub max_concurrent_logins: usize,
    /// Argon2id memory cost for new password hashes, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations for new password hashes.
    pub argon2_iterations: u32,
    /// How often the accounts of live sessions are checked again with the credential backend
    /// (deleted, password changed, removed from the directory), in seconds.
    pub recheck_interval_secs: u64,
    /// Settings of mechanisms and credential backends, by their registered name
    /// (`[auth.options.ldap]`, `[auth.options.X509]`).
    pub options: std::collections::BTreeMap<String, toml::Table>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mechanisms: vec!["PLAIN".into()],
            credentials: "password".into(),
            failures_per_account_per_minute: 30,
            failures_per_address_per_minute: 20,
            failures_per_address_and_account_per_minute: 5,
            max_concurrent_logins: 0,
            argon2_memory_kib: siren_auth_password::Cost::RECOMMENDED.memory_kib,
            argon2_iterations: siren_auth_password::Cost::RECOMMENDED.iterations,
            recheck_interval_secs: 60,
            options: Default::default(),
        }
    }
}

/// `[roster]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RosterSection {
    /// A first message from someone not in the recipient's contacts: `request` (delivered after
    /// a contact-request notice), `accept`, or `refuse`.
    pub non_contacts: crate::roster::NonContacts,
}

/// `[federation]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// Whether this server talks to other servers. Off: a lookup, message or subscription for a
    /// user of another server is refused with error 500 (a closed deployment).
    pub enabled: bool,
    /// Which peers: `open` (any), `allowlist` or `denylist` (of `peers`), or the name of a
    /// federation policy plugin. Applies to outbound and inbound links alike.
    pub policy: String,
    /// The servers `allowlist` allows or `denylist` refuses.
    pub peers: Vec<ServerName>,
    /// DNS servers to find peers with (`host:port`); empty: the system's resolver.
    pub dns: Vec<SocketAddr>,
    /// Weakens security: lets a peer's DNS point this server at loopback, private, link-local
    /// and other non-public addresses (only for tests and labs on one machine or LAN). Off: such
    /// targets are refused without a connection.
    pub danger_allow_private_targets: bool,
    /// The longest a request to another server may take, DNS, connection, handshake and answer
    /// together, in seconds; also the deadline of every write on a link.
    pub request_timeout_secs: u64,
    /// Most other servers this server holds undelivered messages for at once.
    pub max_outbox_peers: usize,
    /// Most other servers one user has undelivered messages waiting for at once.
    pub max_outbox_peers_per_user: usize,
    /// How long a DNS answer that a server does not exist (or publishes no usable key or
    /// address) is remembered, in seconds; 0 remembers nothing.
    pub negative_cache_secs: u64,
    /// Link attempts per minute from one address (IPv6: one /64) that name a server with no
    /// pinned key, so that checking its key needs a DNS lookup.
    pub new_peer_hellos_per_address_per_minute: u32,
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            enabled: false,
            policy: "open".into(),
            peers: Vec::new(),
            dns: Vec::new(),
            danger_allow_private_targets: false,
            request_timeout_secs: 10,
            max_outbox_peers: 1000,
            max_outbox_peers_per_user: 32,
            negative_cache_secs: 300,
            new_peer_hellos_per_address_per_minute: 10,
        }
    }
}

/// What a plugin implements.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A credential backend (`[auth] credentials = NAME`).
    Credentials,
    /// An authentication mechanism (`[auth] mechanisms = [NAME]`).
    Mechanism,
    /// A storage engine (`[storage] backend = NAME`).
    Storage,
    /// A federation policy (`[federation] policy = NAME`).
    Federation,
    /// A message filter (sees routing metadata, never payloads).
    MessageFilter,
    /// A directory event hook (observes device additions and revocations).
    DirectoryHook,
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The name the rest of the configuration selects it by.
    pub name: String,
    /// What it implements.
    pub kind: PluginKind,
    /// A native shared library (C ABI, see plugins/native/siren_plugin.h).
    pub native: Option<PathBuf>,
    /// A WebAssembly component (sandboxed, see plugins/wit/).
    pub wasm: Option<PathBuf>,
    /// Memory limit of a wasm plugin instance, in MiB.
    #[serde(default = "default_plugin_memory")]
    pub memory_limit_mib: u64,
    /// CPU deadline of one wasm plugin call, in milliseconds.
    #[serde(default = "default_plugin_deadline")]
    pub deadline_ms: u64,
    /// Settings handed to the plugin as `key = value` strings.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

fn default_plugin_memory() -> u64 {
    64
}

fn default_plugin_deadline() -> u64 {
    100
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A `tracing` filter: `info`, `debug`, `siren_host=debug,info`, …
    pub level: String,
    /// `text` (for people) or `json` (one object per line, the same fields, for log shippers).
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One line per event for people to read, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (the message and the
    /// event's fields) and `span`s.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Whether to serve `/metrics`, `/healthz` and `/readyz` (off by default).
    pub enabled: bool,
    /// Where (loopback by default: metrics are for the operator's Prometheus, not the world).
    pub listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 7455)),
        }
    }
}

/// `[web]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    /// Whether to serve the web client and its WebSocket (on by default, on loopback).
    pub enabled: bool,
    /// Where. Loopback by default: browsers need a secure context (HTTPS) anywhere else, so
    /// off this machine serve it with `tls_cert`/`tls_key` or behind a reverse proxy.
    pub listen: SocketAddr,
    /// Origins (`https://chat.example.com`) whose pages may open the WebSocket. Empty: only the
    /// page's own origin, the one the request's `Host` names.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client: the per-address limits then
    /// count the client's address, not the proxy's.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A PEM certificate chain: serve HTTPS and `wss:` (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The directory of the built browser client (`scripts/build-web.sh`'s output). Unset:
    /// `web-dist` beside the directory of the `sirend` executable (the build's own layout,
    /// `target/web-dist` beside `target/debug/sirend`), or, when that holds none, a page
    /// saying how to build it.
    pub assets: Option<PathBuf>,
}

/// `[cluster]`: this server is one node of several serving one domain. They share the server
/// name, the SEK and one store (PostgreSQL); NATS carries the wake-ups between them
/// ([`crate::cluster`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Run as a node of a cluster.
    pub enabled: bool,
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`; at most 64): in the
    /// log, `sirend status` and the metrics.
    pub node_id: String,
    /// The NATS servers (`nats://host:port`), the first reachable one used; the client
    /// reconnects by itself.
    pub nats: Vec<String>,
    /// How often every live session re-reads its queue, in seconds: a wake-up lost with NATS
    /// (restarted, unreachable) delays a message by at most this long, never loses it.
    pub poll_secs: u64,
    /// The nodes as DNS lists them (`sirend dns-records` prints one SRV record each); clients
    /// try them in priority order and, at `siren init`, keep the others to fall back on.
    pub nodes: Vec<ClusterNode>,
    /// A file holding the token NATS requires (`nats-server --auth`, `authorization { token
    /// }`), if it requires one; relative to the configuration file.
    pub nats_token_file: Option<PathBuf>,
}

/// A node of a cluster as its SRV record names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    /// Its host name (which needs its own A/AAAA records).
    pub host: String,
    /// Its port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// SRV priority: clients try lower numbers first.
    #[serde(default = "default_priority")]
    pub priority: u16,
    /// SRV weight: how clients share out among nodes of one priority.
    #[serde(default)]
    pub weight: u16,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_priority() -> u16 {
    10
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            enabled: false,
            node_id: String::new(),
            nats: Vec::new(),
            poll_secs: 5,
            nodes: Vec::new(),
            nats_token_file: None,
        }
    }
}

/// The default port of the web listener.
pub const DEFAULT_WEB_PORT: u16 = 7454;

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_WEB_PORT)),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            assets: None,
        }
    }
}

/// A configuration error, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{message}", if key.is_empty() { String::new() } else { format!("`{key}`: ") })]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// The dotted key (`limits.queue_ttl_secs`), empty when the problem is not one key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Parses configuration text. `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: file.to_owned(),
            key,
            message,
        };
        let de =
            toml::de::Deserializer::parse(text).map_err(|e| err(String::new(), e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            // toml's message carries a source excerpt; the first line is the sentence.
            let message = e.inner().message().lines().next().unwrap_or("").to_owned();
            err(key, message)
        })?;
        config
            .check()
            .map_err(|(key, message)| err(key.into(), message))?;
        Ok(config)
    }

    /// Reads and parses a file, and resolves relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.base_dir = base.to_owned();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.server.key_file);
        fix(&mut self.server.data_dir);
        if let Some(p) = self.cluster.nats_token_file.as_mut() {
            fix(p);
        }
        self.server.retired_key_files.iter_mut().for_each(fix);
        for plugin in &mut self.plugins {
            if let Some(p) = plugin.native.as_mut() {
                fix(p);
            }
            if let Some(p) = plugin.wasm.as_mut() {
                fix(p);
            }
        }
        if let Some(p) = self.storage.path.as_mut() {
            fix(p);
        }
        if let Some(p) = self.web.tls_cert.as_mut() {
            fix(p);
        }
        if let Some(p) = self.web.tls_key.as_mut() {
            fix(p);
        }
        if let Some(p) = self.web.assets.as_mut() {
            fix(p);
        }
    }

    /// The storage directory.
    pub fn storage_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("store"))
    }

    /// `[cluster]`: a node needs a name, NATS, and a store the other nodes share.
    fn check_cluster(&self) -> Result<(), (&'static str, String)> {
        let c = &self.cluster;
        if !c.enabled {
            return Ok(());
        }
        let id_ok = !c.node_id.is_empty()
            && c.node_id.len() <= 64
            && c.node_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !id_ok {
            return Err((
                "cluster.node_id",
                "name this node: 1 to 64 letters, digits, `-` or `_`, unique in the cluster".into(),
            ));
        }
        if c.nats.is_empty() {
            return Err((
                "cluster.nats",
                "give the NATS servers the nodes share, e.g. [\"nats://127.0.0.1:4222\"]".into(),
            ));
        }
        if let Some(bad) = c
            .nats
            .iter()
            .find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")))
        {
            return Err((
                "cluster.nats",
                format!(
                    "{bad:?} is not a NATS server address (nats://host:port or tls://host:port)"
                ),
            ));
        }
        if c.poll_secs == 0 {
            return Err(("cluster.poll_secs", "must be greater than zero".into()));
        }
        if ["rocksdb", "memory"].contains(&self.storage.backend.as_str()) {
            return Err((
                "storage.backend",
                format!(
                    "a cluster's nodes must share one store, and {:?} keeps its data inside one \
                     process: use \"postgres\"",
                    self.storage.backend
                ),
            ));
        }
        Ok(())
    }

    /// Checks values that parse but make no sense. Names of backends and mechanisms are checked
    /// against the registry when the server is assembled ([`crate::registry`]).
    fn check(&self) -> Result<(), (&'static str, String)> {
        let l = &self.limits;
        let positive = [
            ("limits.handshake_timeout_secs", l.handshake_timeout_secs),
            ("limits.auth_timeout_secs", l.auth_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.queue_ttl_secs", l.queue_ttl_secs),
            ("limits.session_ttl_secs", l.session_ttl_secs),
            ("limits.sweep_interval_secs", l.sweep_interval_secs),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_in_flight", l.max_in_flight as u64),
            ("limits.approval_timeout_secs", l.approval_timeout_secs),
            (
                "limits.unauthenticated_per_address",
                l.unauthenticated_per_address.into(),
            ),
            ("limits.max_unauthenticated", l.max_unauthenticated as u64),
            (
                "limits.handshakes_per_address_per_second",
                l.handshakes_per_address_per_second.into(),
            ),
            (
                "limits.max_queue_items_per_device",
                l.max_queue_items_per_device,
            ),
            (
                "limits.max_queue_bytes_per_device",
                l.max_queue_bytes_per_device,
            ),
            (
                "limits.send_envelopes_per_second",
                l.send_envelopes_per_second.into(),
            ),
            ("limits.send_envelope_burst", l.send_envelope_burst.into()),
            ("limits.send_bytes_per_second", l.send_bytes_per_second),
            ("limits.send_byte_burst", l.send_byte_burst),
            (
                "limits.signal_envelopes_per_second",
                l.signal_envelopes_per_second.into(),
            ),
            (
                "limits.signal_envelope_burst",
                l.signal_envelope_burst.into(),
            ),
            (
                "limits.max_subscriptions_per_session",
                l.max_subscriptions_per_session as u64,
            ),
            (
                "limits.directory_changes_per_hour",
                l.directory_changes_per_hour.into(),
            ),
            ("limits.max_directory_entries", l.max_directory_entries),
            (
                "limits.pending_approvals_per_account",
                l.pending_approvals_per_account as u64,
            ),
            (
                "limits.pending_approvals_per_address",
                l.pending_approvals_per_address as u64,
            ),
            (
                "auth.failures_per_account_per_minute",
                self.auth.failures_per_account_per_minute.into(),
            ),
            (
                "auth.failures_per_address_per_minute",
                self.auth.failures_per_address_per_minute.into(),
            ),
            (
                "auth.failures_per_address_and_account_per_minute",
                self.auth.failures_per_address_and_account_per_minute.into(),
            ),
            (
                "auth.recheck_interval_secs",
                self.auth.recheck_interval_secs,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "must be greater than zero".into()));
            }
        }
        let f = &self.federation;
        let positive = [
            ("federation.request_timeout_secs", f.request_timeout_secs),
            ("federation.max_outbox_peers", f.max_outbox_peers as u64),
            (
                "federation.max_outbox_peers_per_user",
                f.max_outbox_peers_per_user as u64,
            ),
            (
                "federation.new_peer_hellos_per_address_per_minute",
                u64::from(f.new_peer_hellos_per_address_per_minute),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "must be greater than zero".into()));
            }
        }
        if l.max_frame < 4096 || l.max_frame > 64 << 20 {
            return Err((
                "limits.max_frame",
                format!("must be between 4096 and {} bytes", 64 << 20),
            ));
        }
        if self.auth.failures_per_account_per_minute
            <= self.auth.failures_per_address_and_account_per_minute
        {
            return Err((
                "auth.failures_per_account_per_minute",
                "must be greater than `failures_per_address_and_account_per_minute`: otherwise one \
                 address alone could lock an account for everyone else"
                    .into(),
            ));
        }
        if self.web.tls_cert.is_some() != self.web.tls_key.is_some() {
            return Err((
                "web.tls_cert",
                "give both `tls_cert` and `tls_key`, or neither".into(),
            ));
        }
        for origin in &self.web.allowed_origins {
            if !crate::web::origin::is_origin(origin) {
                return Err((
                    "web.allowed_origins",
                    format!(
                        "{origin:?} is not an origin: scheme://host[:port], e.g. \"https://chat.example.com\""
                    ),
                ));
            }
        }
        if self.auth.mechanisms.is_empty() {
            return Err(("auth.mechanisms", "offer at least one mechanism".into()));
        }
        self.check_cluster()?;
        let mut names = std::collections::BTreeSet::new();
        for plugin in &self.plugins {
            if plugin.native.is_some() == plugin.wasm.is_some() {
                return Err((
                    "plugins",
                    format!(
                        "plugin {:?}: give exactly one of `native` (a shared library) or `wasm` (a component)",
                        plugin.name
                    ),
                ));
            }
            if plugin.kind == PluginKind::Federation
                && ["open", "allowlist", "denylist"].contains(&plugin.name.as_str())
            {
                return Err((
                    "plugins",
                    format!(
                        "plugin name {:?} is a built-in federation policy; choose another",
                        plugin.name
                    ),
                ));
            }
            if !names.insert((plugin.kind, plugin.name.clone())) {
                return Err((
                    "plugins",
                    format!("two plugins of one kind are called {:?}", plugin.name),
                ));
            }
        }
        Ok(())
    }

    /// The configuration `sirend init` writes: every key with its default, commented.
    pub fn template(name: &ServerName, listen: SocketAddr, web: SocketAddr) -> String {
        let d = Config::default();
        format!(
            r#"# sirend configuration. Every key is optional; the values shown are the defaults
# except [server] name and listen. `sirend check-config FILE` validates a file.

[server]
name = "{name}"                  # users of this server are user@{name}
listen = "{listen}"
key_file = "sek.key"             # the Server Encryption Key (keep it secret, mode 0600)
retired_key_files = []           # old SEKs during a rotation
data_dir = "siren-data"          # relative paths are relative to this file; mode 0700
                                 # (sirend refuses a data directory other users can read)

[limits]
max_frame = {max_frame}
handshake_timeout_secs = {hs}
auth_timeout_secs = {auth}
idle_timeout_secs = {idle}
max_connections = {conns}
queue_ttl_secs = {ttl}           # undelivered messages expire after this (7 days)
session_ttl_secs = {sttl}        # unused sessions stop being resumable after this (30 days)
sweep_interval_secs = {sweep}
max_in_flight = {inflight}
approval_timeout_secs = {approval}  # a new device waits this long for approval
# Before login: per client address (an IPv4 address or an IPv6 /64; many users behind one NAT
# share one) and server-wide, so anonymous connections cannot take the slots of logged-in ones.
unauthenticated_per_address = {unauth_addr}
max_unauthenticated = {unauth_total}
handshakes_per_address_per_second = {hs_rate}
# What one user can make the server hold and carry.
max_queue_items_per_device = {q_items}  # beyond: error 401, nothing of the send is stored
max_queue_bytes_per_device = {q_bytes}
send_envelopes_per_second = {env_rate}   # per sending user; beyond: error 203
send_envelope_burst = {env_burst}
send_bytes_per_second = {byte_rate}
send_byte_burst = {byte_burst}
signal_envelopes_per_second = {sig_rate}  # typing signals per session; beyond: error 203
signal_envelope_burst = {sig_burst}
max_subscriptions_per_session = {subs}
directory_changes_per_hour = {dir_rate}   # device registrations + revocations per user (a login makes two)
max_directory_entries = {dir_max}
pending_approvals_per_account = {appr_acct}
pending_approvals_per_address = {appr_addr}
# Recipients verify every envelope's signature; the server can too (error 301 to the sender),
# at ~35 µs of CPU per envelope.
check_envelope_signatures = {check_sigs}

[storage]
backend = "rocksdb"              # or "memory" (nothing survives a restart)
# path = "siren-data/store"

[auth]
mechanisms = ["PLAIN"]
credentials = "password"         # argon2id hashes in the store; manage with `sirend user`
# Failed logins per minute: per address (all accounts), per address and account, and per
# account from addresses that never logged in to it. Over a limit: error 203, any password.
failures_per_address_per_minute = {fpi}
failures_per_address_and_account_per_minute = {fpaa}
failures_per_account_per_minute = {fpa}
max_concurrent_logins = {mcl}           # password checks at once; 0 = twice the CPU cores
argon2_memory_kib = {argon2_m}          # cost of new password hashes; a login rehashes older ones
argon2_iterations = {argon2_t}
recheck_interval_secs = {recheck}       # live sessions end within this of `sirend user del`/`passwd`

[roster]
non_contacts = "request"         # or "accept", "refuse": first messages from non-contacts

[federation]
enabled = false                  # a closed deployment: no other servers
policy = "open"                  # or "allowlist", "denylist" (of peers), or a policy plugin's name
peers = []
dns = []                         # DNS servers for finding peers (host:port); [] = the system's
# true weakens security: peers' DNS may then point this server at loopback/private addresses
danger_allow_private_targets = false  # only for tests and labs on one machine or LAN
request_timeout_secs = {req}         # longest wait for another server; also each link write's deadline
max_outbox_peers = {peers}          # other servers with undelivered messages at once
max_outbox_peers_per_user = {user_peers}    # … per user
negative_cache_secs = {neg}          # "no such server" answers from DNS are remembered this long
new_peer_hellos_per_address_per_minute = {hellos}  # links naming an unpinned server, per address

[log]
level = "info"
# "json" for one JSON object per line (log shippers); a change needs a restart.
format = "text"

[web]
enabled = true                   # the browser client at http://{web}/ and its WebSocket
listen = "{web}"
allowed_origins = []             # pages that may open the WebSocket; [] = the page's own origin
trusted_proxies = []             # reverse proxies whose X-Forwarded-For names the client
# Browsers need HTTPS off this machine: give a certificate here, or put a reverse proxy in front
# (docs/web.md).
# tls_cert = "web.crt"
# tls_key = "web.key"
# The built browser client (scripts/build-web.sh); unset: web-dist beside the directory of the
# sirend executable, as cargo builds it. Read at start-up.
# assets = "/usr/share/siren/web"

# Prometheus metrics (/metrics), /healthz and /readyz over HTTP, off unless enabled:
# [metrics]
# enabled = true
# listen = "127.0.0.1:7455"     # loopback by default
"#,
            max_frame = d.limits.max_frame,
            hs = d.limits.handshake_timeout_secs,
            auth = d.limits.auth_timeout_secs,
            idle = d.limits.idle_timeout_secs,
            conns = d.limits.max_connections,
            ttl = d.limits.queue_ttl_secs,
            sttl = d.limits.session_ttl_secs,
            sweep = d.limits.sweep_interval_secs,
            inflight = d.limits.max_in_flight,
            approval = d.limits.approval_timeout_secs,
            unauth_addr = d.limits.unauthenticated_per_address,
            unauth_total = d.limits.max_unauthenticated,
            hs_rate = d.limits.handshakes_per_address_per_second,
            q_items = d.limits.max_queue_items_per_device,
            q_bytes = d.limits.max_queue_bytes_per_device,
            env_rate = d.limits.send_envelopes_per_second,
            env_burst = d.limits.send_envelope_burst,
            byte_rate = d.limits.send_bytes_per_second,
            byte_burst = d.limits.send_byte_burst,
            sig_rate = d.limits.signal_envelopes_per_second,
            sig_burst = d.limits.signal_envelope_burst,
            subs = d.limits.max_subscriptions_per_session,
            dir_rate = d.limits.directory_changes_per_hour,
            dir_max = d.limits.max_directory_entries,
            appr_acct = d.limits.pending_approvals_per_account,
            appr_addr = d.limits.pending_approvals_per_address,
            check_sigs = d.limits.check_envelope_signatures,
            fpa = d.auth.failures_per_account_per_minute,
            fpi = d.auth.failures_per_address_per_minute,
            fpaa = d.auth.failures_per_address_and_account_per_minute,
            mcl = d.auth.max_concurrent_logins,
            argon2_m = d.auth.argon2_memory_kib,
            argon2_t = d.auth.argon2_iterations,
            recheck = d.auth.recheck_interval_secs,
            req = d.federation.request_timeout_secs,
            peers = d.federation.max_outbox_peers,
            user_peers = d.federation.max_outbox_peers_per_user,
            neg = d.federation.negative_cache_secs,
            hellos = d.federation.new_peer_hellos_per_address_per_minute,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn template_parses_to_defaults_with_name_and_listen() {
        let name = ServerName::parse("alpha.test").unwrap();
        let listen: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let web: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let c = Config::parse(&Config::template(&name, listen, web), "t").unwrap();
        assert_eq!(c.web.listen, web);
        assert_eq!(
            c.web,
            WebSection {
                listen: web,
                ..WebSection::default()
            }
        );
        assert_eq!(c.server.name, name);
        assert_eq!(c.server.listen, listen);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.auth, AuthSection::default());
        assert_eq!(c.federation, FederationSection::default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[limits]\nqueue_ttl_secs = \"soon\"\n", "f.toml").unwrap_err();
        assert_eq!(e.key, "limits.queue_ttl_secs");
        assert!(
            e.to_string()
                .starts_with("f.toml: `limits.queue_ttl_secs`: "),
            "{e}"
        );

        let e = Config::parse("[storage]\nbakend = \"rocksdb\"\n", "f").unwrap_err();
        assert_eq!(e.key, "storage.bakend");
        assert!(e.message.contains("unknown field"), "{e}");

        let e = Config::parse("[server]\nname = \"not a name\"\n", "f").unwrap_err();
        assert_eq!(e.key, "server.name");

        let e = Config::parse("[server]\nlisten = \"nowhere\"\n", "f").unwrap_err();
        assert_eq!(e.key, "server.listen");

        let e = Config::parse("[limits]\nidle_timeout_secs = 0\n", "f").unwrap_err();
        assert_eq!(e.key, "limits.idle_timeout_secs");

        let e = Config::parse("[nonsense]\n", "f").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");

        let e = Config::parse("this is not toml", "f").unwrap_err();
        assert_eq!(e.key, "");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let mut c = Config::default();
        c.resolve_paths(Path::new("/etc/siren"));
        assert_eq!(c.server.key_file, Path::new("/etc/siren/sek.key"));
        assert_eq!(c.storage_path(), Path::new("/etc/siren/siren-data/store"));
    }
}
