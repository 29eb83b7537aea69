//! A live session's mailbox: everything other tasks tell one ready client session, behind one
//! lock and one wake-up.
//!
//! The queue's offers and durability notes, the mark of the lowest number committed since the
//! session last looked (`lag`), ephemeral signals and the order to close all land here, and the
//! session's loop waits on one [`Notify`] for all of them. Nothing here blocks the teller: what
//! does not fit is refused and the teller falls back (an offer comes through the store, a
//! durability note lowers the mark, a signal is dropped).
//!
//! One small allocation per live session, and the queues hold no room until something is in
//! them: an idle session of a busy server costs a few hundred bytes here, where one bounded
//! channel per kind of event used to cost kilobytes (a tokio channel allocates a block of 32
//! slots when it is created).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use siren_api::Error;
use siren_proto::envelope::Envelope;
use tokio::sync::Notify;

use crate::hub::Offered;

/// No lag recorded.
pub const NO_LAG: u64 = u64::MAX;

/// Offers and notes one session can hold before it reads them (beyond this they are refused).
pub const OFFERS: usize = 512;

/// Signals waiting for one session; beyond this they are dropped.
pub const SIGNALS: usize = 32;

/// Room a drained queue keeps; a larger one (after a burst) is given back.
const KEEP: usize = 16;

/// What other tasks tell one live session.
pub struct Mailbox {
    /// Lowest seq committed since the session last looked, or [`NO_LAG`].
    lag: AtomicU64,
    /// Notified after anything below changed.
    notify: Notify,
    slots: Mutex<Slots>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            lag: AtomicU64::new(NO_LAG),
            notify: Notify::new(),
            slots: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Slots {
    /// Set once the session must close: `Some(error)` when it is ended (the error is sent
    /// before closing and the session is not kept resumable), `None` when replaced.
    kicked: Option<Option<Error>>,
    offers: VecDeque<Offered>,
    signals: VecDeque<Box<Envelope>>,
}

/// Pops the front of `queue`, giving back the room of a drained queue grown by a burst.
fn pop<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let front = queue.pop_front();
    if queue.is_empty() && queue.capacity() > KEEP {
        queue.shrink_to(KEEP);
    }
    front
}

impl Mailbox {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Single pushes and pops: a panic while holding the lock cannot leave it inconsistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lowers the mark to `seq` and wakes the session (it then reads its queue from there).
    pub fn lower_lag(&self, seq: u64) {
        self.lag.fetch_min(seq, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Takes the mark (the session is about to read from it), leaving [`NO_LAG`].
    pub fn take_lag(&self) -> u64 {
        self.lag.swap(NO_LAG, Ordering::Relaxed)
    }

    /// The mark, without taking it.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Queues an offer or a durability note; false (nothing queued) when [`OFFERS`] wait.
    pub fn offer(&self, offered: Offered) -> bool {
        self.queue(|slots| &mut slots.offers, offered, OFFERS)
    }

    /// Queues `item` on the queue `which` picks unless `max` wait there, then wakes the session.
    fn queue<T>(
        &self,
        which: impl FnOnce(&mut Slots) -> &mut VecDeque<T>,
        item: T,
        max: usize,
    ) -> bool {
        {
            let mut slots = self.slots();
            let queue = which(&mut slots);
            if queue.len() >= max {
                return false;
            }
            queue.push_back(item);
        }
        self.notify.notify_one();
        true
    }

    /// The oldest waiting offer or note.
    pub fn next_offer(&self) -> Option<Offered> {
        pop(&mut self.slots().offers)
    }

    /// Queues a signal; false (dropped) when [`SIGNALS`] wait.
    pub fn signal(&self, env: Box<Envelope>) -> bool {
        self.queue(|slots| &mut slots.signals, env, SIGNALS)
    }

    /// The oldest waiting signal.
    pub fn next_signal(&self) -> Option<Box<Envelope>> {
        pop(&mut self.slots().signals)
    }

    /// Tells the session to close: replaced (`None`) or ended with `ending`. An ending is
    /// never downgraded to a replacement by a later kick.
    pub fn kick(&self, ending: Option<Error>) {
        {
            let mut slots = self.slots();
            if !matches!(slots.kicked, Some(Some(_))) {
                slots.kicked = Some(ending);
            }
        }
        self.notify.notify_one();
    }

    /// Whether the session must close, and with which error (`Some(None)`: replaced).
    pub fn kicked(&self) -> Option<Option<Error>> {
        self.slots().kicked.clone()
    }

    /// Resolves once something is waiting (at once if something already is). May resolve with
    /// nothing waiting after all (a wake-up whose cause was already handled): callers look.
    pub async fn changed(&self) {
        let waiting = self.lag() != NO_LAG || {
            let slots = self.slots();
            slots.kicked.is_some() || !slots.offers.is_empty() || !slots.signals.is_empty()
        };
        if !waiting {
            // A teller that changed something after the look above stored a permit.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(mailbox: &Mailbox) -> bool {
        tokio::time::timeout(Duration::from_millis(200), mailbox.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn each_kind_of_news_wakes_the_session_and_nothing_else_does() {
        let mailbox = Mailbox::default();
        assert!(!woken(&mailbox).await, "nothing told yet");
        mailbox.lower_lag(9);
        mailbox.lower_lag(5);
        mailbox.lower_lag(8);
        assert!(woken(&mailbox).await);
        assert_eq!(mailbox.take_lag(), 5);
        assert_eq!(mailbox.take_lag(), NO_LAG);
        // The permit the lag left is used up by one spurious wake-up, then it waits again.
        let _ = woken(&mailbox).await;
        assert!(!woken(&mailbox).await);

        assert!(mailbox.offer(Offered::Durable(3)));
        assert!(woken(&mailbox).await);
        assert!(matches!(mailbox.next_offer(), Some(Offered::Durable(3))));
        assert!(mailbox.next_offer().is_none());
        let _ = woken(&mailbox).await;
        assert!(!woken(&mailbox).await);

        let env = crate::testing::envelope("a.test", 3, 20);
        assert!(mailbox.signal(Box::new(env.clone())));
        assert!(woken(&mailbox).await);
        assert_eq!(mailbox.next_signal().map(|e| *e), Some(env));
        let _ = woken(&mailbox).await;
        assert!(!woken(&mailbox).await);

        mailbox.kick(None);
        assert!(woken(&mailbox).await);
        assert!(
            woken(&mailbox).await,
            "a kick stays until the session closes"
        );
        assert_eq!(mailbox.kicked(), Some(None));
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_teller_on_another_task() {
        let mailbox = std::sync::Arc::new(Mailbox::default());
        let waiter = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.changed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(mailbox.offer(Offered::Durable(1)));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("no panic");
    }

    #[test]
    fn queues_are_bounded_and_give_back_their_room_when_drained() {
        let mailbox = Mailbox::default();
        let taken = (0..OFFERS as u64 + 7)
            .filter(|&seq| mailbox.offer(Offered::Durable(seq)))
            .count();
        assert_eq!(taken, OFFERS);
        // In order.
        for seq in 0..OFFERS as u64 {
            assert!(matches!(mailbox.next_offer(), Some(Offered::Durable(s)) if s == seq));
        }
        assert!(mailbox.next_offer().is_none());
        assert!(mailbox.slots().offers.capacity() <= KEEP);

        let env = crate::testing::envelope("a.test", 3, 20);
        let taken = (0..SIGNALS + 3)
            .filter(|_| mailbox.signal(Box::new(env.clone())))
            .count();
        assert_eq!(taken, SIGNALS);
    }

    #[test]
    fn an_ending_is_not_downgraded_by_a_later_replacement() {
        let mailbox = Mailbox::default();
        let why = Error::new(siren_api::ErrorCode::DeviceRevoked, "revoked");
        mailbox.kick(Some(why.clone()));
        mailbox.kick(None);
        assert_eq!(mailbox.kicked(), Some(Some(why)));
    }
}
