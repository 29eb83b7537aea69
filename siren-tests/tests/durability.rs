//! No acknowledged message is lost: a stream of sends is interrupted by a graceful restart or by
//! `kill -9`, and every message the server acknowledged is delivered afterwards — also when the
//! recipient is online and gets messages through the fast path, before they are durable
//! (PROTOCOL.md §13).

use std::collections::BTreeSet;
use std::time::Duration;

use siren_tests::{Cli, Options, Server};

#[derive(Clone, Copy)]
enum Stop {
    Graceful,
    Kill9,
}

fn stream_and_stop(stop: Stop, online: bool) {
    let port = siren_tests::free_port();
    let mut server = Server::new(Options {
        extra: siren_tests::metrics::metrics_on(port),
        ..Options::default()
    });
    server.add_user("alice", "pw-a");
    server.add_user("bob", "pw-b");
    server.start();
    let alice = Cli::init(&server, "alice@alpha.test");
    let bob = Cli::init(&server, "bob@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    // Online: bob listens through the whole stream (his `siren listen` ends with the server).
    let live = online.then(|| bob.listen());

    // Alice sends as fast as the server acknowledges, from a library client on another thread.
    let sender = siren_tests::stream::SendStream::start(alice.profile(), "bob@alpha.test");
    // Let a stream build up, then stop the server in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sender.acked() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream did not get going"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if online {
        // The fast path is in use: items went to bob before their commit was durable.
        let at = format!("127.0.0.1:{port}").parse().unwrap();
        let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
        let early = siren_tests::metrics::sample(&text, "siren_messages_delivered_early_total");
        assert!(early.is_some_and(|n| n > 0.0), "no early delivery:\n{text}");
        // And commits settled by bob's acknowledgements, without a sync (crate::deferred):
        // waited for while the stream goes on (a slow machine may need a few tries).
        loop {
            let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
            let unsynced =
                siren_tests::metrics::sample(&text, "siren_messages_acknowledged_unsynced_total");
            if unsynced.is_some_and(|n| n > 0.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no commit was settled by an acknowledgement:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    match stop {
        Stop::Graceful => assert!(server.stop(), "graceful shutdown must exit cleanly"),
        Stop::Kill9 => server.kill(),
    }
    let acked = sender.join();
    assert!(acked.len() >= 40);
    let mut received: BTreeSet<String> = BTreeSet::new();
    if let Some(live) = live {
        while let Some(line) = live.next_line(Duration::from_secs(2)) {
            received.insert(line.trim_start_matches("alice@alpha.test: ").to_owned());
        }
        assert!(!received.is_empty(), "bob received nothing while online");
    }

    server.start();
    received.extend(
        bob.recv()
            .into_iter()
            .map(|line| line.trim_start_matches("alice@alpha.test: ").to_owned()),
    );
    let missing: Vec<&String> = acked.iter().filter(|t| !received.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages were lost: {:?}",
        missing.len(),
        acked.len(),
        missing
    );
}

#[test]
fn graceful_restart_during_a_stream_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Graceful, false);
}

#[test]
fn kill_9_during_a_stream_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Kill9, false);
}

#[test]
fn kill_9_during_a_stream_to_an_online_device_loses_no_acknowledged_message() {
    stream_and_stop(Stop::Kill9, true);
}

/// The online fast path writes nothing of a message its live device acknowledges within a few
/// milliseconds (PROTOCOL.md §13). A live device that does *not* acknowledge it must still find
/// it after reconnecting: the sender was acknowledged, so the message was written and synced.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_early_and_never_acknowledged_comes_again_after_a_reconnect() {
    use siren_proto::ids::MessageId;
    use siren_proto::message::{ClientMessage, NextStep, QueueItem, ServerMessage};
    use siren_tests::raw::{self, Session};

    let mut s = Server::new(Options::default());
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    let mut bob = Session::create(&s, "bob", "pw-b").await;
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let seal = |ctr: u64, text: &[u8]| alice.seal_to(&bob.uid, &bob.dek.public(), ctr, text);
    let delivered = |msg: &ServerMessage, id: MessageId| match msg {
        ServerMessage::Deliver {
            item: QueueItem::Message { env },
            seq,
        } => (env.id == id).then_some(*seq),
        _ => None,
    };
    // The first message to bob's device is acknowledged (the server then knows the device's
    // numbers, which the unwritten path needs); the second is not.
    let (first, second) = (seal(1, b"seen"), seal(2, b"keep me"));
    let id = second.id;
    for (env, acknowledge) in [(first, true), (second, false)] {
        let this = env.id;
        alice
            .request(|rid| ClientMessage::Send {
                rid,
                msgs: vec![env],
            })
            .await;
        let seq = loop {
            let msg = raw::next_message(&mut bob.conn).await;
            if let Some(seq) = delivered(&msg, this) {
                break seq;
            }
        };
        if acknowledge {
            bob.conn
                .sender
                .send(&ClientMessage::Ack { seqs: vec![seq] })
                .await
                .unwrap();
        }
        assert!(matches!(
            alice.next_answer().await,
            ServerMessage::SendAck { .. }
        ));
    }
    drop(bob.conn);

    // Bob's device logs in again (same DEK): the message is delivered again.
    let mut conn = raw::open(&s, &bob.dek).await;
    raw::start_plain(&mut conn, "bob", "pw-b").await;
    let mut ready = false;
    loop {
        match raw::next_message(&mut conn).await {
            ServerMessage::AuthSuccess { next, .. } => {
                assert_eq!(next, NextStep::Ready);
                ready = true;
            }
            ServerMessage::QueueDrained => panic!("the unacknowledged message was lost"),
            msg if delivered(&msg, id).is_some() => break,
            _ => {}
        }
    }
    assert!(ready);
}
