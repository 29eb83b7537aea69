//! [`AccountStore`]: `a/<username>` keys. Every write holds the account lock, so a credential
//! update (read, compare, write) cannot interleave with a replacement or a deletion.

use async_trait::async_trait;
use siren_api::storage::{Account, AccountStore, Durability, KeyRange, KvEngine};
use siren_api::{Error, Username};

use crate::layout::{self, ACCOUNTS};
use crate::{KvStorage, delete_existing, lock, put, scan_pages};

#[async_trait]
impl<E: KvEngine> AccountStore for KvStorage<E> {
    async fn account(&self, user: &Username) -> Result<Option<Account>, Error> {
        let user = user.clone();
        self.get_with("account", layout::account_key(&user), move |value| {
            let Some(value) = value else {
                return Ok(None);
            };
            let (created, credential_stamp, credential) = layout::read_account(&value)?;
            Ok(Some(Account {
                user,
                created,
                credential,
                credential_stamp,
            }))
        })
        .await
    }

    async fn put_account(&self, account: &Account) -> Result<(), Error> {
        let batch = put(
            layout::account_key(&account.user),
            layout::account_value(
                account.created,
                account.credential_stamp,
                account.credential.as_deref(),
            ),
        );
        self.run("put_account", move |inner| {
            let _cas = lock(&inner.account_cas);
            inner.engine.write(&batch, Durability::Synced)
        })
        .await
    }

    async fn delete_account(&self, user: &Username) -> Result<bool, Error> {
        let key = layout::account_key(user);
        self.run("delete_account", move |inner| {
            let _cas = lock(&inner.account_cas);
            delete_existing(&inner.engine, key)
        })
        .await
    }

    async fn update_credential(
        &self,
        user: &Username,
        old: &str,
        new: &str,
    ) -> Result<bool, Error> {
        let key = layout::account_key(user);
        let (old, new) = (old.to_owned(), new.to_owned());
        self.run("update_credential", move |inner| {
            let _cas = lock(&inner.account_cas);
            let Some(value) = inner.engine.get(&key)? else {
                return Ok(false);
            };
            let (created, stamp, credential) = layout::read_account(&value)?;
            if credential.as_deref() != Some(old.as_str()) {
                return Ok(false);
            }
            let value = layout::account_value(created, stamp, Some(&new));
            inner.engine.write(&put(key, value), Durability::Synced)?;
            Ok(true)
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Username>, Error> {
        self.run("list_accounts", |inner| {
            // Key order is username order: `Username` compares its text bytewise.
            let mut users = Vec::new();
            scan_pages(&inner.engine, &KeyRange::prefix(ACCOUNTS), |page| {
                for (key, _) in page {
                    users.push(layout::account_user(&key)?);
                }
                Ok(())
            })?;
            Ok(users)
        })
        .await
    }
}
