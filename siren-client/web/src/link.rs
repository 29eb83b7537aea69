//! A session over the page's WebSocket: the device side of the handshake (siren-proto's
//! sans-IO `Initiator`, as `siren` runs it over TCP), then the session's messages, each sealed
//! into one binary WebSocket message.

use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_api::ServerName;
use siren_client_session::platform::within;
use siren_client_session::{Link, Opened};
use siren_proto::frame::DEFAULT_MAX_FRAME;
use siren_proto::handshake::{Initiator, MAX_HANDSHAKE_FRAME, SessionRequest, StaticShared};
use siren_proto::keys::{DekSecret, SekPublic};
use siren_proto::message::{self, ClientMessage, DecodeErrorKind, ServerMessage};
use siren_proto::transport::{Opener, Sealer};

use crate::socket::Socket;

/// The close code a page sends when it gives up on a connection: browsers let pages send only
/// 1000 and 3000–4999 (so not 1002); the reason says why.
const PROTOCOL_ERROR: u16 = 1000;

/// Where the server is and who it must be.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    /// The web listener's WebSocket (`wss://chat.example.com/ws`).
    pub url: String,
    /// The server's name (the domain of its users' UIDs).
    pub name: ServerName,
    /// Its SEK: the handshake fails unless the other end holds it.
    pub sek: SekPublic,
}

/// A session's messages over a WebSocket.
pub struct WsLink {
    socket: Socket,
    sealer: Sealer,
    opener: Opener,
    max_frame: usize,
}

/// Opens a WebSocket to `server` and runs the handshake as device `dek`, whose agreement with
/// the server's key is `shared` (kept by the caller across reconnections). Opening and each
/// handshake step may take at most `step` (timed by `sleep`).
pub async fn open<T: Future<Output = ()>>(
    server: &ServerAddress,
    shared: &StaticShared,
    dek: &DekSecret,
    request: SessionRequest,
    step: Duration,
    sleep: impl Fn(Duration) -> T,
) -> anyhow::Result<Opened<WsLink>> {
    if !shared.is_for(&dek.public(), &server.sek) {
        bail!(
            "the kept key agreement is not this device's with {}'s key",
            server.name
        );
    }
    let (init, hello) = Initiator::client_with(
        &server.name,
        shared,
        dek,
        request,
        &mut siren_proto::os_rng(),
    )?;
    let socket = Socket::connect(&server.url)?;
    within(sleep(step), socket.opened())
        .await
        .with_context(|| format!("{} did not open within {step:?}", server.url))?
        .with_context(|| format!("cannot reach {}", server.url))?;
    socket.send(&hello)?;
    let reply = within(sleep(step), socket.next(MAX_HANDSHAKE_FRAME))
        .await
        .with_context(|| format!("no handshake answer within {step:?}"))??;
    let (done, finish) = match init.read_reply(&reply) {
        Ok(done) => done,
        Err(e) => {
            socket.close(PROTOCOL_ERROR, "handshake failed");
            return Err(anyhow::Error::new(e).context(format!(
                "the server at {} did not prove it is {}",
                server.url, server.name
            )));
        }
    };
    socket.send(&finish)?;
    let (sealer, opener) = done.transport.split();
    Ok(Opened {
        link: WsLink {
            socket,
            sealer,
            opener,
            max_frame: DEFAULT_MAX_FRAME,
        },
        handshake_hash: *done.handshake_hash.as_bytes(),
    })
}

impl Link for WsLink {
    async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        let sealed = self.sealer.seal(&message::encode(msg))?;
        if sealed.len() > self.max_frame {
            bail!(
                "a message of {} bytes is larger than the server's limit of {}",
                sealed.len(),
                self.max_frame
            );
        }
        Ok(self.socket.send(&sealed)?)
    }

    async fn recv(&mut self) -> anyhow::Result<Option<ServerMessage>> {
        let sealed = match self.socket.next(DEFAULT_MAX_FRAME).await {
            Ok(sealed) => sealed,
            Err(e) => {
                self.socket.close(PROTOCOL_ERROR, "bad message");
                return Err(e.into());
            }
        };
        // A frame that does not open is not from the server this session authenticated:
        // nothing more from this connection can be trusted.
        let plain = match self.opener.open(&sealed) {
            Ok(plain) => plain,
            Err(e) => {
                self.socket.close(PROTOCOL_ERROR, "bad frame");
                return Err(e.into());
            }
        };
        match message::decode::<ServerMessage>(&plain) {
            Ok(msg) => Ok(Some(msg)),
            // An authentic message of a type a newer server added: skipped (PROTOCOL.md §21).
            Err(e) if matches!(e.kind, DecodeErrorKind::UnknownType(_)) => Ok(None),
            Err(e) => {
                self.socket.close(PROTOCOL_ERROR, "bad message");
                Err(e.into())
            }
        }
    }

    fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        self.socket.close(1000, "");
    }
}
