//! A hostile server: a scripted fake `sirend` that a real `siren` process connects to, so tests
//! can check that the client does not trust what its server says.
//!
//! The fake runs the responder side of the real handshake (`siren_proto::handshake::read_hello`
//! with its own SEK) and the real transport (`siren_net::Sender`/`Receiver`); everything after
//! that is up to the test's script: a function from what the client did ([`Seen`]) to the
//! messages the server sends back. It can answer with anything a real server could send,
//! including objects recorded from a real `sirend` earlier in the same test (an older roster, a
//! listing without a revocation), and it keeps every message the client sent so the test can
//! check what the client did with the lie ([`Hostile::received`]).
//!
//! ```text
//! let fake = Hostile::start("alpha.test", move |seen| match seen {
//!     Seen::Opened { .. } => hostile::resumed("alpha.test", &alice),
//!     Seen::Request(ClientMessage::RosterGet { rid }) => vec![roster_answer(*rid)],
//!     Seen::Request(other) => hostile::routine(other),
//! });
//! fake.point(&alice_cli);      // the profile now talks to the fake
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use siren_api::{ErrorCode, ServerName, Uid};
use siren_client::client::Client;
use siren_client::profile::Profile;
use siren_net::{Receiver, Sender, read_frame, write_frame};
use siren_proto::frame::DEFAULT_MAX_FRAME;
use siren_proto::handshake::{self, Peer, ResponderKeys, Role, SessionRequest};
use siren_proto::ids::SessionId;
use siren_proto::keys::{DekPublic, SekPublic, SekSecret};
use siren_proto::message::{ClientMessage, QueueItem, ServerMessage};
use tokio::net::{TcpListener, TcpStream};

use crate::Cli;

/// What the client did, as the script sees it.
#[derive(Debug)]
pub enum Seen<'a> {
    /// A connection finished the handshake: the device's DEK and whether it resumes a session.
    /// The script answers with `welcome` (and `auth_mechanisms` for a new session).
    Opened {
        dek: &'a DekPublic,
        request: &'a SessionRequest,
    },
    /// A message from the client (also kept in [`Hostile::received`]).
    Request(&'a ClientMessage),
}

/// One thing the fake sends: a message, or raw plaintext bytes (a message from a newer protocol
/// revision the typed API cannot express), sealed in a transport frame like any message.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a test script's replies: a few, short-lived
pub enum Reply {
    Message(ServerMessage),
    Raw(Vec<u8>),
}

type Script = Box<dyn FnMut(Seen<'_>) -> Vec<Reply> + Send>;

/// A running fake server; stopped on drop.
pub struct Hostile {
    pub addr: SocketAddr,
    pub sek: SekPublic,
    received: Arc<Mutex<Vec<ClientMessage>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    /// Starts a fake server for the domain `name` (the clients' UIDs name it) on a loopback port.
    pub fn start(
        name: &str,
        mut script: impl FnMut(Seen<'_>) -> Vec<ServerMessage> + Send + 'static,
    ) -> Hostile {
        Hostile::start_raw(name, move |seen| {
            script(seen).into_iter().map(Reply::Message).collect()
        })
    }

    /// [`Hostile::start`] with a script that may also send raw bytes.
    pub fn start_raw(
        name: &str,
        script: impl FnMut(Seen<'_>) -> Vec<Reply> + Send + 'static,
    ) -> Hostile {
        let keys = ResponderKeys {
            name: ServerName::parse(name).unwrap(),
            current: SekSecret::generate(&mut siren_proto::os_rng()),
            retired: Vec::new(),
        };
        let sek = keys.current.public();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = (Arc::new(keys), received.clone());
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let accepting = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (keys, received) = shared.clone();
                        tokio::spawn(serve(stream, keys, script.clone(), received));
                    }
                };
                tokio::select! {
                    () = accepting => {}
                    _ = stopped => {}
                }
            });
        });
        Hostile {
            addr,
            sek,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Points a profile at this fake: its `profile.toml` gets this server's address and key
    /// (everything else in the profile, keys and caches included, stays as it was).
    pub fn point(&self, cli: &Cli) {
        let path = cli.profile().join("profile.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let rewritten: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("server = ") {
                    format!("server = \"{}\"", self.addr)
                } else if line.starts_with("server_key = ") {
                    format!("server_key = \"{}\"", self.sek.to_base64())
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(&path, rewritten.join("\n") + "\n").unwrap();
    }

    /// Every message clients sent so far, in order.
    pub fn received(&self) -> Vec<ClientMessage> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection: the real responder handshake, then the script's answers until the client
/// says `bye` or goes away.
async fn serve(
    stream: TcpStream,
    keys: Arc<ResponderKeys>,
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<ClientMessage>>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let max = handshake::MAX_HANDSHAKE_FRAME;
    let Ok(hello) = read_frame(&mut rd, max).await else {
        return;
    };
    let hello = handshake::read_hello(&keys, Role::ClientToServer, &hello).unwrap();
    let (waiting, reply) = hello.reply(&mut siren_proto::os_rng()).unwrap();
    write_frame(&mut wr, &reply, max).await.unwrap();
    let Ok(finish) = read_frame(&mut rd, max).await else {
        return;
    };
    let done = waiting.read_finish(&finish).unwrap();
    let Peer::Device(dek) = done.peer else {
        return;
    };
    let (sealer, opener) = done.transport.split();
    let mut tx = Sender::new(Box::new(wr), sealer, DEFAULT_MAX_FRAME);
    let mut rx = Receiver::new(Box::new(rd), opener, DEFAULT_MAX_FRAME);
    let opened = (script.lock().unwrap())(Seen::Opened {
        dek: &dek,
        request: &done.request,
    });
    for reply in opened {
        if send(&mut tx, reply).await.is_err() {
            return;
        }
    }
    while let Ok(msg) = rx.recv::<ClientMessage>().await {
        received.lock().unwrap().push(msg.clone());
        if msg == ClientMessage::Bye {
            return;
        }
        let answers = (script.lock().unwrap())(Seen::Request(&msg));
        for answer in answers {
            if send(&mut tx, answer).await.is_err() {
                return;
            }
        }
    }
}

async fn send(tx: &mut Sender, reply: Reply) -> Result<(), siren_net::NetError> {
    match reply {
        Reply::Message(msg) => tx.send(&msg).await,
        Reply::Raw(bytes) => tx.send_encoded(&bytes).await,
    }
}

/// `welcome` for a resumed session of `uid` (what a client running `send`, `lookup`, `contacts`
/// … expects first).
pub fn resumed(server: &str, uid: &Uid) -> Vec<ServerMessage> {
    vec![ServerMessage::Welcome {
        sid: SessionId::random(&mut siren_proto::os_rng()),
        resumed: true,
        server: ServerName::parse(server).unwrap(),
        max_frame: DEFAULT_MAX_FRAME as u32,
        uid: Some(uid.clone()),
    }]
}

/// `welcome` for a new session and the mechanisms on offer (what `siren login` expects first).
pub fn login_offered(server: &str) -> Vec<ServerMessage> {
    vec![
        ServerMessage::Welcome {
            sid: SessionId::random(&mut siren_proto::os_rng()),
            resumed: false,
            server: ServerName::parse(server).unwrap(),
            max_frame: DEFAULT_MAX_FRAME as u32,
            uid: None,
        },
        ServerMessage::AuthMechanisms {
            mechs: vec!["PLAIN".into()],
        },
    ]
}

/// A queued item pushed to the client.
pub fn deliver(seq: u64, item: QueueItem) -> ServerMessage {
    ServerMessage::Deliver { seq, item }
}

/// What every script does with the messages it does not care about: `pong` for `ping`, `ok` for
/// anything with a request id that only needs an acknowledgement, nothing for `ack`, and an
/// error naming the message for requests that need a real answer (so a test that forgot one
/// fails with a clear message rather than a timeout).
pub fn routine(msg: &ClientMessage) -> Vec<ServerMessage> {
    match msg {
        ClientMessage::Ping { rid } => vec![ServerMessage::Pong { rid: *rid }],
        ClientMessage::Ack { .. } | ClientMessage::Bye => Vec::new(),
        ClientMessage::Subscribe { rid, .. }
        | ClientMessage::Unsubscribe { rid, .. }
        | ClientMessage::Publish { rid, .. } => vec![ServerMessage::Ok { rid: *rid }],
        other => vec![ServerMessage::Error {
            rid: other.request_id(),
            code: ErrorCode::Unavailable.as_u16(),
            msg: format!("the hostile server has no answer scripted for {other:?}"),
        }],
    }
}

/// Runs `f` with a library client on a CLI profile, connected to the profile's (real) server:
/// how a test records what an honest `sirend` says (a roster, a listing) before it lies.
pub fn with_client<T>(profile: &Path, f: impl AsyncFnOnce(&mut Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The profile's lock can outlive a command briefly: a process another test thread forks
    // at that moment holds a copy of the descriptor until it execs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let opened = loop {
        match Profile::open(profile, None) {
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("in use") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    rt.block_on(async {
        let mut client = siren_client::client::open(opened).unwrap();
        client.connect().await.unwrap();
        let out = f(&mut client).await;
        client.bye().await.unwrap();
        out
    })
}
