//! The Directory: each local user's chain of signed device records and revocations.
//!
//! The store keeps the entries; this module verifies every entry before it is stored (through
//! `siren_proto::records::UserDirectory`, the same code clients use), and keeps each user's
//! verified state in memory so lookups cost no signature checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use siren_api::storage::{EntryKind, Storage, StoredEntry};
use siren_api::{Error, ErrorCode, Username};
use siren_proto::message;
use siren_proto::records::{DirectoryEntry, RecordError, UserDirectory};

/// Most remembered watchers per user (the most recent lookups are kept).
const MAX_WATCHERS: usize = 1_000;

/// Local users' directories.
pub struct Directory {
    storage: Arc<dyn Storage>,
    cache: Mutex<HashMap<Username, (Arc<UserDirectory>, std::time::Instant)>>,
    /// In a cluster, how long a cached chain is trusted: other nodes append to the same store
    /// (they say so over NATS and this node forgets the chain at once, but a lost notice must
    /// not leave it stale for ever). `None`: this process is the store's only writer.
    max_age: Mutex<Option<std::time::Duration>>,
    /// Who looked each user up (in memory), with a counter telling how recently: they get a
    /// notice when the user's devices change.
    watchers: Mutex<HashMap<Username, HashMap<siren_api::Uid, u64>>>,
    /// The counter for `watchers`.
    lookups: std::sync::atomic::AtomicU64,
    /// Most entries in one user's chain.
    max_entries: std::sync::atomic::AtomicU64,
    /// Serialises appends (rare: one per login or revocation) so the cache and the store move
    /// together.
    append: tokio::sync::Mutex<()>,
}

/// The error code for a refused record, and a message for the client.
pub fn record_error(e: &RecordError) -> Error {
    let code = match e {
        RecordError::BadSignature => ErrorCode::BadSignature,
        RecordError::KeyMismatch => ErrorCode::KeyMismatch,
        RecordError::Rollback { .. } | RecordError::Fork { .. } | RecordError::BadGenesis => {
            ErrorCode::Rollback
        }
        RecordError::UnknownDevice => ErrorCode::UnknownDevice,
        RecordError::Limit { .. } => ErrorCode::LimitExceeded,
        RecordError::WrongUser { .. } | RecordError::DuplicateDevice => {
            ErrorCode::UnexpectedMessage
        }
        _ => ErrorCode::MalformedMessage,
    };
    Error::new(code, e.to_string())
}

impl Directory {
    /// A directory over `storage`, allowing `max_entries` entries per user.
    pub fn new(storage: Arc<dyn Storage>, max_entries: u64) -> Self {
        Directory {
            storage,
            cache: Mutex::new(HashMap::new()),
            max_age: Mutex::new(None),
            watchers: Mutex::new(HashMap::new()),
            lookups: std::sync::atomic::AtomicU64::new(0),
            max_entries: std::sync::atomic::AtomicU64::new(max_entries),
            append: tokio::sync::Mutex::new(()),
        }
    }

    /// Changes the most entries one user's chain may have (a reload).
    pub fn set_max_entries(&self, max_entries: u64) {
        self.max_entries
            .store(max_entries, std::sync::atomic::Ordering::Relaxed);
    }

    /// Other processes append to this directory's store (the nodes of a cluster): a cached
    /// chain is trusted for at most `max_age`, and what decides (a login, an append) always
    /// reads the store.
    pub fn set_shared(&self, max_age: std::time::Duration) {
        *self.max_age.lock().unwrap_or_else(|p| p.into_inner()) = Some(max_age);
    }

    fn max_age(&self) -> Option<std::time::Duration> {
        *self.max_age.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, user: &Username) -> Option<Arc<UserDirectory>> {
        let max_age = self.max_age();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (dir, at) = cache.get(user)?;
        match max_age {
            Some(max) if at.elapsed() >= max => None,
            _ => Some(dir.clone()),
        }
    }

    fn remember(&self, user: &Username, dir: Arc<UserDirectory>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.clone(), (dir, std::time::Instant::now()));
    }

    /// The user's directory as stored now: in a cluster read from the store (another node may
    /// have appended a moment ago), otherwise as [`Directory::get`]. For what decides: whether a
    /// device may log in, what an entry is appended to.
    pub async fn fresh(&self, user: &Username) -> Result<Option<Arc<UserDirectory>>, Error> {
        if self.max_age().is_some() {
            self.forget(user);
        }
        self.get(user).await
    }

    /// Drops what is cached of `user`'s chain, so the next read goes to the store (the account
    /// was deleted, its chain with it, possibly by another process).
    pub fn forget(&self, user: &Username) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    /// Remembers that `looker` looked `user` up (forgetting the least recent watcher when
    /// `user` has too many).
    pub fn watch(&self, user: &Username, looker: &siren_api::Uid) {
        let now = self
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let set = w.entry(user.clone()).or_default();
        if set.len() >= MAX_WATCHERS
            && !set.contains_key(looker)
            && let Some(oldest) = set.iter().min_by_key(|(_, t)| **t).map(|(u, _)| u.clone())
        {
            set.remove(&oldest);
        }
        set.insert(looker.clone(), now);
    }

    /// The users who looked `user` up since the server started, most recent first.
    pub fn watchers(&self, user: &Username) -> Vec<siren_api::Uid> {
        let w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<(&siren_api::Uid, u64)> = w
            .get(user)
            .map(|s| s.iter().map(|(u, t)| (u, *t)).collect())
            .unwrap_or_default();
        list.sort_unstable_by_key(|(_, t)| std::cmp::Reverse(*t));
        list.into_iter().map(|(u, _)| u.clone()).collect()
    }

    /// The user's directory, or `None` if the user has never registered a device.
    pub async fn get(&self, user: &Username) -> Result<Option<Arc<UserDirectory>>, Error> {
        if let Some(dir) = self.cached(user) {
            return Ok(Some(dir));
        }
        let entries = self.storage.entries(user).await?;
        let Some(dir) = replay(user, &entries)? else {
            return Ok(None);
        };
        let dir = Arc::new(dir);
        self.remember(user, dir.clone());
        Ok(Some(dir))
    }

    /// Verifies `entry` against the user's chain and stores it. Returns the new directory.
    pub async fn append(
        &self,
        user: &Username,
        entry: DirectoryEntry,
    ) -> Result<Arc<UserDirectory>, Error> {
        let _guard = self.append.lock().await;
        let max_entries = self.max_entries.load(std::sync::atomic::Ordering::Relaxed);
        if entry.seq() > max_entries {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this account's device history is full ({} registrations and revocations); \
                     ask the server's administrator",
                    max_entries
                ),
            ));
        }
        let next = match self.fresh(user).await? {
            None => match &entry {
                DirectoryEntry::Add(record) => {
                    UserDirectory::genesis(record.clone()).map_err(|e| record_error(&e))?
                }
                DirectoryEntry::Revoke(_) => {
                    return Err(Error::new(
                        ErrorCode::UnknownDevice,
                        "the user has no devices to revoke",
                    ));
                }
            },
            Some(current) => {
                let mut next = (*current).clone();
                next.apply(entry.clone()).map_err(|e| record_error(&e))?;
                next
            }
        };
        let stored = StoredEntry {
            seq: entry.seq(),
            kind: match entry {
                DirectoryEntry::Add(_) => EntryKind::Add,
                DirectoryEntry::Revoke(_) => EntryKind::Revoke,
            },
            device: match &entry {
                DirectoryEntry::Add(r) => *r.dek.as_bytes(),
                DirectoryEntry::Revoke(r) => *r.dek.as_bytes(),
            },
            bytes: message::encode_value(&entry),
        };
        self.storage.append_entry(user, &stored).await?;
        let next = Arc::new(next);
        self.remember(user, next.clone());
        Ok(next)
    }
}

/// Rebuilds a verified directory from stored entries.
fn replay(user: &Username, entries: &[StoredEntry]) -> Result<Option<UserDirectory>, Error> {
    let corrupt = |why: String| {
        Error::new(
            ErrorCode::Internal,
            format!("stored directory of {user} is corrupt: {why}"),
        )
    };
    let mut dir: Option<UserDirectory> = None;
    for stored in entries {
        let entry: DirectoryEntry =
            message::decode_value(&stored.bytes).map_err(|e| corrupt(e.to_string()))?;
        match (&mut dir, entry) {
            (None, DirectoryEntry::Add(record)) => {
                dir = Some(UserDirectory::genesis(record).map_err(|e| corrupt(e.to_string()))?);
            }
            (None, DirectoryEntry::Revoke(_)) => {
                return Err(corrupt("starts with a revocation".into()));
            }
            (Some(d), entry) => d.apply(entry).map_err(|e| corrupt(e.to_string()))?,
        }
    }
    Ok(dir)
}
