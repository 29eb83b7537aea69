//! Password credentials: argon2id hashes stored in the server's own account store.
//!
//! [`PasswordBackend`] implements [`CredentialBackend`] (for the `PLAIN` mechanism) and
//! [`CredentialAdmin`] (for `sirend user add|passwd|del|list`). It needs nothing but the
//! [`AccountStore`] of the configured storage backend.
//!
//! * Hashes are argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a random salt
//!   per password; parameters are read back from each hash, so raising the cost later keeps old
//!   hashes working.
//! * An unknown user is checked against a dummy hash made at start-up with the same parameters,
//!   so the answer (`false`) and the time taken are the same as for a wrong password.
//! * Hashing runs on tokio's blocking pool, never on the async executor.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use siren_api::auth::{CredentialAdmin, CredentialBackend};
use siren_api::storage::{Account, AccountStore};
use siren_api::{Error, ErrorCode, Username};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Cost {
    /// OWASP's recommended minimum for argon2id (19 MiB, 2 iterations, 1 lane); argon2's default.
    pub const RECOMMENDED: Cost = Cost {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
        parallelism: Params::DEFAULT_P_COST,
    };

    fn hasher(self) -> Result<Argon2<'static>, Error> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("bad argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Longest password accepted, in bytes (longer ones are refused before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// Argon2id password credentials over an account store.
pub struct PasswordBackend {
    accounts: Arc<dyn AccountStore>,
    cost: Cost,
    /// A hash of a random password, verified against for unknown users.
    dummy: String,
}

impl PasswordBackend {
    /// A backend over `accounts` with the recommended cost.
    pub async fn new(accounts: Arc<dyn AccountStore>) -> Result<Self, Error> {
        Self::with_cost(accounts, Cost::RECOMMENDED).await
    }

    /// A backend with explicit cost parameters (tests use a cheap cost).
    pub async fn with_cost(accounts: Arc<dyn AccountStore>, cost: Cost) -> Result<Self, Error> {
        let dummy = hash(cost, "no user has this password: dummy for timing".into()).await?;
        Ok(PasswordBackend {
            accounts,
            cost,
            dummy,
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn hash(cost: Cost, password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let hasher = cost.hasher()?;
        hasher
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::new(ErrorCode::Internal, format!("argon2 hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::new(ErrorCode::Internal, format!("hashing task failed: {e}")))?
}

async fn verify(phc: String, password: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("stored password hash is unreadable: {e}"),
            )
        })?;
        // Parameters come from the stored hash; the instance's own are not used for verifying.
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("verification task failed: {e}"),
        )
    })?
}

#[async_trait]
impl CredentialBackend for PasswordBackend {
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error> {
        if password.len() > MAX_PASSWORD {
            return Ok(false);
        }
        let account = self.accounts.account(user).await?;
        let (phc, known) = match account.and_then(|a| a.credential) {
            Some(phc) => (phc, true),
            None => (self.dummy.clone(), false),
        };
        let ok = verify(phc, password.to_owned()).await?;
        if !known {
            tracing::debug!(%user, "login for unknown user (or user without a password)");
        }
        Ok(ok && known)
    }

    async fn user_exists(&self, user: &Username) -> Result<bool, Error> {
        Ok(self
            .accounts
            .account(user)
            .await?
            .is_some_and(|a| a.credential.is_some()))
    }

    fn admin(&self) -> Option<&dyn CredentialAdmin> {
        Some(self)
    }
}

#[async_trait]
impl CredentialAdmin for PasswordBackend {
    async fn set_password(&self, user: &Username, password: &str) -> Result<(), Error> {
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("a password must be 1 to {MAX_PASSWORD} bytes"),
            ));
        }
        let phc = hash(self.cost, password.to_owned()).await?;
        let created = self
            .accounts
            .account(user)
            .await?
            .map_or_else(now, |a| a.created);
        self.accounts
            .put_account(&Account {
                user: user.clone(),
                created,
                credential: Some(phc),
            })
            .await
    }

    async fn delete_user(&self, user: &Username) -> Result<bool, Error> {
        self.accounts.delete_account(user).await
    }

    async fn list_users(&self) -> Result<Vec<Username>, Error> {
        self.accounts.list_accounts().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn user(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    #[tokio::test]
    async fn set_verify_change_delete() {
        let store: Arc<dyn AccountStore> = Arc::new(siren_storage_memory::storage());
        let backend = PasswordBackend::with_cost(store.clone(), CHEAP)
            .await
            .unwrap();
        let alice = user("alice");
        let admin = backend.admin().unwrap();
        admin.set_password(&alice, "correct horse").await.unwrap();
        assert!(backend.verify(&alice, "correct horse").await.unwrap());
        assert!(!backend.verify(&alice, "wrong").await.unwrap());
        assert!(backend.user_exists(&alice).await.unwrap());
        // The store holds an argon2id hash, never the password.
        let stored = store
            .account(&alice)
            .await
            .unwrap()
            .unwrap()
            .credential
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        // Changing the password keeps the account's creation time and drops the old password.
        let created = store.account(&alice).await.unwrap().unwrap().created;
        admin.set_password(&alice, "battery staple").await.unwrap();
        assert!(!backend.verify(&alice, "correct horse").await.unwrap());
        assert!(backend.verify(&alice, "battery staple").await.unwrap());
        assert_eq!(
            store.account(&alice).await.unwrap().unwrap().created,
            created
        );
        assert_eq!(admin.list_users().await.unwrap(), vec![alice.clone()]);
        assert!(admin.delete_user(&alice).await.unwrap());
        assert!(!backend.verify(&alice, "battery staple").await.unwrap());
        assert!(!admin.delete_user(&alice).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_user_is_just_false() {
        let store: Arc<dyn AccountStore> = Arc::new(siren_storage_memory::storage());
        let backend = PasswordBackend::with_cost(store, CHEAP).await.unwrap();
        assert!(!backend.verify(&user("nobody"), "anything").await.unwrap());
        // Not even the dummy hash's own password gets in.
        assert!(
            !backend
                .verify(
                    &user("nobody"),
                    "no user has this password: dummy for timing"
                )
                .await
                .unwrap()
        );
        assert!(!backend.user_exists(&user("nobody")).await.unwrap());
    }

    #[tokio::test]
    async fn empty_and_huge_passwords() {
        let store: Arc<dyn AccountStore> = Arc::new(siren_storage_memory::storage());
        let backend = PasswordBackend::with_cost(store, CHEAP).await.unwrap();
        let admin = backend.admin().unwrap();
        assert!(admin.set_password(&user("a"), "").await.is_err());
        let huge = "x".repeat(MAX_PASSWORD + 1);
        assert!(admin.set_password(&user("a"), &huge).await.is_err());
        assert!(!backend.verify(&user("a"), &huge).await.unwrap());
    }
}
