//! Ephemeral signals (PROTOCOL.md §14) with real `sirend` processes and library clients: a
//! `typing` signal reaches the recipient's live device, is never stored or queued (checked in
//! the RocksDB store itself), never reaches a user who blocked the sender or a non-contact's
//! roster, is bounded in size, count and rate, and crosses servers over the live link only.

use std::time::Duration;

use siren_api::Uid;
use siren_api::storage::{ExportStore, QueueStore};
use siren_client::client::{Client, Event, Received};
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::ids::MessageId;
use siren_proto::message::{ClientMessage, MAX_SIGNAL_CIPHERTEXT, QueueItem, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_tests::raw::Session;
use siren_tests::{Cli, Dns, Options, Server};

/// The longest any one step may take before the test gives up (not a timing assertion: every
/// wait ends as soon as the expected event is there).
const PATIENCE: Duration = Duration::from_secs(30);

const TYPING: Plaintext = Plaintext::Typing { typing: true };

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

/// A connected client whose session is live: its backlog was delivered (`queue_drained` comes
/// after the session registered for live delivery). Returns what arrived before.
async fn live(cli: &Cli) -> (Client, Vec<Event>) {
    let mut client = cli.connected().await;
    let mut before = Vec::new();
    loop {
        match next(&mut client).await {
            Event::Drained => return (client, before),
            other => before.push(other),
        }
    }
}

async fn next(client: &mut Client) -> Event {
    tokio::time::timeout(PATIENCE, client.next_event(false))
        .await
        .expect("an event in time")
        .unwrap()
        .expect("not draining")
}

/// The next message (notices such as a contact request are skipped).
async fn next_message(client: &mut Client) -> Received {
    loop {
        match next(client).await {
            Event::Message(m) => return m,
            Event::Signal(r) => panic!("a signal arrived where a message was expected: {r:?}"),
            _ => {}
        }
    }
}

/// The next signal; a message in between fails the test (a signal must not become one).
async fn next_signal(client: &mut Client) -> Received {
    loop {
        match next(client).await {
            Event::Signal(r) => return r,
            Event::Message(m) => panic!("a message arrived where a signal was expected: {m:?}"),
            _ => {}
        }
    }
}

/// Every item in every queue of a stopped server's RocksDB store (device queues and outboxes).
async fn stored_items(server: &Server) -> Vec<QueueItem> {
    let store = siren_storage_rocksdb::open(server.dir.path().join("siren-data/store")).unwrap();
    let mut items = Vec::new();
    for device in store.queue_devices().await.unwrap() {
        for item in store.pending(&device, 0, 10_000).await.unwrap() {
            items.push(siren_proto::message::decode_value::<QueueItem>(&item.bytes).unwrap());
        }
    }
    items
}

fn envelopes_in(items: &[QueueItem]) -> usize {
    items
        .iter()
        .filter(|i| matches!(i, QueueItem::Message { .. }))
        .count()
}

fn one_server(users: &[&str], limits: &str) -> Server {
    let mut s = Server::new(Options {
        limits_lines: limits.into(),
        ..Options::default()
    });
    for u in users {
        s.add_user(u, &format!("pw-{u}"));
    }
    s.start();
    s
}

fn logged_in(s: &Server, user: &str) -> Cli {
    let cli = Cli::init(s, &format!("{user}@{}", s.name));
    let out = cli.login(&format!("pw-{user}"));
    assert!(out.ok, "{}", out.stderr);
    cli
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typing_signal_reaches_the_live_device() {
    let s = one_server(&["alice", "bob"], "");
    let (alice, bob) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    let (mut bob, _) = live(&bob).await;
    let mut alice = alice.connected().await;

    let devices = alice
        .send_signal(&uid("bob@alpha.test"), &TYPING)
        .await
        .unwrap();
    assert_eq!(devices, 1);
    let got = next_signal(&mut bob).await;
    assert_eq!(got.from, uid("alice@alpha.test"));
    assert_eq!(got.content, TYPING);

    // Signals use the message counter and replay window: a message after it arrives as usual,
    // and the signal's id was not taken for a delivered message's.
    let (id, _) = alice
        .send_text(&uid("bob@alpha.test"), "hello")
        .await
        .unwrap();
    let m = next_message(&mut bob).await;
    assert_eq!((m.id, m.from), (id, uid("alice@alpha.test")));
    // And the other way round, including to one's own other devices (none here: 0).
    let idle = Plaintext::Typing { typing: false };
    assert_eq!(
        bob.send_signal(&uid("alice@alpha.test"), &idle)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        bob.send_signal(&uid("bob@alpha.test"), &idle)
            .await
            .unwrap(),
        0
    );
    assert_eq!(next_signal(&mut alice).await.content, idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_for_an_offline_device_is_dropped_and_never_stored() {
    let mut s = one_server(&["alice", "bob"], "");
    let (alice_cli, bob_cli) = (logged_in(&s, "alice"), logged_in(&s, "bob"));
    {
        let mut alice = alice_cli.connected().await;
        // Bob has no live session: the answer is the same `ok`.
        for _ in 0..3 {
            assert_eq!(
                alice
                    .send_signal(&uid("bob@alpha.test"), &TYPING)
                    .await
                    .unwrap(),
                1
            );
        }
        alice.bye().await.unwrap();
    }
    // Nothing of it is in the store: no envelope in any queue (bob's, or any other).
    assert!(s.stop());
    let items = stored_items(&s).await;
    assert_eq!(envelopes_in(&items), 0, "a signal was stored: {items:?}");

    // Bob comes online later: nothing arrives.
    s.start();
    let (mut bob, before) = live(&bob_cli).await;
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::Signal(_) | Event::Message(_))),
        "{before:?}"
    );
    // Only what is sent now arrives (and it is the first thing bob sees from alice).
    let mut alice = alice_cli.connected().await;
    alice
        .send_text(&uid("bob@alpha.test"), "now")
        .await
        .unwrap();
    let m = next_message(&mut bob).await;
    assert!(
        matches!(&m.content, Plaintext::Text { body, .. } if body == "now"),
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_from_blocked_users_and_non_contacts_do_not_arrive() {
    let s = one_server(&["alice", "bob", "carol", "dave"], "");
    let alice = logged_in(&s, "alice");
    let bob = logged_in(&s, "bob");
    let carol = logged_in(&s, "carol");
    let dave = logged_in(&s, "dave");
    // Bob blocks alice and has carol as a contact; dave is neither.
    assert!(bob.run(&["contacts", "block", "alice@alpha.test"]).ok);
    assert!(bob.run(&["contacts", "add", "carol@alpha.test"]).ok);
    let (mut bob, _) = live(&bob).await;
    let mut alice = alice.connected().await;
    let mut dave = dave.connected().await;
    let mut carol = carol.connected().await;

    // Each is answered as if delivered (blocking is not revealed).
    let to_bob = uid("bob@alpha.test");
    assert_eq!(alice.send_signal(&to_bob, &TYPING).await.unwrap(), 1);
    assert_eq!(dave.send_signal(&to_bob, &TYPING).await.unwrap(), 1);
    // Carol's signal is handed over after theirs (each `ok` comes after the hand-over), so it is
    // the first one bob's session sees only if theirs were dropped.
    assert_eq!(carol.send_signal(&to_bob, &TYPING).await.unwrap(), 1);
    let first = next_signal(&mut bob).await;
    assert_eq!(first.from, uid("carol@alpha.test"));
}

/// An envelope of `len` plaintext bytes from `from` to `to`'s device.
fn seal(from: &Session, to: &Session, ctr: u64, len: usize) -> Envelope {
    let mut rng = siren_proto::os_rng();
    Envelope::seal(
        Sender {
            uid: &from.uid,
            usk: &from.usk,
            dek: &from.dek.public(),
        },
        &to.uid,
        &to.dek.public(),
        MessageId::random(&mut rng),
        ctr,
        &vec![0x61; len],
        &mut rng,
    )
    .unwrap()
}

/// Sends a `signal` and returns the answer's error code (0 for `ok`) and text.
async fn answer(session: &mut Session, msgs: Vec<Envelope>) -> (u16, String) {
    let rid = session
        .request(|rid| ClientMessage::Signal { rid, msgs })
        .await;
    match session.next_answer().await {
        ServerMessage::Ok { rid: r } if r == rid => (0, String::new()),
        ServerMessage::Error { rid: r, code, msg } if r == Some(rid) => (code, msg),
        other => panic!("unexpected answer: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_too_many_forged_and_too_fast_signals_are_refused() {
    let s = one_server(
        &["alice", "bob", "mallory"],
        "signal_envelopes_per_second = 1\nsignal_envelope_burst = 20\n\
         check_envelope_signatures = true",
    );
    let mut alice = Session::create(&s, "alice", "pw-alice").await;
    let bob = Session::create(&s, "bob", "pw-bob").await;
    let small = seal(&alice, &bob, 1, 10);
    let largest = seal(&alice, &bob, 2, MAX_SIGNAL_CIPHERTEXT - 16);
    let too_large = seal(&alice, &bob, 3, MAX_SIGNAL_CIPHERTEXT - 15);
    assert_eq!(largest.ct.len(), MAX_SIGNAL_CIPHERTEXT);

    // The size bound (4096 bytes of ciphertext) and the count bound (256): 107.
    assert_eq!(answer(&mut alice, vec![too_large]).await.0, 107);
    assert_eq!(answer(&mut alice, vec![small.clone(); 257]).await.0, 107);
    // More envelopes than the session's whole burst (20 here): 107.
    assert_eq!(answer(&mut alice, vec![small.clone(); 21]).await.0, 107);
    // The burst, then the rate (1 envelope per second): 203 with the time to wait.
    let mut burst = vec![largest; 10];
    burst.extend(vec![small.clone(); 10]);
    assert_eq!(answer(&mut alice, burst).await.0, 0);
    let (code, msg) = answer(&mut alice, vec![small.clone(); 3]).await;
    assert_eq!(code, 203, "{msg}");
    assert!(msg.contains("retry in"), "{msg}");

    // A forged sender is refused like in `send` (400), on a fresh session's budget.
    let mut mallory = Session::create(&s, "mallory", "pw-mallory").await;
    let forged_by_mallory = {
        let mut e = small.clone();
        e.from = mallory.uid.clone();
        e.from_dek = mallory.dek.public();
        e
    };
    assert_eq!(answer(&mut mallory, vec![small.clone()]).await.0, 400);
    // Sender fields of mallory's own, but signed by alice's USK: 301 (the server checks
    // signatures too here: `check_envelope_signatures`).
    assert_eq!(answer(&mut mallory, vec![forged_by_mallory]).await.0, 301);
}

/// Two federated servers (through one dnsmasq), alice on alpha and bob on beta, started.
fn two_servers() -> (Server, Server, Dns) {
    let mut alpha = Server::new(Options {
        name: "alpha.test".into(),
        ..Options::default()
    });
    let mut beta = Server::new(Options {
        name: "beta.test".into(),
        ..Options::default()
    });
    alpha.add_user("alice", "pw-alice");
    beta.add_user("bob", "pw-bob");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    for s in [&alpha, &beta] {
        dns.federate(s, "");
    }
    alpha.start();
    beta.start();
    (alpha, beta, dns)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_crosses_the_live_link_and_never_enters_the_outbox() {
    let (mut alpha, mut beta, _dns) = two_servers();
    let alice = logged_in(&alpha, "alice");
    let bob = logged_in(&beta, "bob");
    let (mut bob, _) = live(&bob).await;
    let mut alice = alice.connected().await;

    // The first signal looks bob up (which opens alpha's link to beta), then goes over it.
    let to_bob = uid("bob@beta.test");
    assert_eq!(alice.send_signal(&to_bob, &TYPING).await.unwrap(), 1);
    let got = next_signal(&mut bob).await;
    assert_eq!(got.from, uid("alice@alpha.test"));
    assert_eq!(got.content, TYPING);
    // A second one uses the cached directory and the same link.
    let idle = Plaintext::Typing { typing: false };
    assert_eq!(alice.send_signal(&to_bob, &idle).await.unwrap(), 1);
    assert_eq!(next_signal(&mut bob).await.content, idle);

    // Nothing went into alpha's outbox for beta, nor into any queue on either side.
    alice.bye().await.unwrap();
    bob.bye().await.unwrap();
    assert!(alpha.stop());
    assert!(beta.stop());
    for server in [&alpha, &beta] {
        let items = stored_items(server).await;
        assert_eq!(
            envelopes_in(&items),
            0,
            "{}: a signal was stored: {items:?}",
            server.name
        );
    }
}
