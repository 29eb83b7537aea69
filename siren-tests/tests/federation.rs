//! Federation with real `sirend` processes found through a real DNS server (dnsmasq): proxied
//! lookups over server-to-server links, pinned peer keys, and the policy on both sides.

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
    let mut first = server(a);
    let mut second = server(b);
    first.add_user(a_user, "pw-1");
    second.add_user(b_user, "pw-2");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&first),
        Dns::records_for(&second)
    ));
    federate(&first, &dns, a_policy);
    federate(&second, &dns, "");
    first.start();
    second.start();
    (first, second, dns)
}

/// Turns federation on, finding peers through `dns`, with `policy` lines. Every server of these
/// tests listens on loopback, so each must be allowed to follow DNS to non-public addresses.
fn federate(s: &Server, dns: &Dns, policy: &str) {
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "{config}\n[federation]\nenabled = true\ndns = [\"{}\"]\ndanger_allow_private_targets = true\n{policy}\n",
            dns.addr
        ),
    )
    .unwrap();
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

#[test]
fn a_server_claiming_another_name_without_its_key_is_refused() {
    let (alpha, beta, dns) = two_servers(("alpha.test", "alice"), ("beta.test", "bob"), "");
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-1");
    // A second "beta.test" with its own key (not the one DNS publishes), federated too.
    let mut impostor = server("beta.test");
    impostor.add_user("mallory", "pw-m");
    federate(&impostor, &dns, "");
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
    std::thread::sleep(std::time::Duration::from_millis(500));
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
    federate(&beta, &dns, "");
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
