//! Federation (PROTOCOL.md §17): what travels over the links of [`crate::links`].
//!
//! | module | what |
//! |---|---|
//! | [`early`] | the outbox's fast path: what its worker sent before it was durable, and the order of offers |
//! | [`inbound`] | a peer's link to us: the responder's checks, then its lookups, deliveries and subscriptions |
//! | [`outbox`] | envelopes for a peer's users: a persisted queue per peer (admission, commit, batches, dead letters), one worker draining it |
//! | `worker` | the task draining one outbox: batches in flight, answers, retries, the fast path |
//! | `lease` | in a cluster, which node drains a peer's outbox |
//! | [`presence`] | presence events peers send us, handed to the local subscribers |
//! | [`waiting`] | which peers have envelopes waiting, for whom, and which outboxes have a worker: the limits on outboxes |

pub mod early;
pub mod inbound;
mod lease;
pub mod outbox;
pub mod presence;
pub mod waiting;
mod worker;
