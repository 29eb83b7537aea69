//! Adding a device (PROTOCOL.md §16): a new device's request, and relaying the approval
//! exchange between devices of the same user while an approval is pending.

use std::time::Duration;

use siren_api::{Error, ErrorCode, Username};
use siren_proto::keys::DekPublic;
use siren_proto::message::{Notice, QueueItem, RequestId};
use tokio::time::Instant;

use super::{Outcome, Session, short};
use crate::approvals::Full;

impl Session {
    /// A new device asks the user's existing devices for approval.
    pub(super) async fn approval_request(
        &mut self,
        rid: RequestId,
        user: &Username,
        commit: siren_proto::transcript::Digest,
        name: Option<String>,
    ) -> Result<(), Outcome> {
        if self.usk_registered {
            let e = Error::new(
                ErrorCode::UnexpectedMessage,
                "this device is already registered",
            );
            return self.error(Some(rid), &e).await;
        }
        let devices: Vec<DekPublic> = match self.shared.directory.get(user).await {
            Ok(Some(dir)) => dir.devices().map(|r| r.dek).collect(),
            Ok(None) => Vec::new(),
            Err(e) => return self.error(Some(rid), &e).await,
        };
        if devices.is_empty() {
            let e = Error::new(
                ErrorCode::NotFound,
                "the account has no device that could approve",
            );
            return self.error(Some(rid), &e).await;
        }
        let addr = Some(crate::admission::AddrKey::of(self.peer.ip()));
        if let Err(full) = self.shared.approvals.open(self.dek, user.clone(), addr) {
            self.shared.metrics.limit_refused("pending_approvals");
            let why = match full {
                Full::Account => "too many new devices of this account are waiting for approval",
                Full::Address => "too many new devices from this address are waiting for approval",
                Full::Server => "too many new devices are waiting for approval on this server",
            };
            let e = Error::new(ErrorCode::RateLimited, format!("{why}; try later"));
            return self.error(Some(rid), &e).await;
        }
        let items = devices
            .into_iter()
            .map(|d| {
                let notice = Notice::ApprovalRequest {
                    new_dek: self.dek,
                    commit,
                    name: name.clone(),
                };
                (d, QueueItem::Notice { notice })
            })
            .collect();
        if let Err(e) = self.shared.queue.enqueue_to(items).await {
            self.shared.approvals.close(&self.dek);
            return self.error(Some(rid), &e).await;
        }
        let wait = Duration::from_secs(self.shared.config().limits.approval_timeout_secs);
        self.approval = Some((rid, Instant::now() + wait));
        tracing::info!(%user, device = %short(&self.dek), "device waits for approval");
        self.ok(rid).await
    }

    /// Whether new device `to` waits for approval by a device of `user`: on this node or, in a
    /// cluster, on another (asked over NATS). With `close`, the approval also ends (a denial).
    pub(super) async fn pending_anywhere(
        &self,
        to: &DekPublic,
        user: &Username,
        close: bool,
    ) -> bool {
        if self.shared.approvals.is_pending(to, user) {
            if close {
                self.shared.approvals.close(to);
            }
            return true;
        }
        match self.shared.cluster.get() {
            Some(cluster) => cluster.approval_elsewhere(*to, user, close).await,
            None => false,
        }
    }

    /// Relays an approval message to device `to` of the same user, if `allowed` (the caller
    /// checked that `to` may receive it).
    pub(super) async fn relay(
        &mut self,
        rid: RequestId,
        allowed: bool,
        to: DekPublic,
        notice: Notice,
    ) -> Result<(), Outcome> {
        if !allowed {
            let e = Error::new(
                ErrorCode::UnexpectedMessage,
                "no approval of that device is pending for this account",
            );
            return self.error(Some(rid), &e).await;
        }
        match self
            .shared
            .queue
            .enqueue_to(vec![(to, QueueItem::Notice { notice })])
            .await
        {
            Ok(()) => self.ok(rid).await,
            Err(e) => self.error(Some(rid), &e).await,
        }
    }
}
