//! The admin channel: `sirend user|devices|sessions|queue|federation|status` while the server
//! runs.
//!
//! A running `sirend` listens on a Unix socket in its data directory (`<data_dir>/sirend.sock`,
//! mode 0600, in a directory that is 0700). Every admin command first tries that socket: when a
//! server answers, the command runs inside it, on its live state (a `user passwd` closes the
//! user's live sessions at once, `devices revoke` closes that device's session); when none does
//! (no socket, or a stale one left by a killed server), the command opens the store itself, as
//! before. Both paths run the same code ([`commands::Ops`]) and print the same output.
//!
//! **Why a Unix socket and not an HTTP listener with a token file.** The kernel tells the server
//! who is connecting (`SO_PEERCRED`): the socket answers only processes of sirend's own user
//! (the same user that may read the store and the SEK anyway), checked on every connection on
//! top of the file and directory modes. There is no secret to generate, store, rotate or leak,
//! no port to firewall, and nothing reachable from the network, even by mistake. Remote
//! administration, where an operator needs it, is `ssh host sirend …`.
//!
//! The protocol is one JSON line each way per connection ([`wire`]); requests are bounded in
//! size and time, and anything malformed gets a clear refusal while the server keeps serving.

pub mod client;
pub mod commands;
pub mod listener;
pub mod wire;

use std::path::PathBuf;

use crate::config::Config;

/// The admin socket of the server `config` describes.
pub fn socket_path(config: &Config) -> PathBuf {
    config.server.data_dir.join("sirend.sock")
}
