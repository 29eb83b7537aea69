//! README.md's walkthrough, run exactly as written (only the port and the binaries' directory are
//! adapted to the test machine).

use std::process::Command;

use siren_tests::{binary, free_port};

#[test]
fn readme_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let section = &readme[start..end];
    let script = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a sh block");
    let bin_dir = binary("sirend").parent().unwrap().to_owned();
    let port = free_port().to_string();
    let script = script
        .replace("/var/tmp/siren-target/debug", bin_dir.to_str().unwrap())
        .replace("7453", &port);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-e", "-c", &format!("set -m\n{script}\nwait")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l == "alice@alpha.test: hello bob"),
        "bob did not receive the message:\n{stdout}"
    );
    assert!(stdout.contains("alice@alpha.test: signing key"), "{stdout}");
    let log = std::fs::read_to_string(dir.path().join("alpha/log")).unwrap();
    assert!(
        log.contains("store flushed"),
        "no graceful shutdown:\n{log}"
    );
}
