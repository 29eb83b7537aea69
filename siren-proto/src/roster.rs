//! The Personal Roster: a user's contacts and block list, plaintext but signed by the USK.
//!
//! The server stores it and reads it (to enforce blocking and contact requests) but cannot
//! change it: every version is signed, and each version carries the number and hash of the
//! previous one, so an older roster cannot be replayed in place of a newer one
//! ([`Roster::check_successor`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use siren_api::Uid;

use crate::keys::{Signature, UskPublic, UskSecret};
use crate::labels;
use crate::records::RecordError;
use crate::transcript::{Digest, Transcript};

/// Most contacts in a roster.
pub const MAX_CONTACTS: usize = 5000;
/// Most blocked users in a roster.
pub const MAX_BLOCKED: usize = 5000;
/// Longest contact display name, in bytes.
pub const MAX_CONTACT_NAME: usize = 128;

/// One contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Who.
    pub uid: Uid,
    /// A display name chosen by the roster's owner.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::strict::opt_text"
    )]
    pub name: Option<String>,
    /// Whether this contact may subscribe to the owner's presence.
    pub presence: bool,
}

/// A signed roster version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The owner.
    pub uid: Uid,
    /// The owner's signing key.
    pub usk: UskPublic,
    /// Version number: 1 for the first, then +1 each change.
    pub version: u64,
    /// Hash of the previous version ([`Digest::ZERO`] for version 1).
    pub prev: Digest,
    /// When this version was made, Unix seconds.
    pub ts: u64,
    /// Contacts, without duplicates.
    pub contacts: Vec<Contact>,
    /// Blocked users, without duplicates.
    pub blocked: Vec<Uid>,
    /// Ed25519 signature by `usk` over [`Roster::signed_bytes`].
    pub sig: Signature,
}

impl Roster {
    /// Makes and signs the first version, or the successor of `previous`.
    pub fn sign_next(
        usk: &UskSecret,
        uid: Uid,
        previous: Option<&Roster>,
        ts: u64,
        contacts: Vec<Contact>,
        blocked: Vec<Uid>,
    ) -> Roster {
        let (version, prev) = match previous {
            None => (1, Digest::ZERO),
            Some(p) => (p.version.saturating_add(1), p.hash()),
        };
        let mut roster = Roster {
            uid,
            usk: usk.public(),
            version,
            prev,
            ts,
            contacts,
            blocked,
            sig: Signature::from_bytes([0; 64]),
        };
        roster.sig = usk.sign(&roster.signed_bytes());
        roster
    }

    /// The bytes the signature covers (PROTOCOL.md §"Signed bytes").
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(labels::ROSTER);
        t.text(&self.uid.to_string())
            .fixed(self.usk.as_bytes())
            .u64(self.version)
            .fixed(self.prev.as_bytes())
            .u64(self.ts)
            .count(self.contacts.len());
        for c in &self.contacts {
            t.text(&c.uid.to_string())
                .opt_text(c.name.as_deref())
                .flag(c.presence);
        }
        t.count(self.blocked.len());
        for b in &self.blocked {
            t.text(&b.to_string());
        }
        t.as_bytes().to_vec()
    }

    /// `SHA-256(label "siren/v1/roster-hash" || var(signed bytes) || sig)`.
    pub fn hash(&self) -> Digest {
        let mut t = Transcript::new(labels::ROSTER_HASH);
        t.var(&self.signed_bytes()).fixed(self.sig.as_bytes());
        t.digest()
    }

    /// Checks limits, duplicates and the signature under the roster's own `usk`.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.contacts.len() > MAX_CONTACTS {
            return Err(RecordError::Limit {
                what: "contacts",
                max: MAX_CONTACTS,
            });
        }
        if self.blocked.len() > MAX_BLOCKED {
            return Err(RecordError::Limit {
                what: "blocked users",
                max: MAX_BLOCKED,
            });
        }
        if self
            .contacts
            .iter()
            .any(|c| c.name.as_ref().is_some_and(|n| n.len() > MAX_CONTACT_NAME))
        {
            return Err(RecordError::Limit {
                what: "contact name",
                max: MAX_CONTACT_NAME,
            });
        }
        let mut seen = BTreeSet::new();
        if !self.contacts.iter().all(|c| seen.insert(&c.uid)) {
            return Err(RecordError::Inconsistent("contact listed twice"));
        }
        let mut seen = BTreeSet::new();
        if !self.blocked.iter().all(|b| seen.insert(b)) {
            return Err(RecordError::Inconsistent("blocked user listed twice"));
        }
        self.usk.verify(&self.signed_bytes(), &self.sig)?;
        Ok(())
    }

    /// Checks that `self` may replace `current` for `owner` (whose USK is `usk`): valid, same
    /// owner and key, version one more than `current`'s and `prev` its hash (or version 1 with a
    /// zero `prev` when there is no roster yet).
    pub fn check_successor(
        &self,
        owner: &Uid,
        usk: &UskPublic,
        current: Option<&Roster>,
    ) -> Result<(), RecordError> {
        if &self.uid != owner {
            return Err(RecordError::WrongUser {
                expected: owner.clone(),
                got: self.uid.clone(),
            });
        }
        if &self.usk != usk {
            return Err(RecordError::KeyMismatch);
        }
        self.verify()?;
        let (have, hash) = match current {
            None => (0, Digest::ZERO),
            Some(c) => (c.version, c.hash()),
        };
        if self.version <= have {
            return Err(RecordError::Rollback {
                have,
                got: self.version,
            });
        }
        if self.version != have + 1 || self.prev != hash {
            return Err(RecordError::Fork {
                expected: have + 1,
                have: hash,
            });
        }
        Ok(())
    }

    /// Whether `uid` is on the block list.
    pub fn is_blocked(&self, uid: &Uid) -> bool {
        self.blocked.contains(uid)
    }

    /// The contact entry for `uid`, if any.
    pub fn contact(&self, uid: &Uid) -> Option<&Contact> {
        self.contacts.iter().find(|c| &c.uid == uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn versions_chain_and_rollback_is_refused() {
        let mut rng = TestRng::seeded(7);
        let usk = UskSecret::generate(&mut rng);
        let alice = uid("alice@alpha.test");
        let v1 = Roster::sign_next(&usk, alice.clone(), None, 10, vec![], vec![]);
        v1.check_successor(&alice, &usk.public(), None).unwrap();
        let bob = Contact {
            uid: uid("bob@beta.test"),
            name: Some("Bob".into()),
            presence: true,
        };
        let v2 = Roster::sign_next(&usk, alice.clone(), Some(&v1), 11, vec![bob], vec![]);
        v2.check_successor(&alice, &usk.public(), Some(&v1))
            .unwrap();
        // Replaying v1 over v2 is a rollback.
        assert_eq!(
            v1.check_successor(&alice, &usk.public(), Some(&v2)),
            Err(RecordError::Rollback { have: 2, got: 1 })
        );
        // A v3 that skips v2's hash is a fork.
        let v3_forked = Roster::sign_next(&usk, alice.clone(), Some(&v1), 12, vec![], vec![]);
        let mut v3 = v3_forked.clone();
        v3.version = 3;
        v3.sig = usk.sign(&v3.signed_bytes());
        assert!(matches!(
            v3.check_successor(&alice, &usk.public(), Some(&v2)),
            Err(RecordError::Fork { expected: 3, .. })
        ));
    }

    #[test]
    fn another_users_key_or_name_is_refused() {
        let mut rng = TestRng::seeded(8);
        let usk = UskSecret::generate(&mut rng);
        let mallory = UskSecret::generate(&mut rng);
        let alice = uid("alice@alpha.test");
        let forged = Roster::sign_next(&mallory, alice.clone(), None, 1, vec![], vec![]);
        assert_eq!(
            forged.check_successor(&alice, &usk.public(), None),
            Err(RecordError::KeyMismatch)
        );
        let other = Roster::sign_next(&usk, uid("eve@alpha.test"), None, 1, vec![], vec![]);
        assert!(matches!(
            other.check_successor(&alice, &usk.public(), None),
            Err(RecordError::WrongUser { .. })
        ));
    }

    #[test]
    fn edited_roster_fails_and_duplicates_are_refused() {
        let mut rng = TestRng::seeded(9);
        let usk = UskSecret::generate(&mut rng);
        let alice = uid("alice@alpha.test");
        let mut r = Roster::sign_next(
            &usk,
            alice.clone(),
            None,
            1,
            vec![],
            vec![uid("eve@x.test")],
        );
        assert!(r.is_blocked(&uid("eve@x.test")));
        r.blocked.clear(); // the server tries to unblock eve
        assert_eq!(r.verify(), Err(RecordError::BadSignature));
        let dup = Roster::sign_next(
            &usk,
            alice,
            None,
            1,
            vec![],
            vec![uid("eve@x.test"), uid("eve@x.test")],
        );
        assert!(matches!(dup.verify(), Err(RecordError::Inconsistent(_))));
    }
}
