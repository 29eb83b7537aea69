//! The Authentication Manager: the mechanisms on offer, the built-in `PLAIN` mechanism, and the
//! rate limits on failed logins.
//!
//! Mechanisms only ever see credentials inside the encrypted session. A failure looks the same
//! to the client whatever the reason (error 201); too many recent failures for the client's
//! address or for the account turn every answer into error 203 for a minute, correct password or
//! not, so guessing gets nowhere and the lockout reveals nothing.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use siren_api::auth::{AuthContext, AuthExchange, AuthMechanism, AuthStep, CredentialBackend};
use siren_api::{Error, ServerName, Uid, Username};

/// RFC 4616 `PLAIN` over a credential backend.
pub struct Plain {
    server: ServerName,
    credentials: Arc<dyn CredentialBackend>,
}

impl Plain {
    /// `PLAIN` checking passwords with `credentials`.
    pub fn new(server: ServerName, credentials: Arc<dyn CredentialBackend>) -> Self {
        Plain {
            server,
            credentials,
        }
    }
}

impl AuthMechanism for Plain {
    fn name(&self) -> &str {
        "PLAIN"
    }

    fn begin(&self, _ctx: AuthContext) -> Box<dyn AuthExchange> {
        Box::new(PlainExchange {
            server: self.server.clone(),
            credentials: self.credentials.clone(),
            asked: false,
        })
    }
}

struct PlainExchange {
    server: ServerName,
    credentials: Arc<dyn CredentialBackend>,
    asked: bool,
}

/// Parses `[authzid] NUL authcid NUL passwd`; `authcid` is a username or a UID of `server`.
/// Returns `None` for anything malformed (which is then simply a failed login).
fn parse_plain(server: &ServerName, data: &[u8]) -> Option<(Username, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.split('\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || password.is_empty() {
        return None;
    }
    let user = match Uid::parse(authcid) {
        Ok(uid) if uid.server() == server => uid.user().clone(),
        Ok(_) => return None,
        Err(_) => Username::parse(authcid).ok()?,
    };
    // Authorising as someone else is not supported: authzid must be empty or the same user.
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    Some((user, password.to_owned()))
}

#[async_trait]
impl AuthExchange for PlainExchange {
    async fn step(&mut self, response: &[u8]) -> Result<AuthStep, Error> {
        if response.is_empty() && !self.asked {
            // No initial response: ask for it (RFC 4422 empty challenge).
            self.asked = true;
            return Ok(AuthStep::Challenge(Vec::new()));
        }
        let Some((user, password)) = parse_plain(&self.server, response) else {
            return Ok(AuthStep::Failure { attempted: None });
        };
        if self.credentials.verify(&user, &password).await? {
            Ok(AuthStep::Success(user))
        } else {
            Ok(AuthStep::Failure {
                attempted: Some(user),
            })
        }
    }

    /// The password was checked by the credential backend: sessions end with the account.
    fn checked_by_credentials(&self) -> bool {
        true
    }
}

/// Counts failures per key over a sliding minute.
struct Window<K> {
    limit: u32,
    failures: HashMap<K, VecDeque<Instant>>,
}

const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before old ones are pruned (bounds memory under a flood of addresses).
const MAX_TRACKED: usize = 100_000;

impl<K: std::hash::Hash + Eq + Clone> Window<K> {
    fn new(limit: u32) -> Self {
        Window {
            limit,
            failures: HashMap::new(),
        }
    }

    fn blocked(&mut self, key: &K, now: Instant) -> bool {
        let Some(times) = self.failures.get_mut(key) else {
            return false;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        times.len() >= self.limit as usize
    }

    fn record(&mut self, key: K, now: Instant) {
        if self.failures.len() >= MAX_TRACKED {
            self.failures.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
        }
        let times = self.failures.entry(key).or_default();
        times.push_back(now);
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }
}

/// Failed-login limits per client address and per account.
pub struct RateLimiter {
    by_address: Mutex<Window<IpAddr>>,
    by_account: Mutex<Window<Username>>,
}

impl RateLimiter {
    /// Allows `per_address` and `per_account` failures per minute.
    pub fn new(per_address: u32, per_account: u32) -> Self {
        RateLimiter {
            by_address: Mutex::new(Window::new(per_address)),
            by_account: Mutex::new(Window::new(per_account)),
        }
    }

    /// Whether logins from `addr` are blocked right now.
    pub fn address_blocked(&self, addr: Option<IpAddr>) -> bool {
        let Some(addr) = addr else { return false };
        self.by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocked(&addr, Instant::now())
    }

    /// Whether logins to `user` are blocked right now.
    pub fn account_blocked(&self, user: &Username) -> bool {
        self.by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocked(user, Instant::now())
    }

    /// Records a failed login.
    pub fn failed(&self, addr: Option<IpAddr>, user: Option<&Username>) {
        let now = Instant::now();
        if let Some(addr) = addr {
            self.by_address
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(addr, now);
        }
        if let Some(user) = user {
            self.by_account
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(user.clone(), now);
        }
    }
}

/// The mechanisms on offer and the limits.
pub struct AuthManager {
    mechanisms: Vec<Arc<dyn AuthMechanism>>,
    /// Failed-login limits.
    pub limiter: RateLimiter,
}

impl AuthManager {
    /// Offers `mechanisms` in this order.
    pub fn new(mechanisms: Vec<Arc<dyn AuthMechanism>>, limiter: RateLimiter) -> Self {
        AuthManager {
            mechanisms,
            limiter,
        }
    }

    /// Names to send in `auth_mechanisms`.
    pub fn names(&self) -> Vec<String> {
        self.mechanisms
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }

    /// The mechanism called `name`.
    pub fn mechanism(&self, name: &str) -> Option<&Arc<dyn AuthMechanism>> {
        self.mechanisms.iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_parsing() {
        let alpha = ServerName::parse("alpha.test").unwrap();
        let user = |s: &str| Username::parse(s).unwrap();
        assert_eq!(
            parse_plain(&alpha, b"\0alice\0pw"),
            Some((user("alice"), "pw".into()))
        );
        assert_eq!(
            parse_plain(&alpha, b"alice@alpha.test\0alice@alpha.test\0pw"),
            Some((user("alice"), "pw".into()))
        );
        assert_eq!(parse_plain(&alpha, b"\0alice@beta.test\0pw"), None);
        assert_eq!(parse_plain(&alpha, b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(&alpha, b"\0alice\0"), None);
        assert_eq!(parse_plain(&alpha, b"\0alice"), None);
        assert_eq!(parse_plain(&alpha, b"\0al ice\0pw"), None);
        assert_eq!(parse_plain(&alpha, b"\0alice\0pw\0more"), None);
        assert_eq!(parse_plain(&alpha, &[0, b'a', 0, 0xff]), None);
    }

    #[test]
    fn limits_block_after_the_allowed_failures_and_forget_after_a_minute() {
        let mut w: Window<u8> = Window::new(3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!w.blocked(&1, t0), "blocked after {i} failures");
            w.record(1, t0);
        }
        assert!(w.blocked(&1, t0));
        assert!(!w.blocked(&2, t0));
        assert!(w.blocked(&1, t0 + Duration::from_secs(59)));
        assert!(!w.blocked(&1, t0 + Duration::from_secs(61)));
    }
}
