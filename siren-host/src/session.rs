//! One client connection: the handshake, then the session's request loop and queue delivery.
//!
//! One task per connection reads frames (cancel-safely, so it can wait on several things at
//! once), answers requests one at a time, delivers queue items and watches the timeouts. A client
//! that floods requests is slowed down by TCP: nothing is read while a request is being handled.
//! Envelopes of consecutive `send`s are committed together while an earlier commit is in flight
//! (group commit, order kept), and each `send` is acknowledged after the commit that holds it.
//! Every error caused by the client's bytes ends in an `error` message or a closed connection,
//! never a panic.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use siren_api::auth::{AuthContext, AuthExchange, AuthStep};
use siren_api::hooks::{DirectoryEvent, FilterDecision, RoutingMeta};
use siren_api::storage::SessionRecord;
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_net::{NetError, Receiver, Sender, read_frame, within, write_frame};
use siren_proto::envelope::Envelope;
use siren_proto::handshake::{self, HandshakeError, Peer, Role, SessionRequest};
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::DekPublic;
use siren_proto::message::{
    self, ClientMessage, DecodeErrorKind, NextStep, Notice, QueueItem, RequestId, ServerMessage,
    Topic,
};
use siren_proto::records::{DeviceRecord, DeviceRevocation, DirectoryEntry, UserDirectory};
use siren_proto::roster::Roster;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hub::{NO_LAG, Registration};
use crate::queue::now;
use crate::roster::Admission;
use crate::server::Shared;

/// Most `send` requests waiting for the next commit; beyond this the session stops reading.
const MAX_BATCHED: usize = 64;
/// Queue items fetched from the store at a time.
const PAGE: usize = 64;

/// Serves one accepted connection to the end. Never panics on the client's input.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, conn: u64) {
    match handshake(&shared, stream, peer).await {
        Ok(Some((dek, request, sender, receiver, hash))) => {
            let mut session = Session {
                shared: shared.clone(),
                peer,
                conn,
                dek,
                id: SessionId::from_bytes([0; 16]),
                user: None,
                usk_registered: false,
                channel_binding: *hash.as_bytes(),
                out: sender,
                inp: receiver,
                exchange: None,
                inflight: BTreeSet::new(),
                cursor: None,
                drained_sent: false,
                last_activity: Instant::now(),
                request,
                batch: Vec::new(),
                batch_rids: Vec::new(),
                commit: None,
                inbox: None,
                counted_ready: false,
                approval: None,
            };
            let outcome = session.run().await;
            session.close(outcome).await;
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
    }
}

type Established = (
    DekPublic,
    SessionRequest,
    Sender,
    Receiver,
    siren_proto::transcript::Digest,
);

/// Runs the responder side of the handshake with a deadline on each step. On a refused hello the
/// client gets a plaintext `error` frame before the connection closes.
async fn handshake(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Established>, NetError> {
    let step = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
    let max = shared.config.limits.max_frame as usize;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let hello = within(step, read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)).await??;
    let received = match handshake::read_hello(&shared.keys, Role::ClientToServer, &hello) {
        Ok(r) => r,
        Err(HandshakeError::WrongRole {
            got: Role::ServerToServer,
            ..
        }) if shared.config.federation.enabled => {
            inbound_link(shared, &hello, rd, wr, peer, step, max).await?;
            return Ok(None);
        }
        Err(e) => {
            let (code, text) = match &e {
                HandshakeError::WrongRole {
                    got: Role::ServerToServer,
                    ..
                } => (
                    ErrorCode::FederationDisabled,
                    "federation is disabled on this server".to_owned(),
                ),
                other => (other.code(), other.to_string()),
            };
            tracing::debug!(%peer, error = %e, "hello refused");
            let _ = write_frame(
                &mut wr,
                &handshake::error_frame(code, &text),
                handshake::MAX_HANDSHAKE_FRAME,
            )
            .await;
            return Ok(None);
        }
    };
    let (waiting, reply) = received.reply(&mut siren_proto::os_rng())?;
    write_frame(&mut wr, &reply, handshake::MAX_HANDSHAKE_FRAME).await?;
    let finish = within(step, read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)).await??;
    let done = match waiting.read_finish(&finish) {
        Ok(done) => done,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "finish refused");
            let _ = write_frame(
                &mut wr,
                &handshake::error_frame(e.code(), &e.to_string()),
                handshake::MAX_HANDSHAKE_FRAME,
            )
            .await;
            return Ok(None);
        }
    };
    let Peer::Device(dek) = done.peer else {
        return Ok(None);
    };
    let (sealer, opener) = done.transport.split();
    Ok(Some((
        dek,
        done.request,
        Sender::new(wr, sealer, max),
        Receiver::new(rd, opener, max),
        done.handshake_hash,
    )))
}

/// The responder side of a peer server's link: the claimed name's key must be its pinned or
/// DNS-published SEK and the federation policy must allow it (inbound), before the reply; then
/// the link is served until it closes.
async fn inbound_link(
    shared: &Arc<Shared>,
    hello: &[u8],
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    addr: SocketAddr,
    step: Duration,
    max: usize,
) -> Result<(), NetError> {
    let refuse = |code: ErrorCode, text: String| handshake::error_frame(code, &text);
    let received = match handshake::read_hello(&shared.keys, Role::ServerToServer, hello) {
        Ok(r) => r,
        Err(e) => {
            let frame = refuse(e.code(), e.to_string());
            let _ = write_frame(&mut wr, &frame, handshake::MAX_HANDSHAKE_FRAME).await;
            return Ok(());
        }
    };
    let Peer::Server { name, sek } = received.peer().clone() else {
        return Ok(());
    };
    let checked = match shared
        .remote_allowed(&name, siren_api::federation::Direction::Inbound)
        .await
    {
        Ok(()) => shared.links.check_peer_key(&name, &sek).await,
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        tracing::warn!(%addr, peer = %name, error = %e, "link refused");
        let frame = refuse(e.code, e.message);
        let _ = write_frame(&mut wr, &frame, handshake::MAX_HANDSHAKE_FRAME).await;
        return Ok(());
    }
    let (waiting, reply) = received.reply(&mut siren_proto::os_rng())?;
    write_frame(&mut wr, &reply, handshake::MAX_HANDSHAKE_FRAME).await?;
    let finish = within(step, read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)).await??;
    let done = match waiting.read_finish(&finish) {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(%addr, peer = %name, error = %e, "link handshake failed");
            return Ok(());
        }
    };
    let (sealer, opener) = done.transport.split();
    crate::links::serve_inbound(
        shared.clone(),
        name,
        Sender::new(wr, sealer, max),
        Receiver::new(rd, opener, max),
    )
    .await;
    Ok(())
}

/// How a session ended.
enum Outcome {
    /// The client left (bye, EOF) or the server is shutting down.
    Done(&'static str),
    /// A newer connection resumed this session, or its DEK was revoked.
    Replaced,
    /// Something went wrong; the text is for the log.
    Failed(String),
}

impl From<NetError> for Outcome {
    fn from(e: NetError) -> Self {
        Outcome::Failed(e.to_string())
    }
}

/// What a handled request asks the loop to do next.
enum Flow {
    Continue,
    /// The device is logged in and registered: start delivering its queue.
    Ready,
    Close(Outcome),
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: u64,
    dek: DekPublic,
    id: SessionId,
    /// Set once logged in.
    user: Option<Username>,
    /// Whether this DEK is a live device of `user`.
    usk_registered: bool,
    channel_binding: [u8; 32],
    out: Sender,
    inp: Receiver,
    /// A login in progress: its request id and mechanism state.
    exchange: Option<(RequestId, Box<dyn AuthExchange>)>,
    /// Delivered, not yet acknowledged.
    inflight: BTreeSet<u64>,
    /// Where the next read of the stored backlog starts (`None`: nothing left to read).
    cursor: Option<u64>,
    drained_sent: bool,
    last_activity: Instant,
    /// What the handshake asked for (open or resume).
    request: SessionRequest,
    /// Queue items of `send`s waiting for the next commit, and those requests' ids.
    batch: Vec<(DekPublic, QueueItem)>,
    batch_rids: Vec<(RequestId, Vec<MessageId>)>,
    /// The commit in flight and the requests it answers.
    commit: Option<Commit>,
    /// Presence events for this session, once it subscribed to something.
    inbox: Option<crate::pubsub::Inbox>,
    /// Whether this session counts as one of its user's ready sessions.
    counted_ready: bool,
    /// A pending approval of this (new) device: the request id and its deadline.
    approval: Option<(RequestId, Instant)>,
}

/// A queue commit running on its own task.
type Commit = (
    tokio::task::JoinHandle<Result<(), Error>>,
    Vec<(RequestId, Vec<MessageId>)>,
);

/// One thing the session loop reacts to.
enum Event {
    Shutdown,
    Kicked,
    Wake,
    Frame(Result<Vec<u8>, NetError>),
    Committed(Result<Result<(), Error>, tokio::task::JoinError>),
    PubSub(Option<Box<ServerMessage>>),
    Timeout,
}

async fn next_pubsub(inbox: &mut Option<crate::pubsub::Inbox>) -> Option<ServerMessage> {
    match inbox {
        Some(i) => i.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The live-delivery side of a ready session.
struct Live {
    lag: Arc<std::sync::atomic::AtomicU64>,
    kick: Arc<tokio::sync::Notify>,
    wake: Arc<tokio::sync::Notify>,
}

async fn notified(n: Option<Arc<tokio::sync::Notify>>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn committed(
    commit: &mut Option<Commit>,
) -> Result<Result<(), Error>, tokio::task::JoinError> {
    match commit {
        Some((handle, _)) => handle.await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn uid(&self, user: &Username) -> Uid {
        Uid::new(user.clone(), self.shared.config.server.name.clone())
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), Outcome> {
        self.send_encoded(&message::encode(msg)).await
    }

    async fn send_encoded(&mut self, plaintext: &[u8]) -> Result<(), Outcome> {
        let limit = Duration::from_secs(self.shared.config.limits.idle_timeout_secs);
        within(limit, self.out.send_encoded(plaintext)).await??;
        Ok(())
    }

    async fn error(&mut self, rid: Option<RequestId>, e: &Error) -> Result<(), Outcome> {
        self.send(&ServerMessage::Error {
            rid,
            code: e.code.as_u16(),
            msg: e.message.clone(),
        })
        .await
    }

    async fn ok(&mut self, rid: RequestId) -> Result<(), Outcome> {
        self.send(&ServerMessage::Ok { rid }).await
    }

    async fn run(&mut self) -> Outcome {
        match self.run_inner().await {
            Ok(o) | Err(o) => o,
        }
    }

    async fn run_inner(&mut self) -> Result<Outcome, Outcome> {
        let limits = self.shared.config.limits.clone();
        let mut shutdown = self.shared.shutdown.clone();
        let auth_deadline = Instant::now() + Duration::from_secs(limits.auth_timeout_secs);
        let idle = Duration::from_secs(limits.idle_timeout_secs);
        let mut live = match self.start().await? {
            Flow::Ready => Some(self.go_live()),
            Flow::Continue => None,
            Flow::Close(o) => return Ok(o),
        };
        loop {
            if let Some(l) = &live {
                self.pump(l).await?;
            }
            let mut deadline = if self.user.is_some() {
                self.last_activity + idle
            } else {
                (self.last_activity + idle).min(auth_deadline)
            };
            if let Some((_, until)) = self.approval {
                deadline = deadline.min(until);
            }
            let kick = live.as_ref().map(|l| l.kick.clone());
            let wake = live.as_ref().map(|l| l.wake.clone());
            let reading = self.batch_rids.len() < MAX_BATCHED;
            let event = tokio::select! {
                _ = shutdown.changed() => Event::Shutdown,
                _ = notified(kick) => Event::Kicked,
                _ = notified(wake) => Event::Wake,
                done = committed(&mut self.commit) => Event::Committed(done),
                ev = next_pubsub(&mut self.inbox) => Event::PubSub(ev.map(Box::new)),
                frame = self.inp.recv_plain(), if reading => Event::Frame(frame),
                _ = tokio::time::sleep_until(deadline) => Event::Timeout,
            };
            match event {
                Event::Shutdown => {
                    // Answer the sends already taken: their envelopes may be committed.
                    while self.commit.is_some() {
                        let done = committed(&mut self.commit).await;
                        self.finish_commit(done).await?;
                    }
                    let _ = self
                        .error(
                            None,
                            &Error::new(
                                ErrorCode::ShuttingDown,
                                "server is shutting down; resume later",
                            ),
                        )
                        .await;
                    return Ok(Outcome::Done("server shutting down"));
                }
                Event::Kicked => return Ok(Outcome::Replaced),
                Event::Wake => {}
                Event::Committed(done) => self.finish_commit(done).await?,
                Event::PubSub(Some(ev)) => self.send(&ev).await?,
                Event::PubSub(None) => self.inbox = None,
                Event::Frame(Err(NetError::Frame(e))) => {
                    let why = format!("bad frame: {e}");
                    let _ = self
                        .error(None, &Error::new(ErrorCode::BadFrame, why.clone()))
                        .await;
                    return Ok(Outcome::Failed(why));
                }
                Event::Frame(Err(NetError::Io(_))) => {
                    return Ok(Outcome::Done("connection closed"));
                }
                Event::Frame(Err(e)) => return Ok(Outcome::Failed(e.to_string())),
                Event::Frame(Ok(plain)) => {
                    self.last_activity = Instant::now();
                    match message::decode::<ClientMessage>(&plain) {
                        Err(e) => {
                            let text = match &e.kind {
                                DecodeErrorKind::UnknownType(t) => {
                                    format!("unknown message type {t:?}")
                                }
                                other => other.to_string(),
                            };
                            self.error(e.rid, &Error::new(e.code(), text)).await?;
                        }
                        Ok(msg) => match self.handle(msg).await? {
                            Flow::Continue => {}
                            Flow::Ready => {
                                if live.is_none() {
                                    live = Some(self.go_live());
                                }
                                self.count_ready();
                            }
                            Flow::Close(o) => return Ok(o),
                        },
                    }
                }
                Event::Timeout
                    if self
                        .approval
                        .is_some_and(|(_, until)| until <= Instant::now()) =>
                {
                    if let Some((rid, _)) = self.approval.take() {
                        self.shared.approvals.close(&self.dek);
                        let e = Error::new(
                            ErrorCode::ApprovalTimeout,
                            "no device of this account approved this one in time",
                        );
                        self.error(Some(rid), &e).await?;
                    }
                }
                Event::Timeout => {
                    let what = if self.user.is_none() {
                        "login"
                    } else {
                        "idle session"
                    };
                    let _ = self
                        .error(
                            None,
                            &Error::new(ErrorCode::Timeout, format!("{what} timed out")),
                        )
                        .await;
                    return Ok(Outcome::Done("timed out"));
                }
            }
        }
    }

    /// Starts committing the waiting envelopes, unless a commit is already in flight.
    fn start_commit(&mut self) {
        if self.commit.is_some() || self.batch_rids.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.batch);
        let rids = std::mem::take(&mut self.batch_rids);
        let shared = self.shared.clone();
        let handle = tokio::spawn(async move { shared.queue.enqueue_to(items).await });
        self.commit = Some((handle, rids));
    }

    /// Answers the requests of a finished commit and starts the next one.
    async fn finish_commit(
        &mut self,
        done: Result<Result<(), Error>, tokio::task::JoinError>,
    ) -> Result<(), Outcome> {
        let Some((_, rids)) = self.commit.take() else {
            return Ok(());
        };
        let failure = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        for (rid, ids) in rids {
            match &failure {
                None => self.send(&ServerMessage::SendAck { rid, ids }).await?,
                Some(why) => {
                    tracing::warn!(error = %why, "enqueue failed");
                    self.error(
                        Some(rid),
                        &Error::new(
                            ErrorCode::Unavailable,
                            "the message store is unavailable; nothing was accepted",
                        ),
                    )
                    .await?;
                }
            }
        }
        self.start_commit();
        Ok(())
    }

    /// Sends `welcome` (resuming if the session id is bound to this DEK) and, for a session that
    /// still has to log in, the mechanisms on offer.
    async fn start(&mut self) -> Result<Flow, Outcome> {
        let mut resumed = None;
        if let SessionRequest::Resume(id) = self.request {
            match self.shared.storage.session(id.as_bytes()).await {
                Ok(Some(rec)) if rec.device == *self.dek.as_bytes() => resumed = Some((id, rec)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session lookup failed"),
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
            Some((id, rec)) => (id, rec.user),
            None => (SessionId::random(&mut siren_proto::os_rng()), None),
        };
        self.id = id;
        self.user = user.clone();
        self.usk_registered = user.is_some();
        self.save_session().await?;
        let welcome = ServerMessage::Welcome {
            sid: id,
            resumed: was_resumed,
            server: self.shared.config.server.name.clone(),
            max_frame: self.shared.config.limits.max_frame,
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

    async fn save_session(&mut self) -> Result<(), Outcome> {
        let rec = SessionRecord {
            id: *self.id.as_bytes(),
            device: *self.dek.as_bytes(),
            user: self.user.clone(),
            last_seen: now(),
        };
        if let Err(e) = self.shared.storage.put_session(&rec).await {
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

    async fn is_registered(&self, user: &Username) -> Result<bool, Outcome> {
        match self.shared.directory.get(user).await {
            Ok(dir) => Ok(dir.is_some_and(|d| d.is_live(&self.dek))),
            Err(e) => Err(Outcome::Failed(e.to_string())),
        }
    }

    fn go_live(&mut self) -> Live {
        let Registration { lag, kick, wake } = self.shared.hub.register(self.dek, self.conn);
        self.count_ready();
        self.cursor = Some(0);
        self.drained_sent = false;
        Live { lag, kick, wake }
    }

    /// Counts this session as one of its user's ready sessions (for presence), once registered.
    fn count_ready(&mut self) {
        if let (Some(user), true, false) = (&self.user, self.usk_registered, self.counted_ready) {
            self.shared.pubsub.session_ready(user);
            self.counted_ready = true;
        }
    }

    fn max_in_flight(&self) -> usize {
        self.shared.config.limits.max_in_flight
    }

    /// Delivers from the stored backlog while there is room in flight.
    async fn pump(&mut self, live: &Live) -> Result<(), Outcome> {
        let lag = live.lag.swap(NO_LAG, Ordering::Relaxed);
        if lag != NO_LAG {
            let from = lag.saturating_sub(1);
            self.cursor = Some(self.cursor.map_or(from, |c| c.min(from)));
        }
        while let Some(after) = self.cursor {
            let room = self.max_in_flight().saturating_sub(self.inflight.len());
            if room == 0 {
                return Ok(());
            }
            let want = room.min(PAGE);
            let items = match self
                .shared
                .storage
                .pending(self.dek.as_bytes(), after, want)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the queue failed");
                    return Err(Outcome::Failed(e.to_string()));
                }
            };
            let frames: Vec<Vec<u8>> = items
                .iter()
                .filter(|item| self.inflight.insert(item.seq))
                .map(|item| message::encode_deliver(item.seq, &item.bytes))
                .collect();
            if !frames.is_empty() {
                let limit = Duration::from_secs(self.shared.config.limits.idle_timeout_secs);
                within(limit, self.out.send_encoded_batch(&frames)).await??;
            }
            if items.len() < want {
                self.cursor = None;
                if !self.drained_sent {
                    self.drained_sent = true;
                    self.send(&ServerMessage::QueueDrained).await?;
                }
            } else {
                self.cursor = items.last().map(|i| i.seq);
            }
        }
        Ok(())
    }

    async fn handle(&mut self, msg: ClientMessage) -> Result<Flow, Outcome> {
        let logged_in = self.user.clone();
        match (msg, logged_in) {
            (ClientMessage::Ping { rid }, _) => {
                self.send(&ServerMessage::Pong { rid }).await?;
            }
            (ClientMessage::Bye, _) => return Ok(Flow::Close(Outcome::Done("bye"))),
            (ClientMessage::AuthStart { rid, mech, data }, None) => {
                return self.auth_start(rid, &mech, &data).await;
            }
            (ClientMessage::AuthStep { rid, data }, None) => {
                return self.auth_step(rid, &data).await;
            }
            (
                ClientMessage::AuthStart { rid, .. } | ClientMessage::AuthStep { rid, .. },
                Some(_),
            ) => {
                self.error(
                    Some(rid),
                    &Error::new(ErrorCode::UnexpectedMessage, "already logged in"),
                )
                .await?;
            }
            (msg, None) => {
                let rid = request_id(&msg);
                self.error(rid, &Error::new(ErrorCode::AuthRequired, "log in first"))
                    .await?;
            }
            (ClientMessage::Register { rid, record }, Some(user)) => {
                return self.register(rid, &user, record).await;
            }
            // A device waiting for approval acknowledges its approval notices too.
            (ClientMessage::Ack { seqs }, Some(_)) => self.ack(&seqs).await?,
            (ClientMessage::Lookup { rid, uid }, Some(user)) => {
                self.lookup(rid, &user, &uid).await?
            }
            (ClientMessage::ApprovalRequest { rid, commit, name }, Some(user)) => {
                self.approval_request(rid, &user, commit, name).await?
            }
            (ClientMessage::ApprovalReveal { rid, to, nonce }, Some(user)) => {
                let ok = !self.usk_registered && self.shared.approvals.is_pending(&self.dek, &user);
                let notice = Notice::ApprovalReveal {
                    from_dek: self.dek,
                    nonce,
                };
                self.relay(rid, &user, ok, to, notice).await?
            }
            (msg, Some(_)) if !self.usk_registered => {
                let rid = request_id(&msg);
                self.error(
                    rid,
                    &Error::new(
                        ErrorCode::ApprovalRequired,
                        "register this device (or have it approved) first",
                    ),
                )
                .await?;
            }
            (ClientMessage::Send { rid, msgs }, Some(user)) => {
                self.send_envelopes(rid, &user, msgs).await?
            }
            (ClientMessage::Revoke { rid, revocation }, Some(user)) => {
                return self.revoke(rid, &user, revocation).await;
            }
            (ClientMessage::RosterGet { rid }, Some(user)) => self.roster_get(rid, &user).await?,
            (ClientMessage::ApprovalChallenge { rid, to, nonce }, Some(user)) => {
                let ok = self.shared.approvals.is_pending(&to, &user);
                let notice = Notice::ApprovalChallenge {
                    from_dek: self.dek,
                    nonce,
                };
                self.relay(rid, &user, ok, to, notice).await?
            }
            (ClientMessage::ApprovalGrant { rid, transfer }, Some(user)) => {
                let to = transfer.to_dek;
                let ok =
                    transfer.from_dek == self.dek && self.shared.approvals.is_pending(&to, &user);
                let notice = Notice::ApprovalGrant { transfer };
                self.relay(rid, &user, ok, to, notice).await?
            }
            (ClientMessage::ApprovalDeny { rid, to }, Some(user)) => {
                let ok = self.shared.approvals.is_pending(&to, &user);
                let notice = Notice::ApprovalDeny { from_dek: self.dek };
                self.relay(rid, &user, ok, to, notice).await?;
                if ok {
                    self.shared.approvals.close(&to);
                }
            }
            (ClientMessage::Subscribe { rid, topics }, Some(user)) => {
                self.subscribe(rid, &user, topics).await?
            }
            (ClientMessage::Unsubscribe { rid, topics }, Some(_)) => {
                for topic in &topics {
                    self.shared.pubsub.unsubscribe(self.conn, topic.publisher());
                }
                self.ok(rid).await?;
            }
            (ClientMessage::Publish { rid, presence }, Some(user)) => {
                self.publish(&self.uid(&user), &presence).await;
                self.ok(rid).await?;
            }
            (ClientMessage::RosterPut { rid, roster }, Some(user)) => {
                self.roster_put(rid, &user, roster).await?
            }
            (msg, Some(_)) => {
                let rid = request_id(&msg);
                self.error(
                    rid,
                    &Error::new(
                        ErrorCode::UnexpectedMessage,
                        "not supported by this server version yet",
                    ),
                )
                .await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn auth_start(
        &mut self,
        rid: RequestId,
        mech: &str,
        data: &[u8],
    ) -> Result<Flow, Outcome> {
        if self
            .shared
            .auth
            .limiter
            .address_blocked(Some(self.peer.ip()))
        {
            self.error(
                Some(rid),
                &Error::new(
                    ErrorCode::RateLimited,
                    "too many failed logins; wait a minute",
                ),
            )
            .await?;
            return Ok(Flow::Continue);
        }
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
            server: self.shared.config.server.name.clone(),
            peer: Some(self.peer.ip()),
            channel_binding: self.channel_binding,
            device_key: *self.dek.as_bytes(),
        };
        self.exchange = Some((rid, mechanism.begin(ctx)));
        self.auth_step(rid, data).await
    }

    async fn auth_step(&mut self, rid: RequestId, data: &[u8]) -> Result<Flow, Outcome> {
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
        let step = match exchange.step(data).await {
            Ok(step) => step,
            Err(e) => {
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
        let limiter = &self.shared.auth.limiter;
        match step {
            AuthStep::Challenge(data) => {
                self.exchange = Some((rid, exchange));
                self.send(&ServerMessage::AuthChallenge { rid, data })
                    .await?;
                Ok(Flow::Continue)
            }
            AuthStep::Failure { attempted } => {
                // Blocked before this attempt: then the answer must not depend on the password.
                let locked = attempted
                    .as_ref()
                    .is_some_and(|u| limiter.account_blocked(u));
                limiter.failed(Some(self.peer.ip()), attempted.as_ref());
                tracing::info!(peer = %self.peer, user = ?attempted.as_ref().map(|u| u.to_string()), "login failed");
                let e = if locked {
                    Error::new(
                        ErrorCode::RateLimited,
                        "too many failed logins; wait a minute",
                    )
                } else {
                    Error::new(ErrorCode::AuthFailed, "authentication failed")
                };
                self.error(Some(rid), &e).await?;
                Ok(Flow::Continue)
            }
            AuthStep::Success(user) => {
                if limiter.account_blocked(&user) {
                    self.error(
                        Some(rid),
                        &Error::new(
                            ErrorCode::RateLimited,
                            "too many failed logins; wait a minute",
                        ),
                    )
                    .await?;
                    return Ok(Flow::Continue);
                }
                let dir = match self.shared.directory.get(&user).await {
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
                self.usk_registered = matches!(next, NextStep::Ready);
                self.user = Some(user.clone());
                self.save_session().await?;
                tracing::info!(peer = %self.peer, %user, "logged in");
                let uid = self.uid(&user);
                self.send(&ServerMessage::AuthSuccess { rid, uid, next })
                    .await?;
                // A device waiting for approval also receives its queue: the approval notices.
                Ok(Flow::Ready)
            }
        }
    }

    async fn register(
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

    async fn revoke(
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

    async fn lookup(&mut self, rid: RequestId, user: &Username, uid: &Uid) -> Result<(), Outcome> {
        if uid.server() != &self.shared.config.server.name {
            let proxied = match self
                .shared
                .remote_allowed(uid.server(), siren_api::federation::Direction::Outbound)
                .await
            {
                Ok(()) => self.shared.links.lookup(uid).await,
                Err(e) => Err(e),
            };
            return match proxied {
                Ok(listing) => self.send(&ServerMessage::Directory { rid, listing }).await,
                Err(e) => self.error(Some(rid), &e).await,
            };
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

    async fn send_envelopes(
        &mut self,
        rid: RequestId,
        user: &Username,
        msgs: Vec<Envelope>,
    ) -> Result<(), Outcome> {
        let me = self.uid(user);
        let own = match self.shared.directory.get(user).await {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                return self
                    .error(
                        Some(rid),
                        &Error::new(ErrorCode::UnknownDevice, "this device is not registered"),
                    )
                    .await;
            }
            Err(e) => return self.error(Some(rid), &e).await,
        };
        let mut ids: Vec<MessageId> = Vec::new();
        let mut items = Vec::with_capacity(msgs.len());
        // Every check that can refuse the `send` comes before anything is remembered about it
        // (the contact-request marks of `admit`).
        for env in &msgs {
            if let Err(e) = self.check_envelope(env, &me, &own).await {
                return self.error(Some(rid), &e).await;
            }
        }
        if let Err(e) = self.filter(&me, &msgs).await {
            return self.error(Some(rid), &e).await;
        }
        for env in msgs {
            if !ids.contains(&env.id) {
                ids.push(env.id);
            }
            if env.to.server() != &self.shared.config.server.name {
                let peer = env.to.server().clone();
                items.push((crate::links::outbox_key(&peer), QueueItem::Message { env }));
                self.shared.links.ensure_worker(&self.shared, &peer);
                continue;
            }
            let admission = match self
                .shared
                .rosters
                .admit(env.to.user(), &env.to_dek, &me)
                .await
            {
                Ok(a) => a,
                Err(e) => return self.error(Some(rid), &e).await,
            };
            match admission {
                Admission::Drop => {}
                Admission::Refuse => {
                    let e = Error::new(
                        ErrorCode::Refused,
                        format!("{} accepts messages only from contacts", env.to),
                    );
                    return self.error(Some(rid), &e).await;
                }
                Admission::DeliverWithRequest => {
                    let notice = Notice::ContactRequest { from: me.clone() };
                    items.push((env.to_dek, QueueItem::Notice { notice }));
                    items.push((env.to_dek, QueueItem::Message { env }));
                }
                Admission::Deliver => items.push((env.to_dek, QueueItem::Message { env })),
            }
        }
        self.batch.extend(items);
        self.batch_rids.push((rid, ids));
        self.start_commit();
        Ok(())
    }

    /// Asks the configured message filters about each recipient of a `send` (routing metadata
    /// only: who, to whom, how many devices, how many bytes, when). A denial refuses the whole
    /// `send` with the filter's reason; a delay refuses it with `rate_limited` and the seconds
    /// to wait, so the client retries (nothing is held in the server's memory).
    async fn filter(&self, me: &Uid, msgs: &[Envelope]) -> Result<(), Error> {
        if self.shared.filters.is_empty() {
            return Ok(());
        }
        let mut per_recipient: Vec<(Uid, u32, u64)> = Vec::new();
        for env in msgs {
            let size = env.ct.len() as u64;
            match per_recipient.iter_mut().find(|(uid, _, _)| uid == &env.to) {
                Some((_, devices, bytes)) => {
                    *devices += 1;
                    *bytes += size;
                }
                None => per_recipient.push((env.to.clone(), 1, size)),
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let metas: Vec<RoutingMeta> = per_recipient
            .into_iter()
            .map(|(recipient, devices, bytes)| RoutingMeta {
                sender: me.clone(),
                recipient,
                recipient_devices: devices,
                payload_size: bytes,
                timestamp: now,
            })
            .collect();
        // Plugin calls block (up to their deadline): off the async executor.
        let filters = self.shared.filters.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            for meta in &metas {
                for filter in &filters {
                    match filter.check(meta) {
                        FilterDecision::Allow => {}
                        FilterDecision::Deny(reason) => {
                            tracing::info!(filter = filter.name(), sender = %meta.sender, recipient = %meta.recipient, %reason, "message refused by a filter");
                            return Err(Error::new(ErrorCode::Refused, format!("refused: {reason}")));
                        }
                        FilterDecision::Delay(secs) => {
                            return Err(Error::new(
                                ErrorCode::RateLimited,
                                format!("too many messages; retry in {secs} s"),
                            ));
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
        match verdict {
            Ok(result) => result,
            Err(e) => Err(Error::new(
                ErrorCode::Internal,
                format!("a message filter task failed: {e}"),
            )),
        }
    }

    /// Checks one envelope of a `send`: the sender is this session, signed by the sender's USK,
    /// addressed to a live device of a local user.
    async fn check_envelope(
        &self,
        env: &Envelope,
        me: &Uid,
        own: &UserDirectory,
    ) -> Result<(), Error> {
        if &env.from != me || env.from_dek != self.dek {
            return Err(Error::new(
                ErrorCode::ForgedSender,
                "the sender fields must name this session's user and DEK",
            ));
        }
        env.verify_sender(own.usk()).map_err(|_| {
            Error::new(
                ErrorCode::BadSignature,
                "the envelope is not signed by your USK",
            )
        })?;
        if env.to.server() != &self.shared.config.server.name {
            // For another server: allowed by the policy, it waits in that server's outbox; the
            // receiving server checks the device and the recipient's roster.
            return self
                .shared
                .remote_allowed(env.to.server(), siren_api::federation::Direction::Outbound)
                .await;
        }
        let dir = self
            .shared
            .directory
            .get(env.to.user())
            .await?
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no devices for {}", env.to)))?;
        if !dir.is_live(&env.to_dek) {
            return Err(Error::new(
                ErrorCode::UnknownDevice,
                format!(
                    "device {} of {} is not registered; look the user up again",
                    short(&env.to_dek),
                    env.to
                ),
            ));
        }
        Ok(())
    }

    async fn ack(&mut self, seqs: &[u64]) -> Result<(), Outcome> {
        for seq in seqs {
            self.inflight.remove(seq);
        }
        if let Err(e) = self.shared.storage.ack(self.dek.as_bytes(), seqs).await {
            tracing::warn!(error = %e, "ack failed");
        }
        Ok(())
    }

    async fn roster_get(&mut self, rid: RequestId, user: &Username) -> Result<(), Outcome> {
        match self.shared.rosters.get(user).await {
            Ok(roster) => {
                let roster = roster.map(|r| (*r).clone());
                self.send(&ServerMessage::Roster { rid, roster }).await
            }
            Err(e) => self.error(Some(rid), &e).await,
        }
    }

    async fn roster_put(
        &mut self,
        rid: RequestId,
        user: &Username,
        roster: Roster,
    ) -> Result<(), Outcome> {
        let result = match self.shared.directory.get(user).await {
            Ok(Some(dir)) => {
                self.shared
                    .rosters
                    .put(&self.uid(user), dir.usk(), roster)
                    .await
            }
            Ok(None) => Err(Error::new(
                ErrorCode::UnknownDevice,
                "no devices registered",
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => self.ok(rid).await,
            Err(e) => self.error(Some(rid), &e).await,
        }
    }

    /// A new device asks the user's existing devices for approval.
    async fn approval_request(
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
        if !self.shared.approvals.open(self.dek, user.clone()) {
            let e = Error::new(
                ErrorCode::RateLimited,
                "too many approvals pending; try later",
            );
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
        let wait = Duration::from_secs(self.shared.config.limits.approval_timeout_secs);
        self.approval = Some((rid, Instant::now() + wait));
        tracing::info!(%user, device = %short(&self.dek), "device waits for approval");
        self.ok(rid).await
    }

    /// Relays an approval message to device `to` of the same user, if `allowed`.
    async fn relay(
        &mut self,
        rid: RequestId,
        user: &Username,
        allowed: bool,
        to: DekPublic,
        notice: Notice,
    ) -> Result<(), Outcome> {
        let target_ok = allowed
            && (self.shared.approvals.is_pending(&to, user)
                || self
                    .shared
                    .directory
                    .get(user)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|d| d.is_live(&to)));
        if !target_ok {
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

    /// Tells the user's other devices, and everyone who looked the user up, that the user's
    /// devices changed.
    async fn directory_changed(&self, user: &Username, dir: &UserDirectory) {
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

    async fn subscribe(
        &mut self,
        rid: RequestId,
        user: &Username,
        topics: Vec<Topic>,
    ) -> Result<(), Outcome> {
        let me = self.uid(user);
        // All or nothing: check every topic first (a peer checks its users' topics itself).
        let mut remote: std::collections::BTreeMap<siren_api::ServerName, Vec<Topic>> =
            Default::default();
        for topic in &topics {
            let uid = topic.publisher();
            let refusal = if uid.server() != &self.shared.config.server.name {
                remote
                    .entry(uid.server().clone())
                    .or_default()
                    .push(topic.clone());
                self.shared
                    .remote_allowed(uid.server(), siren_api::federation::Direction::Outbound)
                    .await
                    .err()
            } else {
                match self
                    .shared
                    .rosters
                    .shares_presence_with(uid.user(), &me)
                    .await
                {
                    Ok(true) => None,
                    Ok(false) => Some(Error::new(
                        ErrorCode::Refused,
                        format!("{uid} does not share presence with you"),
                    )),
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = refusal {
                return self.error(Some(rid), &e).await;
            }
        }
        for (peer, peer_topics) in remote {
            if let Err(e) = self.shared.links.subscribe(&peer, &me, peer_topics).await {
                return self.error(Some(rid), &e).await;
            }
        }
        for topic in &topics {
            let uid = topic.publisher();
            if let Some(inbox) = self.shared.pubsub.subscribe(self.conn, &me, uid) {
                self.inbox = Some(inbox);
            }
        }
        self.ok(rid).await
    }

    /// Sends `presence` of `me` to the sessions subscribed right now that may see it.
    async fn publish(&self, me: &Uid, presence: &siren_proto::message::Presence) {
        publish_presence(&self.shared, me, presence).await;
    }

    async fn close(&mut self, outcome: Outcome) {
        self.shared.hub.unregister(&self.dek, self.conn);
        if self.approval.take().is_some() {
            self.shared.approvals.close(&self.dek);
        }
        let last =
            self.shared
                .pubsub
                .session_closed(self.conn, self.user.as_ref(), self.counted_ready);
        if let (true, Some(user)) = (last, &self.user) {
            let me = self.uid(user);
            publish_presence(&self.shared, &me, &crate::pubsub::PubSub::offline()).await;
        }
        if self.user.is_some() {
            let _ = self.save_session().await;
        }
        match outcome {
            Outcome::Done(why) => {
                tracing::info!(peer = %self.peer, session = ?self.id, why, "session closed")
            }
            Outcome::Replaced => {
                tracing::info!(peer = %self.peer, session = ?self.id, "session replaced")
            }
            Outcome::Failed(why) => {
                tracing::info!(peer = %self.peer, session = ?self.id, %why, "session ended")
            }
        }
    }
}

/// Fans a presence update out to the current subscribers that the publisher's roster allows and
/// that have not blocked the publisher.
async fn publish_presence(shared: &Shared, me: &Uid, presence: &siren_proto::message::Presence) {
    for (subscriber, tx) in shared.pubsub.subscribers(me) {
        let allowed = shared
            .rosters
            .shares_presence_with(me.user(), &subscriber)
            .await
            .unwrap_or(false);
        // A subscriber of another server: its server applies its blocking.
        let blocked = subscriber.server() == &shared.config.server.name
            && shared
                .rosters
                .blocks(subscriber.user(), me)
                .await
                .unwrap_or(true);
        if allowed && !blocked {
            crate::pubsub::PubSub::deliver(&tx, me, presence);
        }
    }
}

/// The request id of any request.
fn request_id(msg: &ClientMessage) -> Option<RequestId> {
    use ClientMessage as C;
    match msg {
        C::AuthStart { rid, .. }
        | C::AuthStep { rid, .. }
        | C::Register { rid, .. }
        | C::Revoke { rid, .. }
        | C::Lookup { rid, .. }
        | C::Send { rid, .. }
        | C::Subscribe { rid, .. }
        | C::Unsubscribe { rid, .. }
        | C::Publish { rid, .. }
        | C::RosterGet { rid }
        | C::RosterPut { rid, .. }
        | C::ApprovalRequest { rid, .. }
        | C::ApprovalChallenge { rid, .. }
        | C::ApprovalReveal { rid, .. }
        | C::ApprovalGrant { rid, .. }
        | C::ApprovalDeny { rid, .. }
        | C::Ping { rid } => Some(*rid),
        _ => None,
    }
}

/// A short, log-safe form of a device key.
fn short(dek: &DekPublic) -> String {
    dek.to_base64()[..8].to_owned()
}
