//! `examples/federation/README.md`, run as written: three sirend processes, dnsmasq from the
//! project's script, clients that find their servers in DNS, messages across servers, and
//! gamma's allowlist. Only the ports, the binaries' directory and the working directory are
//! adapted to the test machine.

use std::process::Command;
use std::time::Duration;

use siren_tests::{binary, free_port, run_example, walkthrough};

#[test]
fn the_federation_example_works_as_written() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = walkthrough("examples/federation/README.md");
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary("sirend").parent().unwrap().to_owned();
    let mut script = script
        .replace("/var/tmp/siren-target/debug", bin_dir.to_str().unwrap())
        .replace("/tmp/siren-fed", work.path().join("run").to_str().unwrap());
    for port in ["7461", "7462", "7463"] {
        script = script.replace(port, &free_port().to_string());
    }
    let run = run_example(&script, work.path(), Duration::from_secs(300));
    let _ = Command::new(format!("{root}/scripts/services/dnsmasq.sh"))
        .arg("stop")
        .arg(work.path().join("run/dns"))
        .output();
    let (finished, stdout, stderr) = (run.finished, run.stdout, run.stderr);
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        finished,
        "the example did not finish within 5 minutes:\n{all}"
    );
    assert!(stdout.contains("found alpha.test at"), "{all}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "alice@alpha.test: hello from alpha"),
        "bob got alice's message:\n{all}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "alice@alpha.test: hello from alpha too"),
        "carol got alice's message:\n{all}"
    );
    assert!(
        stdout.contains("refused, as configured") && stderr.contains("federation_denied"),
        "gamma refuses beta:\n{all}"
    );
}
