//! The hub: which device (DEK) has a live, ready session right now.
//!
//! After the queue commits items it tells the recipient's live session through the hub, so an
//! online device gets a message without the store being polled. A push never blocks and carries
//! no data: it lowers the session's mark (`lag`, the lowest sequence number committed since the
//! session last looked) and wakes it; the session then reads from the store from that number on.
//! The store is the source of truth. Everything for one live session goes through its
//! [`Mailbox`] (one small allocation: the mark, offers, signals, the order to close, one
//! wake-up).
//!
//! **The online fast path** (PROTOCOL.md §13): a store that numbers items before its durable
//! write announces the numbers, and the queue then *offers* each item to its device's live
//! session through the hub ([`Hub::offer`]): a bounded queue per session carrying the number
//! and a shared reference to the item's bytes (no copy). The session may deliver it at once,
//! while the write proceeds. After the commit, the push of an item its device has not already
//! acknowledged (`crate::deferred`) queues a note behind the offer that the item is
//! durable (or, if the queue is full, lowers the session's mark so that it reads the store);
//! see `session::delivery`. An offer that does not fit is dropped: the item comes
//! the slow way, through the store.
//!
//! A peer's outbox worker registers the same way ([`Hub::register_outbox`]) while it is on the
//! outbox's fast path (`crate::federation::early`): commits for that peer are then offered to
//! it like items to a live device, and the peer's acknowledgement settles them.
//!
//! Ephemeral signals (PROTOCOL.md §14, [`Hub::signal`]) go to the same mailbox; one for a
//! session that does not keep up is dropped.
//!
//! The hub also knows as whom each session is logged in (the user and the credential stamp of
//! its login), so that the server can end every live session of an account that was deleted or
//! whose password changed ([`Hub::end`], used by [`crate::accounts`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use siren_api::{Error, Username};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use tokio::sync::mpsc;

pub use crate::mailbox::{Mailbox, NO_LAG};

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

struct Entry {
    mailbox: Arc<Mailbox>,
    conn: u64,
    /// Who is logged in, and the credential stamp of that login (`None`: not checked); `None`
    /// for a peer's outbox worker, which takes offers like a session but is no login.
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

impl Hub {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn`, logged in as `user` with the credential stamp `stamp`
    /// (which [`Hub::end`] can select), as the live session of `dek`, kicking any earlier one.
    /// The session waits on the mailbox returned.
    pub fn register_session(
        &self,
        dek: DekPublic,
        conn: u64,
        user: Username,
        stamp: Option<u64>,
    ) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::default());
        let old = self.sessions().insert(
            dek,
            Entry {
                mailbox: mailbox.clone(),
                conn,
                account: Some((user, stamp)),
            },
        );
        if let Some(old) = old {
            old.mailbox.kick(None);
        }
        mailbox
    }

    /// Registers a peer's outbox worker as the live consumer of the outbox queue `key`
    /// (`crate::federation::outbox`): commits for it are then offered to it before they are
    /// written, as to a live session. Not a session: no account, never ended or counted as one.
    pub fn register_outbox(&self, key: DekPublic) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::default());
        let old = self.sessions().insert(
            key,
            Entry {
                mailbox: mailbox.clone(),
                conn: 0,
                account: None,
            },
        );
        if let Some(old) = old {
            old.mailbox.kick(None);
        }
        mailbox
    }

    /// Removes the outbox worker's registration `mailbox` for `key` (if it is still the
    /// current one).
    pub fn unregister_outbox(&self, key: &DekPublic, mailbox: &Arc<Mailbox>) {
        let mut sessions = self.sessions();
        if sessions
            .get(key)
            .is_some_and(|e| Arc::ptr_eq(&e.mailbox, mailbox))
        {
            sessions.remove(key);
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
        if !entry.mailbox.offer(Offered::Durable(seq)) {
            entry.mailbox.lower_lag(seq);
        }
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
            entry.mailbox.lower_lag(1);
        }
    }

    /// Whether every one of `devices` has a live client session (to offer items to).
    pub fn all_live<'a>(&self, mut devices: impl Iterator<Item = &'a DekPublic>) -> bool {
        let sessions = self.sessions();
        devices.all(|dek| sessions.contains_key(dek))
    }

    /// Offers items being enqueued (`items[i]` numbered `seqs[i]`) to the live sessions of
    /// their devices. Never blocks: an offer that does not fit is dropped.
    pub fn offer(&self, items: &OfferedItems, seqs: &[u64]) {
        let sessions = self.sessions();
        for (index, (item, &seq)) in items.iter().zip(seqs).enumerate() {
            let dek = DekPublic::from_bytes(item.device);
            if let Some(entry) = sessions.get(&dek) {
                let _ = entry.mailbox.offer(Offered::Item(Offer {
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
            entry.mailbox.kick(Some(Error::new(
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
                entry.mailbox.kick(Some(error.clone()));
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

    /// The live sessions: each DEK and the user it is logged in as.
    pub fn live(&self) -> Vec<(DekPublic, Username)> {
        self.sessions()
            .iter()
            .filter_map(|(dek, e)| Some((*dek, e.account.as_ref()?.0.clone())))
            .collect()
    }

    /// Hands the ephemeral signal `env` to the live session of its `to_dek`
    /// (PROTOCOL.md §14); in a cluster, one not live here goes to the other nodes. Returns
    /// whether a session here took it (false: none is live here, or it is not keeping up).
    pub fn signal(&self, env: Envelope) -> bool {
        let mailbox = match self.sessions().get(&env.to_dek) {
            Some(entry) => entry.mailbox.clone(),
            None => {
                if let Some(remote) = self.remote.get() {
                    let _ = remote.try_send(Routed::Signal(Box::new(env)));
                }
                return false;
            }
        };
        mailbox.signal(Box::new(env))
    }

    /// [`Hub::signal`] to this node's sessions only (a signal from another node).
    pub fn signal_local(&self, env: Envelope) -> bool {
        let mailbox = self.sessions().get(&env.to_dek).map(|e| e.mailbox.clone());
        mailbox.is_some_and(|m| m.signal(Box::new(env)))
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.sessions()
            .values()
            .filter(|e| e.account.is_some())
            .count()
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

    async fn woken(mailbox: &Mailbox) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(1), mailbox.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn push_notes_durability_behind_the_offer_or_lowers_the_mark_and_wakes_the_session() {
        let hub = Hub::default();
        let reg = hub.register_session(dek(1), 7, user("alice"), None);
        hub.push(&dek(2), 6); // nobody there: nothing happens
        assert_eq!(reg.lag(), NO_LAG);
        hub.push(&dek(1), 9);
        assert!(woken(&reg).await);
        assert!(matches!(reg.next_offer(), Some(Offered::Durable(9))));
        // Once the queue is full, pushes lower the mark instead.
        while reg.offer(Offered::Durable(0)) {}
        hub.push(&dek(1), 9);
        hub.push(&dek(1), 5);
        hub.push(&dek(1), 8);
        assert_eq!(reg.lag(), 5);
        assert!(woken(&reg).await);
    }

    #[tokio::test]
    async fn in_a_cluster_a_push_for_a_device_not_here_goes_to_the_other_nodes() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(16);
        hub.set_remote(tx);
        let here = hub.register_session(dek(1), 1, user("alice"), None);
        hub.push(&dek(2), 7);
        assert_eq!(rx.try_recv().ok(), Some(Routed::Wake(dek(2), 7)));
        // A device live here is pushed here only.
        hub.push(&dek(1), 9);
        assert!(rx.try_recv().is_err());
        assert!(matches!(here.next_offer(), Some(Offered::Durable(9))));
        // From another node: here only, never sent on again.
        assert!(!hub.push_local(&dek(2), 8));
        assert!(rx.try_recv().is_err());
        // The periodic re-read marks every session.
        hub.poll_all();
        assert_eq!(here.lag(), 1);
        // A revocation closes the session here and is told to the other nodes.
        hub.kick(&dek(1));
        assert_eq!(rx.try_recv().ok(), Some(Routed::Kick(dek(1))));
        assert!(matches!(here.kicked(), Some(Some(_))));
        hub.kick_local(&dek(4));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn signals_reach_the_live_session_only_and_are_dropped_when_it_lags() {
        let hub = Hub::default();
        let env = |to: u8| crate::testing::envelope("a.test", to, 20);
        assert!(!hub.signal(env(3)), "nobody is live");
        let old = hub.register_session(dek(3), 1, user("alice"), None);
        let new = hub.register_session(dek(3), 2, user("alice"), None);
        // The old connection's unregister leaves the new one in place.
        hub.unregister(&dek(3), 1);
        assert!(hub.signal(env(3)));
        assert_eq!(new.next_signal().map(|e| *e), Some(env(3)));
        assert!(old.next_signal().is_none());
        // A session that does not read loses what does not fit.
        let taken = (0..crate::mailbox::SIGNALS + 5)
            .filter(|_| hub.signal(env(3)))
            .count();
        assert_eq!(taken, crate::mailbox::SIGNALS);
        assert!(!hub.signal(env(9)), "another device: nobody there");
        assert!(!hub.signal_local(env(9)));
        // In a cluster, one for a device not live here goes to the other nodes; one from
        // another node is never sent on.
        let (tx, mut rx) = mpsc::channel(4);
        hub.set_remote(tx);
        assert!(!hub.signal(env(9)));
        assert_eq!(rx.try_recv().ok(), Some(Routed::Signal(Box::new(env(9)))));
        assert!(!hub.signal_local(env(9)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_new_registration_kicks_the_old_one() {
        let hub = Hub::default();
        let old = hub.register_session(dek(1), 1, user("alice"), None);
        let _new = hub.register_session(dek(1), 2, user("alice"), None);
        // The kick stays, so it is seen even though nobody was waiting.
        assert!(woken(&old).await);
        assert_eq!(old.kicked(), Some(None), "replaced, not ended");
        // The old connection's unregister does not remove the new one.
        hub.unregister(&dek(1), 1);
        assert_eq!(hub.len(), 1);
        hub.unregister(&dek(1), 2);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn an_outbox_worker_takes_offers_but_is_no_session() {
        let hub = Hub::default();
        let _alice = hub.register_session(dek(1), 1, user("alice"), None);
        let outbox = hub.register_outbox(dek(9));
        assert!(hub.all_live([dek(1), dek(9)].iter()));
        let items: OfferedItems = Arc::from(vec![siren_api::storage::NewQueueItem {
            device: *dek(9).as_bytes(),
            expires: 0,
            bytes: vec![1, 2, 3],
        }]);
        hub.offer(&items, &[7]);
        assert!(woken(&outbox).await);
        assert!(matches!(outbox.next_offer(), Some(Offered::Item(o)) if o.seq == 7));
        // Not a session: not counted, listed or ended.
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.live(), [(dek(1), user("alice"))]);
        assert_eq!(hub.accounts().len(), 1);
        let why = Error::new(siren_api::ErrorCode::Internal, "test");
        assert_eq!(hub.end(|_, _, _| true, &why), 1);
        assert_eq!(outbox.kicked(), None);
        // Only its own registration is removed.
        let newer = hub.register_outbox(dek(9));
        assert_eq!(outbox.kicked(), Some(None), "replaced");
        hub.unregister_outbox(&dek(9), &outbox);
        assert!(hub.all_live([dek(9)].iter()));
        hub.unregister_outbox(&dek(9), &newer);
        assert!(!hub.all_live([dek(9)].iter()));
    }

    #[tokio::test]
    async fn end_closes_the_selected_sessions_with_the_error() {
        let hub = Hub::default();
        let alice_old = hub.register_session(dek(1), 1, user("alice"), Some(5));
        let alice_new = hub.register_session(dek(2), 2, user("alice"), Some(6));
        let _bob = hub.register_session(dek(3), 3, user("bob"), Some(5));
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
        assert!(woken(&alice_old).await);
        assert_eq!(alice_old.kicked(), Some(Some(why)));
        assert_eq!(alice_new.kicked(), None);
        assert_eq!(hub.len(), 2);
    }
}
