//! `sirend`, the Siren server.
//!
//! The binary (`src/main.rs`) is a thin command-line layer over this library:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | `sirend.toml`, defaults, errors that name the key |
//! | [`keyfile`] | the SEK file |
//! | [`filemodes`] | private files: the umask, refusing a key, data directory or store others can read |
//! | [`registry`] | built-in storage backends, credential backends and mechanisms, by name |
//! | [`shared`] | what sessions and federation tasks share |
//! | [`server`] | assembling the parts, the listener, graceful shutdown |
//! | `session` | one connection: handshake, login, requests, queue delivery (a module per capability) |
//! | [`links`] | server-to-server links: discovery, pinned keys, requests |
//! | [`federation`] | what links carry: the inbound side, outboxes, presence events |
//! | [`admission`] | limits on connections before login (per address, per second, server-wide) |
//! | [`auth`] | the Authentication Manager, `PLAIN`, login limits (concurrency, failures) |
//! | [`accounts`] | sessions end with their account: the resume check, the periodic re-check, ending a user's sessions, deleting a user's data |
//! | [`directory`] | users' signed device chains |
//! | [`queue`] | durable per-device queues, the TTL sweeper |
//! | [`quota`] | per-device queue quotas, per-sender send rates |
//! | [`rate`] | keyed token buckets |
//! | [`hub`] | live sessions, for pushing committed items |
//! | [`mailbox`] | what other tasks tell one live session: offers, the mark, signals, the order to close |
//! | [`cluster`] | one node of several serving one domain: wake-ups over NATS, the periodic re-read |
//! | [`pubsub`] | presence subscriptions of live sessions |
//! | [`signals`] | ephemeral signals (typing): only to live sessions, never stored |
//! | [`roster`] | signed rosters: storing them, blocking, contact requests |
//! | [`approvals`] | new devices waiting for approval |
//! | [`admin`] | `sirend init`, DNS records, running an admin command (through the socket or on the store) |
//! | [`backup`] | `sirend backup` (a consistent copy while running) and `sirend restore` |
//! | [`metrics`] | Prometheus metrics, `/metrics`, `/healthz`, `/readyz` |
//! | [`reload`] | SIGHUP and `sirend reload`: re-read, check, apply what can change live |
//! | [`control`] | the admin socket: wire format, who may connect, the commands themselves |
//! | [`web`] | the web listener: the browser client's page, sessions over a WebSocket |
//!
//! # Architecture invariants
//!
//! * No backend-specific code outside [`registry`]: the rest of the host sees `siren-api` traits.
//! * Never logs payloads, keys, passwords or whole session ids; never stores plaintext.
//! * A `send` is acknowledged only after the store committed every envelope of it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod admin;
pub mod admission;
pub mod approvals;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod control;
pub mod deferred;
pub mod directory;
pub mod federation;
pub mod filemodes;
pub mod hub;
pub mod keyfile;
pub mod links;
pub mod mailbox;
pub mod metrics;
pub mod migrate;
pub mod pubsub;
pub mod queue;
pub mod quota;
pub mod rate;
pub mod registry;
pub mod reload;
pub mod roster;
pub mod server;
mod session;
pub mod shared;
pub mod signals;
#[cfg(test)]
mod testing;
pub mod web;
