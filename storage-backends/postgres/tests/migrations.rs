//! Opening a database: migrations, configuration, and a database that cannot be reached.

mod support;

use std::time::{Duration, Instant};

use siren_api::storage::{Account, AccountStore, QueueStore, SessionStore, Storage};
use siren_api::{ErrorCode, Username};
use siren_storage_postgres::{PgConfig, SCHEMA_VERSION};
use support::TestDb;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

async fn versions(db: &TestDb) -> Vec<i32> {
    db.client()
        .await
        .query("SELECT version FROM siren_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Opening twice applies each migration once and keeps the data; the tables are real tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let db = TestDb::create().await;
    let store = db.open().await;
    let alice = Account {
        user: user("alice"),
        created: 5,
        credential: None,
        credential_stamp: u64::MAX,
    };
    store.put_account(&alice).await.unwrap();
    drop(store);
    assert_eq!(
        versions(&db).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );

    let store = db.open().await;
    assert_eq!(
        versions(&db).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    assert_eq!(store.account(&user("alice")).await.unwrap(), Some(alice));

    let tables: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "accounts",
            "directory_entries",
            "leases",
            "queue_counters",
            "queue_items",
            "rosters",
            "sessions",
            "siren_schema"
        ]
    );
}

/// A database of schema version 1 with an account and sessions: migration 2 gives them
/// credential stamp 0 (the logged-in session `Some(0)`, the anonymous one none), so sessions
/// stay resumable until the password changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_data_gets_credential_stamp_0() {
    let db = TestDb::create().await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE siren_schema (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO siren_schema (version, name) VALUES (1, 'initial');
             {}
             INSERT INTO accounts (username, created, credential) VALUES ('alice', 5, 'x');
             INSERT INTO sessions (id, device, username, last_seen)
                 VALUES (decode(repeat('01', 16), 'hex'), decode(repeat('02', 32), 'hex'), 'alice', 7),
                        (decode(repeat('03', 16), 'hex'), decode(repeat('04', 32), 'hex'), NULL, 8);",
            include_str!("../migrations/0001_initial.sql")
        ))
        .await
        .unwrap();
    let store = db.open().await;
    assert_eq!(
        versions(&db).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    let alice = store.account(&user("alice")).await.unwrap().unwrap();
    assert_eq!(alice.credential_stamp, 0);
    assert_eq!(alice.credential.as_deref(), Some("x"));
    let logged_in = store.session(&[1; 16]).await.unwrap().unwrap();
    assert_eq!(logged_in.credential_stamp, Some(0));
    let anonymous = store.session(&[3; 16]).await.unwrap().unwrap();
    assert_eq!(anonymous.credential_stamp, None);
}

/// Servers starting at once on a fresh database: the advisory lock lets one migrate, and the
/// others find the schema up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_migrate_once() {
    let db = TestDb::create().await;
    let config = db.config();
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = config.clone();
        opens.spawn(async move { siren_storage_postgres::open(&config).await });
    }
    while let Some(opened) = opens.join_next().await {
        opened
            .unwrap()
            .unwrap_or_else(|e| panic!("a concurrent open: {e}"));
    }
    assert_eq!(
        versions(&db).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
}

/// A database migrated by a newer server is refused, with an error that says so, and is left
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let db = TestDb::create().await;
    drop(db.open().await);
    let newer = SCHEMA_VERSION + 1;
    db.client()
        .await
        .execute(
            "INSERT INTO siren_schema (version, name) VALUES ($1, 'from the future')",
            &[&newer],
        )
        .await
        .unwrap();
    let err = siren_storage_postgres::open(&db.config())
        .await
        .expect_err("a schema newer than this build");
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(
        err.message.contains(&format!(
            "schema version {newer}, newer than version {SCHEMA_VERSION}"
        )),
        "{err}"
    );
    assert!(err.message.contains(db.name()), "{err}");
    let mut want: Vec<i32> = (1..=SCHEMA_VERSION).collect();
    want.push(newer);
    assert_eq!(versions(&db).await, want);
}

/// A queue's numbers continue above the highest ever handed out, even when its counter is the
/// only trace left (every item removed) and the store was reopened: the counter is a real row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_counter_survives_an_empty_queue() {
    let db = TestDb::create().await;
    let store = db.open().await;
    let item = |n: u8| siren_api::storage::NewQueueItem {
        device: [9; 32],
        expires: 100,
        bytes: vec![n],
    };
    let seqs = store.enqueue(&[item(1), item(2), item(3)]).await.unwrap();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(store.purge(&[9; 32]).await.unwrap(), 3);
    drop(store);
    let last: i64 = db
        .client()
        .await
        .query_one("SELECT last_seq FROM queue_counters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 3);
    let store = db.open().await;
    assert_eq!(store.enqueue(&[item(4)]).await.unwrap(), [4]);
    let describe = store.describe();
    assert!(describe.starts_with("postgresql at "), "{describe}");
    assert!(describe.ends_with(&format!("/{}", db.name())), "{describe}");
}

/// A closed port: an `Unavailable` error naming the host and port, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_names_the_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = PgConfig::new(format!("postgres://siren:hunter2@127.0.0.1:{port}/siren"));
    let err = siren_storage_postgres::open(&config)
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(
        !err.message.contains("hunter2"),
        "the password leaked: {err}"
    );
}

/// A server that accepts the connection and never answers: an error after the connect timeout,
/// not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_database_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = PgConfig {
        url: format!("postgres://siren@127.0.0.1:{port}/siren"),
        pool_size: 2,
        connect_timeout_secs: 1,
    };
    let start = Instant::now();
    let opened = tokio::time::timeout(
        Duration::from_secs(30),
        siren_storage_postgres::open(&config),
    )
    .await
    .expect("open hung on a server that never answers");
    let err = opened.expect_err("a server that never answers");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.message.contains("timeout"), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(1));
    drop(listener);
}

/// Wrong credentials or database: the server's own reason, with the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_is_reported() {
    let db = TestDb::create().await;
    let url = db.url().replace("siren_test_", "siren_absent_");
    let err = siren_storage_postgres::open(&PgConfig::new(url))
        .await
        .expect_err("a database that does not exist");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("does not exist"), "{err}");
    assert!(err.message.contains("127.0.0.1:"), "{err}");
}

/// `[storage.options]`: defaults, unknown keys refused, bad values refused at open.
#[tokio::test]
async fn config_keys() {
    let config: PgConfig =
        toml::from_str(r#"url = "postgres://siren@127.0.0.1:5432/siren""#).unwrap();
    assert_eq!(
        config,
        PgConfig::new("postgres://siren@127.0.0.1:5432/siren")
    );
    assert_eq!(config.pool_size, 16);
    assert_eq!(config.connect_timeout_secs, 10);
    let config: PgConfig = toml::from_str(
        "url = \"postgres://siren@127.0.0.1:5432/siren\"\npool_size = 4\nconnect_timeout_secs = 3",
    )
    .unwrap();
    assert_eq!((config.pool_size, config.connect_timeout_secs), (4, 3));
    let err = toml::from_str::<PgConfig>("url = \"x\"\npool = 4").unwrap_err();
    assert!(err.to_string().contains("unknown field `pool`"), "{err}");
    assert!(toml::from_str::<PgConfig>("pool_size = 4").is_err());

    for (config, key) in [
        (
            PgConfig {
                pool_size: 0,
                ..PgConfig::new("postgres://u@h/d")
            },
            "pool_size",
        ),
        (
            PgConfig {
                connect_timeout_secs: 0,
                ..PgConfig::new("postgres://u@h/d")
            },
            "connect_timeout_secs",
        ),
        (PgConfig::new("postgres://u@h/d?bogus=1"), "url"),
    ] {
        let err = siren_storage_postgres::open(&config)
            .await
            .expect_err("a bad configuration");
        assert!(err.message.contains(key), "{key}: {err}");
    }
}
