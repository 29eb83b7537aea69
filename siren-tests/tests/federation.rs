//! Federation with real `sirend` processes found through a real DNS server (dnsmasq): proxied
//! lookups over server-to-server links, pinned peer keys, and the policy on both sides.

use std::time::Duration;

use siren_api::{ErrorCode, Uid};
use siren_proto::envelope::{Envelope, Sender};
use siren_proto::ids::MessageId;
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, LinkMessage, Notice, QueueItem, ServerMessage};
use siren_tests::fake_peer::{self, FakePeer};
use siren_tests::raw::Session;
use siren_tests::{Cli, Dns, Options, Server};

fn server(name: &str) -> Server {
    Server::new(Options {
        name: name.into(),
        ..Options::default()
    })
}

/// What `cli` receives until `n` messages arrived (or 30 s passed): messages between servers
/// travel on after the sender's `send` returned.
fn receive(cli: &Cli, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.len() < n && std::time::Instant::now() < deadline {
        got.extend(cli.recv());
        if got.len() < n {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    got
}

/// Two servers with one user each, federated through one DNS server, started.
fn two_servers(
    (a, a_user): (&str, &str),
    (b, b_user): (&str, &str),
    a_policy: &str,
) -> (Server, Server, Dns) {
    let first = Options {
        name: a.into(),
        ..Options::default()
    };
    two_servers_with(first, a_user, (b, b_user), a_policy)
}

/// [`two_servers`], the first one made with `first`.
fn two_servers_with(
    first: Options,
    a_user: &str,
    (b, b_user): (&str, &str),
    a_policy: &str,
) -> (Server, Server, Dns) {
    let mut first = Server::new(first);
    let mut second = server(b);
    first.add_user(a_user, "pw-1");
    second.add_user(b_user, "pw-2");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&first),
        Dns::records_for(&second)
    ));
    dns.federate(&first, a_policy);
    dns.federate(&second, "");
    first.start();
    second.start();
    (first, second, dns)
}

#[test]
fn a_lookup_of_a_user_on_another_server_goes_over_a_link() {
    let (mut alpha, mut beta, dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    let whoami = bob.run(&["whoami"]).stdout;

    let out = alice.run(&["lookup", "bob@beta.test"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("bob@beta.test: signing key"),
        "{}",
        out.stdout
    );
    let device = whoami
        .lines()
        .find_map(|l| l.strip_prefix("device "))
        .expect("whoami shows the device");
    assert!(
        out.stdout
            .contains(device.split("  ").next().unwrap().trim()),
        "bob's device is listed:\n{}\nwhoami:\n{whoami}",
        out.stdout
    );
    // An unknown user over there: the peer's answer comes back.
    let none = alice.run(&["lookup", "nobody@beta.test"]);
    assert!(
        !none.ok && none.stderr.contains("not_found"),
        "{}",
        none.stderr
    );

    // beta's DNS now names another key (a server claiming beta.test without its SEK, or a
    // hijacked zone): with the link gone — both servers restarted, so the pin must have been
    // saved — alpha refuses the pinned peer's new key.
    let impostor = server("beta.test");
    dns.rewrite(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&impostor)
    ));
    assert!(beta.stop());
    assert!(alpha.stop());
    alpha.start();
    beta.start();
    let refused = alice.run(&["lookup", "bob@beta.test"]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("peer_key_mismatch"),
        "{}",
        refused.stderr
    );
    assert!(
        alpha
            .wait_for_log("differs from the pinned key")
            .contains("beta.test"),
        "alpha logs the mismatch loudly"
    );
}

#[test]
fn an_allowlist_refuses_other_servers_in_both_directions() {
    // alpha talks only to beta.test; gamma is open.
    let (alpha, gamma, _dns) = two_servers(
        ("alpha.test", "alice"),
        ("gamma.test", "carol"),
        "policy = \"allowlist\"\npeers = [\"beta.test\"]",
    );
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let carol = Cli::init(&gamma, "carol@gamma.test");
    carol.login("pw-2");

    // Outbound: alpha does not ask gamma.
    let out = alice.run(&["lookup", "carol@gamma.test"]);
    assert!(
        !out.ok && out.stderr.contains("federation_denied"),
        "{}",
        out.stderr
    );
    // Inbound: gamma's link to alpha is refused by alpha's policy.
    let out = carol.run(&["lookup", "alice@alpha.test"]);
    assert!(
        !out.ok && out.stderr.contains("federation_denied"),
        "{}",
        out.stderr
    );
    assert!(alpha.wait_for_log("link refused").contains("gamma.test"));
}

#[test]
fn messages_cross_servers_and_wait_while_the_peer_is_down() {
    let (mut alpha, mut beta, _dns) =
        two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");

    alice.send("bob@beta.test", "hello across");
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: hello across"]);
    bob.send("alice@alpha.test", "and back");
    assert_eq!(receive(&alice, 1), vec!["bob@beta.test: and back"]);

    // beta goes down; alice's messages are accepted (committed to alpha's outbox) and wait.
    assert!(beta.stop());
    alice.send("bob@beta.test", "while you were away 1");
    alice.send("bob@beta.test", "while you were away 2");
    assert!(
        alpha.stop(),
        "alpha restarts with the envelopes still queued"
    );
    alpha.start();
    beta.start();
    assert_eq!(
        receive(&bob, 2),
        vec![
            "alice@alpha.test: while you were away 1",
            "alice@alpha.test: while you were away 2"
        ],
        "delivered once each, in order"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(bob.recv().is_empty(), "nothing twice");
}

/// The outbox's fast path (PROTOCOL.md §17): while beta answers, alpha sends each envelope on
/// before writing it and answers its sender once beta has acknowledged it, so most are never
/// written on alpha at all. Stopping alpha in the middle of a stream to an online bob, by
/// `kill -9` or gracefully, loses no message alpha acknowledged.
#[test]
fn kill_9_of_the_sending_server_during_a_stream_across_servers_loses_no_acknowledged_message() {
    stop_alpha_during_a_stream_across_servers(true);
}

#[test]
fn a_graceful_restart_of_the_sending_server_during_a_stream_across_servers_loses_nothing() {
    stop_alpha_during_a_stream_across_servers(false);
}

fn stop_alpha_during_a_stream_across_servers(kill_9: bool) {
    let port = siren_tests::free_port();
    let first = Options {
        name: "alpha.test".into(),
        extra: siren_tests::metrics::metrics_on(port),
        ..Options::default()
    };
    let (mut alpha, beta, _dns) = two_servers_with(first, "alice", ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    let live = bob.listen();
    let sender = siren_tests::stream::SendStream::start(alice.profile(), "bob@beta.test");
    // The fast path is in use: outbox items settled by beta's answers, never written here.
    let at = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
        let unsynced =
            siren_tests::metrics::sample(&text, "siren_messages_acknowledged_unsynced_total");
        if unsynced.is_some_and(|n| n > 0.0) && sender.acked() >= 40 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no outbox item was settled by the peer's answer ({} sent):\n{text}",
            sender.acked()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if kill_9 {
        alpha.kill();
    } else {
        assert!(alpha.stop(), "graceful shutdown must exit cleanly");
    }
    let acked = sender.join();
    alpha.start();
    let mut received = std::collections::BTreeSet::new();
    let strip = |line: &str| line.trim_start_matches("alice@alpha.test: ").to_owned();
    // What alpha wrote before it died goes out once it is back (bob listens all along).
    while !acked.iter().all(|t| received.contains(t))
        && let Some(line) = live.next_line(Duration::from_secs(10))
    {
        received.insert(strip(&line));
    }
    let missing: Vec<&String> = acked.iter().filter(|t| !received.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages were lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}

#[test]
fn a_server_claiming_another_name_without_its_key_is_refused() {
    let (alpha, beta, dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    // A second "beta.test" with its own key (not the one DNS publishes), federated too.
    let mut impostor = server("beta.test");
    impostor.add_user("mallory", "pw-m");
    dns.federate(&impostor, "");
    impostor.start();
    let mallory = Cli::init(&impostor, "mallory@beta.test");
    mallory.login("pw-m");
    let out = mallory.run(&["lookup", "alice@alpha.test"]);
    assert!(
        !out.ok,
        "alpha must refuse the impostor's link: {}",
        out.stdout
    );
    assert!(
        alpha
            .wait_for_log("not the one its DNS publishes")
            .contains("beta.test"),
        "alpha logs the refusal"
    );
    // The real beta.test still gets through.
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    let out = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(out.ok, "{}", out.stderr);
}

#[test]
fn presence_crosses_servers_only_where_the_roster_allows() {
    let (alpha, beta, _dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    let wait = std::time::Duration::from_secs(10);

    // Without bob's permission, alice's subscription is refused by beta.
    let refused = alice.run(&["listen", "--watch", "bob@beta.test"]);
    assert!(
        !refused.ok && refused.stderr.contains("refused"),
        "{}",
        refused.stderr
    );

    let added = bob.run(&["contacts", "add", "alice@alpha.test", "--presence"]);
    assert!(added.ok, "{}", added.stderr);
    let watcher = alice.listen_with(&["--watch", "bob@beta.test"]);
    // beta sends bob's current state first: no session yet.
    assert_eq!(
        watcher.next_line(wait).as_deref(),
        Some("* bob@beta.test is offline")
    );
    let publisher = bob.listen_with(&["--status", "busy", "--text", "meeting"]);
    assert_eq!(
        watcher.next_line(wait).as_deref(),
        Some("* bob@beta.test is busy (meeting)")
    );
    drop(publisher);
    assert_eq!(
        watcher.next_line(wait).as_deref(),
        Some("* bob@beta.test is offline")
    );
}

#[test]
fn a_rotated_key_proven_by_the_old_one_is_accepted_and_pinned() {
    let (alpha, mut beta, dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    assert!(
        alice.run(&["lookup", "bob@beta.test"]).ok,
        "alpha pins beta's first key"
    );

    // beta rotates: a new key, the old one retired (still answered, so pinned peers learn the
    // new key through a handshake made with the old one); DNS publishes both for a while.
    assert!(beta.stop());
    let fresh = server("beta.test"); // only for its newly made key file
    let dir = beta.dir.path();
    std::fs::rename(dir.join("sek.key"), dir.join("old.key")).unwrap();
    std::fs::copy(fresh.dir.path().join("sek.key"), dir.join("sek.key")).unwrap();
    let config = std::fs::read_to_string(beta.config()).unwrap();
    std::fs::write(
        beta.config(),
        config.replace(
            "[server]\n",
            "[server]\nretired_key_files = [\"old.key\"]\n",
        ),
    )
    .unwrap();
    let both = format!(
        "{}{}txt-record=_siren-key.beta.test,\"v=siren1; k={}\"\n",
        Dns::records_for(&alpha),
        Dns::records_for(&beta),
        fresh.sek
    );
    dns.rewrite(&both);
    beta.start();
    let out = alice.run(&["lookup", "bob@beta.test"]);
    assert!(out.ok, "the rotation is accepted: {}", out.stderr);
    assert!(alpha.wait_for_log("pin updated").contains(&fresh.sek));

    // Later DNS publishes only the new key: the pin already is the new key.
    let mut only_new = Dns::records_for(&alpha);
    only_new.push_str(&Dns::records_for(&beta).replace(&beta.sek, &fresh.sek));
    dns.rewrite(&only_new);
    assert!(beta.stop());
    beta.start();
    let out = alice.run(&["lookup", "bob@beta.test"]);
    assert!(out.ok, "the new key is pinned: {}", out.stderr);
}

#[test]
fn a_closed_deployment_refuses_peers_that_connect_to_it() {
    // alpha with federation off, beta on: beta's users cannot reach alpha's.
    let mut alpha = server("alpha.test");
    let mut beta = server("beta.test");
    alpha.add_user("alice", "pw-1");
    beta.add_user("bob", "pw-2");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    dns.federate(&beta, "");
    alpha.start();
    beta.start();
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    let out = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("federation_disabled"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Hostile peers and hostile DNS (issue 11: F7–F13).

/// A valid key for DNS records of servers that do not really exist.
const SOME_KEY: &str = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";

/// A server named `name` with `users`, federated through `dns` with `lines` in `[federation]`
/// (and `limits` lines added to `[limits]`), started.
fn federated(
    name: &str,
    users: &[(&str, &str)],
    dns: &Dns,
    lines: &str,
    limits: &str,
    options: Options,
) -> Server {
    let mut s = Server::new(Options {
        name: name.into(),
        ..options
    });
    for (user, password) in users {
        s.add_user(user, password);
    }
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "{}\n[federation]\nenabled = true\ndns = [\"{}\"]\n{lines}\n",
            config.replace("[limits]\n", &format!("[limits]\n{limits}\n")),
            dns.addr
        ),
    )
    .unwrap();
    s.start();
    s
}

/// An envelope from `from` to device `dek` of `to`, carrying `len` bytes.
fn envelope(from: &Session, to: &str, dek: &siren_proto::keys::DekPublic, len: usize) -> Envelope {
    let mut rng = siren_proto::os_rng();
    Envelope::seal(
        Sender {
            uid: &from.uid,
            usk: &from.usk,
            dek: &from.dek.public(),
        },
        &Uid::parse(to).unwrap(),
        dek,
        MessageId::random(&mut rng),
        1,
        &vec![b'x'; len],
        &mut rng,
    )
    .unwrap()
}

/// An envelope to a device that exists nowhere, of a user of another server.
fn envelope_to_nowhere(from: &Session, to: &str, len: usize) -> Envelope {
    let dek = DekSecret::generate(&mut siren_proto::os_rng()).public();
    envelope(from, to, &dek, len)
}

/// Sends `msgs` in one `send`; the answer (`send_ack` or `error`).
async fn send(session: &mut Session, msgs: Vec<Envelope>) -> ServerMessage {
    let rid = session
        .request(|rid| ClientMessage::Send { rid, msgs })
        .await;
    let answer = session.next_answer().await;
    assert_eq!(answer_rid(&answer), Some(rid), "{answer:?}");
    answer
}

fn answer_rid(msg: &ServerMessage) -> Option<u32> {
    match msg {
        ServerMessage::SendAck { rid, .. }
        | ServerMessage::Directory { rid, .. }
        | ServerMessage::Pong { rid }
        | ServerMessage::Ok { rid } => Some(*rid),
        ServerMessage::Error { rid, .. } => *rid,
        _ => None,
    }
}

fn error_code(msg: &ServerMessage) -> Option<u16> {
    match msg {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// Queue items delivered to `session` until `done` says enough (or `limit` passed).
async fn delivered(
    session: &mut Session,
    limit: Duration,
    mut done: impl FnMut(&[QueueItem]) -> bool,
) -> Vec<QueueItem> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&items) {
        let next = tokio::time::timeout_at(deadline, session.conn.receiver.recv::<ServerMessage>());
        match next.await {
            Ok(Ok(ServerMessage::Deliver { item, .. })) => items.push(item),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the session failed: {e}"),
            Err(_) => break,
        }
    }
    items
}

fn message_ids(items: &[QueueItem]) -> Vec<MessageId> {
    items
        .iter()
        .filter_map(|i| match i {
            QueueItem::Message { env } => Some(env.id),
            _ => None,
        })
        .collect()
}

fn undeliverable(items: &[QueueItem]) -> Vec<(MessageId, u16, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            QueueItem::Notice {
                notice:
                    Notice::Undeliverable {
                        id, code, reason, ..
                    },
            } => Some((*id, *code, reason.clone())),
            _ => None,
        })
        .collect()
}

/// A TCP service on loopback that greets every connection like an SSH server; counts them.
struct Banner {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Banner {
    fn start() -> Banner {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n");
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Banner { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_peers_dns_cannot_point_this_server_at_loopback_or_private_addresses() {
    // F7: evil.test's SRV names 127.0.0.1 (an SSH-like service); evil6.test's target is the
    // IPv4-mapped IPv6 form of it; lan.test's a private address.
    let ssh = Banner::start();
    let records = format!(
        "srv-host=_siren._tcp.evil.test,127.0.0.1,{port},10,0\n\
         txt-record=_siren-key.evil.test,\"v=siren1; k={SOME_KEY}\"\n\
         srv-host=_siren._tcp.evil6.test,mapped.evil6.test,{port},10,0\n\
         host-record=mapped.evil6.test,::ffff:127.0.0.1\n\
         txt-record=_siren-key.evil6.test,\"v=siren1; k={SOME_KEY}\"\n\
         srv-host=_siren._tcp.lan.test,host.lan.test,{port},10,0\n\
         host-record=host.lan.test,10.1.2.3\n\
         txt-record=_siren-key.lan.test,\"v=siren1; k={SOME_KEY}\"\n",
        port = ssh.port
    );
    let dns = Dns::start(&records);
    let mut alpha = federated(
        "alpha.test",
        &[("alice", "pw-1")],
        &dns,
        "",
        "",
        Options::default(),
    );
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    for uid in ["x@evil.test", "x@evil6.test", "x@lan.test"] {
        let out = alice.run(&["lookup", uid]);
        assert!(!out.ok);
        assert!(out.stderr.contains("peer_unreachable"), "{}", out.stderr);
        for leak in ["SSH", "1397966893", "127.0.0.1", "10.1.2.3", "frame"] {
            assert!(!out.stderr.contains(leak), "{leak} leaked: {}", out.stderr);
        }
    }
    assert_eq!(
        ssh.accepted(),
        0,
        "nothing connected to the loopback service"
    );
    let log = alpha.wait_for_log("not public");
    assert!(
        log.contains("loopback") && log.contains("private"),
        "the log has the details:\n{log}"
    );

    // A lab that allows it: the service is reached, but what it sent stays in the log.
    assert!(alpha.stop());
    let config = std::fs::read_to_string(alpha.config()).unwrap();
    std::fs::write(
        alpha.config(),
        config.replace(
            "enabled = true\n",
            "enabled = true\ndanger_allow_private_targets = true\n",
        ),
    )
    .unwrap();
    alpha.start();
    let out = alice.run(&["lookup", "x@evil.test"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("peer_unreachable"), "{}", out.stderr);
    for leak in ["SSH", "1397966893", "127.0.0.1", "frame"] {
        assert!(!out.stderr.contains(leak), "{leak} leaked: {}", out.stderr);
    }
    assert_eq!(ssh.accepted(), 1, "allowed, so it connected");
    assert!(
        alpha.wait_for_log("1397966893").contains("evil.test"),
        "the details are logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalling_peer_holds_up_no_other_peer_and_few_of_its_targets_are_tried() {
    // F8: stall.test accepts connections and never answers the handshake; many.test lists six
    // SRV targets, none with an address.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut records = format!(
        "srv-host=_siren._tcp.stall.test,127.0.0.1,{},10,0\n\
         txt-record=_siren-key.stall.test,\"v=siren1; k={SOME_KEY}\"\n\
         txt-record=_siren-key.many.test,\"v=siren1; k={SOME_KEY}\"\n",
        stall.local_addr().unwrap().port()
    );
    for i in 1..=6 {
        records.push_str(&format!(
            "srv-host=_siren._tcp.many.test,t{i}.many.test,7453,{i},0\n"
        ));
    }
    let mut beta = Server::new(Options {
        name: "beta.test".into(),
        ..Options::default()
    });
    beta.add_user("bob", "pw-b");
    records.push_str(&Dns::records_for(&beta));
    let dns = Dns::start(&records);
    dns.federate(&beta, "");
    beta.start();
    let lines = "danger_allow_private_targets = true\nrequest_timeout_secs = 8";
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a"), ("carol", "pw-c")],
        &dns,
        lines,
        "",
        Options::default(),
    );
    records.push_str(&Dns::records_for(&alpha));
    dns.rewrite(&records);
    let _bob = Session::create(&beta, "bob", "pw-b").await;
    let mut alice = Session::create(&alpha, "alice", "pw-a").await;
    let mut carol = Session::create(&alpha, "carol", "pw-c").await;
    let lookup = |uid: &str| {
        let uid = Uid::parse(uid).unwrap();
        move |rid| ClientMessage::Lookup { rid, uid }
    };
    carol.request(lookup("bob@beta.test")).await;
    assert!(matches!(
        carol.next_answer().await,
        ServerMessage::Directory { .. }
    ));

    // alice's lookup hangs in stall.test's handshake...
    alice.request(lookup("x@stall.test")).await;
    let (_held, _) = tokio::time::timeout(Duration::from_secs(20), stall.accept())
        .await
        .expect("alpha connects to stall.test")
        .unwrap();
    let waiting = tokio::spawn(async move {
        let answer = alice.next_answer().await;
        (alice, answer, tokio::time::Instant::now())
    });
    // ...while carol's lookup over the open link to beta is answered at once.
    carol.request(lookup("bob@beta.test")).await;
    assert!(matches!(
        carol.next_answer().await,
        ServerMessage::Directory { .. }
    ));
    let carol_answered = tokio::time::Instant::now();
    // alice's ends within the request timeout, with the generic error, after carol's.
    let (mut alice, answer, alice_answered) = waiting.await.unwrap();
    assert!(
        carol_answered < alice_answered,
        "carol was answered while alice's lookup still waited for stall.test"
    );
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::PeerUnreachable.as_u16()),
        "{answer:?}"
    );

    // many.test: only the first four targets are looked up (and tried).
    alice.request(lookup("x@many.test")).await;
    assert_eq!(
        error_code(&alice.next_answer().await),
        Some(ErrorCode::PeerUnreachable.as_u16())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dns.queries("t4.many.test") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 1..=4 {
        assert!(dns.queries(&format!("t{i}.many.test")) > 0, "t{i} is tried");
    }
    for i in 5..=6 {
        assert_eq!(dns.queries(&format!("t{i}.many.test")), 0, "t{i} is not");
    }
    drop(alpha);
}

#[tokio::test(flavor = "multi_thread")]
async fn hellos_naming_unpinned_servers_cost_dns_only_within_a_budget() {
    // F9: anyone can open a link claiming any name; checking an unpinned name's key needs DNS.
    let mut beta = Server::new(Options {
        name: "beta.test".into(),
        ..Options::default()
    });
    beta.add_user("bob", "pw-b");
    beta.add_user("carol", "pw-c");
    let dns = Dns::start(&Dns::records_for(&beta));
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a")],
        &dns,
        "danger_allow_private_targets = true\nnew_peer_hellos_per_address_per_minute = 4",
        "",
        Options::default(),
    );
    // alpha's records, now that its port and key exist.
    dns.rewrite(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    dns.federate(&beta, "");
    beta.start();
    let _alice = Session::create(&alpha, "alice", "pw-a").await;
    let lookup_alice = |rid| ClientMessage::Lookup {
        rid,
        uid: Uid::parse("alice@alpha.test").unwrap(),
    };
    // beta links to alpha once: alpha pins beta's key (one lookup of the budget of four that
    // 127.0.0.1 has).
    let mut bob = Session::create(&beta, "bob", "pw-b").await;
    bob.request(lookup_alice).await;
    assert!(matches!(
        bob.next_answer().await,
        ServerMessage::Directory { .. }
    ));

    let sek = siren_tests::raw::sek(&alpha);
    let knock = |claimed: String| fake_peer::knock(alpha.addr, "alpha.test", sek, claimed);
    // Three names DNS does not know: looked up, refused.
    for n in 1..=3 {
        let refused = knock(format!("nx{n}.test")).await.unwrap_err();
        assert_eq!(
            refused.0,
            ErrorCode::PeerUnreachable.as_u16(),
            "{refused:?}"
        );
    }
    // The budget of this address is spent: refused before any DNS query.
    let refused = knock("nx4.test".into()).await.unwrap_err();
    assert_eq!(refused.0, ErrorCode::RateLimited.as_u16(), "{refused:?}");
    // A name DNS already said does not exist: answered from memory (no query, no budget).
    let refused = knock("nx1.test".into()).await.unwrap_err();
    assert_eq!(
        refused.0,
        ErrorCode::PeerUnreachable.as_u16(),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // dnsmasq's log catches up
    assert_eq!(dns.queries("_siren-key.nx1.test"), 1);
    assert_eq!(dns.queries("_siren-key.nx2.test"), 1);
    assert_eq!(dns.queries("_siren-key.nx4.test"), 0);

    // A pinned peer is checked against its pin, without DNS: beta, from the same address,
    // still opens a new link after a restart.
    drop(bob);
    assert!(beta.stop());
    beta.start();
    let mut carol = Session::create(&beta, "carol", "pw-c").await;
    carol.request(lookup_alice).await;
    assert!(matches!(
        carol.next_answer().await,
        ServerMessage::Directory { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn outboxes_are_capped_per_user_and_in_total_and_their_workers_stop_when_empty() {
    // F10: messages to made-up servers. Each user may have envelopes waiting for 2 servers,
    // the server for 4; envelopes expire after 3 s.
    let dns = Dns::start("");
    let lines =
        "danger_allow_private_targets = true\nmax_outbox_peers = 4\nmax_outbox_peers_per_user = 2";
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a"), ("carol", "pw-c"), ("dave", "pw-d")],
        &dns,
        lines,
        "",
        Options {
            queue_ttl_secs: 3,
            sweep_interval_secs: 1,
            ..Options::default()
        },
    );
    let mut alice = Session::create(&alpha, "alice", "pw-a").await;
    let mut carol = Session::create(&alpha, "carol", "pw-c").await;
    let mut dave = Session::create(&alpha, "dave", "pw-d").await;
    let to = |s: &Session, n: u32| envelope_to_nowhere(s, &format!("x@nx{n}.test"), 10);
    let limit = Some(ErrorCode::LimitExceeded.as_u16());

    // One `send` to three servers: refused whole.
    let three = vec![to(&alice, 1), to(&alice, 2), to(&alice, 3)];
    let answer = send(&mut alice, three).await;
    assert_eq!(error_code(&answer), limit, "{answer:?}");
    let two = vec![to(&alice, 1), to(&alice, 2)];
    assert!(matches!(
        send(&mut alice, two).await,
        ServerMessage::SendAck { .. }
    ));
    let answer = {
        let msgs = vec![to(&alice, 3)];
        send(&mut alice, msgs).await
    };
    assert_eq!(error_code(&answer), limit, "{answer:?}");
    // More messages to the same servers are fine.
    assert!(matches!(
        {
            let msgs = vec![to(&alice, 2)];
            send(&mut alice, msgs).await
        },
        ServerMessage::SendAck { .. }
    ));
    // carol takes the server's last two; dave finds no room for a fifth server.
    let two = vec![to(&carol, 3), to(&carol, 4)];
    assert!(matches!(
        send(&mut carol, two).await,
        ServerMessage::SendAck { .. }
    ));
    let answer = {
        let msgs = vec![to(&dave, 5)];
        send(&mut dave, msgs).await
    };
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::RateLimited.as_u16()),
        "{answer:?}"
    );
    // ...but may write to a server that already has an outbox.
    assert!(matches!(
        {
            let msgs = vec![to(&dave, 1)];
            send(&mut dave, msgs).await
        },
        ServerMessage::SendAck { .. }
    ));

    // The envelopes expire; each worker finds its outbox empty and stops, and the limits
    // count nothing any more: alice may write to two new servers.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let two = vec![to(&alice, 6), to(&alice, 7)];
        match send(&mut alice, two).await {
            ServerMessage::SendAck { .. } => break,
            answer if std::time::Instant::now() > deadline => {
                panic!("the outboxes never emptied: {answer:?}")
            }
            answer => assert_eq!(error_code(&answer), limit, "{answer:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(matches!(
        {
            let msgs = vec![to(&dave, 8)];
            send(&mut dave, msgs).await
        },
        ServerMessage::SendAck { .. }
    ));

    // While they ran, each worker asked DNS about its server once: the answer that it does
    // not exist was remembered across the retries.
    tokio::time::sleep(Duration::from_millis(500)).await; // dnsmasq's log catches up
    for n in 1..=4 {
        assert_eq!(dns.queries(&format!("_siren-key.nx{n}.test")), 1, "nx{n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_envelopes_are_batched_by_size_and_hold_up_nobody() {
    // F11: two ~600 KB envelopes and a small one wait together in alpha's outbox while beta is
    // unreachable (its SRV names a closed port), then all reach bob.
    let mut beta = Server::new(Options {
        name: "beta.test".into(),
        ..Options::default()
    });
    beta.add_user("bob", "pw-b");
    let closed = siren_tests::free_port();
    let unreachable_beta =
        Dns::records_for(&beta).replace(&format!(",{},", beta.addr.port()), &format!(",{closed},"));
    let dns = Dns::start(&unreachable_beta);
    dns.federate(&beta, "");
    beta.start();
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a"), ("carol", "pw-c")],
        &dns,
        "danger_allow_private_targets = true",
        "",
        Options::default(),
    );
    let mut bob = Session::create(&beta, "bob", "pw-b").await;
    let mut alice = Session::create(&alpha, "alice", "pw-a").await;
    let mut carol = Session::create(&alpha, "carol", "pw-c").await;
    let bob_dek = bob.dek.public();
    let big1 = envelope(&alice, "bob@beta.test", &bob_dek, 600_000);
    let big2 = envelope(&alice, "bob@beta.test", &bob_dek, 600_000);
    let small = envelope(&carol, "bob@beta.test", &bob_dek, 100);
    let ids = [big1.id, big2.id, small.id];
    for env in [big1, big2] {
        assert!(matches!(
            send(&mut alice, vec![env]).await,
            ServerMessage::SendAck { .. }
        ));
    }
    assert!(matches!(
        send(&mut carol, vec![small]).await,
        ServerMessage::SendAck { .. }
    ));

    // beta becomes reachable: the outbox drains in frames beta accepts.
    dns.rewrite(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    let items = delivered(&mut bob, Duration::from_secs(90), |items| {
        message_ids(items).len() >= 3
    })
    .await;
    assert_eq!(message_ids(&items), ids, "all three, in order, once each");
}

#[test]
fn a_message_too_large_for_the_peer_is_given_up_and_its_sender_told() {
    // F11: beta comes back with a smaller frame limit than the one alpha knew when it accepted
    // alice's large message.
    let (alpha, mut beta, _dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    alice.send("bob@beta.test", "hello");
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: hello"]);

    assert!(beta.stop());
    let config = std::fs::read_to_string(beta.config()).unwrap();
    std::fs::write(
        beta.config(),
        config.replace("[limits]\n", "[limits]\nmax_frame = 65536\n"),
    )
    .unwrap();
    let large = "L".repeat(100_000);
    alice.send("bob@beta.test", &large);
    alice.send("bob@beta.test", "small after large");
    beta.start();

    // The small one is not held up by the large one, which is given up...
    assert_eq!(
        receive(&bob, 1),
        vec!["alice@alpha.test: small after large"]
    );
    // ...and alice's device is told.
    let out = alice.run(&["recv"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("to bob@beta.test was not delivered")
            && out.stderr.contains("accepts at most 65536")
            && out.stderr.contains("limit_exceeded"),
        "{}",
        out.stderr
    );
    // Now that alpha knows beta's limit, such a message is refused at once.
    let refused = alice.run(&["send", "bob@beta.test", &large]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("limit_exceeded") && refused.stderr.contains("65536"),
        "{}",
        refused.stderr
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(bob.recv().is_empty(), "nothing else arrived");
}

/// Waits for the one `undeliverable` notice `session` gets, and checks it names message `id`
/// and error `code`.
async fn given_up(session: &mut Session, id: MessageId, code: ErrorCode) {
    let items = delivered(session, Duration::from_secs(30), |items| {
        !undeliverable(items).is_empty()
    })
    .await;
    let notices = undeliverable(&items);
    assert_eq!(notices.len(), 1, "{items:?}");
    assert_eq!((notices[0].0, notices[0].1), (id, code.as_u16()));
}

/// The ids of a `deliver` a fake peer received (answering `ping`s meanwhile).
async fn deliver_request(link: &mut fake_peer::PeerLink) -> (u32, Vec<MessageId>) {
    match link.next_request(Duration::from_secs(60)).await {
        Some(LinkMessage::Deliver { rid, msgs }) => (rid, msgs.iter().map(|e| e.id).collect()),
        other => panic!("expected a deliver, got {other:?}"),
    }
}

/// A scripted peer far.test, and alpha.test (which can find it) with alice's session.
async fn alpha_and_far() -> (FakePeer, Dns, Server, Session) {
    let far = FakePeer::bind("far.test", None).await;
    let dns = Dns::start(&far.records());
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a")],
        &dns,
        "danger_allow_private_targets = true",
        "",
        Options::default(),
    );
    let alice = Session::create(&alpha, "alice", "pw-a").await;
    (far, dns, alpha, alice)
}

/// One envelope from alice to far, delivered and answered: alpha's worker for far takes the fast
/// path (its outbox then empty). Returns far's link.
async fn on_the_fast_path(
    far: &FakePeer,
    alpha: &Server,
    alice: &mut Session,
) -> fake_peer::PeerLink {
    let first = envelope_to_nowhere(alice, "x@far.test", 10);
    assert!(matches!(
        send(alice, vec![first.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    let mut link = far.accept(1 << 20, Duration::from_secs(30)).await;
    let (rid, ids) = deliver_request(&mut link).await;
    assert_eq!(ids, [first.id]);
    link.send(&LinkMessage::DeliverAck { rid, ids }).await;
    let idle = "outbox empty; its worker waits for more on the fast path";
    assert!(
        alpha.wait_for_log(idle).contains(idle),
        "not on the fast path"
    );
    // The operator sees the worker ready for more, not sending.
    let links = alpha.admin(&["federation", "links"], "");
    assert!(links.ok, "{}", links.stderr);
    let row = links.stdout.lines().find(|l| l.starts_with("far.test"));
    assert!(
        row.is_some_and(|r| r.split_whitespace().nth(2) == Some("ready")),
        "{}",
        links.stdout
    );
    link
}

fn refuse(rid: u32, code: ErrorCode, msg: &str) -> LinkMessage {
    LinkMessage::Error {
        rid: Some(rid),
        code: code.as_u16(),
        msg: msg.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peers_permanent_refusal_gives_a_message_up_and_a_transient_one_is_retried() {
    // F11: far.test is scripted: it refuses deliveries as the test says.
    let (far, _dns, _alpha, mut alice) = alpha_and_far().await;
    let to_far = |s: &Session| envelope_to_nowhere(s, "x@far.test", 10);
    let first = to_far(&alice);
    assert!(matches!(
        send(&mut alice, vec![first.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    let mut link = far.accept(1 << 20, Duration::from_secs(30)).await;
    assert_eq!(link.from.as_str(), "alpha.test");

    // A transient refusal: the same envelope comes again.
    let (rid, got) = deliver_request(&mut link).await;
    assert_eq!(got, [first.id]);
    link.send(&refuse(rid, ErrorCode::Unavailable, "busy"))
        .await;
    let (rid, got) = deliver_request(&mut link).await;
    assert_eq!(got, [first.id], "retried after a transient error");
    // A permanent one: given up, and alice's device is told why.
    link.send(&refuse(
        rid,
        ErrorCode::Refused,
        "x does not accept messages from alice",
    ))
    .await;
    let items = delivered(&mut alice, Duration::from_secs(30), |items| {
        !undeliverable(items).is_empty()
    })
    .await;
    let notices = undeliverable(&items);
    assert_eq!(notices.len(), 1, "{items:?}");
    let (id, code, reason) = &notices[0];
    assert_eq!((*id, *code), (first.id, ErrorCode::Refused.as_u16()));
    assert!(
        reason.contains("x does not accept messages from alice"),
        "{reason}"
    );

    // A batch refused for good is retried one envelope at a time, so only the offending one
    // is given up.
    let (a, b) = (to_far(&alice), to_far(&alice));
    assert!(matches!(
        send(&mut alice, vec![a.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    let (rid, got) = deliver_request(&mut link).await;
    assert_eq!(got, [a.id]);
    assert!(matches!(
        send(&mut alice, vec![b.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    link.send(&refuse(rid, ErrorCode::Unavailable, "busy"))
        .await;
    // b may have gone in a delivery of its own while a's was waiting (several are in flight
    // on a link); after a's failure both are sent again from the head.
    let (mut rid, mut got) = deliver_request(&mut link).await;
    if got == [b.id] {
        (rid, got) = deliver_request(&mut link).await;
    }
    assert_eq!(got, [a.id, b.id], "both in one batch");
    link.send(&refuse(rid, ErrorCode::NotFound, "no such device"))
        .await;
    let (rid, got) = deliver_request(&mut link).await;
    assert_eq!(got, [a.id], "one at a time");
    link.send(&refuse(rid, ErrorCode::NotFound, "no such device"))
        .await;
    let (rid, got) = deliver_request(&mut link).await;
    assert_eq!(got, [b.id], "the next one is not held up");
    link.send(&LinkMessage::DeliverAck { rid, ids: got }).await;
    given_up(&mut alice, a.id, ErrorCode::NotFound).await;
}

/// Several deliveries are in flight on a link at once (PROTOCOL.md §17): the next batch goes
/// before the peer answered the one before, the answers may come in any order, and each batch
/// leaves the outbox once its answer came (nothing is sent twice).
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_to_a_peer_are_pipelined_and_may_be_answered_in_any_order() {
    let (far, _dns, alpha, mut alice) = alpha_and_far().await;
    let mut link = None;
    let mut requests = Vec::new();
    for _ in 0..3 {
        let env = envelope_to_nowhere(&alice, "x@far.test", 10);
        assert!(matches!(
            send(&mut alice, vec![env.clone()]).await,
            ServerMessage::SendAck { .. }
        ));
        let link = match &mut link {
            Some(link) => link,
            None => link.insert(far.accept(1 << 20, Duration::from_secs(30)).await),
        };
        // Not answered yet, and the next one comes anyway.
        let (rid, got) = tokio::time::timeout(Duration::from_secs(10), deliver_request(link))
            .await
            .expect("the next delivery is sent before the one before is answered");
        assert_eq!(got, [env.id]);
        requests.push((rid, got));
    }
    let link = link.as_mut().unwrap();
    for i in [2, 0, 1] {
        let (rid, ids) = requests[i].clone();
        link.send(&LinkMessage::DeliverAck { rid, ids }).await;
    }
    // Stopped, or (on the fast path, once a delivery was answered) waiting for more.
    alpha.wait_for_log("outbox empty; its worker");
    assert!(
        link.next_request(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing answered is sent again"
    );
}

/// The outbox's fast path (PROTOCOL.md §17) sends an envelope on before it is written; its
/// sender's `send_ack` waits until the peer answers or the envelope is durable. Here the peer
/// takes deliveries and never answers: every acknowledged envelope must still be in alpha's
/// outbox after `kill -9`, and is sent again once alpha is back.
#[tokio::test(flavor = "multi_thread")]
async fn envelopes_sent_on_before_they_are_written_are_acknowledged_only_once_durable() {
    let (far, _dns, mut alpha, mut alice) = alpha_and_far().await;
    let mut link = on_the_fast_path(&far, &alpha, &mut alice).await;

    // Unanswered from now on: each `send_ack` comes once the envelope is written and synced.
    let mut acked = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let env = envelope_to_nowhere(&alice, "x@far.test", 10);
        assert!(matches!(
            send(&mut alice, vec![env.clone()]).await,
            ServerMessage::SendAck { .. }
        ));
        acked.push(env.id);
        seen.extend(deliver_request(&mut link).await.1);
    }
    assert_eq!(seen, acked, "sent on at once, in order, each once");
    alpha.kill();
    drop(link);
    alpha.start();
    let mut link = far.accept(1 << 20, Duration::from_secs(30)).await;
    let mut again = Vec::new();
    while again.len() < acked.len() {
        let (rid, ids) = deliver_request(&mut link).await;
        again.extend(ids.iter().copied());
        link.send(&LinkMessage::DeliverAck { rid, ids }).await;
    }
    assert_eq!(
        again, acked,
        "every acknowledged envelope was durable, in order"
    );
}

/// An envelope sent on early (the fast path) that the peer refuses for good is given up once,
/// from the outbox like any other: its sender gets one `undeliverable` notice, and what comes
/// next is not held up.
#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_sent_early_and_refused_for_good_is_given_up_once() {
    let (far, _dns, alpha, mut alice) = alpha_and_far().await;
    let mut link = on_the_fast_path(&far, &alpha, &mut alice).await;

    // The peer refuses `refused` each time it comes (early, then from the outbox once
    // written) and takes everything else.
    let refused = envelope_to_nowhere(&alice, "x@far.test", 10);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let peer = tokio::spawn(async move {
        loop {
            let (rid, got) = deliver_request(&mut link).await;
            let answer = if got.contains(&refused.id) {
                refuse(rid, ErrorCode::Refused, "not from alice")
            } else {
                LinkMessage::DeliverAck {
                    rid,
                    ids: got.clone(),
                }
            };
            link.send(&answer).await;
            let _ = seen_tx.send(got);
        }
    });
    assert!(matches!(
        send(&mut alice, vec![refused.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    given_up(&mut alice, refused.id, ErrorCode::Refused).await;
    let early = "a peer refused envelopes sent early";
    assert!(alpha.wait_for_log(early).contains(early), "it went early");
    let next = envelope_to_nowhere(&alice, "x@far.test", 10);
    assert!(matches!(
        send(&mut alice, vec![next.clone()]).await,
        ServerMessage::SendAck { .. }
    ));
    loop {
        let got = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .expect("the next envelope is not held up")
            .unwrap();
        if got == [next.id] {
            break;
        }
        assert_eq!(got, [refused.id], "only the refused one before it");
    }
    let items = delivered(&mut alice, Duration::from_secs(2), |_| false).await;
    assert!(
        undeliverable(&items).is_empty(),
        "one notice only: {items:?}"
    );
    peer.abort();
}

/// Two senders' streams to another server, sent back to back: each session has several commits
/// in flight and both share the peer's outbox, so the store may write a commit after a later
/// one; every message still crosses, once.
#[tokio::test(flavor = "multi_thread")]
async fn streams_from_several_senders_to_a_peer_all_arrive_once() {
    let (alpha, beta, _dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    alpha.add_user("carol", "pw-1");
    let mut bob = Session::create(&beta, "bob", "pw-2").await;
    const EACH: usize = 300;
    let mut senders = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for user in ["alice", "carol"] {
        let mut session = Session::create(&alpha, user, "pw-1").await;
        let msgs: Vec<Envelope> = (0..EACH)
            .map(|_| envelope(&session, "bob@beta.test", &bob.dek.public(), 10))
            .collect();
        ids.extend(msgs.iter().map(|e| e.id));
        senders.push(tokio::spawn(async move {
            for env in msgs {
                session
                    .request(|rid| ClientMessage::Send {
                        rid,
                        msgs: vec![env],
                    })
                    .await;
            }
            for _ in 0..EACH {
                let answer = session.next_answer().await;
                assert!(
                    matches!(answer, ServerMessage::SendAck { .. }),
                    "{answer:?}"
                );
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    // Bob acknowledges as he reads (a session gets only so many unacknowledged deliveries).
    let mut got = Vec::new();
    while got.len() < 2 * EACH {
        let next = tokio::time::timeout(
            Duration::from_secs(60),
            bob.conn.receiver.recv::<ServerMessage>(),
        );
        let Ok(Ok(message)) = next.await else { break };
        if let ServerMessage::Deliver { seq, item } = message {
            if let QueueItem::Message { env } = item {
                got.push(env.id);
            }
            let ack = ClientMessage::Ack { seqs: vec![seq] };
            bob.conn.sender.send(&ack).await.unwrap();
        }
    }
    assert_eq!(got.len(), 2 * EACH, "every message arrived");
    assert_eq!(
        got.iter()
            .copied()
            .collect::<std::collections::HashSet<_>>(),
        ids,
        "once each"
    );
}

/// An envelope from `from` (a user of another server, with fresh keys) to `to`'s device.
fn envelope_from_elsewhere(from: &str, to: &Session) -> Envelope {
    let mut rng = siren_proto::os_rng();
    let usk = siren_proto::keys::UskSecret::generate(&mut rng);
    let dek = DekSecret::generate(&mut rng);
    Envelope::seal(
        Sender {
            uid: &Uid::parse(from).unwrap(),
            usk: &usk,
            dek: &dek.public(),
        },
        &to.uid,
        &to.dek.public(),
        MessageId::random(&mut rng),
        1,
        b"hello",
        &mut rng,
    )
    .unwrap()
}

/// A peer's deliveries over one link are committed several at a time, in the order they came:
/// the device receives them in that order. A refused delivery fails at most the ones that came
/// while it was being committed (902, to be sent again after it), never one sent after its
/// answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_peers_deliveries_in_flight_are_committed_in_the_order_they_came() {
    let (far, _dns, alpha, mut alice) = alpha_and_far().await;
    let sek = siren_tests::raw::sek(&alpha);
    let mut link = far.connect(alpha.addr, "alpha.test", sek).await;
    let answers = async |link: &mut fake_peer::PeerLink, n: usize| {
        let mut answers = std::collections::BTreeMap::new();
        while answers.len() < n {
            match link.recv(Duration::from_secs(30)).await {
                Some(LinkMessage::DeliverAck { rid, .. }) => answers.insert(rid, None),
                Some(LinkMessage::Error {
                    rid: Some(rid),
                    code,
                    ..
                }) => answers.insert(rid, Some(code)),
                Some(LinkMessage::Ping { .. }) => continue,
                other => panic!("expected an answer to a deliver, got {other:?}"),
            };
        }
        answers
    };

    // Twenty deliveries sent back to back, none waiting for an answer.
    let sent: Vec<Envelope> = (0..20)
        .map(|_| envelope_from_elsewhere("x@far.test", &alice))
        .collect();
    for (rid, env) in (1..).zip(&sent) {
        let msgs = vec![env.clone()];
        link.send(&LinkMessage::Deliver { rid, msgs }).await;
    }
    let got = answers(&mut link, 20).await;
    assert!(got.values().all(Option::is_none), "{got:?}");
    let items = delivered(&mut alice, Duration::from_secs(30), |items| {
        message_ids(items).len() >= 20
    })
    .await;
    let ids: Vec<MessageId> = sent.iter().map(|e| e.id).collect();
    assert_eq!(message_ids(&items), ids, "in the order they came");

    // A delivery refused (its sender is not a user of far.test), one right behind it, and one
    // sent after both answers: that last one is committed.
    let forged = envelope_from_elsewhere("y@elsewhere.test", &alice);
    let (behind, after) = (
        envelope_from_elsewhere("x@far.test", &alice),
        envelope_from_elsewhere("x@far.test", &alice),
    );
    link.send(&LinkMessage::Deliver {
        rid: 100,
        msgs: vec![forged],
    })
    .await;
    link.send(&LinkMessage::Deliver {
        rid: 101,
        msgs: vec![behind.clone()],
    })
    .await;
    let got = answers(&mut link, 2).await;
    assert_eq!(got[&100], Some(ErrorCode::ForgedSender.as_u16()));
    assert!(
        matches!(got[&101], None | Some(902)),
        "accepted, or failed with its predecessor: {got:?}"
    );
    link.send(&LinkMessage::Deliver {
        rid: 102,
        msgs: vec![after.clone()],
    })
    .await;
    assert_eq!(answers(&mut link, 1).await[&102], None, "not held up");
    let mut expected = Vec::new();
    if got[&101].is_none() {
        expected.push(behind.id);
    }
    expected.push(after.id);
    let items = delivered(&mut alice, Duration::from_secs(30), |items| {
        message_ids(items).len() >= expected.len()
    })
    .await;
    assert_eq!(message_ids(&items), expected);
}

#[test]
fn queued_messages_stay_while_the_peer_is_denied_or_federation_is_off() {
    // F12: a message queued while federation with beta was allowed must not leave after the
    // policy denies beta or federation is switched off; it is held, not deleted.
    let (mut alpha, mut beta, _dns) =
        two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-2");
    alice.send("bob@beta.test", "before");
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: before"]);
    assert!(beta.stop());
    alice.send("bob@beta.test", "held");

    let allowed = std::fs::read_to_string(alpha.config()).unwrap();
    let restart_with = |alpha: &mut Server, config: &str| {
        assert!(alpha.stop());
        std::fs::write(alpha.config(), config).unwrap();
        alpha.start();
    };
    let denied = allowed.replace(
        "enabled = true\n",
        "enabled = true\npolicy = \"denylist\"\npeers = [\"beta.test\"]\n",
    );
    restart_with(&mut alpha, &denied);
    beta.start();
    assert!(alpha.wait_for_log("outbox is held").contains("beta.test"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(bob.recv().is_empty(), "nothing left for a denied peer");

    let off = allowed.replace("enabled = true\n", "enabled = false\n");
    restart_with(&mut alpha, &off);
    assert!(
        alpha
            .wait_for_log("outbox is held")
            .contains("federation is disabled")
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(bob.recv().is_empty(), "nothing left with federation off");

    // Allowed again: the held message goes, once.
    restart_with(&mut alpha, &allowed);
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: held"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(bob.recv().is_empty(), "nothing twice");
}

#[test]
fn reloading_the_federation_settings_takes_effect_without_dropping_a_session() {
    let (alpha, _beta, _dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&_beta, "bob@beta.test");
    bob.login("pw-2");
    // carol stays connected through every reload (`siren listen` ends if its session does).
    alpha.add_user("carol", "pw-3");
    let carol = Cli::init(&alpha, "carol@alpha.test");
    carol.login("pw-3");
    let carol_live = carol.listen();
    let next = |what: &str| {
        carol_live
            .next_line(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("carol's live session got no {what}"))
    };
    // Links both ways: beta → alpha for bob's message, alpha → beta for alice's.
    bob.send("carol@alpha.test", "before");
    assert_eq!(next("message"), "bob@beta.test: before");
    alice.send("bob@beta.test", "hello");
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: hello"]);

    let open = std::fs::read_to_string(alpha.config()).unwrap();
    let reload = |text: &str| {
        std::fs::write(alpha.config(), text).unwrap();
        let out = alpha.admin(&["reload"], "");
        assert!(out.ok, "{}", out.stderr);
        out.stdout
    };

    // Deny beta: both links close at once and nothing crosses either way.
    let out = reload(&open.replace(
        "enabled = true\n",
        "enabled = true\npolicy = \"denylist\"\npeers = [\"beta.test\"]\n",
    ));
    assert_eq!(
        out,
        format!(
            "reloaded {}: applied federation.peers, federation.policy\n",
            alpha.config().display()
        )
    );
    let mut log = String::new();
    for needle in [
        "inbound link closed: the reloaded",
        "outbound link closed: the reloaded",
    ] {
        if !log.contains(needle) {
            log.push_str(&alpha.wait_for_log(needle));
            log.push('\n');
        }
        let line = log.lines().find(|l| l.contains(needle));
        assert!(line.is_some_and(|l| l.contains("beta.test")), "{log}");
    }
    let refused = alice.run(&["send", "bob@beta.test", "denied"]);
    assert!(
        !refused.ok && refused.stderr.contains("federation_denied"),
        "{}",
        refused.stderr
    );
    let refused = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(
        !refused.ok && refused.stderr.contains("federation_denied"),
        "{}",
        refused.stderr
    );

    // Federation off: a closed deployment, still without a restart.
    let out = reload(&open.replace("enabled = true\n", "enabled = false\n"));
    assert!(out.contains("applied federation.enabled"), "{out}");
    let refused = alice.run(&["lookup", "bob@beta.test"]);
    assert!(
        !refused.ok && refused.stderr.contains("federation_disabled"),
        "{}",
        refused.stderr
    );

    // Open again: messages flow both ways, to the session that lived through every reload.
    let out = reload(&open);
    assert!(out.contains("applied federation.enabled"), "{out}");
    alice.send("bob@beta.test", "open again");
    assert_eq!(receive(&bob, 1), vec!["alice@alpha.test: open again"]);
    bob.send("carol@alpha.test", "after");
    assert_eq!(next("message after the reloads"), "bob@beta.test: after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_stops_reading_holds_up_no_session_and_its_link_is_closed() {
    // F13: stuck.test completes the link handshake, announces large frames and then never
    // reads (with a small receive buffer, so the link fills up quickly) nor answers.
    let stuck = FakePeer::bind("stuck.test", Some(4096)).await;
    let dns = Dns::start(&stuck.records());
    let alpha = federated(
        "alpha.test",
        &[("alice", "pw-a")],
        &dns,
        "danger_allow_private_targets = true\nrequest_timeout_secs = 5",
        "max_frame = 33554432",
        Options::default(),
    );
    let mut alice = Session::create(&alpha, "alice", "pw-a").await;
    alice.conn.sender.set_max_frame(32 << 20);

    // A lookup of one of its users, then a ping: the ping is answered first, the lookup within
    // the request timeout.
    let lookup = alice
        .request(|rid| ClientMessage::Lookup {
            rid,
            uid: Uid::parse("x@stuck.test").unwrap(),
        })
        .await;
    let first = stuck.accept(64 << 20, Duration::from_secs(30)).await;
    let ping = alice.request(|rid| ClientMessage::Ping { rid }).await;
    assert_eq!(alice.next_answer().await, ServerMessage::Pong { rid: ping });
    let answer = alice.next_answer().await;
    assert_eq!(answer_rid(&answer), Some(lookup));
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::PeerUnreachable.as_u16()),
        "{answer:?}"
    );

    // 8 MB for one of its users: the link's write cannot finish, so the link is closed and the
    // next attempt opens a new one.
    let large = envelope_to_nowhere(&alice, "x@stuck.test", 8 << 20);
    assert!(matches!(
        send(&mut alice, vec![large]).await,
        ServerMessage::SendAck { .. }
    ));
    assert!(
        stuck.connection_within(Duration::from_secs(60)).await,
        "alpha gave the stuck link up and opened another"
    );
    // The stuck link was closed: reading it now ends (after whatever was written into it).
    let mut receiver = first.receiver;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while receiver.recv_plain().await.is_ok() {}
    })
    .await;
    assert!(drained.is_ok(), "the first link was closed");
    assert!(
        alpha
            .wait_for_log("did not finish in time")
            .contains("stuck.test")
    );
    // And alice's session still answers at once.
    let ping = alice.request(|rid| ClientMessage::Ping { rid }).await;
    assert_eq!(alice.next_answer().await, ServerMessage::Pong { rid: ping });
}

/// A recipient's full queue refuses a peer's delivery (401) like a local send; the sending
/// server gives up that message with a notice, and nothing else it has for the peer waits behind
/// it. And an authenticated peer's link is not one of its address's anonymous connections.
#[test]
fn a_full_queue_holds_up_no_other_message_and_a_link_is_not_anonymous() {
    let mut alpha = Server::new(Options {
        name: "alpha.test".into(),
        // One anonymous connection per address: the peer's link must not keep it.
        limits_lines: "max_queue_items_per_device = 2\nunauthenticated_per_address = 1\n".into(),
        extra: "[roster]\nnon_contacts = \"accept\"\n".into(),
        ..Options::default()
    });
    let mut beta = server("beta.test");
    alpha.add_user("alice", "pw-1");
    alpha.add_user("bob", "pw-1");
    beta.add_user("mallory", "pw-2");
    beta.add_user("carol", "pw-2");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    dns.federate(&alpha, "");
    dns.federate(&beta, "");
    alpha.start();
    beta.start();
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    let bob = Cli::init(&alpha, "bob@alpha.test");
    bob.login("pw-1");
    let mallory = Cli::init(&beta, "mallory@beta.test");
    mallory.login("pw-2");
    let carol = Cli::init(&beta, "carol@beta.test");
    carol.login("pw-2");

    // Bob's device has room for two messages; mallory sends three.
    for i in 0..3 {
        mallory.send("bob@alpha.test", &format!("spam {i}"));
    }
    carol.send("alice@alpha.test", "hi alice");
    // Once beta's link to alpha is up, alpha's clients on the same address still get in.
    alpha.wait_for_log("inbound link ready");
    assert_eq!(receive(&alice, 1), vec!["carol@beta.test: hi alice"]);
    assert_eq!(receive(&bob, 2).len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = mallory.run(&["recv"]);
        assert!(out.ok, "{}", out.stderr);
        if out.stderr.contains("was not delivered") {
            assert!(out.stderr.contains("queue_full"), "{}", out.stderr);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mallory was never told: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
