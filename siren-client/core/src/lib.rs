//! The Siren client's state, without IO: what one device knows and shows — conversations and
//! their messages, message states (sending → sent → delivered → read), unread counts, typing,
//! files in transfer, contacts and their presence, contact requests, pending device approvals,
//! verification and key-change warnings — and the rules that move it: a server message or a
//! person's command goes in, effects (messages to send, history to store, files to save) come
//! out.
//!
//! Like `siren-proto`, it opens no sockets, reads no files, keeps no clock and starts no threads:
//! time and randomness are arguments. The same crate runs in `siren` and `siren chat` (driven by
//! tokio in `siren-client`) and in the browser (compiled to wasm32).
//!
//! | module | what |
//! |---|---|
//! | [`model`] | the view: what a user interface draws |
//! | [`command`] | what the person asks for |
//! | [`effect`] | what the core asks its driver to do |
//! | [`engine`] | the state and its rules ([`Core`]) |
//! | [`files`] | files in transfer: chunking, reassembly, checks, bounds |
//! | [`at_rest`] | sealing what the device keeps: passphrase keys (argon2id), the history's keys |
//! | `conversation` | one conversation's loaded messages |

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod at_rest;
pub mod command;
mod conversation;
pub mod effect;
pub mod engine;
pub mod files;
pub mod model;

pub use command::Command;
pub use effect::Effect;
pub use engine::Core;
pub use model::View;

#[cfg(test)]
mod tests;
