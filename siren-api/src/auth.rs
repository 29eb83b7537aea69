//! Authentication: SASL-shaped mechanisms and the credential backends behind them.
//!
//! Two layers, as in Prosody (SASL handlers over auth providers):
//!
//! * an [`AuthMechanism`] speaks one wire mechanism (`PLAIN`, a certificate mechanism, a plugin's
//!   own): it is told the client's responses and answers with a challenge, a success naming the
//!   user, or a failure ([`AuthStep`]);
//! * a [`CredentialBackend`] answers "is this the password of that user?" for mechanisms that
//!   check passwords (argon2id hashes in the store, an LDAP directory, …).
//!
//! A mechanism never issues keys: the device generates its DEK and the user's USK itself.

use std::net::IpAddr;

use async_trait::async_trait;

use crate::error::Error;
use crate::identity::{ServerName, Username};

/// What a mechanism knows about the login attempt.
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// The server being logged in to.
    pub server: ServerName,
    /// The client's address, if known (for rate limits and logs).
    pub peer: Option<IpAddr>,
    /// The handshake hash of the session, for mechanisms that bind to the channel (a
    /// certificate mechanism signs it).
    pub channel_binding: [u8; 32],
    /// The DEK the session was opened with.
    pub device_key: [u8; 32],
}

/// The result of one step of a mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this challenge and wait for the client's next response.
    Challenge(Vec<u8>),
    /// The client is authenticated as this user of this server.
    Success(Username),
    /// The credentials are refused. Unknown user and wrong credentials must look the same to
    /// the client, so no reason travels; `attempted` names the account the client tried, if the
    /// mechanism knows it, for the host's per-account rate limit and logs (never for the client).
    Failure {
        /// The account the client tried to log in as.
        attempted: Option<Username>,
    },
}

/// One wire authentication mechanism.
pub trait AuthMechanism: Send + Sync {
    /// The name offered to clients (SASL style: upper case, at most 20 characters).
    fn name(&self) -> &str;

    /// Starts one login attempt.
    fn begin(&self, ctx: AuthContext) -> Box<dyn AuthExchange>;
}

/// One login attempt in progress.
#[async_trait]
pub trait AuthExchange: Send + Sync {
    /// Processes the client's next response (the first call gets the initial response of
    /// `auth_start`, possibly empty). An `Err` means the mechanism could not decide (its backend
    /// is down); the host then fails the login closed and logs the error.
    async fn step(&mut self, response: &[u8]) -> Result<AuthStep, Error>;

    /// Whether a [`AuthStep::Success`] of this exchange was decided by the server's
    /// [`CredentialBackend`] (a password checked there). The host then remembers the account's
    /// [`AccountStatus`] with the session and refuses to resume it once the account is gone or
    /// its credential changed. A mechanism that decides by itself (a certificate) says `false`.
    fn checked_by_credentials(&self) -> bool {
        false
    }
}

/// What a credential backend knows about an account now: whether a session that logged in
/// earlier may continue (PROTOCOL.md §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// The account exists. `stamp` changes whenever its credential is replaced (a password
    /// change) and never otherwise; a backend that cannot tell says 0 always, and then only
    /// the account's existence is checked.
    Active {
        /// The credential stamp.
        stamp: u64,
    },
    /// No such account (deleted, or no longer allowed to log in, as a directory user removed
    /// from the required group).
    Gone,
    /// The backend cannot look an account up without the user's credentials (an LDAP
    /// directory bound directly as the user): sessions it let in are not re-checked.
    Unknowable,
}

/// Checks user passwords. Implementations must take the same time and give the same answer
/// (`Ok(false)`) for an unknown user as for a wrong password.
#[async_trait]
pub trait CredentialBackend: Send + Sync {
    /// Whether `password` is `user`'s password.
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error>;

    /// Whether the user exists.
    async fn user_exists(&self, user: &Username) -> Result<bool, Error>;

    /// The account's status now, for sessions that logged in through this backend: asked when
    /// such a session resumes and, while it is live, periodically. An `Err` (the backend
    /// is unreachable) keeps live sessions and makes resumptions wait. By default: the account
    /// exists (stamp 0) or it is gone, by [`CredentialBackend::user_exists`].
    async fn account_status(&self, user: &Username) -> Result<AccountStatus, Error> {
        Ok(if self.user_exists(user).await? {
            AccountStatus::Active { stamp: 0 }
        } else {
            AccountStatus::Gone
        })
    }

    /// User management, for backends that own their users (a password store does; an LDAP
    /// directory does not). `None` means the capability is absent.
    fn admin(&self) -> Option<&dyn CredentialAdmin> {
        None
    }
}

/// User management on a credential backend that owns its users.
#[async_trait]
pub trait CredentialAdmin: Send + Sync {
    /// Creates the user, or replaces the user's password.
    async fn set_password(&self, user: &Username, password: &str) -> Result<(), Error>;

    /// Deletes the user; `Ok(false)` if there was no such user.
    async fn delete_user(&self, user: &Username) -> Result<bool, Error>;

    /// All users, sorted.
    async fn list_users(&self) -> Result<Vec<Username>, Error>;
}
