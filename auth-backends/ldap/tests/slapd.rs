//! siren-auth-ldap against a real OpenLDAP slapd, seeded from scripts/services/seed.ldif.
//!
//! `scripts/test.sh` starts the directory (scripts/services/slapd.sh) and sets
//! `SIREN_TEST_LDAP_URL`, `SIREN_TEST_LDAPS_URL` and `SIREN_TEST_LDAP_CA`. By hand:
//!
//! ```sh
//! scripts/services/slapd.sh start /tmp/slapd && source /tmp/slapd/slapd.env
//! cargo test -p siren-auth-ldap
//! scripts/services/slapd.sh stop /tmp/slapd
//! ```
//!
//! The test directory accepts unauthenticated binds (`allow bind_anon_dn`), as some directories
//! do, so the empty-password test fails if the backend stops refusing empty passwords itself.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siren_api::auth::{AccountStatus, CredentialBackend};
use siren_api::{ErrorCode, Username};
use siren_auth_ldap::{LdapBackend, LdapConfig, MemberValue};

const PEOPLE: &str = "ou=people,dc=example,dc=test";
const DN_TEMPLATE: &str = "uid={user},ou=people,dc=example,dc=test";
const FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={user}))";
const SERVICE_DN: &str = "cn=siren,ou=services,dc=example,dc=test";
const SERVICE_PASSWORD: &str = "siren-service-password";
const GROUP: &str = "cn=chat-users,ou=groups,dc=example,dc=test";
const POSIX_GROUP: &str = "cn=chat-users-posix,ou=groups,dc=example,dc=test";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through scripts/test.sh, which starts slapd \
             (or by hand: scripts/services/slapd.sh start DIR && source DIR/slapd.env)"
        )
    })
}

fn url() -> String {
    env("SIREN_TEST_LDAP_URL")
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn direct() -> LdapConfig {
    LdapConfig {
        url: url(),
        bind_dn_template: Some(DN_TEMPLATE.into()),
        ..LdapConfig::default()
    }
}

fn search() -> LdapConfig {
    LdapConfig {
        url: url(),
        search_base: Some(PEOPLE.into()),
        search_filter: Some(FILTER.into()),
        service_dn: Some(SERVICE_DN.into()),
        service_password: Some(SERVICE_PASSWORD.into()),
        ..LdapConfig::default()
    }
}

fn backend(config: LdapConfig) -> LdapBackend {
    LdapBackend::new(config).unwrap()
}

/// alice/bob/carol with their passwords, a wrong password and an unknown user.
async fn check_passwords(b: &LdapBackend) {
    assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
    assert!(b.verify(&user("bob"), "bob-password").await.unwrap());
    assert!(b.verify(&user("carol"), "carol-password").await.unwrap());
    // Usernames are case-insensitive; so is uid in the directory.
    assert!(b.verify(&user("ALICE"), "alice-password").await.unwrap());
    // Wrong password and unknown user: the same answer, Ok(false), never an error.
    assert!(!b.verify(&user("alice"), "bob-password").await.unwrap());
    assert!(!b.verify(&user("alice"), "alice-password ").await.unwrap());
    assert!(!b.verify(&user("nobody"), "alice-password").await.unwrap());
    assert!(!b.verify(&user("nobody"), "x").await.unwrap());
}

#[tokio::test]
async fn direct_bind() {
    let b = backend(direct());
    check_passwords(&b).await;
    assert!(b.admin().is_none(), "the directory owns its users");
    // Nothing can look a user up in direct mode without the password: an error, not a guess;
    // so sessions are not re-checked (rather than all refused).
    assert!(b.user_exists(&user("alice")).await.is_err());
    assert_eq!(
        b.account_status(&user("alice")).await.unwrap(),
        AccountStatus::Unknowable
    );
}

#[tokio::test]
async fn search_then_bind() {
    let b = backend(search());
    check_passwords(&b).await;
    assert!(b.user_exists(&user("alice")).await.unwrap());
    assert!(b.user_exists(&user("carol")).await.unwrap());
    assert!(!b.user_exists(&user("nobody")).await.unwrap());
    assert_eq!(
        b.account_status(&user("alice")).await.unwrap(),
        AccountStatus::Active { stamp: 0 }
    );
    assert_eq!(
        b.account_status(&user("nobody")).await.unwrap(),
        AccountStatus::Gone
    );
    // The service account's own entry is not a user (the filter wants inetOrgPerson).
    assert!(!b.verify(&user("siren"), SERVICE_PASSWORD).await.unwrap());
}

#[tokio::test]
async fn service_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ldap-password");
    std::fs::write(&file, format!("{SERVICE_PASSWORD}\n")).unwrap();
    let b = backend(LdapConfig {
        service_password: None,
        service_password_file: Some(file),
        ..search()
    });
    assert!(b.verify(&user("bob"), "bob-password").await.unwrap());
}

#[tokio::test]
async fn concurrent_logins_share_the_service_connection() {
    let b = Arc::new(backend(search()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let (name, good) = if i % 2 == 0 {
                ("alice", "alice-password")
            } else {
                ("bob", "bob-password")
            };
            let ok = b.verify(&user(name), good).await.unwrap();
            let bad = b.verify(&user(name), "wrong").await.unwrap();
            (ok, bad)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (true, false));
    }
}

#[tokio::test]
async fn required_group_of_names() {
    for config in [search(), direct()] {
        let b = backend(LdapConfig {
            required_group: Some(GROUP.into()),
            ..config
        });
        assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
        assert!(b.verify(&user("bob"), "bob-password").await.unwrap());
        // carol's password is right, but she is not in cn=chat-users.
        assert!(!b.verify(&user("carol"), "carol-password").await.unwrap());
        assert!(!b.verify(&user("alice"), "wrong").await.unwrap());
    }
    let b = backend(LdapConfig {
        required_group: Some(GROUP.into()),
        ..search()
    });
    assert!(b.user_exists(&user("alice")).await.unwrap());
    assert!(!b.user_exists(&user("carol")).await.unwrap());
    // Out of the group: the sessions such a user had are ended.
    assert_eq!(
        b.account_status(&user("carol")).await.unwrap(),
        AccountStatus::Gone
    );
}

#[tokio::test]
async fn required_posix_group_with_member_uid() {
    for config in [search(), direct()] {
        let b = backend(LdapConfig {
            required_group: Some(POSIX_GROUP.into()),
            group_member_attribute: "memberUid".into(),
            group_member_value: MemberValue::User,
            ..config
        });
        assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
        assert!(!b.verify(&user("carol"), "carol-password").await.unwrap());
    }
}

#[tokio::test]
async fn a_missing_group_is_an_error_not_a_no() {
    let b = backend(LdapConfig {
        required_group: Some("cn=no-such-group,ou=groups,dc=example,dc=test".into()),
        ..search()
    });
    let err = b
        .verify(&user("alice"), "alice-password")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("no-such-group"), "{}", err.message);
}

#[tokio::test]
async fn filter_injection_matches_nothing() {
    // A `Username` cannot even hold filter syntax…
    for raw in ["a*", "*", "alice)(uid=*", "alice)(uid=alice"] {
        assert!(
            Username::parse(raw).is_err(),
            "{raw:?} parsed as a username"
        );
    }
    // …and names from elsewhere are escaped: each of these would find alice if pasted into the
    // filter as is, and alice's password would then log them in.
    let b = backend(search());
    for raw in ["a*", "al*e", "alice)(uid=alice", "*)(uid=alice"] {
        assert!(
            !b.verify_name(raw, "alice-password").await.unwrap(),
            "{raw:?} logged in with alice's password"
        );
    }
    // A wildcard matching every user is refused too (and would be as "several entries").
    assert!(!b.verify_name("*", "alice-password").await.unwrap());
    // In a DN, the name is one escaped RDN value: it cannot add RDNs or climb the tree.
    let d = backend(direct());
    for raw in ["alice,ou=people", "alice+cn=Alice Example", "*"] {
        assert!(
            !d.verify_name(raw, "alice-password").await.unwrap(),
            "{raw:?}"
        );
    }
}

#[tokio::test]
async fn empty_password_is_refused_although_the_directory_accepts_it() {
    // The directory answers a bind with alice's DN and no password with success (an
    // "unauthenticated bind", RFC 4513 §5.1.2): this is what the backend must never send.
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&url()).await.unwrap();
    ldap3::drive!(conn);
    let result = ldap
        .simple_bind("uid=alice,ou=people,dc=example,dc=test", "")
        .await
        .unwrap();
    assert_eq!(result.rc, 0, "the test directory should allow bind_anon_dn");
    ldap.unbind().await.unwrap();

    for b in [backend(direct()), backend(search())] {
        for name in ["alice", "carol", "nobody"] {
            assert!(
                !b.verify(&user(name), "").await.unwrap(),
                "{name} logged in with an empty password"
            );
        }
    }
}

#[tokio::test]
async fn wrong_service_password_is_an_error_not_a_no() {
    let b = backend(LdapConfig {
        service_password: Some("not-the-service-password".into()),
        ..search()
    });
    let err = b
        .verify(&user("alice"), "alice-password")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("service account"), "{}", err.message);
}

/// A writer for log lines captured in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn warnings(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }
}

/// `verify` on an unreachable directory: an `Unavailable` error, within the timeout, and one
/// warning naming the url.
async fn fails_closed(config: LdapConfig) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let url = config.url.clone();
    let b = backend(config);
    let start = Instant::now();
    let err = b
        .verify(&user("alice"), "alice-password")
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(err.message.contains(&url), "{}", err.message);
    assert!(
        took < b.timeout() + Duration::from_secs(2),
        "took {took:?} with a timeout of {:?}",
        b.timeout()
    );
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains(&url), "{}", warnings[0]);
    // The status of an account is not "gone" because the directory is down: an error, so
    // the host keeps live sessions and makes resumptions wait.
    // (Direct-bind mode does not ask the directory at all.)
    let status = b.account_status(&user("alice")).await;
    assert!(
        matches!(&status, Err(e) if e.code == ErrorCode::Unavailable)
            || status == Ok(AccountStatus::Unknowable),
        "{status:?}"
    );
}

#[tokio::test]
async fn unreachable_directory_fails_closed() {
    // A port nothing listens on: refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = format!("ldap://127.0.0.1:{port}");
    for config in [direct(), search()] {
        fails_closed(LdapConfig {
            url: closed.clone(),
            ..config
        })
        .await;
    }
}

#[tokio::test]
async fn silent_directory_fails_closed_within_the_timeout() {
    // A listener that accepts connections (in the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://127.0.0.1:{}", silent.local_addr().unwrap().port());
    for config in [direct(), search()] {
        fails_closed(LdapConfig {
            url: url.clone(),
            timeout_secs: 1,
            ..config
        })
        .await;
    }
    drop(silent);
}

#[tokio::test]
async fn ldaps_and_starttls_with_the_test_ca() {
    let ca = env("SIREN_TEST_LDAP_CA");
    let ldaps = env("SIREN_TEST_LDAPS_URL");
    let tls_configs = [
        LdapConfig {
            url: ldaps.clone(),
            ca_file: Some(ca.clone().into()),
            ..direct()
        },
        LdapConfig {
            // The certificate names localhost as well as 127.0.0.1.
            url: ldaps.replace("127.0.0.1", "localhost"),
            ca_file: Some(ca.clone().into()),
            required_group: Some(GROUP.into()),
            ..search()
        },
        LdapConfig {
            starttls: true,
            ca_file: Some(ca.clone().into()),
            ..search()
        },
    ];
    for config in tls_configs {
        let b = backend(config);
        assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
        assert!(!b.verify(&user("alice"), "wrong").await.unwrap());
    }
}

#[tokio::test]
async fn tls_with_an_unknown_issuer_fails_closed() {
    let ldaps = env("SIREN_TEST_LDAPS_URL");
    // The system's roots do not include the test CA: the certificate is refused, and the login
    // fails with an error rather than going on without TLS.
    if std::fs::metadata("/etc/ssl/certs/ca-certificates.crt").is_ok() {
        for config in [
            LdapConfig {
                url: ldaps.clone(),
                ..direct()
            },
            LdapConfig {
                starttls: true,
                ..direct()
            },
        ] {
            let err = backend(config)
                .verify(&user("alice"), "alice-password")
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::Unavailable);
        }
    }
    // A CA file with another CA in it: the same.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=Another CA", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let err = backend(LdapConfig {
        url: ldaps,
        ca_file: Some(other),
        ..direct()
    })
    .verify(&user("alice"), "alice-password")
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
}

/// A TCP relay to slapd whose connections the test can cut, as a directory restart would.
struct Relay {
    url: String,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ldap://{}", listener.local_addr().unwrap());
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let kept = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().unwrap().push(link);
            }
        });
        Relay { url, links, accept }
    }

    /// Drops every relayed connection (both ends close).
    fn cut(&self) -> usize {
        let links: Vec<_> = self.links.lock().unwrap().drain(..).collect();
        for l in &links {
            l.abort();
        }
        links.len()
    }
}

#[tokio::test]
async fn the_service_connection_is_kept_and_replaced_when_it_drops() {
    let slapd = url().trim_start_matches("ldap://").to_owned();
    let relay = Relay::start(slapd).await;
    let b = backend(LdapConfig {
        url: relay.url.clone(),
        required_group: Some(GROUP.into()),
        ..search()
    });
    assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
    assert!(b.verify(&user("bob"), "bob-password").await.unwrap());
    // Two logins: one service connection, kept, and one connection per user bind.
    assert_eq!(relay.cut(), 3);
    // The kept connection is dead now; the next login notices, reconnects and succeeds.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.verify(&user("alice"), "alice-password").await.unwrap());
    assert!(!b.verify(&user("carol"), "carol-password").await.unwrap());
    assert_eq!(
        relay.cut(),
        3,
        "a new service connection and two user binds"
    );
    // Cut without waiting: the first operation on the dead connection fails and is retried.
    assert!(b.verify(&user("bob"), "bob-password").await.unwrap());
    relay.accept.abort();
}
