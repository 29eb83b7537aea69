//! LDAP credentials: passwords checked by binding to a directory (OpenLDAP, 389-ds, Active
//! Directory, …) with the pure-Rust [`ldap3`] client.
//!
//! [`LdapBackend`] implements [`CredentialBackend`] for the `PLAIN` mechanism. The directory
//! owns its users, so [`CredentialBackend::admin`] is `None` (`sirend user …` does not apply).
//!
//! # Configuration
//!
//! ```toml
//! [auth]
//! mechanisms = ["PLAIN"]
//! credentials = "ldap"
//!
//! [auth.options.ldap]
//! url = "ldap://127.0.0.1:389"          # or ldaps://host:636
//! starttls = true                       # upgrade ldap:// with StartTLS (default false)
//! ca_file = "/etc/siren/ldap-ca.pem"    # the directory's CA (default: the system's roots)
//!
//! # Search then bind: find the user's DN with a service account, then bind as the user.
//! search_base = "ou=people,dc=example,dc=test"
//! search_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
//! service_dn = "cn=siren,ou=services,dc=example,dc=test"
//! service_password_file = "/etc/siren/ldap-service-password"   # or service_password = "…"
//!
//! # Or direct bind, instead of the four search keys:
//! # bind_dn_template = "uid={user},ou=people,dc=example,dc=test"
//!
//! required_group = "cn=chat-users,ou=groups,dc=example,dc=test"   # optional
//! group_member_attribute = "member"     # default; "memberUid" for posixGroup
//! group_member_value = "dn"             # "dn" (default) or "user" (memberUid holds usernames)
//! timeout_secs = 5                      # the longest a login waits on the directory
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `url` | `ldap://host[:port]` or `ldaps://host[:port]`; required |
//! | `starttls` | StartTLS on an `ldap://` url before any bind; default false |
//! | `ca_file` | PEM CA certificate(s) for `ldaps://` or StartTLS; default: system roots |
//! | `bind_dn_template` | direct bind: the user's DN with `{user}` |
//! | `search_base`, `search_filter` | search mode: where and how to find the user (`{user}` in the filter) |
//! | `service_dn` | search mode: the account that searches (anonymous search when absent) |
//! | `service_password`, `service_password_file` | its password, inline or in a file (one of them) |
//! | `required_group` | a group DN the user must belong to |
//! | `group_member_attribute` | the group's member attribute; default `member` |
//! | `group_member_value` | `"dn"` (default) or `"user"` |
//! | `timeout_secs` | 1 to 300; default 5 |
//!
//! Exactly one mode is configured: `bind_dn_template`, or the search keys. [`LdapBackend::new`]
//! refuses anything else with a message that names the key, reads the CA and password files, and
//! checks the filter's syntax; it does not contact the directory. The host deserializes the
//! `[auth.options.ldap]` table into [`LdapConfig`] (unknown keys are refused) and calls
//! [`LdapConfig::relative_to`] so that relative file paths follow the configuration file.
//!
//! # How a password is checked
//!
//! 1. An empty password is refused before the directory is asked: an LDAP simple bind with a DN
//!    and no password is an "unauthenticated bind" (RFC 4513 §5.1.2), which many directories
//!    answer with *success*, as anonymous.
//! 2. The user's DN: the template with the username escaped for a DN (RFC 4514), or the one
//!    entry found under `search_base` by `search_filter` with the username escaped for a
//!    filter (RFC 4515). No entry and several entries both mean "no". Usernames are already
//!    restricted to letters, digits, `.`, `_` and `-`; the escaping is the second wall.
//! 3. A bind as that DN with the password, on a fresh connection. For an unknown user in search
//!    mode, a bind to a DN that does not exist is made anyway, so both cases cost the same round
//!    trips and give the same answer (`Ok(false)`).
//! 4. With `required_group`, a compare of the group's member attribute with the user's DN (or
//!    username): on the service connection in search mode, on the user's own connection in
//!    direct mode (the directory must let users compare that group).
//!
//! The service account's connection is kept and reused (reconnected when it drops); user binds
//! always get their own connection, since a bind changes a connection's identity.
//!
//! **Failing closed.** When the directory cannot be reached, does not answer within
//! `timeout_secs`, fails TLS verification or refuses the service account, `verify` returns an
//! [`Error`] with [`ErrorCode::Unavailable`] and logs one `warn` line naming the url; the host
//! then refuses the login. `user_exists` needs search mode: in direct-bind mode nothing can look
//! a user up without the user's password, so it returns an error.
//!
//! **Sessions of removed users.** The host asks [`CredentialBackend::account_status`] when a
//! session that logged in with a password resumes, and periodically while it is live: in search
//! mode the answer is `Active` (stamp 0: a directory has no portable "password changed" marker)
//! while the search finds the user (and the user is in `required_group`), `Gone` once the entry
//! is deleted or leaves the group, and an `Unavailable` error while the directory is down (the
//! host then keeps live sessions and makes resumptions wait). In direct-bind mode it is
//! `Unknowable`: such sessions are not re-checked, so search mode is the one to use when removing
//! a user from the directory must end their sessions.
//!
//! TLS is rustls with the ring provider: no OpenSSL and no cmake at build time. Certificates are
//! verified against `ca_file` (or the system roots) and the url's host name or address.
//!
//! # Tests
//!
//! `tests/slapd.rs` runs against a real OpenLDAP `slapd` that `scripts/test.sh` starts with
//! `scripts/services/slapd.sh` (seeded from `scripts/services/seed.ldif`); without
//! `SIREN_TEST_LDAP_URL` those tests fail and say so.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;

use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use siren_api::auth::{AccountStatus, CredentialBackend};
use siren_api::{Error, ErrorCode, Username};
use tokio::sync::Mutex;

pub use config::{LdapConfig, MAX_TIMEOUT_SECS, MemberValue, USER_PLACEHOLDER};
use config::{Mode, Settings};

/// Longest password accepted, in bytes (longer ones are refused without asking the directory).
pub const MAX_PASSWORD: usize = 1024;

/// LDAP result codes this backend tells apart (RFC 4511 appendix A).
mod rc {
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const COMPARE_FALSE: u32 = 5;
    pub const COMPARE_TRUE: u32 = 6;
    pub const NO_SUCH_ATTRIBUTE: u32 = 16;
    pub const CONSTRAINT_VIOLATION: u32 = 19;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_DN_SYNTAX: u32 = 34;
    pub const INAPPROPRIATE_AUTHENTICATION: u32 = 48;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS: u32 = 50;
    pub const BUSY: u32 = 51;
    pub const UNAVAILABLE: u32 = 52;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
}

/// The user's DN in direct-bind mode: the name escaped as an RDN value (RFC 4514).
fn user_dn(template: &str, name: &str) -> String {
    template.replace(USER_PLACEHOLDER, &ldap3::dn_escape(name))
}

/// The search filter: the name escaped as an assertion value (RFC 4515).
fn user_filter(filter: &str, name: &str) -> String {
    filter.replace(USER_PLACEHOLDER, &ldap3::ldap_escape(name))
}

/// Why the directory could not decide.
enum Failure {
    /// Not reachable, not answering in time, TLS failure, connection lost.
    Unreachable(String),
    /// It answered, but not with something that decides (misconfiguration, unexpected code).
    Directory(String),
}

impl Failure {
    fn from_ldap(what: &str, e: LdapError) -> Failure {
        match e {
            LdapError::LdapResult { result } => {
                if matches!(result.rc, rc::BUSY | rc::UNAVAILABLE) {
                    Failure::Unreachable(format!("{what}: {result}"))
                } else {
                    Failure::Directory(format!("{what}: {result}"))
                }
            }
            other => Failure::Unreachable(format!("{what}: {other}")),
        }
    }
}

/// A user found in search mode.
enum Found {
    One(String),
    None,
    Many,
}

/// Password checks against an LDAP directory.
pub struct LdapBackend {
    settings: Settings,
    /// The service account's connection (search mode), kept between logins.
    service: Mutex<Option<Ldap>>,
}

impl std::fmt::Debug for LdapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapBackend")
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

impl LdapBackend {
    /// Validates `config` (every key, the CA and password files, the filter's syntax). Does not
    /// contact the directory: a directory that is down at start-up only fails logins.
    pub fn new(config: LdapConfig) -> Result<LdapBackend, Error> {
        Ok(LdapBackend {
            settings: config.validate()?,
            service: Mutex::new(None),
        })
    }

    /// The configured url.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// The longest one login waits on the directory (`timeout_secs`).
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Checks a password for a name that was not parsed as a [`Username`] (what
    /// [`CredentialBackend::verify`] calls). The name is escaped for the filter or the DN like
    /// any other, so `*` or `)(uid=*` in it matches nothing but itself.
    pub async fn verify_name(&self, name: &str, password: &str) -> Result<bool, Error> {
        if password.is_empty() || password.len() > MAX_PASSWORD || name.is_empty() {
            return Ok(false);
        }
        self.decide(self.check(name, password)).await
    }

    /// Runs `work` under the overall deadline; turns a failure into one log line and an error.
    async fn decide<T>(&self, work: impl Future<Output = Result<T, Failure>>) -> Result<T, Error> {
        let failure = match tokio::time::timeout(self.settings.timeout, work).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Unreachable(format!(
                "no answer within {} s",
                self.settings.timeout.as_secs()
            )),
        };
        let url = &self.settings.url;
        let message = match failure {
            Failure::Unreachable(detail) => {
                tracing::warn!(
                    "LDAP directory {url} unreachable ({detail}); logins fail until it answers"
                );
                format!("LDAP directory {url} unreachable: {detail}")
            }
            Failure::Directory(detail) => {
                tracing::warn!(
                    "LDAP directory {url} could not decide ({detail}); logins fail until this is fixed"
                );
                format!("LDAP directory {url} could not decide: {detail}")
            }
        };
        Err(Error::new(ErrorCode::Unavailable, message))
    }

    async fn check(&self, name: &str, password: &str) -> Result<bool, Failure> {
        let dn = match &self.settings.mode {
            Mode::Direct { template } => user_dn(template, name),
            Mode::Search { base, .. } => match self.find(name).await? {
                Found::One(dn) => dn,
                Found::None => {
                    // Same round trips as a wrong password: a bind that cannot succeed.
                    let nobody = format!("cn=siren-no-such-user,{base}");
                    if let Ok(mut ldap) = self.connect().await {
                        let _ = self.bind(&mut ldap, &nobody, password).await;
                        let _ = ldap.unbind().await;
                    }
                    tracing::debug!("LDAP login for a name the directory does not know");
                    return Ok(false);
                }
                Found::Many => {
                    tracing::warn!(
                        "LDAP directory {}: search_filter matched several entries for one login name; refusing it (make the filter unique)",
                        self.settings.url
                    );
                    return Ok(false);
                }
            },
        };
        let mut ldap = self.connect().await?;
        let answer = match self.bind(&mut ldap, &dn, password).await {
            Ok(true) => {
                let user_conn = matches!(self.settings.mode, Mode::Direct { .. });
                self.allowed(user_conn.then_some(&mut ldap), &dn, name)
                    .await
            }
            other => other,
        };
        let _ = ldap.unbind().await;
        answer
    }

    /// Whether the group check passes (always, without `required_group`). The compare runs on
    /// `user_conn` (the user's own bound connection) if given, else on the service connection.
    async fn allowed(
        &self,
        user_conn: Option<&mut Ldap>,
        dn: &str,
        name: &str,
    ) -> Result<bool, Failure> {
        let Some(group) = &self.settings.group else {
            return Ok(true);
        };
        let value = match group.value {
            MemberValue::Dn => dn,
            MemberValue::User => name,
        };
        let timeout = self.settings.timeout;
        let result = match user_conn {
            Some(conn) => conn
                .with_timeout(timeout)
                .compare(&group.dn, &group.attribute, value)
                .await
                .map(|c| c.0),
            None => {
                self.on_service(|mut ldap| async move {
                    ldap.with_timeout(timeout)
                        .compare(&group.dn, &group.attribute, value)
                        .await
                        .map(|c| c.0)
                })
                .await?
            }
        };
        let result = result.map_err(|e| Failure::from_ldap("group compare", e))?;
        match result.rc {
            rc::COMPARE_TRUE => Ok(true),
            rc::COMPARE_FALSE | rc::NO_SUCH_ATTRIBUTE => Ok(false),
            rc::NO_SUCH_OBJECT => Err(Failure::Directory(format!(
                "required_group {:?} does not exist or may not be read by the account that checks it",
                group.dn
            ))),
            _ => Err(Failure::from_ldap(
                "group compare",
                LdapError::LdapResult { result },
            )),
        }
    }

    /// A simple bind; `Ok(false)` for every "these credentials are not good" answer.
    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool, Failure> {
        // Never send an unauthenticated bind (a DN with an empty password): many directories
        // answer it with success, as anonymous. `verify_name` refuses these already; this is the
        // one place every user bind goes through.
        if password.is_empty() {
            return Ok(false);
        }
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| Failure::from_ldap("bind", e))?;
        match result.rc {
            0 => Ok(true),
            rc::INVALID_CREDENTIALS
            | rc::INAPPROPRIATE_AUTHENTICATION
            | rc::UNWILLING_TO_PERFORM
            | rc::CONSTRAINT_VIOLATION
            | rc::INSUFFICIENT_ACCESS
            | rc::NO_SUCH_OBJECT
            | rc::INVALID_DN_SYNTAX => Ok(false),
            _ => Err(Failure::from_ldap("bind", LdapError::LdapResult { result })),
        }
    }

    /// Finds the user's DN in search mode.
    async fn find(&self, name: &str) -> Result<Found, Failure> {
        let Mode::Search { base, filter, .. } = &self.settings.mode else {
            return Ok(Found::None);
        };
        let filter = user_filter(filter, name);
        let timeout = self.settings.timeout;
        let filter = &filter;
        let result = self
            .on_service(|mut ldap| async move {
                ldap.with_search_options(SearchOptions::new().sizelimit(2))
                    .with_timeout(timeout)
                    .search(base, Scope::Subtree, filter, vec!["1.1"])
                    .await
            })
            .await?
            .map_err(|e| Failure::from_ldap("search", e))?;
        let ldap3::SearchResult(entries, result) = result;
        match result.rc {
            0 => {}
            rc::SIZE_LIMIT_EXCEEDED => return Ok(Found::Many),
            rc::NO_SUCH_OBJECT => {
                return Err(Failure::Directory(format!(
                    "search_base {base:?} does not exist or may not be read by the service account"
                )));
            }
            _ => {
                return Err(Failure::from_ldap(
                    "search",
                    LdapError::LdapResult { result },
                ));
            }
        }
        let mut dns = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(|e| SearchEntry::construct(e).dn);
        Ok(match (dns.next(), dns.next()) {
            (Some(dn), None) => Found::One(dn),
            (None, _) => Found::None,
            (Some(_), Some(_)) => Found::Many,
        })
    }

    /// Runs `op` on the service connection (connecting and binding it first if needed). If a
    /// kept connection fails below the LDAP level (it was closed meanwhile), reconnects once.
    /// The outer `Result` is the connection's; the inner one is `op`'s, LDAP result codes and all.
    async fn on_service<T, F, Fut>(&self, op: F) -> Result<Result<T, LdapError>, Failure>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let (ldap, reused) = self.service_conn().await?;
        match op(ldap).await {
            Err(e) if reused && !matches!(e, LdapError::LdapResult { .. }) => {
                tracing::debug!("LDAP service connection lost ({e}); reconnecting");
                *self.service.lock().await = None;
                let (ldap, _) = self.service_conn().await?;
                Ok(op(ldap).await)
            }
            other => Ok(other),
        }
    }

    /// The kept service connection, or a new one; `true` if it was kept.
    async fn service_conn(&self) -> Result<(Ldap, bool), Failure> {
        let mut kept = self.service.lock().await;
        if let Some(ldap) = kept.as_mut()
            && !ldap.is_closed()
        {
            return Ok((ldap.clone(), true));
        }
        *kept = None;
        let mut ldap = self.connect().await?;
        if let Mode::Search {
            service: Some((dn, password)),
            ..
        } = &self.settings.mode
        {
            let result = ldap
                .with_timeout(self.settings.timeout)
                .simple_bind(dn, password)
                .await
                .map_err(|e| Failure::from_ldap("service account bind", e))?;
            if result.rc != 0 {
                return Err(Failure::from_ldap(
                    &format!("service account bind as {dn:?}"),
                    LdapError::LdapResult { result },
                ));
            }
        }
        *kept = Some(ldap.clone());
        Ok((ldap, false))
    }

    /// A new connection (TCP, then TLS or StartTLS as configured), driven on its own task.
    async fn connect(&self) -> Result<Ldap, Failure> {
        let s = &self.settings;
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls);
        if let Some(tls) = &s.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(conn_settings, &s.url)
            .await
            .map_err(|e| Failure::from_ldap("connect", e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }
}

#[async_trait]
impl CredentialBackend for LdapBackend {
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error> {
        self.verify_name(user.as_str(), password).await
    }

    /// In search mode: whether the filter finds exactly one entry (and, with `required_group`,
    /// that entry is a member). In direct-bind mode the directory cannot be asked without the
    /// user's password: an error says so.
    async fn user_exists(&self, user: &Username) -> Result<bool, Error> {
        if matches!(self.settings.mode, Mode::Direct { .. }) {
            return Err(Error::new(
                ErrorCode::Internal,
                "the ldap backend answers user_exists only in search mode (search_base, search_filter, service_dn); bind_dn_template is configured",
            ));
        }
        let name = user.as_str();
        self.decide(async {
            match self.find(name).await? {
                Found::One(dn) => self.allowed(None, &dn, name).await,
                Found::None | Found::Many => Ok(false),
            }
        })
        .await
    }

    /// In search mode, [`CredentialBackend::user_exists`] as a status (stamp 0); in direct-bind
    /// mode `Unknowable` rather than an error, so the host neither re-checks nor refuses the
    /// sessions this backend let in.
    async fn account_status(&self, user: &Username) -> Result<AccountStatus, Error> {
        if matches!(self.settings.mode, Mode::Direct { .. }) {
            return Ok(AccountStatus::Unknowable);
        }
        Ok(if self.user_exists(user).await? {
            AccountStatus::Active { stamp: 0 }
        } else {
            AccountStatus::Gone
        })
    }
}

#[cfg(test)]
mod tests;
