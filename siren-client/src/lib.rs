//! The Siren client library, and the `siren` command-line client built on it.
//!
//! * [`profile`]: one account on one device in one directory, keys protected at rest;
//! * [`chat`]: `siren chat`, the terminal UI (ratatui), drawing a [`chat::ChatSource`];
//! * [`driver`]: the client core driven over a session, reconnecting by itself (`siren chat`);
//! * [`client`]: the session of [`siren_client_session`] (log in, look users up — every record
//!   verified against one USK, compared with the cache —, send and receive end-to-end encrypted
//!   messages) on tokio, keeping its state in a [`profile::Profile`];
//! * [`history`]: the local message history, sealed at rest, with search;
//! * [`fingerprint`]: key fingerprints as people compare them;
//! * [`terminal`]: printing, with control and bidi characters escaped;
//! * [`x509`]: client certificates for the `X509` login mechanism.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use siren_client::{client, profile::Profile};
//!
//! let profile = Profile::open(std::path::Path::new("/home/alice/.siren"), None)?;
//! let mut client = client::open(profile)?;
//! client.connect().await?;                      // resume this device's session
//! let bob = siren_api::Uid::parse("bob@beta.test")?;
//! let (id, devices) = client.send_text(&bob, "hello").await?;
//! println!("sent {id} to {devices} devices");
//! client.bye().await?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chat;
pub mod client;
pub mod driver;
pub mod fingerprint;
pub mod history;
pub mod profile;
pub mod terminal;
pub mod x509;
