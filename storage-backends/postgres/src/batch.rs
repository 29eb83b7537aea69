//! Group commit of enqueues in the process: `enqueue` calls that overlap share one statement,
//! so one transaction and one flush of the write-ahead log carry them all.
//!
//! Every caller adds its items to the pending list, then waits for its turn (a fair lock);
//! whoever holds the turn takes everything pending (up to [`MAX_ITEMS`]) and runs it as one
//! statement, then answers each caller with its own numbers. Calls that arrive while a
//! statement runs are taken together by the next turn. Without this, enqueues to one device
//! wait for each other's commit on the row lock of its counter: one flush each.

use std::sync::{Mutex, MutexGuard};

use siren_api::storage::NewQueueItem;
use siren_api::{Error, ErrorCode};
use tokio::sync::oneshot;

/// Most items in one statement (a caller's items always go in one statement, even more).
pub(crate) const MAX_ITEMS: usize = 1024;

/// Where a caller's numbers (or the statement's error) go.
type Answer = oneshot::Sender<Result<Vec<u64>, Error>>;

/// One caller's items and where its answer goes.
struct Request {
    items: Vec<NewQueueItem>,
    answer: Answer,
}

/// The enqueues waiting for a statement, and the turn to run one.
#[derive(Default)]
pub(crate) struct Enqueues {
    pending: Mutex<Vec<Request>>,
    pub(crate) turn: tokio::sync::Mutex<()>,
}

/// Requests taken for one statement: their items in order, and how many each gave.
pub(crate) struct Taken {
    pub(crate) items: Vec<NewQueueItem>,
    answers: Vec<(usize, Answer)>,
}

impl Enqueues {
    fn pending(&self) -> MutexGuard<'_, Vec<Request>> {
        // Pushes and takes only: a poisoned lock holds no half-made change.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `items` to the pending list; the receiver gets their numbers (or the error of the
    /// statement that carried them).
    pub(crate) fn join(
        &self,
        items: &[NewQueueItem],
    ) -> oneshot::Receiver<Result<Vec<u64>, Error>> {
        let (answer, rx) = oneshot::channel();
        self.pending().push(Request {
            items: items.to_vec(),
            answer,
        });
        rx
    }

    /// Takes the oldest pending requests, up to [`MAX_ITEMS`] items (at least one request);
    /// `None` if nothing is pending (an earlier turn took this caller's items).
    pub(crate) fn take(&self) -> Option<Taken> {
        let mut pending = self.pending();
        let mut count = 0;
        let mut n = 0;
        for request in pending.iter() {
            if n > 0 && count + request.items.len() > MAX_ITEMS {
                break;
            }
            count += request.items.len();
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let mut taken = Taken {
            items: Vec::with_capacity(count),
            answers: Vec::with_capacity(n),
        };
        for mut request in pending.drain(..n) {
            taken.answers.push((request.items.len(), request.answer));
            taken.items.append(&mut request.items);
        }
        Some(taken)
    }
}

impl Taken {
    /// Answers every caller: its share of `seqs` (one per item, in the order taken), or the
    /// error.
    pub(crate) fn answer(self, result: Result<Vec<u64>, Error>) {
        let seqs = match result {
            Ok(seqs) if seqs.len() == self.items.len() => seqs,
            Ok(seqs) => {
                let e = Error::new(
                    ErrorCode::Internal,
                    format!(
                        "enqueue: {} numbers for {} items",
                        seqs.len(),
                        self.items.len()
                    ),
                );
                return self.fail(&e);
            }
            Err(e) => return self.fail(&e),
        };
        let mut seqs = seqs.into_iter();
        for (n, answer) in self.answers {
            // A caller that went away no longer needs its numbers.
            let _ = answer.send(Ok(seqs.by_ref().take(n).collect()));
        }
    }

    /// Answers every caller with `e`.
    fn fail(self, e: &Error) {
        for (_, answer) in self.answers {
            let _ = answer.send(Err(e.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, tag: u8) -> Vec<NewQueueItem> {
        (0..n)
            .map(|i| NewQueueItem {
                device: [tag; 32],
                expires: 0,
                bytes: vec![i as u8],
            })
            .collect()
    }

    #[tokio::test]
    async fn each_caller_gets_its_own_numbers_from_one_statement() {
        let batch = Enqueues::default();
        let a = batch.join(&items(2, 1));
        let b = batch.join(&items(3, 2));
        let taken = batch.take().unwrap();
        assert_eq!(taken.items.len(), 5);
        assert_eq!(taken.items[2].device, [2; 32], "in the order joined");
        assert!(batch.take().is_none(), "everything was taken");
        taken.answer(Ok(vec![10, 11, 20, 21, 22]));
        assert_eq!(a.await.unwrap().unwrap(), vec![10, 11]);
        assert_eq!(b.await.unwrap().unwrap(), vec![20, 21, 22]);
    }

    #[tokio::test]
    async fn a_statement_takes_at_most_max_items_but_always_one_caller() {
        let batch = Enqueues::default();
        let _big = batch.join(&items(MAX_ITEMS + 5, 1));
        let _small = batch.join(&items(1, 2));
        assert_eq!(batch.take().unwrap().items.len(), MAX_ITEMS + 5);
        let _a = batch.join(&items(MAX_ITEMS - 1, 3));
        let _b = batch.join(&items(2, 4));
        // The small one left over from before, then as many whole callers as fit.
        assert_eq!(batch.take().unwrap().items.len(), MAX_ITEMS);
        assert_eq!(batch.take().unwrap().items.len(), 2);
    }

    #[tokio::test]
    async fn an_error_reaches_every_caller_of_the_statement() {
        let batch = Enqueues::default();
        let a = batch.join(&items(1, 1));
        let b = batch.join(&items(1, 2));
        let e = Error::new(ErrorCode::Unavailable, "down");
        batch.take().unwrap().answer(Err(e.clone()));
        assert_eq!(a.await.unwrap(), Err(e.clone()));
        assert_eq!(b.await.unwrap(), Err(e));
    }
}
