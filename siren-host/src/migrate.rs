//! `sirend migrate-store`: copy everything one store holds into another, empty, store — any
//! two backends — and prove the copy by counts and checksums computed by reading both stores
//! back.
//!
//! Run it with the server stopped (RocksDB allows one process; and a message arriving during
//! the copy would be in only one of the stores). Queue items keep their order and expiry; their
//! sequence numbers start again at 1 in the new store (devices acknowledge by the numbers of
//! their current session, and clients drop duplicates by message id). Rosters keep their
//! version, so the chain continues.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use siren_api::storage::{NewQueueItem, Storage};
use siren_api::{Error, ErrorCode};

/// Queue items read and written per batch.
const PAGE: usize = 1000;

/// What a store holds: how many of each kind, and a SHA-256 over their content in a fixed
/// order (sequence numbers of queue items excluded: they are renumbered).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Accounts.
    pub accounts: usize,
    /// Users with directory entries.
    pub users: usize,
    /// Directory entries (device records and revocations).
    pub entries: usize,
    /// Rosters.
    pub rosters: usize,
    /// Devices with queued items.
    pub devices: usize,
    /// Queued items.
    pub items: usize,
    /// Resumable sessions.
    pub sessions: usize,
    /// The checksum.
    pub checksum: [u8; 32],
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accounts, {} users with {} directory entries, {} rosters, {} queued items for {} devices, {} sessions; sha256 ",
            self.accounts,
            self.users,
            self.entries,
            self.rosters,
            self.items,
            self.devices,
            self.sessions
        )?;
        for b in &self.checksum[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// Feeds length-prefixed fields to the hash, so no two different contents hash alike.
struct Hasher(Sha256);

impl Hasher {
    fn field(&mut self, tag: &str, bytes: &[u8]) {
        self.0.update((tag.len() as u64).to_be_bytes());
        self.0.update(tag.as_bytes());
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }
}

/// Reads a whole store and summarises it.
pub async fn summarize(store: &dyn Storage) -> Result<Summary, Error> {
    let mut s = Summary::default();
    let mut h = Hasher(Sha256::new());
    for user in store.list_accounts().await? {
        let Some(account) = store.account(&user).await? else {
            continue;
        };
        s.accounts += 1;
        h.field("account", user.as_str().as_bytes());
        h.field("created", &account.created.to_be_bytes());
        h.field(
            "credential",
            account.credential.as_deref().unwrap_or("").as_bytes(),
        );
        h.field("stamp", &account.credential_stamp.to_be_bytes());
    }
    for user in store.directory_users().await? {
        s.users += 1;
        h.field("directory", user.as_str().as_bytes());
        for e in store.entries(&user).await? {
            s.entries += 1;
            h.field("seq", &e.seq.to_be_bytes());
            h.field("kind", &[e.kind as u8]);
            h.field("device", &e.device);
            h.field("entry", &e.bytes);
        }
    }
    for user in store.roster_users().await? {
        let Some(roster) = store.roster(&user).await? else {
            continue;
        };
        s.rosters += 1;
        h.field("roster", user.as_str().as_bytes());
        h.field("version", &roster.version.to_be_bytes());
        h.field("bytes", &roster.bytes);
    }
    for device in store.queue_devices().await? {
        s.devices += 1;
        h.field("queue", &device);
        let mut after = 0;
        loop {
            let page = store.pending(&device, after, PAGE).await?;
            for item in &page {
                s.items += 1;
                h.field("expires", &item.expires.to_be_bytes());
                h.field("item", &item.bytes);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.seq,
                _ => break,
            }
        }
    }
    for session in store.sessions().await? {
        s.sessions += 1;
        h.field("session", &session.id);
        h.field("device", &session.device);
        h.field(
            "user",
            session.user.as_ref().map_or("", |u| u.as_str()).as_bytes(),
        );
        h.field("last_seen", &session.last_seen.to_be_bytes());
        match session.credential_stamp {
            None => h.field("stamp", &[]),
            Some(stamp) => h.field("stamp", &[&[1][..], &stamp.to_be_bytes()].concat()),
        }
    }
    s.checksum = h.0.finalize().into();
    Ok(s)
}

/// Copies `from` into `to`, which must be empty, then checks that both read back alike.
/// Returns the summary of both.
pub async fn migrate(from: Arc<dyn Storage>, to: Arc<dyn Storage>) -> Result<Summary, Error> {
    let empty = summarize(to.as_ref()).await?;
    if empty.accounts + empty.users + empty.rosters + empty.items + empty.sessions > 0 {
        return Err(Error::new(
            ErrorCode::Internal,
            format!("the target store is not empty ({empty}); migrate into an empty store"),
        ));
    }
    for user in from.list_accounts().await? {
        if let Some(account) = from.account(&user).await? {
            to.put_account(&account).await?;
        }
    }
    for user in from.directory_users().await? {
        for entry in from.entries(&user).await? {
            to.append_entry(&user, &entry).await?;
        }
    }
    for user in from.roster_users().await? {
        if let Some(roster) = from.roster(&user).await? {
            to.import_roster(&user, &roster).await?;
        }
    }
    for device in from.queue_devices().await? {
        let mut after = 0;
        loop {
            let page = from.pending(&device, after, PAGE).await?;
            let batch: Vec<NewQueueItem> = page
                .iter()
                .map(|item| NewQueueItem {
                    device,
                    expires: item.expires,
                    bytes: item.bytes.clone(),
                })
                .collect();
            if !batch.is_empty() {
                to.enqueue(&batch).await?;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.seq,
                _ => break,
            }
        }
    }
    for session in from.sessions().await? {
        to.put_session(&session).await?;
    }
    to.flush().await?;
    let source = summarize(from.as_ref()).await?;
    let copied = summarize(to.as_ref()).await?;
    if source != copied {
        return Err(Error::new(
            ErrorCode::Internal,
            format!("the copy differs from the source: source {source}; copy {copied}"),
        ));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_api::Username;
    use siren_api::storage::{Account, EntryKind, SessionRecord, StoredEntry, StoredRoster};

    fn user(n: &str) -> Username {
        Username::parse(n).unwrap()
    }

    async fn filled() -> Arc<dyn Storage> {
        let s: Arc<dyn Storage> = Arc::new(siren_storage_memory::storage());
        for (i, name) in ["alice", "bob"].into_iter().enumerate() {
            let u = user(name);
            s.put_account(&Account {
                user: u.clone(),
                created: 5,
                credential: Some(format!("hash-{name}")),
                credential_stamp: 1000 + i as u64,
            })
            .await
            .unwrap();
            s.append_entry(
                &u,
                &StoredEntry {
                    seq: 1,
                    kind: EntryKind::Add,
                    device: [i as u8 + 1; 32],
                    bytes: vec![1, 2, 3],
                },
            )
            .await
            .unwrap();
        }
        for v in 1..=3 {
            s.put_roster(
                &user("alice"),
                &StoredRoster {
                    version: v,
                    bytes: vec![v as u8],
                },
            )
            .await
            .unwrap();
        }
        let items: Vec<_> = (0..2500u32)
            .map(|i| NewQueueItem {
                device: [1; 32],
                expires: 1000 + u64::from(i),
                bytes: i.to_be_bytes().to_vec(),
            })
            .collect();
        s.enqueue(&items).await.unwrap();
        s.ack(&[1; 32], &[1, 2]).await.unwrap();
        s.put_session(&SessionRecord {
            id: [9; 16],
            device: [1; 32],
            user: Some(user("alice")),
            last_seen: 77,
            credential_stamp: Some(1000),
        })
        .await
        .unwrap();
        s
    }

    #[tokio::test]
    async fn everything_is_copied_and_verified() {
        let from = filled().await;
        let to: Arc<dyn Storage> = Arc::new(siren_storage_memory::storage());
        let summary = migrate(from.clone(), to.clone()).await.unwrap();
        assert_eq!(
            (
                summary.accounts,
                summary.users,
                summary.entries,
                summary.rosters,
                summary.devices,
                summary.items,
                summary.sessions
            ),
            (2, 2, 2, 1, 1, 2498, 1)
        );
        assert_eq!(to.roster(&user("alice")).await.unwrap().unwrap().version, 3);
        let bob = to.account(&user("bob")).await.unwrap().unwrap();
        assert_eq!(bob.credential_stamp, 1001);
        let session = to.session(&[9; 16]).await.unwrap().unwrap();
        assert_eq!(session.credential_stamp, Some(1000));
        let first = to.pending(&[1; 32], 0, 1).await.unwrap();
        assert_eq!(first[0].bytes, 2u32.to_be_bytes().to_vec());
        assert_eq!(first[0].expires, 1002);
    }

    #[tokio::test]
    async fn a_target_that_is_not_empty_is_refused() {
        let from = filled().await;
        let to = filled().await;
        let e = migrate(from, to).await.unwrap_err();
        assert!(e.message.contains("not empty"), "{}", e.message);
    }

    #[tokio::test]
    async fn the_checksum_sees_a_changed_byte() {
        let a = filled().await;
        let b = filled().await;
        assert_eq!(
            summarize(a.as_ref()).await.unwrap(),
            summarize(b.as_ref()).await.unwrap()
        );
        b.enqueue(&[NewQueueItem {
            device: [1; 32],
            expires: 1,
            bytes: vec![0],
        }])
        .await
        .unwrap();
        // Same number of items, one of them different.
        b.ack(&[1; 32], &[3]).await.unwrap();
        let (sa, sb) = (
            summarize(a.as_ref()).await.unwrap(),
            summarize(b.as_ref()).await.unwrap(),
        );
        assert_eq!(sa.items, sb.items);
        assert_ne!(sa.checksum, sb.checksum);
    }

    #[tokio::test]
    async fn the_checksum_sees_credential_stamps() {
        let a = filled().await;
        let b = filled().await;
        let mut session = b.session(&[9; 16]).await.unwrap().unwrap();
        session.credential_stamp = None;
        b.put_session(&session).await.unwrap();
        assert_ne!(
            summarize(a.as_ref()).await.unwrap().checksum,
            summarize(b.as_ref()).await.unwrap().checksum
        );
        let c = filled().await;
        let mut account = c.account(&user("alice")).await.unwrap().unwrap();
        account.credential_stamp += 1;
        c.put_account(&account).await.unwrap();
        assert_ne!(
            summarize(a.as_ref()).await.unwrap().checksum,
            summarize(c.as_ref()).await.unwrap().checksum
        );
    }
}
