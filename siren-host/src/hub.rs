//! The hub: which device (DEK) has a live, ready session right now.
//!
//! After the queue commits items it tells the recipient's live session through the hub, so an
//! online device gets a message without the store being polled. A push never blocks and carries
//! no data: it lowers the session's mark (`lag`, the lowest sequence number committed since the
//! session last looked) and wakes it; the session then reads from the store from that number on.
//! The store is the source of truth; an idle session costs the hub a few small `Arc`s.
//!
//! **The online fast path** (PROTOCOL.md §13): a store that numbers items before its durable
//! write announces the numbers, and the queue then *offers* each item to its device's live
//! session through the hub ([`Hub::offer`]): a bounded channel per session carrying the number
//! and a shared reference to the item's bytes (no copy). The session may deliver it at once,
//! while the write proceeds. After the commit, the push of an item its device has not already
//! acknowledged (`crate::deferred`) sends a note through the same channel that the item is
//! durable (or, if the channel is full, lowers the session's mark so that it reads the store);
//! see `session::delivery`. An offer that does not fit the channel is dropped: the item comes
//! the slow way, through the store.
//!
//! The hub also knows as whom each session is logged in (the user and the credential stamp of
//! its login), so that the server can end every live session of an account that was deleted or
//! whose password changed ([`Hub::end`], used by [`crate::accounts`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use siren_api::{Error, Username};
use siren_proto::keys::DekPublic;
use tokio::sync::{Notify, mpsc};

/// No lag recorded.
pub const NO_LAG: u64 = u64::MAX;

/// Offers one session can hold before it reads them (beyond this they are dropped).
const OFFERS: usize = 512;

/// Items of one enqueue, shared by the store write and the offers to live sessions.
pub type OfferedItems = Arc<[siren_api::storage::NewQueueItem]>;

/// What the queue tells a live client session through its channel.
pub enum Offered {
    /// An item, before it is durable.
    Item(Offer),
    /// Item `seq` is committed (durable).
    Durable(u64),
}

/// A queue item offered to a live session before it is durable: its number and where its
/// bytes are.
pub struct Offer {
    /// The item's sequence number in the device's queue (final).
    pub seq: u64,
    /// The enqueue's items.
    pub items: OfferedItems,
    /// Which of them.
    pub index: usize,
}

impl Offer {
    /// The stored bytes of the item (its queue item encoding).
    pub fn bytes(&self) -> Option<&[u8]> {
        self.items.get(self.index).map(|i| i.bytes.as_slice())
    }
}

/// What a cluster node tells the other nodes ([`crate::cluster`] carries it over NATS): what
/// this node cannot do itself because the device's session may be on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Item `seq` is committed for this device: its live session should read its queue.
    Wake(DekPublic, u64),
    /// This device was revoked: its live session must close (error 305).
    Kick(DekPublic),
    /// An ephemeral signal for the device's live session.
    Signal(Box<siren_proto::envelope::Envelope>),
    /// A local user published presence: for the subscribers on other nodes.
    Presence(Box<(siren_api::Uid, siren_proto::message::Presence)>),
    /// A local user's devices changed (an entry was appended to their chain): other nodes
    /// forget what they cached of it and tell the users who looked it up there.
    Directory(Username),
    /// Envelopes were committed to this peer's outbox and another node drains it (holds its
    /// lease): that node's worker should look (or, if it just stopped, one starts).
    Outbox(siren_api::ServerName),
    /// A login to this local user failed and counted towards the account's limit: the other
    /// nodes count it too.
    LoginFailed(Username),
}

/// How the hub tells a live session to close, and why.
#[derive(Default)]
pub struct Kick {
    notify: Notify,
    ending: Mutex<Option<Error>>,
}

impl Kick {
    /// Resolves once the session must close (at once if it was told before anyone waited).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The error to send before closing when the session is ended (its account changed, an
    /// administrator revoked it), rather than replaced by a newer connection; such a session
    /// must not stay resumable.
    pub fn ending(&self) -> Option<Error> {
        self.ending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fire(&self, ending: Option<Error>) {
        if ending.is_some() {
            *self.ending.lock().unwrap_or_else(|p| p.into_inner()) = ending;
        }
        self.notify.notify_one();
    }
}

struct Entry {
    lag: Arc<AtomicU64>,
    kick: Arc<Kick>,
    wake: Arc<Notify>,
    conn: u64,
    /// Where offers go (client sessions only).
    offers: Option<mpsc::Sender<Offered>>,
    /// For a client's session: who is logged in, and the credential stamp of that login
    /// (`None`: not checked). `None` for the server's own registrations (outboxes).
    account: Option<(Username, Option<u64>)>,
}

/// Live sessions by DEK.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<DekPublic, Entry>>,
    /// In a cluster: where pushes for devices with no live session here go (to the other
    /// nodes, [`crate::cluster`]).
    remote: std::sync::OnceLock<mpsc::Sender<Routed>>,
}

/// What a session gets when it registers.
pub struct Registration {
    /// Lowest seq committed since the session last looked, or [`NO_LAG`].
    pub lag: Arc<AtomicU64>,
    /// Notified after `lag` was lowered.
    pub wake: Arc<Notify>,
    /// Notified when the session must close (replaced by a resumption, its DEK revoked, or
    /// ended by [`Hub::end`]).
    pub kick: Arc<Kick>,
    /// Items offered before they are durable (client sessions only).
    pub offers: Option<mpsc::Receiver<Offered>>,
}

impl Hub {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as the live session of `dek`, kicking any earlier one.
    pub fn register(&self, dek: DekPublic, conn: u64) -> Registration {
        self.insert(dek, conn, None)
    }

    /// Registers a client's session: [`Hub::register`] for a session logged in as `user` with
    /// the credential stamp `stamp`, which [`Hub::end`] can then select.
    pub fn register_session(
        &self,
        dek: DekPublic,
        conn: u64,
        user: Username,
        stamp: Option<u64>,
    ) -> Registration {
        self.insert(dek, conn, Some((user, stamp)))
    }

    fn insert(
        &self,
        dek: DekPublic,
        conn: u64,
        account: Option<(Username, Option<u64>)>,
    ) -> Registration {
        let lag = Arc::new(AtomicU64::new(NO_LAG));
        let kick = Arc::new(Kick::default());
        let wake = Arc::new(Notify::new());
        let (offers, offered) = match account {
            Some(_) => {
                let (tx, rx) = mpsc::channel(OFFERS);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let old = self.sessions().insert(
            dek,
            Entry {
                lag: lag.clone(),
                kick: kick.clone(),
                wake: wake.clone(),
                conn,
                offers,
                account,
            },
        );
        if let Some(old) = old {
            old.kick.fire(None);
        }
        Registration {
            lag,
            kick,
            wake,
            offers: offered,
        }
    }

    /// Removes `conn`'s registration (if it is still the current one for `dek`).
    pub fn unregister(&self, dek: &DekPublic, conn: u64) {
        let mut sessions = self.sessions();
        if sessions.get(dek).is_some_and(|e| e.conn == conn) {
            sessions.remove(dek);
        }
    }

    /// Tells `dek`'s live session, if any, that item `seq` is committed: through its channel
    /// (in order after the item's offer, so a session that delivered the item early needs no
    /// store read), or, when that is full or the session has none, by lowering its mark.
    /// In a cluster, a device with no live session here may have one on another node: the
    /// push goes there.
    pub fn push(&self, dek: &DekPublic, seq: u64) {
        if !self.push_local(dek, seq)
            && let Some(remote) = self.remote.get()
        {
            // Full (NATS slow or gone): dropped; the periodic re-read finds the item.
            let _ = remote.try_send(Routed::Wake(*dek, seq));
        }
    }

    /// [`Hub::push`] to this node's sessions only (a push from another node); whether `dek`
    /// has a live session here.
    pub fn push_local(&self, dek: &DekPublic, seq: u64) -> bool {
        let sessions = self.sessions();
        let Some(entry) = sessions.get(dek) else {
            return false;
        };
        if let Some(tx) = &entry.offers
            && tx.try_send(Offered::Durable(seq)).is_ok()
        {
            return true;
        }
        entry.lag.fetch_min(seq, Ordering::Relaxed);
        entry.wake.notify_one();
        true
    }

    /// Sends what concerns devices that may be live on another node to `remote` from now on
    /// (once: a cluster node at start).
    pub fn set_remote(&self, remote: mpsc::Sender<Routed>) {
        let _ = self.remote.set(remote);
    }

    /// Where what concerns other nodes goes, in a cluster.
    pub fn remote(&self) -> Option<&mpsc::Sender<Routed>> {
        self.remote.get()
    }

    /// Tells the other nodes, in a cluster, that envelopes were committed for `peer` while
    /// another node holds its outbox (never blocks; a lost one waits for the next `adopt`).
    pub fn outbox_committed(&self, peer: &siren_api::ServerName) {
        if let Some(remote) = self.remote.get() {
            let _ = remote.try_send(Routed::Outbox(peer.clone()));
        }
    }

    /// Tells the other nodes, in a cluster, that a login to `user` failed (never blocks).
    pub fn login_failed(&self, user: &Username) {
        if let Some(remote) = self.remote.get() {
            let _ = remote.try_send(Routed::LoginFailed(user.clone()));
        }
    }

    /// Tells the other nodes, in a cluster, that `user`'s devices changed (never blocks; a
    /// notice that does not fit is dropped, and their caches expire).
    pub fn directory_changed(&self, user: &Username) {
        if let Some(remote) = self.remote.get() {
            let _ = remote.try_send(Routed::Directory(user.clone()));
        }
    }

    /// Makes every live client session here read its queue again from the start (a cluster's
    /// periodic re-read: what a lost wake-up left behind is found).
    pub fn poll_all(&self) {
        for entry in self.sessions().values() {
            if entry.offers.is_some() {
                entry.lag.fetch_min(1, Ordering::Relaxed);
                entry.wake.notify_one();
            }
        }
    }

    /// Whether every one of `devices` has a live client session (to offer items to).
    pub fn all_live<'a>(&self, mut devices: impl Iterator<Item = &'a DekPublic>) -> bool {
        let sessions = self.sessions();
        devices.all(|dek| sessions.get(dek).is_some_and(|e| e.offers.is_some()))
    }

    /// Offers items being enqueued (`items[i]` numbered `seqs[i]`) to the live sessions of
    /// their devices. Never blocks: an offer that does not fit is dropped.
    pub fn offer(&self, items: &OfferedItems, seqs: &[u64]) {
        let sessions = self.sessions();
        for (index, (item, &seq)) in items.iter().zip(seqs).enumerate() {
            let dek = DekPublic::from_bytes(item.device);
            if let Some(tx) = sessions.get(&dek).and_then(|e| e.offers.as_ref()) {
                let _ = tx.try_send(Offered::Item(Offer {
                    seq,
                    items: items.clone(),
                    index,
                }));
            }
        }
    }

    /// Closes `dek`'s live session, if any, because its DEK was revoked: it is told so with
    /// error 305 (`device_revoked`) first (PROTOCOL.md §11).
    /// In a cluster the other nodes are told too: the session may be on one of them.
    pub fn kick(&self, dek: &DekPublic) {
        self.kick_local(dek);
        if let Some(remote) = self.remote.get() {
            let _ = remote.try_send(Routed::Kick(*dek));
        }
    }

    /// [`Hub::kick`] on this node only (another node's revocation).
    pub fn kick_local(&self, dek: &DekPublic) {
        if let Some(entry) = self.sessions().remove(dek) {
            entry.kick.fire(Some(Error::new(
                siren_api::ErrorCode::DeviceRevoked,
                "this device was revoked by another device of the account",
            )));
        }
    }

    /// Ends the live sessions that `which` selects (given each one's DEK, user and credential
    /// stamp): each is sent `error` and closed, and is not kept resumable. Returns how many.
    pub fn end(
        &self,
        which: impl Fn(&DekPublic, &Username, Option<u64>) -> bool,
        error: &Error,
    ) -> usize {
        let mut sessions = self.sessions();
        let ended: Vec<DekPublic> = sessions
            .iter()
            .filter(|(dek, e)| {
                e.account
                    .as_ref()
                    .is_some_and(|(user, stamp)| which(dek, user, *stamp))
            })
            .map(|(dek, _)| *dek)
            .collect();
        for dek in &ended {
            if let Some(entry) = sessions.remove(dek) {
                entry.kick.fire(Some(error.clone()));
            }
        }
        ended.len()
    }

    /// The accounts live sessions are logged in as, with the credential stamp of each login:
    /// every (user, stamp) pair once.
    pub fn accounts(&self) -> BTreeSet<(Username, Option<u64>)> {
        self.sessions()
            .values()
            .filter_map(|e| e.account.clone())
            .collect()
    }

    /// The live sessions of clients (not the server's own registrations): each DEK and the
    /// user it is logged in as.
    pub fn live(&self) -> Vec<(DekPublic, Username)> {
        self.sessions()
            .iter()
            .filter_map(|(dek, e)| Some((*dek, e.account.as_ref()?.0.clone())))
            .collect()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dek(b: u8) -> DekPublic {
        DekPublic::from_bytes([b; 32])
    }

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[tokio::test]
    async fn push_lowers_the_mark_and_wakes_the_registered_session() {
        let hub = Hub::default();
        let reg = hub.register(dek(1), 7);
        hub.push(&dek(2), 6); // nobody there: nothing happens
        assert_eq!(reg.lag.load(Ordering::Relaxed), NO_LAG);
        hub.push(&dek(1), 9);
        hub.push(&dek(1), 5);
        hub.push(&dek(1), 8);
        assert_eq!(reg.lag.load(Ordering::Relaxed), 5);
        tokio::time::timeout(std::time::Duration::from_secs(1), reg.wake.notified())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn in_a_cluster_a_push_for_a_device_not_here_goes_to_the_other_nodes() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(16);
        hub.set_remote(tx);
        let here = hub.register_session(dek(1), 1, user("alice"), None);
        let outbox = hub.register(dek(3), 2);
        hub.push(&dek(2), 7);
        assert_eq!(rx.try_recv().ok(), Some(Routed::Wake(dek(2), 7)));
        // A device live here is pushed here only.
        let mut offers = here.offers.unwrap();
        hub.push(&dek(1), 9);
        assert!(rx.try_recv().is_err());
        assert!(matches!(offers.try_recv(), Ok(Offered::Durable(9))));
        // From another node: here only, never sent on again.
        assert!(!hub.push_local(&dek(2), 8));
        assert!(rx.try_recv().is_err());
        // The periodic re-read marks every client session (not the server's own).
        hub.poll_all();
        assert_eq!(here.lag.load(Ordering::Relaxed), 1);
        assert_eq!(outbox.lag.load(Ordering::Relaxed), NO_LAG);
        // A revocation closes the session here and is told to the other nodes.
        hub.kick(&dek(1));
        assert_eq!(rx.try_recv().ok(), Some(Routed::Kick(dek(1))));
        assert!(here.kick.ending().is_some());
        hub.kick_local(&dek(4));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_new_registration_kicks_the_old_one() {
        let hub = Hub::default();
        let old = hub.register_session(dek(1), 1, user("alice"), None);
        let _new = hub.register_session(dek(1), 2, user("alice"), None);
        // The kick is stored as a permit, so it is seen even though nobody was waiting.
        tokio::time::timeout(std::time::Duration::from_secs(1), old.kick.notified())
            .await
            .unwrap();
        assert_eq!(old.kick.ending(), None, "replaced, not ended");
        // The old connection's unregister does not remove the new one.
        hub.unregister(&dek(1), 1);
        assert_eq!(hub.len(), 1);
        hub.unregister(&dek(1), 2);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn end_closes_the_selected_sessions_with_the_error() {
        let hub = Hub::default();
        let alice_old = hub.register_session(dek(1), 1, user("alice"), Some(5));
        let alice_new = hub.register_session(dek(2), 2, user("alice"), Some(6));
        let _bob = hub.register_session(dek(3), 3, user("bob"), Some(5));
        let _outbox = hub.register(dek(4), 4);
        assert_eq!(
            hub.accounts().into_iter().collect::<Vec<_>>(),
            [
                (user("alice"), Some(5)),
                (user("alice"), Some(6)),
                (user("bob"), Some(5))
            ]
        );
        let why = Error::new(siren_api::ErrorCode::Internal, "test");
        let ended = hub.end(|_, u, stamp| *u == user("alice") && stamp == Some(5), &why);
        assert_eq!(ended, 1);
        assert_eq!(hub.end(|_, _, _| false, &why), 0);
        tokio::time::timeout(std::time::Duration::from_secs(1), alice_old.kick.notified())
            .await
            .unwrap();
        assert_eq!(alice_old.kick.ending(), Some(why));
        assert_eq!(alice_new.kick.ending(), None);
        assert_eq!(hub.len(), 3, "the outbox is no client's session");
    }
}
