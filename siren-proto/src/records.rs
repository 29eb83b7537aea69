//! Signed directory entries: device records and device revocations.
//!
//! A user's directory is a hash chain of entries, each signed by the user's USK: entry `n` has
//! `seq = n` and carries the hash of entry `n - 1` (`prev`; all zeros for the first entry, which
//! must add a device). Adding a device appends a [`DeviceRecord`]; revoking one appends a
//! [`DeviceRevocation`]. The server appends only an entry that continues its chain; a client
//! remembers the head it last saw and refuses a listing whose head is older, or equally old but
//! different (a fork). [`UserDirectory`] holds that logic for both sides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use siren_api::Uid;

use crate::keys::{DekPublic, KeyError, Signature, UskPublic, UskSecret};
use crate::labels;
use crate::transcript::{Digest, Transcript};

/// Most devices (live DEKs) one user may have at once.
pub const MAX_DEVICES: usize = 32;
/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME: usize = 64;
/// Most revocations a directory listing carries (the newest ones).
pub const MAX_LISTED_REVOCATIONS: usize = 64;

/// Why a record, a listing or a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The signature does not verify under the key the entry names.
    #[error("signature does not verify")]
    BadSignature,
    /// The entry is about another user.
    #[error("entry is for {got}, expected {expected}")]
    WrongUser {
        /// The user we asked about.
        expected: Uid,
        /// The user the entry names.
        got: Uid,
    },
    /// The entry is signed by a different USK than the user's.
    #[error("entry is signed by a different USK than the user's")]
    KeyMismatch,
    /// The entry is not newer than what is already held.
    #[error("rollback: version {got} is not newer than {have}")]
    Rollback {
        /// The version held.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// The entry does not continue the chain (version gap or wrong previous hash).
    #[error("entry does not continue the chain (expected version {expected} after {have:?})")]
    Fork {
        /// The version expected next.
        expected: u64,
        /// The hash of the entry it should follow.
        have: Digest,
    },
    /// The device is already registered.
    #[error("device already registered")]
    DuplicateDevice,
    /// The device to revoke is not live.
    #[error("device is not registered (or already revoked)")]
    UnknownDevice,
    /// A chain must start with a device record at version 1.
    #[error("a directory must start with a device record at version 1")]
    BadGenesis,
    /// A count or length is beyond the protocol's limit.
    #[error("{what} exceeds the limit of {max}")]
    Limit {
        /// What was too long.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The listing is inconsistent (its head is not among its entries, duplicates, …).
    #[error("inconsistent listing: {0}")]
    Inconsistent(&'static str),
    /// A listing shows as live a device whose record is not newer than the cached head, although
    /// the cached listing did not show it as live: it was revoked, and the revocation was left
    /// out.
    #[error(
        "a device that was not live at version {have} is listed as live again (record version {got}): it was revoked, and the revocation was left out"
    )]
    Resurrected {
        /// The cached head's version.
        have: u64,
        /// The version of the record shown as live again.
        got: u64,
    },
}

impl From<KeyError> for RecordError {
    fn from(_: KeyError) -> Self {
        RecordError::BadSignature
    }
}

/// Publishes a device's DEK under a user: signed by the user's USK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The user.
    pub uid: Uid,
    /// The user's signing key (the one that signed this record).
    pub usk: UskPublic,
    /// The device's encryption key.
    pub dek: DekPublic,
    /// Position in the user's directory chain (1 for the first entry).
    pub seq: u64,
    /// Hash of the previous entry ([`Digest::ZERO`] for the first).
    pub prev: Digest,
    /// When the record was made, in seconds since the Unix epoch.
    pub ts: u64,
    /// An optional human-readable device name ("laptop"), at most 64 bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::strict::opt_text"
    )]
    pub name: Option<String>,
    /// Ed25519 signature by `usk` over [`DeviceRecord::signed_bytes`].
    pub sig: Signature,
}

/// Fields of a device record before it is signed.
#[derive(Debug, Clone)]
pub struct DeviceRecordDraft {
    /// The user.
    pub uid: Uid,
    /// The device's encryption key.
    pub dek: DekPublic,
    /// Position in the chain.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Digest,
    /// Creation time, Unix seconds.
    pub ts: u64,
    /// Optional device name.
    pub name: Option<String>,
}

impl DeviceRecordDraft {
    /// Signs the draft with the user's USK.
    pub fn sign(self, usk: &UskSecret) -> DeviceRecord {
        let mut record = DeviceRecord {
            uid: self.uid,
            usk: usk.public(),
            dek: self.dek,
            seq: self.seq,
            prev: self.prev,
            ts: self.ts,
            name: self.name,
            sig: Signature::from_bytes([0; 64]),
        };
        record.sig = usk.sign(&record.signed_bytes());
        record
    }
}

impl DeviceRecord {
    /// The bytes the signature covers (PROTOCOL.md §"Signed bytes").
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(labels::DEVICE_RECORD);
        t.text(&self.uid.to_string())
            .fixed(self.usk.as_bytes())
            .fixed(self.dek.as_bytes())
            .u64(self.seq)
            .fixed(self.prev.as_bytes())
            .u64(self.ts)
            .opt_text(self.name.as_deref());
        t.as_bytes().to_vec()
    }

    /// Checks limits and the signature under the record's own `usk`. Whether that USK is the
    /// user's is for the chain ([`UserDirectory`]) to decide.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self
            .name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_DEVICE_NAME)
        {
            return Err(RecordError::Limit {
                what: "device name",
                max: MAX_DEVICE_NAME,
            });
        }
        self.usk.verify(&self.signed_bytes(), &self.sig)?;
        Ok(())
    }
}

/// Withdraws a device's DEK: signed by the user's USK. Senders must never use the DEK again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRevocation {
    /// The user.
    pub uid: Uid,
    /// The user's signing key.
    pub usk: UskPublic,
    /// The revoked device key.
    pub dek: DekPublic,
    /// Position in the user's directory chain.
    pub seq: u64,
    /// Hash of the previous entry.
    pub prev: Digest,
    /// When it was revoked, Unix seconds.
    pub ts: u64,
    /// Ed25519 signature by `usk` over [`DeviceRevocation::signed_bytes`].
    pub sig: Signature,
}

impl DeviceRevocation {
    /// Makes and signs a revocation.
    pub fn sign(
        usk: &UskSecret,
        uid: Uid,
        dek: DekPublic,
        seq: u64,
        prev: Digest,
        ts: u64,
    ) -> Self {
        let mut r = DeviceRevocation {
            uid,
            usk: usk.public(),
            dek,
            seq,
            prev,
            ts,
            sig: Signature::from_bytes([0; 64]),
        };
        r.sig = usk.sign(&r.signed_bytes());
        r
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(labels::DEVICE_REVOCATION);
        t.text(&self.uid.to_string())
            .fixed(self.usk.as_bytes())
            .fixed(self.dek.as_bytes())
            .u64(self.seq)
            .fixed(self.prev.as_bytes())
            .u64(self.ts);
        t.as_bytes().to_vec()
    }

    /// Checks the signature under the revocation's own `usk`.
    pub fn verify(&self) -> Result<(), RecordError> {
        self.usk.verify(&self.signed_bytes(), &self.sig)?;
        Ok(())
    }
}

/// One link of a user's directory chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum DirectoryEntry {
    /// A device was added.
    #[serde(rename = "add")]
    Add(DeviceRecord),
    /// A device was revoked.
    #[serde(rename = "revoke")]
    Revoke(DeviceRevocation),
}

impl DirectoryEntry {
    /// The entry's user.
    pub fn uid(&self) -> &Uid {
        match self {
            DirectoryEntry::Add(r) => &r.uid,
            DirectoryEntry::Revoke(r) => &r.uid,
        }
    }

    /// The signing key the entry names.
    pub fn usk(&self) -> &UskPublic {
        match self {
            DirectoryEntry::Add(r) => &r.usk,
            DirectoryEntry::Revoke(r) => &r.usk,
        }
    }

    /// Its position in the chain.
    pub fn seq(&self) -> u64 {
        match self {
            DirectoryEntry::Add(r) => r.seq,
            DirectoryEntry::Revoke(r) => r.seq,
        }
    }

    /// The hash of the entry before it.
    pub fn prev(&self) -> &Digest {
        match self {
            DirectoryEntry::Add(r) => &r.prev,
            DirectoryEntry::Revoke(r) => &r.prev,
        }
    }

    /// Verifies the signature.
    pub fn verify(&self) -> Result<(), RecordError> {
        match self {
            DirectoryEntry::Add(r) => r.verify(),
            DirectoryEntry::Revoke(r) => r.verify(),
        }
    }

    /// The entry's hash: `SHA-256(label "siren/v1/entry-hash" || var(signed bytes) || sig)`.
    /// The next entry carries it as `prev`.
    pub fn hash(&self) -> Digest {
        let (signed, sig) = match self {
            DirectoryEntry::Add(r) => (r.signed_bytes(), r.sig),
            DirectoryEntry::Revoke(r) => (r.signed_bytes(), r.sig),
        };
        let mut t = Transcript::new(labels::ENTRY_HASH);
        t.var(&signed).fixed(sig.as_bytes());
        t.digest()
    }
}

/// The newest entry of a chain, by position and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Position of the newest entry.
    pub seq: u64,
    /// Its hash.
    pub hash: Digest,
}

/// What a directory lookup returns: the live device records, recent revocations, and the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryListing {
    /// The user looked up.
    pub uid: Uid,
    /// Live devices.
    pub records: Vec<DeviceRecord>,
    /// The most recent revocations (at most [`MAX_LISTED_REVOCATIONS`]).
    pub revoked: Vec<DeviceRevocation>,
    /// The newest entry of the chain.
    pub head: ChainHead,
}

/// One user's directory: the verified state of the chain. The server keeps one per local user and
/// applies each publish or revoke through [`UserDirectory::apply`]; a client keeps one per contact
/// in its cache and checks each lookup with [`UserDirectory::check_listing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDirectory {
    uid: Uid,
    usk: UskPublic,
    head: ChainHead,
    #[serde(with = "records_by_dek")]
    devices: BTreeMap<DekPublic, DeviceRecord>,
    revoked: Vec<DeviceRevocation>,
}

/// The outcome of checking a listing against a cached directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingCheck {
    /// The directory as the listing shows it (replace the cache with it).
    pub directory: UserDirectory,
    /// DEKs that are new since the cache: show a trust prompt.
    pub added: Vec<DekPublic>,
    /// DEKs in the cache that are gone: treat as revoked, never use again.
    pub removed: Vec<DekPublic>,
}

impl UserDirectory {
    /// Starts a chain with the user's first device record.
    pub fn genesis(record: DeviceRecord) -> Result<Self, RecordError> {
        record.verify()?;
        if record.seq != 1 || record.prev != Digest::ZERO {
            return Err(RecordError::BadGenesis);
        }
        let entry = DirectoryEntry::Add(record.clone());
        let mut devices = BTreeMap::new();
        devices.insert(record.dek, record.clone());
        Ok(UserDirectory {
            uid: record.uid,
            usk: record.usk,
            head: ChainHead {
                seq: 1,
                hash: entry.hash(),
            },
            devices,
            revoked: Vec::new(),
        })
    }

    /// The user.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// The user's signing key.
    pub fn usk(&self) -> &UskPublic {
        &self.usk
    }

    /// The newest entry.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Live device records.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// Whether `dek` is a live device of this user.
    pub fn is_live(&self, dek: &DekPublic) -> bool {
        self.devices.contains_key(dek)
    }

    /// Appends an entry that continues the chain: same user, same USK, valid signature,
    /// `seq = head + 1`, `prev = hash(head)`.
    pub fn apply(&mut self, entry: DirectoryEntry) -> Result<(), RecordError> {
        if entry.uid() != &self.uid {
            return Err(RecordError::WrongUser {
                expected: self.uid.clone(),
                got: entry.uid().clone(),
            });
        }
        if entry.usk() != &self.usk {
            return Err(RecordError::KeyMismatch);
        }
        entry.verify()?;
        if entry.seq() <= self.head.seq {
            return Err(RecordError::Rollback {
                have: self.head.seq,
                got: entry.seq(),
            });
        }
        if entry.seq() != self.head.seq + 1 || entry.prev() != &self.head.hash {
            return Err(RecordError::Fork {
                expected: self.head.seq + 1,
                have: self.head.hash,
            });
        }
        let hash = entry.hash();
        match entry {
            DirectoryEntry::Add(record) => {
                if self.devices.contains_key(&record.dek) || self.was_revoked(&record.dek) {
                    return Err(RecordError::DuplicateDevice);
                }
                if self.devices.len() >= MAX_DEVICES {
                    return Err(RecordError::Limit {
                        what: "devices per user",
                        max: MAX_DEVICES,
                    });
                }
                self.devices.insert(record.dek, record);
            }
            DirectoryEntry::Revoke(revocation) => {
                if self.devices.remove(&revocation.dek).is_none() {
                    return Err(RecordError::UnknownDevice);
                }
                self.revoked.push(revocation);
                if self.revoked.len() > MAX_LISTED_REVOCATIONS {
                    self.revoked.remove(0);
                }
            }
        }
        self.head.seq += 1;
        self.head.hash = hash;
        Ok(())
    }

    fn was_revoked(&self, dek: &DekPublic) -> bool {
        self.revoked.iter().any(|r| &r.dek == dek)
    }

    /// What a lookup of this user returns.
    pub fn listing(&self) -> DirectoryListing {
        DirectoryListing {
            uid: self.uid.clone(),
            records: self.devices.values().cloned().collect(),
            revoked: self.revoked.clone(),
            head: self.head,
        }
    }

    /// Checks a lookup result for `expected` against what the client cached (if anything):
    /// every entry signed by one USK and about `expected`, the head present among the entries,
    /// no rollback or fork against the cache, no change of USK. Returns the new directory and
    /// which DEKs appeared and disappeared.
    pub fn check_listing(
        expected: &Uid,
        listing: &DirectoryListing,
        cached: Option<&UserDirectory>,
    ) -> Result<ListingCheck, RecordError> {
        if listing.records.len() > MAX_DEVICES {
            return Err(RecordError::Limit {
                what: "devices per user",
                max: MAX_DEVICES,
            });
        }
        if listing.revoked.len() > MAX_LISTED_REVOCATIONS {
            return Err(RecordError::Limit {
                what: "listed revocations",
                max: MAX_LISTED_REVOCATIONS,
            });
        }
        if &listing.uid != expected {
            return Err(RecordError::WrongUser {
                expected: expected.clone(),
                got: listing.uid.clone(),
            });
        }
        let first = listing
            .records
            .first()
            .ok_or(RecordError::Inconsistent("no live devices"))?;
        let usk = first.usk;
        let entries = listing
            .records
            .iter()
            .cloned()
            .map(DirectoryEntry::Add)
            .chain(listing.revoked.iter().cloned().map(DirectoryEntry::Revoke));
        let mut head_found = false;
        let mut devices = BTreeMap::new();
        for entry in entries {
            if entry.uid() != expected {
                return Err(RecordError::WrongUser {
                    expected: expected.clone(),
                    got: entry.uid().clone(),
                });
            }
            if entry.usk() != &usk {
                return Err(RecordError::KeyMismatch);
            }
            entry.verify()?;
            if entry.seq() > listing.head.seq {
                return Err(RecordError::Inconsistent("entry newer than the head"));
            }
            if entry.seq() == listing.head.seq {
                if entry.hash() != listing.head.hash {
                    return Err(RecordError::Inconsistent(
                        "head hash does not match its entry",
                    ));
                }
                head_found = true;
            }
            if let DirectoryEntry::Add(record) = entry
                && devices.insert(record.dek, record).is_some()
            {
                return Err(RecordError::Inconsistent("device listed twice"));
            }
        }
        if !head_found {
            return Err(RecordError::Inconsistent(
                "the head is not among the entries",
            ));
        }
        // A record whose DEK also appears revoked (later) is not live.
        let revoked: Vec<DeviceRevocation> = listing.revoked.clone();
        for r in &revoked {
            if devices.get(&r.dek).is_some_and(|d| d.seq < r.seq) {
                devices.remove(&r.dek);
            }
        }
        let directory = UserDirectory {
            uid: expected.clone(),
            usk,
            head: listing.head,
            devices,
            revoked,
        };
        let (added, removed) = match cached {
            None => (directory.devices.keys().copied().collect(), Vec::new()),
            Some(old) => {
                if old.usk != usk {
                    return Err(RecordError::KeyMismatch);
                }
                if listing.head.seq < old.head.seq {
                    return Err(RecordError::Rollback {
                        have: old.head.seq,
                        got: listing.head.seq,
                    });
                }
                if listing.head.seq == old.head.seq && listing.head.hash != old.head.hash {
                    return Err(RecordError::Fork {
                        expected: old.head.seq + 1,
                        have: old.head.hash,
                    });
                }
                // Devices never come back: a live record at or below the cached head that the
                // cache did not show as live was revoked, whatever this listing says.
                let added: Vec<DekPublic> = directory
                    .devices
                    .keys()
                    .filter(|k| !old.devices.contains_key(k))
                    .copied()
                    .collect();
                if let Some(back) = added
                    .iter()
                    .filter_map(|k| directory.devices.get(k))
                    .find(|r| r.seq <= old.head.seq)
                {
                    return Err(RecordError::Resurrected {
                        have: old.head.seq,
                        got: back.seq,
                    });
                }
                let removed = old
                    .devices
                    .keys()
                    .filter(|k| !directory.devices.contains_key(k))
                    .copied()
                    .collect();
                (added, removed)
            }
        };
        Ok(ListingCheck {
            directory,
            added,
            removed,
        })
    }
}

/// Stores the live devices as a list (CBOR map keys must be text in Siren's profile); the map
/// is rebuilt from each record's own DEK.
mod records_by_dek {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::DeviceRecord;
    use crate::keys::DekPublic;

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<DekPublic, DeviceRecord>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<DekPublic, DeviceRecord>, D::Error> {
        let list = Vec::<DeviceRecord>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for record in list {
            if map.insert(record.dek, record).is_some() {
                return Err(serde::de::Error::custom("device listed twice"));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests;
