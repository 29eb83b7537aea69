//! Password credentials: argon2id hashes stored in the server's own account store.
//!
//! [`PasswordBackend`] implements [`CredentialBackend`] (for the `PLAIN` mechanism) and
//! [`CredentialAdmin`] (for `sirend user add|passwd|del|list`). It needs nothing but the
//! [`AccountStore`] of the configured storage backend.
//!
//! * Hashes are argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a random salt
//!   per password; parameters are read back from each hash, so raising the cost later keeps old
//!   hashes working, and a successful login rehashes a password whose hash has other
//!   parameters than the configured ones (a compare-and-set, so a password changed meanwhile
//!   is never undone).
//! * An unknown user is checked at one of the costs the stored hashes use, chosen per name with
//!   weights equal to how many accounts use it (the `census` module), so the answer (`false`)
//!   and the time taken are those of a wrong password for an account that may or may not exist.
//! * Every new password gets a new random [`Account::credential_stamp`] (a rehash keeps it):
//!   sessions that logged in with an older password stop being resumable
//!   ([`CredentialBackend::account_status`]).
//! * Hashing runs on tokio's blocking pool, never on the async executor.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod census;

use std::collections::BTreeMap;
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use siren_api::auth::{AccountStatus, CredentialAdmin, CredentialBackend};
use siren_api::storage::{Account, AccountStore};
use siren_api::{Error, ErrorCode, Username};

use crate::census::Census;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// The cost of a stored hash, if it is an argon2id (v19, 32-byte output) hash as this
    /// backend writes them.
    fn of(hash: &PasswordHash) -> Option<Cost> {
        if hash.algorithm.as_str() != Algorithm::Argon2id.as_str()
            || hash.version != Some(Version::V0x13.into())
        {
            return None;
        }
        let params = Params::try_from(hash).ok()?;
        if params
            .output_len()
            .is_some_and(|len| len != Params::DEFAULT_OUTPUT_LEN)
        {
            return None;
        }
        Some(Cost {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        })
    }

    /// The cost of a stored PHC string (`None`: unreadable, or not a hash this backend writes).
    fn of_phc(phc: &str) -> Option<Cost> {
        Cost::of(&PasswordHash::new(phc).ok()?)
    }
}

/// Longest password accepted, in bytes (longer ones are refused before hashing).
pub const MAX_PASSWORD: usize = 1024;

/// Argon2id password credentials over an account store.
pub struct PasswordBackend {
    inner: Arc<Inner>,
}

/// What the backend and its background census share.
struct Inner {
    accounts: Arc<dyn AccountStore>,
    cost: Cost,
    census: Census,
    /// The cost of every unknown-user check, in order (inspected by the tests).
    #[cfg(test)]
    dummy_costs: std::sync::Mutex<Vec<Cost>>,
}

impl PasswordBackend {
    /// A backend over `accounts` with the recommended cost.
    pub async fn new(accounts: Arc<dyn AccountStore>) -> Result<Self, Error> {
        Self::with_cost(accounts, Cost::RECOMMENDED).await
    }

    /// A backend with explicit cost parameters (tests use a cheap cost), choosing the cost of
    /// unknown users with a random key (see [`PasswordBackend::with_cost_and_key`]).
    pub async fn with_cost(accounts: Arc<dyn AccountStore>, cost: Cost) -> Result<Self, Error> {
        Self::with_cost_and_key(accounts, cost, random()?).await
    }

    /// A backend whose choice of cost for unknown users is keyed with `key`, a secret that stays
    /// the same across restarts (the server derives it from its SEK), so that a name probed
    /// before and after a restart is checked at the same cost. Starts reading the stored
    /// hashes' costs in the background (see [`PasswordBackend::take_census`]).
    pub async fn with_cost_and_key(
        accounts: Arc<dyn AccountStore>,
        cost: Cost,
        key: [u8; 32],
    ) -> Result<Self, Error> {
        let backend = Self::without_census(accounts, cost, key)?;
        let inner = &backend.inner;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let census = Arc::downgrade(inner);
            runtime.spawn(async move {
                if let Some(inner) = census.upgrade()
                    && let Err(e) = inner.take_census().await
                {
                    tracing::warn!(error = %e, "cannot read the costs of the stored password hashes; unknown users are checked at the configured cost");
                }
            });
        }
        Ok(backend)
    }

    /// The backend before its census is taken (tests take it themselves).
    fn without_census(
        accounts: Arc<dyn AccountStore>,
        cost: Cost,
        key: [u8; 32],
    ) -> Result<Self, Error> {
        cost.hasher()?;
        Ok(PasswordBackend {
            inner: Arc::new(Inner {
                accounts,
                cost,
                census: Census::new(key),
                #[cfg(test)]
                dummy_costs: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Reads every account once and counts the costs of their hashes, which then weight the
    /// cost unknown users are checked with. Runs in the background when the backend opens;
    /// public so that a caller can wait for it.
    pub async fn take_census(&self) -> Result<(), Error> {
        self.inner.take_census().await
    }
}

impl Inner {
    async fn take_census(&self) -> Result<(), Error> {
        let mut counts = BTreeMap::new();
        for user in self.accounts.list_accounts().await? {
            let cost = self
                .accounts
                .account(&user)
                .await?
                .and_then(|a| a.credential)
                .and_then(|phc| Cost::of_phc(&phc));
            if let Some(cost) = cost {
                *counts.entry(cost).or_insert(0u64) += 1;
            }
        }
        tracing::debug!(costs = ?counts, "password hash costs in use");
        self.census.replace(counts);
        Ok(())
    }

    /// Replaces `user`'s hash `old` (correct for `password`, at another cost) with one at the
    /// configured cost. A failure only costs the rehash: it is logged, the login stands.
    async fn rehash(&self, user: &Username, old: &str, password: &str) {
        let new = match hash(self.cost, password.to_owned()).await {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(%user, error = %e, "rehashing a password failed");
                return;
            }
        };
        match self.accounts.update_credential(user, old, &new).await {
            Ok(true) => {
                if let Some(cost) = Cost::of_phc(old) {
                    self.census.remove(cost);
                }
                self.census.add(self.cost);
                tracing::info!(%user, "password rehashed with the configured argon2 parameters");
            }
            // The password changed meanwhile: that one stands.
            Ok(false) => {}
            Err(e) => tracing::warn!(%user, error = %e, "storing a rehashed password failed"),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `N` random bytes from the system.
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("no randomness from the system: {e}"),
        )
    })?;
    Ok(bytes)
}

/// A new credential stamp: random, so that it never repeats, not even for an account deleted
/// and created again.
fn new_stamp() -> Result<u64, Error> {
    random().map(u64::from_be_bytes)
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("{what} task failed: {e}")))?
}

async fn hash(cost: Cost, password: String) -> Result<String, Error> {
    blocking("hashing", move || {
        let hasher = cost.hasher()?;
        hasher
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::new(ErrorCode::Internal, format!("argon2 hashing failed: {e}")))
    })
    .await
}

/// Whether `password` matches the stored hash `phc`, and whether that hash is at `current`.
async fn verify(phc: String, password: String, current: Cost) -> Result<(bool, bool), Error> {
    blocking("verification", move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("stored password hash is unreadable: {e}"),
            )
        })?;
        // Parameters come from the stored hash; the instance's own are not used for verifying.
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok((ok, Cost::of(&parsed) == Some(current)))
    })
    .await
}

/// The work of checking a password against a hash at `cost`, for a user without one: the same
/// argon2 computation a verification does, on a password nobody has.
async fn dummy(cost: Cost, password: String) -> Result<(), Error> {
    blocking("verification", move || {
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        cost.hasher()?
            .hash_password_into(password.as_bytes(), b"siren-no-such-user", &mut out)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("argon2 hashing failed: {e}")))
    })
    .await
}

#[async_trait]
impl CredentialBackend for PasswordBackend {
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error> {
        let inner = &self.inner;
        if password.len() > MAX_PASSWORD {
            return Ok(false);
        }
        let account = inner.accounts.account(user).await?;
        let Some(phc) = account.and_then(|a| a.credential) else {
            let cost = inner.census.cost_for(user, inner.cost);
            #[cfg(test)]
            inner
                .dummy_costs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(cost);
            dummy(cost, password.to_owned()).await?;
            tracing::debug!(%user, "login for unknown user (or user without a password)");
            return Ok(false);
        };
        let (ok, current) = verify(phc.clone(), password.to_owned(), inner.cost).await?;
        if ok && !current {
            inner.rehash(user, &phc, password).await;
        }
        Ok(ok)
    }

    async fn user_exists(&self, user: &Username) -> Result<bool, Error> {
        Ok(self
            .inner
            .accounts
            .account(user)
            .await?
            .is_some_and(|a| a.credential.is_some()))
    }

    async fn account_status(&self, user: &Username) -> Result<AccountStatus, Error> {
        Ok(match self.inner.accounts.account(user).await? {
            Some(Account {
                credential: Some(_),
                credential_stamp,
                ..
            }) => AccountStatus::Active {
                stamp: credential_stamp,
            },
            _ => AccountStatus::Gone,
        })
    }

    fn admin(&self) -> Option<&dyn CredentialAdmin> {
        Some(self)
    }
}

#[async_trait]
impl CredentialAdmin for PasswordBackend {
    async fn set_password(&self, user: &Username, password: &str) -> Result<(), Error> {
        let inner = &self.inner;
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("a password must be 1 to {MAX_PASSWORD} bytes"),
            ));
        }
        let phc = hash(inner.cost, password.to_owned()).await?;
        let existing = inner.accounts.account(user).await?;
        let created = existing.as_ref().map_or_else(now, |a| a.created);
        inner
            .accounts
            .put_account(&Account {
                user: user.clone(),
                created,
                credential: Some(phc),
                credential_stamp: new_stamp()?,
            })
            .await?;
        if let Some(old) = existing
            .and_then(|a| a.credential)
            .and_then(|phc| Cost::of_phc(&phc))
        {
            inner.census.remove(old);
        }
        inner.census.add(inner.cost);
        Ok(())
    }

    async fn delete_user(&self, user: &Username) -> Result<bool, Error> {
        let inner = &self.inner;
        let cost = inner
            .accounts
            .account(user)
            .await?
            .and_then(|a| a.credential)
            .and_then(|phc| Cost::of_phc(&phc));
        let deleted = inner.accounts.delete_account(user).await?;
        if let (true, Some(cost)) = (deleted, cost) {
            inner.census.remove(cost);
        }
        Ok(deleted)
    }

    async fn list_users(&self) -> Result<Vec<Username>, Error> {
        self.inner.accounts.list_accounts().await
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
        assert!(!backend.verify(&user("nobody"), "").await.unwrap());
        assert!(!backend.user_exists(&user("nobody")).await.unwrap());
        assert_eq!(
            backend.account_status(&user("nobody")).await.unwrap(),
            AccountStatus::Gone
        );
    }

    /// The cost the argon2 parameters were before `[auth]` was changed, and after.
    const OLD: Cost = CHEAP;
    const NEW: Cost = Cost {
        memory_kib: 128,
        iterations: 2,
        parallelism: 1,
    };

    async fn stored(store: &Arc<dyn AccountStore>, name: &str) -> Account {
        store.account(&user(name)).await.unwrap().unwrap()
    }

    fn dummy_costs(backend: &PasswordBackend) -> Vec<Cost> {
        std::mem::take(&mut *backend.inner.dummy_costs.lock().unwrap())
    }

    /// Accounts made at the old cost, and a backend at the new cost over the same store, with a
    /// fixed key and its census taken.
    async fn after_a_cost_change(names: &[&str]) -> (Arc<dyn AccountStore>, PasswordBackend) {
        let store: Arc<dyn AccountStore> = Arc::new(siren_storage_memory::storage());
        let old = PasswordBackend::with_cost(store.clone(), OLD)
            .await
            .unwrap();
        for name in names {
            old.set_password(&user(name), &format!("pw-{name}"))
                .await
                .unwrap();
        }
        // Without the background census, which could finish after the test's own changes.
        let new = PasswordBackend::without_census(store.clone(), NEW, [9; 32]).unwrap();
        new.take_census().await.unwrap();
        (store, new)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_successful_login_rehashes_at_the_configured_cost() {
        let (store, backend) = after_a_cost_change(&["alice", "bob"]).await;
        let before = stored(&store, "alice").await;
        assert_eq!(
            Cost::of_phc(before.credential.as_deref().unwrap()),
            Some(OLD)
        );
        // A wrong password changes nothing.
        assert!(!backend.verify(&user("alice"), "wrong").await.unwrap());
        assert_eq!(stored(&store, "alice").await, before);
        // The right one logs in, and the stored hash moves to the new parameters; the stamp
        // stays (a rehash is not a new password: sessions stay valid).
        assert!(backend.verify(&user("alice"), "pw-alice").await.unwrap());
        let after = stored(&store, "alice").await;
        let phc = after.credential.as_deref().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=128,t=2,p=1$"), "{phc}");
        assert_eq!(after.credential_stamp, before.credential_stamp);
        assert_eq!(after.created, before.created);
        assert!(backend.verify(&user("alice"), "pw-alice").await.unwrap());
        assert_eq!(
            stored(&store, "alice").await,
            after,
            "already current: no rehash"
        );
        // bob did not log in: his hash keeps the old parameters.
        let bob = stored(&store, "bob").await;
        assert_eq!(Cost::of_phc(bob.credential.as_deref().unwrap()), Some(OLD));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rehash_never_undoes_a_password_change() {
        let (store, backend) = after_a_cost_change(&["alice"]).await;
        let old_phc = stored(&store, "alice").await.credential.unwrap();
        backend
            .set_password(&user("alice"), "changed")
            .await
            .unwrap();
        // The login that verified the old password finishes its rehash after the change.
        backend
            .inner
            .rehash(&user("alice"), &old_phc, "pw-alice")
            .await;
        assert!(backend.verify(&user("alice"), "changed").await.unwrap());
        assert!(!backend.verify(&user("alice"), "pw-alice").await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_users_are_checked_at_the_costs_accounts_have() {
        let (_store, backend) = after_a_cost_change(&["alice", "bob", "carol"]).await;
        // Every account is still at the old cost: so is every unknown user, although the
        // configured cost is the new one.
        for i in 0..50 {
            assert!(
                !backend
                    .verify(&user(&format!("nobody{i}")), "x")
                    .await
                    .unwrap()
            );
        }
        let costs = dummy_costs(&backend);
        assert_eq!(costs.len(), 50);
        assert!(costs.iter().all(|c| *c == OLD), "{costs:?}");
        // A wrong password for an existing account takes the account's own cost: no dummy.
        assert!(!backend.verify(&user("alice"), "wrong").await.unwrap());
        assert!(dummy_costs(&backend).is_empty());

        // alice and bob log in (rehashed): two accounts at the new cost, one at the old.
        for name in ["alice", "bob"] {
            assert!(
                backend
                    .verify(&user(name), &format!("pw-{name}"))
                    .await
                    .unwrap()
            );
        }
        let names: Vec<String> = (0..300).map(|i| format!("probe{i}")).collect();
        for name in &names {
            assert!(!backend.verify(&user(name), "x").await.unwrap());
        }
        let first = dummy_costs(&backend);
        let at_new = first.iter().filter(|c| **c == NEW).count();
        assert!(first.iter().all(|c| *c == NEW || *c == OLD), "{first:?}");
        // About two thirds at the new cost (binomial, 300 draws: far inside these bounds).
        assert!(
            (150..250).contains(&at_new),
            "{at_new} of 300 at the new cost"
        );
        // The same name is always checked at the same cost.
        for name in &names {
            assert!(!backend.verify(&user(name), "y").await.unwrap());
        }
        assert_eq!(dummy_costs(&backend), first);
    }

    #[tokio::test]
    async fn a_new_password_gets_a_new_stamp_and_deletion_ends_the_account() {
        let store: Arc<dyn AccountStore> = Arc::new(siren_storage_memory::storage());
        let backend = PasswordBackend::with_cost(store, CHEAP).await.unwrap();
        let alice = user("alice");
        backend.set_password(&alice, "one").await.unwrap();
        let AccountStatus::Active { stamp: first } = backend.account_status(&alice).await.unwrap()
        else {
            panic!("alice exists");
        };
        assert_eq!(
            backend.account_status(&alice).await.unwrap(),
            AccountStatus::Active { stamp: first },
            "the stamp does not change by itself"
        );
        backend.set_password(&alice, "two").await.unwrap();
        let second = backend.account_status(&alice).await.unwrap();
        assert_ne!(second, AccountStatus::Active { stamp: first });
        backend.delete_user(&alice).await.unwrap();
        assert_eq!(
            backend.account_status(&alice).await.unwrap(),
            AccountStatus::Gone
        );
        // Created again: yet another stamp, so nothing of the old account's sessions matches.
        backend.set_password(&alice, "one").await.unwrap();
        let third = backend.account_status(&alice).await.unwrap();
        assert_ne!(third, AccountStatus::Active { stamp: first });
        assert_ne!(third, second);
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
