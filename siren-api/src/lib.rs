//! The Siren plugin contract.
//!
//! `siren-api` is what the Siren host (`sirend`), its built-in backends and its plugins agree on:
//! plain data types and one error type, with no IO of any kind. Everything a plugin author needs
//! to name lives here; everything that moves bytes lives elsewhere (`siren-proto` for the wire
//! protocol, `siren-host` for sockets and storage).
//!
//! Today the crate holds:
//!
//! * [`identity`]: [`ServerName`], [`Username`] and [`Uid`] (`user@server`), parsed once at the
//!   edge ("parse, don't validate") so that every other crate can rely on their invariants;
//! * [`error`]: the stable numeric [`ErrorCode`]s that the protocol carries to peers, and the one
//!   [`Error`] type that plugins return.
//!
//! The traits the host calls (authentication mechanisms, credential backends, storage, federation
//! policy) join them with the single-server work.
//!
//! # Architecture invariant
//!
//! This crate has no dependency on tokio, RocksDB, wasmtime or any network crate. A plugin
//! author compiles it for any target, including `wasm32-unknown-unknown`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod identity;

pub use error::{Error, ErrorCode};
pub use identity::{IdentityError, ServerName, Uid, Username};
