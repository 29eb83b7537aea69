//! Architecture invariants from ARCHITECTURE.md, checked mechanically:
//! `siren-api` has no IO dependencies, and `siren-proto` opens no sockets.

use std::path::Path;
use std::process::Command;

/// Crates that do IO (sockets, storage engines, plugin runtimes, DNS).
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "rocksdb",
    "librocksdb-sys",
    "wasmtime",
    "libloading",
    "hickory-resolver",
    "tokio-postgres",
    "ldap3",
];

fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_no_io(package: &str) {
    let deps = normal_dependencies(package);
    assert!(
        deps.iter().any(|d| d == "serde"),
        "cargo tree output for {package} looks wrong: {deps:?}"
    );
    for bad in IO_CRATES {
        assert!(
            !deps.iter().any(|d| d == bad),
            "{package} must not depend on {bad}: {deps:?}"
        );
    }
}

#[test]
fn siren_api_has_no_io_dependencies() {
    assert_no_io("siren-api");
}

#[test]
fn siren_proto_has_no_io_dependencies() {
    assert_no_io("siren-proto");
}

#[test]
fn siren_proto_source_opens_no_sockets() {
    fn walk(dir: &Path, hits: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, hits);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                for needle in [
                    "std::net",
                    "TcpStream",
                    "UdpSocket",
                    "std::fs",
                    "std::thread",
                ] {
                    if text.contains(needle) {
                        hits.push(format!("{} uses {needle}", path.display()));
                    }
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut hits,
    );
    assert!(hits.is_empty(), "siren-proto must stay sans-IO: {hits:?}");
}
