//! Files in transfer (PROTOCOL.md §12, `file` and `file_chunk`). Outgoing: the file is sealed
//! once under a random key, cut into chunks that each fit a frame, and its manifest sent first.
//! Incoming: chunks are opened as they come, the whole is checked against the manifest's size and
//! SHA-256, and only a checked file is offered for saving. What a receiver holds is bounded:
//! files in progress at once, bytes in progress, and time without a new chunk.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use siren_api::Uid;
use siren_proto::ids::{FileId, MessageId};
use siren_proto::plaintext::{FileManifest, MAX_CHUNK_SIZE, MAX_FILE_SIZE, Plaintext};

use crate::model::Millis;

/// Chunk size this client sends: large enough for few envelopes, small enough that a chunk
/// sealed to several devices fits one `send` frame.
pub const CHUNK_SIZE: u32 = 192 << 10;
/// Incoming files being assembled at once (more are refused until one ends).
pub const MAX_INCOMING_FILES: usize = 8;
/// Bytes of incoming files held at once (in progress and complete but not saved).
pub const MAX_INCOMING_BYTES: u64 = 64 << 20;
/// A file with no new chunk for this long is given up.
pub const STALL_MILLIS: Millis = 120_000;

/// Why a file could not be received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Too much in progress already.
    #[error("too many files in transfer at once")]
    Busy,
    /// A chunk did not open under the file's key (altered, or for another file).
    #[error("chunk {0} is corrupted")]
    Corrupted(u32),
    /// A chunk's length does not match what the manifest says.
    #[error("chunk {0} has the wrong size")]
    WrongSize(u32),
    /// The whole file does not match the manifest's hash.
    #[error("the file does not match its hash")]
    HashMismatch,
    /// Chunks stopped coming.
    #[error("chunk {0} is missing")]
    Missing(u32),
    /// The file is larger than this client accepts.
    #[error("the file is larger than {} MiB", MAX_FILE_SIZE >> 20)]
    TooLarge,
}

/// A file being received.
struct Incoming {
    manifest: FileManifest,
    /// The message that shows it.
    msg: MessageId,
    chunks: Vec<Option<Vec<u8>>>,
    have: u32,
    last_progress: Millis,
}

/// What a chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Not a file in progress from this sender (unknown, already done or failed): ignored.
    Unknown,
    /// Progress: `have` of `of`.
    Progress {
        /// The message showing the file.
        msg: MessageId,
        /// Chunks received.
        have: u32,
        /// All chunks.
        of: u32,
    },
    /// Complete and checked.
    Complete {
        /// The message showing the file.
        msg: MessageId,
    },
    /// The transfer failed; nothing is kept.
    Failed {
        /// The message showing the file.
        msg: MessageId,
        /// Why.
        why: FileError,
    },
}

/// Incoming files, keyed by sender and file id (a chunk counts only from the manifest's sender).
#[derive(Default)]
pub(crate) struct Receiving {
    files: BTreeMap<(Uid, FileId), Incoming>,
    /// Complete files not saved yet.
    complete: BTreeMap<FileId, (String, Vec<u8>)>,
}

impl Receiving {
    fn held_bytes(&self) -> u64 {
        let progress: u64 = self.files.values().map(|f| f.manifest.size).sum();
        let complete: u64 = self.complete.values().map(|(_, d)| d.len() as u64).sum();
        progress + complete
    }

    /// A manifest arrived: start receiving, or refuse.
    pub fn start(
        &mut self,
        from: &Uid,
        manifest: &FileManifest,
        msg: MessageId,
        now: Millis,
    ) -> Result<(), FileError> {
        // The decoder checked the manifest's own consistency; these are this client's bounds.
        if manifest.size > MAX_FILE_SIZE || manifest.chunk_size > MAX_CHUNK_SIZE {
            return Err(FileError::TooLarge);
        }
        if self.files.len() >= MAX_INCOMING_FILES
            || self.held_bytes().saturating_add(manifest.size) > MAX_INCOMING_BYTES
        {
            return Err(FileError::Busy);
        }
        let n = usize::try_from(manifest.chunks).map_err(|_| FileError::TooLarge)?;
        let mut incoming = Incoming {
            manifest: manifest.clone(),
            msg,
            chunks: vec![None; n],
            have: 0,
            last_progress: now,
        };
        if n == 0 {
            // An empty file: complete at once (checked below like any other).
            incoming.have = 0;
        }
        self.files.insert((from.clone(), manifest.file), incoming);
        Ok(())
    }

    /// A chunk arrived.
    pub fn chunk(
        &mut self,
        from: &Uid,
        file: FileId,
        index: u32,
        sealed: &[u8],
        now: Millis,
    ) -> ChunkOutcome {
        let key = (from.clone(), file);
        let Some(f) = self.files.get_mut(&key) else {
            return ChunkOutcome::Unknown;
        };
        let msg = f.msg;
        let slot_taken = match usize::try_from(index).ok().and_then(|i| f.chunks.get(i)) {
            None => return self.fail(&key, FileError::Corrupted(index)),
            Some(slot) => slot.is_some(),
        };
        if slot_taken {
            // A duplicate chunk (a redelivery): nothing new.
            return ChunkOutcome::Progress {
                msg,
                have: f.have,
                of: f.manifest.chunks,
            };
        }
        let Some(plain) = siren_proto::plaintext::open_chunk(&f.manifest.key, index, sealed) else {
            return self.fail(&key, FileError::Corrupted(index));
        };
        if plain.len() as u64 != f.manifest.chunk_len(index) {
            return self.fail(&key, FileError::WrongSize(index));
        }
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| f.chunks.get_mut(i))
        {
            *slot = Some(plain);
        }
        f.have += 1;
        f.last_progress = now;
        if f.have < f.manifest.chunks {
            return ChunkOutcome::Progress {
                msg,
                have: f.have,
                of: f.manifest.chunks,
            };
        }
        self.finish(&key)
    }

    /// Checks a file with every chunk in, and keeps it for saving.
    fn finish(&mut self, key: &(Uid, FileId)) -> ChunkOutcome {
        let Some(f) = self.files.remove(key) else {
            return ChunkOutcome::Unknown;
        };
        let mut data = Vec::with_capacity(usize::try_from(f.manifest.size).unwrap_or(0));
        for chunk in f.chunks.into_iter().flatten() {
            data.extend_from_slice(&chunk);
        }
        let digest: [u8; 32] = Sha256::digest(&data).into();
        if data.len() as u64 != f.manifest.size || digest != f.manifest.sha256 {
            return ChunkOutcome::Failed {
                msg: f.msg,
                why: FileError::HashMismatch,
            };
        }
        self.complete
            .insert(f.manifest.file, (f.manifest.name.clone(), data));
        ChunkOutcome::Complete { msg: f.msg }
    }

    fn fail(&mut self, key: &(Uid, FileId), why: FileError) -> ChunkOutcome {
        match self.files.remove(key) {
            Some(f) => ChunkOutcome::Failed { msg: f.msg, why },
            None => ChunkOutcome::Unknown,
        }
    }

    /// An empty file's manifest completes it at once.
    pub fn complete_if_empty(&mut self, from: &Uid, file: FileId) -> Option<ChunkOutcome> {
        let key = (from.clone(), file);
        let f = self.files.get(&key)?;
        (f.manifest.chunks == 0).then(|| self.finish(&key))
    }

    /// Gives up files whose chunks stopped coming.
    pub fn expire(&mut self, now: Millis) -> Vec<ChunkOutcome> {
        let stalled: Vec<(Uid, FileId)> = self
            .files
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.last_progress) >= STALL_MILLIS)
            .map(|(k, _)| k.clone())
            .collect();
        stalled
            .into_iter()
            .filter_map(|k| {
                let first_missing = self.files.get(&k).and_then(|f| {
                    f.chunks
                        .iter()
                        .position(Option::is_none)
                        .and_then(|i| u32::try_from(i).ok())
                })?;
                Some(self.fail(&k, FileError::Missing(first_missing)))
            })
            .collect()
    }

    /// Takes a complete file for saving.
    pub fn take_complete(&mut self, file: &FileId) -> Option<(String, Vec<u8>)> {
        self.complete.remove(file)
    }

    /// Puts a file back (the save failed), to try again.
    pub fn put_back(&mut self, file: FileId, name: String, data: Vec<u8>) {
        self.complete.insert(file, (name, data));
    }
}

/// A file to send: its manifest and its sealed chunks, ready to become messages.
pub struct Outgoing {
    /// The manifest (sent first).
    pub manifest: FileManifest,
    /// The chunks, as `file_chunk` plaintexts, in order.
    pub chunks: Vec<Plaintext>,
}

/// Seals a file once under `key` and cuts it into chunks.
pub fn prepare(
    file: FileId,
    name: &str,
    data: &[u8],
    key: [u8; 32],
    ts: u64,
) -> Result<Outgoing, FileError> {
    let size = data.len() as u64;
    if size > MAX_FILE_SIZE {
        return Err(FileError::TooLarge);
    }
    let sha256: [u8; 32] = Sha256::digest(data).into();
    let chunk = usize::try_from(CHUNK_SIZE).map_err(|_| FileError::TooLarge)?;
    let mut chunks = Vec::new();
    for (i, part) in data.chunks(chunk).enumerate() {
        let index = u32::try_from(i).map_err(|_| FileError::TooLarge)?;
        chunks.push(Plaintext::FileChunk {
            file,
            index,
            data: siren_proto::plaintext::seal_chunk(&key, index, part),
        });
    }
    let count = u32::try_from(chunks.len()).map_err(|_| FileError::TooLarge)?;
    Ok(Outgoing {
        manifest: FileManifest {
            file,
            name: name.to_owned(),
            size,
            chunk_size: CHUNK_SIZE,
            chunks: count,
            sha256,
            key,
            ts,
        },
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Uid {
        Uid::parse("bob@example.org").unwrap()
    }

    fn chunk_parts(out: &Outgoing) -> Vec<(u32, Vec<u8>)> {
        out.chunks
            .iter()
            .map(|c| match c {
                Plaintext::FileChunk { index, data, .. } => (*index, data.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_file_round_trips_and_is_checked() {
        let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
        let out = prepare(FileId::from_bytes([1; 16]), "a.bin", &data, [7; 32], 1).unwrap();
        assert_eq!(out.manifest.chunks, 3);
        let mut r = Receiving::default();
        let msg = MessageId::from_bytes([2; 16]);
        r.start(&bob(), &out.manifest, msg, 0).unwrap();
        let parts = chunk_parts(&out);
        // Out of order, with a duplicate.
        for (i, d) in [&parts[2], &parts[0], &parts[0], &parts[1]] {
            let _ = r.chunk(&bob(), out.manifest.file, *i, d, 1);
        }
        let (name, got) = r.take_complete(&out.manifest.file).unwrap();
        assert_eq!((name.as_str(), got), ("a.bin", data));
    }

    #[test]
    fn a_corrupted_or_foreign_chunk_fails_the_file_and_keeps_nothing() {
        let data = vec![5u8; 300_000];
        let out = prepare(FileId::from_bytes([1; 16]), "a", &data, [7; 32], 1).unwrap();
        let mut r = Receiving::default();
        let msg = MessageId::from_bytes([2; 16]);
        r.start(&bob(), &out.manifest, msg, 0).unwrap();
        let parts = chunk_parts(&out);
        // From someone else: not this file.
        let eve = Uid::parse("eve@example.org").unwrap();
        assert_eq!(
            r.chunk(&eve, out.manifest.file, 0, &parts[0].1, 1),
            ChunkOutcome::Unknown
        );
        let mut bad = parts[1].1.clone();
        bad[20] ^= 1;
        assert_eq!(
            r.chunk(&bob(), out.manifest.file, 1, &bad, 1),
            ChunkOutcome::Failed {
                msg,
                why: FileError::Corrupted(1)
            }
        );
        assert_eq!(
            r.chunk(&bob(), out.manifest.file, 0, &parts[0].1, 1),
            ChunkOutcome::Unknown
        );
        assert!(r.take_complete(&out.manifest.file).is_none());
    }

    #[test]
    fn a_missing_chunk_is_reported_after_the_stall_time() {
        let data = vec![5u8; 300_000];
        let out = prepare(FileId::from_bytes([1; 16]), "a", &data, [7; 32], 1).unwrap();
        let mut r = Receiving::default();
        let msg = MessageId::from_bytes([2; 16]);
        r.start(&bob(), &out.manifest, msg, 0).unwrap();
        let parts = chunk_parts(&out);
        let _ = r.chunk(&bob(), out.manifest.file, 0, &parts[0].1, 10);
        assert!(r.expire(10 + STALL_MILLIS - 1).is_empty());
        assert_eq!(
            r.expire(10 + STALL_MILLIS),
            vec![ChunkOutcome::Failed {
                msg,
                why: FileError::Missing(1)
            }]
        );
    }

    #[test]
    fn what_is_held_at_once_is_bounded() {
        let mut r = Receiving::default();
        let mut m = prepare(FileId::from_bytes([0; 16]), "a", &[1], [7; 32], 1)
            .unwrap()
            .manifest;
        for i in 0..MAX_INCOMING_FILES {
            m.file = FileId::from_bytes([i as u8; 16]);
            r.start(&bob(), &m, MessageId::from_bytes([i as u8; 16]), 0)
                .unwrap();
        }
        m.file = FileId::from_bytes([200; 16]);
        assert_eq!(
            r.start(&bob(), &m, MessageId::from_bytes([200; 16]), 0),
            Err(FileError::Busy)
        );
    }
}
