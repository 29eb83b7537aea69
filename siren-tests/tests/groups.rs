//! Groups (PROTOCOL.md §12.1) with real processes: two federated `sirend`s found through a real
//! DNS server, three users with two devices each, driven through the `siren` CLI.

use std::time::{Duration, Instant};

use siren_tests::{Cli, Dns, Options, Server, second_device};

const T: Duration = Duration::from_secs(30);

fn server(name: &str) -> Server {
    Server::new(Options {
        name: name.into(),
        ..Options::default()
    })
}

/// Everything `cli` receives (its standard output lines) until `done` says so, or 30 s.
fn receive_until(cli: &Cli, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let (mut got, mut notes) = (Vec::new(), String::new());
    let deadline = Instant::now() + T;
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "gave up waiting; got {got:?}; on stderr: {notes}"
        );
        let out = cli.run(&["recv"]);
        assert!(out.ok, "siren recv: {}", out.stderr);
        got.extend(out.stdout.lines().map(str::to_owned));
        notes.push_str(&out.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    got
}

/// Receives until a line equal to `line` arrived; everything received.
fn receive_line(cli: &Cli, line: &str) -> Vec<String> {
    receive_until(cli, |got| got.iter().any(|l| l == line))
}

fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

struct World {
    _servers: (Server, Server, Dns),
    alice: [Cli; 2],
    bob: [Cli; 2],
    carol: [Cli; 2],
}

/// alice and bob on alpha.test, carol on beta.test, each with a laptop and a phone.
fn world() -> World {
    let mut alpha = server("alpha.test");
    let mut beta = server("beta.test");
    alpha.add_user("alice", "pw-a");
    alpha.add_user("bob", "pw-b");
    beta.add_user("carol", "pw-c");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    dns.federate(&alpha, "");
    dns.federate(&beta, "");
    alpha.start();
    beta.start();
    let devices = |s: &Server, uid: &str, password: &str| {
        let laptop = Cli::init(s, uid);
        assert!(laptop.login(password).ok);
        let phone = second_device(s, &laptop, uid, password);
        [laptop, phone]
    };
    let alice = devices(&alpha, "alice@alpha.test", "pw-a");
    let bob = devices(&alpha, "bob@alpha.test", "pw-b");
    let carol = devices(&beta, "carol@beta.test", "pw-c");
    World {
        _servers: (alpha, beta, dns),
        alice,
        bob,
        carol,
    }
}

/// The group id `siren group create` printed.
fn created(out: &siren_tests::Output) -> String {
    assert!(out.ok, "group create: {}", out.stderr);
    out.stdout
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("a group id in {:?}", out.stdout))
        .to_owned()
}

fn run_ok(cli: &Cli, args: &[&str]) -> String {
    let out = cli.run(args);
    assert!(out.ok, "{args:?}: {}", out.stderr);
    out.stdout
}

/// Three users on two servers with two devices each: every member device gets each group
/// message once; a removal takes effect for the next message; a re-added member works again.
#[test]
fn a_group_across_two_servers_reaches_every_device_once_and_follows_its_membership() {
    let w = world();
    let id = created(&w.alice[0].run(&[
        "group",
        "create",
        "Lunch",
        "bob@alpha.test",
        "carol@beta.test",
    ]));
    let others: Vec<&Cli> = [&w.alice[1]]
        .into_iter()
        .chain(&w.bob)
        .chain(&w.carol)
        .collect();
    for device in &others {
        receive_line(
            device,
            "* [Lunch] you are in the group, added by alice@alpha.test (version 1)",
        );
    }

    // A message by title from alice's laptop: every other device once.
    run_ok(&w.alice[0], &["send", "Lunch", "hello all"]);
    let line = "[Lunch] alice@alpha.test: hello all".to_owned();
    for device in &others {
        let got = receive_line(device, &line);
        assert_eq!(count(&got, &line), 1, "{got:?}");
    }
    // From bob's phone, by id: bob's laptop too, and alice's two devices.
    run_ok(&w.bob[1], &["send", &id, "hi from bob's phone"]);
    let line = "[Lunch] bob@alpha.test: hi from bob's phone".to_owned();
    for device in w.alice.iter().chain([&w.bob[0]]).chain(&w.carol) {
        let got = receive_line(device, &line);
        assert_eq!(count(&got, &line), 1, "{got:?}");
    }
    // Nothing came twice: a later look finds no copy.
    for device in &others {
        assert!(
            !device.recv().iter().any(|l| l.contains("hello all")),
            "a second copy"
        );
    }

    // carol is removed: she is told, and the next message does not reach her.
    run_ok(
        &w.alice[0],
        &["group", "remove", "Lunch", "carol@beta.test"],
    );
    for device in &w.carol {
        receive_line(device, "* [Lunch] alice@alpha.test removed carol@beta.test");
    }
    // Sealed to alice's phone and bob's two devices only: nothing to carol's, whatever a server
    // would do.
    let sent = run_ok(&w.alice[0], &["send", "Lunch", "just us now"]);
    assert!(sent.contains("(3 devices)"), "{sent}");
    let line = "[Lunch] alice@alpha.test: just us now".to_owned();
    for device in w.bob.iter().chain([&w.alice[1]]) {
        receive_line(device, &line);
    }
    for device in &w.carol {
        let got = device.recv();
        assert!(
            !got.iter().any(|l| l.contains("just us now")),
            "a removed member received {got:?}"
        );
    }
    // Her own client knows she is out.
    let refused = w.carol[0].run(&["send", &id, "can I still write?"]);
    assert!(
        !refused.ok && refused.stderr.contains("no longer a member"),
        "{}",
        refused.stderr
    );
    assert!(run_ok(&w.carol[0], &["group", "list"]).contains("(you are no longer a member)"));

    // Re-added, carol is told, and the group works for her again both ways.
    run_ok(&w.alice[0], &["group", "add", "Lunch", "carol@beta.test"]);
    for device in &w.carol {
        receive_line(device, "* [Lunch] alice@alpha.test added carol@beta.test");
    }
    run_ok(&w.carol[1], &["send", "Lunch", "back again"]);
    let line = "[Lunch] carol@beta.test: back again".to_owned();
    for device in w.alice.iter().chain(&w.bob).chain([&w.carol[0]]) {
        let got = receive_line(device, &line);
        assert_eq!(count(&got, &line), 1, "{got:?}");
    }
    let info = run_ok(&w.bob[0], &["group", "info", "Lunch"]);
    assert!(
        info.contains("version 3 (made by alice@alpha.test)"),
        "{info}"
    );
    assert!(info.contains("member  alice@alpha.test  admin"), "{info}");
    assert!(info.contains("member  carol@beta.test\n"), "{info}");

    // bob leaves: everyone is told; bob is no longer sent anything.
    run_ok(&w.bob[0], &["group", "leave", "Lunch"]);
    for device in w.alice.iter().chain(&w.carol).chain([&w.bob[1]]) {
        receive_line(device, "* [Lunch] bob@alpha.test left");
    }
}

// ---------------------------------------------------------------------------------------------
// Members refuse what no admin made, forks and replays, and notice a dropped update.

use siren_api::Uid;
use siren_proto::envelope::Envelope;
use siren_proto::group::{GroupState, Membership};
use siren_proto::ids::MessageId;
use siren_proto::keys::Signature;
use siren_proto::message::{ClientMessage, QueueItem, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::DirectoryListing;
use siren_tests::hostile::{self, Hostile, Seen, with_client};

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

/// One server with alice, bob, carol, dave and mallory, one device each; alice created "Lunch"
/// with bob and carol, and carol's device holds its version 1.
fn lunch() -> (Server, [Cli; 5], String) {
    let mut s = server("alpha.test");
    for (u, p) in [
        ("alice", "pw-a"),
        ("bob", "pw-b"),
        ("carol", "pw-c"),
        ("dave", "pw-d"),
        ("mallory", "pw-m"),
    ] {
        s.add_user(u, p);
    }
    s.start();
    let cli = |u: &str, p: &str| {
        let c = Cli::init(&s, &format!("{u}@alpha.test"));
        assert!(c.login(p).ok);
        c
    };
    let people = [
        cli("alice", "pw-a"),
        cli("bob", "pw-b"),
        cli("carol", "pw-c"),
        cli("dave", "pw-d"),
        cli("mallory", "pw-m"),
    ];
    let id = created(&people[0].run(&[
        "group",
        "create",
        "Lunch",
        "bob@alpha.test",
        "carol@alpha.test",
    ]));
    receive_line(
        &people[2],
        "* [Lunch] you are in the group, added by alice@alpha.test (version 1)",
    );
    (s, people, id)
}

/// The versions of "Lunch" `cli`'s device holds.
fn versions(cli: &Cli) -> Vec<GroupState> {
    with_client(cli.profile(), async |c| {
        c.find_group("Lunch").await.unwrap().1.versions
    })
}

/// Sends `content` from `from`'s device to `to` through the real server, as a member's client
/// that does not follow the rules could.
fn send_crafted(from: &Cli, to: &str, content: Plaintext) {
    let to = uid(to);
    with_client(from.profile(), async |c| {
        c.connect().await.unwrap();
        c.send_plaintext(&to, MessageId::random(&mut siren_proto::os_rng()), &content)
            .await
            .unwrap();
        c.bye().await.unwrap();
    });
}

/// `state` signed again with `signer`'s USK (a member signing what the rules do not let it).
fn signed_by(signer: &Cli, mut state: GroupState) -> GroupState {
    use ed25519_dalek::Signer as _;
    let seed = with_client(signer.profile(), async |c| *c.usk().unwrap().to_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    state.sig = Signature::from_bytes(key.sign(&state.signed_bytes()).to_bytes());
    state
}

/// What `siren recv` on `cli` printed on standard error (notes, refusals).
fn recv_notes(cli: &Cli) -> String {
    let out = cli.run(&["recv"]);
    assert!(out.ok, "recv: {}", out.stderr);
    out.stderr
}

/// Sends `state` from `from`'s device to carol's as a `group_update`; what carol's `siren recv`
/// then printed on standard error.
fn offer_to_carol(from: &Cli, carol: &Cli, state: GroupState) -> String {
    send_crafted(
        from,
        "carol@alpha.test",
        Plaintext::GroupUpdate(Box::new(state)),
    );
    recv_notes(carol)
}

fn members(cli: &Cli) -> String {
    run_ok(cli, &["group", "info", "Lunch"])
}

#[test]
fn members_refuse_a_change_by_a_non_admin_a_fork_a_replay_and_a_removed_members_message() {
    let (_s, [alice, bob, carol, _dave, _mallory], _id) = lunch();
    let v1 = versions(&carol).pop().unwrap();

    // bob (a member, no admin) makes a version 2 that adds mallory and makes him admin.
    let forged = signed_by(
        &bob,
        GroupState {
            version: 2,
            prev: v1.hash(),
            by: uid("bob@alpha.test"),
            members: vec![
                uid("alice@alpha.test"),
                uid("bob@alpha.test"),
                uid("carol@alpha.test"),
                uid("mallory@alpha.test"),
            ],
            admins: vec![uid("alice@alpha.test"), uid("bob@alpha.test")],
            ..v1.clone()
        },
    );
    let notes = offer_to_carol(&bob, &carol, forged);
    assert!(
        notes.contains(
            "[Lunch] refused a group change or message from bob@alpha.test: bob@alpha.test is not an admin of version 1"
        ),
        "{notes}"
    );
    assert!(!members(&carol).contains("mallory"));

    // alice adds dave: version 2. A second version 2 by alice herself (made on another device,
    // or replayed from an old copy of her key's work) is a fork, and so is what follows it.
    run_ok(&alice, &["group", "add", "Lunch", "dave@alpha.test"]);
    receive_line(&carol, "* [Lunch] alice@alpha.test added dave@alpha.test");
    let usk = with_client(alice.profile(), async |c| c.usk().unwrap());
    let other_v2 = v1
        .next(
            &usk,
            uid("alice@alpha.test"),
            v1.ts + 1,
            Membership {
                members: vec![
                    uid("alice@alpha.test"),
                    uid("bob@alpha.test"),
                    uid("carol@alpha.test"),
                    uid("mallory@alpha.test"),
                ],
                ..v1.membership()
            },
        )
        .unwrap();
    let other_v3 = other_v2
        .next(
            &usk,
            uid("alice@alpha.test"),
            v1.ts + 2,
            other_v2.membership(),
        )
        .unwrap();
    let notes = offer_to_carol(&alice, &carol, other_v2);
    assert!(
        notes.contains("version 2 differs from the version 2 held (a rollback or a fork"),
        "{notes}"
    );
    let notes = offer_to_carol(&alice, &carol, other_v3);
    assert!(
        notes.contains("version 3 does not follow the version held (a fork)"),
        "{notes}"
    );
    // Version 1 again, as a server or a member may replay it: a late duplicate, ignored.
    send_crafted(
        &bob,
        "carol@alpha.test",
        Plaintext::GroupUpdate(Box::new(v1.clone())),
    );
    let out = carol.run(&["recv"]);
    assert!(
        !out.stdout.contains("[Lunch]") && !out.stderr.contains("[Lunch]"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let info = members(&carol);
    assert!(
        info.contains("version 2 (made by alice@alpha.test)"),
        "{info}"
    );
    assert!(
        info.contains("member  dave@alpha.test") && !info.contains("mallory"),
        "{info}"
    );

    // bob is removed; his client would not write to the group, but a crafted one still can:
    // members drop it.
    run_ok(&alice, &["group", "remove", "Lunch", "bob@alpha.test"]);
    receive_line(&carol, "* [Lunch] alice@alpha.test removed bob@alpha.test");
    let v3 = versions(&carol).pop().unwrap();
    send_crafted(
        &bob,
        "carol@alpha.test",
        Plaintext::Group {
            group: v3.group,
            version: 2,
            msg: Box::new(Plaintext::Text {
                body: "still here?".into(),
                ts: 0,
            }),
        },
    );
    let out = carol.run(&["recv"]);
    assert!(!out.stdout.contains("still here?"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("from bob@alpha.test, who is not a member"),
        "{}",
        out.stderr
    );
}

/// The envelopes waiting for `cli`'s device, read without acknowledging them (they stay queued).
fn waiting(cli: &Cli) -> Vec<Envelope> {
    with_client(cli.profile(), async |c| {
        c.connect().await.unwrap();
        let mut out = Vec::new();
        loop {
            match c.next_server_message().await.unwrap() {
                ServerMessage::Deliver {
                    item: QueueItem::Message { env },
                    ..
                } => out.push(env),
                ServerMessage::QueueDrained => break,
                _ => {}
            }
        }
        c.disconnect();
        out
    })
}

/// Verified listings of `users`, as `cli`'s device looks them up (so its cache holds them too).
fn listings(cli: &Cli, users: &[&str]) -> Vec<(Uid, DirectoryListing)> {
    let users: Vec<Uid> = users.iter().map(|u| uid(u)).collect();
    with_client(cli.profile(), async move |c| {
        c.connect().await.unwrap();
        let mut out = Vec::new();
        for u in users {
            let listing = c.lookup(&u).await.unwrap().directory.listing();
            out.push((u, listing));
        }
        c.disconnect();
        out
    })
}

/// A hostile server for carol's device that delivers `order[n]` on its `n`th connection (one
/// envelope each, then `queue_drained`), answers lookups with `listings` and acknowledges every
/// `send`; pointed at by carol's profile.
fn reordering_server(
    carol: &Cli,
    order: Vec<Envelope>,
    listings: Vec<(Uid, DirectoryListing)>,
) -> Hostile {
    let connections = std::sync::atomic::AtomicUsize::new(0);
    let me = uid("carol@alpha.test");
    let fake = Hostile::start("alpha.test", move |what| match what {
        Seen::Opened { .. } => {
            let n = connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut out = hostile::resumed("alpha.test", &me);
            if let Some(env) = order.get(n) {
                out.push(ServerMessage::Deliver {
                    seq: n as u64 + 1,
                    item: QueueItem::Message { env: env.clone() },
                });
            }
            out.push(ServerMessage::QueueDrained);
            out
        }
        Seen::Request(msg @ ClientMessage::Lookup { rid, uid }) => {
            match listings.iter().find(|(u, _)| u == uid) {
                Some((_, listing)) => vec![ServerMessage::Directory {
                    rid: *rid,
                    listing: listing.clone(),
                }],
                None => hostile::routine(msg),
            }
        }
        Seen::Request(ClientMessage::Send { rid, msgs }) => {
            vec![ServerMessage::SendAck {
                rid: *rid,
                ids: msgs.iter().map(|m| m.id).collect(),
            }]
        }
        Seen::Request(other) => hostile::routine(other),
    });
    fake.point(carol);
    fake
}

/// A server that drops a membership update: the member says which versions are missing and
/// asks a member for them; once they come, it catches up.
#[test]
fn a_dropped_membership_update_is_noticed_and_filled_in() {
    let (_s, [alice, _bob, carol, _dave, _mallory], _id) = lunch();
    run_ok(&alice, &["group", "add", "Lunch", "dave@alpha.test"]);
    run_ok(&alice, &["group", "add", "Lunch", "mallory@alpha.test"]);
    // Versions 2 and 3, as the real server would deliver them to carol.
    let updates = waiting(&carol);
    assert_eq!(updates.len(), 2, "{updates:?}");
    // carol's server now drops version 2: first it delivers only version 3, then (the next
    // connection) version 2.
    let listings = listings(&carol, &["alice@alpha.test"]);
    let fake = reordering_server(
        &carol,
        vec![updates[1].clone(), updates[0].clone()],
        listings,
    );

    let notes = recv_notes(&carol);
    assert!(
        notes.contains("[Lunch] versions 2 to 2 of the group are missing here"),
        "{notes}"
    );
    // It asked alice (every device of hers) for what it misses.
    let asked = fake.received().iter().any(|m| match m {
        siren_proto::message::ClientMessage::Send { msgs, .. } => {
            msgs.iter().any(|e| e.to == uid("alice@alpha.test"))
        }
        _ => false,
    });
    assert!(asked, "no group_sync sent to alice");

    // Version 2 arrives: carol takes it and the version 3 kept aside.
    let out = carol.run(&["recv"]);
    assert!(
        out.stdout
            .contains(
                "* [Lunch] alice@alpha.test added dave@alpha.test; then alice@alpha.test added mallory@alpha.test"
            ),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let info = members(&carol);
    assert!(
        info.contains("version 3 (made by alice@alpha.test)"),
        "{info}"
    );
    assert!(info.contains("member  mallory@alpha.test"), "{info}");
}

/// A member who blocked another sees nothing of theirs in the group; the others do.
#[test]
fn a_member_who_blocked_another_does_not_see_their_group_messages() {
    let (_s, [alice, bob, carol, _dave, _mallory], _id) = lunch();
    receive_line(
        &bob,
        "* [Lunch] you are in the group, added by alice@alpha.test (version 1)",
    );
    run_ok(&bob, &["contacts", "block", "carol@alpha.test"]);
    run_ok(&carol, &["send", "Lunch", "from carol"]);
    receive_line(&alice, "[Lunch] carol@alpha.test: from carol");
    run_ok(&alice, &["send", "Lunch", "from alice"]);
    // carol's message was queued before alice's (alice had it first): had it reached bob's
    // queue, it would come before hers.
    let got = receive_line(&bob, "[Lunch] alice@alpha.test: from alice");
    assert!(
        !got.iter().any(|l| l.contains("from carol")),
        "bob blocked carol: {got:?}"
    );
}

/// `siren history` keeps a group as one conversation: each message with its sender, the
/// membership changes in line, what this device sent; the list of conversations names it.
#[test]
fn a_groups_messages_and_changes_are_one_conversation_in_the_history() {
    let (_s, [alice, bob, carol, _dave, _mallory], _id) = lunch();
    // A user who does not exist is not signed into a version.
    let out = alice.run(&["group", "add", "Lunch", "nobody@alpha.test"]);
    assert!(
        !out.ok && out.stderr.contains("cannot add nobody@alpha.test"),
        "{}",
        out.stderr
    );
    assert!(
        members(&alice).contains("version 1 (made by alice@alpha.test)"),
        "{}",
        members(&alice)
    );
    run_ok(&alice, &["send", "Lunch", "noon at the usual place?"]);
    run_ok(&carol, &["send", "Lunch", "works for me"]);
    receive_line(&bob, "[Lunch] carol@alpha.test: works for me");
    run_ok(&bob, &["send", "Lunch", "see you there"]);
    run_ok(&alice, &["group", "remove", "Lunch", "carol@alpha.test"]);
    receive_line(&bob, "* [Lunch] alice@alpha.test removed carol@alpha.test");

    let history = run_ok(&bob, &["history", "Lunch"]);
    let lines: Vec<&str> = history
        .lines()
        .map(|l| l.split_once("Z  ").map_or(l, |(_, rest)| rest))
        .collect();
    assert_eq!(
        lines,
        [
            "* you are in the group, added by alice@alpha.test (version 1)",
            "alice@alpha.test  seen  noon at the usual place?",
            "carol@alpha.test  seen  works for me",
            "me  sent  see you there",
            "* alice@alpha.test removed carol@alpha.test",
        ],
        "{history}"
    );
    // Searching every conversation says which group a line is from.
    let found = run_ok(&bob, &["history", "--search", "usual place"]);
    assert!(
        found.contains("[Lunch] alice@alpha.test  seen  noon at the usual place?"),
        "{found}"
    );
    let list = run_ok(&bob, &["history"]);
    assert!(list.contains("  Lunch  5 messages"), "{list}");
    // No 1:1 conversation came of it.
    assert!(!list.contains("alice@alpha.test"), "{list}");
}

/// A message from a member added in a version this device does not hold yet (its server
/// delivered the message first) waits for that version instead of being lost, and shows after
/// the change that made its sender a member.
#[test]
fn a_message_naming_a_version_not_held_yet_waits_for_it() {
    let (_s, [alice, _bob, carol, dave, _mallory], _id) = lunch();
    run_ok(&alice, &["group", "add", "Lunch", "dave@alpha.test"]);
    receive_line(
        &dave,
        "* [Lunch] you are in the group, added by alice@alpha.test (version 2)",
    );
    run_ok(&dave, &["send", "Lunch", "hi from dave"]);
    // Version 2, then dave's message, as the real server would deliver them to carol.
    let queued = waiting(&carol);
    assert_eq!(queued.len(), 2, "{queued:?}");
    // carol's server delivers dave's message first, version 2 only on the next connection.
    let listings = listings(&carol, &["alice@alpha.test", "dave@alpha.test"]);
    let _fake = reordering_server(&carol, vec![queued[1].clone(), queued[0].clone()], listings);

    let first = carol.run(&["recv"]);
    assert!(first.ok, "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("[Lunch] versions 2 to 2 of the group are missing here"),
        "{}",
        first.stderr
    );
    assert!(!first.stdout.contains("hi from dave"), "{}", first.stdout);

    let second = carol.run(&["recv"]);
    assert!(second.ok, "{}", second.stderr);
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "* [Lunch] alice@alpha.test added dave@alpha.test",
            "[Lunch] dave@alpha.test: hi from dave",
        ],
        "{}",
        second.stderr
    );
}
