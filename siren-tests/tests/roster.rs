//! The Personal Roster with real processes: signed versions without rollback, blocking enforced
//! by the server, contact requests for first messages from non-contacts.

use siren_api::ErrorCode;
use siren_proto::keys::UskSecret;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::roster::{Contact, Roster};
use siren_tests::raw::Session;
use siren_tests::{Cli, Options, Server};

fn server() -> Server {
    let mut s = Server::new(Options::default());
    for (u, p) in [("alice", "pw-a"), ("bob", "pw-b"), ("mallory", "pw-m")] {
        s.add_user(u, p);
    }
    s.start();
    s
}

#[test]
fn blocked_users_messages_do_not_arrive() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    let bob = Cli::init(&s, "bob@alpha.test");
    let mallory = Cli::init(&s, "mallory@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    mallory.login("pw-m");
    let out = bob.run(&["contacts", "block", "mallory@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
    let listed = bob.run(&["contacts", "list"]);
    assert!(
        listed.stdout.contains("blocked mallory@alpha.test"),
        "{}",
        listed.stdout
    );
    // Mallory is told "sent" (blocking is not revealed) but nothing reaches bob.
    mallory.send("bob@alpha.test", "let me in");
    alice.send("bob@alpha.test", "hi bob");
    let got = bob.recv();
    assert_eq!(got, vec!["alice@alpha.test: hi bob"]);
    // Unblocked, mallory's next message arrives.
    assert!(bob.run(&["contacts", "unblock", "mallory@alpha.test"]).ok);
    mallory.send("bob@alpha.test", "second try");
    assert_eq!(bob.recv(), vec!["mallory@alpha.test: second try"]);
}

#[test]
fn first_message_from_a_non_contact_is_a_contact_request() {
    let s = server();
    let alice = Cli::init(&s, "alice@alpha.test");
    let bob = Cli::init(&s, "bob@alpha.test");
    alice.login("pw-a");
    bob.login("pw-b");
    alice.send("bob@alpha.test", "hello stranger");
    alice.send("bob@alpha.test", "again");
    let out = bob.run(&["recv"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stderr
            .matches("contact request from alice@alpha.test")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            "alice@alpha.test: hello stranger",
            "alice@alpha.test: again"
        ]
    );
    // Once alice is a contact, a new sender device gets no request either.
    assert!(
        bob.run(&["contacts", "add", "alice@alpha.test", "--name", "Alice"])
            .ok
    );
    let listed = bob.run(&["contacts", "list"]);
    assert!(
        listed.stdout.contains("contact alice@alpha.test (Alice)"),
        "{}",
        listed.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roster_rollback_and_forgery_are_refused() {
    let s = server();
    let mut alice = Session::create(&s, "alice", "pw-a").await;
    let bob = siren_api::Uid::parse("bob@alpha.test").unwrap();
    let v1 = Roster::sign_next(&alice.usk, alice.uid.clone(), None, 1, vec![], vec![]);
    let v2 = Roster::sign_next(
        &alice.usk,
        alice.uid.clone(),
        Some(&v1),
        2,
        vec![Contact {
            uid: bob.clone(),
            name: None,
            presence: true,
        }],
        vec![],
    );
    for r in [&v1, &v2] {
        let rid = alice
            .request(|rid| ClientMessage::RosterPut {
                rid,
                roster: r.clone(),
            })
            .await;
        assert_eq!(alice.next_answer().await, ServerMessage::Ok { rid });
    }
    let code = |m: ServerMessage| match m {
        ServerMessage::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    };
    // The server (or anyone) replaying version 1 over version 2: rollback.
    alice
        .request(|rid| ClientMessage::RosterPut {
            rid,
            roster: v1.clone(),
        })
        .await;
    assert_eq!(
        code(alice.next_answer().await),
        ErrorCode::Rollback.as_u16()
    );
    // A roster signed by another key: refused.
    let other = UskSecret::generate(&mut siren_proto::os_rng());
    let forged = Roster::sign_next(&other, alice.uid.clone(), Some(&v2), 3, vec![], vec![]);
    alice
        .request(|rid| ClientMessage::RosterPut {
            rid,
            roster: forged,
        })
        .await;
    assert_eq!(
        code(alice.next_answer().await),
        ErrorCode::KeyMismatch.as_u16()
    );
    // The stored roster is still version 2.
    let rid = alice.request(|rid| ClientMessage::RosterGet { rid }).await;
    match alice.next_answer().await {
        ServerMessage::Roster {
            rid: r,
            roster: Some(stored),
        } if r == rid => assert_eq!(stored, v2),
        other => panic!("unexpected {other:?}"),
    }
}
