//! `plugins/README.md`'s "Write your first Siren plugin (Rust)", run as written: the crate from
//! its `Cargo.toml` and `src/lib.rs` blocks, built with its commands (Debian's wasm toolchain
//! and wasm-tools, which scripts/build-plugins.sh installs), loaded by a real `sirend` with its
//! configuration, and asked a decision through a real client.

use std::path::Path;
use std::process::Command;

use siren_tests::{Cli, Server, binary};

/// The fenced blocks of `section`, with their language.
fn blocks(section: &str) -> Vec<(String, String)> {
    section
        .split("```")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|pair| {
            let block = pair.get(1)?;
            let (lang, body) = block.split_once('\n')?;
            Some((lang.to_owned(), body.to_owned()))
        })
        .collect()
}

fn run(dir: &Path, script: &str, envs: &[(&str, String)]) -> String {
    let out = Command::new("bash")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script}\nfailed:\n{text}");
    text
}

#[test]
fn the_first_plugin_walkthrough_works_as_written() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .canonicalize()
        .unwrap();
    let readme = std::fs::read_to_string(root.join("plugins/README.md")).unwrap();
    let start = readme
        .find("## Write your first Siren plugin (Rust)")
        .expect("the walkthrough");
    let end = readme[start..]
        .find("The other kinds work the same way")
        .map(|i| start + i)
        .expect("the walkthrough's end");
    let blocks = blocks(&readme[start..end]);
    let of = |lang: &str| -> Vec<String> {
        blocks
            .iter()
            .filter(|(l, _)| l == lang)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let (toml, rust, sh) = (of("toml"), of("rust"), of("sh"));
    assert!(
        toml.len() >= 2 && !rust.is_empty() && sh.len() >= 3,
        "{blocks:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let sdk = root.join("plugins");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        toml[0].replace("/path/to/siren/plugins", sdk.to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), &rust[0]).unwrap();

    // Step 3 as written; the guest's target directory outlives the test, so a rerun is quick.
    let target = binary("sirend")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("plugins-readme");
    let tools = std::env::var("SIREN_TOOLS_DIR").unwrap_or_else(|_| "/var/tmp/siren-tools".into());
    let path = format!("{tools}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let built = run(
        dir.path(),
        &sh[1].replace(
            "target/wasm32-unknown-unknown",
            &format!("{}/wasm32-unknown-unknown", target.display()),
        ),
        &[
            ("PATH", path),
            ("CARGO_TARGET_DIR", target.display().to_string()),
        ],
    );
    assert!(
        built.contains("export siren:plugin/federation-policy@0.1.0"),
        "{built}"
    );

    // Step 4: the configuration block, in a server's sirend.toml next to the component.
    let mut s = Server::new(siren_tests::Options::default());
    std::fs::copy(
        dir.path().join("my-policy.wasm"),
        s.dir.path().join("my-policy.wasm"),
    )
    .unwrap();
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(s.config(), format!("{config}\n{}", toml[1])).unwrap();
    let bin = binary("sirend").parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let listed = run(s.dir.path(), &sh[2], &[("PATH", path)]);
    assert!(listed.contains("sirend.toml: ok"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("my-policy") && l.contains("siren:plugin@0.1.0")),
        "{listed}"
    );

    s.add_user("alice", "pw-a");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    for (uid, denied) in [
        ("someone@evil.example", true),
        ("someone@a.evil.example", true),
        ("someone@good.example", false),
    ] {
        let out = alice.run(&["lookup", uid]);
        assert!(!out.ok);
        assert_eq!(
            out.stderr.contains("federation_denied"),
            denied,
            "{uid}: {}",
            out.stderr
        );
    }
    assert!(
        s.wait_for_log("is blocked")
            .contains("evil.example is blocked")
    );
}
