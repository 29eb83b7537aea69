//! The sandbox: deadlines, memory limits, traps, and clear errors for files that are not
//! plugins of this interface version. After each failure the host goes on.

mod common;

use std::time::{Duration, Instant};

use siren_api::ServerName;
use siren_api::federation::{Decision, Direction, FederationPolicy};
use siren_api::storage::{Durability, KvEngine, WriteBatch};
use siren_plugins::{PluginError, WasmRuntime};

fn server(name: &str) -> ServerName {
    ServerName::parse(name).unwrap()
}

fn healthy_policy_still_answers(rt: &WasmRuntime) {
    let p = rt
        .federation_policy(
            "allowlist",
            &common::config("federation-allowlist").with("peers", "beta.test"),
        )
        .unwrap();
    assert_eq!(
        p.decide(&server("beta.test"), Direction::Inbound),
        Decision::Allow
    );
}

/// Runs `f` on its own thread and waits at most `limit` for it, so a deadline that is not
/// enforced fails the test instead of hanging it.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        panic!("the call did not return within {limit:?}: deadline not enforced")
    })
}

#[test]
fn an_infinite_loop_fails_at_its_deadline_and_the_host_goes_on() {
    let rt = common::runtime();
    let config = common::config("loop-forever").with_limits(64, 100);
    let p = std::sync::Arc::new(rt.federation_policy("looper", &config).unwrap());
    assert_eq!(
        p.decide(&server("ok.test"), Direction::Inbound),
        Decision::Allow
    );

    let looper = p.clone();
    let (err, took) = within(Duration::from_secs(5), move || {
        let started = Instant::now();
        let err = looper
            .try_decide(&server("loop.test"), Direction::Inbound)
            .unwrap_err();
        (err, started.elapsed())
    });
    assert_eq!(
        err.to_string(),
        "plugin looper: call exceeded its 100 ms deadline"
    );
    assert!(matches!(
        err,
        PluginError::Deadline {
            deadline_ms: 100,
            ..
        }
    ));
    assert!(
        took >= Duration::from_millis(100),
        "interrupted early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "deadline enforced late: {took:?}"
    );

    // The trait method fails closed, with the reason.
    let looper = p.clone();
    let decision = within(Duration::from_secs(5), move || {
        looper.decide(&server("loop.test"), Direction::Outbound)
    });
    assert_eq!(
        decision,
        Decision::Deny("plugin looper: call exceeded its 100 ms deadline".into())
    );
    // The same plugin answers again (a fresh instance), and so does a healthy one.
    assert_eq!(
        p.decide(&server("ok.test"), Direction::Inbound),
        Decision::Allow
    );
    healthy_policy_still_answers(rt);
}

#[test]
fn a_short_deadline_is_honoured() {
    let rt = common::runtime();
    let p = rt
        .federation_policy(
            "looper-fast",
            &common::config("loop-forever").with_limits(64, 20),
        )
        .unwrap();
    let (err, took) = within(Duration::from_secs(5), move || {
        let started = Instant::now();
        let err = p
            .try_decide(&server("loop.test"), Direction::Inbound)
            .unwrap_err();
        (err, started.elapsed())
    });
    assert_eq!(
        err.to_string(),
        "plugin looper-fast: call exceeded its 20 ms deadline"
    );
    assert!(
        took >= Duration::from_millis(20),
        "interrupted early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "deadline enforced late: {took:?}"
    );
}

#[test]
fn a_panic_traps_that_call_only() {
    let rt = common::runtime();
    let p = rt
        .federation_policy("panicker", &common::config("loop-forever"))
        .unwrap();
    let err = p
        .try_decide(&server("panic.test"), Direction::Inbound)
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    let text = err.to_string();
    // The SDK's panic hook reported the message through the host's log before the trap.
    assert!(
        text.starts_with("plugin panicker: trapped: panicked at "),
        "{text}"
    );
    assert!(
        text.ends_with(": asked to panic for panic.test (during decide)"),
        "{text}"
    );
    assert_eq!(
        p.decide(&server("ok.test"), Direction::Inbound),
        Decision::Allow
    );
    healthy_policy_still_answers(rt);
}

#[test]
fn a_memory_hog_fails_at_its_limit() {
    let rt = common::runtime();
    let p = rt
        .federation_policy("hog", &common::config("memory-hog").with_limits(16, 5_000))
        .unwrap();
    let err = p
        .try_decide(&server("hog.test"), Direction::Inbound)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin hog: call exceeded its memory limit of 16 MiB"
    );
    assert_eq!(
        p.decide(&server("ok.test"), Direction::Inbound),
        Decision::Allow
    );

    // Where the limit really is: a guest that handles allocation failure gets at most 16 MiB
    // (less what its stack and data already use), and its call succeeds.
    let Decision::Deny(reason) = p.decide(&server("measure.test"), Direction::Inbound) else {
        panic!("measure.test must be denied with a count");
    };
    let mib: u32 = reason
        .strip_prefix("allocated ")
        .and_then(|r| r.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {reason:?}"));
    assert!(
        (8..16).contains(&mib),
        "allocated {mib} MiB under a 16 MiB limit"
    );
    healthy_policy_still_answers(rt);
}

#[test]
fn a_kv_engine_that_fails_stays_out_of_service() {
    // Its data lived in the failed instance: a fresh, empty one would silently lose it.
    let rt = common::runtime();
    let kv = rt
        .kv_engine(
            "kv-small",
            &common::config("kv-memory").with_limits(4, 1_000),
        )
        .unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"k".to_vec(), b"v".to_vec());
    kv.write(&batch, Durability::Synced).unwrap();
    assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));

    let mut big = WriteBatch::new();
    big.put(b"big".to_vec(), vec![7u8; 8 << 20]);
    let err = kv.write(&big, Durability::Synced).unwrap_err();
    assert_eq!(err.code, siren_api::ErrorCode::Unavailable);
    assert!(
        err.message
            .ends_with("call exceeded its memory limit of 4 MiB"),
        "{}",
        err.message
    );
    let err = kv.get(b"k").unwrap_err();
    assert!(
        err.message
            .contains("out of service since an earlier failure"),
        "{}",
        err.message
    );
    healthy_policy_still_answers(rt);
}

#[test]
fn wrong_interface_version_is_refused_naming_both_versions() {
    let path = common::plugin("wrong-version");
    let err = common::runtime()
        .federation_policy("future", &siren_plugins::WasmPluginConfig::new(&path))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin future ({}) implements siren:plugin@0.2.0; this server speaks 0.1.0",
            path.display()
        )
    );
    let err = common::runtime().inspect("future", &path).unwrap_err();
    assert!(matches!(err, PluginError::Version { .. }), "{err}");
}

#[test]
fn a_plugin_that_imports_wasi_is_refused() {
    let path = common::plugin("wants-wasi");
    let err = common::runtime()
        .federation_policy("coin", &siren_plugins::WasmPluginConfig::new(&path))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin coin ({}): imports wasi:random/random@0.2.0, which this server does not \
             provide: plugins get siren:plugin/host@0.1.0 only (no WASI, filesystem, network \
             or clock)",
            path.display()
        )
    );
}

#[test]
fn corrupt_and_missing_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = common::runtime();
    let load = |path: &std::path::Path| {
        rt.federation_policy("broken", &siren_plugins::WasmPluginConfig::new(path))
            .err()
            .expect("must be refused")
            .to_string()
    };

    let missing = dir.path().join("missing.wasm");
    let err = load(&missing);
    assert!(
        err.starts_with(&format!(
            "plugin broken: cannot read {}: ",
            missing.display()
        )),
        "{err}"
    );

    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "not wasm at all").unwrap();
    assert_eq!(
        load(&text),
        format!(
            "plugin broken: {} is not a valid WebAssembly component: no WebAssembly header \
             (is it a .wasm file?)",
            text.display()
        )
    );

    // A real component cut in half.
    let good = std::fs::read(common::plugin("federation-allowlist")).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let err = load(&truncated);
    assert!(
        err.starts_with(&format!(
            "plugin broken: {} is not a valid WebAssembly component: ",
            truncated.display()
        )),
        "{err}"
    );

    // Flipped bytes in the middle.
    let mut garbled = good.clone();
    let mid = garbled.len() / 2;
    for b in &mut garbled[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let garbled_path = dir.path().join("garbled.wasm");
    std::fs::write(&garbled_path, &garbled).unwrap();
    let err = load(&garbled_path);
    assert!(err.contains(&garbled_path.display().to_string()), "{err}");

    // A core module is not a component.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert_eq!(
        load(&core),
        format!(
            "plugin broken: {} is not a valid WebAssembly component: it is a core WebAssembly \
             module, not a component; wrap it with `wasm-tools component new` \
             (scripts/build-plugins.sh does)",
            core.display()
        )
    );
    healthy_policy_still_answers(rt);
}

#[test]
fn concurrent_calls_from_many_threads() {
    let rt = common::runtime();
    let p = rt
        .federation_policy(
            "allowlist-shared",
            &common::config("federation-allowlist").with("peers", "beta.test"),
        )
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let p = &p;
            s.spawn(move || {
                for i in 0..500 {
                    let peer = if (t + i) % 2 == 0 {
                        "beta.test"
                    } else {
                        "x.test"
                    };
                    let d = p.decide(&server(peer), Direction::Inbound);
                    assert_eq!(d == Decision::Allow, peer == "beta.test");
                }
            });
        }
    });
}
