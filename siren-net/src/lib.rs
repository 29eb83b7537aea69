//! The thin tokio driver over `siren-proto`.
//!
//! `siren-proto` decides every byte; this crate only moves them: frames on TCP sockets
//! ([`frames`]), the two directions of an established session ([`Sender`], [`Receiver`]), and
//! the initiator side of the handshake ([`connect`]), which devices use to reach their server and
//! (later) servers use to reach each other, and DNS discovery of servers ([`discovery`]: SRV
//! targets and the published SEKs, PROTOCOL.md §4; [`address`]: which addresses are public).
//! `sirend`, the `siren` client, `siren-bench` and the integration tests share it, so there is one
//! implementation of each step.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod discovery;
pub mod frames;
pub mod websocket;

use std::time::Duration;

use siren_api::ServerName;
use siren_proto::handshake::{HandshakeError, Initiator, SessionRequest};
use siren_proto::keys::{DekSecret, SekPublic};
use siren_proto::message::{self, DecodeError, WireMessage};
use siren_proto::transcript::Digest;
use siren_proto::transport::{Opener, Sealer, TransportError};
use siren_proto::{frame, handshake};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use frames::{ReadError, read_frame, write_frame};

/// The reading half of a connection: a TCP socket's, or a WebSocket's as `sirend` bridges it
/// (one binary message per frame). Boxed so one session code serves every transport.
pub type ReadHalf = Box<dyn AsyncRead + Send + Sync + Unpin>;
/// The writing half of a connection (see [`ReadHalf`]).
pub type WriteHalf = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// Why a session could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The socket failed or the peer closed it.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's length is zero or above the maximum.
    #[error("frame: {0}")]
    Frame(#[from] frame::FrameError),
    /// The handshake failed (including the server refusing it with an error frame).
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A frame failed to decrypt: the connection cannot continue.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A message could not be decoded.
    #[error("message: {0}")]
    Decode(#[from] DecodeError),
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The WebSocket could not be opened ([`websocket::connect`]).
    #[error("websocket: {0}")]
    WebSocket(String),
}

impl From<ReadError> for NetError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => NetError::Io(e),
            ReadError::Frame(e) => NetError::Frame(e),
        }
    }
}

/// The sending direction of an established session.
pub struct Sender {
    wr: WriteHalf,
    sealer: Sealer,
    max_frame: usize,
}

impl Sender {
    /// Wraps a connection's writing half and its transport direction; frames are limited to
    /// `max_frame`.
    pub fn new(wr: WriteHalf, sealer: Sealer, max_frame: usize) -> Self {
        Sender {
            wr,
            sealer,
            max_frame,
        }
    }

    /// Encodes, encrypts and writes one message.
    pub async fn send<M: WireMessage>(&mut self, msg: &M) -> Result<(), NetError> {
        self.send_encoded(&message::encode(msg)).await
    }

    /// Encrypts and writes one already-encoded message.
    pub async fn send_encoded(&mut self, plaintext: &[u8]) -> Result<(), NetError> {
        let ct = self.sealer.seal(plaintext)?;
        write_frame(&mut self.wr, &ct, self.max_frame).await?;
        Ok(())
    }

    /// Encrypts several already-encoded messages and writes them with one write.
    pub async fn send_encoded_batch(&mut self, plaintexts: &[Vec<u8>]) -> Result<(), NetError> {
        use tokio::io::AsyncWriteExt as _;
        let mut out = Vec::with_capacity(plaintexts.iter().map(|p| p.len() + 32).sum());
        for plain in plaintexts {
            let ct = self.sealer.seal(plain)?;
            frame::encode_into(&mut out, &ct, self.max_frame)?;
        }
        self.wr.write_all(&out).await?;
        Ok(())
    }

    /// Sets the largest frame the peer accepts (from its `welcome`).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Flushes and closes the writing direction (TCP: a FIN after the last frame); the
    /// reading direction stays open, e.g. for [`Receiver::drain_before_close`].
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        use tokio::io::AsyncWriteExt as _;
        self.wr.shutdown().await?;
        Ok(())
    }
}

/// The receiving direction of an established session.
///
/// [`Receiver::recv_plain`] and [`Receiver::recv`] are cancel-safe: a frame's progress lives in
/// the receiver, so a caller may use them in `tokio::select!` and call again later without losing
/// bytes. An idle receiver holds no buffer; a frame's buffer is allocated once its length prefix
/// has been checked against the maximum.
pub struct Receiver {
    rd: ReadHalf,
    opener: Opener,
    max_frame: usize,
    header: [u8; frame::HEADER_LEN],
    header_len: usize,
    body: Option<Vec<u8>>,
    body_len: usize,
}

impl Receiver {
    /// Wraps a connection's reading half and its transport direction; frames above `max_frame`
    /// are refused.
    pub fn new(rd: ReadHalf, opener: Opener, max_frame: usize) -> Self {
        Receiver {
            rd,
            opener,
            max_frame,
            header: [0; frame::HEADER_LEN],
            header_len: 0,
            body: None,
            body_len: 0,
        }
    }

    /// Reads and decrypts one frame.
    pub async fn recv_plain(&mut self) -> Result<Vec<u8>, NetError> {
        use tokio::io::AsyncReadExt as _;
        let eof = || NetError::Io(std::io::ErrorKind::UnexpectedEof.into());
        loop {
            match self.body.as_mut() {
                None => {
                    let n = self.rd.read(&mut self.header[self.header_len..]).await?;
                    if n == 0 {
                        return Err(eof());
                    }
                    self.header_len += n;
                    if self.header_len == frame::HEADER_LEN {
                        let len = frame::parse_header(self.header, self.max_frame)?;
                        self.body = Some(vec![0; len]);
                        self.body_len = 0;
                    }
                }
                Some(body) => {
                    let n = self.rd.read(&mut body[self.body_len..]).await?;
                    if n == 0 {
                        return Err(eof());
                    }
                    self.body_len += n;
                    if self.body_len == body.len() {
                        let ct = self.body.take().unwrap_or_default();
                        self.header_len = 0;
                        return Ok(self.opener.open(&ct)?);
                    }
                }
            }
        }
    }

    /// Reads, decrypts and decodes one message.
    pub async fn recv<M: WireMessage>(&mut self) -> Result<M, NetError> {
        let plain = self.recv_plain().await?;
        Ok(message::decode(&plain)?)
    }

    /// Reads and drops what the peer still sends, until it closes, `max` bytes have come or
    /// `limit` has passed (a lingering close). Closing a TCP socket with unread bytes makes the
    /// kernel reset the connection, and the reset can reach the peer before it has read the
    /// last frame written to it (an `error` saying why it is closed) or while it is still
    /// writing (its write then fails): call this after writing that frame and
    /// [`Sender::shutdown`].
    pub async fn drain_before_close(&mut self, limit: Duration, max: u64) {
        drain_before_close(&mut self.rd, limit, max).await;
    }
}

/// How long a lingering close ([`drain_before_close`]) waits at most for the peer to close
/// its side after a connection was refused.
pub const LINGER: Duration = Duration::from_secs(2);
/// Most bytes a lingering close reads and drops.
pub const LINGER_BYTES: u64 = 64 << 20;

/// [`Receiver::drain_before_close`] on a bare reading half (before the handshake is done, or
/// below a WebSocket).
pub async fn drain_before_close<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    limit: Duration,
    max: u64,
) {
    use tokio::io::AsyncReadExt as _;
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(limit, tokio::io::copy(&mut rd.take(max), &mut sink)).await;
}

/// A session opened by [`connect`].
pub struct Connected {
    /// Sending half.
    pub sender: Sender,
    /// Receiving half.
    pub receiver: Receiver,
    /// The server's new SEK, if it announced a rotation: update the pin.
    pub rotated_sek: Option<SekPublic>,
    /// The handshake hash (channel binding).
    pub handshake_hash: Digest,
}

/// Connects to a server as a device and runs the handshake. Each handshake step may take at
/// most `step_timeout`. `addr` is `host:port` (TCP), or `ws://host:port/ws` for a server's web
/// listener ([`websocket::connect`], PROTOCOL.md §5.1).
pub async fn connect(
    addr: &str,
    server: &ServerName,
    sek: &SekPublic,
    dek: &DekSecret,
    request: SessionRequest,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    if addr.starts_with("ws://") {
        return websocket::connect(addr, server, sek, dek, request, step_timeout).await;
    }
    let (init, hello) = Initiator::client(server, sek, dek, request, &mut siren_proto::os_rng())?;
    run_initiator(TcpStream::connect(addr), init, hello, step_timeout).await
}

/// [`connect`] from the local address `from` (a test acting as clients on several addresses
/// binds 127.0.0.2, 127.0.0.3, …: all of 127/8 is loopback on Linux).
pub async fn connect_from(
    from: std::net::IpAddr,
    addr: std::net::SocketAddr,
    server: &ServerName,
    sek: &SekPublic,
    dek: &DekSecret,
    request: SessionRequest,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let (init, hello) = Initiator::client(server, sek, dek, request, &mut siren_proto::os_rng())?;
    let connecting = async move {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(from, 0))?;
        socket.connect(addr).await
    };
    run_initiator(connecting, init, hello, step_timeout).await
}

/// Opens a federation link (role `s2s`, PROTOCOL.md §17) over `stream`, a connection to `peer`
/// (made by [`discovery::connect_within`]): this server `own`, proving its SEK `own_sek`, runs
/// the handshake with `peer`, whose SEK must be `peer_sek`.
pub async fn connect_link(
    stream: TcpStream,
    own: &ServerName,
    own_sek: &siren_proto::keys::SekSecret,
    peer: &ServerName,
    peer_sek: &SekPublic,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let (init, hello) =
        Initiator::server(own, own_sek, peer, peer_sek, &mut siren_proto::os_rng())?;
    run_initiator(std::future::ready(Ok(stream)), init, hello, step_timeout).await
}

/// Runs the device side of the handshake over a connection the caller opened: `rd` and `wr`
/// carry frames (a WebSocket bridged to frames, say). Each handshake step may take at most
/// `step_timeout`.
pub async fn connect_over(
    rd: ReadHalf,
    wr: WriteHalf,
    server: &ServerName,
    sek: &SekPublic,
    dek: &DekSecret,
    request: SessionRequest,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let (init, hello) = Initiator::client(server, sek, dek, request, &mut siren_proto::os_rng())?;
    initiate(rd, wr, init, hello, step_timeout).await
}

/// Connects, then runs the initiator's side of the handshake ([`initiate`]).
async fn run_initiator(
    connecting: impl Future<Output = std::io::Result<TcpStream>>,
    init: Initiator,
    hello: Vec<u8>,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let stream = within(step_timeout, connecting).await??;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    initiate(Box::new(rd), Box::new(wr), init, hello, step_timeout).await
}

/// Sends `hello`, reads the reply, sends `finish`: the initiator's side of the handshake with a
/// deadline on each step.
async fn initiate(
    mut rd: ReadHalf,
    mut wr: WriteHalf,
    init: Initiator,
    hello: Vec<u8>,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    write_frame(&mut wr, &hello, handshake::MAX_HANDSHAKE_FRAME).await?;
    let reply = within(
        step_timeout,
        read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME),
    )
    .await??;
    let (done, finish) = init.read_reply(&reply)?;
    write_frame(&mut wr, &finish, handshake::MAX_HANDSHAKE_FRAME).await?;
    let (sealer, opener) = done.transport.split();
    Ok(Connected {
        sender: Sender::new(wr, sealer, frame::DEFAULT_MAX_FRAME),
        receiver: Receiver::new(rd, opener, frame::DEFAULT_MAX_FRAME),
        rotated_sek: done.rotated_sek,
        handshake_hash: done.handshake_hash,
    })
}

/// Runs `fut` with a deadline.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, NetError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NetError::Timeout(limit))
}
