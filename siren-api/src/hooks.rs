//! Hooks: where a deployment filters or observes what the server does, without taking part in
//! the protocol.
//!
//! * A [`MessageFilter`] is asked about every message the server routes. It sees routing
//!   metadata only ([`RoutingMeta`]): who sends to whom, to how many devices, how large, when —
//!   never a payload, which is end-to-end encrypted anyway. It answers allow, deny or delay
//!   ([`FilterDecision`]): enough for rate limits, quotas and closed-group rules.
//! * A [`DirectoryHook`] is told about every change to a user's device list
//!   ([`DirectoryEvent`]), after the change is stored. It observes only (audit logs,
//!   notifications to an operator's system); it cannot refuse the change.
//!
//! Both are synchronous and called on the routing path: implementations answer quickly and
//! never block on the network. Implementations that can fail (a wasm plugin that traps) decide
//! themselves how to fail: a filter that cannot decide denies (fails closed) and says why in
//! the reason; a hook logs its error.

use crate::identity::Uid;
use crate::storage::{DeviceKey, UnixTime};

/// What the server knows about a message it routes: metadata only, never the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingMeta {
    /// The sender.
    pub sender: Uid,
    /// The recipient.
    pub recipient: Uid,
    /// How many devices of the recipient the message is addressed to.
    pub recipient_devices: u32,
    /// The size of the encrypted payload in bytes.
    pub payload_size: u64,
    /// When the server received the message.
    pub timestamp: UnixTime,
}

/// A message filter's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterDecision {
    /// Route the message.
    Allow,
    /// Refuse the message, with a reason for the log (the sender gets a generic refusal).
    Deny(String),
    /// Ask the sender to retry after this many seconds.
    Delay(u32),
}

/// Decides about every message the server routes, from its metadata.
pub trait MessageFilter: Send + Sync {
    /// The filter's name, for logs.
    fn name(&self) -> &str;

    /// Decides about one message. Called for every message on the routing path, so it must be
    /// quick; an implementation that cannot decide returns [`FilterDecision::Deny`] with the
    /// reason.
    fn check(&self, meta: &RoutingMeta) -> FilterDecision;
}

/// A change to a user's device list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectoryEvent {
    /// A device was added to the user's directory.
    DeviceAdded {
        /// The user.
        uid: Uid,
        /// The device's encryption key (DEK).
        device: DeviceKey,
    },
    /// A device was revoked.
    DeviceRevoked {
        /// The user.
        uid: Uid,
        /// The device's encryption key (DEK).
        device: DeviceKey,
    },
}

/// Observes changes to users' device lists.
pub trait DirectoryHook: Send + Sync {
    /// The hook's name, for logs.
    fn name(&self) -> &str;

    /// Called after a change is stored. Observe only: nothing the hook does undoes the change,
    /// and an implementation logs its own errors.
    fn event(&self, ev: &DirectoryEvent);
}
