//! Checks of [`QueueStore`](siren_api::storage::QueueStore): sequence numbers, the backlog,
//! acknowledgements, purges and expiry.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use siren_api::storage::{QueueUsage, QueuedItem, Storage};

use crate::sample::{device, finished, item, ok};

/// Enqueues one item per call; the numbers returned.
async fn enqueue_each(storage: &dyn Storage, device_n: u8, expires: &[u64]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for (i, &exp) in expires.iter().enumerate() {
        let got = ok(
            storage
                .enqueue(&[item(device_n, exp, format!("{device_n}/{i}"))])
                .await,
            "enqueue",
        );
        assert_eq!(got.len(), 1, "one item, one number");
        seqs.push(got[0]);
    }
    seqs
}

async fn all_pending(storage: &dyn Storage, device_n: u8) -> Vec<QueuedItem> {
    ok(
        storage.pending(&device(device_n), 0, usize::MAX).await,
        "pending",
    )
}

async fn pending_seqs(storage: &dyn Storage, device_n: u8) -> Vec<u64> {
    all_pending(storage, device_n)
        .await
        .iter()
        .map(|i| i.seq)
        .collect()
}

/// An empty queue: nothing pending, nothing to count, acknowledge, purge or expire; an empty
/// enqueue returns no numbers.
pub async fn queue_empty(storage: Arc<dyn Storage>) {
    let d = device(1);
    assert!(ok(storage.pending(&d, 0, 10).await, "pending").is_empty());
    assert_eq!(ok(storage.count(&d).await, "count"), 0);
    assert_eq!(ok(storage.ack(&d, &[0, 1, 2]).await, "ack"), 0);
    assert_eq!(ok(storage.purge(&d).await, "purge"), 0);
    assert_eq!(ok(storage.expire(u64::MAX, 100).await, "expire"), 0);
    assert!(ok(storage.enqueue(&[]).await, "enqueue nothing").is_empty());
    assert_eq!(ok(storage.count(&d).await, "count"), 0);
}

/// Numbers are above 0 (so `pending(after: 0)` sees them), unique, higher for each call that
/// starts after another returned, and `pending` pairs each with its own item.
pub async fn queue_seqs_increase(storage: Arc<dyn Storage>) {
    let mut sent = BTreeMap::new();
    let mut last = 0;
    for i in 0..10u8 {
        let seqs = ok(storage.enqueue(&[item(1, 1000, vec![i])]).await, "enqueue");
        assert_eq!(seqs.len(), 1);
        assert!(seqs[0] > last, "call {i} got {} after {last}", seqs[0]);
        last = seqs[0];
        sent.insert(seqs[0], vec![i]);
    }
    let batch = [item(1, 1000, "x"), item(1, 1000, "y"), item(1, 1000, "z")];
    let seqs = ok(storage.enqueue(&batch).await, "enqueue three");
    assert_eq!(seqs.len(), 3, "three items, three numbers");
    for (seq, it) in seqs.iter().zip(&batch) {
        assert!(*seq > last, "a later call got {seq} after {last}");
        assert!(
            sent.insert(*seq, it.bytes.clone()).is_none(),
            "number {seq} given twice"
        );
    }
    let pending = all_pending(&*storage, 1).await;
    let got: BTreeMap<u64, Vec<u8>> = pending.iter().map(|i| (i.seq, i.bytes.clone())).collect();
    assert_eq!(got, sent);
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "pending is not in sequence order"
    );
}

/// Devices' queues are separate: items, counts, acknowledgements and purges of one device do not
/// touch another, also when one call enqueues for several devices.
pub async fn queue_devices_independent(storage: Arc<dyn Storage>) {
    let mixed = [item(1, 100, "a1"), item(2, 100, "b1"), item(1, 100, "a2")];
    let seqs = ok(storage.enqueue(&mixed).await, "enqueue mixed");
    assert_eq!(seqs.len(), 3);
    assert_ne!(seqs[0], seqs[2], "two items of one device share a number");
    ok(storage.enqueue(&[item(2, 100, "b2")]).await, "enqueue");

    let bytes = |items: Vec<QueuedItem>| -> HashSet<Vec<u8>> {
        items.into_iter().map(|i| i.bytes).collect()
    };
    let expected = |list: &[&str]| -> HashSet<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    };
    assert_eq!(
        bytes(all_pending(&*storage, 1).await),
        expected(&["a1", "a2"])
    );
    assert_eq!(
        bytes(all_pending(&*storage, 2).await),
        expected(&["b1", "b2"])
    );
    assert_eq!(ok(storage.count(&device(1)).await, "count"), 2);
    assert_eq!(ok(storage.count(&device(2)).await, "count"), 2);

    // Device 3 has nothing: acknowledging device 1's numbers for it removes nothing.
    assert_eq!(
        ok(storage.ack(&device(3), &[seqs[0], seqs[2]]).await, "ack"),
        0
    );
    assert_eq!(ok(storage.purge(&device(3)).await, "purge"), 0);
    assert_eq!(ok(storage.count(&device(1)).await, "count"), 2);

    assert_eq!(ok(storage.purge(&device(1)).await, "purge"), 2);
    assert_eq!(
        bytes(all_pending(&*storage, 2).await),
        expected(&["b1", "b2"])
    );
}

/// `pending` returns items after `after`, in order, at most `limit` of them, with their expiry.
pub async fn queue_pending_after_and_limit(storage: Arc<dyn Storage>) {
    let expires: Vec<u64> = (0..10).map(|i| 1000 + i).collect();
    let s = enqueue_each(&*storage, 1, &expires).await;
    let d = device(1);

    let all = ok(storage.pending(&d, 0, 100).await, "pending");
    assert_eq!(all.iter().map(|i| i.seq).collect::<Vec<_>>(), s);
    for (i, it) in all.iter().enumerate() {
        assert_eq!(it.expires, expires[i]);
        assert_eq!(it.bytes, format!("1/{i}").into_bytes());
    }
    let seqs = |items: Vec<QueuedItem>| items.iter().map(|i| i.seq).collect::<Vec<_>>();
    assert_eq!(seqs(ok(storage.pending(&d, 0, 3).await, "pending")), s[..3]);
    assert_eq!(
        seqs(ok(storage.pending(&d, s[3], 3).await, "pending")),
        s[4..7]
    );
    assert!(ok(storage.pending(&d, s[9], 10).await, "pending").is_empty());
    assert!(ok(storage.pending(&d, 0, 0).await, "pending").is_empty());
    assert!(ok(storage.pending(&d, u64::MAX, 10).await, "pending").is_empty());

    // `after` need not be a stored number.
    assert_eq!(ok(storage.ack(&d, &[s[5]]).await, "ack"), 1);
    assert_eq!(
        seqs(ok(storage.pending(&d, s[4], 2).await, "pending")),
        [s[6], s[7]]
    );
    assert_eq!(
        seqs(ok(storage.pending(&d, s[5], 1).await, "pending")),
        [s[6]]
    );
}

/// Items past their expiry stay in `pending` until a sweep removes them.
pub async fn queue_pending_includes_expired(storage: Arc<dyn Storage>) {
    let s = enqueue_each(&*storage, 1, &[1, 2]).await;
    assert_eq!(pending_seqs(&*storage, 1).await, s);
    assert_eq!(ok(storage.expire(1, 10).await, "expire"), 1);
    assert_eq!(pending_seqs(&*storage, 1).await, s[1..]);
}

/// Item bytes and expiry times come back exactly: empty and 64 KiB payloads, expiry 0 and
/// `u64::MAX` (which only a sweep at `u64::MAX` removes).
pub async fn queue_item_bytes_round_trip(storage: Arc<dyn Storage>) {
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let items = [
        item(1, 0, Vec::new()),
        item(1, u64::MAX, big.clone()),
        item(1, 5, vec![0, 0xff, 0]),
    ];
    let seqs = ok(storage.enqueue(&items).await, "enqueue");
    let pending = all_pending(&*storage, 1).await;
    let mut got: Vec<_> = pending
        .iter()
        .map(|i| (i.seq, i.expires, i.bytes.clone()))
        .collect();
    got.sort();
    let mut want: Vec<_> = seqs
        .iter()
        .zip(&items)
        .map(|(s, i)| (*s, i.expires, i.bytes.clone()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ok(storage.expire(u64::MAX - 1, 10).await, "expire"), 2);
    let left = all_pending(&*storage, 1).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].bytes, big);
    assert_eq!(ok(storage.expire(u64::MAX, 10).await, "expire"), 1);
    assert_eq!(ok(storage.count(&device(1)).await, "count"), 0);
}

/// `ack` removes exactly the given items of the given device, counts each once, and ignores
/// numbers it does not hold (unknown, repeated, or already acknowledged).
pub async fn queue_ack_removes_only_given(storage: Arc<dyn Storage>) {
    let s = enqueue_each(&*storage, 1, &[100; 6]).await;
    let d = device(1);
    let unknown = s[5] + 1000;
    assert_eq!(
        ok(storage.ack(&d, &[s[1], s[3], s[3], unknown]).await, "ack"),
        2
    );
    assert_eq!(pending_seqs(&*storage, 1).await, [s[0], s[2], s[4], s[5]]);
    assert_eq!(ok(storage.count(&d).await, "count"), 4);
    assert_eq!(ok(storage.ack(&d, &[s[1]]).await, "ack again"), 0);
    assert_eq!(ok(storage.ack(&d, &[]).await, "ack nothing"), 0);
    assert_eq!(ok(storage.ack(&d, &[s[5], s[0]]).await, "ack"), 2);
    assert_eq!(pending_seqs(&*storage, 1).await, [s[2], s[4]]);
}

/// Four sessions of one device acknowledging the same items at once remove each item once: the
/// counts add up to the number of items (over ten rounds of 40 items).
pub async fn queue_ack_counts_each_item_once(storage: Arc<dyn Storage>) {
    for round in 0..10u32 {
        let items: Vec<_> = (0..40u32)
            .map(|i| item(1, 100, (round * 100 + i).to_be_bytes()))
            .collect();
        let seqs = ok(storage.enqueue(&items).await, "enqueue");
        let mut tasks = tokio::task::JoinSet::new();
        let start = Arc::new(tokio::sync::Barrier::new(4));
        for _ in 0..4 {
            let storage = Arc::clone(&storage);
            let seqs = seqs.clone();
            let start = Arc::clone(&start);
            tasks.spawn(async move {
                start.wait().await;
                storage.ack(&device(1), &seqs).await
            });
        }
        let mut total = 0;
        while let Some(joined) = tasks.join_next().await {
            total += ok(finished(joined), "ack");
        }
        assert_eq!(
            total, 40,
            "round {round}: acknowledgements counted {total} removals of 40 items"
        );
        assert_eq!(ok(storage.count(&device(1)).await, "count"), 0);
    }
}

/// `purge` removes every item of one device (and their expiry, so a later sweep finds only the
/// other devices' items), reports how many, and leaves other devices alone.
pub async fn queue_purge(storage: Arc<dyn Storage>) {
    enqueue_each(&*storage, 1, &[10, 20, 30, 40, 50]).await;
    let b = enqueue_each(&*storage, 2, &[10, 20, 30]).await;
    assert_eq!(ok(storage.purge(&device(1)).await, "purge"), 5);
    assert_eq!(ok(storage.count(&device(1)).await, "count"), 0);
    assert!(all_pending(&*storage, 1).await.is_empty());
    assert_eq!(pending_seqs(&*storage, 2).await, b);
    assert_eq!(ok(storage.purge(&device(1)).await, "purge again"), 0);
    assert_eq!(ok(storage.expire(u64::MAX, 1000).await, "expire"), 3);
}

/// `expire(now)` removes the items that expired at or before `now`, of every device, and nothing
/// else; a second sweep at the same time finds nothing.
pub async fn queue_expire(storage: Arc<dyn Storage>) {
    let a = enqueue_each(&*storage, 1, &[100, 300, 400]).await;
    enqueue_each(&*storage, 2, &[200, 300]).await;
    let c = enqueue_each(&*storage, 3, &[500]).await;
    assert_eq!(ok(storage.expire(300, 1000).await, "expire at 300"), 4);
    assert_eq!(pending_seqs(&*storage, 1).await, [a[2]]);
    assert!(all_pending(&*storage, 2).await.is_empty());
    assert_eq!(pending_seqs(&*storage, 3).await, c);
    assert_eq!(
        ok(storage.expire(300, 1000).await, "expire at 300 again"),
        0
    );
    assert_eq!(ok(storage.expire(399, 1000).await, "expire at 399"), 0);
    assert_eq!(ok(storage.expire(400, 1000).await, "expire at 400"), 1);
    assert!(all_pending(&*storage, 1).await.is_empty());
    assert_eq!(pending_seqs(&*storage, 3).await, c);
}

/// `expire` removes at most `limit` items per call; repeated calls remove the rest, and only
/// expired items.
pub async fn queue_expire_limit(storage: Arc<dyn Storage>) {
    enqueue_each(&*storage, 1, &[10, 11, 12, 13, 14]).await;
    let keep = enqueue_each(&*storage, 1, &[1000]).await;
    assert_eq!(ok(storage.expire(100, 2).await, "expire"), 2);
    assert_eq!(ok(storage.count(&device(1)).await, "count"), 4);
    assert_eq!(ok(storage.expire(100, 2).await, "expire"), 2);
    assert_eq!(ok(storage.expire(100, 2).await, "expire"), 1);
    assert_eq!(ok(storage.expire(100, 2).await, "expire"), 0);
    assert_eq!(ok(storage.expire(100, 0).await, "expire, limit 0"), 0);
    assert_eq!(pending_seqs(&*storage, 1).await, keep);
}

/// An acknowledged item is gone for the sweeper too: it is not counted again.
pub async fn queue_expire_after_ack(storage: Arc<dyn Storage>) {
    let s = enqueue_each(&*storage, 1, &[50, 50, 60]).await;
    assert_eq!(ok(storage.ack(&device(1), &[s[0]]).await, "ack"), 1);
    assert_eq!(ok(storage.expire(55, 10).await, "expire"), 1);
    assert_eq!(pending_seqs(&*storage, 1).await, [s[2]]);
}

/// `count` follows enqueues and removals.
pub async fn queue_count(storage: Arc<dyn Storage>) {
    let d = device(1);
    assert_eq!(ok(storage.count(&d).await, "count"), 0);
    let s = enqueue_each(&*storage, 1, &[100; 3]).await;
    let more: Vec<_> = (0..4u8).map(|i| item(1, 100, vec![i])).collect();
    ok(storage.enqueue(&more).await, "enqueue");
    assert_eq!(ok(storage.count(&d).await, "count"), 7);
    ok(storage.ack(&d, &s[..2]).await, "ack");
    assert_eq!(ok(storage.count(&d).await, "count"), 5);
    assert_eq!(ok(storage.count(&device(2)).await, "count"), 0);
}

/// `usage` counts a device's items and their bytes, across more than one page, and follows
/// removals.
pub async fn queue_usage(storage: Arc<dyn Storage>) {
    let d = device(1);
    assert_eq!(ok(storage.usage(&d).await, "usage"), QueueUsage::default());
    let items: Vec<_> = (0..300u32)
        .map(|i| item(1, 100, vec![7; (i % 5) as usize + 1]))
        .collect();
    let seqs = ok(storage.enqueue(&items).await, "enqueue");
    ok(
        storage.enqueue(&[item(2, 100, vec![1; 1000])]).await,
        "enqueue",
    );
    let bytes: u64 = items.iter().map(|i| i.bytes.len() as u64).sum();
    assert_eq!(
        ok(storage.usage(&d).await, "usage"),
        QueueUsage { items: 300, bytes }
    );
    ok(storage.ack(&d, &seqs[..100]).await, "ack");
    let left: u64 = items[100..].iter().map(|i| i.bytes.len() as u64).sum();
    assert_eq!(
        ok(storage.usage(&d).await, "usage"),
        QueueUsage {
            items: 200,
            bytes: left
        }
    );
    ok(storage.purge(&d).await, "purge");
    assert_eq!(ok(storage.usage(&d).await, "usage"), QueueUsage::default());
    assert_eq!(
        ok(storage.usage(&device(2)).await, "usage"),
        QueueUsage {
            items: 1,
            bytes: 1000
        }
    );
}

/// Fifty concurrent enqueues to one device get fifty distinct numbers, and `pending` shows all
/// fifty items, each under the number its call returned.
pub async fn queue_concurrent_enqueues(storage: Arc<dyn Storage>) {
    let mut tasks = tokio::task::JoinSet::new();
    let start = Arc::new(tokio::sync::Barrier::new(50));
    for i in 0..50u32 {
        let storage = Arc::clone(&storage);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            start.wait().await;
            let seqs = storage.enqueue(&[item(1, 100, i.to_be_bytes())]).await;
            (i, seqs)
        });
    }
    let mut sent = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, seqs) = finished(joined);
        let seqs = ok(seqs, "enqueue");
        assert_eq!(seqs.len(), 1);
        assert!(seqs[0] > 0);
        assert!(
            sent.insert(seqs[0], i.to_be_bytes().to_vec()).is_none(),
            "number {} given to two calls",
            seqs[0]
        );
    }
    let got: BTreeMap<u64, Vec<u8>> = all_pending(&*storage, 1)
        .await
        .into_iter()
        .map(|i| (i.seq, i.bytes))
        .collect();
    assert_eq!(got, sent);
}

/// Numbers are not reused after the items holding them are removed: a call after an ack, a purge
/// or a sweep gets a higher number than any returned before.
pub async fn queue_seqs_not_reused_after_removal(storage: Arc<dyn Storage>) {
    let d = device(1);
    let s = enqueue_each(&*storage, 1, &[10, 10, 10]).await;
    assert_eq!(ok(storage.ack(&d, &s).await, "ack"), 3);
    let after_ack = enqueue_each(&*storage, 1, &[10]).await[0];
    assert!(after_ack > s[2], "{after_ack} after acknowledged {}", s[2]);
    assert_eq!(ok(storage.purge(&d).await, "purge"), 1);
    let after_purge = enqueue_each(&*storage, 1, &[10]).await[0];
    assert!(
        after_purge > after_ack,
        "{after_purge} after purged {after_ack}"
    );
    assert_eq!(ok(storage.expire(10, 10).await, "expire"), 1);
    let after_expire = enqueue_each(&*storage, 1, &[10]).await[0];
    assert!(
        after_expire > after_purge,
        "{after_expire} after expired {after_purge}"
    );
}
