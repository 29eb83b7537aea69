//! The enterprise backends with real processes and real services: `sirend` on PostgreSQL, logins
//! checked by OpenLDAP (slapd) and by X.509 certificates, a native credential plugin, and
//! `sirend migrate-store` between RocksDB and PostgreSQL. PostgreSQL and slapd are started by
//! `scripts/test.sh` (`SIREN_TEST_POSTGRES_URL`, `SIREN_TEST_LDAP_URL`).

use siren_tests::{
    Cli, Options, Server, binary, postgres_database as database, service_env as env,
};

fn postgres_lines(url: &str) -> String {
    format!("\n[storage.options]\nurl = \"{url}\"\npool_size = 4\n")
}

#[test]
fn a_server_on_postgres_keeps_messages_across_a_restart() {
    let url = database();
    let mut s = Server::new(Options {
        storage: "postgres",
        extra: postgres_lines(&url),
        ..Options::default()
    });
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    alice.send("bob@alpha.test", "stored in postgres");
    assert!(s.stop());
    s.start();
    assert_eq!(bob.recv(), vec!["alice@alpha.test: stored in postgres"]);
    assert!(
        s.log_lines().iter().any(|l| l.contains("postgres")),
        "the log names the store"
    );
}

fn ldap_server() -> Server {
    let url = env("SIREN_TEST_LDAP_URL");
    let mut s = Server::new(Options {
        name: "example.test".into(),
        auth_lines: "credentials = \"ldap\"".into(),
        extra: format!(
            r#"
[auth.options.ldap]
url = "{url}"
search_base = "ou=people,dc=example,dc=test"
search_filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
service_dn = "cn=siren,ou=services,dc=example,dc=test"
service_password = "siren-service-password"
required_group = "cn=chat-users,ou=groups,dc=example,dc=test"
timeout_secs = 5
"#
        ),
        ..Options::default()
    });
    s.start();
    s
}

#[test]
fn directory_users_log_in_through_ldap_and_others_do_not() {
    let s = ldap_server();
    let alice = Cli::init(&s, "alice@example.test");
    let out = alice.login("alice-password");
    assert!(out.ok, "{}", out.stderr);
    let bob = Cli::init(&s, "bob@example.test");
    assert!(bob.login("bob-password").ok);
    alice.send("bob@example.test", "hello from the directory");
    assert_eq!(
        bob.recv(),
        vec!["alice@example.test: hello from the directory"]
    );

    // Wrong password, and a directory user outside the required group: refused alike.
    let wrong = Cli::init(&s, "alice@example.test");
    let out = wrong.try_login("not-alices-password");
    assert!(!out.ok);
    let carol = Cli::init(&s, "carol@example.test");
    let refused = carol.try_login("carol-password");
    assert!(!refused.ok);
    assert_eq!(
        out.stderr.replace("alice", "X"),
        refused.stderr.replace("carol", "X"),
        "the client cannot tell the two refusals apart"
    );
}

#[test]
fn an_unreachable_directory_fails_logins_closed_with_a_clear_log_line() {
    let port = siren_tests::free_port();
    let mut s = Server::new(Options {
        name: "example.test".into(),
        auth_lines: "credentials = \"ldap\"".into(),
        extra: format!(
            "\n[auth.options.ldap]\nurl = \"ldap://127.0.0.1:{port}\"\nbind_dn_template = \"uid={{user}},ou=people,dc=example,dc=test\"\ntimeout_secs = 2\n"
        ),
        ..Options::default()
    });
    s.start();
    let alice = Cli::init(&s, "alice@example.test");
    assert!(!alice.try_login("alice-password").ok);
    let log = s.wait_for_log(&format!("127.0.0.1:{port}"));
    assert!(
        log.contains(&format!("127.0.0.1:{port}")),
        "the log names the directory:\n{log}"
    );
}

#[test]
fn a_device_logs_in_with_a_certificate_from_the_configured_ca() {
    use siren_auth_certificate::testing::{KeyKind, write_test_pki};
    let pki_dir = tempfile::tempdir().unwrap();
    let uid = siren_api::Uid::parse("alice@alpha.test").unwrap();
    let good = write_test_pki(&pki_dir.path().join("good"), &uid, KeyKind::EcdsaP256).unwrap();
    let other = write_test_pki(&pki_dir.path().join("other"), &uid, KeyKind::Ed25519).unwrap();
    let mut s = Server::new(Options {
        auth_lines: "mechanisms = [\"X509\", \"PLAIN\"]".into(),
        extra: format!(
            "\n[auth.options.X509]\nca_file = \"{}\"\n",
            good.ca.display()
        ),
        ..Options::default()
    });
    s.add_user("bob", "pw-b");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    let cert = good.cert.to_str().unwrap();
    let key = good.key.to_str().unwrap();
    let out = alice.run(&["login", "--cert", cert, "--key", key]);
    assert!(out.ok, "certificate login: {}", out.stderr);
    let bob = Cli::init(&s, "bob@alpha.test");
    assert!(bob.login("pw-b").ok, "PLAIN still offered");
    bob.send("alice@alpha.test", "hi cert");
    assert_eq!(alice.recv(), vec!["bob@alpha.test: hi cert"]);

    // A certificate from another CA (same names, different keys) is refused: its chain does not
    // verify under the configured root.
    let mallory = Cli::init(&s, "alice@alpha.test");
    let out = mallory.run(&[
        "login",
        "--cert",
        other.cert.to_str().unwrap(),
        "--key",
        other.key.to_str().unwrap(),
    ]);
    assert!(!out.ok, "a certificate of another CA must be refused");
    let log = s.wait_for_log("X509 login refused");
    assert!(
        log.contains("X509 login refused") && log.contains("bad_chain_signature"),
        "the log says why:\n{log}"
    );
}

#[test]
fn a_native_credential_plugin_checks_passwords() {
    let lib = binary("libsiren_native_sample_auth.so");
    let mut s = Server::new(Options {
        auth_lines: "credentials = \"corp\"".into(),
        extra: format!(
            "\n[[plugins]]\nname = \"corp\"\nkind = \"credentials\"\nnative = \"{}\"\n[plugins.config]\nusers = \"alice:pw1,bob:pw2\"\n",
            lib.display()
        ),
        ..Options::default()
    });
    let listed = Server::sirend(&["plugins", "list", "--config", s.config().to_str().unwrap()]);
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.contains("corp") && l.contains("native-abi-1")),
        "{}",
        listed.stdout
    );
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    assert!(alice.login("pw1").ok);
    let bob = Cli::init(&s, "bob@alpha.test");
    assert!(!bob.try_login("pw1").ok, "bob's password is pw2");
}

#[test]
fn a_native_plugin_with_the_wrong_abi_stops_the_server_with_a_clear_error() {
    let lib = binary("libsiren_native_test_bad_abi.so");
    let s = Server::new(Options {
        auth_lines: "credentials = \"corp\"".into(),
        extra: format!(
            "\n[[plugins]]\nname = \"corp\"\nkind = \"credentials\"\nnative = \"{}\"\n",
            lib.display()
        ),
        ..Options::default()
    });
    let err = s.start_failure();
    assert!(
        err.contains("implements Siren native ABI 2; this server speaks 1"),
        "{err}"
    );
}

#[test]
fn migrate_store_copies_rocksdb_into_postgres_and_back() {
    let url = database();
    let mut s = Server::new(Options::default());
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    s.start();
    let alice = Cli::init(&s, "alice@alpha.test");
    alice.login("pw-a");
    let bob = Cli::init(&s, "bob@alpha.test");
    bob.login("pw-b");
    bob.run(&["contacts", "add", "alice@alpha.test"]);
    for i in 0..3 {
        alice.send("bob@alpha.test", &format!("queued {i}"));
    }
    assert!(s.stop());

    // The same server, now on PostgreSQL.
    let pg_config = s.dir.path().join("postgres.toml");
    let rocks = std::fs::read_to_string(s.config()).unwrap();
    let pg = rocks.replace(
        "backend = \"rocksdb\"",
        &format!("backend = \"postgres\"\n[storage.options]\nurl = \"{url}\""),
    );
    std::fs::write(&pg_config, &pg).unwrap();
    let from = s.config();
    let out = Server::sirend(&[
        "migrate-store",
        "--from",
        from.to_str().unwrap(),
        "--to",
        pg_config.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("2 accounts") && out.stdout.contains("3 queued items"),
        "{}",
        out.stdout
    );
    // Into a store that is not empty: refused.
    let again = Server::sirend(&[
        "migrate-store",
        "--from",
        from.to_str().unwrap(),
        "--to",
        pg_config.to_str().unwrap(),
    ]);
    assert!(
        !again.ok && again.stderr.contains("not empty"),
        "{}",
        again.stderr
    );

    // Run on PostgreSQL: the queued messages, the roster and the accounts are there.
    std::fs::write(s.config(), &pg).unwrap();
    s.start();
    assert_eq!(
        bob.recv(),
        vec![
            "alice@alpha.test: queued 0",
            "alice@alpha.test: queued 1",
            "alice@alpha.test: queued 2"
        ]
    );
    let contacts = bob.run(&["contacts", "list"]);
    assert!(
        contacts.stdout.contains("alice@alpha.test"),
        "{}",
        contacts.stdout
    );
    alice.send("bob@alpha.test", "after the move");
    assert_eq!(bob.recv(), vec!["alice@alpha.test: after the move"]);
}
