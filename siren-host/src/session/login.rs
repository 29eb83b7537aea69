//! Opening a session (new or resumed) and logging in (PROTOCOL.md §9).

use siren_api::auth::{AuthContext, AuthStep};
use siren_api::storage::SessionRecord;
use siren_api::{Error, ErrorCode, Username};
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::SessionId;
use siren_proto::message::{NextStep, RequestId, ServerMessage};

use super::{Flow, Outcome, Session};
use crate::accounts::{self, Resume};
use crate::admission::AddrKey;
use crate::auth::limits::Refused;
use crate::queue::now;

/// How stale a session's stored `last_seen` may be before a resumption or a disconnection
/// writes it again (at most a tenth of `session_ttl_secs`).
const LAST_SEEN_GRANULARITY_SECS: u64 = 3600;

impl Session {
    /// Sends `welcome` (resuming if the session id is bound to this DEK) and, for a session that
    /// still has to log in, the mechanisms on offer.
    pub(super) async fn start(&mut self) -> Result<Flow, Outcome> {
        let mut resumed = None;
        if let SessionRequest::Resume(id) = self.request {
            match self.shared.storage.session(id.as_bytes()).await {
                Ok(Some(rec)) if rec.device == *self.dek.as_bytes() => resumed = Some((id, rec)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session lookup failed"),
            }
        }
        // Only while its account is as it was at login (PROTOCOL.md §9.1). A backend that
        // cannot answer now: error 902 instead of `welcome`, and the session stays resumable.
        if let Some((id, rec)) = &resumed {
            match accounts::check_resume(&self.shared, rec).await {
                Ok(Resume::Allowed) => {}
                Ok(Resume::Refused(why)) => {
                    tracing::info!(peer = %self.peer, session = ?id, reason = why, "resumption refused: the account changed");
                    if let Err(e) = self.shared.storage.delete_session(id.as_bytes()).await {
                        tracing::warn!(error = %e, "cannot forget a refused session");
                    }
                    resumed = None;
                }
                Err(e) => {
                    let _ = self.error(None, &e).await;
                    return Ok(Flow::Close(Outcome::Failed(e.message)));
                }
            }
        }
        // Only a logged-in session whose DEK is still a live device resumes; anything else
        // (never logged in, device revoked) starts over with a login.
        if let Some((_, rec)) = &resumed {
            let live = match &rec.user {
                Some(u) => self.is_registered(u).await?,
                None => false,
            };
            if !live {
                resumed = None;
            }
        }
        let was_resumed = resumed.is_some();
        let (id, user) = match resumed {
            Some((id, rec)) => {
                self.credential_stamp = rec.credential_stamp;
                self.last_seen_stored = rec.last_seen;
                (id, rec.user)
            }
            None => (SessionId::random(&mut siren_proto::os_rng()), None),
        };
        self.id = id;
        self.user = user.clone();
        self.usk_registered = user.is_some();
        // A session is stored only once logged in with a registered DEK: an anonymous handshake
        // costs no write.
        if user.is_some() {
            self.ticket.logged_in();
            if !self.last_seen_fresh() {
                self.save_session().await?;
            }
        }
        let welcome = ServerMessage::Welcome {
            sid: id,
            resumed: was_resumed,
            server: self.shared.config().server.name.clone(),
            max_frame: self.shared.config().limits.max_frame,
            uid: user.as_ref().map(|u| self.uid(u)),
        };
        self.send(&welcome).await?;
        tracing::info!(peer = %self.peer, session = ?self.id, resumed = was_resumed, "session opened");
        if user.is_some() {
            return Ok(Flow::Ready);
        }
        let mechs = self.shared.auth.names();
        self.send(&ServerMessage::AuthMechanisms { mechs }).await?;
        Ok(Flow::Continue)
    }

    /// Whether the stored record's `last_seen` is recent enough not to be written again: a
    /// session's record changes only in `last_seen`, which ages it out after
    /// `session_ttl_secs` (days), so it is rewritten (a synced write) at most once per
    /// [`LAST_SEEN_GRANULARITY_SECS`], not on every resumption and disconnection.
    pub(super) fn last_seen_fresh(&self) -> bool {
        let ttl = self.shared.config().limits.session_ttl_secs;
        let granularity = LAST_SEEN_GRANULARITY_SECS.min(ttl / 10);
        self.last_seen_stored.saturating_add(granularity) > now()
    }

    pub(super) async fn save_session(&mut self) -> Result<(), Outcome> {
        let rec = SessionRecord {
            id: *self.id.as_bytes(),
            device: *self.dek.as_bytes(),
            user: self.user.clone(),
            last_seen: now(),
            credential_stamp: self.credential_stamp,
        };
        let stored = self.shared.storage.put_session(&rec).await;
        if stored.is_ok() {
            self.last_seen_stored = rec.last_seen;
        }
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot store session");
            let _ = self
                .error(
                    None,
                    &Error::new(ErrorCode::Unavailable, "storage unavailable"),
                )
                .await;
            return Err(Outcome::Failed(e.to_string()));
        }
        Ok(())
    }

    pub(super) async fn is_registered(&self, user: &Username) -> Result<bool, Outcome> {
        match self.shared.directory.fresh(user).await {
            Ok(dir) => Ok(dir.is_some_and(|d| d.is_live(&self.dek))),
            Err(e) => Err(Outcome::Failed(e.to_string())),
        }
    }

    pub(super) async fn auth_start(
        &mut self,
        rid: RequestId,
        mech: &str,
        data: &[u8],
    ) -> Result<Flow, Outcome> {
        let Some(mechanism) = self.shared.auth.mechanism(mech).cloned() else {
            self.error(
                Some(rid),
                &Error::new(
                    ErrorCode::UnknownMechanism,
                    format!("mechanism {mech:?} is not offered"),
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        };
        let ctx = AuthContext {
            server: self.shared.config().server.name.clone(),
            peer: Some(self.peer.ip()),
            channel_binding: self.channel_binding,
            device_key: *self.dek.as_bytes(),
        };
        self.mechanism = mech.to_owned();
        self.exchange = Some((rid, mechanism.begin(ctx)));
        self.auth_step(rid, data).await
    }

    pub(super) async fn auth_step(&mut self, rid: RequestId, data: &[u8]) -> Result<Flow, Outcome> {
        let Some((expected, mut exchange)) = self.exchange.take() else {
            self.error(
                Some(rid),
                &Error::new(ErrorCode::UnexpectedMessage, "no login in progress"),
            )
            .await?;
            return Ok(Flow::Continue);
        };
        if expected != rid {
            self.exchange = Some((expected, exchange));
            self.error(
                Some(rid),
                &Error::new(
                    ErrorCode::UnexpectedMessage,
                    "wrong request id for this login",
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        }
        let shared = self.shared.clone();
        let limits = &shared.auth.limits;
        let addr = Some(AddrKey::of(self.peer.ip()));
        // A step with credentials is counted, and given a hashing permit, before it is checked;
        // an empty step only asks for a challenge (PLAIN without an initial response).
        let attempt = if data.is_empty() {
            None
        } else {
            match limits.begin(addr) {
                Ok(attempt) => Some(attempt),
                Err(refused) => {
                    self.shared.metrics.limit_refused(match refused {
                        Refused::Busy => "login_concurrency",
                        Refused::Address => "login_failures",
                    });
                    // The exchange is dropped: the client starts again with `auth_start`.
                    let e = match refused {
                        Refused::Busy => Error::new(
                            ErrorCode::LoginBusy,
                            "too many logins are being checked right now; retry in a moment",
                        ),
                        Refused::Address => Error::new(
                            ErrorCode::RateLimited,
                            "too many failed logins from this address; wait a minute",
                        ),
                    };
                    self.error(Some(rid), &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        };
        let step = exchange.step(data).await;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                if let Some(a) = attempt {
                    limits.abandoned(a);
                }
                tracing::warn!(peer = %self.peer, error = %e, "authentication backend failed");
                self.error(
                    Some(rid),
                    &Error::new(
                        ErrorCode::Unavailable,
                        "authentication is unavailable; try again later",
                    ),
                )
                .await?;
                return Ok(Flow::Continue);
            }
        };
        let rate_limited = || {
            Error::new(
                ErrorCode::RateLimited,
                "too many failed logins; wait a minute",
            )
        };
        match step {
            AuthStep::Challenge(data) => {
                if let Some(a) = attempt {
                    limits.abandoned(a);
                }
                self.exchange = Some((rid, exchange));
                self.send(&ServerMessage::AuthChallenge { rid, data })
                    .await?;
                Ok(Flow::Continue)
            }
            AuthStep::Failure { attempted } => {
                // Blocked before this attempt: then the answer must not depend on the password.
                let locked = attempted
                    .as_ref()
                    .is_some_and(|u| limits.account_blocked(addr, u));
                if let (Some(a), Some(user)) = (attempt, attempted.as_ref())
                    && limits.failed(a, Some(user))
                {
                    self.shared.hub.login_failed(user);
                }
                tracing::info!(peer = %self.peer, user = ?attempted.as_ref().map(|u| u.to_string()), "login failed");
                let result = if locked {
                    self.shared.metrics.limit_refused("login_failures");
                    "rate_limited"
                } else {
                    "failure"
                };
                self.shared.metrics.login(&self.mechanism, result);
                let e = if locked {
                    rate_limited()
                } else {
                    Error::new(ErrorCode::AuthFailed, "authentication failed")
                };
                self.error(Some(rid), &e).await?;
                Ok(Flow::Continue)
            }
            AuthStep::Success(user) => {
                if limits.account_blocked(addr, &user) {
                    // Counted like a failure: the right password here is indistinguishable.
                    if let Some(a) = attempt
                        && limits.failed(a, Some(&user))
                    {
                        self.shared.hub.login_failed(&user);
                    }
                    self.shared.metrics.login(&self.mechanism, "rate_limited");
                    self.shared.metrics.limit_refused("login_failures");
                    self.error(Some(rid), &rate_limited()).await?;
                    return Ok(Flow::Continue);
                }
                if let Some(a) = attempt {
                    limits.succeeded(a, &user);
                }
                let dir = match self.shared.directory.fresh(&user).await {
                    Ok(dir) => dir,
                    Err(e) => {
                        self.error(Some(rid), &e).await?;
                        return Ok(Flow::Continue);
                    }
                };
                let next = match &dir {
                    None => NextStep::CreateUser,
                    Some(d) if d.is_live(&self.dek) => NextStep::Ready,
                    Some(d) => NextStep::AwaitApproval {
                        listing: d.listing(),
                    },
                };
                let checked = exchange.checked_by_credentials();
                self.credential_stamp =
                    match accounts::stamp_at_login(&self.shared, &user, checked).await {
                        Ok(stamp) => stamp,
                        Err(e) => {
                            self.error(Some(rid), &e).await?;
                            return Ok(Flow::Continue);
                        }
                    };
                self.usk_registered = matches!(next, NextStep::Ready);
                self.user = Some(user.clone());
                self.ticket.logged_in();
                // Stored for resumption only once the DEK is a registered device: a device that
                // still has to register (or be approved) logs in again if it reconnects.
                if self.usk_registered {
                    self.save_session().await?;
                }
                tracing::info!(peer = %self.peer, %user, "logged in");
                self.shared.metrics.login(&self.mechanism, "success");
                let uid = self.uid(&user);
                self.send(&ServerMessage::AuthSuccess { rid, uid, next })
                    .await?;
                // A device waiting for approval also receives its queue: the approval notices.
                Ok(Flow::Ready)
            }
        }
    }
}
