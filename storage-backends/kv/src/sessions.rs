//! [`SessionStore`]: `s/<id>` keys.

use async_trait::async_trait;
use siren_api::storage::{
    DeviceKey, Durability, KeyRange, KvEngine, SessionRecord, SessionStore, UnixTime, WriteBatch,
};
use siren_api::{Error, Username};

use crate::layout::{self, SESSIONS};
use crate::{KvStorage, delete_existing, put, scan_pages};

#[async_trait]
impl<E: KvEngine> SessionStore for KvStorage<E> {
    async fn session(&self, id: &[u8; 16]) -> Result<Option<SessionRecord>, Error> {
        let id = *id;
        self.get_with("session", layout::session_key(&id), move |value| {
            let Some(value) = value else {
                return Ok(None);
            };
            let (device, last_seen, user, credential_stamp) = layout::read_session(&value)?;
            Ok(Some(SessionRecord {
                id,
                device,
                user,
                last_seen,
                credential_stamp,
            }))
        })
        .await
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), Error> {
        let batch = put(
            layout::session_key(&session.id),
            layout::session_value(
                &session.device,
                session.last_seen,
                session.user.as_ref().map(|u| u.as_str()),
                session.credential_stamp,
            ),
        );
        self.run("put_session", move |inner| {
            inner.engine.write(&batch, Durability::Synced)
        })
        .await
    }

    async fn delete_session(&self, id: &[u8; 16]) -> Result<bool, Error> {
        let key = layout::session_key(id);
        self.run("delete_session", move |inner| {
            delete_existing(&inner.engine, key)
        })
        .await
    }

    /// A scan of every session (there is no index by `last_seen`: `put_session` would have to
    /// read the old record to move its index key). A session touched while the sweep decides
    /// about it may still be forgotten: it had been unused for the whole expiry time until then.
    async fn expire_sessions(&self, cutoff: UnixTime) -> Result<usize, Error> {
        self.run("expire_sessions", move |inner| {
            delete_where(&inner.engine, |(_, last_seen, _, _)| *last_seen < cutoff)
        })
        .await
    }

    /// A scan of every session, like [`SessionStore::expire_sessions`] (no index by user: an
    /// administrator's rare command does not justify an index write on every login).
    async fn delete_user_sessions(
        &self,
        user: &Username,
        device: Option<&DeviceKey>,
    ) -> Result<usize, Error> {
        let (user, device) = (user.clone(), device.copied());
        self.run("delete_user_sessions", move |inner| {
            delete_where(&inner.engine, |(bound, _, owner, _)| {
                owner.as_ref() == Some(&user) && device.is_none_or(|d| d == *bound)
            })
        })
        .await
    }
}

/// Deletes every session whose stored fields `doomed` selects, a page at a time (one synced
/// batch per page); how many.
fn delete_where<E: KvEngine>(
    engine: &E,
    doomed: impl Fn(&layout::SessionFields) -> bool,
) -> Result<usize, Error> {
    let mut removed = 0;
    scan_pages(engine, &KeyRange::prefix(SESSIONS), |page| {
        let mut batch = WriteBatch::new();
        for (key, value) in page {
            if doomed(&layout::read_session(&value)?) {
                batch.delete(key);
                removed += 1;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        engine.write(&batch, Durability::Synced)
    })?;
    Ok(removed)
}
