//! Several devices per account with real processes: approval with the short code (and its deny,
//! wrong-code and timeout paths), delivery to every device, revocation, DEK rotation on login.

use std::time::Duration;

use siren_tests::{Cli, Options, Running, Server};

const T: Duration = Duration::from_secs(30);

fn server(options: Options) -> Server {
    let mut s = Server::new(options);
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    s
}

/// Starts `siren devices approve --code-stdin` on `existing`, then `siren login` on a new device;
/// returns the new device, its login, the approver, and the code the new device shows.
fn new_device(s: &Server, existing: &Cli, name: &str) -> (Cli, Running, Running, String) {
    let approver = existing.spawn(&["devices", "approve", "--code-stdin", "--wait", "30"], "");
    let device = Cli::init(s, "alice@alpha.test");
    let login = device.spawn(
        &["login", "--password-stdin", "--device-name", name],
        "pw-a\n",
    );
    let code = loop {
        let line = login
            .next_line(T)
            .expect("the new device shows an approval code");
        if let Some(code) = line.strip_prefix("approval code: ") {
            break code.replace(' ', "");
        }
    };
    (device, login, approver, code)
}

/// The key a new device shows once the approving device sent it (before asking to confirm).
fn received_key(login: &Running) -> String {
    loop {
        let line = login
            .next_line(T)
            .expect("the new device shows the signing key it received");
        if let Some(rest) = line.strip_prefix("signing key ") {
            return rest.split(" received").next().unwrap().to_owned();
        }
    }
}

/// The `signing key …` line a command prints.
fn signing_key(cli: &Cli, args: &[&str]) -> String {
    cli.run(args)
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("signing key "))
        .unwrap_or_else(|| panic!("{args:?} shows the signing key"))
        .to_owned()
}

/// The devices `siren devices list` shows (without the signing-key line).
fn devices_listed(cli: &Cli) -> Vec<String> {
    let out = cli.run(&["devices", "list"]);
    assert!(out.ok, "devices list: {}", out.stderr);
    out.stdout
        .lines()
        .filter(|l| !l.starts_with("signing key "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_new_device_is_approved_by_an_existing_one_and_all_devices_get_messages() {
    let s = server(Options::default());
    let laptop = Cli::init(&s, "alice@alpha.test");
    laptop.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");

    let mut devices = vec![laptop];
    for name in ["phone", "tablet"] {
        let (device, mut login, mut approver, code) = new_device(&s, &devices[0], name);
        approver.write_line(&code);
        let out = approver.finish(T);
        assert!(out.ok, "approve: {}", out.stderr);
        // Both sides show the account's signing key, and so do the existing devices.
        let sent = out
            .stdout
            .split("received the signing key ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or_else(|| panic!("the approver shows the key: {}", out.stdout))
            .to_owned();
        let shown = received_key(&login);
        assert_eq!(shown, sent);
        assert_eq!(signing_key(&devices[0], &["whoami"]), shown);
        assert_eq!(signing_key(&devices[0], &["devices", "list"]), shown);
        // The person approved on the laptop and the keys match: yes.
        login.write_line("y");
        let done = login.finish(T);
        assert!(done.ok, "new device login: {}", done.stderr);
        assert!(
            done.stdout.contains("approved by another device"),
            "{}",
            done.stdout
        );
        devices.push(device);
    }
    let listed = devices_listed(&devices[0]);
    assert_eq!(listed.len(), 3, "{listed:?}");

    let sent = bob.run(&["send", "alice@alpha.test", "to all of you"]);
    assert!(sent.stdout.contains("(3 devices)"), "{}", sent.stdout);
    for d in &devices {
        assert_eq!(d.recv(), vec!["bob@alpha.test: to all of you"]);
    }

    // Revoke the tablet from the laptop: it gets nothing any more, and senders drop its key.
    let tablet_fp = devices[2].run(&["whoami"]).stdout;
    let fp = tablet_fp
        .lines()
        .find_map(|l| l.strip_prefix("device "))
        .expect("whoami shows the device")
        .to_owned();
    let out = devices[0].run(&["devices", "revoke", &fp]);
    assert!(out.ok, "revoke: {}", out.stderr);
    let look = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(
        look.stdout.contains("(removed: treated as revoked)"),
        "{}",
        look.stdout
    );
    let sent = bob.run(&["send", "alice@alpha.test", "after the revocation"]);
    assert!(sent.stdout.contains("(2 devices)"), "{}", sent.stdout);
    for d in &devices[..2] {
        let got = d.recv();
        assert!(
            got.contains(&"bob@alpha.test: after the revocation".to_owned()),
            "{got:?}"
        );
    }
    let tablet = devices[2].run(&["recv"]);
    assert!(
        !tablet.ok,
        "a revoked device must not receive: {}",
        tablet.stdout
    );
    assert!(!tablet.stdout.contains("after the revocation"));
}

#[test]
fn a_wrong_code_or_a_denial_refuses_the_new_device() {
    let s = server(Options::default());
    let laptop = Cli::init(&s, "alice@alpha.test");
    laptop.login("pw-a");

    let (_device, login, mut approver, code) = new_device(&s, &laptop, "intruder");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    approver.write_line(wrong);
    let out = approver.finish(T);
    assert!(!out.ok);
    assert!(out.stderr.contains("denied"), "{}", out.stderr);
    let done = login.finish(T);
    assert!(!done.ok);
    assert!(done.stderr.contains("denied"), "{}", done.stderr);

    let deny = laptop.spawn(&["devices", "deny", "--wait", "30"], "");
    let device = Cli::init(&s, "alice@alpha.test");
    let login = device.spawn(&["login", "--password-stdin"], "pw-a\n");
    let out = deny.finish(T);
    assert!(out.ok, "{}", out.stderr);
    let done = login.finish(T);
    assert!(
        !done.ok && done.stderr.contains("denied"),
        "{}",
        done.stderr
    );
    let listed = devices_listed(&laptop);
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[test]
fn an_unanswered_approval_times_out() {
    let s = server(Options {
        approval_timeout_secs: 2,
        ..Options::default()
    });
    let laptop = Cli::init(&s, "alice@alpha.test");
    laptop.login("pw-a");
    let device = Cli::init(&s, "alice@alpha.test");
    let login = device.spawn(&["login", "--password-stdin"], "pw-a\n");
    let done = login.finish(T);
    assert!(!done.ok);
    assert!(
        done.stderr.contains("approval_timeout, 206"),
        "{}",
        done.stderr
    );
}

#[test]
fn logging_in_again_rotates_the_dek_after_draining_the_old_one() {
    let s = server(Options::default());
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let before = alice.run(&["whoami"]).stdout;
    bob.send("alice@alpha.test", "waiting for the old key");
    let out = alice.login("pw-a");
    assert!(
        out.stdout
            .contains("bob@alpha.test: waiting for the old key"),
        "{}",
        out.stdout
    );
    let after = alice.run(&["whoami"]).stdout;
    assert_ne!(before, after, "a new login must use a new DEK");
    let listed = devices_listed(&alice);
    assert_eq!(listed.len(), 1, "the old DEK is revoked: {listed:?}");
    bob.send("alice@alpha.test", "to the new key");
    assert_eq!(alice.recv(), vec!["bob@alpha.test: to the new key"]);
}

#[test]
fn the_recovery_key_brings_the_account_back_without_another_device() {
    let s = server(Options::default());
    let old = Cli::init(&s, "alice@alpha.test");
    old.login("pw-a");
    let out = old.run(&["recovery", "export"]);
    let key = out.stdout.trim().to_owned();
    assert_eq!(key.len(), 44, "{key} {}", out.stderr);
    // The old device is lost; a new one imports the key and logs in without approval.
    let new = Cli::init(&s, "alice@alpha.test");
    assert!(new.run(&["recovery", "import", &key]).ok);
    let out = new.login("pw-a");
    assert!(
        out.stdout.contains("registered this device"),
        "{}",
        out.stdout
    );
    // Same signing key: contacts see no key change, and the safety numbers agree.
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    let from_bob = bob.run(&["lookup", "alice@alpha.test"]).stdout;
    let from_alice = new.run(&["lookup", "bob@alpha.test"]).stdout;
    let number = |out: &str| {
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("safety number with ")
                    .map(|r| r.split(": ").nth(1).unwrap_or("").to_owned())
            })
            .expect("a safety number")
    };
    assert_eq!(number(&from_bob), number(&from_alice));
    bob.send("alice@alpha.test", "welcome back");
    assert_eq!(new.recv(), vec!["bob@alpha.test: welcome back"]);
}
