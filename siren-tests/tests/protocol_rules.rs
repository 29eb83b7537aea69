//! PROTOCOL.md's rules checked against a running `sirend` (and the `siren` client): how strict
//! the decoder is and what a refusal does (§6), PLAIN in one round or two (§9.2), an `ack` sent
//! right before `bye` (§10.1), what becomes of a revoked DEK's queue (§13) and unknown plaintext
//! types (§12).

use std::time::Duration;

use siren_api::{ServerName, Uid};
use siren_net::Connected;
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret};
use siren_proto::message::{self, ClientMessage, NextStep, QueueItem, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::{DeviceRecordDraft, DeviceRevocation};
use siren_tests::raw::{self, Session};
use siren_tests::{Cli, Options, Server};

fn server() -> Server {
    let mut s = Server::new(Options::default());
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b")] {
        s.add_user(u, p);
    }
    s.start();
    s
}

async fn recv(conn: &mut Connected) -> ServerMessage {
    tokio::time::timeout(
        Duration::from_secs(20),
        conn.receiver.recv::<ServerMessage>(),
    )
    .await
    .expect("a message in time")
    .expect("a message")
}

fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// Opens a session with `dek` (new, or resuming `resume`) and reads `welcome` and, unless it
/// resumed, the mechanisms. Returns the session id and whether it resumed.
async fn open(
    s: &Server,
    dek: &DekSecret,
    resume: Option<SessionId>,
) -> (Connected, SessionId, bool) {
    let request = resume.map_or(SessionRequest::Open, SessionRequest::Resume);
    let mut conn = siren_net::connect(
        &s.addr.to_string(),
        &ServerName::parse(&s.name).unwrap(),
        &raw::sek(s),
        dek,
        request,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let ServerMessage::Welcome { sid, resumed, .. } = recv(&mut conn).await else {
        panic!("no welcome")
    };
    if !resumed {
        assert!(matches!(
            recv(&mut conn).await,
            ServerMessage::AuthMechanisms { .. }
        ));
    }
    (conn, sid, resumed)
}

/// Logs in on an open session with PLAIN in one round; returns the next step.
async fn authenticate(conn: &mut Connected, user: &str, password: &str) -> NextStep {
    conn.sender
        .send(&ClientMessage::AuthStart {
            rid: 1,
            mech: "PLAIN".into(),
            data: plain(user, password),
        })
        .await
        .unwrap();
    match recv(conn).await {
        ServerMessage::AuthSuccess { rid: 1, next, .. } => next,
        other => panic!("login failed: {other:?}"),
    }
}

/// Opens a new session with `dek` and logs in.
async fn login(s: &Server, dek: &DekSecret, user: &str, password: &str) -> (Connected, NextStep) {
    let (mut conn, _, _) = open(s, dek, None).await;
    let next = authenticate(&mut conn, user, password).await;
    (conn, next)
}

fn error_code(msg: &ServerMessage) -> Option<(Option<u32>, u16)> {
    match msg {
        ServerMessage::Error { rid, code, .. } => Some((*rid, *code)),
        _ => None,
    }
}

/// A text envelope from `from` to one device.
fn envelope(from: &Session, to: &Uid, to_dek: &DekPublic, ctr: u64, content: &[u8]) -> Envelope {
    Envelope::seal(
        Sender {
            uid: &from.uid,
            usk: &from.usk,
            dek: &from.dek.public(),
        },
        to,
        to_dek,
        MessageId::random(&mut siren_proto::os_rng()),
        ctr,
        content,
        &mut siren_proto::os_rng(),
    )
    .unwrap()
}

fn text(body: &str) -> Vec<u8> {
    Plaintext::Text {
        body: body.into(),
        ts: 0,
    }
    .encode()
}

async fn send(from: &mut Session, env: Envelope) -> ServerMessage {
    from.request(|rid| ClientMessage::Send {
        rid,
        msgs: vec![env],
    })
    .await;
    from.next_answer().await
}

/// The next delivery on `conn` (skipping `queue_drained`), and whether it is a message.
async fn next_delivery(conn: &mut Connected) -> (u64, bool) {
    loop {
        match recv(conn).await {
            ServerMessage::Deliver { seq, item } => {
                return (seq, matches!(item, QueueItem::Message { .. }));
            }
            ServerMessage::QueueDrained => {}
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

/// The sequence numbers delivered before `queue_drained`.
async fn backlog(conn: &mut Connected) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        match recv(conn).await {
            ServerMessage::Deliver { seq, .. } => seqs.push(seq),
            ServerMessage::QueueDrained => return seqs,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// §6 and §22: every `cbor_profile` vector the server reads gets the documented answer (101 or
/// 102, with the documented `rid`), the session goes on after each, and the accepted ones are
/// not refused as malformed.
#[tokio::test(flavor = "multi_thread")]
async fn the_cbor_vectors_get_their_documented_answers_and_the_session_goes_on() {
    let s = server();
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../siren-proto/vectors/siren-v1.json"
    );
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let profile = &vectors["negative"]["cbor_profile"];
    let mut checked = 0;
    for case in profile["refused"].as_array().unwrap() {
        if case["decoder"] != "client" {
            continue;
        }
        let what = case["what"].as_str().unwrap();
        let bytes = hex::decode(case["cbor"].as_str().unwrap()).unwrap();
        alice.conn.sender.send_encoded(&bytes).await.unwrap();
        let answer = alice.next_answer().await;
        let expected = (
            case["rid"].as_u64().map(|r| r as u32),
            case["error"].as_u64().unwrap() as u16,
        );
        assert_eq!(error_code(&answer), Some(expected), "{what}: {answer:?}");
        let rid = alice.request(|rid| ClientMessage::Ping { rid }).await;
        assert_eq!(
            alice.next_answer().await,
            ServerMessage::Pong { rid },
            "{what}: the session goes on"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} vectors");
    for case in profile["accepted"].as_array().unwrap() {
        let what = case["what"].as_str().unwrap();
        let bytes = hex::decode(case["cbor"].as_str().unwrap()).unwrap();
        alice.conn.sender.send_encoded(&bytes).await.unwrap();
        let answer = alice.next_answer().await;
        if let Some((_, code)) = error_code(&answer) {
            assert!(![101, 102].contains(&code), "{what}: refused with {code}");
        }
    }
}

/// §9.2: PLAIN works with the credentials in `auth_start` (one round), and with an empty
/// `auth_start` answered by an empty `auth_challenge`, then `auth_step` (two rounds).
#[tokio::test(flavor = "multi_thread")]
async fn plain_takes_one_round_or_two() {
    let s = server();
    let one = DekSecret::generate(&mut siren_proto::os_rng());
    let (_, next) = login(&s, &one, "alice", "pw-a").await;
    assert_eq!(next, NextStep::CreateUser);

    let two = DekSecret::generate(&mut siren_proto::os_rng());
    let (mut conn, _, _) = open(&s, &two, None).await;
    for (password, success) in [("wrong", false), ("pw-a", true)] {
        conn.sender
            .send(&ClientMessage::AuthStart {
                rid: 7,
                mech: "PLAIN".into(),
                data: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            recv(&mut conn).await,
            ServerMessage::AuthChallenge {
                rid: 7,
                data: Vec::new()
            }
        );
        conn.sender
            .send(&ClientMessage::AuthStep {
                rid: 7,
                data: plain("alice", password),
            })
            .await
            .unwrap();
        match recv(&mut conn).await {
            ServerMessage::AuthSuccess { rid: 7, uid, .. } if success => {
                assert_eq!(uid.to_string(), "alice@alpha.test")
            }
            ServerMessage::Error {
                rid: Some(7),
                code: 201,
                ..
            } if !success => {}
            other => panic!("password {password:?}: {other:?}"),
        }
    }
}

/// §10.1: an `ack` is applied before the next frame is read, so `ack` and `bye` in one write
/// remove the item for good; an item not acknowledged before `bye` is delivered again.
#[tokio::test(flavor = "multi_thread")]
async fn an_ack_sent_right_before_bye_is_processed() {
    let s = server();
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let mut bob = Session::create(&s, "bob", "pw-b").await;
    let (bob_uid, bob_dek) = (bob.uid.clone(), bob.dek.public());
    for (ctr, body) in [(1, "acknowledged"), (2, "not acknowledged")] {
        let env = envelope(&alice, &bob_uid, &bob_dek, ctr, &text(body));
        assert!(matches!(
            send(&mut alice, env).await,
            ServerMessage::SendAck { .. }
        ));
    }
    // Bob acknowledges everything (a contact request comes first) but the second message.
    let mut acked = Vec::new();
    let mut messages = 0;
    let kept = loop {
        let (seq, is_message) = next_delivery(&mut bob.conn).await;
        messages += usize::from(is_message);
        if messages == 2 {
            break seq;
        }
        acked.push(seq);
    };
    bob.conn
        .sender
        .send_encoded_batch(&[
            message::encode(&ClientMessage::Ack { seqs: acked }),
            message::encode(&ClientMessage::Bye),
        ])
        .await
        .unwrap();
    // The server closes after `bye` (whatever it had sent before reading it arrives first).
    tokio::time::timeout(Duration::from_secs(20), async {
        while bob.conn.receiver.recv_plain().await.is_ok() {}
    })
    .await
    .expect("the server closes after bye");
    let (mut conn, next) = login(&s, &bob.dek, "bob", "pw-b").await;
    assert_eq!(next, NextStep::Ready);
    assert_eq!(backlog(&mut conn).await, vec![kept]);
}

/// §13: once a DEK is revoked, its queue is gone (the messages that waited for it are not
/// delivered to anyone, not even to that key logging in again), sends to it are refused with
/// 304, and its session id no longer resumes.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_deks_queue_is_purged() {
    let s = server();
    let mut bob = Session::create(&s, "bob", "pw-b").await;
    // Alice's first device logs in, registers, remembers its session id and leaves.
    let old = DekSecret::generate(&mut siren_proto::os_rng());
    let (mut conn, old_sid, _) = open(&s, &old, None).await;
    assert_eq!(
        authenticate(&mut conn, "alice", "pw-a").await,
        NextStep::CreateUser
    );
    let usk = siren_proto::keys::UskSecret::generate(&mut siren_proto::os_rng());
    let alice = Uid::parse("alice@alpha.test").unwrap();
    let first = DeviceRecordDraft {
        uid: alice.clone(),
        dek: old.public(),
        seq: 1,
        prev: siren_proto::transcript::Digest::ZERO,
        ts: 0,
        name: None,
    }
    .sign(&usk);
    conn.sender
        .send(&ClientMessage::Register {
            rid: 2,
            record: first.clone(),
        })
        .await
        .unwrap();
    loop {
        match recv(&mut conn).await {
            ServerMessage::Ok { rid: 2 } => break,
            ServerMessage::QueueDrained => {}
            other => panic!("register: {other:?}"),
        }
    }
    conn.sender.send(&ClientMessage::Bye).await.unwrap();
    // Bob writes to that device while it is away: the message waits in its queue.
    let env = envelope(&bob, &alice, &old.public(), 1, &text("to the old key"));
    assert!(matches!(
        send(&mut bob, env).await,
        ServerMessage::SendAck { .. }
    ));
    // Alice's next login registers a new DEK with the USK and revokes the old one.
    let new = DekSecret::generate(&mut siren_proto::os_rng());
    let (mut conn, next) = login(&s, &new, "alice", "pw-a").await;
    let NextStep::AwaitApproval { listing } = next else {
        panic!("{next:?}")
    };
    let record = DeviceRecordDraft {
        uid: alice.clone(),
        dek: new.public(),
        seq: listing.head.seq + 1,
        prev: listing.head.hash,
        ts: 0,
        name: None,
    }
    .sign(&usk);
    let hash = siren_proto::records::DirectoryEntry::Add(record.clone()).hash();
    conn.sender
        .send(&ClientMessage::Register { rid: 2, record })
        .await
        .unwrap();
    let revocation = DeviceRevocation::sign(&usk, alice.clone(), old.public(), 3, hash, 0);
    conn.sender
        .send(&ClientMessage::Revoke { rid: 3, revocation })
        .await
        .unwrap();
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match recv(&mut conn).await {
            ServerMessage::Ok { rid } => answered.push(rid),
            ServerMessage::Deliver { .. } | ServerMessage::QueueDrained => {}
            other => panic!("register/revoke: {other:?}"),
        }
    }
    // Sends to the revoked key are refused: the sender looks the user up again.
    let env = envelope(&bob, &alice, &old.public(), 2, &text("too late"));
    assert_eq!(
        error_code(&send(&mut bob, env).await).map(|(_, c)| c),
        Some(304)
    );
    // The old key's session does not resume, and logging in with it finds an empty queue.
    let (mut conn, sid, resumed) = open(&s, &old, Some(old_sid)).await;
    assert!(!resumed);
    assert_ne!(sid, old_sid);
    assert!(matches!(
        authenticate(&mut conn, "alice", "pw-a").await,
        NextStep::AwaitApproval { .. }
    ));
    assert_eq!(backlog(&mut conn).await, Vec::<u64>::new());
}

/// §12: a plaintext `type` the client does not know is shown as an unsupported message, unknown
/// fields are ignored, and neither is refused.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_plaintext_types_are_shown_as_unsupported() {
    let s = server();
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let bob_uid = Uid::parse("bob@alpha.test").unwrap();
    alice
        .request(|rid| ClientMessage::Lookup {
            rid,
            uid: bob_uid.clone(),
        })
        .await;
    let ServerMessage::Directory { listing, .. } = alice.next_answer().await else {
        panic!("lookup failed")
    };
    let bob_dek = listing.records[0].dek;
    let cbor = |v: ciborium::Value| {
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    };
    let t = |s: &str| ciborium::Value::Text(s.into());
    let sticker = cbor(ciborium::Value::Map(vec![
        (t("type"), t("sticker")),
        (t("pack"), ciborium::Value::Array(vec![])),
    ]));
    let extended = cbor(ciborium::Value::Map(vec![
        (t("type"), t("text")),
        (t("body"), t("with a field from the future")),
        (t("ts"), ciborium::Value::Integer(0.into())),
        (t("reply_to"), ciborium::Value::Bytes(vec![7; 16])),
    ]));
    for (ctr, content) in [(1, sticker), (2, extended), (3, text("plain text"))] {
        let env = envelope(&alice, &bob_uid, &bob_dek, ctr, &content);
        assert!(matches!(
            send(&mut alice, env).await,
            ServerMessage::SendAck { .. }
        ));
    }
    let out = bob.run(&["recv"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            "alice@alpha.test: (unsupported message of type \"sticker\"; a newer client can show it)",
            "alice@alpha.test: with a field from the future",
            "alice@alpha.test: plain text",
        ]
    );
    assert!(!out.stderr.contains("refused"), "{}", out.stderr);
}
