//! Groups (PROTOCOL.md §12.1) with real processes: two federated `sirend`s found through a real
//! DNS server, three users with two devices each, driven through the `siren` CLI.

use std::time::{Duration, Instant};

use siren_tests::{Cli, Dns, Options, Running, Server};

const T: Duration = Duration::from_secs(30);

fn server(name: &str) -> Server {
    Server::new(Options {
        name: name.into(),
        ..Options::default()
    })
}

/// Turns federation on, finding peers through `dns` (every server here is on loopback).
fn federate(s: &Server, dns: &Dns) {
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "{config}\n[federation]\nenabled = true\ndns = [\"{}\"]\ndanger_allow_private_targets = true\n",
            dns.addr
        ),
    )
    .unwrap();
}

/// A second device of `uid`, approved from `first` with the code it shows.
fn second_device(s: &Server, first: &Cli, uid: &str, password: &str) -> Cli {
    let mut approver = first.spawn(&["devices", "approve", "--code-stdin", "--wait", "30"], "");
    let device = Cli::init(s, uid);
    let mut login = device.spawn(
        &["login", "--password-stdin", "--device-name", "phone"],
        &format!("{password}\n"),
    );
    let code = next_with(&login, "approval code: ").replace(' ', "");
    approver.write_line(&code);
    let approved = approver.finish(T);
    assert!(approved.ok, "approve: {}", approved.stderr);
    next_with(&login, "signing key ");
    login.write_line("y");
    let done = login.finish(T);
    assert!(done.ok, "second device of {uid}: {}", done.stderr);
    device
}

/// The rest of the first line of `running` that starts with `prefix`.
fn next_with(running: &Running, prefix: &str) -> String {
    loop {
        let line = running
            .next_line(T)
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

/// Everything `cli` receives (its standard output lines) until `done` says so, or 30 s.
fn receive_until(cli: &Cli, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    while !done(&got) {
        assert!(Instant::now() < deadline, "gave up waiting; got {got:?}");
        got.extend(cli.recv());
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
    federate(&alpha, &dns);
    federate(&beta, &dns);
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
    let short = &id[..8];
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
    let line = format!("[{short}] alice@alpha.test: hello all");
    for device in &others {
        let got = receive_line(device, &line);
        assert_eq!(count(&got, &line), 1, "{got:?}");
    }
    // From bob's phone, by id: bob's laptop too, and alice's two devices.
    run_ok(&w.bob[1], &["send", &id, "hi from bob's phone"]);
    let line = format!("[{short}] bob@alpha.test: hi from bob's phone");
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
    run_ok(&w.alice[0], &["send", "Lunch", "just us now"]);
    let line = format!("[{short}] alice@alpha.test: just us now");
    for device in w.bob.iter().chain([&w.alice[1]]) {
        receive_line(device, &line);
    }
    // bob's devices got it after carol's would have; give beta a moment more all the same.
    std::thread::sleep(Duration::from_secs(1));
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
    let line = format!("[{short}] carol@beta.test: back again");
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
