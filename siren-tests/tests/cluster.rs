//! One domain on several `sirend` nodes (`[cluster]`): real processes sharing one PostgreSQL
//! database, a real `nats-server` on loopback carrying the wake-ups between them.

use std::time::{Duration, Instant};

use siren_api::ErrorCode;
use siren_api::Uid;
use siren_proto::envelope::Envelope;
use siren_proto::ids::MessageId;
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, LinkMessage, NextStep, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::{DeviceRecordDraft, DeviceRevocation, DirectoryEntry};
use siren_tests::fake_peer::{self, FakePeer};
use siren_tests::hostile::with_client;
use siren_tests::raw;
use siren_tests::{Cli, Dns, Listener, Nats, Options, Server, postgres_database, second_device};

/// A node's options: the shared database, NATS, a re-read every `poll_secs`.
fn node_options(node: &str, nats: &Nats, db: &str, poll_secs: u64) -> Options {
    Options {
        storage: "postgres",
        extra: format!(
            "\n[storage.options]\nurl = \"{db}\"\npool_size = 4\n\n[federation]\nenabled = false\n\n\
             [roster]\nnon_contacts = \"accept\"\n\n\
             [cluster]\nenabled = true\nnode_id = \"{node}\"\n{}poll_secs = {poll_secs}\n",
            nats.config_lines()
        ),
        ..Options::default()
    }
}

/// Two running nodes of alpha.test, alice's and bob's accounts in their shared store.
fn two_nodes(nats: &Nats, poll_secs: u64) -> (Server, Server) {
    let db = postgres_database();
    let mut one = Server::new(node_options("node-1", nats, &db, poll_secs));
    one.add_user("alice", "alice-1");
    one.add_user("bob", "bob-1");
    one.start();
    let mut two = Server::node_of(&one, node_options("node-2", nats, &db, poll_secs));
    two.start();
    (one, two)
}

fn logged_in(node: &Server, uid: &str, password: &str) -> Cli {
    let cli = Cli::init(node, uid);
    assert!(cli.login(password).ok, "{uid} on {}", node.addr);
    cli
}

/// Points `cli`'s profile at `node` (another node of the same cluster: same name and key).
fn move_to(cli: &Cli, node: &Server) {
    let path = cli.profile().join("profile.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let moved: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("server = ") {
                format!("server = \"{}\"", node.addr)
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, moved.join("\n") + "\n").unwrap();
}

/// The lines `listener` prints until one equals `line` (within `limit`); panics with what came
/// if it does not.
fn wait_line(listener: &Listener, line: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match listener.next_line(left) {
            Some(l) if l == line => {
                got.push(l);
                return got;
            }
            Some(l) => got.push(l),
            None => break,
        }
    }
    panic!("no {line:?} within {limit:?}; got {got:?}");
}

/// alice on node 1 and bob on node 2 chat live. The re-read is every 5 minutes here, so a
/// message arriving within seconds came by a wake-up over NATS — which requires a token here
/// (`[cluster] nats_token_file`).
#[test]
fn alice_on_one_node_and_bob_on_another_chat_live() {
    let nats = Nats::start_with_token();
    let (one, two) = two_nodes(&nats, 300);
    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let bob = logged_in(&two, "bob@alpha.test", "bob-1");

    // (A profile runs one command at a time: one listens while the other sends.)
    let bob_listens = bob.listen();
    for i in 0..3 {
        alice.send("bob@alpha.test", &format!("hello from node 1, {i}"));
        wait_line(
            &bob_listens,
            &format!("alice@alpha.test: hello from node 1, {i}"),
            Duration::from_secs(10),
        );
    }
    drop(bob_listens);
    let alice_listens = alice.listen();
    for i in 0..3 {
        bob.send("alice@alpha.test", &format!("hello from node 2, {i}"));
        wait_line(
            &alice_listens,
            &format!("bob@alpha.test: hello from node 2, {i}"),
            Duration::from_secs(10),
        );
    }
    // Each node says it is one, which, and lists the other (heard every 2 s).
    for (node, name, other) in [(&one, "node-1", &two), (&two, "node-2", &one)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listed = format!("at {} (", other.addr);
        loop {
            let status = node.admin(&["status"], "");
            assert!(
                status.ok
                    && status
                        .stdout
                        .contains(&format!("node {name} (NATS nats://")),
                "{}{}",
                status.stdout,
                status.stderr
            );
            if status.stdout.contains(&listed) && status.stdout.contains("this node") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} does not list the other node:\n{}",
                status.stdout
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A typing signal crosses nodes, and revoking a device on one node closes its live session on
/// the other.
#[test]
fn typing_crosses_nodes_and_a_revocation_closes_a_session_on_another_node() {
    let nats = Nats::start();
    let (one, two) = two_nodes(&nats, 300);
    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let laptop = logged_in(&one, "bob@alpha.test", "bob-1");
    let phone = second_device(&one, &laptop, "bob@alpha.test", "bob-1");
    let whoami = phone.run(&["whoami"]).stdout;
    let phone_fp = whoami
        .lines()
        .find_map(|l| l.strip_prefix("device "))
        .expect("whoami shows the device")
        .to_owned();
    move_to(&phone, &two);
    let mut phone_listens = phone.listen();

    with_client(alice.profile(), async |c| {
        c.connect().await.unwrap();
        let bob = Uid::parse("bob@alpha.test").unwrap();
        c.send_signal(&bob, &Plaintext::Typing { typing: true })
            .await
            .unwrap();
        c.bye().await.unwrap();
    });
    wait_line(
        &phone_listens,
        "* alice@alpha.test is typing",
        Duration::from_secs(10),
    );

    let revoked = laptop.run(&["devices", "revoke", &phone_fp]);
    assert!(revoked.ok, "revoke: {}", revoked.stderr);
    let ended = phone_listens
        .exited(Duration::from_secs(10))
        .expect("the revoked phone's session on node 2 was closed");
    assert!(
        !ended.ok && ended.stderr.contains("revoked"),
        "{}",
        ended.stderr
    );
}

/// A new device logging in on node 2 is approved by the account's device on node 1: the
/// request, the challenge, the reveal and the grant each cross nodes (the re-read is every 5
/// minutes, so each step came by a wake-up). The phone then receives on node 2.
#[test]
fn a_device_on_one_node_is_approved_by_a_device_on_another() {
    let nats = Nats::start();
    let (one, two) = two_nodes(&nats, 300);
    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let laptop = logged_in(&one, "bob@alpha.test", "bob-1");
    // Each step must come within 30 s (the helper's bound), long before a re-read.
    let phone = second_device(&two, &laptop, "bob@alpha.test", "bob-1");
    // The directory (shared) now lists both devices.
    let devices = two.admin(&["devices", "list", "bob"], "");
    assert!(
        devices.stdout.lines().skip(1).count() == 2 && devices.stdout.contains(" phone "),
        "{}{}",
        devices.stdout,
        devices.stderr
    );
    let phone_listens = phone.listen();
    alice.send("bob@alpha.test", "to both of your devices");
    wait_line(
        &phone_listens,
        "alice@alpha.test: to both of your devices",
        Duration::from_secs(10),
    );
}

/// A device revoked on node 1 cannot log in on node 2, even though node 2 cached the chain
/// while the device was live there and NATS is down (so the notice that the chain changed
/// cannot come): a login reads the chain from the store.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_revoked_on_one_node_cannot_log_in_on_another_with_a_stale_cache() {
    let mut nats = Nats::start();
    let (one, two) = two_nodes(&nats, 300);
    let first = raw::Session::create(&one, "alice", "alice-1").await;
    // Node 2 reads alice's chain, and caches it: the device logs in there, ready.
    let (_conn, next) = raw::login_on(raw::open(&two, &first.dek).await, "alice", "alice-1")
        .await
        .expect("login on node 2");
    assert_eq!(next, NextStep::Ready);
    nats.kill();

    // On node 1: a second device, signed in with alice's USK, then the first one revoked.
    let second = DekSecret::generate(&mut siren_proto::os_rng());
    let (mut conn, next) = raw::login_on(raw::open(&one, &second).await, "alice", "alice-1")
        .await
        .expect("login of the second device");
    let NextStep::AwaitApproval { listing } = next else {
        panic!("{next:?}")
    };
    let record = DeviceRecordDraft {
        uid: first.uid.clone(),
        dek: second.public(),
        seq: listing.head.seq + 1,
        prev: listing.head.hash,
        ts: 0,
        name: None,
    }
    .sign(&first.usk);
    let hash = DirectoryEntry::Add(record.clone()).hash();
    let revocation = DeviceRevocation::sign(
        &first.usk,
        first.uid.clone(),
        first.dek.public(),
        listing.head.seq + 2,
        hash,
        0,
    );
    conn.sender
        .send(&ClientMessage::Register { rid: 2, record })
        .await
        .unwrap();
    conn.sender
        .send(&ClientMessage::Revoke { rid: 3, revocation })
        .await
        .unwrap();
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match raw::next_message(&mut conn).await {
            ServerMessage::Ok { rid } => answered.push(rid),
            ServerMessage::Deliver { .. } | ServerMessage::QueueDrained => {}
            other => panic!("register/revoke: {other:?}"),
        }
    }

    // The revoked device on node 2: not let in as a device of the account.
    let again = raw::login_on(raw::open(&two, &first.dek).await, "alice", "alice-1").await;
    match again {
        Ok((_, NextStep::AwaitApproval { listing })) => {
            assert_eq!(listing.head.seq, 3, "node 2 read the chain as stored")
        }
        Ok((_, other)) => panic!("the revoked device logged in on node 2: {other:?}"),
        Err(code) => panic!("login refused with {code}"),
    }
}

/// The limit on failed logins per account holds for the cluster, not per node: two failures
/// on node 1 and two on node 2 reach the limit of four, and a login from an address the
/// account never used is then refused on node 1 whatever the password (alone, node 1 counted
/// two).
#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_to_one_account_add_up_across_nodes() {
    let nats = Nats::start();
    let db = postgres_database();
    let limited = |node: &str| Options {
        auth_lines: "failures_per_account_per_minute = 4\n\
                     failures_per_address_and_account_per_minute = 3\n"
            .into(),
        ..node_options(node, &nats, &db, 300)
    };
    let mut one = Server::new(limited("node-1"));
    one.add_user("alice", "alice-1");
    one.start();
    let mut two = Server::node_of(&one, limited("node-2"));
    two.start();
    for (node, from) in [(&one, 2), (&two, 3)] {
        for _ in 0..2 {
            let from = std::net::IpAddr::from([127, 0, 0, from]);
            let (_, answer) = raw::login_from(node, from, "alice", "wrong").await;
            assert_eq!(answer.err(), Some(ErrorCode::AuthFailed.as_u16()));
        }
    }
    // (Node 2's count crosses over NATS on loopback: well within this.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = std::net::IpAddr::from([127, 0, 0, 4]);
    let (_, answer) = raw::login_from(&one, from, "alice", "alice-1").await;
    assert_eq!(
        answer.err(),
        Some(ErrorCode::RateLimited.as_u16()),
        "node 1 let a fifth try in"
    );
}

/// Presence crosses nodes: alice, subscribing on node 1, starts from the state bob published on
/// node 2, sees his changes, and sees him `offline` only once his last session anywhere closed
/// (not when his phone on node 1 went while his laptop on node 2 stayed).
#[test]
fn presence_crosses_nodes_and_offline_means_offline_everywhere() {
    let nats = Nats::start();
    let (one, two) = two_nodes(&nats, 300);
    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let laptop = logged_in(&two, "bob@alpha.test", "bob-1");
    let phone = second_device(&two, &laptop, "bob@alpha.test", "bob-1");
    move_to(&phone, &one);
    let shared = laptop.run(&["contacts", "add", "alice@alpha.test", "--presence"]);
    assert!(shared.ok, "{}", shared.stderr);

    let laptop_online = laptop.listen_with(&["--status", "away"]);
    let watching = alice.listen_with(&["--watch", "bob@alpha.test"]);
    // Where bob is, as node 2 knows it.
    wait_line(
        &watching,
        "* bob@alpha.test is away",
        Duration::from_secs(10),
    );
    let phone_online = phone.listen_with(&["--status", "available"]);
    wait_line(
        &watching,
        "* bob@alpha.test is available",
        Duration::from_secs(10),
    );
    // The phone (node 1) goes; the laptop (node 2) stays: bob is not offline.
    drop(phone_online);
    let mut meanwhile = Vec::new();
    while let Some(line) = watching.next_line(Duration::from_secs(2)) {
        meanwhile.push(line);
    }
    assert!(
        !meanwhile.iter().any(|l| l.ends_with("is offline")),
        "bob still has his laptop on node 2: {meanwhile:?}"
    );
    // Then the laptop: now he is.
    drop(laptop_online);
    wait_line(
        &watching,
        "* bob@alpha.test is offline",
        Duration::from_secs(10),
    );
}

/// nats-server killed while alice writes to bob on the other node, then started again: what
/// is sent while it is down still arrives (by the periodic re-read: no wake-up can cross), and
/// every message arrives once.
#[test]
fn a_stopped_nats_server_delays_deliveries_to_the_reread_and_loses_nothing() {
    let mut nats = Nats::start();
    let (one, two) = two_nodes(&nats, 1);
    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let bob = logged_in(&two, "bob@alpha.test", "bob-1");
    let bob_listens = bob.listen();

    let mut got: Vec<String> = Vec::new();
    for round in ["before", "while NATS is down", "after"] {
        match round {
            "while NATS is down" => nats.kill(),
            "after" => nats.restart(),
            _ => {}
        }
        let sent: Vec<String> = (0..5)
            .map(|i| {
                let text = format!("{round}, {i}");
                alice.send("bob@alpha.test", &text);
                format!("alice@alpha.test: {text}")
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sent.iter().all(|l| got.contains(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match bob_listens.next_line(left) {
                Some(line) => got.push(line),
                None => panic!("{round}: after 30 s bob has {got:?}; alice sent {sent:?}"),
            }
        }
    }
    let mut once = got.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), got.len(), "a message came twice: {got:?}");
}

/// bob's node killed (`kill -9`) in the middle of a stream of messages: his client goes on
/// with the other node DNS lists (resuming his session there), and every message alice sent
/// arrives, once. The SRV records are the ones `sirend dns-records` prints for the cluster.
#[test]
fn bobs_node_killed_mid_stream_his_client_moves_on_and_nothing_is_lost() {
    let nats = Nats::start();
    let (one, mut two) = two_nodes(&nats, 1);
    // bob's node first (priority 10), then alice's (20).
    let nodes = format!(
        "nodes = [{{ host = \"node2.alpha.test\", port = {}, priority = 10, weight = 0 }}, \
         {{ host = \"node1.alpha.test\", port = {}, priority = 20, weight = 0 }}]\n",
        two.addr.port(),
        one.addr.port()
    );
    let config = std::fs::read_to_string(one.config()).unwrap();
    std::fs::write(one.config(), format!("{config}{nodes}")).unwrap();
    let records = Server::sirend(&["dns-records", "--config", one.config().to_str().unwrap()]);
    assert!(records.ok, "{}", records.stderr);
    for (node, addr, priority) in [("node2", &two.addr, 10), ("node1", &one.addr, 20)] {
        let srv = format!(
            "_siren._tcp.alpha.test. 3600 IN SRV {priority} 0 {} {node}.alpha.test.",
            addr.port()
        );
        assert!(records.stdout.contains(&srv), "{}", records.stdout);
    }
    let dns = Dns::start(&format!(
        "srv-host=_siren._tcp.alpha.test,node2.alpha.test,{},10,0\n\
         srv-host=_siren._tcp.alpha.test,node1.alpha.test,{},20,0\n\
         host-record=node1.alpha.test,127.0.0.1\nhost-record=node2.alpha.test,127.0.0.1\n\
         txt-record=_siren-key.alpha.test,\"v=siren1; k={}\"\n",
        two.addr.port(),
        one.addr.port(),
        one.sek
    ));

    let alice = logged_in(&one, "alice@alpha.test", "alice-1");
    let bob = Cli {
        dir: tempfile::tempdir().unwrap(),
        uid: "bob@alpha.test".into(),
    };
    let init = bob.run(&["init", "bob@alpha.test", "--dns", &dns.addr.to_string()]);
    assert!(init.ok, "{}", init.stderr);
    assert!(
        init.stdout.contains(&format!(
            "found alpha.test at node2.alpha.test:{}",
            two.addr.port()
        )) && init.stdout.contains(&format!(
            "1 other node, tried in turn when it is down: {}",
            one.addr
        )),
        "{}",
        init.stdout
    );
    assert!(bob.login("bob-1").ok);

    let sent = |range: std::ops::Range<u32>| -> Vec<String> {
        range
            .map(|i| {
                alice.send("bob@alpha.test", &format!("message {i}"));
                format!("alice@alpha.test: message {i}")
            })
            .collect()
    };
    let mut expected = sent(0..10);
    let mut got = bob.recv();
    // The rest of the stream while node 2 dies under bob's open session.
    let listening = bob.listen();
    expected.extend(sent(10..15));
    two.kill();
    expected.extend(sent(15..25));
    let mut listening = listening;
    let ended = listening.exited(Duration::from_secs(10));
    while let Some(line) = listening.next_line(Duration::from_millis(100)) {
        got.push(line);
    }
    assert!(ended.is_some(), "siren listen noticed its node died");
    // bob's next command reaches node 1 and gets the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !expected.iter().all(|l| got.contains(l)) {
        assert!(
            Instant::now() < deadline,
            "bob got {got:?}, alice sent {expected:?}"
        );
        got.extend(bob.recv());
    }
    for line in &expected {
        assert_eq!(
            got.iter().filter(|l| *l == line).count(),
            1,
            "{line:?} in {got:?}"
        );
    }
}

/// The `deliver` a scripted peer received next: its request id and the envelopes' ids.
async fn deliver_request(link: &mut fake_peer::PeerLink) -> (u32, Vec<MessageId>) {
    match link.next_request(Duration::from_secs(60)).await {
        Some(LinkMessage::Deliver { rid, msgs }) => (rid, msgs.iter().map(|e| e.id).collect()),
        other => panic!("expected a deliver, got {other:?}"),
    }
}

/// Answers the next `deliver` on `link` with a transient refusal (the peer is busy).
async fn refuse_busy(link: &mut fake_peer::PeerLink) {
    let (rid, _) = deliver_request(link).await;
    link.send(&LinkMessage::Error {
        rid: Some(rid),
        code: ErrorCode::Unavailable.as_u16(),
        msg: "busy".into(),
    })
    .await;
}

/// Accepts the next link to `peer` (within 30 s) and acknowledges what it delivers until every
/// one of `ids` came; the link.
async fn accept_all(peer: &FakePeer, ids: &[MessageId]) -> fake_peer::PeerLink {
    let mut link = peer.accept(1 << 20, Duration::from_secs(30)).await;
    let mut got: Vec<MessageId> = Vec::new();
    while !ids.iter().all(|id| got.contains(id)) {
        let (rid, delivered) = deliver_request(&mut link).await;
        got.extend(delivered.iter().copied());
        link.send(&LinkMessage::DeliverAck {
            rid,
            ids: delivered,
        })
        .await;
    }
    link
}

/// Sends `env` on `session`; panics unless the server acknowledges it.
async fn send_one(session: &mut raw::Session, env: Envelope) {
    let rid = session
        .request(|rid| ClientMessage::Send {
            rid,
            msgs: vec![env],
        })
        .await;
    match session.next_answer().await {
        ServerMessage::SendAck { rid: r, .. } if r == rid => {}
        other => panic!("send: {other:?}"),
    }
}

/// Federation in a cluster. beta.test (a scripted peer) is busy: the envelopes alice commits
/// for it on both nodes wait in its one outbox, which exactly one node drains (node 2's worker
/// finds the lease taken: no second link reaches beta). That node is killed (`kill -9`) with
/// the outbox full; the surviving node takes the outbox over within seconds (the lease lapses
/// 6 s after its last renewal) and beta receives every envelope.
#[tokio::test(flavor = "multi_thread")]
async fn a_federated_peers_outbox_moves_to_a_surviving_node_and_nothing_is_lost() {
    let nats = Nats::start();
    let beta = FakePeer::bind("beta.test", None).await;
    let dns = Dns::start(&beta.records());
    let db = postgres_database();
    let federated = |node: &str| {
        let mut options = node_options(node, &nats, &db, 1);
        options.extra = options.extra.replace("[federation]\nenabled = false\n", "");
        options
    };
    let mut one = Server::new(federated("node-1"));
    one.add_user("alice", "alice-1");
    dns.federate(&one, "");
    one.start();
    let mut two = Server::node_of(&one, federated("node-2"));
    dns.federate(&two, "");
    two.start();

    let mut on_one = raw::Session::create(&one, "alice", "alice-1").await;
    let mut on_two = on_one.again_on(&two, "alice-1").await;
    let bob = Uid::parse("bob@beta.test").unwrap();
    let bob_dek = DekSecret::generate(&mut siren_proto::os_rng()).public();
    let mut sent = Vec::new();
    // From node 1 first: node 1's worker takes beta's outbox, and beta says it is busy.
    for ctr in 1..=5 {
        let env = on_one.seal_to(&bob, &bob_dek, ctr, b"from node 1");
        sent.push(env.id);
        send_one(&mut on_one, env).await;
    }
    let mut link = beta.accept(1 << 20, Duration::from_secs(30)).await;
    refuse_busy(&mut link).await;
    // Then from node 2: into the same outbox, which node 2 leaves to node 1.
    for ctr in 6..=10 {
        let env = on_two.seal_to(&bob, &bob_dek, ctr, b"from node 2");
        sent.push(env.id);
        send_one(&mut on_two, env).await;
    }
    assert!(
        !beta.connection_within(Duration::from_secs(3)).await,
        "a second node linked to beta: two workers drain one outbox"
    );
    assert!(
        one.log_lines()
            .iter()
            .any(|l| l.contains("this node drains the outbox"))
    );

    one.kill();
    let killed = Instant::now();
    let mut link = accept_all(&beta, &sent).await;
    eprintln!(
        "node 2 delivered node 1's outbox {:?} after node 1 was killed",
        killed.elapsed()
    );
    let log = two.wait_for_log("outbox empty; its worker stopped");
    assert!(log.contains("this node drains the outbox"), "{log}");

    // Node 1 comes back, knowing nothing of beta. The next envelopes go through node 2, which
    // dies in turn while beta is busy: node 1 finds the lapsed lease and takes the outbox over.
    one.start();
    let mut more = Vec::new();
    for ctr in 11..=15 {
        let env = on_two.seal_to(&bob, &bob_dek, ctr, b"from node 2 again");
        more.push(env.id);
        send_one(&mut on_two, env).await;
    }
    refuse_busy(&mut link).await;
    two.kill();
    accept_all(&beta, &more).await;
    let log = one.wait_for_log("outbox empty; its worker stopped");
    assert!(log.contains("this node drains the outbox"), "{log}");
}

/// A cluster node needs a shared store: `check-config` refuses RocksDB (and memory) there,
/// saying why, and a node without a name or NATS.
#[test]
fn check_config_refuses_a_cluster_node_without_a_shared_store() {
    let cluster = |lines: &str| {
        let s = Server::new(Options {
            extra: format!("\n[federation]\nenabled = false\n\n[cluster]\nenabled = true\n{lines}"),
            ..Options::default()
        });
        let out = Server::sirend(&["check-config", s.config().to_str().unwrap()]);
        assert!(!out.ok, "{lines}: accepted");
        out.stderr
    };
    let err = cluster("node_id = \"n1\"\nnats = [\"nats://127.0.0.1:4222\"]\n");
    assert!(
        err.contains("`storage.backend`") && err.contains("must share one store"),
        "{err}"
    );
    let err = cluster("nats = [\"nats://127.0.0.1:4222\"]\n");
    assert!(err.contains("`cluster.node_id`"), "{err}");
    let err = cluster("node_id = \"n1\"\n");
    assert!(err.contains("`cluster.nats`"), "{err}");
}
