//! Clients that misbehave: forged senders, replays, oversized frames, garbage, truncated and
//! stalled handshakes. Each gets a clear error or a closed connection, and other sessions keep
//! working meanwhile.

use std::time::{Duration, Instant};

use siren_api::{ErrorCode, ServerName};
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::handshake::{self, Initiator, SessionRequest};
use siren_proto::ids::MessageId;
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_tests::raw::{self, Session};
use siren_tests::{Cli, Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn server(options: Options) -> Server {
    let mut s = Server::new(options);
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b"), ("mallory", "pw-m")] {
        s.add_user(u, p);
    }
    s.start();
    s
}

fn error_code(msg: &ServerMessage) -> Option<u16> {
    match msg {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Reads until EOF (or error); returns how long it took. Panics if it takes longer than `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open longer than {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_sender_is_refused() {
    let s = server(Options::default());
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let mut mallory = Session::create(&s, "mallory", "pw-m").await;
    let _ = &mut alice;
    // Mallory claims to be alice (with her own keys: she has no others).
    let env = Envelope::seal(
        Sender {
            uid: &alice.uid,
            usk: &mallory.usk,
            dek: &mallory.dek.public(),
        },
        &alice.uid,
        &alice.dek.public(),
        MessageId::random(&mut siren_proto::os_rng()),
        1,
        b"I am alice",
        &mut siren_proto::os_rng(),
    )
    .unwrap();
    mallory
        .request(|rid| ClientMessage::Send {
            rid,
            msgs: vec![env],
        })
        .await;
    assert_eq!(
        error_code(&mallory.next_answer().await),
        Some(ErrorCode::ForgedSender.as_u16())
    );
}

/// Mallory's own sender fields, but a signature by another user's USK. By default the server
/// passes it on (the sender fields are bound to the session; the signature is the recipients'
/// to check, PROTOCOL.md §12) and bob's client refuses it, showing nothing of it; with
/// `[limits] check_envelope_signatures` the server refuses it itself (301).
#[tokio::test(flavor = "multi_thread")]
async fn a_badly_signed_envelope_is_refused_by_the_recipient_or_a_checking_server() {
    for check in [false, true] {
        let s = server(Options {
            limits_lines: format!("check_envelope_signatures = {check}"),
            ..Options::default()
        });
        let bob = Cli::init(&s, "bob@alpha.test");
        bob.login("pw-b");
        let alice = Session::create(&s, "alice", "pw-a").await;
        let mut mallory = Session::create(&s, "mallory", "pw-m").await;
        let bob_dek = bob_device(&mut mallory).await;
        let content = text("signed by someone else");
        let env = Envelope::seal(
            Sender {
                uid: &mallory.uid,
                usk: &alice.usk,
                dek: &mallory.dek.public(),
            },
            &bob_uid(),
            &bob_dek,
            MessageId::random(&mut siren_proto::os_rng()),
            1,
            &content,
            &mut siren_proto::os_rng(),
        )
        .unwrap();
        mallory
            .request(|rid| ClientMessage::Send {
                rid,
                msgs: vec![env],
            })
            .await;
        let answer = mallory.next_answer().await;
        let out = bob.run(&["recv"]);
        assert!(out.ok, "siren recv: {}", out.stderr);
        assert!(
            !out.stdout.contains("signed by someone else"),
            "a badly signed message was shown: {}",
            out.stdout
        );
        if check {
            assert_eq!(error_code(&answer), Some(ErrorCode::BadSignature.as_u16()));
        } else {
            assert!(
                matches!(answer, ServerMessage::SendAck { .. }),
                "{answer:?}"
            );
            assert!(
                out.stderr
                    .contains("refused a message claiming to be from mallory@alpha.test"),
                "{}",
                out.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_envelope_is_delivered_only_once() {
    let s = server(Options::default());
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let bob_dek = bob_device(&mut alice).await;
    let env = alice.seal_to(&bob_uid(), &bob_dek, 1, &text("only once"));
    // The same envelope three times: once now, twice after bob has read it.
    alice
        .request(|rid| ClientMessage::Send {
            rid,
            msgs: vec![env.clone()],
        })
        .await;
    assert!(matches!(
        alice.next_answer().await,
        ServerMessage::SendAck { .. }
    ));
    assert_eq!(bob.recv(), vec!["alice@alpha.test: only once"]);
    for _ in 0..2 {
        alice
            .request(|rid| ClientMessage::Send {
                rid,
                msgs: vec![env.clone()],
            })
            .await;
        assert!(matches!(
            alice.next_answer().await,
            ServerMessage::SendAck { .. }
        ));
    }
    assert!(bob.recv().is_empty(), "a replayed envelope was shown again");
}

fn bob_uid() -> siren_api::Uid {
    siren_api::Uid::parse("bob@alpha.test").unwrap()
}

/// A text message's plaintext.
fn text(body: &str) -> Vec<u8> {
    siren_proto::plaintext::Plaintext::Text {
        body: body.into(),
        ts: 0,
    }
    .encode()
}

/// Bob's first device, looked up by `session`.
async fn bob_device(session: &mut Session) -> siren_proto::keys::DekPublic {
    let lookup = session
        .request(|rid| ClientMessage::Lookup {
            rid,
            uid: bob_uid(),
        })
        .await;
    let ServerMessage::Directory { rid, listing } = session.next_answer().await else {
        panic!("lookup failed")
    };
    assert_eq!(rid, lookup);
    listing.records[0].dek
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_handshake_is_refused() {
    let s = server(Options::default());
    let name = ServerName::parse(&s.name).unwrap();
    let dek = DekSecret::generate(&mut siren_proto::os_rng());
    // Record a genuine handshake.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let (init, hello) = Initiator::client(
        &name,
        &raw::sek(&s),
        &dek,
        SessionRequest::Open,
        &mut siren_proto::os_rng(),
    )
    .unwrap();
    siren_net::write_frame(&mut stream, &hello, 4096)
        .await
        .unwrap();
    let reply = siren_net::read_frame(&mut stream, 4096).await.unwrap();
    let (_, finish) = init.read_reply(&reply).unwrap();
    siren_net::write_frame(&mut stream, &finish, 4096)
        .await
        .unwrap();
    drop(stream);
    // An attacker replays the client's two messages on a new connection.
    let mut replay = TcpStream::connect(s.addr).await.unwrap();
    siren_net::write_frame(&mut replay, &hello, 4096)
        .await
        .unwrap();
    let fresh_reply = siren_net::read_frame(&mut replay, 4096).await.unwrap();
    assert_ne!(fresh_reply, reply, "the server must answer with fresh keys");
    siren_net::write_frame(&mut replay, &finish, 4096)
        .await
        .unwrap();
    let refusal = siren_net::read_frame(&mut replay, 4096).await.unwrap();
    let err = handshake::decode_error_frame(&refusal).map(|(code, _)| code);
    assert_eq!(err, Some(ErrorCode::HandshakeFailed.as_u16()));
    closed_within(&mut replay, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_garbage_truncated_and_stalled_handshakes() {
    let s = server(Options {
        handshake_timeout_secs: 2,
        // Room for the fifty stalled connections below from this one address.
        limits_lines: "unauthenticated_per_address = 64\nhandshakes_per_address_per_second = 100\n"
            .into(),
        ..Options::default()
    });
    // Stalled: connect and say nothing. Open many, to show others are not starved.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Garbage where a hello should be: a clear error, then close.
    let mut garbage = TcpStream::connect(s.addr).await.unwrap();
    garbage
        .write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'])
        .await
        .unwrap();
    let refusal = siren_net::read_frame(&mut garbage, 4096).await.unwrap();
    assert_eq!(
        handshake::decode_error_frame(&refusal).map(|(code, _)| code),
        Some(ErrorCode::MalformedMessage.as_u16())
    );
    closed_within(&mut garbage, Duration::from_secs(5)).await;
    // An oversized length prefix: error 100, closed without reading 2 GiB.
    let mut huge = TcpStream::connect(s.addr).await.unwrap();
    huge.write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let refusal = siren_net::read_frame(&mut huge, 4096).await.unwrap();
    assert_eq!(
        handshake::decode_error_frame(&refusal).map(|(code, _)| code),
        Some(ErrorCode::BadFrame.as_u16())
    );
    closed_within(&mut huge, Duration::from_secs(5)).await;
    // A zero-length frame: error 100 too (PROTOCOL.md §5).
    let mut empty = TcpStream::connect(s.addr).await.unwrap();
    empty.write_all(&[0, 0, 0, 0]).await.unwrap();
    let refusal = siren_net::read_frame(&mut empty, 4096).await.unwrap();
    assert_eq!(
        handshake::decode_error_frame(&refusal).map(|(code, _)| code),
        Some(ErrorCode::BadFrame.as_u16())
    );
    closed_within(&mut empty, Duration::from_secs(5)).await;
    // Truncated: half a header, then the client goes away.
    let mut truncated = TcpStream::connect(s.addr).await.unwrap();
    truncated.write_all(&[0, 0]).await.unwrap();
    drop(truncated);

    // Meanwhile a real conversation works.
    let alice = Cli::init(&s, "alice@alpha.test");
    let bob = Cli::init(&s, "bob@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    alice.send("bob@alpha.test", "still here");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: still here"]);

    // And every stalled connection is closed by the handshake timeout.
    for mut s in stalled {
        closed_within(&mut s, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_unknown_messages_in_a_session() {
    let s = server(Options::default());
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    // An unknown message type is answered with 102 and the session goes on.
    let unknown = {
        use ciborium::Value;
        let v = Value::Map(vec![
            (Value::Text("t".into()), Value::Text("teleport".into())),
            (Value::Text("rid".into()), Value::Integer(77.into())),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    };
    alice.conn.sender.send_encoded(&unknown).await.unwrap();
    match alice.next_answer().await {
        ServerMessage::Error { rid, code, .. } => {
            assert_eq!(
                (rid, code),
                (Some(77), ErrorCode::UnknownMessageType.as_u16())
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let rid = alice.request(|rid| ClientMessage::Ping { rid }).await;
    assert_eq!(alice.next_answer().await, ServerMessage::Pong { rid });
    // A frame above the server's maximum: error 100, then the connection closes. The frame
    // is larger than the sockets' buffers, so the client is still writing it when the server
    // refuses it: the server reads the rest away before closing (a close with unread bytes
    // is a reset, which would fail this write or lose the error).
    alice.conn.sender.set_max_frame(32 << 20);
    alice
        .conn
        .sender
        .send_encoded(&vec![0u8; 16 << 20])
        .await
        .unwrap();
    let answer = alice.conn.receiver.recv::<ServerMessage>().await.unwrap();
    assert_eq!(error_code(&answer), Some(ErrorCode::BadFrame.as_u16()));
    assert!(alice.conn.receiver.recv::<ServerMessage>().await.is_err());
}

/// F5: what other users write reaches the terminal escaped, through the real server: a message
/// that erases its own line and starts a fake one, a device name, a presence text.
#[test]
fn control_characters_from_other_users_are_shown_escaped() {
    let s = server(Options::default());
    let alice = Cli::init(&s, "alice@alpha.test");
    let out = alice.run_with_stdin(
        &[
            "login",
            "--password-stdin",
            "--device-name",
            "phone\x1b[2K\r",
        ],
        "pw-a\n",
    );
    assert!(out.ok, "{}", out.stderr);
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let raw = ['\x1b', '\r', '\u{7}', '\u{202E}', '\u{2066}'];

    alice.send(
        "bob@alpha.test",
        "hi\x1b[2K\rmallory@alpha.test: the boss says pay\u{202E}em",
    );
    let got = bob.run(&["recv"]);
    assert!(got.ok, "{}", got.stderr);
    assert_eq!(
        got.stdout,
        "alice@alpha.test: hi\\u{1b}[2K\\rmallory@alpha.test: the boss says pay\\u{202e}em\n"
    );
    let look = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(
        look.stdout.contains("phone\\u{1b}[2K\\r"),
        "{}",
        look.stdout
    );

    let out = alice.run(&["contacts", "add", "bob@alpha.test", "--presence"]);
    assert!(out.ok, "{}", out.stderr);
    let watcher = bob.listen_with(&["--watch", "alice@alpha.test"]);
    assert_eq!(
        watcher.next_line(Duration::from_secs(10)).as_deref(),
        Some("* alice@alpha.test is offline")
    );
    let _publisher = alice.listen_with(&[
        "--status",
        "away",
        "--text",
        "\x1b]0;pwned\x07\u{2066}lunch",
    ]);
    let line = watcher.next_line(Duration::from_secs(10)).unwrap();
    assert_eq!(
        line,
        "* alice@alpha.test is away (\\u{1b}]0;pwned\\u{7}\\u{2066}lunch)"
    );
    for shown in [&got.stdout, &got.stderr, &look.stdout, &look.stderr, &line] {
        assert!(!shown.contains(raw), "raw control characters in {shown:?}");
    }
}
