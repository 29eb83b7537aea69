//! The hub: which device (DEK) has a live, ready session right now.
//!
//! After the queue commits items it tells the recipient's live session through the hub, so an
//! online device gets a message without the store being polled. A push never blocks and carries
//! no data: it lowers the session's mark (`lag`, the lowest sequence number committed since the
//! session last looked) and wakes it; the session then reads from the store from that number on.
//! The store is the source of truth; an idle session costs the hub two small `Arc`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use siren_proto::keys::DekPublic;
use tokio::sync::Notify;

/// No lag recorded.
pub const NO_LAG: u64 = u64::MAX;

struct Entry {
    lag: Arc<AtomicU64>,
    kick: KickSignal,
    wake: Arc<Notify>,
    conn: u64,
}

/// Why a live session is told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// A newer connection resumed the same session.
    Replaced,
    /// Its DEK was revoked.
    Revoked,
}

/// The signal that tells a session to close, and why.
#[derive(Clone, Default)]
pub struct KickSignal {
    notify: Arc<Notify>,
    revoked: Arc<std::sync::atomic::AtomicBool>,
}

impl KickSignal {
    fn kick(&self, why: Kick) {
        self.revoked
            .store(why == Kick::Revoked, std::sync::atomic::Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits for the kick (one that came before the wait counts too).
    pub async fn wait(&self) -> Kick {
        self.notify.notified().await;
        if self.revoked.load(std::sync::atomic::Ordering::Acquire) {
            Kick::Revoked
        } else {
            Kick::Replaced
        }
    }
}

/// Live sessions by DEK.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<DekPublic, Entry>>,
}

/// What a session gets when it registers.
pub struct Registration {
    /// Lowest seq committed since the session last looked, or [`NO_LAG`].
    pub lag: Arc<AtomicU64>,
    /// Notified after `lag` was lowered.
    pub wake: Arc<Notify>,
    /// Notified when the session must close (replaced by a resumption, or its DEK revoked).
    pub kick: KickSignal,
}

impl Hub {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers connection `conn` as the live session of `dek`, kicking any earlier one.
    pub fn register(&self, dek: DekPublic, conn: u64) -> Registration {
        let lag = Arc::new(AtomicU64::new(NO_LAG));
        let kick = KickSignal::default();
        let wake = Arc::new(Notify::new());
        let old = self.sessions().insert(
            dek,
            Entry {
                lag: lag.clone(),
                kick: kick.clone(),
                wake: wake.clone(),
                conn,
            },
        );
        if let Some(old) = old {
            old.kick.kick(Kick::Replaced);
        }
        Registration { lag, kick, wake }
    }

    /// Removes `conn`'s registration (if it is still the current one for `dek`).
    pub fn unregister(&self, dek: &DekPublic, conn: u64) {
        let mut sessions = self.sessions();
        if sessions.get(dek).is_some_and(|e| e.conn == conn) {
            sessions.remove(dek);
        }
    }

    /// Tells `dek`'s live session, if any, that item `seq` is committed.
    pub fn push(&self, dek: &DekPublic, seq: u64) {
        let sessions = self.sessions();
        if let Some(entry) = sessions.get(dek) {
            entry.lag.fetch_min(seq, Ordering::Relaxed);
            entry.wake.notify_one();
        }
    }

    /// Closes `dek`'s live session, if any (its DEK was revoked).
    pub fn kick(&self, dek: &DekPublic) {
        if let Some(entry) = self.sessions().remove(dek) {
            entry.kick.kick(Kick::Revoked);
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
    async fn a_new_registration_kicks_the_old_one() {
        let hub = Hub::default();
        let old = hub.register(dek(1), 1);
        let _new = hub.register(dek(1), 2);
        // The kick is stored as a permit, so it is seen even though nobody was waiting.
        let why = tokio::time::timeout(std::time::Duration::from_secs(1), old.kick.wait())
            .await
            .unwrap();
        assert_eq!(why, Kick::Replaced);
        // The old connection's unregister does not remove the new one.
        hub.unregister(&dek(1), 1);
        assert_eq!(hub.len(), 1);
        hub.unregister(&dek(1), 2);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn a_revocation_kick_says_so() {
        let hub = Hub::default();
        let reg = hub.register(dek(1), 1);
        hub.kick(&dek(1));
        let why = tokio::time::timeout(std::time::Duration::from_secs(1), reg.kick.wait())
            .await
            .unwrap();
        assert_eq!(why, Kick::Revoked);
    }
}
