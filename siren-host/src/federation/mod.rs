//! Federation (PROTOCOL.md §17): what travels over the links of [`crate::links`].
//!
//! | module | what |
//! |---|---|
//! | [`early`] | the outbox's fast path: what its worker sent before it was durable, and the order of offers |
//! | [`inbound`] | a peer's link to us: the responder's checks, then its lookups, deliveries and subscriptions |
//! | [`outbox`] | envelopes for a peer's users: a persisted queue per peer, one worker draining it |
//! | [`presence`] | presence events peers send us, handed to the local subscribers |
//! | [`waiting`] | which peers have envelopes waiting, for whom, and which outboxes have a worker: the limits on outboxes |

pub mod early;
pub mod inbound;
pub mod outbox;
pub mod presence;
pub mod waiting;
