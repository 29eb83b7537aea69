//! The accounts behind sessions (issue 11, F3): a session lives only as long as the account it
//! logged in to, with the credential it logged in with.
//!
//! * **At login** a session whose login the credential backend decided (a password) remembers
//!   the account's credential stamp ([`stamp_at_login`]); it is stored with the session.
//! * **On resumption** the account must still exist with the same stamp ([`check_resume`]):
//!   otherwise the session is forgotten and the device has to log in again (`welcome` with
//!   `resumed: false`). While the credential backend cannot answer (an LDAP directory down), a
//!   resumption is answered with error 902 and the connection closed, and the session stays
//!   resumable: the server cannot tell whether the account is still valid, so it lets nobody
//!   in, but a directory outage does not log every device out either.
//! * **While live** the accounts of all live sessions are asked again every
//!   `[auth] recheck_interval_secs` ([`watch`]); sessions of an account that is gone or whose
//!   credential changed get error 208 `credentials_changed` and are closed. A backend that does
//!   not answer keeps live sessions (they were checked at login).
//! * **Ending sessions** on purpose is [`end_sessions`]: the stored sessions are forgotten so
//!   none resumes, and the live ones get an error and close. `sirend devices revoke USER DEVICE`
//!   and `sirend sessions kick` (the admin channel, [`crate::control`]) call it with the user, the device and
//!   their own error; the periodic check calls it for a deleted account.
//! * **Deleting an account's data** is [`forget_user`] (`sirend user del`): its sessions, the
//!   queues of its devices, its directory chain and its roster. A user created later under the
//!   same name is someone new, with a new chain.
//!
//! Sessions whose login the backend did not decide (an X.509 certificate) have no stamp and are
//! not checked here; `sirend user del` still forgets them and their devices.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use siren_api::auth::AccountStatus;
use siren_api::storage::{DeviceKey, EntryKind, SessionRecord, Storage};
use siren_api::{Error, ErrorCode, Username};
use siren_proto::keys::DekPublic;

use crate::hub::Hub;
use crate::shared::Shared;

/// The error a live session gets before it is closed because its account changed.
pub fn credentials_changed() -> Error {
    Error::new(
        ErrorCode::CredentialsChanged,
        "this account was deleted or its password changed; log in again",
    )
}

/// Why a session of an account in `status` that logged in with `stamp` may not continue, if
/// it may not.
fn refusal(status: AccountStatus, stamp: u64) -> Option<&'static str> {
    match status {
        AccountStatus::Active { stamp: now } if now == stamp => None,
        AccountStatus::Active { .. } => Some("its password changed"),
        AccountStatus::Gone => Some("the account no longer exists"),
        AccountStatus::Unknowable => Some("the credential backend can no longer check it"),
    }
}

/// The credential stamp a session that just logged in as `user` remembers: the account's, when
/// `checked` (the credential backend decided the login), else none. An account gone already
/// (deleted during the login) fails the login; a backend that cannot answer fails it with 902.
pub async fn stamp_at_login(
    shared: &Shared,
    user: &Username,
    checked: bool,
) -> Result<Option<u64>, Error> {
    if !checked {
        return Ok(None);
    }
    match shared.credentials.account_status(user).await {
        Ok(AccountStatus::Active { stamp }) => Ok(Some(stamp)),
        Ok(AccountStatus::Unknowable) => Ok(None),
        Ok(AccountStatus::Gone) => Err(Error::new(ErrorCode::AuthFailed, "authentication failed")),
        Err(e) => {
            tracing::warn!(%user, error = %e, "cannot read the account after its login");
            Err(unavailable())
        }
    }
}

fn unavailable() -> Error {
    Error::new(
        ErrorCode::Unavailable,
        "the server cannot check this account now; try again later",
    )
}

/// Whether a stored session may resume, as far as its account goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The account is as it was at login (or the login was not the backend's to check).
    Allowed,
    /// The account is gone or its credential changed (the reason, for the log).
    Refused(&'static str),
}

/// Checks the account of a session about to resume. `Err` (902) when the credential backend
/// cannot answer: the caller closes the connection and keeps the session.
pub async fn check_resume(shared: &Shared, session: &SessionRecord) -> Result<Resume, Error> {
    let (Some(user), Some(stamp)) = (&session.user, session.credential_stamp) else {
        return Ok(Resume::Allowed);
    };
    let status = shared.credentials.account_status(user).await.map_err(|e| {
        tracing::warn!(%user, error = %e, "cannot check the account of a resuming session");
        unavailable()
    })?;
    Ok(match refusal(status, stamp) {
        None => Resume::Allowed,
        Some(why) => Resume::Refused(why),
    })
}

/// How many sessions [`end_sessions`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ended {
    /// Stored sessions forgotten (none of them resumes).
    pub stored: usize,
    /// Live sessions closed.
    pub live: usize,
}

/// Ends `user`'s sessions (only those bound to `device`, if given): forgets the stored ones, so
/// none resumes, and, on a running server (`hub`), sends `reason` to the live ones and closes
/// them. For the admin channel (`sirend devices revoke`, `sirend sessions kick`) and for
/// accounts found deleted.
pub async fn end_sessions(
    storage: &dyn Storage,
    hub: Option<&Hub>,
    user: &Username,
    device: Option<&DekPublic>,
    reason: &Error,
) -> Result<Ended, Error> {
    let stored = storage
        .delete_user_sessions(user, device.map(DekPublic::as_bytes))
        .await?;
    let live = hub.map_or(0, |hub| {
        hub.end(
            |dek, who, _| who == user && device.is_none_or(|d| d == dek),
            reason,
        )
    });
    Ok(Ended { stored, live })
}

/// Asks the credential backend about the account of every live session whose login it
/// decided, every `[auth] recheck_interval_secs`, and ends the sessions of accounts that are gone
/// or whose credential changed (error 208). Runs until shutdown.
pub async fn watch(shared: Arc<Shared>) {
    let every = Duration::from_secs(shared.config().auth.recheck_interval_secs);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        recheck(&shared).await;
    }
}

/// One pass of [`watch`].
async fn recheck(shared: &Shared) {
    let accounts: BTreeSet<(Username, u64)> = shared
        .hub
        .accounts()
        .into_iter()
        .filter_map(|(user, stamp)| Some((user, stamp?)))
        .collect();
    for (user, stamp) in accounts {
        let status = match shared.credentials.account_status(&user).await {
            Ok(status) => status,
            Err(e) => {
                // Most likely down for everyone: try again at the next tick.
                tracing::warn!(error = %e, "cannot re-check the accounts of live sessions; they stay open");
                return;
            }
        };
        let Some(why) = refusal(status, stamp) else {
            continue;
        };
        let reason = credentials_changed();
        let ended = if status == AccountStatus::Gone {
            shared.directory.forget(&user);
            match end_sessions(
                shared.storage.as_ref(),
                Some(&shared.hub),
                &user,
                None,
                &reason,
            )
            .await
            {
                Ok(ended) => ended.live,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "cannot forget the sessions of a deleted account");
                    shared.hub.end(|_, who, _| *who == user, &reason)
                }
            }
        } else {
            // Only the sessions of the old credential: those logged in since keep going.
            shared
                .hub
                .end(|_, who, s| *who == user && s == Some(stamp), &reason)
        };
        tracing::info!(%user, sessions = ended, reason = why, "live sessions ended");
    }
}

/// What [`forget_user`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forgotten {
    /// Stored sessions.
    pub sessions: usize,
    /// Devices in the user's chain (their queues were emptied).
    pub devices: usize,
    /// Queued items of those devices.
    pub items: usize,
    /// Whether the user had a roster.
    pub roster: bool,
}

impl Forgotten {
    /// Whether there was anything to forget.
    pub fn is_empty(&self) -> bool {
        *self == Forgotten::default()
    }
}

/// Removes everything the server keeps for `user` besides the account itself: the sessions
/// (none resumes), the queues of every device in the chain, the chain (lookups answer 300, the
/// devices can send nothing and receive nothing) and the roster. For `sirend user del`.
pub async fn forget_user(storage: &dyn Storage, user: &Username) -> Result<Forgotten, Error> {
    let sessions = storage.delete_user_sessions(user, None).await?;
    let devices: BTreeSet<DeviceKey> = storage
        .entries(user)
        .await?
        .into_iter()
        .filter(|e| e.kind == EntryKind::Add)
        .map(|e| e.device)
        .collect();
    let mut items = 0;
    for device in &devices {
        items += storage.purge(device).await?;
    }
    storage.delete_entries(user).await?;
    let roster = storage.delete_roster(user).await?;
    Ok(Forgotten {
        sessions,
        devices: devices.len(),
        items,
        roster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_account_with_the_same_stamp_continues() {
        assert_eq!(refusal(AccountStatus::Active { stamp: 7 }, 7), None);
        assert!(refusal(AccountStatus::Active { stamp: 8 }, 7).is_some());
        assert!(refusal(AccountStatus::Gone, 7).is_some());
        assert!(refusal(AccountStatus::Unknowable, 7).is_some());
    }

    #[tokio::test]
    async fn forget_user_removes_everything_but_other_users() {
        use siren_api::storage::{NewQueueItem, StoredEntry, StoredRoster};
        let storage: Arc<dyn Storage> = Arc::new(siren_storage_memory::storage());
        let storage = storage.as_ref();
        let (alice, bob) = (
            Username::parse("alice").unwrap(),
            Username::parse("bob").unwrap(),
        );
        for (user, device) in [(&alice, 1u8), (&alice, 2), (&bob, 3)] {
            let seq = storage.entries(user).await.unwrap().len() as u64 + 1;
            storage
                .append_entry(
                    user,
                    &StoredEntry {
                        seq,
                        kind: EntryKind::Add,
                        device: [device; 32],
                        bytes: vec![device],
                    },
                )
                .await
                .unwrap();
            storage
                .enqueue(&[NewQueueItem {
                    device: [device; 32],
                    expires: u64::MAX,
                    bytes: vec![device],
                }])
                .await
                .unwrap();
            storage
                .put_session(&SessionRecord {
                    id: [device; 16],
                    device: [device; 32],
                    user: Some(user.clone()),
                    last_seen: 1,
                    credential_stamp: Some(1),
                })
                .await
                .unwrap();
        }
        storage
            .put_roster(
                &alice,
                &StoredRoster {
                    version: 1,
                    bytes: vec![1],
                },
            )
            .await
            .unwrap();
        let forgotten = forget_user(storage, &alice).await.unwrap();
        assert_eq!(
            forgotten,
            Forgotten {
                sessions: 2,
                devices: 2,
                items: 2,
                roster: true
            }
        );
        assert!(storage.entries(&alice).await.unwrap().is_empty());
        assert_eq!(storage.count(&[1; 32]).await.unwrap(), 0);
        assert!(storage.session(&[2; 16]).await.unwrap().is_none());
        assert!(storage.roster(&alice).await.unwrap().is_none());
        // bob keeps everything.
        assert_eq!(storage.entries(&bob).await.unwrap().len(), 1);
        assert_eq!(storage.count(&[3; 32]).await.unwrap(), 1);
        assert!(storage.session(&[3; 16]).await.unwrap().is_some());
        assert!(forget_user(storage, &alice).await.unwrap().is_empty());
    }
}
