//! [`RosterStore`]: `r/<username>` keys, replaced by compare-and-set.

use async_trait::async_trait;
use siren_api::storage::{Durability, KvEngine, RosterStore, StoredRoster};
use siren_api::{Error, ErrorCode, Username};

use crate::layout;
use crate::{KvStorage, delete_existing, lock, put};

#[async_trait]
impl<E: KvEngine> RosterStore for KvStorage<E> {
    async fn roster(&self, user: &Username) -> Result<Option<StoredRoster>, Error> {
        let key = layout::roster_key(user);
        self.get_with("roster", key, move |value| {
            let Some(value) = value else {
                return Ok(None);
            };
            let (version, bytes) = layout::read_roster(&value)?;
            Ok(Some(StoredRoster { version, bytes }))
        })
        .await
    }

    async fn put_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error> {
        let user = user.clone();
        let version = roster.version;
        let key = layout::roster_key(&user);
        let value = layout::roster_value(version, &roster.bytes);
        self.run("put_roster", move |inner| {
            // Read, check and write under the lock: two racing replacements cannot both win.
            let _cas = lock(&inner.roster_cas);
            let stored = match inner.engine.get(&key)? {
                Some(value) => layout::read_roster(&value)?.0,
                None => 0,
            };
            if stored.checked_add(1) != Some(version) {
                let held = match stored {
                    0 => format!("{user} has no roster"),
                    v => format!("the roster of {user} is at version {v}"),
                };
                return Err(Error::new(
                    ErrorCode::Rollback,
                    format!("{held}; version {version} does not follow it"),
                ));
            }
            inner.engine.write(&put(key, value), Durability::Synced)
        })
        .await
    }

    async fn delete_roster(&self, user: &Username) -> Result<bool, Error> {
        let key = layout::roster_key(user);
        self.run("delete_roster", move |inner| {
            let _cas = lock(&inner.roster_cas);
            delete_existing(&inner.engine, key)
        })
        .await
    }
}
