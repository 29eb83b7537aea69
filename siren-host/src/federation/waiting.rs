//! Which peers have envelopes waiting in an outbox, for which local users, and which outboxes
//! have a worker: the bookkeeping behind the limits on outboxes (`[federation] max_outbox_peers`
//! and `max_outbox_peers_per_user`, PROTOCOL.md §17) and behind starting each worker once.
//!
//! A peer counts for a user from the moment one of the user's envelopes for it is admitted (a
//! *reservation*, which lapses after [`RESERVATION`] unless the envelope is committed) until
//! the peer's worker finds its outbox empty. Outboxes found at start-up count for nobody but
//! towards the server's limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use siren_api::{Error, ErrorCode, ServerName, Username};
use tokio::sync::Notify;

use crate::config::FederationSection;

/// How long an admitted envelope counts before its commit (a refused `send` leaves one).
const RESERVATION: Duration = Duration::from_secs(60);

/// Most peers whose outbox floor is remembered ([`Outboxes::floor`]); past it they are all
/// forgotten, which costs the next worker of each one read from the outbox's start.
const MAX_FLOORS: usize = 4096;

/// The outboxes' workers and who has envelopes waiting for which peer.
pub struct Outboxes {
    state: Mutex<State>,
    max_peers: usize,
    max_peers_per_user: usize,
}

#[derive(Default)]
struct State {
    /// Peers whose worker runs, and what wakes it when envelopes are committed for its peer.
    workers: HashMap<ServerName, Arc<Notify>>,
    /// Peers with envelopes waiting or about to be committed.
    peers: HashMap<ServerName, Waiting>,
    /// Where the last worker of each peer left off reading ([`Outboxes::floor`]).
    floors: HashMap<ServerName, u64>,
}

/// Who has envelopes waiting for one peer.
#[derive(Default)]
struct Waiting {
    /// Users with committed envelopes for it.
    users: HashSet<Username>,
    /// Users with envelopes admitted, not yet committed, and since when.
    reserved: HashMap<Username, Instant>,
    /// Counts changes, so a stopping worker can tell that envelopes came after it looked.
    generation: u64,
    /// The lowest outbox number committed since the worker last asked.
    first_committed: Option<u64>,
    /// Its worker found the outbox empty and lingers on the fast path: the peer counts towards
    /// no limit until envelopes come again.
    idle: bool,
}

impl Waiting {
    /// Whether the peer takes one of the server's places (`max_outbox_peers`): envelopes wait
    /// for it or are about to, or its worker is busy (not lingering with an empty outbox).
    fn holds_place(&self) -> bool {
        !self.users.is_empty() || !self.reserved.is_empty() || !self.idle
    }

    fn counts(&self, user: &Username, now: Instant) -> bool {
        self.users.contains(user)
            || self
                .reserved
                .get(user)
                .is_some_and(|since| now.duration_since(*since) < RESERVATION)
    }
}

impl State {
    /// Drops lapsed reservations, and peers nothing waits for any more.
    fn purge(&mut self, now: Instant) {
        let workers = &self.workers;
        self.peers.retain(|peer, waiting| {
            waiting
                .reserved
                .retain(|_, since| now.duration_since(*since) < RESERVATION);
            !waiting.users.is_empty() || !waiting.reserved.is_empty() || workers.contains_key(peer)
        });
    }
}

impl Outboxes {
    /// Limits from `[federation]`.
    pub fn new(config: &FederationSection) -> Self {
        Outboxes {
            state: Mutex::new(State::default()),
            max_peers: config.max_outbox_peers,
            max_peers_per_user: config.max_outbox_peers_per_user,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The peers with envelopes waiting (or a worker), and whether each one's worker runs.
    pub fn peers(&self) -> HashMap<ServerName, bool> {
        let state = self.state();
        state
            .peers
            .keys()
            .chain(state.workers.keys())
            .map(|p| (p.clone(), state.workers.contains_key(p)))
            .collect()
    }

    /// Counts `peer` as one of the peers `user` has envelopes waiting for (an envelope of a
    /// `send` being checked), unless that would exceed the per-user limit (107) or the
    /// server's (203).
    pub fn reserve(&self, user: &Username, peer: &ServerName) -> Result<(), Error> {
        let now = Instant::now();
        let mut state = self.state();
        state.purge(now);
        let known = state.peers.get(peer);
        if !known.is_some_and(|w| w.counts(user, now)) {
            let mine = state.peers.values().filter(|w| w.counts(user, now)).count();
            if mine >= self.max_peers_per_user {
                return Err(Error::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "you already have messages waiting for {} other servers (the most this server allows); {peer} can be written to once some are delivered or expire",
                        self.max_peers_per_user
                    ),
                ));
            }
            // A worker that lingers with an empty outbox holds no place: one user writing to
            // many answering servers in turn must not fill the server's limit with idle workers.
            let taken = state.peers.values().filter(|w| w.holds_place()).count();
            if !known.is_some_and(Waiting::holds_place) && taken >= self.max_peers {
                return Err(Error::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this server is waiting to deliver to {} other servers already; retry later",
                        self.max_peers
                    ),
                ));
            }
        }
        let waiting = state.peers.entry(peer.clone()).or_default();
        waiting.reserved.insert(user.clone(), now);
        waiting.generation += 1;
        waiting.idle = false;
        Ok(())
    }

    /// `user`'s envelopes for `peer` are committed, numbered from `first` on in its outbox:
    /// they count until the outbox is empty, and the worker reads from `first` again
    /// ([`Outboxes::take_first_committed`]).
    pub fn committed(&self, user: &Username, peer: &ServerName, first: u64) {
        let mut state = self.state();
        let waiting = state.peers.entry(peer.clone()).or_default();
        waiting.reserved.remove(user);
        waiting.users.insert(user.clone());
        waiting.generation += 1;
        waiting.idle = false;
        waiting.first_committed = Some(waiting.first_committed.map_or(first, |f| f.min(first)));
    }

    /// The lowest outbox number committed for `peer` since the last call: a store that numbers
    /// before it writes may write a commit after a later one, so the worker, which reads past
    /// what it has seen, must look from there again.
    pub fn take_first_committed(&self, peer: &ServerName) -> Option<u64> {
        self.state()
            .peers
            .get_mut(peer)
            .and_then(|w| w.first_committed.take())
    }

    /// The number below which `peer`'s outbox holds nothing, as its last worker in this process
    /// found it (0 if none ran): where the next worker starts reading. Items numbered below it
    /// but written after that worker looked are reported by
    /// [`Outboxes::take_first_committed`], which the worker asks before every read. Without
    /// it each new worker would read from the outbox's first number, over every item removed
    /// since the store last compacted (RocksDB keeps them as tombstones), which took
    /// milliseconds once an outbox had carried some tens of thousands of messages.
    pub fn floor(&self, peer: &ServerName) -> u64 {
        self.state().floors.get(peer).copied().unwrap_or(0)
    }

    /// `peer`'s worker stops, having found nothing below `floor` (see [`Outboxes::floor`]).
    pub fn left_at(&self, peer: &ServerName, floor: u64) {
        let mut state = self.state();
        if state.floors.len() >= MAX_FLOORS && !state.floors.contains_key(peer) {
            state.floors.clear();
        }
        state.floors.insert(peer.clone(), floor);
    }

    /// Marks `peer`'s worker as running and returns what wakes it; `None` if it already runs
    /// (it is woken instead: envelopes were committed for it).
    pub fn claim(&self, peer: &ServerName) -> Option<Arc<Notify>> {
        let mut state = self.state();
        state.peers.entry(peer.clone()).or_default();
        if let Some(running) = state.workers.get(peer) {
            running.notify_one();
            return None;
        }
        let wake = Arc::new(Notify::new());
        state.workers.insert(peer.clone(), wake.clone());
        Some(wake)
    }

    /// Whether `peer`'s worker lingers on the fast path with an empty outbox.
    pub fn is_idle(&self, peer: &ServerName) -> bool {
        self.state().peers.get(peer).is_some_and(|w| w.idle)
    }

    /// `peer`'s worker stops for good (the peer may not be talked to): nothing counts it.
    pub fn stop(&self, peer: &ServerName) {
        let mut state = self.state();
        state.workers.remove(peer);
        state.peers.remove(peer);
    }

    /// `peer`'s worker found its outbox empty and is about to stop: it no longer runs (the next
    /// commit starts a new one). Returns the entry's generation, for [`Outboxes::forget`].
    pub fn unclaim(&self, peer: &ServerName) -> u64 {
        let mut state = self.state();
        state.workers.remove(peer);
        state.peers.get(peer).map_or(0, |w| w.generation)
    }

    /// The generation of `peer`'s entry (counts reservations and commits), for
    /// [`Outboxes::emptied`].
    pub fn generation(&self, peer: &ServerName) -> u64 {
        self.state().peers.get(peer).map_or(0, |w| w.generation)
    }

    /// `peer`'s worker found its outbox empty and keeps running, idle (it lingers for the next
    /// offer): its committed envelopes count no more, unless envelopes came since `generation`.
    pub fn emptied(&self, peer: &ServerName, generation: u64) {
        let mut state = self.state();
        if let Some(waiting) = state.peers.get_mut(peer)
            && waiting.generation == generation
        {
            waiting.users.clear();
            waiting.idle = true;
        }
    }

    /// `peer`'s outbox stayed empty: its committed envelopes count no more, unless envelopes
    /// came since `generation` or a new worker runs.
    pub fn forget(&self, peer: &ServerName, generation: u64) {
        let mut state = self.state();
        let running = state.workers.contains_key(peer);
        if let Some(waiting) = state.peers.get_mut(peer)
            && waiting.generation == generation
            && !running
        {
            waiting.users.clear();
        }
        state.purge(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_distinct_peers_per_user_and_in_total() {
        let outboxes = Outboxes::new(&FederationSection {
            max_outbox_peers: 3,
            max_outbox_peers_per_user: 2,
            ..FederationSection::default()
        });
        let user = |n: &str| Username::parse(n).unwrap();
        let (alice, carol, dave) = (user("alice"), user("carol"), user("dave"));
        let peer = |n: u8| ServerName::parse(&format!("p{n}.test")).unwrap();
        outboxes.reserve(&alice, &peer(1)).unwrap();
        outboxes.reserve(&alice, &peer(1)).unwrap();
        outboxes.reserve(&alice, &peer(2)).unwrap();
        let e = outboxes.reserve(&alice, &peer(3)).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        outboxes.reserve(&carol, &peer(1)).unwrap();
        outboxes.reserve(&carol, &peer(3)).unwrap();
        let e = outboxes.reserve(&dave, &peer(4)).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited, "three peers in all");

        // Committed, then delivered: a worker that finds p1's outbox empty releases it for
        // everyone.
        outboxes.committed(&alice, &peer(1), 1);
        outboxes.committed(&carol, &peer(1), 2);
        assert!(outboxes.claim(&peer(1)).is_some());
        assert!(outboxes.claim(&peer(1)).is_none());
        let generation = outboxes.unclaim(&peer(1));
        outboxes.forget(&peer(1), generation);
        outboxes.reserve(&alice, &peer(3)).unwrap();
        outboxes.reserve(&dave, &peer(4)).unwrap();

        // Envelopes that came while p4's worker stopped keep it counted.
        outboxes.committed(&dave, &peer(4), 1);
        assert!(outboxes.claim(&peer(4)).is_some());
        let generation = outboxes.unclaim(&peer(4));
        outboxes.reserve(&dave, &peer(4)).unwrap();
        outboxes.forget(&peer(4), generation);
        let e = outboxes.reserve(&carol, &peer(5)).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited, "p2, p3, p4 still wait");
        // A peer that may not be talked to counts no more at once.
        outboxes.stop(&peer(4));
        outboxes.reserve(&carol, &peer(5)).unwrap();
    }

    #[test]
    fn a_worker_lingering_with_an_empty_outbox_holds_no_place() {
        let outboxes = Outboxes::new(&FederationSection {
            max_outbox_peers: 2,
            max_outbox_peers_per_user: 2,
            ..FederationSection::default()
        });
        let alice = Username::parse("alice").unwrap();
        let peer = |n: u8| ServerName::parse(&format!("p{n}.test")).unwrap();
        for n in 1..=2 {
            outboxes.reserve(&alice, &peer(n)).unwrap();
            outboxes.committed(&alice, &peer(n), 1);
            assert!(outboxes.claim(&peer(n)).is_some());
        }
        assert!(
            outboxes.reserve(&alice, &peer(3)).is_err(),
            "two peers wait"
        );
        // p1's worker empties its outbox and stays (the fast path): p1 counts no more.
        outboxes.emptied(&peer(1), outboxes.generation(&peer(1)));
        outboxes.reserve(&alice, &peer(3)).unwrap();
        // Envelopes committed meanwhile keep it counted.
        let generation = outboxes.generation(&peer(2));
        outboxes.committed(&alice, &peer(2), 2);
        outboxes.emptied(&peer(2), generation);
        assert!(
            outboxes.reserve(&alice, &peer(4)).is_err(),
            "p2 and p3 wait"
        );
        // The idle worker's peer counts again with its next envelope.
        outboxes.committed(&alice, &peer(3), 1);
        assert!(outboxes.claim(&peer(3)).is_some());
        outboxes.emptied(&peer(3), outboxes.generation(&peer(3)));
        outboxes.reserve(&alice, &peer(1)).unwrap();
        assert!(
            outboxes.reserve(&alice, &peer(4)).is_err(),
            "p1 and p2 wait"
        );
    }

    #[test]
    fn the_worker_learns_the_lowest_number_committed_since_it_last_asked() {
        let outboxes = Outboxes::new(&FederationSection::default());
        let alice = Username::parse("alice").unwrap();
        let peer = |n: u8| ServerName::parse(&format!("p{n}.test")).unwrap();
        assert_eq!(outboxes.take_first_committed(&peer(1)), None);
        // A later commit written first, then the earlier one: the lower number wins.
        outboxes.committed(&alice, &peer(1), 12);
        outboxes.committed(&alice, &peer(1), 10);
        outboxes.committed(&alice, &peer(2), 3);
        assert_eq!(outboxes.take_first_committed(&peer(1)), Some(10));
        assert_eq!(outboxes.take_first_committed(&peer(1)), None, "taken");
        assert_eq!(outboxes.take_first_committed(&peer(2)), Some(3));
    }

    #[test]
    fn a_worker_starts_where_the_last_one_left_off_and_floors_stay_bounded() {
        let outboxes = Outboxes::new(&FederationSection::default());
        let peer = |n: usize| ServerName::parse(&format!("p{n}.test")).unwrap();
        assert_eq!(outboxes.floor(&peer(1)), 0, "no worker ran yet");
        outboxes.left_at(&peer(1), 1200);
        assert_eq!(outboxes.floor(&peer(1)), 1200);
        // Kept when nothing waits for the peer any more (the next worker needs it most then).
        let generation = outboxes.unclaim(&peer(1));
        outboxes.forget(&peer(1), generation);
        assert_eq!(outboxes.floor(&peer(1)), 1200);
        // Bounded: past the limit every floor is forgotten (a read from the start, no loss).
        for n in 2..=MAX_FLOORS {
            outboxes.left_at(&peer(n), n as u64);
        }
        assert_eq!(outboxes.state().floors.len(), MAX_FLOORS);
        outboxes.left_at(&peer(MAX_FLOORS + 1), 7);
        assert_eq!(outboxes.state().floors.len(), 1);
        assert_eq!(outboxes.floor(&peer(1)), 0);
        assert_eq!(outboxes.floor(&peer(MAX_FLOORS + 1)), 7);
    }

    #[test]
    fn a_reservation_never_committed_lapses() {
        let outboxes = Outboxes::new(&FederationSection {
            max_outbox_peers_per_user: 1,
            ..FederationSection::default()
        });
        let alice = Username::parse("alice").unwrap();
        let p = |n: u8| ServerName::parse(&format!("p{n}.test")).unwrap();
        outboxes.reserve(&alice, &p(1)).unwrap();
        assert!(outboxes.reserve(&alice, &p(2)).is_err());
        // Sixty seconds later (the reservation's time moved back instead).
        for waiting in outboxes.state().peers.values_mut() {
            for since in waiting.reserved.values_mut() {
                *since -= RESERVATION;
            }
        }
        outboxes.reserve(&alice, &p(2)).unwrap();
    }
}
