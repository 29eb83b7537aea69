//! Accounts and data at rest (issue 11: F3, F19), with real `sirend` and `siren` processes:
//! deleted accounts and changed passwords end their devices' sessions (RocksDB with the server
//! stopped, PostgreSQL while it runs, an LDAP entry deleted from the directory), and the server
//! keeps its files private. The PostgreSQL and LDAP tests need the services `scripts/test.sh`
//! starts (`SIREN_TEST_POSTGRES_URL`, `SIREN_TEST_LDAP_URL`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use siren_tests::{
    Cli, Options, Server, alice_and_bob, postgres_database, run_to_end, service_env,
};

/// How long a live session may take to notice its account changed, with
/// `recheck_interval_secs = 1`: generous, since the machine is shared (not a timing assertion:
/// the session must end at all, which it never did before).
const ENDS_WITHIN: Duration = Duration::from_secs(60);

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

const NO_SESSION: &str = "no longer knows this session";

/// `siren ARGS…` on `cli`, which must fail because the session is not resumable.
fn cannot_resume(cli: &Cli, args: &[&str]) {
    let out = cli.run(args);
    assert!(!out.ok, "{args:?} worked on the old session");
    assert!(out.stderr.contains(NO_SESSION), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// F3 with RocksDB: the server is stopped while `sirend user` runs, and the resume check does
// the work after the restart.

#[test]
fn a_deleted_user_cannot_resume_send_or_be_found() {
    let (mut s, alice, bob) = alice_and_bob(Options::default());
    alice.send("bob@alpha.test", "before");
    bob.send("alice@alpha.test", "waiting for alice");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: before"]);
    assert!(s.stop());

    let out = s.user_command(&["del", "alice"], "");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("deleted alice@alpha.test: 1 devices"),
        "{}",
        out.stdout
    );
    s.start();

    // alice's device: no resumption (so no send, no receive), no new login.
    cannot_resume(&alice, &["send", "bob@alpha.test", "after"]);
    cannot_resume(&alice, &["recv"]);
    assert!(!alice.try_login("alice-1").ok);
    // For everyone else alice is gone: lookups answer 300, nothing can be sent to her.
    let lookup = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(!lookup.ok);
    assert!(lookup.stderr.contains("not_found"), "{}", lookup.stderr);
    let to_alice = bob.run(&["send", "alice@alpha.test", "hello?"]);
    assert!(!to_alice.ok, "{}", to_alice.stdout);
    // bob is untouched.
    assert!(bob.recv().is_empty());
    // Deleting again: there is no such user.
    assert!(s.stop());
    let again = s.user_command(&["del", "alice"], "");
    assert!(
        !again.ok && again.stderr.contains("no user alice"),
        "{}",
        again.stderr
    );
}

#[test]
fn after_a_password_reset_old_devices_must_log_in_with_the_new_password() {
    let (mut s, alice, bob) = alice_and_bob(Options::default());
    assert!(s.stop());
    let out = s.user_command(&["passwd", "alice", "--password-stdin"], "alice-2\n");
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("must log in again"), "{}", out.stdout);
    s.start();

    cannot_resume(&alice, &["send", "bob@alpha.test", "with the old session"]);
    assert!(!alice.try_login("alice-1").ok, "the old password");
    alice.login("alice-2");
    alice.send("bob@alpha.test", "with the new password");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: with the new password"]);
    // bob's sessions were not touched.
    bob.send("alice@alpha.test", "hi");
    assert_eq!(alice.recv(), vec!["bob@alpha.test: hi"]);
}

// ---------------------------------------------------------------------------------------------
// F3 with PostgreSQL: `sirend user` runs while the server does, on another machine sharing the
// store (it cannot reach the server's admin socket, so the periodic re-check and the resume
// check must do the work; through the socket the live sessions close at once, `admin.rs`).

fn on_postgres(recheck_secs: u64) -> Options {
    Options {
        storage: "postgres",
        auth_lines: format!("recheck_interval_secs = {recheck_secs}"),
        extra: format!(
            "\n[storage.options]\nurl = \"{}\"\npool_size = 4\n",
            postgres_database()
        ),
        ..Options::default()
    }
}

#[test]
fn on_postgresql_user_del_closes_the_live_session_with_error_208() {
    let (s, alice, bob) = alice_and_bob(on_postgres(1));
    let mut listener = alice.listen();
    let out = s.user_command_elsewhere(&["del", "alice"], "");
    assert!(out.ok, "{}", out.stderr);

    let ended = listener
        .exited(ENDS_WITHIN)
        .expect("the live session of the deleted account was not closed");
    assert!(!ended.ok);
    assert!(
        ended.stderr.contains("credentials_changed, 208"),
        "the client is told why, not a network error: {}",
        ended.stderr
    );
    cannot_resume(&alice, &["send", "bob@alpha.test", "still here?"]);
    // The running server no longer answers for alice's old chain.
    let lookup = bob.run(&["lookup", "alice@alpha.test"]);
    assert!(
        !lookup.ok && lookup.stderr.contains("not_found"),
        "{}",
        lookup.stderr
    );
}

#[test]
fn on_postgresql_a_session_saved_after_a_password_change_does_not_resume() {
    // No periodic re-check here (an hour): only the resume check stands between the old
    // password's session and the server.
    let (s, alice, bob) = alice_and_bob(on_postgres(3600));
    let listener = alice.listen();
    let out = s.user_command_elsewhere(&["passwd", "alice", "--password-stdin"], "alice-2\n");
    assert!(out.ok, "{}", out.stderr);
    // The live session outlived the change; when it closes, the server stores it again (with
    // the stamp of the old password).
    drop(listener);
    let log = s.wait_for_log("connection closed");
    assert!(log.contains("connection closed"), "{log}");

    cannot_resume(
        &alice,
        &["send", "bob@alpha.test", "with the old password's session"],
    );
    alice.login("alice-2");
    alice.send("bob@alpha.test", "logged in again");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: logged in again"]);
}

// ---------------------------------------------------------------------------------------------
// F3 with LDAP: the directory owns the users; deleting an entry there ends resumption.

fn ldap(tool: &str, ldif: &str) {
    let mut cmd = Command::new(tool);
    cmd.args([
        "-x",
        "-H",
        &service_env("SIREN_TEST_LDAP_URL"),
        "-D",
        "cn=admin,dc=example,dc=test",
        "-w",
        "admin-password",
    ]);
    let out = run_to_end(cmd, ldif);
    assert!(
        out.ok,
        "{tool} (ldap-utils, installed by scripts/services/slapd.sh): {}",
        out.stderr
    );
}

#[test]
fn a_user_deleted_from_the_directory_cannot_resume() {
    // A user of this test's own, so the shared directory's seed users stay as they are.
    let name = format!("acct{}", unique() % 1_000_000_000);
    let dn = format!("uid={name},ou=people,dc=example,dc=test");
    ldap(
        "ldapadd",
        &format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: Test\nuserPassword: {name}-password\n"
        ),
    );
    let mut s = Server::new(Options {
        name: "example.test".into(),
        auth_lines: "credentials = \"ldap\"".into(),
        extra: format!(
            r#"
[auth.options.ldap]
url = "{}"
search_base = "ou=people,dc=example,dc=test"
search_filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
service_dn = "cn=siren,ou=services,dc=example,dc=test"
service_password = "siren-service-password"
timeout_secs = 5
"#,
            service_env("SIREN_TEST_LDAP_URL")
        ),
        ..Options::default()
    });
    s.start();
    let user = Cli::init(&s, &format!("{name}@example.test"));
    user.login(&format!("{name}-password"));
    assert!(user.recv().is_empty(), "resumes while the entry exists");

    ldap("ldapdelete", &format!("{dn}\n"));
    cannot_resume(&user, &["recv"]);
    let log = s.wait_for_log("resumption refused");
    assert!(log.contains("the account no longer exists"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// F19: files at rest.

/// Every file and directory under `dir` (itself included) with its mode.
fn modes_under(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        out.push((d.display().to_string(), mode));
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                out.push((p.display().to_string(), mode));
            }
        }
    }
    out
}

#[test]
fn a_fresh_server_leaves_no_file_other_users_can_read() {
    let (mut s, alice, _bob) = alice_and_bob(Options::default());
    alice.send("bob@alpha.test", "stored on disk");
    assert!(s.stop());
    let data = s.dir.path().join("siren-data");
    let modes = modes_under(&data);
    assert!(
        modes.len() > 5,
        "the store is under the data directory: {modes:?}"
    );
    let shared: Vec<_> = modes.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(shared.is_empty(), "readable by others: {shared:?}");
    for file in ["sirend.toml", "sek.key"] {
        let mode = std::fs::metadata(s.dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} has mode {:o}", mode & 0o777);
    }
}

/// `sirend run` that must refuse to start: its stderr. Fails (rather than waits) if it runs.
fn refused_start(server: &Server) -> String {
    let mut child = Command::new(siren_tests::binary("sirend"))
        .args(["run", "--config"])
        .arg(server.config())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sirend started on a data directory or store that others can read");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_data_directory_or_store_others_can_read_stops_the_server() {
    let s = Server::new(Options::default());
    s.add_user("alice", "pw");
    let data = s.dir.path().join("siren-data");
    let store = data.join("store");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = refused_start(&s);
    assert!(
        err.contains(&format!("chmod 700 {}", data.display())),
        "{err}"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o750)).unwrap();
    let err = refused_start(&s);
    assert!(
        err.contains("store directory") && err.contains(&format!("chmod 700 {}", store.display())),
        "{err}"
    );
}
