//! A fresh database per test on the PostgreSQL that `SIREN_TEST_POSTGRES_URL` names.

#![allow(dead_code)] // each test crate uses a part

use siren_storage_postgres::{PgConfig, PgStorage};
use tokio_postgres::NoTls;

/// The admin URL of the test server (a superuser on its `postgres` database).
pub fn admin_url() -> String {
    match std::env::var("SIREN_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "SIREN_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which \
             starts PostgreSQL, or start a server with `scripts/services/postgres.sh start DIR` \
             and `source DIR/postgres.env` first"
        ),
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{host_part}/{database}{query}")
}

/// A client for `url` whose connection runs on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database created for one test, dropped (with any connections left) when this is.
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    /// Creates `siren_test_<random>`.
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("random bytes");
        let name = format!("siren_test_{}", u64::from_be_bytes(random));
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        let url = with_database(&admin, &name);
        TestDb { admin, name, url }
    }

    /// The name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A configuration for this database.
    pub fn config(&self) -> PgConfig {
        PgConfig::new(self.url.clone())
    }

    /// Opens the store on this database.
    pub async fn open(&self) -> PgStorage {
        siren_storage_postgres::open(&self.config())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.name))
    }

    /// A plain client on this database, to look at its tables.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop cannot await: a thread of its own with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                let connection = tokio::spawn(connection);
                let result = client.batch_execute(&sql).await;
                drop(client);
                let _ = connection.await;
                result
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("dropping test database {}: {e}", self.name);
        }
    }
}

#[test]
fn database_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5/postgres", "x"),
        "postgres://postgres@127.0.0.1:5/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5/postgres?connect_timeout=3", "x"),
        "postgres://u@h:5/x?connect_timeout=3"
    );
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
}
