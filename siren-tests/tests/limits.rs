//! What anonymous clients and one user can make the server do is bounded (issue 11's findings
//! F1, F2, F4, F6, F18, F20–F23), and the bounds keep everyone else served. Clients on several
//! addresses are played by binding 127.0.0.x (all of 127/8 is loopback).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use siren_api::ErrorCode;
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::handshake;
use siren_proto::ids::MessageId;
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, NextStep, ServerMessage, Topic};
use siren_proto::records::DeviceRecordDraft;
use siren_tests::raw::{self, Session};
use siren_tests::{Options, Server, rss_of};

fn addr(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn server_with(options: Options, users: &[(&str, &str)]) -> Server {
    let mut s = Server::new(options);
    for (u, p) in users {
        s.add_user(u, p);
    }
    s.start();
    s
}

fn code(msg: &ServerMessage) -> Option<u16> {
    match msg {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A PLAIN login from `from` that retries while the server says `login_busy` (as a client
/// should); the final answer.
async fn login_retrying(
    s: &Server,
    from: IpAddr,
    user: &str,
    password: &str,
) -> Result<(siren_net::Connected, NextStep), u16> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, answer) = raw::login_from(s, from, user, password).await;
        match answer {
            Err(c) if c == ErrorCode::LoginBusy.as_u16() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// F1: sixty parallel logins from one address with the real argon2id cost (19 MiB each) keep the
/// server's memory bounded (hashing is counted before it starts and bounded server-wide), and the
/// right password works from another address during the attack.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_logins_keep_memory_bounded_and_others_get_in() {
    let s = server_with(
        Options {
            // The production cost: the attack is about memory.
            auth_lines:
                "argon2_memory_kib = 19456\nargon2_iterations = 2\nmax_concurrent_logins = 4\n"
                    .into(),
            ..Options::default()
        },
        &[("alice", "right"), ("bob", "pw-b")],
    );
    // `sirend user add` above ran with the production cost too (the config's), so alice's
    // check costs what the attacker's do.
    let before = s.rss().unwrap();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        let pid = s.pid().unwrap();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let s = std::sync::Arc::new(s);
    let mut attack = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let s = s.clone();
        attack.spawn(async move {
            let (_, answer) = raw::login_from(&s, addr(1), "alice", "guess").await;
            answer.err()
        });
    }
    // During the attack, alice logs in from elsewhere.
    let (_, next) = login_retrying(&s, addr(2), "alice", "right")
        .await
        .expect("the right password from another address works during the attack");
    assert_eq!(next, NextStep::CreateUser);
    let mut answers = Vec::new();
    while let Some(done) = attack.join_next().await {
        answers.push(done.unwrap());
    }
    sampling.abort();
    let growth = peak.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!(
        "RSS before the attack {} MiB, growth at the peak {} MiB",
        before >> 20,
        growth >> 20
    );
    // Four checks at 19 MiB at most run at once (plus allocator slack); unbounded, sixty
    // parallel checks took the server from 40 MiB to 1.19 GiB.
    assert!(
        growth < 250 << 20,
        "the server grew by {} MiB during the attack",
        growth >> 20
    );
    let refused = answers
        .iter()
        .filter(|a| {
            a.is_some_and(|c| {
                c == ErrorCode::LoginBusy.as_u16() || c == ErrorCode::RateLimited.as_u16()
            })
        })
        .count();
    assert!(refused > 0, "every attempt was hashed: {answers:?}");
    assert!(answers.iter().all(Option::is_some), "a guess got in");
}

/// F2: handshakes that never log in leave nothing in the store; a logged-in session is stored.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_handshakes_store_no_session() {
    let mut s = server_with(Options::default(), &[("alice", "pw-a")]);
    let mut anonymous = Vec::new();
    for _ in 0..10 {
        let dek = DekSecret::generate(&mut siren_proto::os_rng());
        let mut conn = raw::open(&s, &dek).await;
        assert!(matches!(
            conn.receiver.recv::<ServerMessage>().await.unwrap(),
            ServerMessage::Welcome { .. }
        ));
        anonymous.push(conn);
    }
    let _alice = Session::create(&s, "alice", "pw-a").await;
    drop(anonymous);
    assert!(s.stop());
    let to = tempfile::tempdir().unwrap();
    let to_config = to.path().join("to.toml");
    std::fs::write(
        &to_config,
        "[server]\nname = \"alpha.test\"\n[storage]\nbackend = \"memory\"\n",
    )
    .unwrap();
    let out = Server::sirend(&[
        "migrate-store",
        "--from",
        s.config().to_str().unwrap(),
        "--to",
        to_config.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains(" 1 sessions"),
        "only alice's logged-in session is stored: {}",
        out.stdout
    );
}

/// F6: one address cannot take every connection slot with anonymous connections: beyond its
/// per-address share it is told "203" and closed, and a logged-in user from another address
/// still gets in; the server-wide bound on anonymous connections leaves room too.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_take_every_slot() {
    let s = server_with(
        Options {
            limits_lines:
                "max_connections = 30\nunauthenticated_per_address = 4\nmax_unauthenticated = 20\n"
                    .into(),
            ..Options::default()
        },
        &[("alice", "pw-a")],
    );
    // Thirty silent connections from one address (the handshake timeout is 10 s).
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((addr(1), 0).into()).unwrap();
        let mut stream = socket.connect(s.addr).await.unwrap();
        // A refused one gets an error frame at once; an admitted one hears nothing.
        match tokio::time::timeout(
            Duration::from_millis(300),
            siren_net::read_frame(&mut stream, 4096),
        )
        .await
        {
            Ok(Ok(frame)) => {
                assert_eq!(
                    handshake::decode_error_frame(&frame).map(|(c, _)| c),
                    Some(ErrorCode::RateLimited.as_u16())
                );
                refused += 1;
            }
            _ => held.push(stream),
        }
    }
    assert_eq!(held.len(), 4, "one address holds its share only");
    assert_eq!(refused, 26);
    // Another address logs in meanwhile.
    let (_, answer) = raw::login_from(&s, addr(2), "alice", "pw-a").await;
    assert!(answer.is_ok(), "{:?}", answer.err());
}

/// F18: guesses from one address lock only that address out of the account; the right password
/// works from another address.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_lock_out_another() {
    let s = server_with(Options::default(), &[("alice", "right")]);
    for _ in 0..6 {
        let (_, answer) = raw::login_from(&s, addr(1), "alice", "guess").await;
        assert!(answer.is_err());
    }
    // That address is now refused, even with the right password.
    let (_, answer) = raw::login_from(&s, addr(1), "alice", "right").await;
    assert_eq!(answer.err(), Some(ErrorCode::RateLimited.as_u16()));
    // Alice, elsewhere, is not.
    let (_, answer) = raw::login_from(&s, addr(2), "alice", "right").await;
    assert!(answer.is_ok(), "{:?}", answer.err());
}

/// Logs in a new device of a user that has devices already; the session waits for approval.
async fn new_device(s: &Server, from: IpAddr, user: &str, password: &str) -> siren_net::Connected {
    let (_, answer) = raw::login_from(s, from, user, password).await;
    let (conn, next) = answer.expect("login");
    assert!(matches!(next, NextStep::AwaitApproval { .. }));
    conn
}

async fn request(conn: &mut siren_net::Connected, msg: ClientMessage) -> ServerMessage {
    conn.sender.send(&msg).await.unwrap();
    loop {
        let m = tokio::time::timeout(
            Duration::from_secs(20),
            conn.receiver.recv::<ServerMessage>(),
        )
        .await
        .expect("an answer in time")
        .unwrap();
        if !matches!(
            m,
            ServerMessage::Deliver { .. } | ServerMessage::QueueDrained
        ) {
            return m;
        }
    }
}

/// F20: one account cannot fill the table of devices waiting for approval; another account can
/// still add a device.
#[tokio::test(flavor = "multi_thread")]
async fn one_account_cannot_fill_the_approval_table() {
    let s = server_with(Options::default(), &[("mallory", "pw-m"), ("bob", "pw-b")]);
    let _mallory = Session::create(&s, "mallory", "pw-m").await;
    let _bob = Session::create(&s, "bob", "pw-b").await;
    let commit = siren_proto::transcript::Digest::ZERO;
    let mut waiting = Vec::new();
    for i in 0..5u8 {
        let mut conn = new_device(&s, addr(10 + i), "mallory", "pw-m").await;
        let answer = request(
            &mut conn,
            ClientMessage::ApprovalRequest {
                rid: 7,
                commit,
                name: None,
            },
        )
        .await;
        if i < 4 {
            assert!(matches!(answer, ServerMessage::Ok { .. }), "{answer:?}");
        } else {
            assert_eq!(code(&answer), Some(ErrorCode::RateLimited.as_u16()));
        }
        waiting.push(conn);
    }
    let mut bobs = new_device(&s, addr(10), "bob", "pw-b").await;
    let answer = request(
        &mut bobs,
        ClientMessage::ApprovalRequest {
            rid: 7,
            commit,
            name: None,
        },
    )
    .await;
    assert!(matches!(answer, ServerMessage::Ok { .. }), "{answer:?}");
}

/// F23: a device that is not registered yet may look up its own account only.
#[tokio::test(flavor = "multi_thread")]
async fn unregistered_device_looks_up_only_its_own_account() {
    let s = server_with(Options::default(), &[("alice", "pw-a"), ("bob", "pw-b")]);
    let alice = Session::create(&s, "alice", "pw-a").await;
    let _bob = Session::create(&s, "bob", "pw-b").await;
    let mut new = new_device(&s, addr(1), "alice", "pw-a").await;
    let bob_uid = siren_api::Uid::parse("bob@alpha.test").unwrap();
    let answer = request(
        &mut new,
        ClientMessage::Lookup {
            rid: 3,
            uid: bob_uid,
        },
    )
    .await;
    assert_eq!(code(&answer), Some(ErrorCode::ApprovalRequired.as_u16()));
    let remote = siren_api::Uid::parse("carol@beta.test").unwrap();
    let answer = request(
        &mut new,
        ClientMessage::Lookup {
            rid: 4,
            uid: remote,
        },
    )
    .await;
    assert_eq!(code(&answer), Some(ErrorCode::ApprovalRequired.as_u16()));
    let answer = request(
        &mut new,
        ClientMessage::Lookup {
            rid: 5,
            uid: alice.uid.clone(),
        },
    )
    .await;
    assert!(
        matches!(answer, ServerMessage::Directory { .. }),
        "{answer:?}"
    );
}

/// Registers a second device of `session`'s account (it holds the USK), from a new connection.
async fn second_device(s: &Server, session: &Session, password: &str) -> siren_net::Connected {
    let user = session.uid.user().to_string();
    let (dek, answer) = raw::login_from(s, addr(1), &user, password).await;
    let (mut conn, next) = answer.expect("login");
    let NextStep::AwaitApproval { listing } = next else {
        panic!("expected await_approval, got {next:?}");
    };
    let record = DeviceRecordDraft {
        uid: session.uid.clone(),
        dek: dek.public(),
        seq: listing.head.seq + 1,
        prev: listing.head.hash,
        ts: 0,
        name: None,
    }
    .sign(&session.usk);
    let answer = request(&mut conn, ClientMessage::Register { rid: 2, record }).await;
    assert!(matches!(answer, ServerMessage::Ok { .. }), "{answer:?}");
    conn
}

/// F22: device registrations and revocations are rate-limited per user.
#[tokio::test(flavor = "multi_thread")]
async fn device_changes_are_rate_limited() {
    let s = server_with(
        Options {
            limits_lines: "directory_changes_per_hour = 3\n".into(),
            ..Options::default()
        },
        &[("alice", "pw-a")],
    );
    let alice = Session::create(&s, "alice", "pw-a").await; // change 1
    let _two = second_device(&s, &alice, "pw-a").await; // change 2
    let _three = second_device(&s, &alice, "pw-a").await; // change 3
    let (dek, answer) = raw::login_from(&s, addr(1), "alice", "pw-a").await;
    let (mut conn, next) = answer.expect("login");
    let NextStep::AwaitApproval { listing } = next else {
        panic!("expected await_approval");
    };
    let record = DeviceRecordDraft {
        uid: alice.uid.clone(),
        dek: dek.public(),
        seq: listing.head.seq + 1,
        prev: listing.head.hash,
        ts: 0,
        name: None,
    }
    .sign(&alice.usk);
    let answer = request(&mut conn, ClientMessage::Register { rid: 2, record }).await;
    assert_eq!(code(&answer), Some(ErrorCode::RateLimited.as_u16()));
}

/// PROTOCOL.md §11: a device revoked by another device of the account is told so (error 305)
/// before its session is closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_device_is_told_before_the_close() {
    let s = server_with(Options::default(), &[("alice", "pw-a")]);
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let mut phone = second_device(&s, &alice, "pw-a").await;
    // The phone's live session is idle; the laptop revokes it.
    let phone_dek = {
        let dir = match request(
            &mut phone,
            ClientMessage::Lookup {
                rid: 9,
                uid: alice.uid.clone(),
            },
        )
        .await
        {
            ServerMessage::Directory { listing, .. } => listing,
            other => panic!("{other:?}"),
        };
        let head = dir.head;
        let phone_dek = dir
            .records
            .iter()
            .map(|r| r.dek)
            .find(|d| *d != alice.dek.public())
            .unwrap();
        let revocation = siren_proto::records::DeviceRevocation::sign(
            &alice.usk,
            alice.uid.clone(),
            phone_dek,
            head.seq + 1,
            head.hash,
            0,
        );
        let rid = alice
            .request(|rid| ClientMessage::Revoke { rid, revocation })
            .await;
        assert!(matches!(alice.next_answer().await, ServerMessage::Ok { rid: r } if r == rid));
        phone_dek
    };
    let _ = phone_dek;
    let told = loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            phone.receiver.recv::<ServerMessage>(),
        )
        .await
        .expect("the phone hears something")
        {
            Ok(ServerMessage::Error {
                rid: None, code, ..
            }) => break Some(code),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    assert_eq!(told, Some(ErrorCode::DeviceRevoked.as_u16()));
    // Then the connection closes.
    assert!(phone.receiver.recv::<ServerMessage>().await.is_err());
}

/// F21: a session's presence subscriptions are bounded (checked before anything else about the
/// topics, remote ones included).
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_per_session_are_bounded() {
    let s = server_with(
        Options {
            limits_lines: "max_subscriptions_per_session = 3\n".into(),
            ..Options::default()
        },
        &[("alice", "pw-a")],
    );
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let topics: Vec<Topic> = [
        "a@alpha.test",
        "b@alpha.test",
        "c@beta.test",
        "d@gamma.test",
    ]
    .iter()
    .map(|u| Topic::Presence {
        uid: siren_api::Uid::parse(u).unwrap(),
    })
    .collect();
    let rid = alice
        .request(|rid| ClientMessage::Subscribe { rid, topics })
        .await;
    let answer = alice.next_answer().await;
    assert!(matches!(answer, ServerMessage::Error { rid: Some(r), .. } if r == rid));
    assert_eq!(code(&answer), Some(ErrorCode::LimitExceeded.as_u16()));
}

fn envelope(from: &Session, to: &Session, body: &[u8]) -> Envelope {
    Envelope::seal(
        Sender {
            uid: &from.uid,
            usk: &from.usk,
            dek: &from.dek.public(),
        },
        &to.uid,
        &to.dek.public(),
        MessageId::random(&mut siren_proto::os_rng()),
        1,
        body,
        &mut siren_proto::os_rng(),
    )
    .unwrap()
}

/// Sends `body` from `from` to `to`; the answer's error code, or `None` for `send_ack`.
async fn send(from: &mut Session, to: &Session, body: &[u8]) -> Option<u16> {
    let env = envelope(from, to, body);
    let rid = from
        .request(|rid| ClientMessage::Send {
            rid,
            msgs: vec![env],
        })
        .await;
    match from.next_answer().await {
        ServerMessage::SendAck { rid: r, .. } if r == rid => None,
        other => Some(code(&other).unwrap_or(0)),
    }
}

/// F4: a recipient device's queue has a quota: beyond it a `send` is refused with 401 and
/// nothing of it is stored, while everything queued before is still delivered; once the device
/// acknowledges, there is room again.
#[tokio::test(flavor = "multi_thread")]
async fn queue_quota_refuses_more_and_loses_nothing() {
    let s = server_with(
        Options {
            limits_lines: "max_queue_items_per_device = 20\nmax_queue_bytes_per_device = 100000\n"
                .into(),
            extra: "[roster]\nnon_contacts = \"accept\"\n".into(),
            ..Options::default()
        },
        &[("mallory", "pw-m"), ("bob", "pw-b"), ("carol", "pw-c")],
    );
    let mut mallory = Session::create(&s, "mallory", "pw-m").await;
    let mut bob = Session::create(&s, "bob", "pw-b").await;
    let carol = Session::create(&s, "carol", "pw-c").await;
    // Bob is online but does not acknowledge: what he was sent stays queued.
    let mut answers = Vec::new();
    for i in 0..25 {
        answers.push(send(&mut mallory, &bob, format!("spam {i}").as_bytes()).await);
    }
    let accepted = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(accepted, 20, "{answers:?}");
    assert!(
        answers[20..]
            .iter()
            .all(|a| *a == Some(ErrorCode::QueueFull.as_u16()))
    );
    // Bytes count too: carol's device has room for one 60 kB message, not two.
    let big = vec![7u8; 60_000];
    assert_eq!(send(&mut mallory, &carol, &big).await, None);
    assert_eq!(
        send(&mut mallory, &carol, &big).await,
        Some(ErrorCode::QueueFull.as_u16())
    );
    // Nothing accepted was lost: bob receives twenty messages.
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        match tokio::time::timeout(
            Duration::from_secs(10),
            bob.conn.receiver.recv::<ServerMessage>(),
        )
        .await
        .expect("deliveries")
        .unwrap()
        {
            ServerMessage::Deliver { seq, .. } => seqs.push(seq),
            _ => continue,
        }
    }
    assert_eq!(seqs.len(), 20);
    // He acknowledges: there is room again.
    bob.conn
        .sender
        .send(&ClientMessage::Ack { seqs })
        .await
        .unwrap();
    let rid = bob.request(|rid| ClientMessage::Ping { rid }).await;
    assert!(matches!(bob.next_answer().await, ServerMessage::Pong { rid: r } if r == rid));
    assert_eq!(send(&mut mallory, &bob, b"room again").await, None);
}

/// F4: one user's sending rate is bounded (error 203 with the seconds to wait).
#[tokio::test(flavor = "multi_thread")]
async fn sender_rate_is_bounded() {
    let s = server_with(
        Options {
            limits_lines: "send_envelopes_per_second = 1\nsend_envelope_burst = 5\n".into(),
            extra: "[roster]\nnon_contacts = \"accept\"\n".into(),
            ..Options::default()
        },
        &[("mallory", "pw-m"), ("bob", "pw-b")],
    );
    let mut mallory = Session::create(&s, "mallory", "pw-m").await;
    let bob = Session::create(&s, "bob", "pw-b").await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(send(&mut mallory, &bob, b"hi").await);
    }
    assert!(answers[..5].iter().all(Option::is_none), "{answers:?}");
    assert!(
        answers[5..].contains(&Some(ErrorCode::RateLimited.as_u16())),
        "{answers:?}"
    );
}
