//! [`ExportStore`]: whole-keyspace scans for `sirend migrate-store`, and verbatim roster import.
//!
//! Users and devices are found with skip scans: one `scan(limit 1)` per distinct user or
//! device, each starting after the previous one's keys, so a device with a long queue costs one
//! read, not one per item.

use async_trait::async_trait;
use siren_api::storage::{
    DeviceKey, Durability, ExportStore, KeyRange, KvEngine, SessionRecord, StoredRoster,
};
use siren_api::{Error, ErrorCode, Username};

use crate::layout::{self, DIRECTORY, QUEUE, ROSTERS, SESSIONS};
use crate::{KvStorage, lock, put, scan_pages};

/// Calls `next` with the first key at or after each start, in order; `next` returns the key
/// the following scan starts from (the end of the group the key belongs to).
fn skip_scan<E: KvEngine>(
    engine: &E,
    keyspace: &[u8],
    mut group_end: impl FnMut(&[u8]) -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    let mut range = KeyRange::prefix(keyspace);
    loop {
        let Some((key, _)) = engine.scan(&range, 1, false)?.into_iter().next() else {
            return Ok(());
        };
        range.start = group_end(&key)?;
        if range.start >= range.end {
            return Ok(());
        }
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("corrupt store: malformed {what} key"),
    )
}

fn user_of(name: &[u8], what: &str) -> Result<Username, Error> {
    let name = std::str::from_utf8(name).map_err(|_| corrupt(what))?;
    Username::parse(name).map_err(|_| corrupt(what))
}

#[async_trait]
impl<E: KvEngine> ExportStore for KvStorage<E> {
    async fn directory_users(&self) -> Result<Vec<Username>, Error> {
        self.run("directory_users", |inner| {
            let mut users = Vec::new();
            skip_scan(&inner.engine, DIRECTORY, |key| {
                let rest = key
                    .strip_prefix(DIRECTORY)
                    .ok_or_else(|| corrupt("directory"))?;
                let slash = rest
                    .iter()
                    .position(|&b| b == b'/')
                    .ok_or_else(|| corrupt("directory"))?;
                let user = user_of(&rest[..slash], "directory")?;
                let end = KeyRange::prefix(&layout::directory_prefix(&user)).end;
                users.push(user);
                Ok(end)
            })?;
            Ok(users)
        })
        .await
    }

    async fn roster_users(&self) -> Result<Vec<Username>, Error> {
        self.run("roster_users", |inner| {
            let mut users = Vec::new();
            scan_pages(&inner.engine, &KeyRange::prefix(ROSTERS), |page| {
                for (key, _) in page {
                    let name = key.strip_prefix(ROSTERS).ok_or_else(|| corrupt("roster"))?;
                    users.push(user_of(name, "roster")?);
                }
                Ok(())
            })?;
            Ok(users)
        })
        .await
    }

    async fn queue_devices(&self) -> Result<Vec<DeviceKey>, Error> {
        self.run("queue_devices", |inner| {
            let mut devices = Vec::new();
            skip_scan(&inner.engine, QUEUE, |key| {
                let device: DeviceKey = key
                    .get(QUEUE.len()..QUEUE.len() + 32)
                    .and_then(|d| d.try_into().ok())
                    .ok_or_else(|| corrupt("queue"))?;
                devices.push(device);
                Ok(KeyRange::prefix(&layout::queue_prefix(&device)).end)
            })?;
            Ok(devices)
        })
        .await
    }

    async fn sessions(&self) -> Result<Vec<SessionRecord>, Error> {
        self.run("sessions", |inner| {
            let mut sessions = Vec::new();
            scan_pages(&inner.engine, &KeyRange::prefix(SESSIONS), |page| {
                for (key, value) in page {
                    let id: [u8; 16] = key
                        .get(SESSIONS.len()..)
                        .and_then(|id| id.try_into().ok())
                        .ok_or_else(|| corrupt("session"))?;
                    let (device, last_seen, user, credential_stamp) = layout::read_session(&value)?;
                    sessions.push(SessionRecord {
                        id,
                        device,
                        user,
                        last_seen,
                        credential_stamp,
                    });
                }
                Ok(())
            })?;
            Ok(sessions)
        })
        .await
    }

    async fn import_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error> {
        let user = user.clone();
        let key = layout::roster_key(&user);
        let value = layout::roster_value(roster.version, &roster.bytes);
        self.run("import_roster", move |inner| {
            let _cas = lock(&inner.roster_cas);
            if inner.engine.get(&key)?.is_some() {
                return Err(Error::new(
                    ErrorCode::Rollback,
                    format!("{user} already has a roster in the target store"),
                ));
            }
            inner.engine.write(&put(key, value), Durability::Synced)
        })
        .await
    }
}
