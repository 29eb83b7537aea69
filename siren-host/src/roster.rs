//! Personal Rosters on the server side: storing signed versions (no rollbacks), and using them
//! to enforce blocking and contact requests (PROTOCOL.md §15).
//!
//! The server reads rosters but cannot change them: every version is verified against the
//! owner's USK and must continue the stored version's chain.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use siren_api::storage::{Storage, StoredRoster};
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_proto::keys::{DekPublic, UskPublic};
use siren_proto::message;
use siren_proto::roster::Roster;

/// What happens to a message from someone who is not in the recipient's contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NonContacts {
    /// Deliver it, preceded (once per recipient device and sender) by a `contact_request`
    /// notice.
    #[default]
    Request,
    /// Deliver it like any other.
    Accept,
    /// Refuse it (error 402 to the sender).
    Refuse,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Deliver.
    Deliver,
    /// Deliver, after a `contact_request` notice.
    DeliverWithRequest,
    /// The recipient blocked the sender: drop it silently (the sender is told it was accepted,
    /// so blocking is not revealed).
    Drop,
    /// Refused by the non-contact policy.
    Refuse,
}

/// Most remembered (device, sender) pairs that already got a contact request notice.
const MAX_REQUESTED: usize = 100_000;

/// Rosters, cached.
pub struct Rosters {
    storage: Arc<dyn Storage>,
    policy: Mutex<NonContacts>,
    cache: Mutex<HashMap<Username, Option<Arc<Roster>>>>,
    requested: Mutex<HashSet<(DekPublic, Uid)>>,
    put: tokio::sync::Mutex<()>,
}

impl Rosters {
    /// Rosters over `storage`, with a policy for non-contacts.
    pub fn new(storage: Arc<dyn Storage>, policy: NonContacts) -> Self {
        Rosters {
            storage,
            policy: Mutex::new(policy),
            cache: Mutex::new(HashMap::new()),
            requested: Mutex::new(HashSet::new()),
            put: tokio::sync::Mutex::new(()),
        }
    }

    /// The policy for non-contacts in force.
    pub fn policy(&self) -> NonContacts {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the policy for non-contacts (a reload): it applies to the next message.
    pub fn set_policy(&self, policy: NonContacts) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Drops what is cached of `user`'s roster, so the next read goes to the store (the user was
    /// deleted, the roster with it).
    pub fn forget(&self, user: &Username) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    /// The user's current roster, if any.
    pub async fn get(&self, user: &Username) -> Result<Option<Arc<Roster>>, Error> {
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return Ok(cached.clone());
        }
        let roster = match self.storage.roster(user).await? {
            Some(stored) => Some(Arc::new(
                message::decode_value::<Roster>(&stored.bytes).map_err(|e| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("stored roster of {user} is unreadable: {e}"),
                    )
                })?,
            )),
            None => None,
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.clone(), roster.clone());
        Ok(roster)
    }

    /// Stores a new version: signed by `usk`, owned by `owner`, continuing the stored chain.
    pub async fn put(&self, owner: &Uid, usk: &UskPublic, roster: Roster) -> Result<(), Error> {
        let _guard = self.put.lock().await;
        let user = owner.user();
        let current = self.get(user).await?;
        roster
            .check_successor(owner, usk, current.as_deref())
            .map_err(|e| crate::directory::record_error(&e))?;
        self.storage
            .put_roster(
                user,
                &StoredRoster {
                    version: roster.version,
                    bytes: message::encode_value(&roster),
                },
            )
            .await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.clone(), Some(Arc::new(roster)));
        Ok(())
    }

    /// Whether a message from `from` reaches device `to_dek` of local user `to`.
    pub async fn admit(
        &self,
        to: &Username,
        to_dek: &DekPublic,
        from: &Uid,
    ) -> Result<Admission, Error> {
        let roster = self.get(to).await?;
        if roster.as_ref().is_some_and(|r| r.is_blocked(from)) {
            return Ok(Admission::Drop);
        }
        if roster.as_ref().is_some_and(|r| r.contact(from).is_some()) {
            return Ok(Admission::Deliver);
        }
        Ok(match self.policy() {
            NonContacts::Accept => Admission::Deliver,
            NonContacts::Refuse => Admission::Refuse,
            NonContacts::Request => {
                let mut requested = self.requested.lock().unwrap_or_else(|p| p.into_inner());
                if requested.len() >= MAX_REQUESTED {
                    requested.clear();
                }
                if requested.insert((*to_dek, from.clone())) {
                    Admission::DeliverWithRequest
                } else {
                    Admission::Deliver
                }
            }
        })
    }

    /// Whether an ephemeral signal (PROTOCOL.md §14) from `from` reaches local user `to`: never
    /// from a user `to` blocked; from `to`'s own account, a contact, or anyone when `to` has no
    /// roster; from other non-contacts only under the `accept` policy (a signal never creates a
    /// contact request, and is dropped rather than refused, like everything ephemeral).
    pub async fn admit_signal(&self, to: &Uid, from: &Uid) -> Result<bool, Error> {
        if from == to {
            return Ok(true);
        }
        Ok(match self.get(to.user()).await? {
            None => true,
            Some(r) if r.is_blocked(from) => false,
            Some(r) if r.contact(from).is_some() => true,
            Some(_) => self.policy() == NonContacts::Accept,
        })
    }

    /// Whether `user`'s roster lets `subscriber` see `user`'s presence.
    pub async fn shares_presence_with(
        &self,
        user: &Username,
        subscriber: &Uid,
    ) -> Result<bool, Error> {
        Ok(self
            .get(user)
            .await?
            .and_then(|r| r.contact(subscriber).map(|c| c.presence))
            .unwrap_or(false))
    }

    /// Whether `user` blocked `other`.
    pub async fn blocks(&self, user: &Username, other: &Uid) -> Result<bool, Error> {
        Ok(self.get(user).await?.is_some_and(|r| r.is_blocked(other)))
    }
}
