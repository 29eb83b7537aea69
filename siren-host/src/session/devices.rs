//! The user's own devices (PROTOCOL.md §11): registering and revoking DEKs, lookups (local or
//! proxied to a peer), and the notices a change sends.

use siren_api::hooks::DirectoryEvent;
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_proto::keys::DekPublic;
use siren_proto::message::{Notice, QueueItem, RequestId, ServerMessage};
use siren_proto::records::{DeviceRecord, DeviceRevocation, DirectoryEntry, UserDirectory};

use super::{Flow, Outcome, Session, short};
use crate::shared::Shared;

/// Most `directory_changed` notices one change of a user's devices queues (own devices first,
/// then the devices of the users who looked the user up most recently).
const MAX_NOTICES_PER_CHANGE: usize = 4_096;

impl Session {
    pub(super) async fn register(
        &mut self,
        rid: RequestId,
        user: &Username,
        record: DeviceRecord,
    ) -> Result<Flow, Outcome> {
        if record.uid != self.uid(user) || record.dek != self.dek {
            self.error(
                Some(rid),
                &Error::new(
                    ErrorCode::UnexpectedMessage,
                    "a record must publish this session's DEK for your own UID",
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        }
        match self.append(rid, user, DirectoryEntry::Add(record)).await? {
            Some(dir) => {
                self.usk_registered = true;
                self.save_session().await?;
                if self.approval.take().is_some() {
                    self.shared.approvals.close(&self.dek);
                }
                if dir.head().seq > 1 {
                    self.directory_changed(user, &dir).await;
                }
                tracing::info!(%user, device = %short(&self.dek), "device registered");
                self.shared.directory_event(DirectoryEvent::DeviceAdded {
                    uid: self.uid(user),
                    device: *self.dek.as_bytes(),
                });
                self.ok(rid).await?;
                Ok(Flow::Ready)
            }
            None => Ok(Flow::Continue),
        }
    }

    /// Appends an entry to `user`'s chain, within the user's rate of device changes; the new
    /// directory, or `None` after answering `rid` with the refusal.
    async fn append(
        &mut self,
        rid: RequestId,
        user: &Username,
        entry: DirectoryEntry,
    ) -> Result<Option<std::sync::Arc<UserDirectory>>, Outcome> {
        let changes = &self.shared.directory_changes;
        let refused = match changes.take(user, 1.0) {
            Err(wait) => {
                self.shared.metrics.limit_refused("directory_changes");
                Error::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many device registrations and revocations for this account; retry in {} s",
                        crate::rate::wait_secs(wait)
                    ),
                )
            }
            Ok(()) => match self.shared.directory.append(user, entry).await {
                Ok(dir) => return Ok(Some(dir)),
                Err(e) => {
                    if e.code == ErrorCode::LimitExceeded {
                        self.shared.metrics.limit_refused("directory_entries");
                    }
                    self.shared.directory_changes.give_back(user, 1.0);
                    e
                }
            },
        };
        self.error(Some(rid), &refused).await?;
        Ok(None)
    }

    pub(super) async fn revoke(
        &mut self,
        rid: RequestId,
        user: &Username,
        revocation: DeviceRevocation,
    ) -> Result<Flow, Outcome> {
        if revocation.uid != self.uid(user) {
            self.error(
                Some(rid),
                &Error::new(
                    ErrorCode::UnexpectedMessage,
                    "you can only revoke your own devices",
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        }
        let target = revocation.dek;
        match self
            .append(rid, user, DirectoryEntry::Revoke(revocation))
            .await?
        {
            Some(dir) => self.directory_changed(user, &dir).await,
            None => return Ok(Flow::Continue),
        }
        tracing::info!(%user, device = %short(&target), "device revoked");
        self.shared.directory_event(DirectoryEvent::DeviceRevoked {
            uid: self.uid(user),
            device: *target.as_bytes(),
        });
        if let Err(e) = self.shared.storage.purge(target.as_bytes()).await {
            tracing::warn!(error = %e, "purging a revoked device's queue failed");
        }
        self.shared.queue.usage.forget(&target);
        self.ok(rid).await?;
        if target == self.dek {
            self.usk_registered = false;
            return Ok(Flow::Close(Outcome::Done("own device revoked")));
        }
        self.shared.hub.kick(&target);
        Ok(Flow::Continue)
    }

    pub(super) async fn lookup(
        &mut self,
        rid: RequestId,
        user: &Username,
        uid: &Uid,
    ) -> Result<(), Outcome> {
        if uid.server() != &self.shared.config().server.name {
            // Answered by the other server, beside this session's other requests.
            self.lookup_remote(rid, uid.clone());
            return Ok(());
        }
        match self.shared.directory.get(uid.user()).await {
            Ok(Some(dir)) => {
                if uid.user() != user {
                    self.shared.directory.watch(uid.user(), &self.uid(user));
                }
                self.send(&ServerMessage::Directory {
                    rid,
                    listing: dir.listing(),
                })
                .await
            }
            Ok(None) => {
                self.error(
                    Some(rid),
                    &Error::new(ErrorCode::NotFound, format!("no devices for {uid}")),
                )
                .await
            }
            Err(e) => self.error(Some(rid), &e).await,
        }
    }

    /// Tells the user's other devices, and everyone who looked the user up, that the user's
    /// devices changed; in a cluster the other nodes are told too (they tell those who looked
    /// the user up there).
    pub(super) async fn directory_changed(&self, user: &Username, dir: &UserDirectory) {
        let own: Vec<DekPublic> = dir
            .devices()
            .map(|r| r.dek)
            .filter(|d| *d != self.dek)
            .collect();
        self.shared.hub.directory_changed(user);
        notify(&self.shared, user, dir, own).await;
    }
}

/// Another node changed local user `user`'s devices: tells the users who looked `user` up on
/// this node (that node told the user's own devices).
pub async fn tell_watchers(shared: &Shared, user: &Username) {
    match shared.directory.get(user).await {
        Ok(Some(dir)) => notify(shared, user, &dir, Vec::new()).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(%user, error = %e, "cannot read a changed directory"),
    }
}

/// Queues a `directory_changed` notice for `targets` and the devices of everyone who looked
/// `user` up here.
async fn notify(
    shared: &Shared,
    user: &Username,
    dir: &UserDirectory,
    mut targets: Vec<DekPublic>,
) {
    let uid = Uid::new(user.clone(), shared.config().server.name.clone());
    // Newest watchers first, up to a bound per change (changes are rate-limited per user).
    for watcher in shared.directory.watchers(user) {
        if targets.len() >= MAX_NOTICES_PER_CHANGE {
            tracing::info!(%user, "directory-change notices capped");
            break;
        }
        if let Ok(Some(wdir)) = shared.directory.get(watcher.user()).await {
            targets.extend(wdir.devices().map(|r| r.dek));
        }
    }
    targets.truncate(MAX_NOTICES_PER_CHANGE);
    if targets.is_empty() {
        return;
    }
    let notice = Notice::DirectoryChanged {
        uid,
        head: dir.head(),
    };
    let items = targets
        .into_iter()
        .map(|d| {
            (
                d,
                QueueItem::Notice {
                    notice: notice.clone(),
                },
            )
        })
        .collect();
    if let Err(e) = shared.queue.enqueue_to(items).await {
        tracing::warn!(%user, error = %e, "could not queue directory-change notices");
    }
}
