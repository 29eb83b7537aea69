//! The `X509` mechanism against certificates made by the test PKI: who gets in, who does not,
//! and that every refusal looks the same to the client while the log says why.

use std::io::Write as _;
use std::path::Path;

use siren_api::auth::{AuthContext, AuthMechanism, AuthStep};
use siren_api::{ServerName, Uid, Username};
use siren_auth_certificate::testing::{CertSpec, KeyKind, TestCa, TestCert};
use siren_auth_certificate::{
    CertConfig, CertMechanism, IdentityMode, MECHANISM, Reason, Refused, X509Response,
};

const SERVER: &str = "alpha.test";

fn server() -> ServerName {
    ServerName::parse(SERVER).unwrap()
}

fn alice() -> Uid {
    Uid::parse("alice@alpha.test").unwrap()
}

fn user(s: &str) -> Username {
    Username::parse(s).unwrap()
}

fn ctx(channel_binding: u8, device_key: u8) -> AuthContext {
    AuthContext {
        server: server(),
        peer: None,
        channel_binding: [channel_binding; 32],
        device_key: [device_key; 32],
    }
}

/// A mechanism trusting `cas`, with the CA file in a fresh directory.
fn mechanism(cas: &[&TestCa], identity: IdentityMode) -> CertMechanism {
    let dir = tempfile::tempdir().unwrap();
    let pem: String = cas.iter().map(|ca| ca.pem.as_str()).collect();
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let config = CertConfig {
        ca_file: "ca.pem".into(),
        identity,
    };
    CertMechanism::new(&config, dir.path(), server()).unwrap()
}

/// Runs one exchange with `data` as the initial response.
async fn login(mech: &CertMechanism, ctx: AuthContext, data: &[u8]) -> AuthStep {
    mech.begin(ctx).step(data).await.unwrap()
}

fn refused(mech: &CertMechanism, ctx: &AuthContext, data: &[u8]) -> Refused {
    match mech.check(ctx, data) {
        Ok(user) => panic!("logged in as {user}, expected a refusal"),
        Err(r) => r,
    }
}

fn issue(ca: &TestCa, spec: CertSpec) -> TestCert {
    ca.issue(&spec).unwrap()
}

#[tokio::test]
async fn good_certificates_log_the_named_user_in() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    assert_eq!(mech.name(), MECHANISM);
    for key in [KeyKind::EcdsaP256, KeyKind::Ed25519] {
        let cert = issue(&root, CertSpec::email("alice@alpha.test", key));
        let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
        assert_eq!(
            login(&mech, ctx(1, 2), &data).await,
            AuthStep::Success(user("alice")),
            "{key:?}"
        );
    }
    // Through an intermediate, and with the e-mail's case folded like any UID.
    let issuing = root.intermediate("Issuing").unwrap();
    let cert = issue(
        &issuing,
        CertSpec::email("Alice@Alpha.Test", KeyKind::EcdsaP256),
    );
    assert_eq!(cert.chain.len(), 2);
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &data).await,
        AuthStep::Success(user("alice"))
    );
    // The root may be sent too.
    let with_root = X509Response {
        chain: vec![
            cert.chain[0].clone(),
            cert.chain[1].clone(),
            root.der.clone(),
        ],
        ..X509Response::decode(&data).unwrap()
    }
    .encode();
    assert_eq!(
        login(&mech, ctx(1, 2), &with_root).await,
        AuthStep::Success(user("alice"))
    );
    // Without the intermediate the chain does not reach the root.
    let only_ee = X509Response {
        chain: cert.chain[..1].to_vec(),
        ..X509Response::decode(&data).unwrap()
    }
    .encode();
    assert_eq!(
        refused(&mech, &ctx(1, 2), &only_ee).reason,
        Reason::UnknownIssuer
    );
}

#[tokio::test]
async fn an_empty_initial_response_gets_an_empty_challenge() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    let cert = issue(&root, CertSpec::email("alice@alpha.test", KeyKind::Ed25519));
    let mut exchange = mech.begin(ctx(1, 2));
    assert_eq!(
        exchange.step(&[]).await.unwrap(),
        AuthStep::Challenge(Vec::new())
    );
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        exchange.step(&data).await.unwrap(),
        AuthStep::Success(user("alice"))
    );
    // A second empty response is not a response.
    let mut exchange = mech.begin(ctx(1, 2));
    exchange.step(&[]).await.unwrap();
    assert_eq!(
        exchange.step(&[]).await.unwrap(),
        AuthStep::Failure { attempted: None }
    );
}

#[tokio::test]
async fn cn_mode_uses_the_common_name_as_the_username() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::Cn);
    let spec = |cn: &str| CertSpec {
        emails: vec!["someone@elsewhere.test".into()],
        cn: Some(cn.into()),
        ..CertSpec::email("", KeyKind::EcdsaP256)
    };
    let cert = issue(&root, spec("Bob"));
    let bob = Uid::parse("bob@alpha.test").unwrap();
    let data = cert.response(&[1; 32], &[2; 32], &bob).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &data).await,
        AuthStep::Success(user("bob"))
    );
    // A CN that is not a bare username names nobody.
    for cn in ["Bob Smith", "bob@alpha.test"] {
        let cert = issue(&root, spec(cn));
        let data = cert.response(&[1; 32], &[2; 32], &bob).unwrap();
        assert_eq!(
            refused(&mech, &ctx(1, 2), &data),
            Refused {
                reason: Reason::NoIdentity,
                attempted: None
            },
            "{cn}"
        );
    }
    // san_email mode ignores the CN.
    let san = mechanism(&[&root], IdentityMode::SanEmail);
    let cert = issue(&root, spec("bob"));
    let data = cert.response(&[1; 32], &[2; 32], &bob).unwrap();
    assert_eq!(
        refused(&san, &ctx(1, 2), &data).reason,
        Reason::OtherDomain("elsewhere.test".into())
    );
}

#[tokio::test]
async fn out_of_date_certificates_are_refused() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    for (from, until, reason) in [(-30, -1, Reason::Expired), (1, 30, Reason::NotYetValid)] {
        let cert = issue(
            &root,
            CertSpec {
                valid_from_days: from,
                valid_until_days: until,
                ..CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256)
            },
        );
        let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
        assert_eq!(
            login(&mech, ctx(1, 2), &data).await,
            // The name of a certificate whose chain fails is not reported.
            AuthStep::Failure { attempted: None }
        );
        assert_eq!(refused(&mech, &ctx(1, 2), &data).reason, reason);
    }
}

#[tokio::test]
async fn certificates_from_another_ca_are_refused() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    // A CA bearing the trusted CA's name, with another key.
    let impostor = TestCa::new("Root").unwrap();
    let cert = issue(
        &impostor,
        CertSpec::email("alice@alpha.test", KeyKind::Ed25519),
    );
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &data).await,
        // The name of a certificate whose chain fails is not reported.
        AuthStep::Failure { attempted: None }
    );
    assert_eq!(
        refused(&mech, &ctx(1, 2), &data).reason,
        Reason::BadChainSignature
    );
    // Another CA.
    let other = TestCa::new("Other").unwrap();
    let cert = issue(
        &other,
        CertSpec::email("alice@alpha.test", KeyKind::Ed25519),
    );
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &data).await,
        // The name of a certificate whose chain fails is not reported.
        AuthStep::Failure { attempted: None }
    );
    assert_eq!(
        refused(&mech, &ctx(1, 2), &data).reason,
        Reason::UnknownIssuer
    );
    // Trusting both CAs (one file, two certificates) lets it in.
    let both = mechanism(&[&root, &other], IdentityMode::SanEmail);
    assert_eq!(both.authorities(), 2);
    assert_eq!(
        login(&both, ctx(1, 2), &data).await,
        AuthStep::Success(user("alice"))
    );
}

#[tokio::test]
async fn a_certificate_must_name_exactly_one_user_of_this_server() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    let with_emails = |emails: &[&str]| {
        issue(
            &root,
            CertSpec {
                emails: emails.iter().map(|e| e.to_string()).collect(),
                cn: Some("alice".into()),
                ..CertSpec::email("", KeyKind::EcdsaP256)
            },
        )
    };
    for (emails, reason) in [
        (
            &["alice@beta.test"][..],
            Reason::OtherDomain("beta.test".into()),
        ),
        (
            &["alice@alpha.test.evil"][..],
            Reason::OtherDomain("alpha.test.evil".into()),
        ),
        (
            &["alice@sub.alpha.test"][..],
            Reason::OtherDomain("sub.alpha.test".into()),
        ),
        (&[][..], Reason::NoIdentity),
        (&["not an address"][..], Reason::NoIdentity),
        (&["al ice@alpha.test"][..], Reason::NoIdentity),
        (
            &["alice@alpha.test", "bob@alpha.test"][..],
            Reason::AmbiguousIdentity,
        ),
    ] {
        let cert = with_emails(emails);
        let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
        assert_eq!(
            login(&mech, ctx(1, 2), &data).await,
            AuthStep::Failure { attempted: None },
            "{emails:?}"
        );
        assert_eq!(
            refused(&mech, &ctx(1, 2), &data).reason,
            reason,
            "{emails:?}"
        );
    }
    // One user of this server among addresses elsewhere is fine.
    let cert = with_emails(&["alice@beta.test", "alice@alpha.test"]);
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &data).await,
        AuthStep::Success(user("alice"))
    );
}

#[tokio::test]
async fn a_proof_is_bound_to_its_session_device_key_and_user() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    let cert = issue(
        &root,
        CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256),
    );
    let captured = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert_eq!(
        login(&mech, ctx(1, 2), &captured).await,
        AuthStep::Success(user("alice"))
    );
    // Replayed in another session (other handshake hash), or with another DEK.
    for other in [ctx(9, 2), ctx(1, 9)] {
        assert_eq!(
            login(&mech, other.clone(), &captured).await,
            AuthStep::Failure {
                attempted: Some(user("alice"))
            }
        );
        assert_eq!(
            refused(&mech, &other, &captured).reason,
            Reason::BadSignature
        );
    }
    // Signed for another UID than the certificate names.
    let bob = Uid::parse("bob@alpha.test").unwrap();
    let for_bob = cert.response(&[1; 32], &[2; 32], &bob).unwrap();
    assert_eq!(
        refused(&mech, &ctx(1, 2), &for_bob).reason,
        Reason::BadSignature
    );
}

#[tokio::test]
async fn a_proof_by_another_key_is_refused() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    for key in [KeyKind::EcdsaP256, KeyKind::Ed25519] {
        let cert = issue(&root, CertSpec::email("alice@alpha.test", key));
        // The same user and CA, another key pair (e.g. a certificate copied without its key).
        let thief = issue(&root, CertSpec::email("alice@alpha.test", key));
        let msg = siren_proto::transcript::x509_auth(&[1; 32], &[2; 32], &alice());
        let data = X509Response {
            chain: cert.chain.clone(),
            sig: thief.sign(&msg).unwrap(),
        }
        .encode();
        assert_eq!(
            login(&mech, ctx(1, 2), &data).await,
            AuthStep::Failure {
                attempted: Some(user("alice"))
            }
        );
        assert_eq!(
            refused(&mech, &ctx(1, 2), &data).reason,
            Reason::BadSignature
        );
    }
    // An Ed25519 signature under a P-256 certificate.
    let p256 = issue(
        &root,
        CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256),
    );
    let ed = issue(&root, CertSpec::email("alice@alpha.test", KeyKind::Ed25519));
    let msg = siren_proto::transcript::x509_auth(&[1; 32], &[2; 32], &alice());
    let data = X509Response {
        chain: p256.chain.clone(),
        sig: ed.sign(&msg).unwrap(),
    }
    .encode();
    assert_eq!(
        refused(&mech, &ctx(1, 2), &data).reason,
        Reason::BadSignature
    );
}

#[tokio::test]
async fn server_only_certificates_are_refused() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    let cert = issue(
        &root,
        CertSpec {
            client_auth: false,
            ..CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256)
        },
    );
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    assert!(matches!(
        refused(&mech, &ctx(1, 2), &data).reason,
        Reason::InvalidChain(_)
    ));
    // The CA's own certificate is not an end-entity certificate.
    let data = X509Response {
        chain: vec![root.der.clone()],
        sig: vec![1; 64],
    }
    .encode();
    assert!(mech.check(&ctx(1, 2), &data).is_err());
}

#[tokio::test]
async fn malformed_responses_are_refused() {
    let root = TestCa::new("Root").unwrap();
    let mech = mechanism(&[&root], IdentityMode::SanEmail);
    let cert = issue(
        &root,
        CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256),
    );
    let data = cert.response(&[1; 32], &[2; 32], &alice()).unwrap();
    let malformed = |bytes: &[u8]| {
        let r = refused(&mech, &ctx(1, 2), bytes);
        assert!(
            matches!(r.reason, Reason::Malformed(_)),
            "{:?} for {} bytes",
            r.reason,
            bytes.len()
        );
        assert_eq!(r.attempted, None);
    };
    // Every truncation.
    for len in 1..data.len() {
        malformed(&data[..len]);
    }
    malformed(b"\0alice\0password");
    malformed(&[0xff; 100]);
    // Well-formed CBOR around garbage or truncated certificates.
    for chain in [
        vec![vec![0x30, 0x03, 1, 2, 3]],
        vec![cert.chain[0][..cert.chain[0].len() - 1].to_vec()],
    ] {
        malformed(
            &X509Response {
                chain,
                sig: vec![1; 64],
            }
            .encode(),
        );
    }
    assert_eq!(
        login(&mech, ctx(1, 2), b"garbage").await,
        AuthStep::Failure { attempted: None }
    );
}

#[test]
fn config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = |file: &str| CertConfig {
        ca_file: file.into(),
        identity: IdentityMode::SanEmail,
    };
    let err = |file: &str| {
        CertMechanism::new(&config(file), dir.path(), server())
            .err()
            .unwrap()
            .message
    };
    let missing = err("missing.pem");
    assert!(
        missing.contains(&dir.path().join("missing.pem").display().to_string()),
        "{missing}"
    );
    std::fs::write(dir.path().join("empty.pem"), "not pem at all\n").unwrap();
    let empty = err("empty.pem");
    assert!(
        empty.contains("empty.pem") && empty.contains("no CERTIFICATE"),
        "{empty}"
    );
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let junk = err("junk.pem");
    assert!(
        junk.contains("junk.pem") && junk.contains("not usable as a CA"),
        "{junk}"
    );
    // Absolute paths are used as they are.
    let root = TestCa::new("Root").unwrap();
    let abs = dir.path().join("abs.pem");
    std::fs::File::create(&abs)
        .unwrap()
        .write_all(root.pem.as_bytes())
        .unwrap();
    let mech = CertMechanism::new(
        &config(abs.to_str().unwrap()),
        Path::new("/nonexistent"),
        server(),
    )
    .unwrap();
    assert_eq!(mech.authorities(), 1);
}

#[test]
fn config_parses_as_the_host_writes_it() {
    let parse = toml::from_str::<CertConfig>;
    let c = parse("ca_file = \"ca.pem\"").unwrap();
    assert_eq!(c.identity, IdentityMode::SanEmail);
    let c = parse("ca_file = \"ca.pem\"\nidentity = \"cn\"").unwrap();
    assert_eq!(c.identity, IdentityMode::Cn);
    let c = parse("ca_file = \"ca.pem\"\nidentity = \"san_email\"").unwrap();
    assert_eq!(c.identity, IdentityMode::SanEmail);
    assert!(parse("ca_file = \"ca.pem\"\nidentity = \"dn\"").is_err());
    assert!(parse("ca_file = \"ca.pem\"\ncrl = \"x\"").is_err());
    assert!(parse("identity = \"cn\"").is_err());
}
