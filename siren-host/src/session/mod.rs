//! One client connection: the handshake, then the session's request loop and queue delivery.
//!
//! One task per connection reads frames (cancel-safely, so it can wait on several things at
//! once), answers requests one at a time, delivers queue items and watches the timeouts. A client
//! that floods requests is slowed down by TCP: nothing is read while a request is being handled.
//! Envelopes of consecutive `send`s are committed together while an earlier commit is in flight
//! (group commit, order kept); a commit starts once the one before has numbered its items, so
//! several may be in flight ([`delivery::MAX_COMMITS`]), and each `send` is acknowledged after
//! the commit that holds it, in order.
//! Lookups another server answers run beside the loop ([`remote`]), so a slow or stuck peer never
//! holds up the session's other requests. Every error caused by the client's bytes ends in an `error` message or a closed connection,
//! never a panic.

//! The request handling is split by capability, each module adding its part of `impl Session`
//! (the shape of Prosody's modules): [`handshake`] (the responder side), [`login`] (welcome,
//! resumption, mechanisms), [`devices`] (register, revoke, lookup), [`delivery`] (the queue to the
//! device, `send` from it), [`roster`], [`approvals`], [`presence`], [`signals`] (ephemeral
//! envelopes to live sessions) and [`remote`]. This file keeps the
//! session core: the state, the event loop and the dispatch of requests.

mod approvals;
mod connection;
mod delivery;
mod devices;
mod handshake;
mod login;
mod presence;

pub(crate) use devices::tell_watchers;
pub(crate) use presence::fan_out_presence;
mod remote;
mod roster;
mod signals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use siren_api::auth::AuthExchange;
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_net::{NetError, Receiver, Sender, within};
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::DekPublic;
use siren_proto::message::{
    self, ClientMessage, DecodeErrorKind, Notice, QueueItem, RequestId, ServerMessage,
};
use tokio::time::Instant;

use crate::admission::Ticket;
use crate::hub::{Mailbox, NO_LAG};
use crate::shared::Shared;

pub use connection::{Connection, Transport};

/// Serves one accepted connection to the end. Never panics on the client's input.
pub async fn serve(
    shared: Arc<Shared>,
    connection: Connection,
    peer: SocketAddr,
    conn: u64,
    mut ticket: Ticket,
) {
    let transport = connection.transport;
    // Boxed, as the session's close below: the handshake's state is freed when it is done
    // instead of sizing the task of every idle session. Matched in a `let` of its own: a
    // scrutinee's temporaries live to the end of its `match`, and the session's whole life
    // would keep room for the handshake's result.
    let mut session = match Box::pin(handshake::handshake(&shared, connection, peer, &mut ticket))
        .await
    {
        Ok(Some((dek, request, sender, receiver, hash))) => Session {
            shared: shared.clone(),
            peer,
            transport,
            conn,
            dek,
            id: SessionId::from_bytes([0; 16]),
            user: None,
            credential_stamp: None,
            last_seen_stored: 0,
            usk_registered: false,
            channel_binding: *hash.as_bytes(),
            out: sender,
            inp: receiver,
            exchange: None,
            mechanism: String::new(),
            inflight: BTreeMap::new(),
            early: delivery::Early::default(),
            cursor: None,
            drained_sent: false,
            last_activity: Instant::now(),
            request,
            batch: Vec::new(),
            batch_rids: Vec::new(),
            batch_reserved: Vec::new(),
            commits: std::collections::VecDeque::new(),
            numbering: None,
            inbox: None,
            signal_rate: signals::session_rate(&shared.config().limits),
            counted_ready: false,
            approval: None,
            remote: remote::Remote::default(),
            ticket,
        },
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%peer, transport = transport.as_str(), error = %e, "handshake failed");
            return;
        }
    };
    let outcome = session.run().await;
    Box::pin(session.close(outcome)).await;
}

/// How a session ended.
enum Outcome {
    /// The client left (bye, EOF) or the server is shutting down.
    Done(&'static str),
    /// A newer connection resumed this session, or its DEK was revoked.
    Replaced,
    /// The server ended the session (its account was deleted or its password changed): the
    /// client was told why, and the session is not kept resumable.
    Ended(String),
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
    /// What the connection came over (for the log).
    transport: Transport,
    conn: u64,
    dek: DekPublic,
    id: SessionId,
    /// Set once logged in.
    user: Option<Username>,
    /// The account's credential stamp at login, when the credential backend decided the login
    /// (see [`crate::accounts`]).
    credential_stamp: Option<u64>,
    /// The `last_seen` of the session's stored record (0: none stored by this session).
    last_seen_stored: u64,
    /// Whether this DEK is a live device of `user`.
    usk_registered: bool,
    channel_binding: [u8; 32],
    out: Sender,
    inp: Receiver,
    /// A login in progress: its request id and mechanism state.
    exchange: Option<(RequestId, Box<dyn AuthExchange>)>,
    /// The mechanism of the login in progress (one the server offers), for metrics.
    mechanism: String,
    /// Delivered, not yet acknowledged: sequence number → stored size (for the quota).
    inflight: BTreeMap<u64, u64>,
    /// What the online fast path delivered before it was durable (see [`delivery`]).
    early: delivery::Early,
    /// Where the next read of the stored backlog starts (`None`: nothing left to read).
    cursor: Option<u64>,
    drained_sent: bool,
    last_activity: Instant,
    /// What the handshake asked for (open or resume).
    request: SessionRequest,
    /// Queue items of `send`s waiting for the next commit, and those requests' ids.
    batch: Vec<(DekPublic, QueueItem)>,
    batch_rids: Vec<(RequestId, Vec<MessageId>)>,
    /// Quota reserved for the batch's messages (given back if the commit fails).
    batch_reserved: Vec<(DekPublic, u64)>,
    /// The commits in flight, oldest first, and the requests each answers (answered in this
    /// order).
    commits: std::collections::VecDeque<Commit>,
    /// Told when the newest commit's items are numbered (the next commit waits for that).
    numbering: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Presence events for this session, once it subscribed to something.
    inbox: Option<crate::pubsub::Inbox>,
    /// This session's budget of signal envelopes (one bucket, key `()`).
    signal_rate: crate::rate::Buckets<()>,
    /// Whether this session counts as one of its user's ready sessions.
    counted_ready: bool,
    /// A pending approval of this (new) device: the request id and its deadline.
    approval: Option<(RequestId, Instant)>,
    /// Requests another server answers, running beside the loop.
    remote: remote::Remote,
    /// This connection's place under the limits on anonymous connections.
    ticket: Ticket,
}

/// A queue commit running on its own task.
type Commit = (
    tokio::task::JoinHandle<Result<(), Error>>,
    Vec<(RequestId, Vec<MessageId>)>,
);

/// One thing the session loop reacts to.
enum Event {
    Shutdown,
    /// Something is in the live session's mailbox (or was: a wake-up may find it handled).
    Mail,
    Frame(Result<Vec<u8>, NetError>),
    Committed(Result<Result<(), Error>, tokio::task::JoinError>),
    Numbered,
    PubSub(Option<Box<ServerMessage>>),
    Remote(Option<Box<ServerMessage>>),
    Timeout,
}

async fn next_pubsub(inbox: &mut Option<crate::pubsub::Inbox>) -> Option<Box<ServerMessage>> {
    match inbox {
        Some(i) => i.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Something is in the mailbox of a live session (never, before it is live).
async fn mail(mailbox: Option<&Mailbox>) {
    match mailbox {
        Some(m) => m.changed().await,
        None => std::future::pending().await,
    }
}

/// The oldest commit in flight, once it finished.
async fn committed(
    commits: &mut std::collections::VecDeque<Commit>,
) -> Result<Result<(), Error>, tokio::task::JoinError> {
    match commits.front_mut() {
        Some((handle, _)) => handle.await,
        None => std::future::pending().await,
    }
}

/// The newest commit numbered its items (or failed before).
async fn numbered(numbering: &mut Option<tokio::sync::oneshot::Receiver<()>>) {
    match numbering {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

impl Session {
    fn uid(&self, user: &Username) -> Uid {
        Uid::new(user.clone(), self.shared.config().server.name.clone())
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), Outcome> {
        self.send_encoded(&message::encode(msg)).await
    }

    async fn send_encoded(&mut self, plaintext: &[u8]) -> Result<(), Outcome> {
        let limit = Duration::from_secs(self.shared.config().limits.idle_timeout_secs);
        within(limit, self.out.send_encoded(plaintext)).await??;
        Ok(())
    }

    /// Several encoded messages in one write, within the same deadline as one.
    async fn send_encoded_batch(&mut self, plaintexts: &[Vec<u8>]) -> Result<(), Outcome> {
        let limit = Duration::from_secs(self.shared.config().limits.idle_timeout_secs);
        within(limit, self.out.send_encoded_batch(plaintexts)).await??;
        Ok(())
    }

    async fn error(&mut self, rid: Option<RequestId>, e: &Error) -> Result<(), Outcome> {
        self.shared.metrics.error(e);
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
        let (auth_timeout, idle) = {
            let limits = &self.shared.config().limits;
            (limits.auth_timeout_secs, limits.idle_timeout_secs)
        };
        let mut shutdown = self.shared.shutdown.clone();
        let auth_deadline = Instant::now() + Duration::from_secs(auth_timeout);
        let idle = Duration::from_secs(idle);
        // The task of an idle session holds the largest state of its loop: boxed, the start,
        // the backlog's reads and the handling of each event take their room only while they
        // run (one allocation per event), and the loop itself holds little more than what the
        // `select!` waits on.
        let mut live = match Box::pin(self.start()).await? {
            Flow::Ready => self.user.clone().map(|u| self.go_live(&u)),
            Flow::Continue => None,
            Flow::Close(o) => return Ok(o),
        };
        loop {
            if let Some(mailbox) = &live
                && (self.cursor.is_some() || mailbox.lag() != NO_LAG)
            {
                Box::pin(self.pump(mailbox)).await?;
            }
            let mut deadline = if self.user.is_some() {
                self.last_activity + idle
            } else {
                (self.last_activity + idle).min(auth_deadline)
            };
            if let Some((_, until)) = self.approval {
                deadline = deadline.min(until);
            }
            let reading = self.batch_rids.len() < delivery::MAX_BATCHED && !self.remote.is_full();
            let event = tokio::select! {
                _ = shutdown.changed() => Event::Shutdown,
                () = mail(live.as_deref()) => Event::Mail,
                done = committed(&mut self.commits) => Event::Committed(done),
                () = numbered(&mut self.numbering) => Event::Numbered,
                ev = next_pubsub(&mut self.inbox) => Event::PubSub(ev),
                answer = self.remote.next() => Event::Remote(answer.map(Box::new)),
                frame = self.inp.recv_plain(), if reading => Event::Frame(frame),
                _ = tokio::time::sleep_until(deadline) => Event::Timeout,
            };
            match Box::pin(self.on_event(event, live.as_deref())).await? {
                Flow::Continue => {}
                Flow::Ready => {
                    if live.is_none() {
                        live = self.user.clone().map(|u| self.go_live(&u));
                    }
                    self.count_ready();
                }
                Flow::Close(o) => return Ok(o),
            }
        }
    }

    /// Handles one event of the loop (`mailbox`: the live session's, once it is live).
    async fn on_event(&mut self, event: Event, mailbox: Option<&Mailbox>) -> Result<Flow, Outcome> {
        match event {
            Event::Shutdown => {
                // Answer the sends already taken: their envelopes may be committed.
                while !self.commits.is_empty() {
                    let done = committed(&mut self.commits).await;
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
                return Ok(Flow::Close(Outcome::Done("server shutting down")));
            }
            Event::Mail => {
                if let Some(mailbox) = mailbox
                    && let Some(outcome) = self.mail(mailbox).await?
                {
                    return Ok(Flow::Close(outcome));
                }
            }
            Event::Committed(done) => self.finish_commit(done).await?,
            Event::Numbered => {
                self.numbering = None;
                self.start_commit();
            }
            Event::PubSub(Some(ev)) => self.send(&ev).await?,
            Event::PubSub(None) => self.inbox = None,
            Event::Remote(Some(answer)) => self.send(&answer).await?,
            Event::Remote(None) => {}
            Event::Frame(Err(NetError::Frame(e))) => {
                let why = format!("bad frame: {e}");
                let _ = self
                    .error(None, &Error::new(ErrorCode::BadFrame, why.clone()))
                    .await;
                // The rest of the refused frame is still coming: read it away before closing,
                // so that the client gets the error instead of a reset (bounded in time and
                // bytes).
                let _ = within(siren_net::LINGER, self.out.shutdown()).await;
                self.inp
                    .drain_before_close(siren_net::LINGER, siren_net::LINGER_BYTES)
                    .await;
                return Ok(Flow::Close(Outcome::Failed(why)));
            }
            Event::Frame(Err(NetError::Io(_))) => {
                return Ok(Flow::Close(Outcome::Done("connection closed")));
            }
            Event::Frame(Err(e)) => return Ok(Flow::Close(Outcome::Failed(e.to_string()))),
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
                    Ok(msg) => return self.handle(msg).await,
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
                return Ok(Flow::Close(Outcome::Done("timed out")));
            }
        }
        Ok(Flow::Continue)
    }

    /// Takes what is in the live session's mailbox: the order to close (the outcome), signals
    /// (at most a mailbox's worth at a time), then offers and notes of the queue.
    async fn mail(&mut self, mailbox: &Mailbox) -> Result<Option<Outcome>, Outcome> {
        if let Some(ending) = mailbox.kicked() {
            // Ended (208 and the like) rather than replaced: say why before closing.
            if let Some(e) = ending {
                let _ = self.error(None, &e).await;
                return Ok(Some(Outcome::Ended(e.message)));
            }
            return Ok(Some(Outcome::Replaced));
        }
        for _ in 0..crate::mailbox::SIGNALS {
            let Some(env) = mailbox.next_signal() else {
                break;
            };
            self.send(&ServerMessage::Signal { env: *env }).await?;
        }
        self.offered(mailbox).await?;
        Ok(None)
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
                let rid = msg.request_id();
                self.error(rid, &Error::new(ErrorCode::AuthRequired, "log in first"))
                    .await?;
            }
            (ClientMessage::Register { rid, record }, Some(user)) => {
                return self.register(rid, &user, record).await;
            }
            // A device waiting for approval acknowledges its approval notices too.
            (ClientMessage::Ack { seqs }, Some(_)) => self.ack(&seqs).await?,
            // Before its DEK is registered, a device may look up only its own account
            // (PROTOCOL.md §9.2): to check the listing it was shown.
            (ClientMessage::Lookup { rid, uid }, Some(user))
                if self.usk_registered || uid == self.uid(&user) =>
            {
                self.lookup(rid, &user, &uid).await?
            }
            (ClientMessage::ApprovalRequest { rid, commit, name }, Some(user)) => {
                self.approval_request(rid, &user, commit, name).await?
            }
            (ClientMessage::ApprovalReveal { rid, to, nonce }, Some(user)) => {
                // This device waits (its approval is on this node); `to` must be a device of
                // the account.
                let ok = !self.usk_registered
                    && self.shared.approvals.is_pending(&self.dek, &user)
                    && self
                        .shared
                        .directory
                        .get(&user)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|d| d.is_live(&to));
                let notice = Notice::ApprovalReveal {
                    from_dek: self.dek,
                    nonce,
                };
                self.relay(rid, ok, to, notice).await?
            }
            (msg, Some(_)) if !self.usk_registered => {
                let rid = msg.request_id();
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
            (ClientMessage::Signal { rid, msgs }, Some(user)) => {
                self.signal(rid, &user, msgs).await?
            }
            (ClientMessage::Revoke { rid, revocation }, Some(user)) => {
                return self.revoke(rid, &user, revocation).await;
            }
            (ClientMessage::RosterGet { rid }, Some(user)) => self.roster_get(rid, &user).await?,
            (ClientMessage::ApprovalChallenge { rid, to, nonce }, Some(user)) => {
                let ok = self.pending_anywhere(&to, &user, false).await;
                let notice = Notice::ApprovalChallenge {
                    from_dek: self.dek,
                    nonce,
                };
                self.relay(rid, ok, to, notice).await?
            }
            (ClientMessage::ApprovalGrant { rid, transfer }, Some(user)) => {
                let to = transfer.to_dek;
                let ok =
                    transfer.from_dek == self.dek && self.pending_anywhere(&to, &user, false).await;
                let notice = Notice::ApprovalGrant { transfer };
                self.relay(rid, ok, to, notice).await?
            }
            (ClientMessage::ApprovalDeny { rid, to }, Some(user)) => {
                // Ended where the device waits (on this node or, in a cluster, another).
                let ok = self.pending_anywhere(&to, &user, true).await;
                let notice = Notice::ApprovalDeny { from_dek: self.dek };
                self.relay(rid, ok, to, notice).await?;
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
                let rid = msg.request_id();
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
            // In a cluster the user may still be online on another node: then nothing changed.
            let elsewhere = match self.shared.cluster.get() {
                Some(cluster) => cluster.presence_elsewhere(user).await.is_some(),
                None => false,
            };
            // A session of theirs may have become ready here while the others were asked.
            if !elsewhere && !self.shared.pubsub.is_online(user) {
                let me = self.uid(user);
                presence::publish_presence(&self.shared, &me, &crate::pubsub::PubSub::offline())
                    .await;
            }
        }
        if let Outcome::Ended(_) = outcome {
            if let Err(e) = self.shared.storage.delete_session(self.id.as_bytes()).await {
                tracing::warn!(error = %e, "cannot forget an ended session");
            }
        } else if self.user.is_some() && self.usk_registered && !self.last_seen_fresh() {
            let _ = self.save_session().await;
        }
        let (peer, session, transport) = (self.peer, self.id, self.transport.as_str());
        match outcome {
            Outcome::Done(why) => {
                tracing::info!(%peer, ?session, transport, why, "session closed")
            }
            Outcome::Replaced => {
                tracing::info!(%peer, ?session, transport, "session replaced")
            }
            Outcome::Ended(why) => {
                tracing::info!(%peer, ?session, transport, %why, "session ended by the server")
            }
            Outcome::Failed(why) => {
                tracing::info!(%peer, ?session, transport, %why, "session ended")
            }
        }
    }
}

/// A short, log-safe form of a device key.
fn short(dek: &DekPublic) -> String {
    dek.to_base64()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without making one.
    fn future_size<A, B, C, D, E, Fut>(_: impl FnOnce(A, B, C, D, E) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn the_task_of_an_idle_session_stays_small() {
        // A tokio task holds its future inline, sized by the largest state it can be in: the
        // handshake, the start, the handling of an event and the close are boxed so that an
        // idle session's task holds the `Session` and the loop's `select!`, not those. An
        // `.await` on something large in `serve` or the loop brings the kilobytes back.
        let task = future_size(serve);
        let session = std::mem::size_of::<Session>();
        eprintln!("serve's future: {task} bytes, of which Session {session}");
        assert!(
            task <= session + 1024,
            "serve's future is {task} bytes: something large is awaited inline \
             (Session is {session})"
        );
    }
}
