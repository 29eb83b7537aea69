//! Per-call cost of wasm plugins against built-in equivalents, in the same run:
//!
//! * a federation decision: the `federation-allowlist` (Rust) and `c-allowlist` (C) guests vs a
//!   `HashSet` lookup implementing `FederationPolicy` (goal: ≤ 5 µs through wasm);
//! * a whole login (begin + one step) through `AuthMechanism`: the `auth-static` guest vs the
//!   same mechanism built in;
//! * `KvEngine` get / write / scan: the `kv-memory` guest vs `siren-storage-memory`'s
//!   `MemoryEngine`.
//!
//! Needs the guests: run `scripts/build-plugins.sh` first (same `CARGO_TARGET_DIR`).
//! `cargo bench -p siren-plugins --bench wasm`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use siren_api::auth::{AuthContext, AuthExchange, AuthMechanism, AuthStep};
use siren_api::federation::{Decision, Direction, FederationPolicy};
use siren_api::storage::{Durability, KeyRange, KvEngine, WriteBatch};
use siren_api::{Error, ServerName, Username};
use siren_storage_memory::MemoryEngine;

/// The built-in allowlist the wasm one is compared with.
struct BuiltinAllowlist(HashSet<String>);

impl FederationPolicy for BuiltinAllowlist {
    fn name(&self) -> &str {
        "builtin-allowlist"
    }

    fn decide(&self, peer: &ServerName, _direction: Direction) -> Decision {
        if self.0.contains(peer.as_str()) {
            Decision::Allow
        } else {
            Decision::Deny(format!("{peer} is not on the allowlist"))
        }
    }
}

/// The built-in equivalent of the `auth-static` guest.
struct BuiltinStatic(HashMap<String, String>);

struct BuiltinAttempt(HashMap<String, String>);

impl AuthMechanism for BuiltinStatic {
    fn name(&self) -> &str {
        "STATIC"
    }

    fn begin(&self, _ctx: AuthContext) -> Box<dyn AuthExchange> {
        Box::new(BuiltinAttempt(self.0.clone()))
    }
}

#[async_trait]
impl AuthExchange for BuiltinAttempt {
    async fn step(&mut self, response: &[u8]) -> Result<AuthStep, Error> {
        let mut parts = response.split(|&b| b == 0);
        let (Some(_), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(AuthStep::Failure { attempted: None });
        };
        let user = std::str::from_utf8(user).unwrap_or("");
        let ok = self.0.get(user).is_some_and(|p| p.as_bytes() == password);
        let username = Username::parse(user).ok();
        Ok(match (ok, username) {
            (true, Some(u)) => AuthStep::Success(u),
            (_, attempted) => AuthStep::Failure { attempted },
        })
    }
}

fn federation(c: &mut Criterion) {
    let peers = "beta.test, gamma.test, delta.test";
    let rt = common::runtime();
    let wasm = rt
        .federation_policy(
            "allowlist",
            &common::config("federation-allowlist").with("peers", peers),
        )
        .unwrap();
    let c_guest = rt
        .federation_policy(
            "c-allowlist",
            &common::config("c-allowlist").with("peers", peers),
        )
        .unwrap();
    let builtin = BuiltinAllowlist(
        ["beta.test", "gamma.test", "delta.test"]
            .map(String::from)
            .into(),
    );
    let allowed = ServerName::parse("gamma.test").unwrap();
    let denied = ServerName::parse("evil.test").unwrap();

    let mut g = c.benchmark_group("federation_decide");
    for (name, policy) in [
        ("builtin", &builtin as &dyn FederationPolicy),
        ("wasm_rust", &wasm),
        ("wasm_c", &c_guest),
    ] {
        g.bench_function(format!("{name}/allow"), |b| {
            b.iter(|| black_box(policy.decide(black_box(&allowed), Direction::Inbound)))
        });
        g.bench_function(format!("{name}/deny"), |b| {
            b.iter(|| black_box(policy.decide(black_box(&denied), Direction::Inbound)))
        });
    }
    // Two threads deciding at once through the one instance (its mutex): time per decision.
    for (name, policy) in [
        ("builtin", &builtin as &dyn FederationPolicy),
        ("wasm_rust", &wasm),
    ] {
        g.bench_function(format!("{name}/allow_2_threads"), |b| {
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..iters.div_ceil(2) {
                                black_box(policy.decide(black_box(&allowed), Direction::Inbound));
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    g.finish();

    // What an instance per call would cost instead: a load from the compiled-component cache
    // (read and hash the file, instantiate, check the version, init).
    let mut g = c.benchmark_group("load");
    let config = common::config("federation-allowlist").with("peers", peers);
    g.bench_function("wasm_rust_cached", |b| {
        b.iter(|| black_box(rt.federation_policy("allowlist", &config).unwrap()))
    });
    g.finish();
}

fn auth(c: &mut Criterion) {
    let rt = common::runtime();
    let wasm = rt
        .auth_mechanism(
            "auth-static",
            &common::config("auth-static").with("users", "alice:pw1,bob:pw2"),
        )
        .unwrap();
    let builtin = BuiltinStatic(
        [("alice", "pw1"), ("bob", "pw2")]
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .into(),
    );
    let ctx = AuthContext {
        server: ServerName::parse("alpha.test").unwrap(),
        peer: None,
        channel_binding: [0; 32],
        device_key: [1; 32],
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();

    let mut g = c.benchmark_group("auth_login");
    for (name, mech) in [("builtin", &builtin as &dyn AuthMechanism), ("wasm", &wasm)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                tokio.block_on(async {
                    let mut ex = mech.begin(ctx.clone());
                    let step = ex.step(b"\0alice\0pw1").await.unwrap();
                    assert!(matches!(step, AuthStep::Success(_)));
                })
            })
        });
    }
    g.finish();

    // The same login outside any tokio runtime: the wasm adapter then calls the plugin on the
    // calling thread instead of tokio's blocking pool, which shows what the pool's thread hop
    // costs above.
    let mut g = c.benchmark_group("auth_login_inline");
    for (name, mech) in [("builtin", &builtin as &dyn AuthMechanism), ("wasm", &wasm)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ex = mech.begin(ctx.clone());
                let step = ready(ex.step(b"\0alice\0pw1")).unwrap();
                assert!(matches!(step, AuthStep::Success(_)));
            })
        });
    }
    g.finish();
}

/// The output of a future that completes on its first poll (no runtime needed).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the step did not complete on its first poll"),
    }
}

fn kv(c: &mut Criterion) {
    let rt = common::runtime();
    let wasm = rt
        .kv_engine("kv-memory", &common::config("kv-memory"))
        .unwrap();
    let memory = MemoryEngine::new();
    for engine in [&wasm as &dyn KvEngine, &memory] {
        let mut batch = WriteBatch::new();
        for i in 0..1000u32 {
            batch.put(format!("k/{i:05}").into_bytes(), vec![7u8; 100]);
        }
        engine.write(&batch, Durability::Synced).unwrap();
    }
    let range = KeyRange::prefix(b"k/005");

    let mut g = c.benchmark_group("kv");
    for (name, engine) in [("memory", &memory as &dyn KvEngine), ("wasm", &wasm)] {
        g.bench_function(format!("{name}/get"), |b| {
            b.iter(|| black_box(engine.get(black_box(b"k/00500")).unwrap()))
        });
        g.bench_function(format!("{name}/write_1x100B"), |b| {
            let mut batch = WriteBatch::new();
            batch.put(b"w/key".to_vec(), vec![1u8; 100]);
            b.iter(|| {
                engine
                    .write(black_box(&batch), Durability::Buffered)
                    .unwrap()
            })
        });
        g.bench_function(format!("{name}/scan_10"), |b| {
            b.iter(|| {
                let got = engine.scan(black_box(&range), 10, false).unwrap();
                assert_eq!(got.len(), 10);
                black_box(got)
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = federation, auth, kv
}
criterion_main!(benches);
