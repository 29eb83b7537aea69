//! A WebSocket client for tests of `sirend`'s web listener: the raw WebSocket (to send what a
//! browser might: an `Origin`, text, oversized or garbage messages), and siren-net's bridge to
//! frames, so the raw protocol helpers ([`crate::raw`]) run a real session over it.

use std::net::SocketAddr;

use futures_util::StreamExt as _;
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

/// The WebSocket as the frames of a connection (siren-net's bridge, as the bench uses it).
pub use siren_net::websocket::bridge;

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
