//! [`AccountStore`]: the `accounts` table.

use async_trait::async_trait;
use siren_api::storage::{Account, AccountStore};
use siren_api::{Error, Username};

use crate::{PgStorage, error, stamp_from_db, stamp_to_db, time_from_db, time_to_db};

/// A stored username (the schema keeps only what [`Username::parse`] accepted).
pub(crate) fn username(what: &str, name: &str) -> Result<Username, Error> {
    Username::parse(name).map_err(|e| error::corrupt(what, e))
}

#[async_trait]
impl AccountStore for PgStorage {
    async fn account(&self, user: &Username) -> Result<Option<Account>, Error> {
        let op = "account";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "SELECT created, credential, credential_stamp FROM accounts WHERE username = $1",
            )
            .await
            .map_err(db)?;
        let Some(row) = client
            .query_opt(&statement, &[&user.as_str()])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        Ok(Some(Account {
            user: user.clone(),
            created: time_from_db(row.try_get(0).map_err(db)?),
            credential: row.try_get(1).map_err(db)?,
            credential_stamp: stamp_from_db(row.try_get(2).map_err(db)?),
        }))
    }

    async fn put_account(&self, account: &Account) -> Result<(), Error> {
        let op = "put_account";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO accounts (username, created, credential, credential_stamp)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (username)
                 DO UPDATE SET created = excluded.created, credential = excluded.credential,
                     credential_stamp = excluded.credential_stamp",
            )
            .await
            .map_err(db)?;
        client
            .execute(
                &statement,
                &[
                    &account.user.as_str(),
                    &time_to_db(account.created),
                    &account.credential.as_deref(),
                    &stamp_to_db(account.credential_stamp),
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_account(&self, user: &Username) -> Result<bool, Error> {
        let sql = "DELETE FROM accounts WHERE username = $1";
        Ok(self
            .change("delete_account", sql, &[&user.as_str()])
            .await?
            > 0)
    }

    /// One `UPDATE … WHERE credential = old`: of a rehash and a password change racing, the
    /// row lock orders them, and a rehash after the change finds another credential.
    async fn update_credential(
        &self,
        user: &Username,
        old: &str,
        new: &str,
    ) -> Result<bool, Error> {
        let sql = "UPDATE accounts SET credential = $3 WHERE username = $1 AND credential = $2";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&user.as_str(), &old, &new];
        Ok(self.change("update_credential", sql, &params).await? > 0)
    }

    async fn list_accounts(&self) -> Result<Vec<Username>, Error> {
        let op = "list_accounts";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        // COLLATE "C": bytewise, the order of `Username`.
        let statement = client
            .prepare_cached("SELECT username FROM accounts ORDER BY username")
            .await
            .map_err(db)?;
        client
            .query(&statement, &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| username("account", row.try_get(0).map_err(db)?))
            .collect()
    }
}
