//! [`QueueStore`]: `q/` items, the `x/` expiry index and the `n/` high-water marks.
//!
//! Sequence numbers come from an in-memory counter per device, so that the synced write of an
//! enqueue happens outside every lock and overlapping enqueues can share one sync. A counter is
//! recovered on the device's first enqueue as the larger of the highest stored item and the
//! high-water mark (the highest number ever removed), which every removal raises in the same
//! atomic batch: a number that was returned is either still stored or covered by the mark.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use siren_api::storage::{
    Announce, DeviceKey, Durability, KeyRange, KvEngine, KvPair, NewQueueItem, QueueStore,
    QueuedItem, UnixTime, WriteBatch,
};
use siren_api::{Error, ErrorCode};

use crate::layout::{self, EXPIRY};
use crate::{Inner, KvStorage, PAGE, lock, scan_pages};

/// The queue's in-memory state.
#[derive(Default)]
pub(crate) struct QueueState {
    /// The last sequence number allocated per device. Entries are only ever raised, never
    /// removed (not even by a purge), so a number is never handed out twice by one process.
    last_seq: Mutex<HashMap<DeviceKey, u64>>,
    /// Held by every removal (ack, purge, expire): each item is removed, and counted, once, and
    /// the read-raise-write of a high-water mark cannot interleave with another.
    removal: Mutex<()>,
}

/// The highest sequence number `device` may already have used, from the store.
///
/// The scan comes before the read of the mark: an item removed between the two is then covered
/// by the mark, which the removal raised before it was read.
fn recover_last_seq<E: KvEngine>(engine: &E, device: &DeviceKey) -> Result<u64, Error> {
    let stored = match engine
        .scan(&KeyRange::prefix(&layout::queue_prefix(device)), 1, true)?
        .first()
    {
        Some((key, _)) => layout::queue_seq(key)?,
        None => 0,
    };
    Ok(stored.max(high_water(engine, device)?))
}

fn high_water<E: KvEngine>(engine: &E, device: &DeviceKey) -> Result<u64, Error> {
    match engine.get(&layout::high_water_key(device))? {
        Some(value) => layout::read_high_water(&value),
        None => Ok(0),
    }
}

/// Tracks, per device, the highest sequence number a removal batch deletes, and adds the raised
/// high-water marks to the batch. Used only under the removal lock.
#[derive(Default)]
struct Removed {
    highest: HashMap<DeviceKey, u64>,
    count: usize,
}

impl Removed {
    fn delete(&mut self, batch: &mut WriteBatch, device: &DeviceKey, seq: u64, expires: UnixTime) {
        batch.delete(layout::queue_key(device, seq));
        batch.delete(layout::expiry_key(expires, device, seq));
        let highest = self.highest.entry(*device).or_insert(0);
        *highest = (*highest).max(seq);
        self.count += 1;
    }

    /// Writes the batch with the marks raised, if it removes anything; how many it removed.
    fn commit<E: KvEngine>(
        self,
        engine: &E,
        mut batch: WriteBatch,
        durability: Durability,
    ) -> Result<usize, Error> {
        if self.count == 0 {
            return Ok(0);
        }
        for (device, seq) in self.highest {
            if seq > high_water(engine, &device)? {
                batch.put(layout::high_water_key(&device), seq.to_be_bytes().to_vec());
            }
        }
        engine.write(&batch, durability)?;
        Ok(self.count)
    }
}

impl<E: KvEngine> Inner<E> {
    /// Enqueues items given as `(device, expires, encoded value)`.
    fn enqueue(
        &self,
        items: Vec<(DeviceKey, UnixTime, Vec<u8>)>,
        announce: Option<Announce>,
        durability: Durability,
    ) -> Result<Vec<u64>, Error> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut devices: Vec<DeviceKey> = items.iter().map(|(device, _, _)| *device).collect();
        devices.sort_unstable();
        devices.dedup();
        // Recover unknown counters outside the lock (it is IO); merge by maximum, in case
        // another call recovered the same device meanwhile.
        let unknown: Vec<DeviceKey> = {
            let last_seq = lock(&self.queue.last_seq);
            devices
                .into_iter()
                .filter(|device| !last_seq.contains_key(device))
                .collect()
        };
        let mut recovered = Vec::with_capacity(unknown.len());
        for device in unknown {
            recovered.push((device, recover_last_seq(&self.engine, &device)?));
        }

        let seqs = {
            let mut last_seq = lock(&self.queue.last_seq);
            for (device, seq) in recovered {
                let last = last_seq.entry(device).or_insert(0);
                *last = (*last).max(seq);
            }
            let mut seqs = Vec::with_capacity(items.len());
            for (device, _, _) in &items {
                // Every device is in the map by now (known before, or recovered above), and
                // entries are never removed: `or_insert` only satisfies the type.
                let last = last_seq.entry(*device).or_insert(0);
                *last = last.checked_add(1).ok_or_else(|| {
                    Error::new(ErrorCode::Internal, "queue sequence numbers exhausted")
                })?;
                seqs.push(*last);
            }
            // Under the lock: the numbers of one device are announced in their order.
            if let Some(announce) = announce {
                announce(&seqs);
            }
            seqs
        };

        self.enqueue_numbered(items, &seqs, durability)?;
        Ok(seqs)
    }

    /// Numbers one item per entry of `devices` from the counters in memory, announcing the
    /// numbers under the lock; `None` if a counter is not in memory yet (recovering it is IO).
    fn number(&self, devices: &[DeviceKey], announce: &mut dyn FnMut(&[u64])) -> Option<Vec<u64>> {
        let mut last_seq = lock(&self.queue.last_seq);
        if !devices.iter().all(|device| last_seq.contains_key(device)) {
            return None;
        }
        let mut seqs = Vec::with_capacity(devices.len());
        for device in devices {
            let last = last_seq.get_mut(device)?;
            *last = last.checked_add(1)?;
            seqs.push(*last);
        }
        announce(&seqs);
        Some(seqs)
    }

    /// Writes items numbered earlier by [`Inner::number`].
    fn enqueue_numbered(
        &self,
        items: Vec<(DeviceKey, UnixTime, Vec<u8>)>,
        seqs: &[u64],
        durability: Durability,
    ) -> Result<(), Error> {
        let mut batch = WriteBatch::new();
        for ((device, expires, value), &seq) in items.into_iter().zip(seqs) {
            batch.put(layout::queue_key(&device, seq), value);
            batch.put(layout::expiry_key(expires, &device, seq), Vec::new());
        }
        self.engine.write(&batch, durability)
    }

    /// Whether every device of `items` has its counter in memory (so an enqueue does no read).
    fn counters_known(&self, items: &[(DeviceKey, UnixTime, Vec<u8>)]) -> bool {
        let last_seq = lock(&self.queue.last_seq);
        items
            .iter()
            .all(|(device, _, _)| last_seq.contains_key(device))
    }

    fn ack(&self, device: &DeviceKey, seqs: &[u64]) -> Result<usize, Error> {
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable();
        seqs.dedup();
        let _removal = lock(&self.queue.removal);
        let mut batch = WriteBatch::new();
        let mut removed = Removed::default();
        for seq in seqs {
            // The item's value holds its expiry, which names its index key.
            if let Some(value) = self.engine.get(&layout::queue_key(device, seq))? {
                let (expires, _) = layout::read_queue_value(&value)?;
                removed.delete(&mut batch, device, seq, expires);
            }
        }
        // An acknowledgement lost in a crash only means a duplicate delivery (the trait allows
        // it); the high-water mark in the same batch is lost with it, and the item is back.
        removed.commit(&self.engine, batch, Durability::Buffered)
    }

    fn purge(&self, device: &DeviceKey) -> Result<usize, Error> {
        let _removal = lock(&self.queue.removal);
        let mut total = 0;
        scan_pages(
            &self.engine,
            &KeyRange::prefix(&layout::queue_prefix(device)),
            |page| {
                let mut batch = WriteBatch::new();
                let mut removed = Removed::default();
                for (key, value) in page {
                    let seq = layout::queue_seq(&key)?;
                    let (expires, _) = layout::read_queue_value(&value)?;
                    removed.delete(&mut batch, device, seq, expires);
                }
                total += removed.commit(&self.engine, batch, Durability::Synced)?;
                Ok(())
            },
        )?;
        Ok(total)
    }

    /// Synced, like every write the trait does not exempt: a sweep is one sync per page of up
    /// to [`PAGE`] items, cheap next to the enqueues that filled them.
    fn expire(&self, now: UnixTime, limit: usize) -> Result<usize, Error> {
        let _removal = lock(&self.queue.removal);
        let mut range = KeyRange {
            start: EXPIRY.to_vec(),
            end: layout::expiry_end(now),
        };
        let mut total = 0;
        while total < limit {
            let page = self.engine.scan(&range, (limit - total).min(PAGE), false)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            // The next page starts after this one (rather than again at the start, where this
            // page's keys are deleted by now): every sweep ends, whatever the engine does.
            let mut next = last.clone();
            next.push(0);
            let mut batch = WriteBatch::new();
            let mut removed = Removed::default();
            for (key, _) in page {
                let (expires, device, seq) = layout::expiry_item(&key)?;
                removed.delete(&mut batch, &device, seq, expires);
            }
            total += removed.commit(&self.engine, batch, Durability::Synced)?;
            range.start = next;
        }
        Ok(total)
    }

    fn count(&self, device: &DeviceKey) -> Result<u64, Error> {
        let mut count = 0u64;
        scan_pages(
            &self.engine,
            &KeyRange::prefix(&layout::queue_prefix(device)),
            |page| {
                count += page.len() as u64;
                Ok(())
            },
        )?;
        Ok(count)
    }
}

/// The keys of `device`'s items after `after` (none after the last possible number).
fn pending_range(device: &DeviceKey, after: u64) -> Option<KeyRange> {
    let first = after.checked_add(1)?;
    Some(KeyRange {
        start: layout::queue_key(device, first),
        end: KeyRange::prefix(&layout::queue_prefix(device)).end,
    })
}

/// Queue items from the entries a scan of [`pending_range`] returned.
fn pending_items(entries: Vec<KvPair>) -> Result<Vec<QueuedItem>, Error> {
    entries
        .into_iter()
        .map(|(key, value)| {
            let seq = layout::queue_seq(&key)?;
            let (expires, bytes) = layout::read_queue_value(&value)?;
            Ok(QueuedItem {
                seq,
                expires,
                bytes: bytes.to_vec(),
            })
        })
        .collect()
}

/// Items as `(device, expires, stored value)`, encoded before they go to a blocking task (so
/// their bytes are copied once).
fn encoded(items: &[NewQueueItem]) -> Vec<(DeviceKey, UnixTime, Vec<u8>)> {
    items
        .iter()
        .map(|item| {
            let value = layout::queue_value(item.expires, &item.bytes);
            (item.device, item.expires, value)
        })
        .collect()
}

impl<E: KvEngine> KvStorage<E> {
    async fn enqueue_with(
        &self,
        items: &[NewQueueItem],
        announce: Option<Announce>,
        durability: Durability,
    ) -> Result<Vec<u64>, Error> {
        let items = encoded(items);
        // A buffered write needs no blocking thread, unless a counter must be recovered first
        // (a scan of the store).
        let buffered = durability == Durability::Buffered && self.inner.counters_known(&items);
        self.run_quick("enqueue", buffered, move |inner| {
            inner.enqueue(items, announce, durability)
        })
        .await
    }
}

#[async_trait]
impl<E: KvEngine> QueueStore for KvStorage<E> {
    async fn enqueue(&self, items: &[NewQueueItem]) -> Result<Vec<u64>, Error> {
        self.enqueue_with(items, None, Durability::Synced).await
    }

    async fn enqueue_announced(
        &self,
        items: &[NewQueueItem],
        announce: Announce,
        durability: Durability,
    ) -> Result<Vec<u64>, Error> {
        // The numbers come from memory, before the write: announced then.
        self.enqueue_with(items, Some(announce), durability).await
    }

    fn number(&self, devices: &[DeviceKey], announce: &mut dyn FnMut(&[u64])) -> Option<Vec<u64>> {
        self.inner.number(devices, announce)
    }

    async fn enqueue_numbered(
        &self,
        items: &[NewQueueItem],
        seqs: &[u64],
        durability: Durability,
    ) -> Result<(), Error> {
        if items.len() != seqs.len() {
            return Err(Error::new(
                ErrorCode::Internal,
                "enqueue_numbered: one number per item",
            ));
        }
        let (items, seqs) = (encoded(items), seqs.to_vec());
        self.run_quick(
            "enqueue",
            durability == Durability::Buffered,
            move |inner| inner.enqueue_numbered(items, &seqs, durability),
        )
        .await
    }

    fn defers_sync(&self) -> bool {
        self.inner.engine.buffered_is_cheaper()
    }

    async fn sync(&self) -> Result<(), Error> {
        self.run("sync", |inner| inner.engine.sync()).await
    }

    /// On the calling task when the engine has the items in memory ([`KvStorage::scan_with`]):
    /// a session's or an outbox's next items were written or read moments ago.
    async fn pending(
        &self,
        device: &DeviceKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedItem>, Error> {
        let Some(range) = pending_range(device, after) else {
            return Ok(Vec::new());
        };
        self.scan_with("pending", range, limit, pending_items).await
    }

    async fn ack(&self, device: &DeviceKey, seqs: &[u64]) -> Result<usize, Error> {
        let device = *device;
        let seqs = seqs.to_vec();
        // Buffered, and the items were read or written lately.
        self.run_quick("ack", true, move |inner| inner.ack(&device, &seqs))
            .await
    }

    async fn purge(&self, device: &DeviceKey) -> Result<usize, Error> {
        let device = *device;
        self.run("purge", move |inner| inner.purge(&device)).await
    }

    async fn expire(&self, now: UnixTime, limit: usize) -> Result<usize, Error> {
        self.run("expire", move |inner| inner.expire(now, limit))
            .await
    }

    async fn count(&self, device: &DeviceKey) -> Result<u64, Error> {
        let device = *device;
        self.run("count", move |inner| inner.count(&device)).await
    }
}
