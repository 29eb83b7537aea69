//! A WebSocket session: the bridge between binary WebSocket messages and the frames the session
//! code reads and writes, so a browser's session is served by exactly the code that serves a TCP
//! one (the same handshake, limits, timeouts and rate limits).
//!
//! One binary message carries one frame's payload; the message's length stands for the frame's
//! 4-byte length prefix (PROTOCOL.md §5.1). Inbound messages are written into an in-memory pipe
//! with their length in front, and the session's frames are read back out of it and sent as
//! messages. The pipe is small and bounded: while the session handles a request it does not
//! read, the bridge stops reading the WebSocket, and TCP slows the client down, as on the client
//! listener.
//!
//! The WebSocket is closed with a code that says why (PROTOCOL.md §5.1):
//! 1000 when the session ended (after any `error` frame it sent), 1003 for a text message,
//! 1009 for a message larger than `max_frame` (refused by the WebSocket layer before it is
//! buffered), 1002 for a broken WebSocket (when a close frame can still be sent), 1013 when the
//! connection was refused before the handshake (after a plaintext `error` 203 frame, as on TCP).
//!
//! After its close frame the server stops writing and reads, and drops, whatever the client
//! still sends — the rest of a refused message, the client's own close frame — until the client
//! closes its side or [`siren_net::LINGER`] passes (at most [`siren_net::LINGER_BYTES`]; the same
//! lingering close a TCP session makes after an `error` 100). Closing a connection with
//! unread bytes would make the kernel reset it, and a reset destroys the close frame on its way:
//! a browser then reports 1006 without the reason.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::admission::{Refusal, Ticket};
use crate::session::{self, Connection, Transport};
use crate::shared::Shared;

/// The bridge's pipe: a few frames' worth, so the session's reading paces the client.
const PIPE: usize = 64 * 1024;

/// An upgraded connection, as a WebSocket.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// The WebSocket on an upgraded connection: messages and frames of at most `max` bytes (a
/// longer one is refused before it is buffered).
pub async fn accept(upgraded: Upgraded, max: usize) -> WebSocket {
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await
}

/// Serves one upgraded WebSocket as a session to the end.
pub async fn run(
    shared: Arc<Shared>,
    socket: WebSocket,
    peer: SocketAddr,
    conn: u64,
    ticket: Ticket,
) {
    let max = shared.config().limits.max_frame as usize;
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (rd, wr) = tokio::io::split(theirs);
    let connection = Connection {
        rd: Box::new(rd),
        wr: Box::new(wr),
        transport: Transport::WebSocket,
    };
    let session = session::serve(shared, connection, peer, conn, ticket);
    tokio::join!(session, bridge(socket, ours, max));
}

/// Tells a refused client why (a plaintext `error` 203 frame, as on TCP) and closes with 1013.
pub async fn refuse(mut socket: WebSocket, refusal: Refusal) {
    let frame = siren_proto::handshake::error_frame(
        siren_api::ErrorCode::RateLimited,
        &format!("{}; try again later", refusal.as_str()),
    );
    let _ = socket.send(Message::Binary(frame.into())).await;
    close(
        socket,
        Some(CloseFrame {
            code: CloseCode::Again,
            reason: "try again later".into(),
        }),
    )
    .await;
}

/// Moves messages between `socket` and the session's end of the pipe until either side ends;
/// then closes the WebSocket with the reason, and drops the pipe (the session sees its end).
async fn bridge(socket: WebSocket, pipe: tokio::io::DuplexStream, max: usize) {
    let (mut sink, mut stream) = socket.split();
    let (mut from_session, mut to_session) = tokio::io::split(pipe);
    let inbound = async {
        loop {
            let message = match stream.next().await {
                None => return None,
                Some(Ok(message)) => message,
                Some(Err(e)) => return Some(broken(&e)),
            };
            match message {
                Message::Binary(bytes) => {
                    // `max_message_size` bounds it; a length that does not fit is refused as
                    // the session would refuse it.
                    let Ok(len) = u32::try_from(bytes.len()) else {
                        return Some(too_big(max));
                    };
                    let written = async {
                        to_session.write_all(&len.to_be_bytes()).await?;
                        to_session.write_all(&bytes).await
                    };
                    if written.await.is_err() {
                        // The session ended; the outbound side closes.
                        return None;
                    }
                }
                Message::Text(_) => {
                    return Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "Siren carries binary messages only".into(),
                    });
                }
                Message::Close(_) => return None,
                // Answered by the WebSocket layer; raw frames are not read as such.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    let outbound = async {
        // The session's frames, each sent as one message; the end of the pipe is the session's.
        while let Ok(frame) = siren_net::read_frame(&mut from_session, max).await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return None;
            }
        }
        Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "session ended".into(),
        })
    };
    let close = tokio::select! {
        close = inbound => close,
        close = outbound => close,
    };
    match sink.reunite(stream) {
        Ok(socket) => self::close(socket, close).await,
        // Halves of two sockets: cannot be (they were split just above).
        Err(_) => tracing::warn!("a WebSocket's halves did not match"),
    }
}

/// Sends the close frame (when the client did not close first), then [lingers](siren_net::LINGER) until
/// the client closes its side, and drops the connection.
async fn close(mut socket: WebSocket, close: Option<CloseFrame>) {
    if let Some(close) = close {
        tracing::debug!(code = u16::from(close.code), reason = %close.reason, "closing a WebSocket");
        let _ = socket.send(Message::Close(Some(close))).await;
    }
    // Also sends the answer to a client's close frame.
    let _ = socket.flush().await;
    let io = socket.get_mut();
    let _ = io.shutdown().await;
    siren_net::drain_before_close(io, siren_net::LINGER, siren_net::LINGER_BYTES).await;
}

/// The close for a WebSocket the layer below refused: too large, or not WebSocket.
fn broken(e: &tungstenite::Error) -> CloseFrame {
    match e {
        tungstenite::Error::Capacity(_) => CloseFrame {
            code: CloseCode::Size,
            reason: "message larger than max_frame".into(),
        },
        _ => CloseFrame {
            code: CloseCode::Protocol,
            reason: "WebSocket protocol error".into(),
        },
    }
}

fn too_big(max: usize) -> CloseFrame {
    CloseFrame {
        code: CloseCode::Size,
        reason: format!("message larger than max_frame ({max} bytes)").into(),
    }
}
