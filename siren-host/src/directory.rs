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

/// Most remembered watchers per user.
const MAX_WATCHERS: usize = 10_000;

/// Local users' directories.
pub struct Directory {
    storage: Arc<dyn Storage>,
    cache: Mutex<HashMap<Username, Arc<UserDirectory>>>,
    /// Who looked each user up (in memory): they get a notice when the user's devices change.
    watchers: Mutex<HashMap<Username, std::collections::HashSet<siren_api::Uid>>>,
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
    /// A directory over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Directory {
            storage,
            cache: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            append: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, user: &Username) -> Option<Arc<UserDirectory>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }

    fn remember(&self, user: &Username, dir: Arc<UserDirectory>) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.clone(), dir);
    }

    /// Drops what is cached of `user`'s chain, so the next read goes to the store (the account
    /// was deleted, its chain with it, possibly by another process).
    pub fn forget(&self, user: &Username) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    /// Remembers that `looker` looked `user` up.
    pub fn watch(&self, user: &Username, looker: &siren_api::Uid) {
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let set = w.entry(user.clone()).or_default();
        if set.len() < MAX_WATCHERS {
            set.insert(looker.clone());
        }
    }

    /// Everyone who looked `user` up since the server started.
    pub fn watchers(&self, user: &Username) -> Vec<siren_api::Uid> {
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
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
        let next = match self.get(user).await? {
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
