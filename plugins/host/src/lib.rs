//! WebAssembly component plugins for Siren, on wasmtime.
//!
//! A plugin is a WebAssembly component built against one world of the WIT package
//! `siren:plugin@0.1.0` (`plugins/wit/siren-plugin.wit`): an auth mechanism, a credential
//! backend, a federation policy, a message filter, a directory hook or a key-value engine.
//! [`WasmRuntime`] loads it from a file and hands back an adapter implementing the matching
//! `siren-api` trait, so the host uses it like a built-in backend:
//!
//! | world | adapter | trait |
//! | --- | --- | --- |
//! | `auth-plugin` | [`WasmAuthMechanism`] | [`AuthMechanism`](siren_api::auth::AuthMechanism) |
//! | `credentials-plugin` | [`WasmCredentials`] | [`CredentialBackend`](siren_api::auth::CredentialBackend) |
//! | `federation-plugin` | [`WasmFederationPolicy`] | [`FederationPolicy`](siren_api::federation::FederationPolicy) |
//! | `filter-plugin` | [`WasmMessageFilter`] | [`MessageFilter`](siren_api::hooks::MessageFilter) |
//! | `directory-plugin` | [`WasmDirectoryHook`] | [`DirectoryHook`](siren_api::hooks::DirectoryHook) |
//! | `kv-plugin` | [`WasmKvEngine`] | [`KvEngine`](siren_api::storage::KvEngine) |
//!
//! ```no_run
//! use siren_api::federation::{Direction, FederationPolicy};
//! use siren_plugins::{WasmPluginConfig, WasmRuntime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = WasmRuntime::new()?;
//! let config = WasmPluginConfig::new("federation-allowlist.wasm").with("peers", "beta.test");
//! let policy = runtime.federation_policy("allowlist", &config)?;
//! let peer = siren_api::ServerName::parse("beta.test")?;
//! println!("{:?}", policy.decide(&peer, Direction::Inbound));
//! # Ok(())
//! # }
//! ```
//!
//! # Loading
//!
//! Loading reads the file (an unreadable or corrupt file is an error naming the path), compiles
//! it (once per distinct file content per runtime), reads the interface version from the
//! component's import and export names and refuses any other than [`INTERFACE_VERSION`]
//! (`plugin X (path) implements siren:plugin@0.2.0; this server speaks 0.1.0`), checks that the
//! component exports the interface of the kind asked for and imports nothing but
//! `siren:plugin/host`, instantiates it, compares the version its `interface-version` function
//! reports, and calls its `init` with the `config` table.
//!
//! # Sandbox
//!
//! * **No WASI, no capabilities**: the only import a plugin gets is `siren:plugin/host`
//!   (logging through `tracing`, target `siren_plugins::guest`, at most 64 lines of 1 KiB per
//!   call). No filesystem, network, clock or randomness; a component importing anything else
//!   is refused at load.
//! * **Memory**: each instance's linear memory is capped at `memory_limit_mib` (default 64);
//!   growth beyond fails (`memory.grow` returns -1) and a guest that then traps fails the call
//!   with "exceeded its memory limit".
//! * **CPU**: each call (and instantiation, and `init`) has a deadline (`deadline_ms`, default
//!   100), enforced by epoch interruption: one ticker thread per runtime advances the engine's
//!   epoch every 10 ms, and a call still running when its deadline passes traps ("call exceeded
//!   its 100 ms deadline"), at most two ticks (20 ms) after the deadline.
//! * **Failure isolation**: a call that traps (panic, deadline, memory) fails alone; the host
//!   goes on. The instance is discarded and a fresh one (with `init` called again) serves the
//!   next call — except for KV engines, whose data lived in the instance: they stay out of
//!   service and say so.
//!
//! # Concurrency
//!
//! Each plugin has one instance behind a mutex: calls from many threads take turns. A policy
//! decision through wasm costs about 0.25 µs (`benches/wasm.rs`), so turns are short; the
//! longest possible wait is one deadline. (An instance per call would cost about 55 µs: a
//! fresh instance and `init` each time, and no state kept between calls.) The async traits (auth, credentials) run their calls on
//! tokio's blocking pool so a slow plugin never stalls the executor.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod bindings;
mod blocking;
mod config;
mod credentials;
mod directory;
mod error;
mod federation;
mod filter;
mod kv;
mod runtime;
mod stats;

pub use auth::WasmAuthMechanism;
pub use config::{
    DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_LIMIT_MIB, MAX_DEADLINE_MS, MAX_MEMORY_LIMIT_MIB,
    WasmPluginConfig,
};
pub use credentials::WasmCredentials;
pub use directory::WasmDirectoryHook;
pub use error::PluginError;
pub use federation::WasmFederationPolicy;
pub use filter::WasmMessageFilter;
pub use kv::WasmKvEngine;
pub use runtime::{
    DEFAULT_EPOCH_TICK, INTERFACE_PACKAGE, INTERFACE_VERSION, PluginInfo, PluginKind, WasmRuntime,
};
pub use stats::{CallCounts, call_counts};
