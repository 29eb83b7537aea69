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
    // Every sh block of the walkthrough, in order, as one script.
    let script: String = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|s| s.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        script.contains("devices approve"),
        "the walkthrough covers a second device"
    );
    let bin_dir = binary("sirend").parent().unwrap().to_owned();
    let port = free_port().to_string();
    let script = script
        .replace("/var/tmp/siren-target/debug", bin_dir.to_str().unwrap())
        .replace("7453", &port);
    // `cat presence.out` must show the presence lines; checked below from the file.
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
    assert!(stdout.contains("approved by another device"), "{stdout}");
    assert!(
        stdout.contains("did you approve code"),
        "the new device asks before it keeps the key:\n{stdout}"
    );
    assert!(
        !stdout.contains("can you hear me?"),
        "a blocked message arrived:\n{stdout}"
    );
    assert!(
        stdout.contains("bob@alpha.test: to both of your devices"),
        "{stdout}"
    );
    // Administration while the server runs (issue 13): a user added, alice's two devices.
    assert!(stdout.contains("created carol@alpha.test"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.get(41..).is_some_and(|name| name.starts_with("phone "))),
        "`sirend devices list alice` shows the phone:\n{stdout}"
    );
    assert!(stdout.contains("sessions     "), "{stdout}");
    let presence = std::fs::read_to_string(dir.path().join("presence.out")).unwrap();
    assert_eq!(
        presence.lines().collect::<Vec<_>>(),
        vec![
            "* bob@alpha.test is offline",
            "* bob@alpha.test is away (lunch)",
            "* bob@alpha.test is offline"
        ],
        "{presence}"
    );
    let log = std::fs::read_to_string(dir.path().join("alpha/log")).unwrap();
    assert!(
        log.contains("store flushed"),
        "no graceful shutdown:\n{log}"
    );
}
