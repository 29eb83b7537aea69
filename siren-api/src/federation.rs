//! Federation policy: which peer servers this server talks to.
//!
//! The host asks the policy before opening a link to a peer (outbound) and before answering a
//! peer's hello (inbound), so a closed or restricted deployment is enforced in both directions.

use crate::identity::ServerName;

/// Which way a link goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This server connects to the peer.
    Outbound,
    /// The peer connects to this server.
    Inbound,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Talk to the peer.
    Allow,
    /// Refuse, with a reason for the log.
    Deny(String),
}

/// Decides which peers are allowed.
pub trait FederationPolicy: Send + Sync {
    /// The policy's name, for logs.
    fn name(&self) -> &str;

    /// Whether this server may talk to `peer` in `direction`.
    fn decide(&self, peer: &ServerName, direction: Direction) -> Decision;

    /// Whether [`FederationPolicy::decide`] answers from memory at once, so the host may call
    /// it on its async executor. Default `false`: the host calls it on a blocking thread (a
    /// plugin with a deadline, a lookup).
    fn decides_at_once(&self) -> bool {
        false
    }
}
