//! Each sample plugin, loaded and called through its siren-api adapter.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use siren_api::auth::{AuthContext, AuthMechanism, AuthStep, CredentialBackend};
use siren_api::federation::{Decision, Direction, FederationPolicy};
use siren_api::hooks::{DirectoryEvent, FilterDecision, MessageFilter, RoutingMeta};
use siren_api::{ServerName, Uid, Username};
use siren_plugins::{PluginError, PluginKind, WasmPluginConfig};

fn server(name: &str) -> ServerName {
    ServerName::parse(name).unwrap()
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn policy(name: &str, peers: &str) -> impl FederationPolicy {
    common::runtime()
        .federation_policy(name, &common::config(name).with("peers", peers))
        .unwrap()
}

#[test]
fn allowlist_decides_from_its_config() {
    for guest in ["federation-allowlist", "c-allowlist"] {
        let p = policy(guest, "beta.test, Gamma.test");
        assert_eq!(p.name(), guest);
        for direction in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(p.decide(&server("beta.test"), direction), Decision::Allow);
            assert_eq!(p.decide(&server("gamma.test"), direction), Decision::Allow);
            let Decision::Deny(reason) = p.decide(&server("evil.test"), direction) else {
                panic!("{guest} allowed evil.test");
            };
            assert!(
                reason.contains("evil.test is not on the allowlist"),
                "{reason}"
            );
        }
        // Many calls: the C guest's arena is emptied after each (post-return).
        for _ in 0..10_000 {
            assert_ne!(
                p.decide(&server("delta.test"), Direction::Inbound),
                Decision::Allow
            );
        }
    }
}

#[test]
fn allowlist_without_peers_is_refused_at_load() {
    for guest in ["federation-allowlist", "c-allowlist"] {
        let err = common::runtime()
            .federation_policy(guest, &common::config(guest))
            .err()
            .expect("no peers must be refused");
        assert!(matches!(err, PluginError::Init { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "plugin {guest}: init refused the configuration: set peers = \"a.example, b.example\""
            )
        );
    }
}

fn ctx() -> AuthContext {
    AuthContext {
        server: server("alpha.test"),
        peer: Some("127.0.0.1".parse().unwrap()),
        channel_binding: [7; 32],
        device_key: [9; 32],
    }
}

fn static_mechanism() -> impl AuthMechanism {
    let config = common::config("auth-static").with("users", "alice:pw1,bob:pw2");
    common::runtime()
        .auth_mechanism("auth-static", &config)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_static_logs_in_alice_and_refuses_a_wrong_password() {
    let mech = static_mechanism();
    assert_eq!(mech.name(), "STATIC");

    // Initial response.
    let mut ex = mech.begin(ctx());
    assert_eq!(
        ex.step(b"\0alice\0pw1").await.unwrap(),
        AuthStep::Success(user("alice"))
    );

    // No initial response: an empty challenge first.
    let mut ex = mech.begin(ctx());
    assert_eq!(ex.step(b"").await.unwrap(), AuthStep::Challenge(vec![]));
    assert_eq!(
        ex.step(b"\0bob\0pw2").await.unwrap(),
        AuthStep::Success(user("bob"))
    );

    // Wrong password, wrong user's password, unknown user, malformed.
    for (response, attempted) in [
        (&b"\0alice\0pw2"[..], Some("alice")),
        (b"\0alice\0wrong", Some("alice")),
        (b"\0mallory\0pw1", Some("mallory")),
        (b"\0alice\0", Some("alice")),
        (b"alice:pw1", None),
    ] {
        let mut ex = mech.begin(ctx());
        assert_eq!(
            ex.step(response).await.unwrap(),
            AuthStep::Failure {
                attempted: attempted.map(user)
            },
            "{response:?}"
        );
    }

    // Many concurrent attempts, each its own exchange resource in the plugin.
    let mech = Arc::new(mech);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mech = mech.clone();
        tasks.push(tokio::spawn(async move {
            let mut ex = mech.begin(ctx());
            let (response, ok) = if i % 2 == 0 {
                (&b"\0alice\0pw1"[..], true)
            } else {
                (&b"\0alice\0nope"[..], false)
            };
            let step = ex.step(response).await.unwrap();
            assert_eq!(matches!(step, AuthStep::Success(_)), ok, "{step:?}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn credentials_static_verifies_passwords() {
    let config = common::config("credentials-static").with("users", "alice:pw1");
    let creds = common::runtime()
        .credentials("credentials-static", &config)
        .unwrap();
    assert!(creds.verify(&user("alice"), "pw1").await.unwrap());
    assert!(!creds.verify(&user("alice"), "pw2").await.unwrap());
    assert!(!creds.verify(&user("bob"), "pw1").await.unwrap());
    assert!(creds.user_exists(&user("alice")).await.unwrap());
    assert!(!creds.user_exists(&user("bob")).await.unwrap());
    assert!(creds.admin().is_none());
}

fn meta(sender: &str, timestamp: u64) -> RoutingMeta {
    RoutingMeta {
        sender: Uid::parse(sender).unwrap(),
        recipient: Uid::parse("bob@beta.test").unwrap(),
        recipient_devices: 2,
        payload_size: 1234,
        timestamp,
    }
}

#[test]
fn rate_limit_filter_delays_then_denies() {
    let config = |action: &str| {
        common::config("rate-limit-filter")
            .with("limit", "3")
            .with("window_secs", "60")
            .with("action", action)
    };
    let filter = common::runtime()
        .message_filter("rate-limit", &config("delay"))
        .unwrap();
    assert_eq!(filter.name(), "rate-limit");
    // Window [1200, 1260): three messages pass, the fourth waits until 1260.
    for t in [1200, 1210, 1220] {
        assert_eq!(
            filter.check(&meta("alice@alpha.test", t)),
            FilterDecision::Allow
        );
    }
    assert_eq!(
        filter.check(&meta("alice@alpha.test", 1230)),
        FilterDecision::Delay(30)
    );
    // Another sender has its own count; a new window starts afresh.
    assert_eq!(
        filter.check(&meta("carol@alpha.test", 1230)),
        FilterDecision::Allow
    );
    assert_eq!(
        filter.check(&meta("alice@alpha.test", 1260)),
        FilterDecision::Allow
    );

    let filter = common::runtime()
        .message_filter("rate-limit-deny", &config("deny"))
        .unwrap();
    for t in 0..3 {
        assert_eq!(
            filter.check(&meta("alice@alpha.test", t)),
            FilterDecision::Allow
        );
    }
    let FilterDecision::Deny(reason) = filter.check(&meta("alice@alpha.test", 4)) else {
        panic!("the fourth message must be denied");
    };
    assert_eq!(reason, "alice@alpha.test sent more than 3 messages in 60 s");

    let err = common::runtime()
        .message_filter("bad", &config("drop"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("action = \"drop\""), "{err}");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn directory_audit_logs_each_event_through_the_host() {
    let hook = common::runtime()
        .directory_hook(
            "audit",
            &common::config("directory-audit").with("prefix", "AUDIT"),
        )
        .unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let uid = Uid::parse("alice@alpha.test").unwrap();
    tracing::subscriber::with_default(subscriber, || {
        hook.try_event(&DirectoryEvent::DeviceAdded {
            uid: uid.clone(),
            device: [0xab; 32],
        })
        .unwrap();
        siren_api::hooks::DirectoryHook::event(
            &hook,
            &DirectoryEvent::DeviceRevoked {
                uid: uid.clone(),
                device: [0x01; 32],
            },
        );
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&format!(
            "AUDIT #1: device {} added for alice@alpha.test",
            "ab".repeat(32)
        )),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "AUDIT #2: device {} revoked for alice@alpha.test",
            "01".repeat(32)
        )),
        "{logs}"
    );
    assert!(logs.contains("plugin=\"audit\""), "{logs}");
}

#[test]
fn inspect_reports_kind_and_version() {
    let rt = common::runtime();
    for (guest, kind) in [
        ("federation-allowlist", PluginKind::FederationPolicy),
        ("c-allowlist", PluginKind::FederationPolicy),
        ("auth-static", PluginKind::AuthMechanism),
        ("credentials-static", PluginKind::Credentials),
        ("kv-memory", PluginKind::KvEngine),
        ("rate-limit-filter", PluginKind::MessageFilter),
        ("directory-audit", PluginKind::DirectoryHook),
    ] {
        let info = rt.inspect(guest, &common::plugin(guest)).unwrap();
        assert_eq!(info.interface, "0.1.0");
        assert_eq!(info.kinds, vec![kind], "{guest}");
    }
}

#[test]
fn a_plugin_of_another_kind_is_refused() {
    let err = common::runtime()
        .kv_engine("allowlist", &common::config("federation-allowlist"))
        .err()
        .unwrap();
    let path = common::plugin("federation-allowlist");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin allowlist ({}): is not a KV engine plugin: it does not export \
             siren:plugin/kv-engine@0.1.0 (it exports: interface-version, init, \
             siren:plugin/federation-policy@0.1.0)",
            path.display()
        )
    );
}

#[test]
fn limits_out_of_range_are_refused() {
    let config = WasmPluginConfig {
        memory_limit_mib: 0,
        ..common::config("federation-allowlist").with("peers", "a.test")
    };
    let err = common::runtime()
        .federation_policy("allowlist", &config)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "plugin allowlist: memory_limit_mib = 0 is out of range (1 to 4096)"
    );
}
