//! [`AccountStore`]: `a/<username>` keys.

use async_trait::async_trait;
use siren_api::storage::{Account, AccountStore, Durability, KeyRange, KvEngine};
use siren_api::{Error, Username};

use crate::layout::{self, ACCOUNTS};
use crate::{KvStorage, delete_existing, put, scan_pages};

#[async_trait]
impl<E: KvEngine> AccountStore for KvStorage<E> {
    async fn account(&self, user: &Username) -> Result<Option<Account>, Error> {
        let user = user.clone();
        self.run("account", move |inner| {
            let Some(value) = inner.engine.get(&layout::account_key(&user))? else {
                return Ok(None);
            };
            let (created, credential) = layout::read_account(&value)?;
            Ok(Some(Account {
                user,
                created,
                credential,
            }))
        })
        .await
    }

    async fn put_account(&self, account: &Account) -> Result<(), Error> {
        let batch = put(
            layout::account_key(&account.user),
            layout::account_value(account.created, account.credential.as_deref()),
        );
        self.run("put_account", move |inner| {
            inner.engine.write(&batch, Durability::Synced)
        })
        .await
    }

    async fn delete_account(&self, user: &Username) -> Result<bool, Error> {
        let key = layout::account_key(user);
        self.run("delete_account", move |inner| {
            delete_existing(&inner.engine, key)
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
