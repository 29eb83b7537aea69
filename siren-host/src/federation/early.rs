//! The outbox's fast path (PROTOCOL.md §17): while its peer answers, a peer's outbox worker is
//! the live consumer of the outbox queue ([`crate::hub::Hub::register_outbox`]), so a commit for
//! the peer is offered to it as soon as it is numbered, before anything is written, exactly as
//! a commit for a live device is offered to its session (`crate::deferred`). The worker sends
//! the envelopes on at once; when the peer acknowledges their commit within
//! [`crate::deferred::SYNC_AFTER`] they are never written here, and the senders' `send_ack`s go
//! then. Otherwise they are written and synced as before, and the worker removes each once it is
//! both acknowledged and seen durable.
//!
//! [`Early`] keeps the order and the removals right. Outbox numbers are consecutive, so an
//! offer is sent at once only if it is the number after everything sent, and only while the
//! store has nothing to be read first; an offer not taken comes the slow way (written, then
//! read from the store).

use std::collections::{BTreeSet, HashSet};

use crate::deferred::Acknowledged;

/// Most items acknowledged by the peer and not yet seen durable that are remembered; past it
/// the oldest are forgotten (each then stays in the outbox and is sent once more, a duplicate
/// the recipient's devices drop by its id).
const MAX_ACKED: usize = 4096;

/// What the worker knows of the items offered to it before they are durable.
pub struct Early {
    /// The highest outbox number sent (early, or read from the store).
    last: u64,
    /// The lowest number offered and not taken since the store was last read past it: offers
    /// wait until then (that item comes through the store, and the order with it).
    dropped: Option<u64>,
    /// Sent early, not yet answered nor seen durable.
    undurable: HashSet<u64>,
    /// Acknowledged by the peer before they were seen durable (their commit stopped waiting and
    /// writes them): removed from the outbox once seen durable.
    acked: BTreeSet<u64>,
    /// The store may hold items not sent yet: it is read before an offer is taken.
    pub read: bool,
}

/// What a note that an item is durable asks of the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Durable {
    /// Nothing (it is in flight: its answer settles it).
    Nothing,
    /// Remove it from the outbox now (the peer acknowledged it already).
    Remove,
    /// It was not sent: read the store.
    Read,
}

impl Default for Early {
    fn default() -> Self {
        Early {
            last: 0,
            dropped: None,
            undurable: HashSet::new(),
            acked: BTreeSet::new(),
            read: true,
        }
    }
}

impl Early {
    /// Whether offered item `seq` is sent now: it is the next number and nothing is to be read
    /// first. One not taken is passed over (it comes through the store).
    pub fn take(&mut self, seq: u64) -> bool {
        if !self.read && self.dropped.is_none() && self.last.checked_add(1) == Some(seq) {
            self.last = seq;
            self.undurable.insert(seq);
            true
        } else {
            self.pass(seq);
            false
        }
    }

    /// Offered item `seq` is not sent early (out of order, or it does not fit a frame): no
    /// later offer is taken until the store has been read past it.
    pub fn pass(&mut self, seq: u64) {
        if seq > self.last {
            self.dropped = Some(self.dropped.map_or(seq, |d| d.min(seq)));
        }
    }

    /// The store read gave item `seq` (sent now, or in flight already): it is durable. `true`
    /// if it is to be removed rather than sent (the peer acknowledged it already).
    pub fn seen(&mut self, seq: u64) -> bool {
        self.last = self.last.max(seq);
        if self.dropped.is_some_and(|d| d <= self.last) {
            self.dropped = None;
        }
        self.undurable.remove(&seq);
        self.acked.remove(&seq)
    }

    /// A note that item `seq` is durable (`in_flight`: sent from a store read, not answered).
    pub fn durable(&mut self, seq: u64, in_flight: bool) -> Durable {
        if self.undurable.remove(&seq) {
            Durable::Nothing
        } else if self.acked.remove(&seq) {
            Durable::Remove
        } else if in_flight {
            Durable::Nothing
        } else {
            self.read = true;
            Durable::Read
        }
    }

    /// The peer acknowledged item `seq`, sent early, whose commit answered `acknowledged`:
    /// whether to remove it from the outbox now.
    pub fn answered(&mut self, seq: u64, acknowledged: Acknowledged) -> bool {
        match acknowledged {
            // Never written, and now never will be.
            Acknowledged::Unwritten => {
                self.undurable.remove(&seq);
                false
            }
            // Written (unsynced) and waiting for this: the write is applied.
            Acknowledged::Written => {
                self.undurable.remove(&seq);
                true
            }
            // Its commit stopped waiting and writes it: removed once seen durable (at once if
            // it was seen already).
            Acknowledged::NotWaiting => {
                if !self.undurable.remove(&seq) {
                    return true;
                }
                self.acked.insert(seq);
                while self.acked.len() > MAX_ACKED {
                    self.acked.pop_first();
                }
                false
            }
        }
    }

    /// The deliveries in flight were forgotten (a failure): what was sent early and not
    /// answered is written by its commit and read from the store again.
    pub fn restart(&mut self) {
        self.undurable.clear();
        self.dropped = None;
        self.read = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caught_up(last: u64) -> Early {
        let mut early = Early::default();
        assert!(!early.seen(last));
        early.read = false;
        early
    }

    #[test]
    fn offers_are_taken_in_order_only_while_nothing_is_to_be_read() {
        // Before the store was read, nothing is taken.
        let mut early = Early::default();
        assert!(!early.take(1));
        let mut early = caught_up(10);
        assert!(early.take(11));
        assert!(early.take(12));
        // A gap: 14 waits for 13, which comes through the store, and so does everything after.
        assert!(!early.take(14));
        assert!(!early.take(15));
        early.read = true;
        assert!(!early.take(16), "the store is to be read first");
        // The store gives 13..=16; offers go on after them.
        for seq in 13..=16 {
            assert!(!early.seen(seq));
        }
        early.read = false;
        assert!(early.take(17));
        // An old number (already sent) is never taken again.
        assert!(!early.take(17));
    }

    #[test]
    fn an_acknowledged_item_is_removed_once_and_only_after_its_write() {
        let mut early = caught_up(0);
        for seq in 1..=4 {
            assert!(early.take(seq));
        }
        // 1: never written; 2: written and waiting for the answer: removed at once.
        assert!(!early.answered(1, Acknowledged::Unwritten));
        assert!(early.answered(2, Acknowledged::Written));
        // 3: its commit stopped waiting before the answer: removed when it is seen durable.
        assert!(!early.answered(3, Acknowledged::NotWaiting));
        assert_eq!(early.durable(3, false), Durable::Remove);
        // 4: seen durable first (in flight), then answered: removed at once.
        assert_eq!(early.durable(4, false), Durable::Nothing);
        assert!(early.answered(4, Acknowledged::NotWaiting));
        // A note for an item never sent: the store is read.
        assert_eq!(early.durable(9, false), Durable::Read);
        assert!(early.read);
        // Acknowledged, then found by a store read before its note: removed, not sent again.
        let mut early = caught_up(0);
        assert!(early.take(1));
        assert!(!early.answered(1, Acknowledged::NotWaiting));
        assert!(early.seen(1));
        assert!(!early.seen(1));
    }

    #[test]
    fn after_a_failure_everything_unanswered_comes_from_the_store() {
        let mut early = caught_up(0);
        assert!(early.take(1));
        assert!(early.take(2));
        assert!(!early.answered(1, Acknowledged::NotWaiting));
        early.restart();
        assert!(early.read);
        // 2 was not answered: when its write is noted it is read and sent again; 1 was, and is
        // removed.
        assert_eq!(early.durable(2, false), Durable::Read);
        assert_eq!(early.durable(1, false), Durable::Remove);
        // A store read (in flight now) makes a later note a no-op.
        assert!(!early.seen(3));
        assert_eq!(early.durable(3, true), Durable::Nothing);
    }
}
