//! Plugins in a real `sirend`: WebAssembly components (credentials, a mechanism, a KV storage
//! engine) and their sandbox, and clear start-up errors for broken plugins. The components are
//! built by scripts/build-plugins.sh into `$CARGO_TARGET_DIR/plugins/` (scripts/test.sh runs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use siren_tests::{Cli, Options, Server, binary};

fn wasm(name: &str) -> PathBuf {
    let target = binary("sirend")
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .to_owned();
    let path = target.join("plugins").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

fn plugin(name: &str, kind: &str, file: &str, config: &str) -> String {
    format!(
        "\n[[plugins]]\nname = \"{name}\"\nkind = \"{kind}\"\nwasm = \"{}\"\ndeadline_ms = 200\nmemory_limit_mib = 16\n[plugins.config]\n{config}\n",
        wasm(file).display()
    )
}

#[test]
fn logins_go_through_a_wasm_credential_plugin_and_a_wasm_mechanism() {
    let mut s = Server::new(Options {
        auth_lines: "mechanisms = [\"STATIC\", \"PLAIN\"]\ncredentials = \"corp\"".into(),
        extra: format!(
            "{}{}",
            plugin(
                "corp",
                "credentials",
                "credentials-static",
                "users = \"alice:pw1,bob:pw2\""
            ),
            plugin(
                "STATIC",
                "mechanism",
                "auth-static",
                "users = \"carol:pw3\""
            )
        ),
        ..Options::default()
    });
    let listed = Server::sirend(&["plugins", "list", "--config", s.config().to_str().unwrap()]);
    assert!(listed.ok, "{}", listed.stderr);
    for name in ["corp", "STATIC"] {
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("siren:plugin@0.1.0")),
            "{}",
            listed.stdout
        );
    }
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    assert!(
        alice.login("pw1").ok,
        "PLAIN over the wasm credential backend"
    );
    let wrong = Cli::init(&s, "bob@alpha.test");
    assert!(!wrong.try_login("pw1").ok);
    let carol = Cli::init(&s, "carol@alpha.test");
    let out = carol.run_with_stdin(
        &["login", "--password-stdin", "--mechanism", "STATIC"],
        "pw3\n",
    );
    assert!(out.ok, "the wasm mechanism: {}", out.stderr);
    alice.send("carol@alpha.test", "through plugins");
    assert_eq!(carol.recv(), vec!["alice@alpha.test: through plugins"]);
}

#[test]
fn a_looping_or_memory_hungry_plugin_fails_that_call_and_the_server_goes_on() {
    let port = siren_tests::free_port();
    let mut s = Server::new(Options {
        auth_lines: "credentials = \"bad\"".into(),
        extra: format!(
            "{}{}",
            siren_tests::metrics::metrics_on(port),
            plugin("bad", "credentials", "misbehaving-credentials", "")
        ),
        ..Options::default()
    });
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    assert!(alice.try_login("ecila").ok);
    let listener = alice.listen();

    let looping = Cli::init(&s, "loop@alpha.test");
    let start = Instant::now();
    assert!(
        !looping.try_login("x").ok,
        "a looping verifier cannot log anyone in"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the call was cut off ({:?})",
        start.elapsed()
    );
    let hog = Cli::init(&s, "hog@alpha.test");
    assert!(!hog.try_login("x").ok);

    // Everyone else carries on: the live session, and new logins through the same plugin.
    let bob = Cli::init(&s, "bob@alpha.test");
    assert!(bob.login("bob").ok);
    bob.send("alice@alpha.test", "still here");
    assert_eq!(
        listener.next_line(Duration::from_secs(10)).as_deref(),
        Some("bob@alpha.test: still here")
    );
    let log = s.wait_for_log("memory limit");
    assert!(log.contains("deadline"), "the log says why:\n{log}");
    assert!(log.contains("memory limit"), "the log says why:\n{log}");

    // And the metrics count the calls, the failures and the deadline hit, by plugin.
    let at = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, text) = siren_tests::metrics::get(at, "/metrics").expect("metrics");
    let value = |name: &str| {
        siren_tests::metrics::sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(
        value("siren_plugin_calls_total{plugin=\"bad\"}") >= 4.0,
        "{text}"
    );
    assert!(
        value("siren_plugin_errors_total{plugin=\"bad\"}") >= 2.0,
        "{text}"
    );
    assert!(
        value("siren_plugin_deadline_hits_total{plugin=\"bad\"}") >= 1.0,
        "{text}"
    );
}

#[test]
fn a_wasm_kv_engine_stores_everything() {
    let mut s = Server::new(Options {
        storage: "researcher-kv",
        auth_lines: "credentials = \"corp\"".into(),
        extra: format!(
            "{}{}",
            plugin("researcher-kv", "storage", "kv-memory", ""),
            plugin(
                "corp",
                "credentials",
                "credentials-static",
                "users = \"alice:pw1,bob:pw2\""
            )
        ),
        ..Options::default()
    });
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    assert!(alice.login("pw1").ok);
    let bob = Cli::init(&s, "bob@alpha.test");
    assert!(bob.login("pw2").ok);
    alice.send("bob@alpha.test", "kept in a wasm store");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: kept in a wasm store"]);
}

#[test]
fn broken_plugins_stop_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x01\0\0\0 not really").unwrap();
    let cases = [
        (
            format!(
                "\n[[plugins]]\nname = \"corp\"\nkind = \"credentials\"\nwasm = \"{}\"\n",
                corrupt.display()
            ),
            vec!["corp", "corrupt.wasm"],
        ),
        (
            plugin("corp", "credentials", "wrong-version", ""),
            vec!["0.2.0", "0.1.0"],
        ),
        (
            plugin("corp", "credentials", "federation-allowlist", ""),
            vec!["corp", "not a"],
        ),
    ];
    for (extra, needles) in cases {
        let s = Server::new(Options {
            extra,
            ..Options::default()
        });
        let err = s.start_failure();
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }
}

#[test]
fn a_wasm_message_filter_rate_limits_senders() {
    let mut s = Server::new(Options {
        extra: plugin(
            "ratelimit",
            "message_filter",
            "rate-limit-filter",
            "limit = \"2\"\nwindow_secs = \"3600\"",
        ),
        ..Options::default()
    });
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    alice.send("bob@alpha.test", "one");
    alice.send("bob@alpha.test", "two");
    let third = alice.run(&["send", "bob@alpha.test", "three"]);
    assert!(!third.ok, "the third message in the window is held back");
    assert!(third.stderr.contains("retry in"), "{}", third.stderr);
    // Bob is not limited by alice's count.
    bob.send("alice@alpha.test", "hi");
    assert_eq!(
        bob.recv().len() + alice.recv().len(),
        3,
        "two from alice, one from bob"
    );
}

#[test]
fn a_reload_rebuilds_the_message_filters_with_their_new_settings() {
    let filter = |limit: &str| {
        plugin(
            "ratelimit",
            "message_filter",
            "rate-limit-filter",
            &format!("limit = \"{limit}\"\nwindow_secs = \"3600\""),
        )
    };
    let (s, alice, bob) = siren_tests::alice_and_bob(Options {
        extra: filter("100"),
        ..Options::default()
    });
    let bob_live = bob.listen();
    alice.send("bob@alpha.test", "one");

    // One message an hour from now on: the filter is rebuilt with the new setting (and a
    // fresh count), without a restart and without closing bob's session.
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(s.config(), config.replace(&filter("100"), &filter("1"))).unwrap();
    let out = s.admin(&["reload"], "");
    assert!(
        out.ok && out.stdout.contains("applied plugins") && !out.stdout.contains("restart"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    alice.send("bob@alpha.test", "two");
    let three = alice.run(&["send", "bob@alpha.test", "three"]);
    assert!(
        !three.ok && three.stderr.contains("retry in"),
        "{}",
        three.stderr
    );
    for text in ["one", "two"] {
        assert_eq!(
            bob_live.next_line(Duration::from_secs(10)),
            Some(format!("alice@alpha.test: {text}"))
        );
    }
}

#[test]
fn the_federation_policy_is_asked_before_anything_goes_to_another_server() {
    // A wasm allowlist policy: beta.test allowed, gamma.test not.
    let mut s = Server::new(Options {
        extra: format!(
            "\n[federation]\nenabled = true\npolicy = \"partners\"\n{}",
            plugin(
                "partners",
                "federation",
                "federation-allowlist",
                "peers = \"beta.test\""
            )
        ),
        ..Options::default()
    });
    s.add_user("alice", "pw-a");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let denied = alice.run(&["lookup", "carol@gamma.test"]);
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains("federation_denied"),
        "{}",
        denied.stderr
    );
    let allowed = alice.run(&["lookup", "bob@beta.test"]);
    assert!(!allowed.ok, "no server-to-server links yet");
    assert!(
        !allowed.stderr.contains("federation_denied") && allowed.stderr.contains("beta.test"),
        "{}",
        allowed.stderr
    );
    let log = s.wait_for_log("federation refused by policy");
    assert!(log.contains("gamma.test"), "{log}");
}

#[test]
fn a_closed_deployment_refuses_other_servers() {
    let mut s = Server::new(Options::default());
    s.add_user("alice", "pw-a");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let out = alice.run(&["send", "bob@beta.test", "hi"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("federation_disabled"), "{}", out.stderr);
}

#[test]
fn a_held_back_first_message_still_arrives_as_a_contact_request() {
    // One message per 2-second window: alice's message to carol uses the window, so her first
    // message to bob is held back. Nothing about that refused `send` may be remembered: when
    // she sends again, bob still gets the contact request.
    let mut s = Server::new(Options {
        extra: plugin(
            "ratelimit",
            "message_filter",
            "rate-limit-filter",
            "limit = \"1\"\nwindow_secs = \"2\"",
        ),
        ..Options::default()
    });
    for (user, pw) in [("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")] {
        s.add_user(user, pw);
    }
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let carol = Cli::init(&s, "carol@alpha.test");
    carol.login("pw-c");
    // Start at the beginning of a window, so the two sends below share it.
    while !std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .is_multiple_of(2)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    alice.send("carol@alpha.test", "uses the window");
    let held = alice.run(&["send", "bob@alpha.test", "hello stranger"]);
    assert!(
        !held.ok && held.stderr.contains("retry in"),
        "{}",
        held.stderr
    );
    std::thread::sleep(Duration::from_millis(2100));
    alice.send("bob@alpha.test", "hello stranger");
    let out = bob.run(&["recv"]);
    assert!(
        out.stderr.contains("contact request from alice@alpha.test"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "alice@alpha.test: hello stranger");
}
