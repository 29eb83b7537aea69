//! The Siren browser client's Rust side: the session code `siren` runs
//! ([`siren_client_session`]) compiled to wasm and run in the page, over the page's WebSocket to
//! `sirend`'s web listener. Keys are made and used here, in the page; the server routes only
//! sealed envelopes, as it does for `siren`.
//!
//! * [`socket`]: the page's WebSocket as a carrier of frames (one binary message each);
//! * [`link`]: the device side of the handshake over it, then the session's sealed messages;
//! * [`platform`]: the page as the session's `Platform` (WebSocket, timers, clock);
//! * [`store`]: what the device keeps — its keys, what it verified, its history — in IndexedDB,
//!   sealed under a store key only the passphrase opens;
//! * [`driver`]: the task that owns the session, waiting for the server and the page at once;
//! * `api`: what JavaScript calls (`Session.exists()`, `Session.create(url, uid, sek,
//!   passphrase, onUpdate)`, `Session.unlock(url, passphrase, onUpdate)`, `login`, `sendText`,
//!   `conversations`, `history`).
//!
//! Built by `scripts/build-web.sh` (Debian's rustc-web for wasm32, then `wasm-bindgen`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod api;
pub mod driver;
pub mod files;
pub mod link;
pub mod platform;
pub mod socket;
pub mod store;
pub mod view;

pub use api::Session;
