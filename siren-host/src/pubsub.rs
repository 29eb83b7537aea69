//! Publish/subscribe: presence, only to sessions that asked for it, never stored or replayed
//! (PROTOCOL.md §14).
//!
//! A subscription belongs to one live session and ends with it. An event goes to the sessions
//! subscribed at the moment it is published; a session that is slow to read loses presence
//! updates rather than slowing anyone down (its small event channel is full: the event is
//! dropped). When a user's last ready session closes, `offline` is published for them.
//!
//! The presence a local user last published is kept in memory while they have a ready session,
//! and sent once to each new subscription (`offline` when they have none), so that a subscriber
//! knows the current state without waiting for the next change. Nothing else is kept: no past
//! change is ever sent again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use siren_api::{Uid, Username};
use siren_proto::message::{Presence, PresenceStatus, ServerMessage, Topic};
use tokio::sync::mpsc;

/// Events waiting for one session.
const EVENTS: usize = 16;

/// A session's end of its subscriptions.
pub struct Inbox {
    /// Events for this session.
    pub rx: mpsc::Receiver<Box<ServerMessage>>,
}

struct Subscriber {
    uid: Uid,
    tx: mpsc::Sender<Box<ServerMessage>>,
}

#[derive(Default)]
struct State {
    /// Publisher → (connection → subscriber).
    subs: HashMap<Uid, HashMap<u64, Subscriber>>,
    /// Connection → the publishers it subscribed to.
    by_conn: HashMap<u64, BTreeSet<Uid>>,
    /// Connection → its sender, created on its first subscription.
    senders: HashMap<u64, mpsc::Sender<Box<ServerMessage>>>,
    /// Ready sessions per local user.
    online: HashMap<Username, usize>,
    /// What each local user with a ready session last published (not `offline`).
    current: HashMap<Username, Presence>,
}

/// Presence subscriptions of live sessions.
#[derive(Default)]
pub struct PubSub {
    state: Mutex<State>,
}

impl PubSub {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes connection `conn` (user `uid`) to `publisher`'s presence. Returns the inbox to
    /// read events from when this is the connection's first subscription.
    pub fn subscribe(&self, conn: u64, uid: &Uid, publisher: &Uid) -> Option<Inbox> {
        let mut st = self.state();
        let mut inbox = None;
        let tx = match st.senders.get(&conn) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel(EVENTS);
                st.senders.insert(conn, tx.clone());
                inbox = Some(Inbox { rx });
                tx
            }
        };
        st.subs.entry(publisher.clone()).or_default().insert(
            conn,
            Subscriber {
                uid: uid.clone(),
                tx,
            },
        );
        st.by_conn
            .entry(conn)
            .or_default()
            .insert(publisher.clone());
        inbox
    }

    /// Whether connection `conn` is subscribed to `publisher`.
    pub fn is_subscribed(&self, conn: u64, publisher: &Uid) -> bool {
        self.state()
            .by_conn
            .get(&conn)
            .is_some_and(|set| set.contains(publisher))
    }

    /// How many publishers connection `conn` is subscribed to.
    pub fn subscription_count(&self, conn: u64) -> usize {
        self.state().by_conn.get(&conn).map_or(0, BTreeSet::len)
    }

    /// How many of `topics` (counted once each) connection `conn` is not subscribed to yet.
    pub fn new_topics(&self, conn: u64, topics: &[Topic]) -> usize {
        let st = self.state();
        let current = st.by_conn.get(&conn);
        let mut seen = BTreeSet::new();
        topics
            .iter()
            .map(Topic::publisher)
            .filter(|p| current.is_none_or(|c| !c.contains(*p)) && seen.insert(*p))
            .count()
    }

    /// Ends one subscription.
    pub fn unsubscribe(&self, conn: u64, publisher: &Uid) {
        let mut st = self.state();
        if let Some(m) = st.subs.get_mut(publisher) {
            m.remove(&conn);
            if m.is_empty() {
                st.subs.remove(publisher);
            }
        }
        if let Some(set) = st.by_conn.get_mut(&conn) {
            set.remove(publisher);
        }
    }

    /// The sessions subscribed to `publisher` right now, by subscriber UID.
    pub fn subscribers(&self, publisher: &Uid) -> Vec<(Uid, mpsc::Sender<Box<ServerMessage>>)> {
        self.state()
            .subs
            .get(publisher)
            .map(|m| m.values().map(|s| (s.uid.clone(), s.tx.clone())).collect())
            .unwrap_or_default()
    }

    /// Sends an event to one subscriber; drops it if the session is not keeping up.
    pub fn deliver(tx: &mpsc::Sender<Box<ServerMessage>>, publisher: &Uid, presence: &Presence) {
        let _ = tx.try_send(Box::new(ServerMessage::Event {
            topic: Topic::Presence {
                uid: publisher.clone(),
            },
            from: publisher.clone(),
            presence: presence.clone(),
        }));
    }

    /// Sends `publisher`'s presence, `presence`, to connection `conn` alone (the current state
    /// a new subscription starts from); nothing if `conn` has no subscriptions.
    pub fn deliver_to(&self, conn: u64, publisher: &Uid, presence: &Presence) {
        let tx = self.state().senders.get(&conn).cloned();
        if let Some(tx) = tx {
            Self::deliver(&tx, publisher, presence);
        }
    }

    /// Local user `user` published `presence`: it is their current state until the next one or
    /// until their last session closes.
    pub fn published(&self, user: &Username, presence: &Presence) {
        let mut st = self.state();
        if presence.status == PresenceStatus::Offline || !st.online.contains_key(user) {
            st.current.remove(user);
        } else {
            st.current.insert(user.clone(), presence.clone());
        }
    }

    /// Local user `user`'s current presence: what they last published while they have a ready
    /// session, `offline` otherwise.
    pub fn current(&self, user: &Username) -> Presence {
        self.state()
            .current
            .get(user)
            .cloned()
            .unwrap_or_else(Self::offline)
    }

    /// Whether local user `user` has a ready session on this node.
    pub fn is_online(&self, user: &Username) -> bool {
        self.state().online.contains_key(user)
    }

    /// A ready session of `user` opened.
    pub fn session_ready(&self, user: &Username) {
        *self.state().online.entry(user.clone()).or_default() += 1;
    }

    /// Connection `conn` closed: its subscriptions end. Returns true if it was the last ready
    /// session of `user` (then the caller publishes `offline`).
    pub fn session_closed(&self, conn: u64, user: Option<&Username>, was_ready: bool) -> bool {
        let mut st = self.state();
        if let Some(publishers) = st.by_conn.remove(&conn) {
            for p in publishers {
                if let Some(m) = st.subs.get_mut(&p) {
                    m.remove(&conn);
                    if m.is_empty() {
                        st.subs.remove(&p);
                    }
                }
            }
        }
        st.senders.remove(&conn);
        let (Some(user), true) = (user, was_ready) else {
            return false;
        };
        match st.online.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                st.online.remove(user);
                st.current.remove(user);
                true
            }
            None => false,
        }
    }

    /// The presence published when a user's last session closes.
    pub fn offline() -> Presence {
        Presence {
            status: PresenceStatus::Offline,
            text: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[tokio::test]
    async fn events_reach_current_subscribers_only() {
        let ps = PubSub::default();
        let alice = uid("alice@a.test");
        let mut inbox = ps.subscribe(1, &uid("bob@a.test"), &alice).unwrap();
        assert!(
            ps.subscribe(1, &uid("bob@a.test"), &uid("carol@a.test"))
                .is_none()
        );
        let presence = Presence {
            status: PresenceStatus::Away,
            text: Some("lunch".into()),
        };
        for (_, tx) in ps.subscribers(&alice) {
            PubSub::deliver(&tx, &alice, &presence);
        }
        assert!(matches!(
            inbox.rx.recv().await.as_deref(),
            Some(ServerMessage::Event { .. })
        ));
        assert!(ps.is_subscribed(1, &alice) && !ps.is_subscribed(2, &alice));
        ps.unsubscribe(1, &alice);
        assert!(ps.subscribers(&alice).is_empty());
        assert!(!ps.is_subscribed(1, &alice));
        // Closing drops the remaining subscriptions.
        assert!(!ps.session_closed(1, None, false));
        assert!(ps.subscribers(&uid("carol@a.test")).is_empty());
    }

    #[test]
    fn last_ready_session_closing_is_reported() {
        let ps = PubSub::default();
        let alice = Username::parse("alice").unwrap();
        ps.session_ready(&alice);
        ps.session_ready(&alice);
        assert!(!ps.session_closed(1, Some(&alice), true));
        assert!(ps.session_closed(2, Some(&alice), true));
        assert!(!ps.session_closed(3, Some(&alice), false));
    }

    #[test]
    fn the_current_state_lasts_while_a_session_is_ready() {
        let ps = PubSub::default();
        let alice = Username::parse("alice").unwrap();
        let busy = Presence {
            status: PresenceStatus::Busy,
            text: Some("meeting".into()),
        };
        // Published without a ready session (cannot happen in a session): not kept.
        ps.published(&alice, &busy);
        assert_eq!(ps.current(&alice), PubSub::offline());
        ps.session_ready(&alice);
        ps.session_ready(&alice);
        ps.published(&alice, &busy);
        assert_eq!(ps.current(&alice), busy);
        // One of two sessions closing keeps it; the last one forgets it.
        assert!(!ps.session_closed(1, Some(&alice), true));
        assert_eq!(ps.current(&alice), busy);
        assert!(ps.session_closed(2, Some(&alice), true));
        assert_eq!(ps.current(&alice), PubSub::offline());
        // `offline` published by a live session is its current state too.
        ps.session_ready(&alice);
        ps.published(&alice, &busy);
        ps.published(&alice, &PubSub::offline());
        assert_eq!(ps.current(&alice), PubSub::offline());
    }
}
