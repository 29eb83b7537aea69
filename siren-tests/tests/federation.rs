//! Federation with real `sirend` processes found through a real DNS server (dnsmasq): proxied
//! lookups over server-to-server links, pinned peer keys, and the policy on both sides.

use siren_tests::{Cli, Dns, Options, Server};

fn server(name: &str) -> Server {
    Server::new(Options {
        name: name.into(),
        ..Options::default()
    })
}

/// Turns federation on, finding peers through `dns`, with `policy` lines.
fn federate(s: &Server, dns: &Dns, policy: &str) {
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "{config}\n[federation]\nenabled = true\ndns = [\"{}\"]\n{policy}\n",
            dns.addr
        ),
    )
    .unwrap();
}

#[test]
fn a_lookup_of_a_user_on_another_server_goes_over_a_link() {
    let mut alpha = server("alpha.test");
    let mut beta = server("beta.test");
    alpha.add_user("alice", "pw-a");
    beta.add_user("bob", "pw-b");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&beta)
    ));
    federate(&alpha, &dns, "");
    federate(&beta, &dns, "");
    alpha.start();
    beta.start();
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&beta, "bob@beta.test");
    bob.login("pw-b");
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
    // hijacked zone): with the link gone, alpha refuses the pinned peer's new key.
    let impostor = server("beta.test");
    dns.rewrite(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&impostor)
    ));
    assert!(beta.stop());
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
    let mut alpha = server("alpha.test");
    let mut gamma = server("gamma.test");
    alpha.add_user("alice", "pw-a");
    gamma.add_user("carol", "pw-c");
    let dns = Dns::start(&format!(
        "{}{}",
        Dns::records_for(&alpha),
        Dns::records_for(&gamma)
    ));
    // alpha talks only to beta.test; gamma is open.
    federate(
        &alpha,
        &dns,
        "policy = \"allowlist\"\npeers = [\"beta.test\"]",
    );
    federate(&gamma, &dns, "");
    alpha.start();
    gamma.start();
    let alice = Cli::init(&alpha, "alice@alpha.test");
    alice.login("pw-a");
    let carol = Cli::init(&gamma, "carol@gamma.test");
    carol.login("pw-c");

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
