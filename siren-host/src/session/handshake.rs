//! The responder side of the handshake for client connections (PROTOCOL.md §7); a hello in the
//! `s2s` role is handed to [`crate::federation::inbound`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use siren_api::ErrorCode;
use siren_net::{NetError, ReadError, Receiver, Sender, read_frame, within, write_frame};
use siren_proto::handshake::{self, HandshakeError, Peer, Role, SessionRequest};
use siren_proto::keys::DekPublic;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::{Connection, Transport};

use crate::shared::Shared;

pub(super) type Established = (
    DekPublic,
    SessionRequest,
    Sender,
    Receiver,
    siren_proto::transcript::Digest,
);

/// Runs the responder side of the handshake with a deadline on each step. On a refused hello the
/// client gets a plaintext `error` frame before the connection closes. A hello in the `s2s` role
/// on the client listener goes to federation when it is enabled; on the web listener it is
/// refused like a disabled federation's (error 601): links are TCP only.
pub(super) async fn handshake(
    shared: &Arc<Shared>,
    connection: Connection,
    peer: SocketAddr,
    ticket: &mut crate::admission::Ticket,
) -> Result<Option<Established>, NetError> {
    let step = Duration::from_secs(shared.config().limits.handshake_timeout_secs);
    let max = shared.config().limits.max_frame as usize;
    let Connection {
        mut rd,
        mut wr,
        transport,
    } = connection;
    let Some(hello) = read_step(&mut rd, &mut wr, step).await? else {
        return Ok(None);
    };
    let links_here = transport == Transport::Tcp && shared.config().federation.enabled;
    let received = match handshake::read_hello(&shared.keys, Role::ClientToServer, &hello) {
        Ok(r) => r,
        Err(HandshakeError::WrongRole {
            got: Role::ServerToServer,
            ..
        }) if links_here => {
            let link = crate::federation::inbound::Incoming {
                hello: &hello,
                rd,
                wr,
                addr: peer,
                step,
                max,
            };
            crate::federation::inbound::accept(shared, link, ticket).await?;
            return Ok(None);
        }
        Err(e) => {
            let (code, text) = match &e {
                HandshakeError::WrongRole {
                    got: Role::ServerToServer,
                    ..
                } if transport == Transport::WebSocket => (
                    ErrorCode::FederationDisabled,
                    "server-to-server links are not accepted on the web listener".to_owned(),
                ),
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
    let Some(finish) = read_step(&mut rd, &mut wr, step).await? else {
        return Ok(None);
    };
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

/// Reads one handshake frame within `step`. A length of zero or above the handshake limit gets
/// a plaintext `error` 100, a client that stays silent an `error` 105, before the close
/// (PROTOCOL.md §5, §7.7); `None` then.
pub(crate) async fn read_step(
    rd: &mut (impl AsyncRead + Unpin),
    wr: &mut (impl AsyncWrite + Unpin),
    step: Duration,
) -> Result<Option<Vec<u8>>, NetError> {
    let (code, text) = match within(step, read_frame(rd, handshake::MAX_HANDSHAKE_FRAME)).await {
        Ok(Ok(frame)) => return Ok(Some(frame)),
        Ok(Err(ReadError::Io(e))) => return Err(e.into()),
        Ok(Err(ReadError::Frame(e))) => (ErrorCode::BadFrame, e.to_string()),
        Err(_) => (ErrorCode::Timeout, "handshake step timed out".to_owned()),
    };
    // Best effort, and never waiting long on a client that does not read.
    let frame = handshake::error_frame(code, &text);
    let _ = within(
        Duration::from_secs(1),
        write_frame(wr, &frame, handshake::MAX_HANDSHAKE_FRAME),
    )
    .await;
    if code == ErrorCode::BadFrame {
        // The refused frame's bytes may still be coming: read them away (briefly) so that
        // the close is no reset that could discard the error before the client reads it.
        use tokio::io::AsyncWriteExt as _;
        let _ = within(Duration::from_secs(1), wr.shutdown()).await;
        siren_net::drain_before_close(rd, Duration::from_secs(1), 1 << 20).await;
    }
    Ok(None)
}
