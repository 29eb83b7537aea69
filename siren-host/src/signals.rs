//! Ephemeral signals (PROTOCOL.md §14): envelopes such as `typing` that reach only the
//! recipient device's live session at the moment they arrive.
//!
//! Nothing about a signal is written to a store or a queue. A ready session registers here by
//! its DEK and gets a small channel; a signal for a DEK without a live session, or for a session
//! whose channel is full (it does not read fast enough), is dropped. Before handing a signal
//! over, the recipient's roster is asked ([`crate::roster::Rosters::admit_signal`]): nothing from
//! a blocked user, nothing from a non-contact to a user with a roster (unless the non-contact
//! policy is `accept`). The sender is answered the same whether or not anything was delivered.

use std::collections::HashMap;
use std::sync::Mutex;

use siren_api::ServerName;
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use tokio::sync::mpsc;

use crate::hub::Routed;
use crate::shared::Shared;

/// Signals waiting for one session; beyond this they are dropped.
const WAITING: usize = 32;

/// A session's end of its signals. Boxed: a channel allocates room for 32 items at once, and
/// an idle session should hold 32 pointers, not 32 envelopes (about 10 KiB).
pub struct Inbox {
    /// Signals for this session, addressed to its DEK.
    pub rx: mpsc::Receiver<Box<Envelope>>,
}

/// Each live session's connection id and sender, by DEK.
type Live = HashMap<DekPublic, (u64, mpsc::Sender<Box<Envelope>>)>;

/// The live sessions that can receive signals, by DEK.
#[derive(Default)]
pub struct Signals {
    live: Mutex<Live>,
}

impl Signals {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as `dek`'s live session (replacing an earlier one).
    pub fn register(&self, dek: DekPublic, conn: u64) -> Inbox {
        let (tx, rx) = mpsc::channel(WAITING);
        self.live().insert(dek, (conn, tx));
        Inbox { rx }
    }

    /// Removes `conn`'s registration, if it is still the current one for `dek`.
    pub fn unregister(&self, dek: &DekPublic, conn: u64) {
        let mut live = self.live();
        if live.get(dek).is_some_and(|(c, _)| *c == conn) {
            live.remove(dek);
        }
    }

    /// Hands `env` to the live session of its `to_dek`; in a cluster (`remote`), one not live
    /// here goes to the other nodes. Returns whether a session here took it (false: none is
    /// live here, or it is not keeping up).
    pub fn hand_over(&self, env: Envelope, remote: Option<&mpsc::Sender<Routed>>) -> bool {
        let tx = match self.live().get(&env.to_dek) {
            Some((_, tx)) => tx.clone(),
            None => {
                if let Some(remote) = remote {
                    let _ = remote.try_send(Routed::Signal(Box::new(env)));
                }
                return false;
            }
        };
        tx.try_send(Box::new(env)).is_ok()
    }

    /// How many sessions are registered.
    pub fn len(&self) -> usize {
        self.live().len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Delivers a signal to a device of a local user, if the recipient's roster admits the sender
/// and the device has a live session; otherwise drops it. The caller checked the sender.
pub async fn deliver_local(shared: &Shared, env: Envelope) {
    match shared.rosters.admit_signal(&env.to, &env.from).await {
        Ok(true) => {
            shared.signals.hand_over(env, shared.hub.remote());
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "a signal was dropped: the roster is unreadable"),
    }
}

/// Signals a peer server sent over its link (PROTOCOL.md §17): each must come from one of the
/// peer's users and be addressed to one of ours; those that are not are dropped (a signal has no
/// answer) and logged. The rest are delivered like local ones.
pub async fn accept_from_peer(shared: &Shared, peer: &ServerName, msgs: Vec<Envelope>) {
    for env in msgs {
        if env.from.server() != peer {
            tracing::warn!(%peer, sender = %env.from, "a peer sent a signal from another server's user; dropped");
            continue;
        }
        if env.to.server() != &shared.config().server.name {
            tracing::warn!(%peer, recipient = %env.to, "a peer sent a signal for a user of another server; dropped");
            continue;
        }
        deliver_local(shared, env).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(to_dek: u8) -> Envelope {
        crate::testing::envelope("a.test", to_dek, 20)
    }

    #[tokio::test]
    async fn signals_reach_the_live_session_only_and_are_dropped_when_it_lags() {
        let signals = Signals::default();
        assert!(!signals.hand_over(env(3), None), "nobody is live");
        let mut old = signals.register(DekPublic::from_bytes([3; 32]), 1);
        let mut new = signals.register(DekPublic::from_bytes([3; 32]), 2);
        // The old connection's unregister leaves the new one in place.
        signals.unregister(&DekPublic::from_bytes([3; 32]), 1);
        assert!(signals.hand_over(env(3), None));
        assert_eq!(new.rx.recv().await.map(|e| *e), Some(env(3)));
        assert!(old.rx.try_recv().is_err());
        // A session that does not read loses what does not fit.
        let taken = (0..WAITING + 5)
            .filter(|_| signals.hand_over(env(3), None))
            .count();
        assert_eq!(taken, WAITING);
        assert!(
            !signals.hand_over(env(9), None),
            "another device: nobody there"
        );
        signals.unregister(&DekPublic::from_bytes([3; 32]), 2);
        assert!(signals.is_empty());
        // In a cluster, one for a device not live here goes to the other nodes.
        let (tx, mut rx) = mpsc::channel(4);
        assert!(!signals.hand_over(env(9), Some(&tx)));
        assert_eq!(rx.try_recv().ok(), Some(Routed::Signal(Box::new(env(9)))));
    }
}
