//! A WebSocket client for tests of `sirend`'s web listener: the raw WebSocket (to send what a
//! browser might: text, oversized or garbage messages) and a bridge to frames, so the raw
//! protocol helpers ([`crate::raw`]) run a real session over it.

use std::net::SocketAddr;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket to a server's `/ws`.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://addr/ws`, sending `origin` as a browser would (none: as other clients do).
pub async fn open(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    // Big enough to send an oversized message on purpose.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(ws)
}

/// The WebSocket as the frames of a connection: each binary message is one frame. The bridge runs
/// until either side closes.
pub fn bridge<S>(ws: WebSocketStream<S>) -> (siren_net::ReadHalf, siren_net::WriteHalf)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut from_client, mut to_client) = tokio::io::split(ours);
        let inbound = async {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Binary(bytes) = message {
                    let len = (bytes.len() as u32).to_be_bytes();
                    if to_client.write_all(&len).await.is_err()
                        || to_client.write_all(&bytes).await.is_err()
                    {
                        break;
                    }
                }
            }
        };
        let outbound = async {
            while let Ok(frame) = siren_net::read_frame(&mut from_client, 64 << 20).await {
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

/// How the server ended a WebSocket: the close code and reason, and the binary messages before.
#[derive(Debug)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
    pub binary: Vec<Vec<u8>>,
}

/// Reads until the server closes (10 s at most).
pub async fn until_closed(ws: &mut Ws) -> Closed {
    let mut binary = Vec::new();
    let reading = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Binary(b)) => binary.push(b.to_vec()),
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => {}
                Err(e) => return (0, format!("no close frame: {e}")),
            }
        }
        (0, "ended without a close frame".into())
    };
    let (code, reason) = tokio::time::timeout(std::time::Duration::from_secs(10), reading)
        .await
        .expect("the server closes the WebSocket in time");
    Closed {
        code,
        reason,
        binary,
    }
}
