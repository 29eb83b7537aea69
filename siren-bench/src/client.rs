//! Raw protocol sessions: the handshake (through `siren-net`), `PLAIN` login, device
//! registration, lookup and resumption. The bench drives the protocol directly so that it
//! measures the server, not the `siren` client's profile files.

use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_api::{Uid, Username};
use siren_net::{Connected, connect, connect_with};
use siren_proto::handshake::{SessionRequest, StaticShared};
use siren_proto::ids::SessionId;
use siren_proto::keys::{DekSecret, UskSecret};
use siren_proto::message::{ClientMessage, NextStep, QueueItem, ServerMessage};
use siren_proto::records::{DeviceRecordDraft, DirectoryListing};
use siren_proto::transcript::Digest;

use crate::server::{PASSWORD, Target};

/// How long any single answer may take before the bench gives up.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A user's identity as the bench holds it: the UID and the signing key (USK).
pub struct Account {
    /// `user@server`.
    pub uid: Uid,
    /// The user's signing key, made by the bench on the first registration.
    pub usk: UskSecret,
}

impl Account {
    /// A fresh USK for `user` on `target`.
    pub fn new(target: &Target, user: &str) -> anyhow::Result<Account> {
        let user = Username::parse(user).with_context(|| format!("username {user:?}"))?;
        Ok(Account {
            uid: Uid::new(user, target.name.clone()),
            usk: UskSecret::generate(&mut siren_proto::os_rng()),
        })
    }
}

/// A registered device: its key and a logged-in session id bound to it (for resumption).
pub struct Device {
    /// The device's key.
    pub dek: DekSecret,
    /// A session id the server will resume for this DEK without a login.
    pub sid: SessionId,
    /// The DEK's agreement with the server's key, kept for the device's later connections as
    /// `siren-client` keeps it.
    pub shared: StaticShared,
}

/// Runs the handshake (over TCP, or the server's WebSocket for a `ws://` target address).
pub async fn open(
    target: &Target,
    dek: &DekSecret,
    request: SessionRequest,
) -> anyhow::Result<Connected> {
    connect(
        &target.addr,
        &target.name,
        &target.sek,
        dek,
        request,
        ANSWER_TIMEOUT,
    )
    .await
    .with_context(|| format!("cannot open a session with {}", target.addr))
}

/// The next message from the server, within [`ANSWER_TIMEOUT`]. An `error` is returned as an
/// error.
pub async fn recv(conn: &mut Connected) -> anyhow::Result<ServerMessage> {
    let msg = tokio::time::timeout(ANSWER_TIMEOUT, conn.receiver.recv::<ServerMessage>())
        .await
        .context("the server did not answer in time")?
        .context("reading from the server")?;
    if let ServerMessage::Error { rid, code, msg } = &msg {
        bail!("server error {code} (request {rid:?}): {msg}");
    }
    Ok(msg)
}

/// Reads the `welcome`; returns the session id and whether it was resumed.
pub async fn welcome(conn: &mut Connected) -> anyhow::Result<(SessionId, bool)> {
    match recv(conn).await? {
        ServerMessage::Welcome { sid, resumed, .. } => Ok((sid, resumed)),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// Acknowledges the notice delivered as `seq`.
async fn ack_notice(conn: &mut Connected, seq: u64) -> anyhow::Result<()> {
    conn.sender
        .send(&ClientMessage::Ack { seqs: vec![seq] })
        .await
        .context("acknowledging a notice")
}

/// Waits for `queue_drained` (a device that just became ready, with no message queued; the
/// notices it may have, such as the directory changes of its user's later devices, are
/// acknowledged).
pub async fn drained(conn: &mut Connected) -> anyhow::Result<()> {
    loop {
        match recv(conn).await? {
            ServerMessage::QueueDrained => return Ok(()),
            ServerMessage::Deliver {
                seq,
                item: QueueItem::Notice { .. },
            } => ack_notice(conn, seq).await?,
            ServerMessage::Deliver { seq, item } => {
                bail!("unexpected delivery to an empty queue: item {seq}, {item:?}")
            }
            _ => {}
        }
    }
}

/// Opens a session with a fresh DEK and logs in as `uid` with `PLAIN`: the DEK, the
/// connection, the session id and the answer to `auth_start`.
pub async fn log_in(
    target: &Target,
    uid: &Uid,
) -> anyhow::Result<(DekSecret, Connected, SessionId, ServerMessage)> {
    let dek = DekSecret::generate(&mut siren_proto::os_rng());
    let mut conn = open(target, &dek, SessionRequest::Open).await?;
    let (sid, _) = welcome(&mut conn).await?;
    match recv(&mut conn).await? {
        ServerMessage::AuthMechanisms { mechs } if mechs.iter().any(|m| m == "PLAIN") => {}
        other => bail!("expected auth_mechanisms offering PLAIN, got {other:?}"),
    }
    let user = uid.user().as_str();
    conn.sender
        .send(&ClientMessage::AuthStart {
            rid: 1,
            mech: "PLAIN".into(),
            data: format!("\0{user}\0{PASSWORD}").into_bytes(),
        })
        .await?;
    let answer = recv(&mut conn).await?;
    Ok((dek, conn, sid, answer))
}

/// Opens a session with a fresh DEK, logs in as `account` with `PLAIN` and registers the DEK
/// (the user's first device, or the next entry of its chain: the bench holds the USK, so no
/// approval is needed). Returns once the device is ready and its (empty) queue drained.
pub async fn enroll(target: &Target, account: &Account) -> anyhow::Result<(Device, Connected)> {
    let (dek, mut conn, sid, answer) = log_in(target, &account.uid).await?;
    let user = account.uid.user().as_str();
    let (seq, prev) = match answer {
        ServerMessage::AuthSuccess {
            next: NextStep::CreateUser,
            ..
        } => (1, Digest::ZERO),
        ServerMessage::AuthSuccess {
            next: NextStep::AwaitApproval { listing },
            ..
        } => (listing.head.seq + 1, listing.head.hash),
        ServerMessage::AuthSuccess {
            next: NextStep::Ready,
            ..
        } => bail!("a fresh DEK cannot already be registered"),
        other => bail!("login as {user} failed: {other:?}"),
    };
    let record = DeviceRecordDraft {
        uid: account.uid.clone(),
        dek: dek.public(),
        seq,
        prev,
        ts: 0,
        name: Some(format!("bench-{seq}")),
    }
    .sign(&account.usk);
    conn.sender
        .send(&ClientMessage::Register { rid: 2, record })
        .await?;
    // A device that is not registered yet already gets its queue (approval notices), so its
    // `queue_drained` may come before the answer to `register`.
    let mut was_drained = false;
    loop {
        match recv(&mut conn).await? {
            ServerMessage::Ok { rid: 2 } => break,
            ServerMessage::QueueDrained => was_drained = true,
            ServerMessage::Deliver { seq, .. } => ack_notice(&mut conn, seq).await?,
            other => bail!("registering a device of {user} failed: {other:?}"),
        }
    }
    if !was_drained {
        drained(&mut conn).await?;
    }
    let shared = StaticShared::new(&dek, &target.sek)?;
    Ok((Device { dek, sid, shared }, conn))
}

/// Resumes `device`'s session; returns the connection right after the `welcome` (queued items
/// and `queue_drained` follow).
pub async fn resume(target: &Target, device: &Device) -> anyhow::Result<Connected> {
    let mut conn = connect_with(
        &target.addr,
        &target.name,
        &device.shared,
        &device.dek,
        SessionRequest::Resume(device.sid),
        ANSWER_TIMEOUT,
    )
    .await
    .with_context(|| format!("cannot resume a session with {}", target.addr))?;
    match welcome(&mut conn).await? {
        (_, true) => Ok(conn),
        (_, false) => bail!("the server did not resume the session"),
    }
}

/// Looks a user up; returns the listing.
pub async fn lookup(conn: &mut Connected, rid: u32, uid: &Uid) -> anyhow::Result<DirectoryListing> {
    conn.sender
        .send(&ClientMessage::Lookup {
            rid,
            uid: uid.clone(),
        })
        .await?;
    loop {
        match recv(conn).await? {
            ServerMessage::Directory { rid: r, listing } if r == rid => return Ok(listing),
            ServerMessage::Deliver { .. } | ServerMessage::QueueDrained => {}
            other => bail!("expected the directory of {uid}, got {other:?}"),
        }
    }
}

/// Sends `bye` and closes the connection.
pub async fn bye(mut conn: Connected) -> anyhow::Result<()> {
    conn.sender.send(&ClientMessage::Bye).await?;
    Ok(())
}
