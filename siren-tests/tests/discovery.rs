//! `siren init` finds the account's server through DNS (SRV + the key's TXT record), served by
//! a real dnsmasq on loopback.

use siren_tests::{Dns, Options, Server, binary};

fn siren(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("siren"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn siren_init_finds_the_server_and_its_key_in_dns() {
    let mut s = Server::new(Options::default());
    s.add_user("alice", "pw-a");
    s.start();
    let dns = Dns::start(&Dns::records_for(&s));
    let dns_addr = dns.addr.to_string();
    let profile = tempfile::tempdir().unwrap();
    let out = siren(
        profile.path(),
        &["init", "alice@alpha.test", "--dns", &dns_addr],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("found alpha.test at alpha.test:{}", s.addr.port())),
        "{stdout}"
    );
    assert!(stdout.contains(&s.sek), "the pinned key is shown: {stdout}");
    let login = std::process::Command::new(binary("siren"))
        .arg("--profile")
        .arg(profile.path())
        .args(["login", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(b"pw-a\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );

    // A key given on the command line that DNS does not publish: refused, nothing written.
    let other = tempfile::tempdir().unwrap();
    let impostor = Server::new(Options::default());
    let wrong = impostor.sek.as_str();
    let out = siren(
        other.path(),
        &[
            "init",
            "alice@alpha.test",
            "--dns",
            &dns_addr,
            "--server-key",
            wrong,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!other.path().join("profile.toml").exists());

    // A domain without records: a clear error.
    let none = tempfile::tempdir().unwrap();
    let out = siren(
        none.path(),
        &["init", "bob@nowhere.test", "--dns", &dns_addr],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot find the server of nowhere.test"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
