//! Groups (PROTOCOL.md §12.1): a random id and a signed, versioned membership.
//!
//! Every version of a group's membership — its members, its admins, its title — is signed by
//! the USK of the member who made the change and carries the hash of the version before it, as
//! the roster's versions do. Members check each new version against the one they hold
//! ([`GroupState::check_successor`]): signed by an admin of the version before (or by a member
//! who only removes themselves: leaving), exactly one version later, chained to the one they
//! hold. A change signed by anyone else, an older version offered again with other contents
//! (a fork) and a version that skips some (a gap: a server dropped an update) are all refused,
//! so a server — which routes the updates like any message, sealed — can neither change who is
//! in a group nor make members disagree without them noticing.
//!
//! Messages to a group are fanned out by the sender's client as ordinary envelopes, one per
//! member device, each carrying the group id and the membership version the sender held
//! ([`crate::plaintext::Plaintext::Group`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use siren_api::Uid;

use crate::ids::GroupId;
use crate::keys::{Signature, UskPublic, UskSecret};
use crate::labels;
use crate::transcript::{Digest, Transcript};

/// Most members of a group (admins included).
pub const MAX_GROUP_MEMBERS: usize = 256;
/// Longest group title, in bytes.
pub const MAX_GROUP_TITLE: usize = 256;

/// Why a group version is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A list or the title is beyond the protocol's limit.
    #[error("{what} exceeds the limit of {max}")]
    Limit {
        /// What was too long.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The membership is not well formed (order, duplicates, admins who are not members…).
    #[error("malformed group membership: {0}")]
    Malformed(&'static str),
    /// The signature does not verify under the signer's USK.
    #[error("the signature does not verify under {0}'s key")]
    BadSignature(Uid),
    /// A version of another group.
    #[error("a version of another group")]
    WrongGroup,
    /// The signer may not make this change: not an admin of the version before, and not a
    /// member who only leaves.
    #[error("{by} is not an admin of version {version} and may not make this change")]
    NotAdmin {
        /// Who signed.
        by: Uid,
        /// The version they changed.
        version: u64,
    },
    /// Not newer than the version held: a duplicate, or an old version replayed.
    #[error("version {got} is not newer than version {have}")]
    Rollback {
        /// The version held.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// Versions between the one held and the one offered are missing (a dropped update).
    #[error("versions {} to {} are missing (have {have}, got {got})", have.saturating_add(1), got.saturating_sub(1))]
    Gap {
        /// The version held.
        have: u64,
        /// The version offered.
        got: u64,
    },
    /// The next version, but it does not follow the version held: another version with the
    /// same number exists (a fork).
    #[error("version {version} does not follow the version held (a fork)")]
    Fork {
        /// The version offered.
        version: u64,
    },
    /// Someone joining was given a version that does not list them, or whose signer is not
    /// one of its admins.
    #[error("not a version to join by: {0}")]
    NotAJoin(&'static str),
}

/// One signed version of a group's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The group.
    pub group: GroupId,
    /// 1 for the group's creation, then +1 each change.
    pub version: u64,
    /// Hash of the previous version ([`Digest::ZERO`] for version 1).
    pub prev: Digest,
    /// Who made (and signed) this version.
    pub by: Uid,
    /// When, Unix seconds (the signer's clock).
    pub ts: u64,
    /// The group's name, shown to members (may be empty).
    #[serde(with = "crate::strict::text")]
    pub title: String,
    /// Every member, admins included, in ascending order of their text form, each once.
    pub members: Vec<Uid>,
    /// The members who may change the group, in the same order; at least one.
    pub admins: Vec<Uid>,
    /// Ed25519 signature by `by`'s USK over [`GroupState::signed_bytes`].
    pub sig: Signature,
}

/// What a version changes: the members and admins it names, and its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group's name.
    pub title: String,
    /// Every member (any order, duplicates ignored).
    pub members: Vec<Uid>,
    /// The admins, all members too (any order, duplicates ignored).
    pub admins: Vec<Uid>,
}

/// UIDs in the protocol's order (ascending text form), each once.
fn canonical(uids: Vec<Uid>) -> Vec<Uid> {
    let mut uids: Vec<(String, Uid)> = uids.into_iter().map(|u| (u.to_string(), u)).collect();
    uids.sort_by(|a, b| a.0.cmp(&b.0));
    uids.dedup_by(|a, b| a.0 == b.0);
    uids.into_iter().map(|(_, u)| u).collect()
}

/// Whether `uids` is strictly ascending by text form (sorted, no duplicates).
fn is_canonical(uids: &[Uid]) -> bool {
    uids.windows(2)
        .all(|w| matches!(w, [a, b] if a.to_string() < b.to_string()))
}

impl GroupState {
    /// Creates a group: version 1, signed by its creator `by`, who must be among `admins`.
    pub fn create(
        usk: &UskSecret,
        by: Uid,
        group: GroupId,
        ts: u64,
        membership: Membership,
    ) -> Result<GroupState, GroupError> {
        let state = Self::sign(usk, by, group, 1, Digest::ZERO, ts, membership);
        state.check_shape()?;
        state.check_signer_is_admin()?;
        Ok(state)
    }

    /// The version after this one, made and signed by `by` (an admin of this version, or a
    /// member leaving), checked as every member will check it.
    pub fn next(
        &self,
        usk: &UskSecret,
        by: Uid,
        ts: u64,
        membership: Membership,
    ) -> Result<GroupState, GroupError> {
        let next = Self::sign(
            usk,
            by,
            self.group,
            self.version.saturating_add(1),
            self.hash(),
            ts,
            membership,
        );
        next.check_successor(self, &usk.public())?;
        Ok(next)
    }

    fn sign(
        usk: &UskSecret,
        by: Uid,
        group: GroupId,
        version: u64,
        prev: Digest,
        ts: u64,
        membership: Membership,
    ) -> GroupState {
        let mut state = GroupState {
            group,
            version,
            prev,
            by,
            ts,
            title: membership.title,
            members: canonical(membership.members),
            admins: canonical(membership.admins),
            sig: Signature::from_bytes([0; 64]),
        };
        state.sig = usk.sign(&state.signed_bytes());
        state
    }

    /// The members, admins and title of this version.
    pub fn membership(&self) -> Membership {
        Membership {
            title: self.title.clone(),
            members: self.members.clone(),
            admins: self.admins.clone(),
        }
    }

    /// The bytes the signature covers (PROTOCOL.md §19.8).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(labels::GROUP);
        t.fixed(self.group.as_bytes())
            .u64(self.version)
            .fixed(self.prev.as_bytes())
            .text(&self.by.to_string())
            .u64(self.ts)
            .text(&self.title)
            .count(self.members.len());
        for m in &self.members {
            t.text(&m.to_string());
        }
        t.count(self.admins.len());
        for a in &self.admins {
            t.text(&a.to_string());
        }
        t.as_bytes().to_vec()
    }

    /// `SHA-256(label "siren/v1/group-hash" || var(signed bytes) || sig)`.
    pub fn hash(&self) -> Digest {
        let mut t = Transcript::new(labels::GROUP_HASH);
        t.var(&self.signed_bytes()).fixed(self.sig.as_bytes());
        t.digest()
    }

    /// Whether `uid` is a member of this version.
    pub fn is_member(&self, uid: &Uid) -> bool {
        self.members.contains(uid)
    }

    /// Whether `uid` is an admin of this version.
    pub fn is_admin(&self, uid: &Uid) -> bool {
        self.admins.contains(uid)
    }

    /// Limits and form: at most [`MAX_GROUP_MEMBERS`] members and a title of at most
    /// [`MAX_GROUP_TITLE`] bytes; members and admins in order without duplicates; at least one
    /// admin, every admin a member; version 1 exactly when `prev` is zero.
    pub fn check_shape(&self) -> Result<(), GroupError> {
        if self.members.len() > MAX_GROUP_MEMBERS {
            return Err(GroupError::Limit {
                what: "group members",
                max: MAX_GROUP_MEMBERS,
            });
        }
        if self.title.len() > MAX_GROUP_TITLE {
            return Err(GroupError::Limit {
                what: "group title",
                max: MAX_GROUP_TITLE,
            });
        }
        if !is_canonical(&self.members) || !is_canonical(&self.admins) {
            return Err(GroupError::Malformed(
                "members and admins must be in ascending order, each once",
            ));
        }
        if self.admins.is_empty() {
            return Err(GroupError::Malformed("a group has at least one admin"));
        }
        let members: BTreeSet<&Uid> = self.members.iter().collect();
        if !self.admins.iter().all(|a| members.contains(a)) {
            return Err(GroupError::Malformed("every admin is a member"));
        }
        if (self.version == 1) != (self.prev == Digest::ZERO) || self.version == 0 {
            return Err(GroupError::Malformed(
                "version 1 and only version 1 has a zero prev",
            ));
        }
        Ok(())
    }

    fn check_signer_is_admin(&self) -> Result<(), GroupError> {
        if self.is_admin(&self.by) {
            Ok(())
        } else {
            Err(GroupError::NotAdmin {
                by: self.by.clone(),
                version: self.version,
            })
        }
    }

    /// Checks the signature under `by_usk`, the USK of `by` from the checker's verified
    /// directory of that user.
    pub fn check_signature(&self, by_usk: &UskPublic) -> Result<(), GroupError> {
        by_usk
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_| GroupError::BadSignature(self.by.clone()))
    }

    /// Checks a group's first version, as its members receive it: well formed, version 1,
    /// signed by `by` (whose USK is `by_usk`), an admin of it.
    pub fn check_genesis(&self, by_usk: &UskPublic) -> Result<(), GroupError> {
        self.check_shape()?;
        if self.version != 1 {
            return Err(GroupError::NotAJoin("a group starts at version 1"));
        }
        self.check_signer_is_admin()?;
        self.check_signature(by_usk)
    }

    /// Checks the version someone added to an existing group is given — they hold no earlier
    /// version, so they take this one on the word of the admin who added them: well formed,
    /// listing `me` as a member, signed by `by` (whose USK is `by_usk`), an admin of it. Every
    /// version after it is checked with [`GroupState::check_successor`].
    pub fn check_join(&self, me: &Uid, by_usk: &UskPublic) -> Result<(), GroupError> {
        self.check_shape()?;
        if !self.is_member(me) {
            return Err(GroupError::NotAJoin("it does not list the one joining"));
        }
        if !self.is_admin(&self.by) {
            return Err(GroupError::NotAJoin("its signer is not one of its admins"));
        }
        self.check_signature(by_usk)
    }

    /// Checks that this version may follow `current`, the version held: the same group,
    /// exactly one version later ([`GroupError::Rollback`] for an older or equal one,
    /// [`GroupError::Gap`] past the next), chained to `current` by `prev`
    /// ([`GroupError::Fork`] otherwise), well formed, and signed by `by` (whose USK is
    /// `by_usk`), who is an admin of `current` — or a member of `current` whose change is only
    /// to leave (removed from the members, nothing else changed).
    pub fn check_successor(
        &self,
        current: &GroupState,
        by_usk: &UskPublic,
    ) -> Result<(), GroupError> {
        if self.group != current.group {
            return Err(GroupError::WrongGroup);
        }
        if self.version <= current.version {
            return Err(GroupError::Rollback {
                have: current.version,
                got: self.version,
            });
        }
        if self.version > current.version.saturating_add(1) {
            return Err(GroupError::Gap {
                have: current.version,
                got: self.version,
            });
        }
        if self.prev != current.hash() {
            return Err(GroupError::Fork {
                version: self.version,
            });
        }
        self.check_shape()?;
        if !current.is_admin(&self.by) && !self.is_leaving_of(current) {
            return Err(GroupError::NotAdmin {
                by: self.by.clone(),
                version: current.version,
            });
        }
        self.check_signature(by_usk)
    }

    /// Whether this version is `current` with only its signer gone: a member leaving.
    fn is_leaving_of(&self, current: &GroupState) -> bool {
        let mut left = current.members.clone();
        left.retain(|m| m != &self.by);
        current.is_member(&self.by)
            && self.members == left
            && self.admins == current.admins
            && self.title == current.title
    }
}

#[cfg(test)]
mod tests;
