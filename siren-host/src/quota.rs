//! Quotas on what users may make the server store and carry (PROTOCOL.md §13, §20):
//!
//! * **per recipient device**: at most `max_queue_items_per_device` messages and
//!   `max_queue_bytes_per_device` bytes waiting in a device's queue; a `send` that would go
//!   beyond is refused with error 401 (`queue_full`) and nothing of it is stored. Notices
//!   (approvals, directory changes, contact requests) are never refused: they are small and
//!   critical, and a queue filled by someone else must still carry them. Nothing already queued
//!   is ever dropped to make room.
//! * **per sender**: envelopes and bytes per second (token buckets with a burst), error 203 with
//!   the seconds to wait.
//!
//! A device's usage is read from the store the first time it is needed
//! ([`siren_api::storage::QueueStore::usage`]) and then kept up to date in memory: commits add,
//! acknowledgements of items this process delivered subtract, a purge or an expiry sweep makes
//! it be read again. The count can only be off for acknowledgements this process cannot size,
//! and then it errs on the full side until the next sweep re-reads it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use siren_api::storage::{QueueUsage, Storage};
use siren_api::{Error, ErrorCode, Username};
use siren_proto::keys::DekPublic;

use crate::rate::{Buckets, Rate, wait_secs};

/// Queue usage per device, as far as this process knows it.
pub struct UsageCache {
    storage: Arc<dyn Storage>,
    max_items: AtomicU64,
    max_bytes: AtomicU64,
    known: Mutex<HashMap<DekPublic, QueueUsage>>,
}

/// Most devices whose usage is remembered (each entry is small; past this the cache is reset).
const MAX_CACHED: usize = 200_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UsageCache {
    /// A cache over `storage` enforcing the given per-device quota.
    pub fn new(storage: Arc<dyn Storage>, max_items: u64, max_bytes: u64) -> Arc<UsageCache> {
        Arc::new(UsageCache {
            storage,
            max_items: AtomicU64::new(max_items),
            max_bytes: AtomicU64::new(max_bytes),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the per-device quota (a reload); queues already over it keep their items and
    /// take no more until they are under it.
    pub fn set_quota(&self, max_items: u64, max_bytes: u64) {
        self.max_items.store(max_items, Ordering::Relaxed);
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    async fn usage(&self, device: &DekPublic) -> Result<QueueUsage, Error> {
        if let Some(u) = lock(&self.known).get(device) {
            return Ok(*u);
        }
        let read = self.storage.usage(device.as_bytes()).await?;
        let mut known = lock(&self.known);
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        // Another task may have filled it meanwhile (and counted a commit since): keep that.
        Ok(*known.entry(*device).or_insert(read))
    }

    /// Reserves room for messages of the given sizes in each device's queue, or refuses them
    /// all (error 401) if one device would go over its quota. The reservation counts as usage
    /// at once, so concurrent `send`s cannot both take the last room; [`UsageCache::release`]
    /// gives it back if the commit fails.
    pub async fn reserve(&self, items: &[(DekPublic, u64)]) -> Result<(), Error> {
        let mut per_device: Vec<(DekPublic, QueueUsage)> = Vec::new();
        for (device, bytes) in items {
            match per_device.iter_mut().find(|(d, _)| d == device) {
                Some((_, u)) => {
                    u.items += 1;
                    u.bytes += bytes;
                }
                None => per_device.push((
                    *device,
                    QueueUsage {
                        items: 1,
                        bytes: *bytes,
                    },
                )),
            }
        }
        for (device, _) in &per_device {
            self.usage(device).await?;
        }
        let max_items = self.max_items.load(Ordering::Relaxed);
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        let mut known = lock(&self.known);
        for (device, add) in &per_device {
            let now = known.get(device).copied().unwrap_or_default();
            if now.items + add.items > max_items || now.bytes + add.bytes > max_bytes {
                // The recipient's backlog is not told to the sender (it is the recipient's
                // business), only the limit.
                return Err(Error::new(
                    ErrorCode::QueueFull,
                    format!(
                        "a recipient device's queue is full (at most {} messages or {} bytes wait \
                         per device): nothing was sent; try again later",
                        max_items, max_bytes
                    ),
                ));
            }
        }
        for (device, add) in per_device {
            let u = known.entry(device).or_default();
            u.items += add.items;
            u.bytes += add.bytes;
        }
        Ok(())
    }

    /// Gives back a reservation whose commit failed.
    pub fn release(&self, items: &[(DekPublic, u64)]) {
        let mut known = lock(&self.known);
        for (device, bytes) in items {
            if let Some(u) = known.get_mut(device) {
                u.items = u.items.saturating_sub(1);
                u.bytes = u.bytes.saturating_sub(*bytes);
            }
        }
    }

    /// Items of `device` were acknowledged (and removed).
    pub fn acknowledged(&self, device: &DekPublic, items: u64, bytes: u64) {
        if let Some(u) = lock(&self.known).get_mut(device) {
            u.items = u.items.saturating_sub(items);
            u.bytes = u.bytes.saturating_sub(bytes);
        }
    }

    /// Notices (never refused) were committed for these devices.
    pub fn added_notices(&self, items: &[(DekPublic, u64)]) {
        let mut known = lock(&self.known);
        for (device, bytes) in items {
            if let Some(u) = known.get_mut(device) {
                u.items += 1;
                u.bytes += bytes;
            }
        }
    }

    /// Forgets what is known of `device` (purged): it is read again when needed.
    pub fn forget(&self, device: &DekPublic) {
        lock(&self.known).remove(device);
    }

    /// Forgets everything (after an expiry sweep removed items).
    pub fn forget_all(&self) {
        lock(&self.known).clear();
    }
}

/// Per-sender send rates.
pub struct SendRate {
    envelopes: Buckets<Username>,
    bytes: Buckets<Username>,
}

impl SendRate {
    /// Limits of `envelopes` and `bytes` per second, each with its burst.
    pub fn new(envelopes: Rate, bytes: Rate) -> Self {
        SendRate {
            envelopes: Buckets::new(envelopes, 100_000),
            bytes: Buckets::new(bytes, 100_000),
        }
    }

    /// Changes the rates (a reload).
    pub fn set(&self, envelopes: Rate, bytes: Rate) {
        self.envelopes.set_rate(envelopes);
        self.bytes.set_rate(bytes);
    }

    /// Charges a `send` of `envelopes` envelopes and `bytes` bytes to `sender`, or refuses it
    /// (error 203, or 107 if it could never fit the burst).
    pub fn charge(&self, sender: &Username, envelopes: usize, bytes: u64) -> Result<(), Error> {
        let (n, b) = (envelopes as f64, bytes as f64);
        let refused = |wait: std::time::Duration| {
            if wait == std::time::Duration::MAX {
                Error::new(
                    ErrorCode::LimitExceeded,
                    "this send is larger than this server lets one user send at once",
                )
            } else {
                Error::new(
                    ErrorCode::RateLimited,
                    format!("too many messages; retry in {} s", wait_secs(wait)),
                )
            }
        };
        self.envelopes.take(sender, n).map_err(refused)?;
        if let Err(wait) = self.bytes.take(sender, b) {
            self.envelopes.give_back(sender, n);
            return Err(refused(wait));
        }
        Ok(())
    }
}
