//! Storage: typed stores for what a Siren server keeps, and a generic ordered key-value engine
//! from which any KV store gets all of them.
//!
//! The host uses [`Storage`], the sum of five typed stores. A backend either implements them
//! directly (PostgreSQL, with real tables) or implements the six methods of [`KvEngine`] and
//! wraps itself in the `siren-storage-kv` adapter (memory, RocksDB, a researcher's wasm engine).
//! One conformance suite (`siren-storage-conformance`) checks every backend against the same
//! promises.
//!
//! Values that belong to the protocol (signed directory entries, queue items, rosters) are stored
//! as the opaque bytes the host hands over: stores never parse them.
//!
//! # Durability
//!
//! A call that changes state returns only after the change is durable — on disk, the write-ahead
//! log synced — unless the method says otherwise. Several concurrent writers may share one sync
//! (group commit). The host acknowledges a message to its sender only after
//! [`QueueStore::enqueue`] has returned.

use async_trait::async_trait;

use crate::error::Error;
use crate::identity::Username;

/// A 32-byte device key (a DEK) as a storage key.
pub type DeviceKey = [u8; 32];

/// Seconds since the Unix epoch.
pub type UnixTime = u64;

// ---------------------------------------------------------------------------------------------
// Typed stores.

/// A local user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user.
    pub user: Username,
    /// When the account was created.
    pub created: UnixTime,
    /// The credential of backends that keep it in the store (an argon2id PHC string for the
    /// password backend), opaque to the store.
    pub credential: Option<String>,
    /// Changes whenever the credential is replaced (a new password), never when it is only
    /// re-encoded (a rehash with new argon2 parameters). Sessions remember it at login and stop
    /// being resumable once it changed (PROTOCOL.md §9.1). 0 for accounts stored before it
    /// existed.
    pub credential_stamp: u64,
}

/// Local user accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account, if it exists.
    async fn account(&self, user: &Username) -> Result<Option<Account>, Error>;
    /// Creates or replaces an account.
    async fn put_account(&self, account: &Account) -> Result<(), Error>;
    /// Deletes an account; `Ok(false)` if there was none.
    async fn delete_account(&self, user: &Username) -> Result<bool, Error>;
    /// Replaces the account's credential by `new` if it is still `old`, keeping everything else
    /// (a rehash must not undo a password change that happened meanwhile). Whether it replaced
    /// it (`false` also when there is no such account).
    async fn update_credential(&self, user: &Username, old: &str, new: &str)
    -> Result<bool, Error>;
    /// All accounts' users, sorted.
    async fn list_accounts(&self) -> Result<Vec<Username>, Error>;
}

/// Whether a directory entry adds or revokes a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A device record.
    Add,
    /// A device revocation.
    Revoke,
}

/// One entry of a user's directory chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Added or revoked.
    pub kind: EntryKind,
    /// The device concerned.
    pub device: DeviceKey,
    /// The encoded signed entry (opaque to the store).
    pub bytes: Vec<u8>,
}

/// Users' directory chains (PROTOCOL.md §11).
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The user's entries in chain order (empty if the user has none).
    async fn entries(&self, user: &Username) -> Result<Vec<StoredEntry>, Error>;

    /// Appends an entry. Fails with [`ErrorCode::Rollback`](crate::ErrorCode::Rollback) unless
    /// `entry.seq` is one more than the last stored entry's (or 1 for a user with none): two
    /// devices racing to append cannot both win.
    async fn append_entry(&self, user: &Username, entry: &StoredEntry) -> Result<(), Error>;

    /// Removes the user's whole chain (the account was deleted); a later first entry starts at
    /// 1 again. Returns how many entries were removed.
    async fn delete_entries(&self, user: &Username) -> Result<usize, Error>;
}

/// An item to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueItem {
    /// The recipient device.
    pub device: DeviceKey,
    /// When the item expires if not acknowledged.
    pub expires: UnixTime,
    /// The encoded queue item (opaque to the store).
    pub bytes: Vec<u8>,
}

/// An item in a device's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedItem {
    /// Its sequence number in the device's queue.
    pub seq: u64,
    /// When it expires.
    pub expires: UnixTime,
    /// The encoded queue item.
    pub bytes: Vec<u8>,
}

/// Told the sequence numbers of items being enqueued ([`QueueStore::enqueue_announced`]).
pub type Announce = Box<dyn FnOnce(&[u64]) + Send>;

/// Per-device message queues (PROTOCOL.md §13).
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Stores items, atomically and durably, and returns their sequence numbers (in the order
    /// given; items of one device within one call get increasing numbers in that order). Within
    /// one device's queue, sequence numbers start at 1, are unique, never reused while an item
    /// with that number is stored, and higher for a call that starts after another returned.
    /// (Two overlapping calls may commit in either order; the host pushes new items to live
    /// sessions itself and uses [`QueueStore::pending`] for the backlog.)
    async fn enqueue(&self, items: &[NewQueueItem]) -> Result<Vec<u64>, Error>;

    /// [`QueueStore::enqueue`], calling `announce` with the items' sequence numbers as early as
    /// the backend knows them: a backend that numbers items before its durable write calls it
    /// before that write, so the host can offer the items to live sessions while the write
    /// proceeds (PROTOCOL.md §13, the online fast path). The numbers are final: a successful
    /// enqueue stores the items under exactly them. `announce` must be cheap and must not
    /// block (the backend may hold a lock while calling it); for the items of one device,
    /// calls happen in the order of their numbers.
    ///
    /// With [`Durability::Buffered`] a backend that [`QueueStore::defers_sync`] may return once
    /// the items are stored (visible to [`QueueStore::pending`], surviving a crash of the
    /// process) but before they are on disk; [`QueueStore::sync`] then makes them durable. The
    /// default enqueues durably, then announces.
    async fn enqueue_announced(
        &self,
        items: &[NewQueueItem],
        announce: Announce,
        durability: Durability,
    ) -> Result<Vec<u64>, Error> {
        let _ = durability;
        let seqs = self.enqueue(items).await?;
        announce(&seqs);
        Ok(seqs)
    }

    /// Numbers items for `devices` (one number per entry, in order) without storing anything,
    /// calling `announce` with the numbers before returning, as
    /// [`QueueStore::enqueue_announced`] does; `None` (and no call) if the backend cannot
    /// number without IO or does not number before it writes (the default). For the online
    /// fast path: an item its device acknowledges before the host needed to store it is never
    /// written. The host stores the others with [`QueueStore::enqueue_numbered`]. A number is
    /// never handed out twice while the process runs; after a restart, a number that was
    /// never stored may be handed out again (PROTOCOL.md §13 allows it).
    fn number(&self, devices: &[DeviceKey], announce: &mut dyn FnMut(&[u64])) -> Option<Vec<u64>> {
        let _ = (devices, announce);
        None
    }

    /// Stores items under the numbers [`QueueStore::number`] gave them (`items[i]` under
    /// `seqs[i]`), atomically, with `durability` as for [`QueueStore::enqueue_announced`].
    /// The default refuses: only a backend whose `number` returns numbers is asked.
    async fn enqueue_numbered(
        &self,
        items: &[NewQueueItem],
        seqs: &[u64],
        durability: Durability,
    ) -> Result<(), Error> {
        let _ = (items, seqs, durability);
        Err(Error::new(
            crate::ErrorCode::Internal,
            "this store does not number items before it writes them",
        ))
    }

    /// Whether a [`Durability::Buffered`] enqueue is cheaper than a durable one (a backend with
    /// a write-ahead log it syncs), so the host may defer the sync hoping it is not needed.
    /// Default: no (every enqueue is durable).
    fn defers_sync(&self) -> bool {
        false
    }

    /// Makes every item enqueued before this call durable. Default: nothing to do.
    async fn sync(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Up to `limit` items of `device` with `seq > after`, in sequence order, including expired
    /// items the sweeper has not removed yet.
    async fn pending(
        &self,
        device: &DeviceKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedItem>, Error>;

    /// Removes acknowledged items; unknown numbers are ignored. Returns how many were removed.
    /// Need not be synced: an acknowledgement lost in a crash means the item is delivered again,
    /// and receivers drop duplicates.
    async fn ack(&self, device: &DeviceKey, seqs: &[u64]) -> Result<usize, Error>;

    /// Removes every item of `device` (it was revoked). Returns how many were removed.
    async fn purge(&self, device: &DeviceKey) -> Result<usize, Error>;

    /// Removes up to `limit` items that expired at or before `now`. Returns how many.
    async fn expire(&self, now: UnixTime, limit: usize) -> Result<usize, Error>;

    /// How many items `device` has stored.
    async fn count(&self, device: &DeviceKey) -> Result<u64, Error>;

    /// How many items `device` has stored and their total size in bytes (the host's per-device
    /// quota). The default reads the queue page by page; backends that can sum without reading
    /// the values (SQL) should override it.
    async fn usage(&self, device: &DeviceKey) -> Result<QueueUsage, Error> {
        const PAGE: usize = 256;
        let mut usage = QueueUsage::default();
        let mut after = 0;
        loop {
            let page = self.pending(device, after, PAGE).await?;
            for item in &page {
                usage.items += 1;
                usage.bytes += item.bytes.len() as u64;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.seq,
                _ => return Ok(usage),
            }
        }
    }
}

/// What a device's queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueUsage {
    /// Items stored.
    pub items: u64,
    /// Their encoded size in bytes.
    pub bytes: u64,
}

/// A resumable session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub id: [u8; 16],
    /// The DEK it is bound to.
    pub device: DeviceKey,
    /// The user it is logged in as, once logged in.
    pub user: Option<Username>,
    /// When it was last used; sessions unused for the configured time are forgotten.
    pub last_seen: UnixTime,
    /// The account's [`Account::credential_stamp`] when the session logged in, for a login the
    /// credential backend decided (a password); `None` for a login it did not (a certificate)
    /// and before login. Records stored before this field existed read back as `Some(0)` when
    /// logged in.
    pub credential_stamp: Option<u64>,
}

/// Resumable sessions (PROTOCOL.md §9.1).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session, if known.
    async fn session(&self, id: &[u8; 16]) -> Result<Option<SessionRecord>, Error>;
    /// Creates or replaces a session.
    async fn put_session(&self, session: &SessionRecord) -> Result<(), Error>;
    /// Forgets a session; `Ok(false)` if unknown.
    async fn delete_session(&self, id: &[u8; 16]) -> Result<bool, Error>;
    /// Forgets sessions last seen before `cutoff`. Returns how many.
    async fn expire_sessions(&self, cutoff: UnixTime) -> Result<usize, Error>;
    /// Forgets every session logged in as `user` (only those bound to `device`, if given): the
    /// account was deleted, its password changed, or an administrator revoked the device.
    /// Returns how many.
    async fn delete_user_sessions(
        &self,
        user: &Username,
        device: Option<&DeviceKey>,
    ) -> Result<usize, Error>;
}

/// A stored roster version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoster {
    /// The roster's version.
    pub version: u64,
    /// The encoded signed roster (opaque to the store).
    pub bytes: Vec<u8>,
}

/// Personal Rosters (PROTOCOL.md §15).
#[async_trait]
pub trait RosterStore: Send + Sync {
    /// The user's roster, if any.
    async fn roster(&self, user: &Username) -> Result<Option<StoredRoster>, Error>;

    /// Replaces the roster. Fails with [`ErrorCode::Rollback`](crate::ErrorCode::Rollback) unless
    /// the stored version is `roster.version - 1` (or there is none and `roster.version` is 1).
    async fn put_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error>;

    /// Removes the user's roster (the account was deleted); `Ok(false)` if there was none. A
    /// later roster starts at version 1 again.
    async fn delete_roster(&self, user: &Username) -> Result<bool, Error>;
}

/// Whole-store enumeration and verbatim import, for copying one store into another
/// (`sirend migrate-store`). Not used while serving.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Every user with at least one directory entry, sorted.
    async fn directory_users(&self) -> Result<Vec<Username>, Error>;
    /// Every user with a roster, sorted.
    async fn roster_users(&self) -> Result<Vec<Username>, Error>;
    /// Every device with at least one queued item, sorted.
    async fn queue_devices(&self) -> Result<Vec<DeviceKey>, Error>;
    /// Every session, sorted by id.
    async fn sessions(&self) -> Result<Vec<SessionRecord>, Error>;
    /// Stores `roster` as the user's roster whatever its version, if the user has none yet;
    /// fails with [`ErrorCode::Rollback`](crate::ErrorCode::Rollback) if the user has one.
    async fn import_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error>;
}

/// Everything a Siren server stores.
#[async_trait]
pub trait Storage:
    AccountStore + DirectoryStore + QueueStore + SessionStore + RosterStore + ExportStore + Send + Sync
{
    /// A short description for logs ("rocksdb at /var/lib/siren").
    fn describe(&self) -> String;

    /// Makes everything written so far durable (called at shutdown).
    async fn flush(&self) -> Result<(), Error>;

    /// Writes a consistent copy of the whole store into the directory `dir` (which must not
    /// exist yet) while the store stays in use: every write that returned before the call is
    /// in it (`sirend backup`). Stores that are backed up with their own tools answer with an
    /// error that names them; that is the default.
    async fn backup(&self, dir: &std::path::Path) -> Result<(), Error> {
        let _ = dir;
        Err(Error::new(
            crate::ErrorCode::Internal,
            format!(
                "{} cannot make a backup itself; use the database's own tools",
                self.describe()
            ),
        ))
    }

    /// Takes lease `name` for `holder` for `ttl`, or renews it if `holder` has it: `true` if
    /// `holder` has it now, `false` if another holder has it and it has not expired. The nodes
    /// of a cluster use leases so that exactly one of them does a piece of work (drains one
    /// peer's outbox); expiry is by the store's clock. A store only one process uses answers
    /// `true` always; that is the default.
    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, Error> {
        let _ = (name, holder, ttl);
        Ok(true)
    }

    /// Ends `holder`'s lease `name` (nothing if another holder has it). With `done`, the work
    /// is finished and the lease is forgotten; otherwise it is left expired, for another holder
    /// to find ([`Storage::expired_leases`]) and take over.
    async fn end_lease(&self, name: &str, holder: &str, done: bool) -> Result<(), Error> {
        let _ = (name, holder, done);
        Ok(())
    }

    /// The names, starting with `prefix`, of the leases that expired without being ended as
    /// done: work whose holder stopped (or died) before finishing it.
    async fn expired_leases(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let _ = prefix;
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------------------------
// The generic ordered key-value engine.

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// Changes applied atomically, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Put(key.into(), value.into()));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Delete(key.into()));
        self
    }

    /// Whether the batch has no changes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Whether a write must be on disk before [`KvEngine::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is synced before returning.
    Synced,
    /// The write may sit in buffers; a crash may lose it (never torn: batches stay atomic).
    Buffered,
}

/// A key range `[start, end)`; an empty `end` means "to the end of the key space".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// First key included.
    pub start: Vec<u8>,
    /// First key excluded (empty: unbounded).
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        // The first key after all keys with this prefix: increment the last byte that is not
        // 0xff and drop what follows; a prefix of only 0xff bytes has no upper bound.
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last != 0xff {
                end.push(last + 1);
                break;
            }
        }
        KeyRange {
            start: prefix.to_vec(),
            end,
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// A key and its value, as [`KvEngine::scan`] returns them.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A sorted key-value engine: keys and values are bytes, keys ordered lexicographically.
///
/// Calls are blocking; the adapter runs them off the async executor. Implementations must be
/// safe to call from several threads at once, and batches must be atomic (all or nothing, also
/// across a crash).
pub trait KvEngine: Send + Sync + 'static {
    /// A short description for logs.
    fn describe(&self) -> String;

    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Up to `limit` entries in `range`, in key order (or reverse key order).
    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KvPair>, Error>;

    /// Applies a batch atomically.
    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error>;

    /// Makes every earlier write durable.
    fn flush(&self) -> Result<(), Error>;

    /// Makes every earlier write durable, as cheaply as the engine can (an engine with a
    /// write-ahead log syncs the log, without flushing its tables). Default: [`KvEngine::flush`].
    fn sync(&self) -> Result<(), Error> {
        self.flush()
    }

    /// Whether a [`Durability::Buffered`] write followed later by [`KvEngine::sync`] costs less
    /// than a synced write (true of an engine with a write-ahead log). Default: no.
    fn buffered_is_cheaper(&self) -> bool {
        false
    }

    /// Whether a [`Durability::Buffered`] write, and a read of what was written lately, return
    /// without waiting for a device (they go to memory and the operating system's buffers),
    /// so the adapter may call them on the async executor instead of handing them to a blocking
    /// thread: the queue's buffered writes (deferred enqueues, acknowledgements) then cost no
    /// thread hand-off. Default: no (every call goes to a blocking thread).
    fn quick_buffered_write(&self) -> bool {
        false
    }

    /// The value of `key` if the engine can tell without waiting for a device (from memory: a
    /// memtable, a cache of its files' blocks), `None` if it would have to read a file. Lets the
    /// adapter answer a point read on the async executor and hand only the others to a blocking
    /// thread. Must never block on IO. Default: `None` (every read goes to a blocking thread).
    fn get_cached(&self, key: &[u8]) -> Option<Result<Option<Vec<u8>>, Error>> {
        let _ = key;
        None
    }

    /// What [`KvEngine::scan`] returns, if the engine can tell without waiting for a device and
    /// with little work (from memory, skipping few deleted entries), `None` otherwise. Lets the
    /// adapter read a queue's next items on the async executor and hand only the others to a
    /// blocking thread. Must never block on IO. Default: `None`.
    fn scan_cached(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Option<Result<Vec<KvPair>, Error>> {
        let _ = (range, limit, reverse);
        None
    }

    /// Writes a consistent copy of the database into the directory `dir` (which must not exist
    /// yet), as [`Storage::backup`] describes. Engines that cannot say so (the default).
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), Error> {
        let _ = dir;
        Err(Error::new(
            crate::ErrorCode::Internal,
            format!("{} cannot make a backup", self.describe()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        let r = KeyRange::prefix(b"q/");
        assert_eq!(r.end, b"q0");
        assert!(r.contains(b"q/abc"));
        assert!(!r.contains(b"q0"));
        assert!(!r.contains(b"q"));
        let r = KeyRange::prefix(&[1, 0xff, 0xff]);
        assert_eq!(r.end, vec![2]);
        assert!(r.contains(&[1, 0xff, 0xff, 7]));
        let r = KeyRange::prefix(&[0xff]);
        assert!(r.end.is_empty());
        assert!(r.contains(&[0xff, 0xff, 0xff]));
    }
}
