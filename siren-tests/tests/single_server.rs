//! One real `sirend` and real `siren` clients on loopback: the README walkthrough, online and
//! offline delivery, TTL expiry, and what the server keeps on disk.

use std::time::Duration;

use siren_tests::{Cli, Options, Server, any_file_contains};

fn two_users(options: Options) -> (Server, Cli, Cli) {
    let mut server = Server::new(options);
    server.add_user("alice", "alice-password");
    server.add_user("bob", "bob-password");
    server.start();
    let alice = Cli::init(&server, "alice@alpha.test");
    let bob = Cli::init(&server, "bob@alpha.test");
    alice.login("alice-password");
    bob.login("bob-password");
    (server, alice, bob)
}

#[test]
fn offline_delivery_as_in_the_readme() {
    let (_server, alice, bob) = two_users(Options::default());
    alice.send("bob@alpha.test", "hello bob");
    alice.send("bob@alpha.test", "second message");
    assert_eq!(
        bob.recv(),
        vec![
            "alice@alpha.test: hello bob",
            "alice@alpha.test: second message"
        ]
    );
    // Delivered means acknowledged and gone: a second recv finds nothing.
    assert!(bob.recv().is_empty());
    bob.send("alice@alpha.test", "hi alice");
    assert_eq!(alice.recv(), vec!["bob@alpha.test: hi alice"]);
}

#[test]
fn online_delivery_to_a_listening_client() {
    let (_server, alice, bob) = two_users(Options::default());
    let listener = bob.listen();
    alice.send("bob@alpha.test", "are you there?");
    let line = listener.next_line(Duration::from_secs(20));
    assert_eq!(line.as_deref(), Some("alice@alpha.test: are you there?"));
}

#[test]
fn lookup_reports_devices_and_verifies_them() {
    let (_server, alice, _bob) = two_users(Options::default());
    let out = alice.run(&["lookup", "bob@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("bob@alpha.test: signing key "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(new)"),
        "first lookup shows the device as new: {}",
        out.stdout
    );
    let again = alice.run(&["lookup", "bob@alpha.test"]);
    assert!(!again.stdout.contains("(new)"), "{}", again.stdout);
    let missing = alice.run(&["lookup", "nobody@alpha.test"]);
    assert!(!missing.ok);
    assert!(missing.stderr.contains("not_found"), "{}", missing.stderr);
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let mut server = Server::new(Options::default());
    server.add_user("alice", "right");
    server.start();
    let a = Cli::init(&server, "alice@alpha.test");
    let wrong = a.run_with_stdin(&["login", "--password-stdin"], "wrong\n");
    let b = Cli::init(&server, "nobody@alpha.test");
    let unknown = b.run_with_stdin(&["login", "--password-stdin"], "whatever\n");
    assert!(!wrong.ok && !unknown.ok);
    assert!(
        wrong.stderr.contains("auth_failed, 201"),
        "{}",
        wrong.stderr
    );
    assert_eq!(
        wrong.stderr.replace("alice", "X"),
        unknown.stderr.replace("nobody", "X")
    );
}

#[test]
fn failed_logins_are_rate_limited_per_account() {
    let mut server = Server::new(Options::default());
    server.add_user("alice", "right");
    server.start();
    let a = Cli::init(&server, "alice@alpha.test");
    for _ in 0..5 {
        let out = a.run_with_stdin(&["login", "--password-stdin"], "wrong\n");
        assert!(out.stderr.contains("auth_failed"), "{}", out.stderr);
    }
    // The limit is reached: even the right password is refused for a minute.
    let out = a.run_with_stdin(&["login", "--password-stdin"], "right\n");
    assert!(!out.ok);
    assert!(out.stderr.contains("rate_limited, 203"), "{}", out.stderr);
}

#[test]
fn undelivered_messages_expire() {
    let (_server, alice, bob) = two_users(Options {
        queue_ttl_secs: 2,
        sweep_interval_secs: 1,
        ..Options::default()
    });
    alice.send("bob@alpha.test", "this will expire");
    std::thread::sleep(Duration::from_secs(5));
    assert!(bob.recv().is_empty(), "an expired message was delivered");
    // A fresh message still arrives.
    alice.send("bob@alpha.test", "fresh");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: fresh"]);
}

#[test]
fn the_data_directory_holds_no_plaintext() {
    let (mut server, alice, bob) = two_users(Options::default());
    let marker = "PLAINTEXT-MARKER-6d1f0c9e";
    for i in 0..20 {
        alice.send("bob@alpha.test", &format!("{marker} number {i}"));
    }
    // Flush everything to disk (graceful stop), then scan every file the server wrote.
    assert!(server.stop());
    assert_eq!(
        any_file_contains(server.dir.path(), marker.as_bytes()),
        None,
        "a message's plaintext reached the server's disk"
    );
    assert_eq!(
        any_file_contains(server.dir.path(), b"alice-password"),
        None
    );
    // The messages are there, sealed: bob can still read them.
    server.start();
    assert_eq!(bob.recv().len(), 20);
}

/// A session may have several commits in flight (each waits up to 2 ms for its recipient's
/// acknowledgements): messages sent back to back, without waiting for `send_ack`, still reach
/// the live recipient in the order sent, and every `send` is answered, in order.
#[tokio::test(flavor = "multi_thread")]
async fn messages_sent_back_to_back_arrive_in_order_and_are_acknowledged_in_order() {
    use siren_proto::message::{ClientMessage, QueueItem, ServerMessage};
    use siren_tests::raw::Session;

    const N: u64 = 300;
    let mut s = Server::new(Options::default());
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    let mut bob = Session::create(&s, "bob", "pw-b").await;
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let envelopes: Vec<_> = (1..=N)
        .map(|ctr| alice.seal_to(&bob.uid, &bob.dek.public(), ctr, b"in order"))
        .collect();
    // Bob reads as they come and acknowledges 16 at a time (so commits wait for him).
    let receiver = tokio::spawn(async move {
        let mut counters = Vec::new();
        let mut unacked = Vec::new();
        while counters.len() < N as usize {
            let msg = siren_tests::raw::next_message(&mut bob.conn).await;
            if let ServerMessage::Deliver {
                seq,
                item: QueueItem::Message { env },
            } = msg
            {
                counters.push(env.ctr);
                unacked.push(seq);
                if unacked.len() == 16 {
                    let seqs = std::mem::take(&mut unacked);
                    bob.conn
                        .sender
                        .send(&ClientMessage::Ack { seqs })
                        .await
                        .unwrap();
                }
            }
        }
        counters
    });
    let mut rids = Vec::new();
    for env in envelopes {
        rids.push(
            alice
                .request(|rid| ClientMessage::Send {
                    rid,
                    msgs: vec![env],
                })
                .await,
        );
    }
    for rid in rids {
        match alice.next_answer().await {
            ServerMessage::SendAck { rid: r, .. } => assert_eq!(r, rid, "answers out of order"),
            other => panic!("send {rid} not acknowledged: {other:?}"),
        }
    }
    let counters = receiver.await.unwrap();
    assert_eq!(
        counters,
        (1..=N).collect::<Vec<_>>(),
        "delivered out of order"
    );
}
