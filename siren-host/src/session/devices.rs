//! The user's own devices (PROTOCOL.md §11): registering and revoking DEKs, lookups (local or
//! proxied to a peer), and the notices a change sends.

use siren_api::hooks::DirectoryEvent;
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_proto::keys::DekPublic;
use siren_proto::message::{Notice, QueueItem, RequestId, ServerMessage};
use siren_proto::records::{DeviceRecord, DeviceRevocation, DirectoryEntry, UserDirectory};

use super::{Flow, Outcome, Session, short};

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
        match self
            .shared
            .directory
            .append(user, DirectoryEntry::Add(record))
            .await
        {
            Ok(dir) => {
                self.usk_registered = true;
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
            Err(e) => {
                self.error(Some(rid), &e).await?;
                Ok(Flow::Continue)
            }
        }
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
            .shared
            .directory
            .append(user, DirectoryEntry::Revoke(revocation))
            .await
        {
            Ok(dir) => self.directory_changed(user, &dir).await,
            Err(e) => {
                self.error(Some(rid), &e).await?;
                return Ok(Flow::Continue);
            }
        }
        tracing::info!(%user, device = %short(&target), "device revoked");
        self.shared.directory_event(DirectoryEvent::DeviceRevoked {
            uid: self.uid(user),
            device: *target.as_bytes(),
        });
        if let Err(e) = self.shared.storage.purge(target.as_bytes()).await {
            tracing::warn!(error = %e, "purging a revoked device's queue failed");
        }
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
        if uid.server() != &self.shared.config.server.name {
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
    /// devices changed.
    pub(super) async fn directory_changed(&self, user: &Username, dir: &UserDirectory) {
        let uid = self.uid(user);
        let mut targets: Vec<DekPublic> = dir
            .devices()
            .map(|r| r.dek)
            .filter(|d| *d != self.dek)
            .collect();
        for watcher in self.shared.directory.watchers(user) {
            if let Ok(Some(wdir)) = self.shared.directory.get(watcher.user()).await {
                targets.extend(wdir.devices().map(|r| r.dek));
            }
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
        if let Err(e) = self.shared.queue.enqueue_to(items).await {
            tracing::warn!(%user, error = %e, "could not queue directory-change notices");
        }
    }
}
