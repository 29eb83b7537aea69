//! `examples/enterprise-ldap/README.md`, run as written: slapd from the project's script, sirend
//! with `credentials = "ldap"`, two clients, the refusals, and failing closed. Only the ports, the
//! binaries' directory and the working directory are adapted to the test machine.

use std::process::Command;

use siren_tests::{binary, free_port, walkthrough};

#[test]
fn the_enterprise_ldap_example_works_as_written() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let example = format!("{root}/examples/enterprise-ldap");
    let script = walkthrough("examples/enterprise-ldap/README.md");
    let (ldap_port, siren_port) = (free_port().to_string(), free_port().to_string());
    let port = |text: &str| {
        text.replace("3389", &ldap_port)
            .replace("7453", &siren_port)
    };

    // A copy of the repository's pieces the walkthrough uses, with the test's ports.
    let repo = tempfile::tempdir().unwrap();
    let copy = repo.path().join("examples/enterprise-ldap");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["sirend.toml", "seed.ldif"] {
        let text = std::fs::read_to_string(format!("{example}/{file}")).unwrap();
        std::fs::write(copy.join(file), port(&text)).unwrap();
    }
    std::os::unix::fs::symlink(
        std::fs::canonicalize(format!("{root}/scripts")).unwrap(),
        repo.path().join("scripts"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary("sirend").parent().unwrap().to_owned();
    let script = port(&script)
        .replace("/var/tmp/siren-target/debug", bin_dir.to_str().unwrap())
        .replace("/tmp/siren-ldap", work.path().join("run").to_str().unwrap());
    let out = Command::new("bash")
        .args(["-c", &format!("set -m\n{script}\nwait")])
        .current_dir(repo.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Stop slapd whatever happened (the walkthrough stops it in step 5).
    let _ = Command::new(repo.path().join("scripts/services/slapd.sh"))
        .args(["stop"])
        .arg(work.path().join("run/ldap"))
        .output();
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        stdout.contains("dn:uid=alice,ou=people,dc=example,dc=test"),
        "slapd answers:\n{all}"
    );
    assert!(stdout.contains("sirend.toml: ok"), "{all}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "alice@example.test: hello bob, from the directory"),
        "the message arrived:\n{all}"
    );
    // Step 4: two refusals; step 5: one more with the directory down; and the log line.
    let refusals = stderr.matches("siren: ").count();
    assert_eq!(refusals, 3, "three logins refused:\n{all}");
    assert!(
        stdout.contains(&format!("LDAP directory ldap://127.0.0.1:{ldap_port}")),
        "sirend logged the unreachable directory:\n{all}"
    );
}
