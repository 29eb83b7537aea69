//! Metrics and health (issue 13), with real `sirend` and `siren` processes: `/metrics` scraped
//! after real traffic and linted by `promtool check metrics` (installed by `scripts/test.sh`),
//! no user names in it; `/healthz`; `/readyz` failing while PostgreSQL is down and recovering
//! when it is back (a private PostgreSQL started and stopped by this test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use siren_tests::{Cli, Options, alice_and_bob, free_port};

use siren_tests::metrics::{get, metrics_on, sample};

#[test]
fn metrics_after_real_traffic_pass_promtool_and_name_nobody() {
    let port = free_port();
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (s, alice, bob) = alice_and_bob(Options {
        extra: metrics_on(port),
        // One user may send at most 4 KiB at once: a larger message is refused by a limit.
        // The server verifies envelope signatures too (timed by a histogram).
        limits_lines: "send_byte_burst = 4096\ncheck_envelope_signatures = true".into(),
        ..Options::default()
    });
    alice.send("bob@alpha.test", "counted, never named");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: counted, never named"]);
    let large = "x".repeat(5000);
    assert!(!alice.run(&["send", "bob@alpha.test", &large]).ok);
    // One message waits in bob's queue when the metrics are scraped.
    alice.send("bob@alpha.test", "waiting");
    let mallory = Cli::init(&s, "mallory@alpha.test");
    assert!(!mallory.try_login("guess").ok);

    assert_eq!(get(at, "/healthz"), Some((200, "ok\n".into())));
    let (status, ready) = get(at, "/readyz").unwrap();
    assert_eq!(status, 200, "{ready}");
    let (status, text) = get(at, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    for (name, at_least) in [
        (
            "siren_logins_total{mechanism=\"PLAIN\",result=\"success\"}",
            2.0,
        ),
        (
            "siren_logins_total{mechanism=\"PLAIN\",result=\"failure\"}",
            1.0,
        ),
        ("siren_errors_total{reason=\"auth_failed\"}", 1.0),
        ("siren_messages_accepted_total", 1.0),
        ("siren_messages_delivered_total", 1.0),
        ("siren_messages_acknowledged_total", 1.0),
        ("siren_connections_total", 4.0),
        ("siren_commit_duration_seconds_count", 1.0),
        ("siren_envelope_verify_duration_seconds_count", 1.0),
        ("siren_limit_refusals_total{limit=\"send_rate\"}", 1.0),
        ("siren_queue_items", 1.0),
    ] {
        let value = sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(value >= at_least, "{name} = {value}\n{text}");
    }
    assert_eq!(sample(&text, "siren_sessions_live"), Some(0.0), "{text}");
    // alice's and bob's sessions ended (each CLI command resumes one), so they are resumable.
    assert!(
        sample(&text, "siren_sessions_resumable").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "siren_limit_refusals_total{limit=\"queue_quota\"}"),
        Some(0.0),
        "every kind of limit is there from the start\n{text}"
    );
    assert!(
        sample(&text, "siren_queue_oldest_age_seconds").is_some(),
        "{text}"
    );
    for who in ["alice", "bob", "mallory", "guess"] {
        assert!(!text.contains(who), "{who} in the metrics:\n{text}");
    }

    // Prometheus' own linter accepts the exposition.
    let file = s.dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (scripts/test.sh installs Debian's prometheus package)");
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

#[test]
fn the_shipped_scrape_config_dashboard_and_alerts_use_metrics_that_exist() {
    let port = free_port();
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_s, _alice, _bob) = alice_and_bob(Options {
        extra: metrics_on(port),
        ..Options::default()
    });
    let (_, text) = get(at, "/metrics").unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/monitoring");
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(examples.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Every siren_* name the dashboard and the alerts query is one the server registers
    // (histograms add _bucket/_count/_sum, counters _total; a family without samples yet, like
    // the outboxes of a server without peers, shows nothing in /metrics).
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../siren-host/src/metrics/mod.rs"),
    )
    .unwrap();
    let registered: Vec<String> = source
        .split("register(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|name| format!("siren_{name}"))
        .collect();
    assert!(registered.len() >= 10, "{registered:?}");
    assert!(text.contains("siren_connections_total"), "{text}");
    for file in ["grafana-dashboard.json", "siren-rules.yml"] {
        let used = std::fs::read_to_string(examples.join(file)).unwrap();
        for name in used
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("siren_"))
        {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                registered.iter().any(|r| r == family),
                "{file} uses {name}, which sirend does not register: {registered:?}"
            );
        }
    }
}

/// A private PostgreSQL cluster (scripts/services/postgres.sh), stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/postgres.sh")
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir_in("/tmp")
            .unwrap();
        let mut pg = Postgres { dir, port: 0 };
        pg.run("start", None);
        let env = std::fs::read_to_string(pg.dir.path().join("postgres.env")).unwrap();
        pg.port = env
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{env}"));
        pg
    }

    fn run(&self, action: &str, port: Option<u16>) {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg(action).arg(self.dir.path());
        if let Some(port) = port {
            cmd.env("POSTGRES_PORT", port.to_string());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "postgres.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Polls `/readyz` until its status is `want`; returns the last body.
fn readyz_becomes(at: SocketAddr, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = get(at, "/readyz");
        if let Some((status, body)) = &got
            && *status == want
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {want}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_fails_while_postgresql_is_down_and_recovers_when_it_is_back() {
    let pg = Postgres::start();
    let port = free_port();
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_s, alice, bob) = alice_and_bob(Options {
        storage: "postgres",
        extra: format!(
            "\n[storage.options]\nurl = \"{}\"\npool_size = 2\n{}",
            pg.url(),
            metrics_on(port)
        ),
        ..Options::default()
    });
    readyz_becomes(at, 200);

    pg.run("stop", None);
    let down = readyz_becomes(at, 503);
    assert!(down.starts_with("not ready: store"), "{down}");
    assert_eq!(
        get(at, "/healthz").map(|r| r.0),
        Some(200),
        "alive all the same"
    );

    pg.run("start", Some(pg.port));
    let up = readyz_becomes(at, 200);
    assert!(up.starts_with("ready"), "{up}");
    // And it serves again.
    alice.send("bob@alpha.test", "after the outage");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: after the outage"]);
}
