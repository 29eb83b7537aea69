//! The client: log in, look users up (verified and cached), send and receive end-to-end
//! encrypted messages.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_api::{ErrorCode, Uid};
use siren_net::{Connected, Receiver, Sender, connect};
use siren_proto::approval::{self, ApprovalTranscript, ShortCode, UskTransfer};
use siren_proto::envelope::{Envelope, EnvelopeError, Recipient, Sender as EnvSender};
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret, SekPublic, UskPublic, UskSecret};
use siren_proto::message::{
    ClientMessage, NextStep, Notice, Presence, QueueItem, RequestId, ServerMessage, Topic,
};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::{DeviceRecordDraft, DeviceRevocation, UserDirectory};
use siren_proto::roster::{Contact, Roster};
use siren_proto::transcript::Digest;

use crate::profile::{Profile, Secrets, SeenRequest};
use crate::x509::{self, ClientCert};

/// How long each handshake step and each request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Acknowledgements sent together.
const ACK_BATCH: usize = 64;

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
}

/// What a lookup found, against the cache.
#[derive(Debug, Clone)]
pub struct LookupReport {
    /// The verified directory.
    pub directory: UserDirectory,
    /// Devices new since the last lookup (trust prompt).
    pub added: Vec<DekPublic>,
    /// Devices gone since the last lookup (revoked; never used again).
    pub removed: Vec<DekPublic>,
}

/// How a device proves it may log in to its account.
#[derive(Debug, Clone, Copy)]
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
    Certificate(&'a ClientCert),
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An open session.
struct Conn {
    tx: Sender,
    rx: Receiver,
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

impl Conn {
    async fn recv(&mut self) -> anyhow::Result<ServerMessage> {
        let msg = siren_net::within(Duration::from_secs(600), self.rx.recv::<ServerMessage>())
            .await
            .map_err(|_| anyhow::anyhow!("the server went silent"))??;
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
    async fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientMessage,
    ) -> anyhow::Result<ServerMessage> {
        self.next_rid = self.next_rid.wrapping_add(1);
        let rid = self.next_rid;
        self.tx.send(&make(rid)).await?;
        loop {
            let msg = siren_net::within(TIMEOUT, self.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no answer from the server within {TIMEOUT:?}"))??;
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

    async fn next_event(&mut self) -> anyhow::Result<ServerMessage> {
        if let Some(msg) = self.events.pop_front() {
            return Ok(msg);
        }
        self.flush_acks().await?;
        self.recv().await
    }

    async fn flush_acks(&mut self) -> anyhow::Result<()> {
        if !self.acks.is_empty() {
            let seqs = std::mem::take(&mut self.acks);
            self.tx.send(&ClientMessage::Ack { seqs }).await?;
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

/// A client over one profile.
pub struct Client {
    profile: Profile,
    secrets: Secrets,
    conn: Option<Conn>,
    seen: VecDeque<MessageId>,
    seen_set: BTreeSet<MessageId>,
    last_lookup: Option<LookupReport>,
}

impl Client {
    /// The lookup the last `send_text` made (new and removed devices of the recipient).
    pub fn last_lookup(&self) -> Option<&LookupReport> {
        self.last_lookup.as_ref()
    }

    /// The USK seed as a recovery key (base64), to keep offline: with it a new device joins
    /// without another device's approval.
    pub fn recovery_key(&self) -> anyhow::Result<String> {
        let usk = self
            .secrets
            .usk()
            .context("this device has no signing key")?;
        Ok(SekPublic::from_bytes(*usk.to_bytes()).to_base64())
    }

    /// Stores a recovery key in a profile that has no signing key yet; the next `login`
    /// registers this device with it.
    pub fn import_recovery_key(&mut self, key: &str) -> anyhow::Result<UskPublic> {
        if self.secrets.usk.is_some() {
            bail!("this profile already has a signing key");
        }
        let seed = SekPublic::from_base64(key.trim())
            .context("a recovery key is 44 characters of base64")?;
        let usk = UskSecret::from_bytes(seed.as_bytes());
        self.secrets.usk = Some(*usk.to_bytes());
        self.profile.save_secrets(&self.secrets)?;
        Ok(usk.public())
    }

    /// A client for an open profile.
    pub fn new(profile: Profile) -> anyhow::Result<Client> {
        let secrets = profile.secrets()?;
        let seen = profile.seen()?;
        let seen_set = seen.iter().copied().collect();
        Ok(Client {
            profile,
            secrets,
            conn: None,
            seen,
            seen_set,
            last_lookup: None,
        })
    }

    /// The account.
    pub fn uid(&self) -> &Uid {
        &self.profile.settings.uid
    }

    /// This device's current DEK, if logged in.
    pub fn device(&self) -> Option<DekPublic> {
        self.secrets.dek().map(|d| d.public())
    }

    /// The user's USK, if this device holds it.
    pub fn usk(&self) -> Option<UskSecret> {
        self.secrets.usk()
    }

    async fn open(
        &self,
        dek: &DekSecret,
        request: SessionRequest,
    ) -> anyhow::Result<(Conn, ServerMessage)> {
        let s = &self.profile.settings;
        let Connected {
            sender,
            receiver,
            rotated_sek,
            handshake_hash,
            ..
        } = connect(&s.server, s.server_name(), &s.sek()?, dek, request, TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "cannot open a session with {} at {}",
                    s.server_name(),
                    s.server
                )
            })?;
        if rotated_sek.is_some() {
            eprintln!("note: the server announced a new key; update server_key in profile.toml");
        }
        let mut conn = Conn {
            tx: sender,
            rx: receiver,
            next_rid: 0,
            events: VecDeque::new(),
            acks: Vec::new(),
            channel_binding: *handshake_hash.as_bytes(),
        };
        let welcome = conn.recv().await?;
        if let ServerMessage::Welcome { max_frame, .. } = &welcome {
            conn.tx.set_max_frame(*max_frame as usize);
        }
        Ok((conn, welcome))
    }

    /// Logs in with a password on this device with a fresh DEK (the spec's "freshly generated
    /// with each session"), and registers it:
    ///
    /// * the user's first device creates the USK;
    /// * a device that already holds the USK registers the new DEK with it, then drains the old
    ///   DEK's queue (the messages are returned) and revokes the old DEK;
    /// * a device without the USK asks the user's other devices for approval; `on_code` gets the
    ///   six-digit code to compare with the approving device.
    pub async fn login(
        &mut self,
        password: &str,
        device_name: Option<String>,
        on_code: &mut dyn FnMut(ShortCode),
    ) -> anyhow::Result<(LoginOutcome, Vec<Event>)> {
        self.login_with(Credentials::Password(password), device_name, on_code)
            .await
    }

    /// [`Client::login`] with a password or a client certificate.
    pub async fn login_with(
        &mut self,
        credentials: Credentials<'_>,
        device_name: Option<String>,
        on_code: &mut dyn FnMut(ShortCode),
    ) -> anyhow::Result<(LoginOutcome, Vec<Event>)> {
        let old = match (self.secrets.dek(), self.secrets.session) {
            (Some(dek), Some(sid)) => Some((dek, SessionId::from_bytes(sid))),
            _ => None,
        };
        let dek = DekSecret::generate(&mut siren_proto::os_rng());
        let (mut conn, welcome) = self.open(&dek, SessionRequest::Open).await?;
        let ServerMessage::Welcome { sid, .. } = welcome else {
            bail!("the server did not start with welcome");
        };
        let mechs = match conn.recv().await? {
            ServerMessage::AuthMechanisms { mechs } => mechs,
            other => bail!("expected the mechanism list, got {other:?}"),
        };
        let (mech, what) = match credentials {
            Credentials::Password(_) => ("PLAIN", "password login"),
            Credentials::PasswordVia { mechanism, .. } => (mechanism, "that mechanism"),
            Credentials::Certificate(_) => (x509::MECHANISM, "certificate login (X509)"),
        };
        if !mechs.iter().any(|m| m == mech) {
            bail!("the server does not offer {what} (it offers {mechs:?})");
        }
        let creds = match credentials {
            Credentials::Password(password) | Credentials::PasswordVia { password, .. } => {
                let user = self.uid().user().to_string();
                format!("\0{user}\0{password}").into_bytes()
            }
            Credentials::Certificate(cert) => {
                cert.response(&conn.channel_binding, dek.public().as_bytes(), self.uid())
            }
        };
        let mut answer = conn
            .request(|rid| ClientMessage::AuthStart {
                rid,
                mech: mech.into(),
                data: creds.clone(),
            })
            .await?;
        if let ServerMessage::AuthChallenge { rid, .. } = answer {
            answer = conn
                .request(|_| ClientMessage::AuthStep {
                    rid,
                    data: creds.clone(),
                })
                .await?;
        }
        let ServerMessage::AuthSuccess { uid, next, .. } = answer else {
            bail!("unexpected answer to login: {answer:?}");
        };
        if &uid != self.uid() {
            bail!("the server logged us in as {uid}, not {}", self.uid());
        }
        self.conn = Some(conn);
        let outcome = match next {
            NextStep::Ready => LoginOutcome::AlreadyRegistered,
            NextStep::CreateUser => {
                let usk = UskSecret::generate(&mut siren_proto::os_rng());
                self.secrets.usk = Some(*usk.to_bytes());
                // Save before registering: the USK must never be lost once published.
                self.profile.save_secrets(&self.secrets)?;
                self.register(&usk, &dek, 1, Digest::ZERO, device_name)
                    .await?;
                LoginOutcome::CreatedUser
            }
            NextStep::AwaitApproval { listing } => {
                let check = UserDirectory::check_listing(&uid, &listing, None).map_err(|e| {
                    anyhow::anyhow!("the server's listing of {uid} does not verify: {e}")
                })?;
                let directory = check.directory;
                let (usk, outcome) = match self.secrets.usk() {
                    Some(usk) => (usk, LoginOutcome::Registered),
                    None => {
                        let usk = self
                            .await_approval(&dek, &directory, device_name.clone(), on_code)
                            .await?;
                        self.secrets.usk = Some(*usk.to_bytes());
                        self.profile.save_secrets(&self.secrets)?;
                        (usk, LoginOutcome::Approved)
                    }
                };
                if directory.usk() != &usk.public() {
                    bail!(
                        "the directory of {uid} is signed by a different USK than this device holds"
                    );
                }
                let head = directory.head();
                self.register(&usk, &dek, head.seq + 1, head.hash, device_name)
                    .await?;
                outcome
            }
            other => bail!("unsupported login step {other:?}"),
        };
        self.secrets.dek = Some(*dek.to_bytes());
        self.secrets.session = Some(*sid.as_bytes());
        self.profile.save_secrets(&self.secrets)?;
        // The old DEK of this device: deliver what waits for it, then revoke it.
        let mut drained = Vec::new();
        if let Some((old_dek, old_sid)) = old
            && old_dek.public() != dek.public()
        {
            drained = self.retire(&old_dek, old_sid).await?;
        }
        Ok((outcome, drained))
    }

    async fn register(
        &mut self,
        usk: &UskSecret,
        dek: &DekSecret,
        seq: u64,
        prev: Digest,
        name: Option<String>,
    ) -> anyhow::Result<()> {
        let record = DeviceRecordDraft {
            uid: self.uid().clone(),
            dek: dek.public(),
            seq,
            prev,
            ts: now(),
            name,
        }
        .sign(usk);
        self.conn()?
            .request(|rid| ClientMessage::Register {
                rid,
                record: record.clone(),
            })
            .await?;
        Ok(())
    }

    /// Drains the queue of this device's previous DEK through its old session, then revokes it
    /// from the new session. Returns what was delivered to the old DEK.
    async fn retire(&mut self, old: &DekSecret, old_sid: SessionId) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        let new_conn = self.conn.take();
        let new_secrets = (self.secrets.dek, self.secrets.session);
        if let Ok((conn, ServerMessage::Welcome { resumed: true, .. })) =
            self.open(old, SessionRequest::Resume(old_sid)).await
        {
            self.conn = Some(conn);
            self.secrets.dek = Some(*old.to_bytes());
            let drained = async {
                while let Some(e) = self.next_event(true).await? {
                    events.push(e);
                }
                self.bye().await
            }
            .await;
            self.secrets.dek = new_secrets.0;
            self.secrets.session = new_secrets.1;
            drained?;
        }
        self.conn = new_conn;
        self.revoke(&old.public()).await?;
        Ok(events)
    }

    /// Revokes one of this account's devices (signed with the USK).
    pub async fn revoke(&mut self, device: &DekPublic) -> anyhow::Result<()> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let me = self.uid().clone();
        let own = self.lookup(&me).await?.directory;
        if !own.is_live(device) {
            bail!("that device is not a live device of {me}");
        }
        let head = own.head();
        let revocation = DeviceRevocation::sign(&usk, me, *device, head.seq + 1, head.hash, now());
        self.conn()?
            .request(|rid| ClientMessage::Revoke {
                rid,
                revocation: revocation.clone(),
            })
            .await?;
        Ok(())
    }

    /// The next approval notice for this (new) device, pinging while waiting.
    async fn next_notice(&mut self) -> anyhow::Result<Notice> {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.next_event(false)).await {
                Ok(Ok(Some(Event::Notice(n)))) => return Ok(n),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => self.ping().await?,
            }
        }
    }

    /// The new device's side of an approval (PROTOCOL.md §16): commit, answer the first
    /// challenge with the reveal, show the code, and open the USK transfer.
    async fn await_approval(
        &mut self,
        dek: &DekSecret,
        directory: &UserDirectory,
        name: Option<String>,
        on_code: &mut dyn FnMut(ShortCode),
    ) -> anyhow::Result<UskSecret> {
        let uid = self.uid().clone();
        let mut rng = siren_proto::os_rng();
        let new_nonce = approval::random_nonce(&mut rng);
        let commit = approval::commitment(&uid, &dek.public(), &new_nonce);
        self.conn()?
            .request(|rid| ClientMessage::ApprovalRequest {
                rid,
                commit,
                name: name.clone(),
            })
            .await?;
        let published: Vec<DekPublic> = directory.devices().map(|r| r.dek).collect();
        let mut transcript: Option<ApprovalTranscript> = None;
        loop {
            match self.next_notice().await? {
                Notice::ApprovalChallenge { from_dek, nonce } if transcript.is_none() => {
                    if !published.contains(&from_dek) {
                        continue; // not one of the user's published devices
                    }
                    self.conn()?
                        .request(|rid| ClientMessage::ApprovalReveal {
                            rid,
                            to: from_dek,
                            nonce: new_nonce,
                        })
                        .await?;
                    let t = ApprovalTranscript {
                        uid: uid.clone(),
                        new_dek: dek.public(),
                        existing_dek: from_dek,
                        commit,
                        existing_nonce: nonce,
                        new_nonce,
                    };
                    on_code(t.short_code());
                    transcript = Some(t);
                }
                Notice::ApprovalGrant { transfer } => {
                    let Some(t) = &transcript else { continue };
                    return transfer
                        .open(dek, t, directory.usk(), &published)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "the signing key sent by the other device does not check out: {e}"
                            )
                        });
                }
                Notice::ApprovalDeny { .. } => bail!("the other device denied this login"),
                _ => {}
            }
        }
    }

    /// The approving side: waits up to `wait` for an approval request, answers it, and when the
    /// new device reveals its nonce, asks `decide` (given the new device's name and the code)
    /// whether to hand over the USK.
    pub async fn approve_next(
        &mut self,
        wait: Duration,
        decide: &mut dyn FnMut(Option<&str>, ShortCode) -> bool,
    ) -> anyhow::Result<bool> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let my_dek = self.secrets.dek().context("not logged in")?.public();
        let uid = self.uid().clone();
        let deadline = tokio::time::Instant::now() + wait;
        // (new device, its commitment and name, our nonce)
        let mut pending: Option<(DekPublic, Digest, Option<String>, approval::ApprovalNonce)> =
            None;
        // Requests that `recv` or `listen` already took from the queue, newest first: the first
        // one the server still has pending is answered.
        let saved = self.profile.approval_requests()?;
        self.profile.save_approval_requests(Vec::new())?;
        for req in saved.into_iter().rev() {
            let nonce = approval::random_nonce(&mut siren_proto::os_rng());
            let to = req.new_dek;
            if self
                .conn()?
                .request(|rid| ClientMessage::ApprovalChallenge { rid, to, nonce })
                .await
                .is_ok()
            {
                pending = Some((req.new_dek, req.commit, req.name, nonce));
                break;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let notice = match tokio::time::timeout(
                left.min(Duration::from_secs(30)),
                self.next_event(false),
            )
            .await
            {
                Ok(Ok(Some(Event::Notice(n)))) => n,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) if left.is_zero() => bail!("no approval request arrived within {wait:?}"),
                Err(_) => {
                    self.ping().await?;
                    continue;
                }
            };
            match notice {
                Notice::ApprovalRequest {
                    new_dek,
                    commit,
                    name,
                } => {
                    let nonce = approval::random_nonce(&mut siren_proto::os_rng());
                    let sent = self
                        .conn()?
                        .request(|rid| ClientMessage::ApprovalChallenge {
                            rid,
                            to: new_dek,
                            nonce,
                        })
                        .await;
                    if sent.is_ok() {
                        pending = Some((new_dek, commit, name, nonce));
                    } // else: a stale request (that device gave up); wait for another
                }
                Notice::ApprovalReveal { from_dek, nonce } => {
                    let Some((new_dek, commit, name, existing_nonce)) = pending.clone() else {
                        continue;
                    };
                    if from_dek != new_dek {
                        continue;
                    }
                    let genuine = approval::check_reveal(&commit, &uid, &new_dek, &nonce);
                    let t = ApprovalTranscript {
                        uid: uid.clone(),
                        new_dek,
                        existing_dek: my_dek,
                        commit,
                        existing_nonce,
                        new_nonce: nonce,
                    };
                    if genuine && decide(name.as_deref(), t.short_code()) {
                        let transfer = UskTransfer::seal(&usk, &t, &mut siren_proto::os_rng())?;
                        self.conn()?
                            .request(|rid| ClientMessage::ApprovalGrant {
                                rid,
                                transfer: transfer.clone(),
                            })
                            .await?;
                        return Ok(true);
                    }
                    self.conn()?
                        .request(|rid| ClientMessage::ApprovalDeny { rid, to: new_dek })
                        .await?;
                    return Ok(false);
                }
                _ => {}
            }
        }
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

    fn conn(&mut self) -> anyhow::Result<&mut Conn> {
        self.conn.as_mut().context("not connected")
    }

    /// Looks `uid` up, verifies every record against one USK, compares with the cache and
    /// updates it. A changed USK is refused.
    pub async fn lookup(&mut self, uid: &Uid) -> anyhow::Result<LookupReport> {
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::Lookup {
                rid,
                uid: uid.clone(),
            })
            .await?;
        let ServerMessage::Directory { listing, .. } = answer else {
            bail!("unexpected answer to lookup: {answer:?}");
        };
        let mut state = self.profile.contact(uid)?;
        let check = UserDirectory::check_listing(uid, &listing, state.directory.as_ref())
            .map_err(|e| anyhow::anyhow!("the directory of {uid} does not verify: {e}"))?;
        // A device seen removed once is never trusted again, even if the server shows it again.
        if check.added.iter().any(|d| state.revoked.contains(d)) {
            bail!("the server lists a revoked device of {uid} as live again; refusing");
        }
        state.revoked.extend(check.removed.iter().copied());
        for gone in &check.removed {
            state.windows.retain(|(d, _)| d != gone);
        }
        state.directory = Some(check.directory.clone());
        self.profile.save_contact(uid, &state)?;
        Ok(LookupReport {
            directory: check.directory,
            added: check.added,
            removed: check.removed,
        })
    }

    /// Sends `text` to every device of `to`. Returns the message id and the number of devices;
    /// [`Client::last_lookup`] tells which devices were new or gone.
    pub async fn send_text(&mut self, to: &Uid, text: &str) -> anyhow::Result<(MessageId, usize)> {
        let report = match self.lookup(to).await {
            Ok(report) => report,
            // The recipient's server is unreachable: our server keeps the message in its outbox
            // until it is back, sealed to the devices last verified for the recipient.
            Err(e)
                if e.downcast_ref::<ServerRefused>()
                    .is_some_and(|r| r.code == ErrorCode::PeerUnreachable.as_u16()) =>
            {
                let cached = self.profile.contact(to)?.directory;
                match cached {
                    Some(directory) => LookupReport {
                        directory,
                        added: Vec::new(),
                        removed: Vec::new(),
                    },
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.last_lookup = Some(report.clone());
        let usk = self.secrets.usk().context("this device has no USK")?;
        let dek = self.secrets.dek().context("not logged in")?;
        let plaintext = Plaintext::Text {
            body: text.to_owned(),
            ts: now(),
        }
        .encode();
        // The counter is saved before use, so it never repeats even after a crash.
        self.secrets.counter += 1;
        let ctr = self.secrets.counter;
        self.profile.save_secrets(&self.secrets)?;
        let mut rng = siren_proto::os_rng();
        let id = MessageId::random(&mut rng);
        let me = self.uid().clone();
        let my_dek = dek.public();
        let mut envelopes = Vec::new();
        for record in report.directory.devices() {
            envelopes.push(Envelope::seal(
                EnvSender {
                    uid: &me,
                    usk: &usk,
                    dek: &my_dek,
                },
                to,
                &record.dek,
                id,
                ctr,
                &plaintext,
                &mut rng,
            )?);
        }
        let n = envelopes.len();
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::Send {
                rid,
                msgs: envelopes.clone(),
            })
            .await?;
        match answer {
            ServerMessage::SendAck { ids, .. } if ids.contains(&id) => Ok((id, n)),
            other => bail!("unexpected answer to send: {other:?}"),
        }
    }

    /// The next event. In `drain` mode, returns `None` once the queued backlog is delivered.
    pub async fn next_event(&mut self, drain: bool) -> anyhow::Result<Option<Event>> {
        loop {
            let msg = self.conn()?.next_event().await?;
            match msg {
                ServerMessage::Deliver { seq, item } => {
                    let event = self.receive(item).await?;
                    self.conn()?.ack(seq).await?;
                    if let Some(event) = event {
                        return Ok(Some(event));
                    }
                }
                ServerMessage::Error { code, msg, .. } => return Err(server_error(code, &msg)),
                ServerMessage::Event { from, presence, .. } => {
                    return Ok(Some(Event::Presence { from, presence }));
                }
                ServerMessage::QueueDrained => {
                    if drain {
                        self.conn()?.flush_acks().await?;
                        return Ok(None);
                    }
                    return Ok(Some(Event::Drained));
                }
                _ => {}
            }
        }
    }

    /// Opens one queue item. Returns `None` for a duplicate.
    async fn receive(&mut self, item: QueueItem) -> anyhow::Result<Option<Event>> {
        let env = match item {
            QueueItem::Message { env } => env,
            QueueItem::Notice { notice } => {
                if let Notice::ApprovalRequest {
                    new_dek,
                    commit,
                    name,
                } = &notice
                {
                    // Kept so that `devices approve` can answer it after `recv` took it.
                    let mut saved = self.profile.approval_requests()?;
                    saved.retain(|r| &r.new_dek != new_dek);
                    saved.push(SeenRequest {
                        new_dek: *new_dek,
                        commit: *commit,
                        name: name.clone(),
                    });
                    self.profile.save_approval_requests(saved)?;
                }
                return Ok(Some(Event::Notice(notice)));
            }
            _ => return Ok(None),
        };
        if self.seen_set.contains(&env.id) {
            return Ok(None);
        }
        let refused = |reason: String| {
            Ok(Some(Event::Refused {
                from: env.from.clone(),
                reason,
            }))
        };
        // The sender's device must be live in a verified listing: the cache, or a fresh lookup.
        let mut state = self.profile.contact(&env.from)?;
        let known = state
            .directory
            .as_ref()
            .is_some_and(|d| d.is_live(&env.from_dek));
        if !known {
            if let Err(e) = self.lookup(&env.from.clone()).await {
                return refused(format!("cannot verify the sender: {e:#}"));
            }
            state = self.profile.contact(&env.from)?;
        }
        let Some(directory) = state.directory.clone() else {
            return refused("the sender has no verified directory".into());
        };
        if !directory.is_live(&env.from_dek) || state.revoked.contains(&env.from_dek) {
            return refused("the sending device is not a live device of the sender".into());
        }
        let dek = self.secrets.dek().context("not logged in")?;
        let me = self.uid().clone();
        let window = state.window(env.from_dek);
        let plain = match env.open(
            Recipient {
                uid: &me,
                dek: &dek,
            },
            directory.usk(),
            window,
        ) {
            Ok(p) => p,
            Err(e @ (EnvelopeError::Replay(_) | EnvelopeError::TooOld { .. })) => {
                return refused(format!("{e}"));
            }
            Err(e) => return refused(format!("{e}")),
        };
        self.profile.save_contact(&env.from, &state)?;
        self.seen.push_back(env.id);
        self.seen_set.insert(env.id);
        self.profile.save_seen(&mut self.seen)?;
        if self.seen.len() < self.seen_set.len() {
            self.seen_set = self.seen.iter().copied().collect();
        }
        let content = match Plaintext::decode(&plain) {
            Ok(c) => c,
            Err(e) => return refused(format!("unreadable content: {e}")),
        };
        Ok(Some(Event::Message(Received {
            from: env.from,
            id: env.id,
            content,
        })))
    }

    /// The account's roster as stored on the server, verified against this device's USK (the
    /// server cannot forge one).
    pub async fn roster(&mut self) -> anyhow::Result<Option<Roster>> {
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::RosterGet { rid })
            .await?;
        let ServerMessage::Roster { roster, .. } = answer else {
            bail!("unexpected answer to roster_get: {answer:?}");
        };
        let Some(roster) = roster else {
            return Ok(None);
        };
        let usk = self.secrets.usk().context("this device has no USK")?;
        if &roster.uid != self.uid() || roster.usk != usk.public() {
            bail!("the server returned a roster that is not this account's");
        }
        roster
            .verify()
            .map_err(|e| anyhow::anyhow!("the stored roster does not verify: {e}"))?;
        Ok(Some(roster))
    }

    /// Changes the roster: `edit` gets the contacts and the block list; the result is signed as
    /// the next version and stored.
    pub async fn edit_roster(
        &mut self,
        edit: impl FnOnce(&mut Vec<Contact>, &mut Vec<Uid>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Roster> {
        let current = self.roster().await?;
        let (mut contacts, mut blocked) = current
            .as_ref()
            .map(|r| (r.contacts.clone(), r.blocked.clone()))
            .unwrap_or_default();
        edit(&mut contacts, &mut blocked)?;
        let usk = self.secrets.usk().context("this device has no USK")?;
        let next = Roster::sign_next(
            &usk,
            self.uid().clone(),
            current.as_ref(),
            now(),
            contacts,
            blocked,
        );
        self.conn()?
            .request(|rid| ClientMessage::RosterPut {
                rid,
                roster: next.clone(),
            })
            .await?;
        Ok(next)
    }

    /// Publishes this user's presence to the contacts subscribed to it right now.
    pub async fn publish(&mut self, presence: Presence) -> anyhow::Result<()> {
        self.conn()?
            .request(|rid| ClientMessage::Publish {
                rid,
                presence: presence.clone(),
            })
            .await?;
        Ok(())
    }

    /// Subscribes this session to the presence of `uids` (each must share it with this user).
    pub async fn subscribe(&mut self, uids: &[Uid]) -> anyhow::Result<()> {
        let topics: Vec<Topic> = uids
            .iter()
            .map(|uid| Topic::Presence { uid: uid.clone() })
            .collect();
        self.conn()?
            .request(|rid| ClientMessage::Subscribe {
                rid,
                topics: topics.clone(),
            })
            .await?;
        Ok(())
    }

    /// Pings the server (keeps a listening session alive).
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.conn()?
            .request(|rid| ClientMessage::Ping { rid })
            .await?;
        Ok(())
    }

    /// Acknowledges what was processed and closes the session (it stays resumable).
    pub async fn bye(&mut self) -> anyhow::Result<()> {
        if let Some(mut conn) = self.conn.take() {
            conn.flush_acks().await?;
            conn.tx.send(&ClientMessage::Bye).await?;
        }
        Ok(())
    }
}
