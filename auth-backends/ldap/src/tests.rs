//! Pure checks: configuration validation and escaping. The directory itself is exercised by
//! `tests/slapd.rs` against a real slapd.

use super::*;

fn direct() -> LdapConfig {
    LdapConfig {
        url: "ldap://127.0.0.1:389".into(),
        bind_dn_template: Some("uid={user},ou=people,dc=example,dc=test".into()),
        ..LdapConfig::default()
    }
}

fn search() -> LdapConfig {
    LdapConfig {
        url: "ldap://127.0.0.1:389".into(),
        search_base: Some("ou=people,dc=example,dc=test".into()),
        search_filter: Some("(&(objectClass=inetOrgPerson)(uid={user}))".into()),
        service_dn: Some("cn=siren,ou=services,dc=example,dc=test".into()),
        service_password: Some("secret".into()),
        ..LdapConfig::default()
    }
}

/// The message of the validation error, which must name `key`.
fn refused(config: LdapConfig, key: &str) -> String {
    let err = LdapBackend::new(config).unwrap_err();
    assert!(
        err.message.contains(&format!("`{key}`")),
        "error does not name `{key}`: {}",
        err.message
    );
    err.message
}

#[test]
fn both_modes_are_valid() {
    LdapBackend::new(direct()).unwrap();
    LdapBackend::new(search()).unwrap();
    // Anonymous search: no service account at all.
    LdapBackend::new(LdapConfig {
        service_dn: None,
        service_password: None,
        ..search()
    })
    .unwrap();
}

#[test]
fn exactly_one_mode() {
    refused(
        LdapConfig {
            url: "ldap://127.0.0.1".into(),
            ..LdapConfig::default()
        },
        "bind_dn_template",
    );
    let msg = refused(
        LdapConfig {
            bind_dn_template: direct().bind_dn_template,
            ..search()
        },
        "search_base",
    );
    assert!(msg.contains("one mode"), "{msg}");
    refused(
        LdapConfig {
            search_filter: Some("(uid={user})".into()),
            ..direct()
        },
        "search_filter",
    );
    refused(
        LdapConfig {
            search_base: None,
            ..search()
        },
        "search_base",
    );
    refused(
        LdapConfig {
            search_filter: None,
            ..search()
        },
        "search_filter",
    );
}

#[test]
fn templates_need_the_placeholder_and_filters_must_parse() {
    refused(
        LdapConfig {
            bind_dn_template: Some("uid=alice,ou=people,dc=example,dc=test".into()),
            ..direct()
        },
        "bind_dn_template",
    );
    refused(
        LdapConfig {
            search_filter: Some("(uid=alice)".into()),
            ..search()
        },
        "search_filter",
    );
    refused(
        LdapConfig {
            search_filter: Some("(&(uid={user})".into()),
            ..search()
        },
        "search_filter",
    );
    refused(
        LdapConfig {
            search_filter: Some("uid={user}".into()),
            ..search()
        },
        "search_filter",
    );
}

#[test]
fn service_account_needs_exactly_one_non_empty_password() {
    refused(
        LdapConfig {
            service_password: None,
            ..search()
        },
        "service_dn",
    );
    refused(
        LdapConfig {
            service_password: Some(String::new()),
            ..search()
        },
        "service_password",
    );
    refused(
        LdapConfig {
            service_password_file: Some("/nonexistent".into()),
            ..search()
        },
        "service_password_file",
    );
    refused(
        LdapConfig {
            service_dn: None,
            ..search()
        },
        "service_password",
    );
    let missing = refused(
        LdapConfig {
            service_password: None,
            service_password_file: Some("/nonexistent/siren-ldap-password".into()),
            ..search()
        },
        "service_password_file",
    );
    assert!(
        missing.contains("/nonexistent/siren-ldap-password"),
        "{missing}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    refused(
        LdapConfig {
            service_password: None,
            service_password_file: Some(empty),
            ..search()
        },
        "service_password_file",
    );
    let good = dir.path().join("good");
    std::fs::write(&good, "secret\n").unwrap();
    LdapBackend::new(LdapConfig {
        service_password: None,
        service_password_file: Some(good),
        ..search()
    })
    .unwrap();
}

#[test]
fn urls_and_tls() {
    for url in [
        "",
        "http://127.0.0.1",
        "ldap://",
        "ldap://127.0.0.1:notaport",
        "ldap://127.0.0.1:0",
        "ldap://127.0.0.1/dc=example,dc=test",
        "ldapi:///var/run/slapd.sock",
    ] {
        refused(
            LdapConfig {
                url: url.into(),
                ..direct()
            },
            "url",
        );
    }
    LdapBackend::new(LdapConfig {
        url: "LDAP://[::1]:3389/".into(),
        ..direct()
    })
    .unwrap();
    refused(
        LdapConfig {
            url: "ldaps://127.0.0.1".into(),
            starttls: true,
            ..direct()
        },
        "starttls",
    );
    refused(
        LdapConfig {
            ca_file: Some("/etc/hostname".into()),
            ..direct()
        },
        "ca_file",
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    refused(
        LdapConfig {
            starttls: true,
            ca_file: Some(not_pem),
            ..direct()
        },
        "ca_file",
    );
    refused(
        LdapConfig {
            url: "ldaps://127.0.0.1".into(),
            ca_file: Some(dir.path().join("missing.pem")),
            ..direct()
        },
        "ca_file",
    );
}

#[test]
fn group_and_timeout() {
    refused(
        LdapConfig {
            required_group: Some("cn=g,dc=example,dc=test".into()),
            group_member_attribute: "mem ber".into(),
            ..direct()
        },
        "group_member_attribute",
    );
    refused(
        LdapConfig {
            required_group: Some(" ".into()),
            ..direct()
        },
        "required_group",
    );
    for t in [0, MAX_TIMEOUT_SECS + 1] {
        refused(
            LdapConfig {
                timeout_secs: t,
                ..direct()
            },
            "timeout_secs",
        );
    }
}

/// The documented `[auth.options.ldap]` table deserializes with its defaults, and unknown keys
/// are refused by name.
#[test]
fn toml_form() {
    let config: LdapConfig = toml::from_str(
        r#"
        url = "ldap://127.0.0.1:389"
        search_base = "ou=people,dc=example,dc=test"
        search_filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
        service_dn = "cn=siren,ou=services,dc=example,dc=test"
        service_password = "siren-service-password"
        required_group = "cn=chat-users,ou=groups,dc=example,dc=test"
        "#,
    )
    .unwrap();
    assert_eq!(config.group_member_attribute, "member");
    assert_eq!(config.group_member_value, MemberValue::Dn);
    assert_eq!(config.timeout_secs, 5);
    assert!(!config.starttls);
    LdapBackend::new(config.clone()).unwrap();
    // The password never shows in Debug output.
    assert!(!format!("{config:?}").contains("siren-service-password"));

    let posix: LdapConfig = toml::from_str(
        r#"
        url = "ldaps://ldap.example.test"
        bind_dn_template = "uid={user},ou=people,dc=example,dc=test"
        group_member_attribute = "memberUid"
        group_member_value = "user"
        timeout_secs = 2
        "#,
    )
    .unwrap();
    assert_eq!(posix.group_member_value, MemberValue::User);

    let err = toml::from_str::<LdapConfig>("url = \"ldap://h\"\nbind_dn = \"x\"\n").unwrap_err();
    assert!(err.to_string().contains("bind_dn"), "{err}");
    let err = toml::from_str::<LdapConfig>("url = \"ldap://h\"\ngroup_member_value = \"uid\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("uid"), "{err}");
}

#[test]
fn names_are_escaped() {
    // RFC 4515: * ( ) \ NUL become \2a \28 \29 \5c \00 in a filter.
    assert_eq!(
        user_filter("(&(objectClass=inetOrgPerson)(uid={user}))", "a*)(uid=*"),
        r"(&(objectClass=inetOrgPerson)(uid=a\2a\29\28uid=\2a))"
    );
    assert_eq!(user_filter("(uid={user})", "x\\y\0"), r"(uid=x\5cy\00)");
    // RFC 4514: , + " \ < > ; = and a leading # or space, or a trailing space, are escaped in a
    // DN (as hex pairs, which RFC 4514 allows for any character).
    let dn = user_dn(
        "uid={user},ou=people,dc=example,dc=test",
        "x,ou=admins+cn=y",
    );
    assert_eq!(
        dn,
        r"uid=x\2cou\3dadmins\2bcn\3dy,ou=people,dc=example,dc=test"
    );
    assert_eq!(user_dn("cn={user},dc=t", "#x "), r"cn=\23x\20,dc=t");
    // Ordinary usernames go through unchanged.
    assert_eq!(
        user_filter("(uid={user})", "alice.b-c_d"),
        "(uid=alice.b-c_d)"
    );
    assert_eq!(user_dn("uid={user},dc=t", "alice"), "uid=alice,dc=t");
}

#[tokio::test]
async fn empty_and_huge_passwords_never_reach_the_directory() {
    // Nothing listens on this url: any attempt to connect would be an error, not `false`.
    let backend = LdapBackend::new(LdapConfig {
        url: "ldap://127.0.0.1:1".into(),
        ..direct()
    })
    .unwrap();
    let alice = Username::parse("alice").unwrap();
    assert!(!backend.verify(&alice, "").await.unwrap());
    assert!(
        !backend
            .verify(&alice, &"x".repeat(MAX_PASSWORD + 1))
            .await
            .unwrap()
    );
    assert!(backend.verify(&alice, "something").await.is_err());
}

#[test]
fn relative_paths_follow_the_config_file() {
    let config = LdapConfig {
        ca_file: Some("ldap-ca.pem".into()),
        service_password_file: Some("/etc/siren/pw".into()),
        ..search()
    }
    .relative_to(std::path::Path::new("/etc/siren"));
    assert_eq!(
        config.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/siren/ldap-ca.pem"))
    );
    assert_eq!(
        config.service_password_file.as_deref(),
        Some(std::path::Path::new("/etc/siren/pw"))
    );
}

/// examples/enterprise-ldap/sirend.toml holds a valid `[auth.options.ldap]` table.
#[test]
fn the_example_configuration_is_valid() {
    let file: toml::Table = toml::from_str(include_str!(
        "../../../examples/enterprise-ldap/sirend.toml"
    ))
    .unwrap();
    let table = file["auth"]["options"]["ldap"].clone();
    let config: LdapConfig = table.try_into().unwrap();
    assert_eq!(file["auth"]["credentials"].as_str(), Some("ldap"));
    assert!(config.starttls);
    // Its CA and password files are made by the walkthrough; stand-ins here.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ldap/tls")).unwrap();
    std::fs::write(dir.path().join("ldap-service-password"), "pw\n").unwrap();
    let ca = dir.path().join("ldap/tls/ca.crt");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=Example CA", "-keyout"])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    LdapBackend::new(config.relative_to(dir.path())).unwrap();
}
