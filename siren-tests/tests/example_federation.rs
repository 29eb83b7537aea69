//! `examples/federation/README.md`, run as written: three sirend processes, dnsmasq from the
//! project's script, clients that find their servers in DNS, messages across servers, and
//! gamma's allowlist. Only the ports, the binaries' directory and the working directory are
//! adapted to the test machine.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use siren_tests::{binary, free_port, walkthrough};

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
    let mut child = Command::new("bash")
        .args(["-c", &format!("set -m\n{script}\nwait")])
        .current_dir(std::fs::canonicalize(root).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    // A server that fails to start must fail the test, not hang it: past the deadline the
    // script and every process it started (all run in the work directory) are killed.
    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !finished {
        kill_everything_under(work.path());
    }
    let _ = Command::new(format!("{root}/scripts/services/dnsmasq.sh"))
        .arg("stop")
        .arg(work.path().join("run/dns"))
        .output();
    let _ = child.wait();
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
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

/// Kills every process whose working directory is under `dir` (the example's servers run in
/// their own process groups, with relative paths, so neither a group nor a name finds them).
fn kill_everything_under(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}
