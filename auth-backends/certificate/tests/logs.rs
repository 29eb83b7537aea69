//! Every refusal looks the same to the client, while the log names a distinct reason.
//!
//! In its own test binary: tracing caches whether a call site is enabled, and other tests
//! running without a subscriber on other threads would race with the one installed here.

use std::sync::{Arc, Mutex};

use siren_api::auth::{AuthContext, AuthMechanism, AuthStep};
use siren_api::{ServerName, Uid};
use siren_auth_certificate::testing::{CertSpec, KeyKind, TestCa, TestCert};
use siren_auth_certificate::{CertConfig, CertMechanism, IdentityMode};

fn server() -> ServerName {
    ServerName::parse("alpha.test").unwrap()
}

fn alice() -> Uid {
    Uid::parse("alice@alpha.test").unwrap()
}

fn ctx(channel_binding: u8, device_key: u8) -> AuthContext {
    AuthContext {
        server: server(),
        peer: None,
        channel_binding: [channel_binding; 32],
        device_key: [device_key; 32],
    }
}

fn mechanism(ca: &TestCa) -> CertMechanism {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let config = CertConfig {
        ca_file: "ca.pem".into(),
        identity: IdentityMode::SanEmail,
    };
    CertMechanism::new(&config, dir.path(), server()).unwrap()
}

async fn login(mech: &CertMechanism, ctx: AuthContext, data: &[u8]) -> AuthStep {
    mech.begin(ctx).step(data).await.unwrap()
}

fn issue(ca: &TestCa, spec: CertSpec) -> TestCert {
    ca.issue(&spec).unwrap()
}

/// Every refusal gives the client the same answer shape, while the log names a distinct reason.
#[tokio::test]
async fn refusals_are_indistinct_to_the_client_but_logged_with_distinct_reasons() {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || LogWriter(writer.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let root = TestCa::new("Root").unwrap();
    let other = TestCa::new("Other").unwrap();
    let mech = mechanism(&root);
    let alice_spec = || CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256);
    let good = issue(&root, alice_spec());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"garbage".to_vec()),
        (
            "expired",
            issue(
                &root,
                CertSpec {
                    valid_from_days: -30,
                    valid_until_days: -1,
                    ..alice_spec()
                },
            )
            .response(&[1; 32], &[2; 32], &alice())
            .unwrap(),
        ),
        (
            "not_yet_valid",
            issue(
                &root,
                CertSpec {
                    valid_from_days: 1,
                    valid_until_days: 30,
                    ..alice_spec()
                },
            )
            .response(&[1; 32], &[2; 32], &alice())
            .unwrap(),
        ),
        (
            "unknown_issuer",
            issue(&other, alice_spec())
                .response(&[1; 32], &[2; 32], &alice())
                .unwrap(),
        ),
        (
            "other_domain",
            issue(
                &root,
                CertSpec::email("alice@beta.test", KeyKind::EcdsaP256),
            )
            .response(&[1; 32], &[2; 32], &alice())
            .unwrap(),
        ),
        (
            "bad_signature",
            good.response(&[7; 32], &[2; 32], &alice()).unwrap(),
        ),
        (
            "bad_chain_signature",
            issue(&TestCa::new("Root").unwrap(), alice_spec())
                .response(&[1; 32], &[2; 32], &alice())
                .unwrap(),
        ),
        (
            "no_identity",
            issue(
                &root,
                CertSpec {
                    emails: Vec::new(),
                    ..alice_spec()
                },
            )
            .response(&[1; 32], &[2; 32], &alice())
            .unwrap(),
        ),
    ];
    let names: std::collections::BTreeSet<_> = cases.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), cases.len(), "the reasons are distinct");
    for (expected, data) in &cases {
        logs.lock().unwrap().clear();
        let step = login(&mech, ctx(1, 2), data).await;
        assert!(
            matches!(step, AuthStep::Failure { .. }),
            "{expected}: {step:?}"
        );
        let line = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains(&format!("reason=\"{expected}\"")),
            "{expected}: {line}"
        );
        assert!(line.contains("X509 login refused"), "{line}");
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
