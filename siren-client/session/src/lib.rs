//! One Siren device's session with its server, without a runtime: log in, look users up
//! (verified and cached), send and receive end-to-end encrypted messages. The same code runs in
//! `siren` (driven by tokio, keeping its state in a profile directory) and in the browser (the
//! page's WebSocket and IndexedDB): the driver hands [`Client`] a [`Platform`] and a [`Store`].
//!
//! The session core is here; each capability has its own module: `login` (login, DEK
//! rotation, USK creation, recovery key), `approval` (adding a device), `directory` (lookups
//! against the cache, revocation), `messages` (send and receive), `signals` (ephemeral `typing`
//! notices), `roster` and `presence`; [`platform`] and [`store`] say what a driver provides.
//! [`chat`] is the driver of the client core on top of it, for interactive clients (`siren
//! chat` and the browser client run the same one).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod approval;

pub use approval::Approving;
pub mod chat;
mod directory;
pub mod groups;
mod login;
mod messages;
pub mod platform;
mod presence;
mod roster;
mod signals;
pub mod store;

pub use platform::{Link, Opened, Platform};
pub use store::{ContactState, RosterSeen, Secrets, SeenRequest, Store};

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_api::{ErrorCode, Uid};
use siren_proto::approval::ShortCode;
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret, UskPublic, UskSecret};
use siren_proto::message::{ClientMessage, Notice, Presence, RequestId, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::UserDirectory;
use zeroize::Zeroizing;

use crate::platform::within;

/// How long each handshake step and each request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Acknowledgements sent together.
const ACK_BATCH: usize = 64;
/// A session on which nothing at all arrives for this long is given up.
const SILENCE: Duration = Duration::from_secs(600);
/// The login mechanism of client certificates.
pub const X509_MECHANISM: &str = "X509";

/// A message received and opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub from: Uid,
    /// Its id.
    pub id: MessageId,
    /// What it says (a text, or a type this client cannot show: PROTOCOL.md §12).
    pub content: Plaintext,
}

/// Something that arrived on the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An end-to-end message, opened and verified.
    Message(Received),
    /// An ephemeral signal (a `typing` notice, PROTOCOL.md §14), opened and verified like a
    /// message; it was never queued and is not acknowledged.
    Signal(Received),
    /// A message that was refused (and dropped): who claimed to send it, and why.
    Refused {
        /// The claimed sender.
        from: Uid,
        /// Why it was refused.
        reason: String,
    },
    /// A notification from the server.
    Notice(Notice),
    /// Everything that was queued while away has been delivered.
    Drained,
    /// A contact's presence changed (only for subscribed contacts, only while connected).
    Presence {
        /// Whose.
        from: Uid,
        /// The new presence.
        presence: Presence,
    },
    /// A group's membership changed, versions are missing, or a group version or message was
    /// refused (PROTOCOL.md §12.1).
    Group(groups::GroupEvent),
    /// A message to a group, from a member of the version this device holds (PROTOCOL.md
    /// §12.1).
    GroupMessage {
        /// The group's name as shown: its title, or its id's first digits.
        group: String,
        /// The message; its content is the `group` plaintext.
        message: Received,
    },
}

/// What a lookup found, against the cache.
#[derive(Debug, Clone)]
pub struct LookupReport {
    /// The verified directory.
    pub directory: UserDirectory,
    /// Devices new since the last lookup (trust prompt). On the first lookup of a user, all of
    /// them.
    pub added: Vec<DekPublic>,
    /// This profile had never seen a listing of this user before (so `added` is not news).
    pub first: bool,
    /// Devices gone since the last lookup (revoked; never used again).
    pub removed: Vec<DekPublic>,
}

/// How a device proves it may log in to its account.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// The account's password (mechanism `PLAIN`).
    Password(&'a str),
    /// A password sent in `PLAIN`'s format (RFC 4616) under another mechanism name, for
    /// password mechanisms a deployment adds as a plugin.
    PasswordVia {
        /// The mechanism's name.
        mechanism: &'a str,
        /// The password.
        password: &'a str,
    },
    /// A client certificate and its key (mechanism `X509`).
    Certificate(&'a dyn CertificateLogin),
}

/// Names the way of logging in, never the secret.
impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(..)"),
            Credentials::PasswordVia { mechanism, .. } => write!(f, "PasswordVia({mechanism}, ..)"),
            Credentials::Certificate(_) => f.write_str("Certificate(..)"),
        }
    }
}

/// A client certificate that answers the `X509` mechanism (PROTOCOL.md §9.3).
pub trait CertificateLogin {
    /// The mechanism's response for logging in to `uid` over the session with this handshake
    /// hash (`channel_binding`) and DEK (`device_key`).
    fn response(&self, channel_binding: &[u8; 32], device_key: &[u8; 32], uid: &Uid) -> Vec<u8>;
}

/// What the person at a new device sees and answers while one of their existing devices
/// approves it (PROTOCOL.md §16).
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait ApprovalPrompt {
    /// Shows the six-digit code to compare with the approving device.
    fn show_code(&mut self, code: ShortCode);

    /// The USK arrived and checks out against the listing the server sent (`usk` is its public
    /// key; show its fingerprint, which the account's existing devices show too). Returns
    /// whether the person confirms that they approved `code` on one of their existing devices:
    /// only then is the USK stored and this device registered. A server can invent the
    /// approving device and hand over a USK it holds itself; this question is what catches it.
    async fn confirm(&mut self, code: ShortCode, usk: &UskPublic) -> bool;
}

/// How `login` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// First device: a USK was generated and this device registered.
    CreatedUser,
    /// This device registered a new DEK with the USK it already holds.
    Registered,
    /// Another device approved this one and handed over the USK.
    Approved,
    /// The device was already registered.
    AlreadyRegistered,
}

/// An open session.
struct Conn<L> {
    link: L,
    next_rid: RequestId,
    /// Messages that arrived while a request waited for its answer.
    events: VecDeque<ServerMessage>,
    acks: Vec<u64>,
    /// The handshake hash (what the `X509` mechanism signs).
    channel_binding: [u8; 32],
}

/// The request id a server answer refers to, if it is an answer.
fn answer_rid(msg: &ServerMessage) -> Option<RequestId> {
    match msg {
        ServerMessage::AuthChallenge { rid, .. }
        | ServerMessage::AuthSuccess { rid, .. }
        | ServerMessage::Ok { rid }
        | ServerMessage::Directory { rid, .. }
        | ServerMessage::SendAck { rid, .. }
        | ServerMessage::Roster { rid, .. }
        | ServerMessage::Pong { rid } => Some(*rid),
        ServerMessage::Error { rid, .. } => *rid,
        _ => None,
    }
}

/// A server `error` as an error value.
fn server_error(code: u16, msg: &str) -> anyhow::Error {
    anyhow::Error::new(ServerRefused {
        code,
        msg: msg.to_owned(),
    })
}

/// A request the server answered with an error (PROTOCOL.md §18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRefused {
    /// The stable error code.
    pub code: u16,
    /// The server's text.
    pub msg: String,
}

impl std::fmt::Display for ServerRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = ErrorCode::from_u16(self.code).map_or("unknown", |c| c.name());
        write!(f, "server refused: {} ({name}, {})", self.msg, self.code)
    }
}

impl std::error::Error for ServerRefused {}

impl<L: Link> Conn<L> {
    async fn recv<P: Platform>(&mut self, platform: &P) -> anyhow::Result<ServerMessage> {
        let msg = loop {
            let received = within(platform.sleep(SILENCE), self.link.recv())
                .await
                .ok_or_else(|| anyhow::anyhow!("the server went silent"))?;
            // `None`: a message type a newer server added, skipped (PROTOCOL.md §21); the
            // frame itself was authentic, so the session goes on.
            if let Some(msg) = received? {
                break msg;
            }
        };
        if let ServerMessage::Error {
            rid: None,
            code,
            msg,
        } = &msg
        {
            return Err(server_error(*code, msg));
        }
        Ok(msg)
    }

    /// Sends a request and waits for its answer (an `error` answer becomes `Err`).
    async fn request<P: Platform>(
        &mut self,
        platform: &P,
        make: impl FnOnce(RequestId) -> ClientMessage,
    ) -> anyhow::Result<ServerMessage> {
        self.next_rid = self.next_rid.wrapping_add(1);
        let rid = self.next_rid;
        self.link.send(&make(rid)).await?;
        loop {
            let msg = within(platform.sleep(TIMEOUT), self.recv(platform))
                .await
                .ok_or_else(|| anyhow::anyhow!("no answer from the server within {TIMEOUT:?}"))??;
            match answer_rid(&msg) {
                Some(r) if r == rid => {
                    if let ServerMessage::Error { code, msg, .. } = &msg {
                        return Err(server_error(*code, msg));
                    }
                    return Ok(msg);
                }
                _ => self.events.push_back(msg),
            }
        }
    }

    /// The next message that is not an answer being waited for. Cancel-safe: acknowledgements
    /// are flushed by the callers, and the receiver keeps a partly read frame.
    async fn next_message<P: Platform>(&mut self, platform: &P) -> anyhow::Result<ServerMessage> {
        if let Some(msg) = self.events.pop_front() {
            return Ok(msg);
        }
        self.recv(platform).await
    }

    async fn flush_acks(&mut self) -> anyhow::Result<()> {
        if !self.acks.is_empty() {
            let seqs = std::mem::take(&mut self.acks);
            self.link.send(&ClientMessage::Ack { seqs }).await?;
        }
        Ok(())
    }

    async fn ack(&mut self, seq: u64) -> anyhow::Result<()> {
        self.acks.push(seq);
        if self.acks.len() >= ACK_BATCH {
            self.flush_acks().await?;
        }
        Ok(())
    }
}

/// One device's session with its server, over a [`Platform`], keeping its state in a
/// [`Store`].
pub struct Client<S, P: Platform> {
    uid: Uid,
    store: S,
    platform: P,
    secrets: Secrets,
    conn: Option<Conn<P::Link>>,
    seen: VecDeque<MessageId>,
    seen_set: BTreeSet<MessageId>,
    last_lookup: Option<LookupReport>,
    /// Events released by the last one (group messages that waited for a version): handed
    /// out before anything else arrives.
    released: VecDeque<Event>,
}

impl<S: Store, P: Platform> Client<S, P> {
    /// A client of account `uid` whose state is in `store`.
    pub async fn load(uid: Uid, store: S, platform: P) -> anyhow::Result<Self> {
        let secrets = store.secrets().await?;
        let seen = store.seen().await?;
        Ok(Self::with_state(uid, store, platform, secrets, seen))
    }

    /// A client of account `uid` whose secrets and received ids the driver already read from
    /// `store`.
    pub fn with_state(
        uid: Uid,
        store: S,
        platform: P,
        secrets: Secrets,
        seen: VecDeque<MessageId>,
    ) -> Self {
        let seen_set = seen.iter().copied().collect();
        Client {
            uid,
            store,
            platform,
            secrets,
            conn: None,
            seen,
            seen_set,
            last_lookup: None,
            released: VecDeque::new(),
        }
    }

    /// The account.
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    /// This device's current DEK, if logged in.
    pub fn device(&self) -> Option<DekPublic> {
        self.secrets.dek().map(|d| d.public())
    }

    /// The user's USK, if this device holds it.
    pub fn usk(&self) -> Option<UskSecret> {
        self.secrets.usk()
    }

    /// The seed of this device's local history, created (and saved) first if the device has
    /// none yet.
    pub async fn history_seed(&mut self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let (seed, created) = self.secrets.history_seed();
        if created {
            self.store.save_secrets(&self.secrets).await?;
        }
        Ok(seed)
    }

    /// Seconds since the Unix epoch, by the platform's clock.
    fn now(&self) -> u64 {
        self.platform.now_millis() / 1000
    }

    async fn open(
        &mut self,
        dek: &DekSecret,
        request: SessionRequest,
    ) -> anyhow::Result<(Conn<P::Link>, ServerMessage)> {
        let Opened {
            link,
            handshake_hash,
        } = self.platform.open(dek, request).await?;
        let mut conn = Conn {
            link,
            next_rid: 0,
            events: VecDeque::new(),
            acks: Vec::new(),
            channel_binding: handshake_hash,
        };
        let welcome = conn.recv(&self.platform).await?;
        if let ServerMessage::Welcome { max_frame, .. } = &welcome {
            conn.link.set_max_frame(*max_frame as usize);
        }
        Ok((conn, welcome))
    }

    /// Resumes this device's session (after `login`).
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        let (Some(dek), Some(sid)) = (self.secrets.dek(), self.secrets.session) else {
            bail!("not logged in: run `siren login` first");
        };
        let (conn, welcome) = self
            .open(&dek, SessionRequest::Resume(SessionId::from_bytes(sid)))
            .await?;
        match welcome {
            ServerMessage::Welcome { resumed: true, .. } => {
                self.conn = Some(conn);
                Ok(())
            }
            _ => bail!("the server no longer knows this session: run `siren login` again"),
        }
    }

    fn conn(&mut self) -> anyhow::Result<&mut Conn<P::Link>> {
        self.conn.as_mut().context("not connected")
    }

    /// Sends a request on the open session and waits for its answer.
    async fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientMessage,
    ) -> anyhow::Result<ServerMessage> {
        let conn = self.conn.as_mut().context("not connected")?;
        conn.request(&self.platform, make).await
    }

    /// Forgets the session's connection after it failed (the session stays resumable: the
    /// next [`Client::connect`] resumes it). Unacknowledged deliveries come again.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Where the device keeps its state.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The platform the session runs on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Pings the server (keeps a listening session alive).
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.request(|rid| ClientMessage::Ping { rid }).await?;
        Ok(())
    }

    /// Sends the acknowledgements of what was processed (they are batched; a driver that waits
    /// with [`Client::next_server_message`] sends them before it waits, so that the server can
    /// drop what this device has).
    pub async fn flush_acks(&mut self) -> anyhow::Result<()> {
        match self.conn.as_mut() {
            Some(conn) => conn.flush_acks().await,
            None => Ok(()),
        }
    }

    /// Acknowledges what was processed and closes the session (it stays resumable).
    pub async fn bye(&mut self) -> anyhow::Result<()> {
        if let Some(mut conn) = self.conn.take() {
            conn.flush_acks().await?;
            conn.link.send(&ClientMessage::Bye).await?;
        }
        Ok(())
    }
}
