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
use siren_proto::handshake::{HandshakeError, Initiator, SessionRequest, StaticShared};
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
///
/// Reads go through a buffer on the stack of the call that polls the socket ([`SCRATCH`]
/// bytes), so one `read` takes a small frame's length prefix and body together, and the frames a
/// peer wrote back to back come in with one `read` too. Bytes read past the end of a frame wait
/// in [`Receiver`] for the next call; between frames nothing is held, which keeps an idle
/// session as small as without a buffer.
pub struct Receiver {
    rd: ReadHalf,
    opener: Opener,
    max_frame: usize,
    header: [u8; frame::HEADER_LEN],
    header_len: usize,
    body: Option<Vec<u8>>,
    body_len: usize,
    /// Bytes read past the frame last returned, and how many of them were used since.
    carry: Vec<u8>,
    carry_used: usize,
}

/// The peer closed the connection in the middle of a frame, or before the next one.
fn eof() -> NetError {
    NetError::Io(std::io::ErrorKind::UnexpectedEof.into())
}

/// Size of the stack buffer one read of a [`Receiver`] goes through. A body that still needs
/// more than this is read straight into its own buffer.
pub const SCRATCH: usize = 4096;

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
            carry: Vec::new(),
            carry_used: 0,
        }
    }

    /// Reads and decrypts one frame.
    pub async fn recv_plain(&mut self) -> Result<Vec<u8>, NetError> {
        loop {
            // Bytes already read come first.
            if self.carry_used < self.carry.len() {
                let carry = std::mem::take(&mut self.carry);
                let used = self.feed(carry.get(self.carry_used..).unwrap_or_default());
                self.carry = carry;
                self.carry_used += used?;
                if self.carry_used == self.carry.len() {
                    self.carry = Vec::new();
                    self.carry_used = 0;
                }
            } else if let Some(body) = self
                .body
                .as_mut()
                .filter(|b| b.len() - self.body_len > SCRATCH)
            {
                // A large body: read straight into it, never past its end.
                use tokio::io::AsyncReadExt as _;
                let n = self.rd.read(&mut body[self.body_len..]).await?;
                if n == 0 {
                    return Err(eof());
                }
                self.body_len += n;
            } else {
                self.read_some().await?;
            }
            if let Some(body) = self.body.as_ref()
                && self.body_len == body.len()
            {
                let ct = self.body.take().unwrap_or_default();
                self.header_len = 0;
                self.body_len = 0;
                return Ok(self.opener.open(&ct)?);
            }
        }
    }

    /// Reads once from the socket through a stack buffer and feeds what came; what is past the
    /// current frame's end is kept in `carry`. The buffer lives only during the poll, so a
    /// receiver waiting for data holds none.
    async fn read_some(&mut self) -> Result<(), NetError> {
        std::future::poll_fn(|cx| {
            let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); SCRATCH];
            let mut buf = tokio::io::ReadBuf::uninit(&mut scratch);
            match std::pin::Pin::new(&mut self.rd).poll_read(cx, &mut buf) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(NetError::Io(e))),
                std::task::Poll::Ready(Ok(())) => {
                    let got = buf.filled();
                    if got.is_empty() {
                        return std::task::Poll::Ready(Err(eof()));
                    }
                    let done = self.feed(got).map(|used| {
                        if let Some(rest) = got.get(used..)
                            && !rest.is_empty()
                        {
                            self.carry = rest.to_vec();
                            self.carry_used = 0;
                        }
                    });
                    std::task::Poll::Ready(done)
                }
            }
        })
        .await
    }

    /// Moves bytes into the frame being read (its length prefix, then its body, allocated once
    /// the prefix has been checked) and stops at the frame's end; returns how many were used.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, NetError> {
        let mut used = 0;
        if self.body.is_none() {
            let want = (frame::HEADER_LEN - self.header_len).min(bytes.len());
            if let (Some(dst), Some(src)) = (
                self.header.get_mut(self.header_len..self.header_len + want),
                bytes.get(..want),
            ) {
                dst.copy_from_slice(src);
            }
            self.header_len += want;
            used = want;
            if self.header_len < frame::HEADER_LEN {
                return Ok(used);
            }
            let len = frame::parse_header(self.header, self.max_frame)?;
            self.body = Some(vec![0; len]);
            self.body_len = 0;
        }
        if let Some(body) = self.body.as_mut() {
            let rest = bytes.get(used..).unwrap_or_default();
            let want = (body.len() - self.body_len).min(rest.len());
            if let (Some(dst), Some(src)) = (
                body.get_mut(self.body_len..self.body_len + want),
                rest.get(..want),
            ) {
                dst.copy_from_slice(src);
            }
            self.body_len += want;
            used += want;
        }
        Ok(used)
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
    let shared = StaticShared::new(dek, sek)?;
    connect_with(addr, server, &shared, dek, request, step_timeout).await
}

/// [`connect`] with the DEK's agreement with the server's key computed earlier
/// ([`StaticShared`], which names the key): a client that reconnects keeps one and saves an
/// X25519 multiplication per connection.
pub async fn connect_with(
    addr: &str,
    server: &ServerName,
    shared: &StaticShared,
    dek: &DekSecret,
    request: SessionRequest,
    step_timeout: Duration,
) -> Result<Connected, NetError> {
    let (init, hello) =
        Initiator::client_with(server, shared, dek, request, &mut siren_proto::os_rng())?;
    if addr.starts_with("ws://") {
        return websocket::connect(addr, init, hello, step_timeout).await;
    }
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
pub(crate) async fn initiate(
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures_util::FutureExt as _;
    use siren_proto::handshake::{self, Initiator, ResponderKeys, Role, SessionRequest};
    use siren_proto::keys::{DekSecret, SekSecret};
    use siren_proto::transport::{Opener, Sealer};

    use super::*;

    /// A reader handing out its bytes `chunk` at a time, answering `Pending` (and waking at
    /// once) before every chunk when `stall` is set.
    struct Chunked {
        bytes: Vec<u8>,
        at: usize,
        chunk: usize,
        stall: bool,
        stalled: bool,
        reads: Arc<AtomicUsize>,
    }

    impl Chunked {
        /// A reader of `bytes`, and the count of its reads that returned data.
        fn reader(bytes: Vec<u8>, chunk: usize, stall: bool) -> (ReadHalf, Arc<AtomicUsize>) {
            let reads = Arc::new(AtomicUsize::new(0));
            let reader = Chunked {
                bytes,
                at: 0,
                chunk,
                stall,
                stalled: false,
                reads: reads.clone(),
            };
            (Box::new(reader), reads)
        }
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.stall && !self.stalled {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            self.reads.fetch_add(1, Ordering::Relaxed);
            let n = self
                .chunk
                .min(self.bytes.len() - self.at)
                .min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Both directions' transport of one in-process handshake: the sealer of the initiator and
    /// the opener of the responder.
    fn pair() -> (Sealer, Opener) {
        let mut rng = siren_proto::os_rng();
        let name = ServerName::parse("net.test").unwrap();
        let keys = ResponderKeys {
            name: name.clone(),
            current: SekSecret::generate(&mut rng),
            retired: Vec::new(),
        };
        let dek = DekSecret::generate(&mut rng);
        let (init, hello) = Initiator::client(
            &name,
            &keys.current.public(),
            &dek,
            SessionRequest::Open,
            &mut rng,
        )
        .unwrap();
        let (waiting, reply) = handshake::read_hello(&keys, Role::ClientToServer, &hello)
            .unwrap()
            .reply(&mut rng)
            .unwrap();
        let (initiator, finish) = init.read_reply(&reply).unwrap();
        let responder = waiting.read_finish(&finish).unwrap();
        (initiator.transport.split().0, responder.transport.split().1)
    }

    /// Messages of many sizes, around and well above the stack buffer, sealed and framed back
    /// to back; and a receiver reading them from a reader cutting them `chunk` at a time.
    fn framed(chunk: usize, stall: bool) -> (Vec<Vec<u8>>, Receiver) {
        let (mut sealer, opener) = pair();
        let sizes = [
            1,
            2,
            17,
            300,
            SCRATCH - 40,
            SCRATCH - 20,
            SCRATCH,
            3 * SCRATCH + 7,
            5,
            70_000,
            1,
        ];
        let messages: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let mut bytes = Vec::new();
        for m in &messages {
            frame::encode_into(
                &mut bytes,
                &sealer.seal(m).unwrap(),
                frame::DEFAULT_MAX_FRAME,
            )
            .unwrap();
        }
        let rx = Receiver::new(
            Chunked::reader(bytes, chunk, stall).0,
            opener,
            frame::DEFAULT_MAX_FRAME,
        );
        (messages, rx)
    }

    #[tokio::test]
    async fn frames_arrive_whole_however_the_reads_cut_them() {
        for chunk in [1, 3, 4, 5, 64, 1000, SCRATCH, 100_000] {
            let (messages, mut rx) = framed(chunk, false);
            for (i, want) in messages.iter().enumerate() {
                let got = rx.recv_plain().await.unwrap();
                assert_eq!(&got, want, "message {i}, reads of {chunk} bytes");
            }
            // Everything was used: the next read finds the end of the stream.
            assert!(matches!(rx.recv_plain().await, Err(NetError::Io(_))));
        }
    }

    #[test]
    fn a_receiver_dropped_mid_frame_loses_nothing() {
        // Each call is polled once and dropped (as a `select!` losing a race does); the reader
        // stalls before every chunk, so most calls end with part of a frame read.
        for chunk in [1, 7, 4096, 100_000] {
            let (messages, mut rx) = framed(chunk, true);
            for want in &messages {
                let got = loop {
                    if let Some(got) = rx.recv_plain().now_or_never() {
                        break got.unwrap();
                    }
                };
                assert_eq!(&got, want);
            }
        }
    }

    #[tokio::test]
    async fn small_frames_take_one_read_each_or_less() {
        // A small frame's length prefix and body come with one read, and frames written back
        // to back come with fewer reads than frames: what is read past a frame waits for the
        // next call, and between frames the receiver holds no buffer.
        let (mut sealer, opener) = pair();
        let mut bytes = Vec::new();
        for i in 0..50u8 {
            frame::encode_into(&mut bytes, &sealer.seal(&[i; 200]).unwrap(), 1 << 20).unwrap();
        }
        let (reader, reads) = Chunked::reader(bytes, usize::MAX, false);
        let mut rx = Receiver::new(reader, opener, 1 << 20);
        for i in 0..50u8 {
            assert_eq!(rx.recv_plain().await.unwrap(), vec![i; 200]);
            if rx.carry.is_empty() {
                assert_eq!(rx.carry.capacity(), 0, "nothing held between frames");
            }
        }
        assert!(rx.body.is_none() && rx.carry.is_empty() && rx.carry.capacity() == 0);
        // 50 frames of 244 bytes in 4 KiB reads: 3 or 4 reads, where a read per prefix and
        // one per body took 100.
        let reads = reads.load(Ordering::Relaxed);
        assert!(reads <= 5, "{reads} reads for 50 frames");
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_its_body_is_read() {
        let (_, opener) = pair();
        let mut bytes = (2_000_000u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 100]);
        let mut rx = Receiver::new(Chunked::reader(bytes, usize::MAX, false).0, opener, 1 << 20);
        assert!(matches!(
            rx.recv_plain().await,
            Err(NetError::Frame(frame::FrameError::TooLarge { .. }))
        ));
        assert!(rx.body.is_none());
    }
}
