//! Discovery against a real DNS server: each test starts its own dnsmasq on loopback through
//! `scripts/services/dnsmasq.sh` (which installs dnsmasq with apt-get when it is missing) and
//! points the resolver at it.

use std::net::{SocketAddr, TcpListener as StdListener, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use rand_core::SeedableRng as _;
use siren_api::ServerName;
use siren_net::discovery::{
    self, DEFAULT_PORT, DiscoveryError, KeyTxtError, Resolver, ResolverConfig, Target,
};
use siren_proto::keys::SekPublic;
use tokio::net::TcpListener;

const KEY_A: &str = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";
const KEY_B: &str = "AAAAkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";
const KEY_C: &str = "BBBBkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";

fn sek(b64: &str) -> SekPublic {
    SekPublic::from_base64(b64).unwrap()
}

fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/dnsmasq.sh")
}

/// Starts are serialised: the first may install dnsmasq with apt-get, which takes a lock.
static START: Mutex<()> = Mutex::new(());

/// A dnsmasq of this test's own, stopped (by its PID, through the script) on drop.
struct Dns {
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Dns {
    fn start(records: &str) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("records.conf"), records).unwrap();
        let _guard = START.lock().unwrap_or_else(|e| e.into_inner());
        run_script("start", &dir);
        let env = std::fs::read_to_string(dir.path().join("dnsmasq.env")).unwrap();
        let addr = env
            .trim()
            .strip_prefix("export SIREN_TEST_DNS=")
            .unwrap_or_else(|| panic!("unexpected dnsmasq.env: {env:?}"))
            .parse()
            .unwrap();
        Dns { dir, addr }
    }

    /// Replaces every record (the script restarts dnsmasq on the same port).
    fn rewrite(&self, records: &str) {
        std::fs::write(self.dir.path().join("records.conf"), records).unwrap();
        run_script("reload", &self.dir);
    }

    fn resolver(&self) -> Resolver {
        Resolver::new(&ResolverConfig {
            nameservers: vec![self.addr],
            timeout_secs: 2,
        })
        .unwrap()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn run_script(action: &str, dir: &tempfile::TempDir) {
    let out = Command::new("bash")
        .arg(script())
        .arg(action)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    assert!(
        out.status.success(),
        "`scripts/services/dnsmasq.sh {action}` failed, so these tests cannot run: they need \
         dnsmasq and dig (the script installs them with `apt-get install dnsmasq dnsutils` when \
         run as root).\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

fn key_record(domain: &str, text: &str) -> String {
    format!("txt-record=_siren-key.{domain},\"{text}\"\n")
}

/// A port on loopback with nothing listening (bound once by us, then released).
fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn target(host: &str, port: u16) -> Target {
    Target {
        host: host.into(),
        port,
    }
}

#[tokio::test]
async fn srv_priorities_are_honoured_and_a_dead_target_falls_back_to_the_next() {
    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_port = live.local_addr().unwrap().port();
    let dead_port = closed_port();
    let dns = Dns::start(&format!(
        // dnsmasq answers in the reverse order of its configuration: the live target comes
        // first on the wire, so only the priority puts the dead one first.
        "srv-host=_siren._tcp.alpha.test,dead.alpha.test,{dead_port},10,0\n\
         srv-host=_siren._tcp.alpha.test,live.alpha.test,{live_port},20,0\n\
         host-record=dead.alpha.test,127.0.0.1\n\
         host-record=live.alpha.test,127.0.0.1\n{}",
        key_record("alpha.test", &format!("v=siren1; k={KEY_A}")),
    ));
    let resolver = dns.resolver();

    let found = discovery::discover(&resolver, &name("alpha.test"))
        .await
        .unwrap();
    assert!(found.via_srv);
    assert_eq!(
        found.targets,
        [
            target("dead.alpha.test", dead_port),
            target("live.alpha.test", live_port)
        ]
    );
    assert_eq!(found.keys, [sek(KEY_A)]);
    assert!(found.publishes(&sek(KEY_A)));
    assert!(!found.publishes(&sek(KEY_B)));

    let accept = tokio::spawn(async move { live.accept().await.map(|(_, peer)| peer) });
    let reached = discovery::connect_any(&resolver, &found.targets, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reached.target, target("live.alpha.test", live_port));
    assert_eq!(reached.addr, SocketAddr::from(([127, 0, 0, 1], live_port)));
    let peer = accept.await.unwrap().unwrap();
    assert_eq!(peer, reached.stream.local_addr().unwrap());

    // With every target dead, the error lists each attempt.
    let all_dead = [
        target("dead.alpha.test", dead_port),
        target("missing.alpha.test", dead_port),
    ];
    match discovery::connect_any(&resolver, &all_dead, Duration::from_secs(2)).await {
        Err(DiscoveryError::Unreachable { failures }) => {
            assert_eq!(failures.len(), 2, "{failures:?}");
            assert!(
                failures[0].target.contains("dead.alpha.test"),
                "{failures:?}"
            );
            assert!(
                failures[1].target.contains("missing.alpha.test"),
                "{failures:?}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn weights_order_targets_of_the_same_priority() {
    let dns = Dns::start(&format!(
        "srv-host=_siren._tcp.alpha.test,first.alpha.test,7000,5,0\n\
         srv-host=_siren._tcp.alpha.test,heavy.alpha.test,7001,10,90\n\
         srv-host=_siren._tcp.alpha.test,light.alpha.test,7002,10,10\n{}",
        key_record("alpha.test", &format!("v=siren1; k={KEY_A}")),
    ));
    let resolver = dns.resolver();
    let mut rng = ChaCha20Rng::seed_from_u64(2782);
    let trials = 300;
    let mut heavy_second = 0;
    for _ in 0..trials {
        let found = discovery::discover_with_rng(&resolver, &name("alpha.test"), &mut rng)
            .await
            .unwrap();
        let hosts: Vec<&str> = found.targets.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts[0], "first.alpha.test");
        assert_eq!(hosts.len(), 3);
        if hosts[1] == "heavy.alpha.test" {
            heavy_second += 1;
        }
    }
    // P(heavy before light) = 90/100 (plus 1/101 of rounding in RFC 2782's inclusive draw).
    let share = f64::from(heavy_second) / f64::from(trials);
    assert!((0.83..0.96).contains(&share), "heavy first {share}");
}

#[tokio::test]
async fn key_records_are_read_and_follow_a_rewrite() {
    let dns = Dns::start(&key_record("alpha.test", &format!("v=siren1; k={KEY_A}")));
    let resolver = dns.resolver();
    let alpha = name("alpha.test");
    assert_eq!(
        discovery::lookup_keys(&resolver, &alpha).await.unwrap(),
        [sek(KEY_A)]
    );

    // The operator replaces the key: the same resolver sees the new record (TTL 0).
    dns.rewrite(&key_record("alpha.test", &format!("v=siren1; k={KEY_B}")));
    assert_eq!(
        discovery::lookup_keys(&resolver, &alpha).await.unwrap(),
        [sek(KEY_B)]
    );

    // A rotation: two records, two keys; a record of another version beside them is skipped.
    dns.rewrite(&format!(
        "{}{}{}",
        key_record("alpha.test", &format!("v=siren1; k={KEY_A}")),
        key_record("alpha.test", &format!("v=siren1; note=new; k={KEY_B}")),
        key_record("alpha.test", &format!("v=siren2; k={KEY_C}")),
    ));
    let mut keys = discovery::lookup_keys(&resolver, &alpha).await.unwrap();
    keys.sort_by_key(|k| *k.as_bytes());
    let mut want = vec![sek(KEY_A), sek(KEY_B)];
    want.sort_by_key(|k| *k.as_bytes());
    assert_eq!(keys, want);
}

#[tokio::test]
async fn bad_missing_and_conflicting_key_records_are_refused() {
    let dns = Dns::start(&format!(
        "{}{}{}{}{}{}{}",
        key_record("short.test", "v=siren1; k=AAAA"),
        key_record("twice.test", &format!("v=siren1; k={KEY_A}; k={KEY_B}")),
        key_record("three.test", &format!("v=siren1; k={KEY_A}")),
        key_record("three.test", &format!("v=siren1; k={KEY_B}")),
        key_record("three.test", &format!("v=siren1; k={KEY_C}")),
        key_record("future.test", &format!("v=siren2; k={KEY_A}")),
        // the name exists (it has a record of another type) but holds no TXT
        "host-record=_siren-key.nokey.test,127.0.0.1\n",
    ));
    let resolver = dns.resolver();
    let keys = |d: &'static str| {
        let resolver = resolver.clone();
        async move { discovery::lookup_keys(&resolver, &name(d)).await }
    };

    match keys("short.test").await {
        Err(DiscoveryError::BadKeyRecord {
            source: KeyTxtError::BadKey(_),
            text,
            ..
        }) => assert_eq!(text, "v=siren1; k=AAAA"),
        other => panic!("short key: {other:?}"),
    }
    assert!(matches!(
        keys("twice.test").await,
        Err(DiscoveryError::BadKeyRecord {
            source: KeyTxtError::DuplicateKey,
            ..
        })
    ));
    assert!(matches!(
        keys("three.test").await,
        Err(DiscoveryError::TooManyKeys { count: 3, .. })
    ));
    assert!(matches!(
        keys("future.test").await,
        Err(DiscoveryError::NoKeyRecord {
            nxdomain: false,
            ..
        })
    ));
    assert!(matches!(
        keys("nokey.test").await,
        Err(DiscoveryError::NoKeyRecord {
            nxdomain: false,
            ..
        })
    ));
    // discover() reports the key error even though the targets fall back fine
    assert!(matches!(
        discovery::discover(&resolver, &name("short.test")).await,
        Err(DiscoveryError::BadKeyRecord { .. })
    ));
}

#[tokio::test]
async fn without_srv_the_domain_itself_is_the_target_on_port_7453() {
    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_port = live.local_addr().unwrap().port();
    let dns = Dns::start(&format!(
        "{}{}host-record=beta.test,127.0.0.1\n\
         txt-record=_siren._tcp.gamma.test,\"not an SRV\"\n",
        key_record("beta.test", &format!("v=siren1; k={KEY_A}")),
        key_record("gamma.test", &format!("v=siren1; k={KEY_B}")),
    ));
    let resolver = dns.resolver();

    // NXDOMAIN for _siren._tcp.beta.test
    let found = discovery::discover(&resolver, &name("beta.test"))
        .await
        .unwrap();
    assert!(!found.via_srv);
    assert_eq!(found.targets, [target("beta.test", DEFAULT_PORT)]);
    assert_eq!(found.keys, [sek(KEY_A)]);

    // The name exists but holds no SRV (NOERROR, no data): the same fallback.
    let found = discovery::discover(&resolver, &name("gamma.test"))
        .await
        .unwrap();
    assert!(!found.via_srv);
    assert_eq!(found.targets, [target("gamma.test", DEFAULT_PORT)]);

    // The fallback target is resolved through the same nameserver (A record of the domain).
    let accept = tokio::spawn(async move { live.accept().await.map(|_| ()) });
    let reached = discovery::connect_any(
        &resolver,
        &[target("beta.test", live_port)],
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(reached.addr, SocketAddr::from(([127, 0, 0, 1], live_port)));
    accept.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_domain_that_does_not_exist_has_no_key() {
    let dns = Dns::start(&key_record("alpha.test", &format!("v=siren1; k={KEY_A}")));
    let resolver = dns.resolver();
    let err = discovery::discover(&resolver, &name("nope.test"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::NoKeyRecord { nxdomain: true, ref name } if name == "_siren-key.nope.test."),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Its fallback target does not resolve either: connect_any says so.
    let (targets, via_srv) =
        discovery::lookup_targets(&resolver, &name("nope.test"), &mut siren_proto::os_rng())
            .await
            .unwrap();
    assert!(!via_srv);
    match discovery::connect_any(&resolver, &targets, Duration::from_secs(1)).await {
        Err(DiscoveryError::Unreachable { failures }) => {
            assert_eq!(failures.len(), 1);
            assert!(failures[0].reason.contains("no A or AAAA"), "{failures:?}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_srv_target_of_dot_means_no_service() {
    let dns = Dns::start(&format!(
        "srv-host=_siren._tcp.gone.test\n{}",
        key_record("gone.test", &format!("v=siren1; k={KEY_A}")),
    ));
    let resolver = dns.resolver();
    let err = discovery::discover(&resolver, &name("gone.test"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::ServiceUnavailable { ref domain } if domain.as_str() == "gone.test"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_or_absent_nameserver_fails_promptly() {
    // A nameserver that receives but never answers: the lookup must give up after timeout_secs.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = Resolver::new(&ResolverConfig {
        nameservers: vec![silent.local_addr().unwrap()],
        timeout_secs: 1,
    })
    .unwrap();
    let started = Instant::now();
    let err = discovery::discover(&resolver, &name("alpha.test"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DiscoveryError::Timeout { .. }), "{err:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "took {took:?}: did it wait at all?"
    );

    // No nameserver on the port at all: an error just as promptly (refused, or a timeout).
    let resolver = Resolver::new(&ResolverConfig {
        nameservers: vec![SocketAddr::from(([127, 0, 0, 1], closed_port()))],
        timeout_secs: 1,
    })
    .unwrap();
    let started = Instant::now();
    let err = discovery::lookup_keys(&resolver, &name("alpha.test"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Timeout { .. } | DiscoveryError::Dns { .. }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    drop(silent);
}

#[tokio::test]
async fn connect_within_refuses_non_public_addresses_and_caps_targets_and_attempts() {
    use discovery::{ConnectLimits, FailureKind};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dead = closed_port();
    let dns = Dns::start(
        "host-record=lo.alpha.test,127.0.0.1\n\
         host-record=mapped.alpha.test,::ffff:127.0.0.1\n\
         host-record=lan.alpha.test,10.1.2.3\n",
    );
    let resolver = dns.resolver();
    let strict = ConnectLimits {
        max_targets: 4,
        max_attempts: 4,
        allow_non_public: false,
    };
    // Loopback, IPv4-mapped loopback, a private address and a literal: each refused without a
    // connection (the listener never sees one).
    let targets = [
        target("lo.alpha.test", port),
        target("mapped.alpha.test", port),
        target("lan.alpha.test", port),
        target("127.0.0.1", port),
    ];
    match discovery::connect_within(&resolver, &targets, Duration::from_secs(2), strict).await {
        Err(DiscoveryError::Unreachable { failures }) => {
            assert_eq!(failures.len(), 4, "{failures:?}");
            assert!(
                failures.iter().all(|f| f.kind == FailureKind::NotPublic),
                "{failures:?}"
            );
            assert!(failures[0].reason.contains("loopback"), "{failures:?}");
            assert!(failures[2].reason.contains("private"), "{failures:?}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(nothing.is_err(), "no connection was made");

    // Allowed (tests, labs): the same targets connect.
    let open = ConnectLimits {
        allow_non_public: true,
        ..strict
    };
    let reached = discovery::connect_within(&resolver, &targets, Duration::from_secs(2), open)
        .await
        .unwrap();
    assert_eq!(reached.addr, SocketAddr::from(([127, 0, 0, 1], port)));

    // Six refusing targets: only the first `max_targets` are tried, at most `max_attempts`
    // connections in all.
    let many: Vec<Target> = (0..6).map(|_| target("127.0.0.1", dead)).collect();
    let capped = ConnectLimits {
        max_targets: 4,
        max_attempts: 3,
        allow_non_public: true,
    };
    match discovery::connect_within(&resolver, &many, Duration::from_secs(2), capped).await {
        Err(DiscoveryError::Unreachable { failures }) => {
            let tried = failures
                .iter()
                .filter(|f| f.kind == FailureKind::Connect)
                .count();
            assert_eq!(tried, 3, "{failures:?}");
            assert_eq!(failures.len(), 6, "{failures:?}");
            assert!(
                failures[3..]
                    .iter()
                    .all(|f| f.kind == FailureKind::NotTried),
                "{failures:?}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
