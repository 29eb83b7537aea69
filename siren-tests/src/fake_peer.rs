//! A scripted peer server, driven through `siren-proto`'s handshake: it accepts links from a
//! real `sirend` (completing the `s2s` handshake and announcing a frame size) and then does
//! whatever the test says — answer, refuse, stay silent, stop reading. And [`knock`], the other
//! direction: an `s2s` hello to a real `sirend` claiming any name, to see how it is answered.

use std::net::SocketAddr;
use std::time::Duration;

use siren_api::ServerName;
use siren_net::{Receiver, Sender, read_frame, write_frame};
use siren_proto::handshake::{self, Initiator, Peer, ResponderKeys, Role};
use siren_proto::keys::{SekPublic, SekSecret};
use siren_proto::message::LinkMessage;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket};

/// Frames the fake peer reads may be this large.
const MAX_READ: usize = 64 << 20;

/// A peer server that exists only in the test.
pub struct FakePeer {
    pub name: ServerName,
    pub sek: SekPublic,
    secret: SekSecret,
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// One link a real server opened to the fake peer, after its `link_ready`.
pub struct PeerLink {
    /// The real server at the other end (the one that opened it, or the one connected to).
    pub from: ServerName,
    pub sender: Sender,
    pub receiver: Receiver,
}

impl FakePeer {
    /// Listens on loopback as server `name`. With `recv_buffer`, accepted connections get a
    /// receive buffer that small, so a peer that stops reading fills up quickly.
    pub async fn bind(name: &str, recv_buffer: Option<u32>) -> FakePeer {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let secret = SekSecret::generate(&mut siren_proto::os_rng());
        FakePeer {
            name: ServerName::parse(name).unwrap(),
            sek: secret.public(),
            secret,
            listener,
            addr,
        }
    }

    /// The dnsmasq lines that make it findable (SRV, A, key TXT), like `Dns::records_for`.
    pub fn records(&self) -> String {
        format!(
            "srv-host=_siren._tcp.{name},{name},{port},10,0\nhost-record={name},{ip}\ntxt-record=_siren-key.{name},\"v=siren1; k={key}\"\n",
            name = self.name,
            port = self.addr.port(),
            ip = self.addr.ip(),
            key = self.sek.to_base64()
        )
    }

    /// Accepts the next connection (within `limit`), completes the responder's side of the
    /// link handshake (any initiating server is welcome) and sends `link_ready` announcing
    /// `max_frame`.
    pub async fn accept(&self, max_frame: u32, limit: Duration) -> PeerLink {
        let (stream, _) = tokio::time::timeout(limit, self.listener.accept())
            .await
            .expect("a link in time")
            .unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let keys = ResponderKeys {
            name: self.name.clone(),
            current: SekSecret::from_bytes(*self.secret.to_bytes()),
            retired: Vec::new(),
        };
        let hello = read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let received = handshake::read_hello(&keys, Role::ServerToServer, &hello).unwrap();
        let Peer::Server { name: from, .. } = received.peer().clone() else {
            panic!("a device connected to the fake peer");
        };
        let (waiting, reply) = received.reply(&mut siren_proto::os_rng()).unwrap();
        write_frame(&mut wr, &reply, handshake::MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let finish = read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let done = waiting.read_finish(&finish).unwrap();
        let mut link = PeerLink::new(from, rd, wr, done.transport);
        link.send(&LinkMessage::LinkReady {
            server: self.name.clone(),
            max_frame,
        })
        .await;
        link
    }

    /// Opens a link to the real server `name` at `addr` (key `sek`) as this peer, the other
    /// direction from [`FakePeer::accept`]: the initiator's handshake, then the server's
    /// `link_ready`. The server must be able to check this peer's key (DNS or a pin).
    pub async fn connect(&self, addr: SocketAddr, name: &str, sek: SekPublic) -> PeerLink {
        let server = ServerName::parse(name).unwrap();
        let (init, rd, mut wr, reply) = hello(addr, &self.name, &self.secret, &server, &sek).await;
        let (done, finish) = init.read_reply(&reply).unwrap();
        write_frame(&mut wr, &finish, handshake::MAX_HANDSHAKE_FRAME)
            .await
            .unwrap();
        let mut link = PeerLink::new(server, rd, wr, done.transport);
        match link.recv(Duration::from_secs(30)).await {
            Some(LinkMessage::LinkReady { .. }) => link,
            other => panic!("expected link_ready, got {other:?}"),
        }
    }

    /// Whether a connection arrives within `limit` (it is accepted and dropped).
    pub async fn connection_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.listener.accept())
            .await
            .is_ok_and(|accepted| accepted.is_ok())
    }
}

impl PeerLink {
    fn new(
        from: ServerName,
        rd: OwnedReadHalf,
        wr: OwnedWriteHalf,
        transport: siren_proto::transport::Transport,
    ) -> PeerLink {
        let (sealer, opener) = transport.split();
        PeerLink {
            from,
            sender: Sender::new(Box::new(wr), sealer, MAX_READ),
            receiver: Receiver::new(Box::new(rd), opener, MAX_READ),
        }
    }

    pub async fn send(&mut self, message: &LinkMessage) {
        self.sender.send(message).await.unwrap();
    }

    /// The next message (within `limit`); `None` when the link closed or nothing came.
    pub async fn recv(&mut self, limit: Duration) -> Option<LinkMessage> {
        match tokio::time::timeout(limit, self.receiver.recv::<LinkMessage>()).await {
            Ok(Ok(message)) => Some(message),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// The next request that is not a `ping` (pings are answered).
    pub async fn next_request(&mut self, limit: Duration) -> Option<LinkMessage> {
        loop {
            match self.recv(limit).await? {
                LinkMessage::Ping { rid } => self.send(&LinkMessage::Pong { rid }).await,
                other => return Some(other),
            }
        }
    }
}

/// Opens an `s2s` handshake to `server` (at `addr`, named `name`, with key `sek`) claiming to be
/// `claimed`, with a fresh key. `Ok(())` when the server replied with `hello_reply` (the
/// handshake is then abandoned), `Err((code, text))` when it refused with an error frame.
pub async fn knock(
    addr: SocketAddr,
    name: &str,
    sek: SekPublic,
    claimed: String,
) -> Result<(), (u16, String)> {
    let own = SekSecret::generate(&mut siren_proto::os_rng());
    let claimed = ServerName::parse(&claimed).unwrap();
    let server = ServerName::parse(name).unwrap();
    let (_, _, _, frame) = hello(addr, &claimed, &own, &server, &sek).await;
    match handshake::decode_error_frame(&frame) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// Sends an `s2s` hello to `server` (at `addr`, key `sek`) as `own_name` with key `own`, and
/// reads the answer (within 30 s): the initiator's state, the socket's halves and the frame.
async fn hello(
    addr: SocketAddr,
    own_name: &ServerName,
    own: &SekSecret,
    server: &ServerName,
    sek: &SekPublic,
) -> (Initiator, OwnedReadHalf, OwnedWriteHalf, Vec<u8>) {
    let (init, hello) =
        Initiator::server(own_name, own, server, sek, &mut siren_proto::os_rng()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    write_frame(&mut wr, &hello, handshake::MAX_HANDSHAKE_FRAME)
        .await
        .unwrap();
    let frame = tokio::time::timeout(
        Duration::from_secs(30),
        read_frame(&mut rd, handshake::MAX_HANDSHAKE_FRAME),
    )
    .await
    .expect("an answer to the hello in time")
    .unwrap();
    (init, rd, wr, frame)
}
