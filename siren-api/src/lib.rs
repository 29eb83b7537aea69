//! The Siren plugin contract.
//!
//! `siren-api` is what the Siren host (`sirend`), its built-in backends and its plugins agree on:
//! plain data types and one error type, with no IO of any kind. Everything a plugin author needs
//! to name lives here; everything that moves bytes lives elsewhere (`siren-proto` for the wire
//! protocol, `siren-host` for sockets and storage).
//!
//! The crate holds:
//!
//! * [`identity`]: [`ServerName`], [`Username`] and [`Uid`] (`user@server`), parsed once at the
//!   edge ("parse, don't validate") so that every other crate can rely on their invariants;
//! * [`error`]: the stable numeric [`ErrorCode`]s that the protocol carries to peers, and the one
//!   [`Error`] type that plugins return.
//!
//! * [`auth`]: [`AuthMechanism`](auth::AuthMechanism) (SASL-shaped steps) and the
//!   [`CredentialBackend`](auth::CredentialBackend) behind password mechanisms;
//! * [`storage`]: [`Storage`](storage::Storage), the typed stores a server needs, and
//!   [`KvEngine`](storage::KvEngine), the ordered key-value engine from which the
//!   `siren-storage-kv` adapter builds every typed store;
//! * [`federation`]: the [`FederationPolicy`](federation::FederationPolicy) trait;
//! * [`hooks`]: the [`MessageFilter`](hooks::MessageFilter) and
//!   [`DirectoryHook`](hooks::DirectoryHook) a deployment adds to filter or observe;
//! * [`registry`]: implementations by name, as the configuration selects them.
//!
//! # Architecture invariant
//!
//! This crate has no dependency on tokio, RocksDB, wasmtime or any network crate. A plugin
//! author compiles it for any target, including `wasm32-unknown-unknown`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod display;
pub mod error;
pub mod federation;
pub mod hooks;
pub mod identity;
pub mod registry;
pub mod storage;

pub use error::{Error, ErrorCode};
pub use identity::{IdentityError, ServerName, Uid, Username};
