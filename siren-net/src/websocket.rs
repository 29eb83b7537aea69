//! The device side of a session over a WebSocket (PROTOCOL.md §5.1): one binary message per
//! frame. The WebSocket is bridged to frames through a small in-memory pipe, so the session runs
//! on the same [`Sender`](crate::Sender) and [`Receiver`](crate::Receiver) as over TCP.
//!
//! [`crate::connect`] comes here for a `ws://` address (the CLI where only HTTP gets through,
//! the bench and the tests driving `sirend`'s web listener as a browser would); any stream
//! tokio-tungstenite can speak over works (a TLS stream for `wss:`, with [`bridge`]).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use siren_proto::handshake::Initiator;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{Connected, NetError, ReadHalf, WriteHalf, within};

/// The bridge's pipe: a few frames' worth.
const PIPE: usize = 64 * 1024;
/// Largest message the bridge takes from the server (its frames are bounded by its own
/// `max_frame`, at most 64 MiB).
const MAX_MESSAGE: usize = 64 << 20;

/// Opens `url` (`ws://host:port/ws`) and runs the device side of the handshake started in
/// `init` (its `hello` not sent yet) over it. Each handshake step, and opening the WebSocket, may
/// take at most `step_timeout`.
pub async fn connect(
    url: &str,
    init: Initiator,
    hello: Vec<u8>,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let opening = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = within(step_timeout, opening)
        .await?
        .map_err(|e| NetError::WebSocket(e.to_string()))?;
    let (rd, wr) = bridge(ws);
    crate::initiate(rd, wr, init, hello, step_timeout).await
}

/// The WebSocket as the two directions of a connection carrying frames: each binary message is
/// one frame. The bridge runs on its own task until either side closes.
pub fn bridge<S>(ws: WebSocketStream<S>) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut from_session, mut to_session) = tokio::io::split(ours);
        let inbound = async {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Binary(bytes) = message {
                    let Ok(len) = u32::try_from(bytes.len()) else {
                        break;
                    };
                    if to_session.write_all(&len.to_be_bytes()).await.is_err()
                        || to_session.write_all(&bytes).await.is_err()
                    {
                        break;
                    }
                }
            }
        };
        let outbound = async {
            while let Ok(frame) = crate::read_frame(&mut from_session, MAX_MESSAGE).await {
                if sink.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = inbound => {}
            () = outbound => {}
        }
        let _ = sink.close().await;
    });
    let (rd, wr) = tokio::io::split(theirs);
    (Box::new(rd), Box::new(wr))
}
