//! The hub: which device (DEK) has a live, ready session right now.
//!
//! After the queue commits items it pushes them to the recipient's live session through the hub,
//! so an online device gets a message without the store being polled. A push never blocks: if the
//! session's small channel is full, the hub records the lowest sequence number it dropped
//! (`lag`), and the session reads the backlog from the store once it catches up. The store, not
//! the hub, is the source of truth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use siren_proto::keys::DekPublic;
use tokio::sync::{Notify, mpsc};

/// Queue items pushed to a live session: `(seq, encoded queue item)`.
pub type Push = (u64, Arc<[u8]>);

/// Capacity of each session's push channel.
const PUSH_CAPACITY: usize = 32;

/// No lag recorded.
pub const NO_LAG: u64 = u64::MAX;

struct Entry {
    tx: mpsc::Sender<Push>,
    lag: Arc<AtomicU64>,
    kick: Arc<Notify>,
    conn: u64,
}

/// Live sessions by DEK.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<DekPublic, Entry>>,
}

/// What a session gets when it registers.
pub struct Registration {
    /// Pushed items.
    pub rx: mpsc::Receiver<Push>,
    /// Lowest seq dropped because the channel was full, or [`NO_LAG`].
    pub lag: Arc<AtomicU64>,
    /// Notified when the session must close (replaced by a resumption, or its DEK revoked).
    pub kick: Arc<Notify>,
}

impl Hub {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as the live session of `dek`, kicking any earlier one.
    pub fn register(&self, dek: DekPublic, conn: u64) -> Registration {
        let (tx, rx) = mpsc::channel(PUSH_CAPACITY);
        let lag = Arc::new(AtomicU64::new(NO_LAG));
        let kick = Arc::new(Notify::new());
        let old = self.sessions().insert(
            dek,
            Entry {
                tx,
                lag: lag.clone(),
                kick: kick.clone(),
                conn,
            },
        );
        if let Some(old) = old {
            old.kick.notify_one();
        }
        Registration { rx, lag, kick }
    }

    /// Removes `conn`'s registration (if it is still the current one for `dek`).
    pub fn unregister(&self, dek: &DekPublic, conn: u64) {
        let mut sessions = self.sessions();
        if sessions.get(dek).is_some_and(|e| e.conn == conn) {
            sessions.remove(dek);
        }
    }

    /// Offers a committed item to `dek`'s live session, if any.
    pub fn push(&self, dek: &DekPublic, seq: u64, item: Arc<[u8]>) {
        let sessions = self.sessions();
        let Some(entry) = sessions.get(dek) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = entry.tx.try_send((seq, item)) {
            entry.lag.fetch_min(seq, Ordering::Relaxed);
        }
    }

    /// Closes `dek`'s live session, if any (its DEK was revoked).
    pub fn kick(&self, dek: &DekPublic) {
        if let Some(entry) = self.sessions().remove(dek) {
            entry.kick.notify_one();
        }
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

    #[tokio::test]
    async fn push_reaches_the_registered_session_and_overflow_is_recorded() {
        let hub = Hub::default();
        let mut reg = hub.register(dek(1), 7);
        hub.push(&dek(1), 5, Arc::from(&b"x"[..]));
        hub.push(&dek(2), 6, Arc::from(&b"y"[..])); // nobody there: dropped
        assert_eq!(reg.rx.recv().await.unwrap().0, 5);
        for seq in 10..10 + PUSH_CAPACITY as u64 + 3 {
            hub.push(&dek(1), seq, Arc::from(&b"z"[..]));
        }
        assert_eq!(reg.lag.load(Ordering::Relaxed), 10 + PUSH_CAPACITY as u64);
    }

    #[tokio::test]
    async fn a_new_registration_kicks_the_old_one() {
        let hub = Hub::default();
        let old = hub.register(dek(1), 1);
        let _new = hub.register(dek(1), 2);
        // The kick is stored as a permit, so it is seen even though nobody was waiting.
        tokio::time::timeout(std::time::Duration::from_secs(1), old.kick.notified())
            .await
            .unwrap();
        // The old connection's unregister does not remove the new one.
        hub.unregister(&dek(1), 1);
        assert_eq!(hub.len(), 1);
        hub.unregister(&dek(1), 2);
        assert!(hub.is_empty());
    }
}
