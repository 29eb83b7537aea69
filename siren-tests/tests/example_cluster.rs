//! `examples/cluster/README.md`, run as written: PostgreSQL and nats-server started as the
//! example says, three sirend nodes of one domain, DNS listing every node, alice and bob
//! chatting across nodes, bob's node killed with `kill -9` and bob going on with another. Only
//! the ports, the binaries' directory and the working directory are adapted to the test
//! machine.

use std::process::Command;
use std::time::Duration;

use siren_tests::{binary, free_port, run_example, walkthrough};

#[test]
fn the_cluster_example_works_as_written() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = walkthrough("examples/cluster/README.md");
    let work = tempfile::tempdir().unwrap();
    // PostgreSQL runs as its own user, which must reach the example's directory.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run_dir = work.path().join("run");
    let bin_dir = binary("sirend").parent().unwrap().to_owned();
    let mut script = script
        .replace("/var/tmp/siren-target/debug", bin_dir.to_str().unwrap())
        .replace("/tmp/siren-cluster", run_dir.to_str().unwrap());
    for port in ["7471", "7472", "7473", "7490"] {
        script = script.replace(port, &free_port().to_string());
    }
    let run = run_example(&script, work.path(), Duration::from_secs(300));
    for (service, dir) in [("dnsmasq", "dns"), ("postgres", "pg")] {
        let _ = Command::new(format!("{root}/scripts/services/{service}.sh"))
            .arg("stop")
            .arg(run_dir.join(dir))
            .output();
    }
    let all = format!("--- stdout\n{}\n--- stderr\n{}", run.stdout, run.stderr);
    assert!(
        run.finished,
        "the example did not finish within 5 minutes:\n{all}"
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    // Three SRV records, one key.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("_siren._tcp.alpha.test. 3600 IN SRV "))
            .count(),
        3,
        "{all}"
    );
    assert!(
        lines.iter().any(|l| l.contains("node node2 (NATS nats://")),
        "sirend status names the node:\n{all}"
    );
    assert!(
        run.stdout.contains("found alpha.test at node")
            && run.stdout.contains("other nodes, tried in turn"),
        "{all}"
    );
    assert!(
        lines.contains(&"alice@alpha.test: hello across the cluster"),
        "bob got alice's message:\n{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("killed node")),
        "bob's node was killed:\n{all}"
    );
    assert!(
        lines.contains(&"alice@alpha.test: sent after bob's node died"),
        "bob got the message sent after his node died:\n{all}"
    );
}
