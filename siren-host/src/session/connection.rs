//! What a client connection arrived on: a TCP socket of the client listener, or a WebSocket of
//! the web listener ([`crate::web`]), bridged to the same frames. Either way the session code
//! that follows is the same.

use siren_net::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The client listener (`[server] listen`): frames on TCP.
    Tcp,
    /// The web listener (`[web] listen`): one frame per binary WebSocket message. Federation
    /// links are not accepted here.
    WebSocket,
}

impl Transport {
    /// The name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket => "websocket",
        }
    }
}

/// A client connection's two directions and its transport.
pub struct Connection {
    /// Frames from the client.
    pub rd: ReadHalf,
    /// Frames to the client.
    pub wr: WriteHalf,
    /// Which listener it came through.
    pub transport: Transport,
}

impl Connection {
    /// A TCP connection of the client listener (Nagle off: frames are small and answered).
    pub fn tcp(stream: TcpStream) -> std::io::Result<Connection> {
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Connection {
            rd: Box::new(rd),
            wr: Box::new(wr),
            transport: Transport::Tcp,
        })
    }
}
