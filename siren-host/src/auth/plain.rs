//! RFC 4616 `PLAIN`: a username (or UID) and a password, checked by a credential backend.

use std::sync::Arc;

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
}
