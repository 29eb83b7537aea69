//! Names: server names, usernames and user identifiers (UIDs).
//!
//! A UID looks like an e-mail address, `alice@alpha.test`: a [`Username`] and the
//! [`ServerName`] of the server the user belongs to. Both parts are ASCII and case-insensitive;
//! parsing folds them to lowercase so that `Alice@Alpha.TEST` and `alice@alpha.test` are the
//! same user everywhere (directory keys, signatures, rosters). Values of these types are always
//! valid: the only way to make one is to parse it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest username, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// The longest server name, in bytes (the DNS limit for a name in text form).
pub const MAX_SERVER_NAME_LEN: usize = 253;
/// The longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest UID in text form: username, `@`, server name.
pub const MAX_UID_LEN: usize = MAX_USERNAME_LEN + 1 + MAX_SERVER_NAME_LEN;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which kind of name.
        what: &'static str,
    },
    /// The name is longer than its limit.
    #[error("{what} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character that is not allowed.
    #[error("{what} contains {found:?}, which is not allowed ({allowed})")]
    BadCharacter {
        /// Which kind of name.
        what: &'static str,
        /// The offending character.
        found: char,
        /// What is allowed, in words.
        allowed: &'static str,
    },
    /// A username or DNS label starts or ends with punctuation.
    #[error("{what} {name:?} must start and end with a letter or digit")]
    BadEdge {
        /// Which kind of name.
        what: &'static str,
        /// The name or label.
        name: String,
    },
    /// A UID is not of the form `user@server`.
    #[error("a UID must look like user@server, got {0:?}")]
    NotAUid(String),
}

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), IdentityError> {
    if s.is_empty() {
        return Err(IdentityError::Empty { what });
    }
    if s.len() > max {
        return Err(IdentityError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// Lowercases `s` after checking each character with `allowed`, and that the first and last
/// characters are alphanumeric.
fn fold_checked(
    what: &'static str,
    s: &str,
    allowed_desc: &'static str,
    allowed: impl Fn(char) -> bool,
) -> Result<String, IdentityError> {
    let folded = s.to_ascii_lowercase();
    if let Some(found) = folded.chars().find(|c| !allowed(*c)) {
        return Err(IdentityError::BadCharacter {
            what,
            found,
            allowed: allowed_desc,
        });
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(folded.chars().next()) || !edge_ok(folded.chars().last()) {
        return Err(IdentityError::BadEdge { what, name: folded });
    }
    Ok(folded)
}

/// The DNS name of a Siren server, e.g. `alpha.test`: lowercase labels of letters, digits and
/// hyphens, separated by dots, at most 253 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);

impl ServerName {
    /// Parses and lowercases a server name.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        const WHAT: &str = "server name";
        check_len(WHAT, s, MAX_SERVER_NAME_LEN)?;
        let mut labels = Vec::new();
        for label in s.split('.') {
            check_len("DNS label", label, MAX_LABEL_LEN)?;
            labels.push(fold_checked(
                "DNS label",
                label,
                "letters, digits and '-'",
                |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            )?);
        }
        Ok(ServerName(labels.join(".")))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The user part of a UID, e.g. `alice`: 1 to 64 lowercase letters, digits, `.`, `_` and `-`,
/// starting and ending with a letter or digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// Parses and lowercases a username.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        const WHAT: &str = "username";
        check_len(WHAT, s, MAX_USERNAME_LEN)?;
        fold_checked(WHAT, s, "letters, digits, '.', '_' and '-'", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
        })
        .map(Username)
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user identifier, `user@server`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid {
    user: Username,
    server: ServerName,
}

impl Uid {
    /// Makes a UID from its two parts.
    pub fn new(user: Username, server: ServerName) -> Self {
        Uid { user, server }
    }

    /// Parses `user@server`, lowercasing both parts.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        if s.len() > MAX_UID_LEN {
            return Err(IdentityError::TooLong {
                what: "UID",
                len: s.len(),
                max: MAX_UID_LEN,
            });
        }
        let (user, server) = s
            .split_once('@')
            .ok_or_else(|| IdentityError::NotAUid(s.to_owned()))?;
        Ok(Uid {
            user: Username::parse(user)?,
            server: ServerName::parse(server)?,
        })
    }

    /// The user part.
    pub fn user(&self) -> &Username {
        &self.user
    }

    /// The server part: where this user's directory and queues live.
    pub fn server(&self) -> &ServerName {
        &self.server
    }
}

macro_rules! text_impls {
    ($ty:ident, $expecting:literal) => {
        impl FromStr for $ty {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.to_string())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        // On the wire only the canonical (lowercase) form is accepted, so that a
                        // name has exactly one encoding; user input goes through `parse`.
                        let parsed = $ty::parse(v).map_err(E::custom)?;
                        if parsed.to_string() != v {
                            return Err(E::custom(format!(
                                "{v:?} is not in canonical form (expected {parsed})"
                            )));
                        }
                        Ok(parsed)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

text_impls!(ServerName, "a server name such as alpha.test");
text_impls!(Username, "a username such as alice");
text_impls!(Uid, "a UID such as alice@alpha.test");

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_folds_case() {
        let uid = Uid::parse("Alice.B@Alpha.TEST").unwrap();
        assert_eq!(uid.to_string(), "alice.b@alpha.test");
        assert_eq!(uid.user().as_str(), "alice.b");
        assert_eq!(uid.server().as_str(), "alpha.test");
        assert_eq!(
            ServerName::parse("localhost").unwrap().as_str(),
            "localhost"
        );
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "alice",
            "@alpha.test",
            "alice@",
            "al ice@alpha.test",
            "alice@alpha..test",
            "alice@alpha.test.",
            "alice@-alpha.test",
            "alice@alpha-.test",
            ".alice@alpha.test",
            "alice.@alpha.test",
            "alice@bob@alpha.test",
            "alice@alpha_test",
            "alicé@alpha.test",
        ] {
            assert!(Uid::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_label = "a".repeat(64);
        assert!(matches!(
            ServerName::parse(&long_label),
            Err(IdentityError::TooLong { max: 63, .. })
        ));
        let long_user = format!("{}@alpha.test", "a".repeat(65));
        assert!(matches!(
            Uid::parse(&long_user),
            Err(IdentityError::TooLong { max: 64, .. })
        ));
    }

    #[test]
    fn error_names_the_problem() {
        let err = Uid::parse("al!ce@alpha.test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "username contains '!', which is not allowed (letters, digits, '.', '_' and '-')"
        );
    }

    #[test]
    fn serde_is_a_plain_string() {
        let uid = Uid::parse("bob@beta.test").unwrap();
        let json = serde_json::to_string(&uid).unwrap();
        assert_eq!(json, "\"bob@beta.test\"");
        let back: Uid = serde_json::from_str(&json).unwrap();
        assert_eq!(back, uid);
        assert!(serde_json::from_str::<Uid>("\"not a uid\"").is_err());
        // Only the canonical form is accepted from the wire.
        let err = serde_json::from_str::<Uid>("\"Bob@beta.test\"").unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(s in "[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?@[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,3}") {
            let uid = Uid::parse(&s).unwrap();
            prop_assert_eq!(uid.to_string(), s.clone());
            prop_assert_eq!(Uid::parse(&uid.to_string()).unwrap(), uid);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Uid::parse(&s);
        }
    }
}
