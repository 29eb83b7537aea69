//! The admin channel (issue 13), with real `sirend` and `siren` processes: admin commands while
//! the server runs (RocksDB, which only one process may open, and PostgreSQL), the same output
//! when it does not, live sessions closed at once, and bad input on the socket refused while
//! the server keeps serving. The PostgreSQL test needs the service `scripts/test.sh` starts.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use siren_tests::{Cli, Options, Server, alice_and_bob, binary, postgres_database, run_to_end};

/// How long a closed session's client may take to exit (generous: the machine is shared).
const EXITS_WITHIN: Duration = Duration::from_secs(30);

/// No periodic re-check during a test: whatever ends a live session is the admin command.
fn no_recheck(options: Options) -> Options {
    Options {
        auth_lines: "recheck_interval_secs = 3600".into(),
        ..options
    }
}

/// `listener`'s client must exit (its session closed by the server) having been told `error`.
fn closed_with(listener: &mut siren_tests::Listener, error: &str, otherwise: &str) {
    let ended = listener.exited(EXITS_WITHIN).expect(otherwise);
    assert!(
        ended.stderr.contains(error),
        "the client is told why ({error}): {}",
        ended.stderr
    );
}

fn ok(out: &siren_tests::Output) -> &str {
    assert!(out.ok, "failed: {}{}", out.stdout, out.stderr);
    &out.stdout
}

/// The first fingerprint group of the only device `sirend devices list USER` shows.
fn device_of(s: &Server, user: &str) -> String {
    let list = s.admin(&["devices", "list", user], "");
    let rows: Vec<&str> = ok(&list).lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", list.stdout);
    rows[0]
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn admin_commands_run_inside_the_running_server_and_act_on_live_sessions() {
    let mut s = Server::new(no_recheck(Options::default()));
    s.add_user("alice", "alice-1");
    s.start();

    // The first complaint: adding a user while the server runs (RocksDB) works.
    let added = s.admin(&["user", "add", "bob", "--password-stdin"], "bob-1\n");
    assert_eq!(ok(&added), "created bob@alpha.test\n");
    let again = s.admin(&["user", "add", "bob", "--password-stdin"], "bob-2\n");
    assert!(
        !again.ok && again.stderr.contains("user bob already exists"),
        "{}",
        again.stderr
    );
    assert_eq!(ok(&s.admin(&["user", "list"], "")), "alice\nbob\n");
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("alice-1");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("bob-1");

    // Sessions and devices as the server sees them, live ones marked.
    let mut bob_live = bob.listen();
    let sessions = s.admin(&["sessions", "list"], "");
    let sessions = ok(&sessions);
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with("bob ") && l.ends_with("live")),
        "{sessions}"
    );
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with("alice ") && l.ends_with("resumable")),
        "{sessions}"
    );
    assert!(sessions.contains("2 sessions, 1 live"), "{sessions}");
    let bob_device = device_of(&s, "bob");
    let devices = s.admin(&["devices", "list", "bob"], "");
    assert!(ok(&devices).contains("live"), "{}", devices.stdout);

    // A queued message shows in the queue statistics.
    alice.send("bob@alpha.test", "while bob listens");
    assert_eq!(
        bob_live.next_line(EXITS_WITHIN).as_deref(),
        Some("alice@alpha.test: while bob listens")
    );
    let status = s.admin(&["status"], "");
    let status = ok(&status);
    for needle in [
        "name         alpha.test",
        &format!("listen       {}", s.addr),
        &format!(
            "web          http://{}/ (WebSocket at /ws)",
            s.web.expect("the web listener is on")
        ),
        "sessions     1 live (1 users)",
        "federation   off",
    ] {
        assert!(status.contains(needle), "{needle:?} in\n{status}");
    }

    // `devices revoke` closes the device's live session now, with error 209, and it cannot
    // resume; its password still logs it in again (the signed chain is the user's).
    let revoked = s.admin(&["devices", "revoke", "bob", &bob_device], "");
    assert!(
        ok(&revoked).contains(&format!(
            "ended the sessions of bob@alpha.test's device {bob_device}"
        )) && revoked.stdout.contains("1 live"),
        "{}",
        revoked.stdout
    );
    closed_with(
        &mut bob_live,
        "session_ended, 209",
        "the revoked device's live session was not closed",
    );
    let resume = bob.run(&["recv"]);
    assert!(
        !resume.ok && resume.stderr.contains("no longer knows this session"),
        "{}",
        resume.stderr
    );
    bob.login("bob-1");
    assert!(bob.recv().is_empty());

    // A password changed through the server closes the live sessions at once (the periodic
    // re-check is an hour away here).
    let mut alice_live = alice.listen();
    let changed = s.admin(
        &["user", "passwd", "alice", "--password-stdin"],
        "alice-2\n",
    );
    assert!(
        ok(&changed).contains("must log in again"),
        "{}",
        changed.stdout
    );
    closed_with(
        &mut alice_live,
        "credentials_changed, 208",
        "the live session outlived the password change",
    );
    alice.login("alice-2");

    // Offline items and their age, per device and in total.
    alice.send("bob@alpha.test", "queued for bob");
    let stats = s.admin(&["queue", "stats", "bob"], "");
    assert!(
        ok(&stats).contains("bob@alpha.test: 1 devices, ") && !stats.stdout.contains(" 0 items"),
        "{}",
        stats.stdout
    );
    let totals = s.admin(&["queue", "stats"], "");
    let items: u64 = ok(&totals)
        .split(" hold ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", totals.stdout));
    assert!(items >= 1, "{}", totals.stdout);

    // The same commands on the stopped server's store print the same.
    let same: [&[&str]; 3] = [
        &["user", "list"],
        &["devices", "list", "bob"],
        &["sessions", "list"],
    ];
    let outputs = |s: &Server| -> Vec<String> {
        same.iter()
            .map(|args| ok(&s.admin(args, "")).to_owned())
            .collect()
    };
    let online = outputs(&s);
    assert!(s.stop());
    let offline = outputs(&s);
    assert_eq!(online, offline);
    let status = s.admin(&["status"], "");
    assert!(
        !status.ok && status.stderr.contains("sirend is not running"),
        "{}",
        status.stderr
    );

    // A killed server leaves its socket behind: commands fall back to the store, and the next
    // start replaces the socket.
    s.start();
    s.kill();
    assert!(s.dir.path().join("siren-data/sirend.sock").exists());
    let deleted = s.admin(&["user", "del", "bob"], "");
    assert!(
        ok(&deleted).starts_with("deleted bob@alpha.test: ")
            && deleted.stdout.contains(" queued messages"),
        "{}",
        deleted.stdout
    );
    s.start();
    assert_eq!(ok(&s.admin(&["user", "list"], "")), "alice\n");
}

#[test]
fn on_postgresql_admin_commands_reach_the_running_server() {
    let options = Options {
        storage: "postgres",
        extra: format!(
            "\n[storage.options]\nurl = \"{}\"\npool_size = 4\n",
            postgres_database()
        ),
        ..no_recheck(Options::default())
    };
    let mut s = Server::new(options);
    s.add_user("alice", "alice-1");
    s.start();
    let added = s.admin(&["user", "add", "carol", "--password-stdin"], "carol-1\n");
    assert_eq!(ok(&added), "created carol@alpha.test\n");
    let carol = Cli::init(&s, "carol@alpha.test");
    carol.login("carol-1");
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("alice-1");
    alice.send("carol@alpha.test", "hello carol");
    assert_eq!(carol.recv(), vec!["alice@alpha.test: hello carol"]);

    let mut carol_live = carol.listen();
    let deleted = s.admin(&["user", "del", "carol"], "");
    assert!(
        ok(&deleted).starts_with("deleted carol@alpha.test: 1 devices"),
        "{}",
        deleted.stdout
    );
    closed_with(
        &mut carol_live,
        "credentials_changed, 208",
        "the deleted user's live session was not closed at once",
    );
    // The running server forgot carol's chain at once (no stale cache).
    let lookup = alice.run(&["lookup", "carol@alpha.test"]);
    assert!(
        !lookup.ok && lookup.stderr.contains("not_found"),
        "{}",
        lookup.stderr
    );
    let status = s.admin(&["status"], "");
    assert!(
        ok(&status).contains("store        postgres"),
        "{}",
        status.stdout
    );
}

/// Sends raw bytes to the admin socket and reads the answer.
fn raw(socket: &PathBuf, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer (and close) before it read everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn the_admin_socket_refuses_bad_input_and_other_users_and_the_server_keeps_serving() {
    let (mut s, alice, bob) = alice_and_bob(Options::default());
    let bob_live = bob.listen();

    let socket = s.dir.path().join("siren-data/sirend.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is private: {mode:o}");

    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "garbage",
            b"\x00\xffnot json at all\n".to_vec(),
            "bad request",
        ),
        (
            "an unknown command",
            b"{\"cmd\":\"format-disk\"}\n".to_vec(),
            "unknown variant `format-disk`",
        ),
        (
            "a field too many",
            b"{\"cmd\":\"user-list\",\"as\":\"root\"}\n".to_vec(),
            "unknown field `as`",
        ),
        (
            "a bad username",
            b"{\"cmd\":\"user-del\",\"user\":\"../../etc\"}\n".to_vec(),
            "username",
        ),
        (
            "oversized",
            vec![b'{'; 200 * 1024],
            "longer than 65536 bytes",
        ),
        ("cut off", b"{\"cmd\":\"status\"".to_vec(), "incomplete"),
    ];
    for (what, bytes, reason) in cases {
        let answer = raw(&socket, &bytes);
        assert!(
            answer.starts_with("{\"ok\":false,") && answer.contains(reason),
            "{what}: {answer}"
        );
    }

    // Another user cannot use the socket even where the file modes would let them: the
    // server checks who connects. (Needs root, to run a client as `nobody`; CI runs as root.)
    if is_root() {
        let open = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = open.path().join("sirend.toml");
        let text = std::fs::read_to_string(s.config()).unwrap();
        std::fs::write(
            &config,
            text.replacen(
                "[server]\n",
                &format!(
                    "[server]\ndata_dir = \"{}\"\n",
                    s.dir.path().join("siren-data").display()
                ),
                1,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        for dir in [s.dir.path().to_owned(), s.dir.path().join("siren-data")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(binary("sirend"))
        .args(["user", "list", "--config"])
        .arg(&config);
        let out = run_to_end(cmd, "");
        assert!(
            !out.ok
                && out
                    .stderr
                    .contains("admin socket answers only its own user (uid 0), not uid 65534"),
            "{}{}",
            out.stdout,
            out.stderr
        );
        for dir in [s.dir.path().to_owned(), s.dir.path().join("siren-data")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    } else {
        eprintln!("not root: the other-user case is left to the unit test of `allowed`");
    }

    // Nothing of that disturbed the server: the live session still gets messages, and the
    // socket still answers its own user.
    alice.send("bob@alpha.test", "still serving");
    assert_eq!(
        bob_live.next_line(EXITS_WITHIN).as_deref(),
        Some("alice@alpha.test: still serving")
    );
    assert!(ok(&s.admin(&["status"], "")).contains("sessions     1 live"));
    drop(bob_live);
    assert!(s.stop(), "the server stopped cleanly");
    assert!(!socket.exists(), "a clean stop removes the socket");
}

fn is_root() -> bool {
    // SAFETY-free check through /proc: the effective uid of this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn reload_refuses_a_bad_file_applies_limits_roster_policy_and_log_level_and_keeps_sessions() {
    let (s, alice, bob) = alice_and_bob(Options::default());
    let bob_live = bob.listen();
    let config = std::fs::read_to_string(s.config()).unwrap();
    let reload = |text: &str| {
        std::fs::write(s.config(), text).unwrap();
        s.admin(&["reload"], "")
    };

    let same = s.admin(&["reload"], "");
    assert!(
        ok(&same).contains("nothing changed that applies live"),
        "{}",
        same.stdout
    );

    // A file that fails its checks is refused; the running configuration stays.
    let bad = reload(&config.replace("[limits]\n", "[limits]\nqueue_ttl_second = 5\n"));
    assert!(
        !bad.ok
            && bad
                .stderr
                .contains("reload refused, the running configuration stays"),
        "{}",
        bad.stderr
    );
    // The same through SIGHUP, in the log.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let log = s.wait_for_log("SIGHUP: reload refused");
    assert!(log.contains("queue_ttl_second"), "{log}");
    alice.send("bob@alpha.test", "after a refused reload");
    assert_eq!(
        bob_live.next_line(EXITS_WITHIN).as_deref(),
        Some("alice@alpha.test: after a refused reload")
    );

    // A limit applies live: alice may send at most 10 bytes at once, so every message is now
    // larger than she may send. The log level applies; the connection cap waits for the
    // restart, and the answer says so.
    let tight = reload(
        &config
            .replace("level = \"info\"", "level = \"debug\"")
            .replace(
                "[limits]\n",
                "[limits]\nsend_byte_burst = 10\nmax_connections = 999\n",
            ),
    );
    assert!(
        ok(&tight).contains("applied limits.send_byte_burst, log.level;")
            && tight
                .stdout
                .ends_with("next restart: limits.max_connections\n"),
        "{}",
        tight.stdout
    );
    let refused = alice.run(&["send", "bob@alpha.test", "too much now"]);
    assert!(
        !refused.ok && refused.stderr.contains("limit_exceeded"),
        "{}",
        refused.stderr
    );

    // The roster policy applies live: messages from non-contacts are now refused.
    let strict = reload(&format!("{config}\n[roster]\nnon_contacts = \"refuse\"\n"));
    assert!(
        ok(&strict).contains("applied limits.send_byte_burst, log.level, roster.non_contacts\n"),
        "{}",
        strict.stdout
    );
    let refused = alice.run(&["send", "bob@alpha.test", "a stranger writes"]);
    assert!(
        !refused.ok && refused.stderr.contains("refused"),
        "{}",
        refused.stderr
    );

    // Back to the original file: messages flow again, to the session that lived through it all.
    let back = reload(&config);
    assert!(ok(&back).contains("roster.non_contacts"), "{}", back.stdout);
    alice.send("bob@alpha.test", "after the reloads");
    assert_eq!(
        bob_live.next_line(EXITS_WITHIN).as_deref(),
        Some("alice@alpha.test: after the reloads")
    );
    let sessions = ok(&s.admin(&["sessions", "list"], "")).to_owned();
    assert!(sessions.contains("1 live"), "{sessions}");
}

#[test]
fn json_logs_are_one_object_per_line_with_the_same_fields() {
    let mut s = Server::new(Options::default());
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        config.replace(
            "level = \"info\"\n",
            "level = \"info\"\nformat = \"json\"\n",
        ),
    )
    .unwrap();
    s.start();
    s.add_user("alice", "pw-1");
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-1");
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|l: &String| l.contains("logged in"))
        && std::time::Instant::now() < deadline
    {
        lines.extend(s.log_lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for event in &events {
        assert!(
            event["timestamp"].is_string()
                && event["level"].is_string()
                && event["target"].is_string()
                && event["fields"]["message"].is_string(),
            "{event}"
        );
    }
    // What the text format prints as `logged in peer=… user=alice` carries the same fields.
    let login = events
        .iter()
        .find(|e| e["fields"]["message"] == "logged in")
        .unwrap_or_else(|| panic!("no login event in {lines:?}"));
    assert_eq!(login["fields"]["user"], "alice", "{login}");
    assert_eq!(login["level"], "INFO", "{login}");
    assert!(
        events.iter().any(
            |e| e["fields"]["message"] == "sirend ready" && e["fields"]["name"] == "alpha.test"
        ),
        "{lines:?}"
    );
}
