//! Backup and restore (issue 13), with real `sirend` and `siren` processes: a backup taken while
//! messages stream in, restored into an empty data directory, delivers every message that was
//! acknowledged before the backup began.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use siren_tests::{Options, Server, alice_and_bob};

#[test]
fn a_backup_made_during_a_message_stream_restores_every_acknowledged_message() {
    let (mut s, alice, bob) = alice_and_bob(Options::default());
    let backup = s.dir.path().join("backup");

    // alice sends to bob (offline) one message after another; `siren send` returns once the
    // server acknowledged the message, and only then is it counted.
    let acked = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    let (before, made) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let text = format!("stream {i}");
                alice.send("bob@alpha.test", &text);
                acked.lock().unwrap().push(text);
            }
        });
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "the stream stalled");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(5);
        // Everything acknowledged so far must be in the backup.
        let before = acked.lock().unwrap().clone();
        let made = s.admin(&["backup", "--to", backup.to_str().unwrap()], "");
        let n = acked.lock().unwrap().len();
        wait_for(n + 3); // the stream went on during and after the backup
        stop.store(true, Ordering::Relaxed);
        (before, made)
    });
    assert!(made.ok, "{}", made.stderr);
    assert!(
        made.stdout.starts_with("backed up rocksdb at ")
            && made.stdout.contains("Restore with: sirend restore --from"),
        "{}",
        made.stdout
    );
    let again = s.admin(&["backup", "--to", backup.to_str().unwrap()], "");
    assert!(
        !again.ok && again.stderr.contains("exists and is not empty"),
        "{}",
        again.stderr
    );

    // Restoring needs a stopped server and an empty data directory.
    let restore = |s: &Server| {
        Server::sirend(&[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--config",
            s.config().to_str().unwrap(),
        ])
    };
    let running = restore(&s);
    assert!(
        !running.ok && running.stderr.contains("stop it first"),
        "{}",
        running.stderr
    );
    assert!(s.stop());
    let full = restore(&s);
    assert!(
        !full.ok && full.stderr.contains("is not empty"),
        "{}",
        full.stderr
    );

    // The disk is lost: the data directory goes, the backup comes back.
    std::fs::rename(
        s.dir.path().join("siren-data"),
        s.dir.path().join("siren-data.lost"),
    )
    .unwrap();
    let restored = restore(&s);
    assert!(
        restored.ok && restored.stdout.contains("2 accounts"),
        "{}{}",
        restored.stdout,
        restored.stderr
    );
    s.start();
    let received = bob.recv();
    for text in &before {
        let line = format!("alice@alpha.test: {text}");
        assert!(
            received.contains(&line),
            "{text:?} was acknowledged before the backup began but is not in it: {received:?}"
        );
    }
    // And the restored server goes on serving: sessions resumed, new messages flow.
    alice.send("bob@alpha.test", "after the restore");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: after the restore"]);
}

#[test]
fn a_store_that_is_backed_up_with_its_own_tools_says_so() {
    let s = Server::new(Options {
        storage: "memory",
        ..Options::default()
    });
    let out = s.admin(
        &["backup", "--to", s.dir.path().join("b").to_str().unwrap()],
        "",
    );
    assert!(
        !out.ok && out.stderr.contains("cannot make a backup"),
        "{}",
        out.stderr
    );
}

/// `pg_dump`/`pg_restore` from `PATH` (Debian's wrappers pick the installed version).
fn pg(tool: &str, args: &[&str]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn on_postgresql_a_pg_dump_taken_while_sirend_runs_restores_into_a_new_database() {
    let url = siren_tests::postgres_database();
    let (mut s, alice, bob) = alice_and_bob(Options {
        storage: "postgres",
        extra: format!("\n[storage.options]\nurl = \"{url}\"\npool_size = 4\n"),
        ..Options::default()
    });
    for i in 0..3 {
        alice.send("bob@alpha.test", &format!("before the dump {i}"));
    }
    // sirend points at PostgreSQL's own tools, and they work while it runs.
    let own = s.admin(
        &["backup", "--to", s.dir.path().join("b").to_str().unwrap()],
        "",
    );
    assert!(!own.ok && own.stderr.contains("pg_dump"), "{}", own.stderr);
    let dump = s.dir.path().join("siren.dump");
    pg("pg_dump", &["-Fc", "-f", dump.to_str().unwrap(), &url]);
    assert!(s.stop());

    let restored = siren_tests::postgres_database();
    pg(
        "pg_restore",
        &["--no-owner", "-d", &restored, dump.to_str().unwrap()],
    );
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(s.config(), config.replace(&url, &restored)).unwrap();
    s.start();
    assert_eq!(
        bob.recv(),
        (0..3)
            .map(|i| format!("alice@alpha.test: before the dump {i}"))
            .collect::<Vec<_>>()
    );
}
