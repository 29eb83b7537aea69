//! Siren's store on PostgreSQL: the typed stores of [`siren_api::storage`] as real tables.
//!
//! For deployments that already run PostgreSQL (15 or later). [`open`] connects with a pool of
//! [`tokio_postgres`] connections ([`deadpool_postgres`]), brings the schema up to date, and
//! returns a [`PgStorage`], which implements [`Storage`] and each of its stores with SQL.
//!
//! **Needs to run:** a tokio runtime (the pool's connections are tokio tasks), and a database
//! that the configured role owns (PostgreSQL 15 lets only the owner create tables in the
//! `public` schema). Connections are made **without TLS**: use a unix socket or loopback, or a
//! network you trust; the URL may name a unix socket directory as its host
//! (`postgres://siren@%2Fvar%2Frun%2Fpostgresql/siren`).
//!
//! # Configuration
//!
//! ```toml
//! [storage]
//! backend = "postgres"
//! [storage.options]
//! url = "postgres://siren@127.0.0.1:5432/siren"
//! pool_size = 16
//! ```
//!
//! | key | default | what |
//! |---|---|---|
//! | `url` | (required) | a libpq-style connection URL or `key=value` string; a password in it is never logged |
//! | `pool_size` | 16 | at most this many connections at once |
//! | `connect_timeout_secs` | 10 | how long to wait for a new connection, and for a free one from the pool |
//!
//! An unreachable database is an [`ErrorCode::Unavailable`] error naming the host and port after
//! at most `connect_timeout_secs`, never a hang.
//!
//! # Tables
//!
//! | table | key | columns | what |
//! |---|---|---|---|
//! | `accounts` | `username` | `created`, `credential` (NULL: none), `credential_stamp` | local accounts |
//! | `directory_entries` | `username, seq` | `kind` (`add`/`revoke`), `device`, `entry` | each user's chain of signed device records |
//! | `queue_items` | `device, seq` | `expires` (indexed), `item` | per-device message queues |
//! | `queue_counters` | `device` | `last_seq` | the last sequence number handed out per device |
//! | `rosters` | `username` | `version`, `roster` | the current signed roster of each user |
//! | `sessions` | `id` | `device`, `username` (NULL: not logged in; indexed), `last_seen` (indexed), `credential_stamp` (NULL: not checked) | resumable sessions |
//! | `siren_schema` | `version` | `name`, `applied_at` | the migrations applied |
//!
//! Usernames are `text COLLATE "C"`, so the database sorts them bytewise as
//! [`Username`](siren_api::Username) does. Keys and ids are `bytea` of their fixed length
//! (checked). The protocol's encoded values (entries, items, rosters) are stored as the opaque
//! bytes the host hands over; queue items, which are ciphertext, are stored uncompressed.
//! Unsigned 64-bit numbers are `bigint`: sequence numbers and versions must fit in 63 bits
//! (checked: the queue's counter fails with an error rather than wrap), and times above
//! 2^63 − 1 (only "never", `u64::MAX`, in practice) are stored as their two's complement, a
//! negative number, which the expiry queries take into account.
//!
//! # How the promises of [`siren_api::storage`] are kept
//!
//! * **Durability.** Every call is one transaction (most are one statement), and returns after
//!   its `COMMIT` returned. With PostgreSQL's default `synchronous_commit = on` a commit
//!   returns only after its write-ahead log record was flushed to disk (group commit shares one
//!   flush between concurrent commits). [`open`] warns in the log if the server runs with
//!   `synchronous_commit` or `fsync` off. Acknowledgements are synced too (stronger than the
//!   trait asks), so [`Storage::flush`] has nothing left to write: it checks the connection.
//! * **Queue sequence numbers.** `queue_counters` holds the last number handed out to each
//!   device; an enqueue raises it and inserts its items in one statement (one transaction), so
//!   a call that starts after another returned gets higher numbers. Overlapping enqueues
//!   share one statement (`batch`: group commit in the process, since enqueues to one device
//!   would otherwise wait for each other's commit on its counter's row lock). Removals (ack, purge,
//!   expire) never lower it and the row outlives a purge, so a number is never handed out
//!   twice, even after the queue was emptied and the server restarted (the role of the
//!   key-value adapter's high-water mark). The row lock on a device's counter orders concurrent
//!   enqueues to that device; a batch locks its devices in key order, so batches cannot
//!   deadlock.
//! * **Removals** are `DELETE`s, and PostgreSQL's row locks make two sessions acknowledging
//!   the same item remove (and count) it once. Expiry deletes through the `expires` index, at
//!   most `limit` rows per call, skipping rows that a concurrent acknowledgement holds.
//! * **Directory appends** insert entry `seq` only if the user's last stored entry is
//!   `seq − 1`, in one statement with `ON CONFLICT DO NOTHING` on the `(username, seq)` key:
//!   of two racing appends of the same number the second waits for the first and then finds
//!   the key taken; an entry is only ever inserted after its predecessor was committed, so a
//!   chain has no gaps. Anything else is refused with [`ErrorCode::Rollback`], as by the
//!   key-value adapter.
//! * **Roster replacement** is a compare-and-set on `version` (an `UPDATE … WHERE version =
//!   n − 1`, or an insert for version 1): the row lock makes one of racing writers win.
//! * **Credential updates** (a rehash) are an `UPDATE … WHERE credential = old`: a password
//!   change committed meanwhile makes it change nothing.
//!
//! # Migrations
//!
//! The schema is a list of SQL files embedded in the binary (`migrations/0001_initial.sql`,
//! `0002_credential_stamps.sql`, …). [`open`] applies those the database lacks, in order, in one transaction that holds a
//! transaction-scoped advisory lock ([`MIGRATION_LOCK`]), so two servers starting at once
//! do not race; `siren_schema` records each version applied. A database whose schema is newer
//! than this build knows is refused with an error saying so: downgrading would lose data.
//!
//! The federation outbox (deliveries waiting for a peer) needs no table of its own: sirend keeps
//! each peer's outbox as an ordinary queue under a key derived from the peer's name.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
mod batch;
mod directory;
mod error;
mod export;
mod leases;
mod migrate;
mod queue;
mod roster;
mod sessions;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Deserialize;
use siren_api::storage::Storage;
use siren_api::{Error, ErrorCode};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

pub use migrate::{MIGRATION_LOCK, SCHEMA_VERSION};

/// The `[storage.options]` of the `postgres` backend.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// The connection URL (`postgres://user[:password]@host[:port]/database[?options]`) or
    /// libpq `key=value` string.
    pub url: String,
    /// The most connections open at once (at least 1).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds to wait for a new connection, or for a free one from the pool (at least 1).
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

fn default_pool_size() -> usize {
    16
}

fn default_connect_timeout_secs() -> u64 {
    10
}

impl PgConfig {
    /// A configuration with the default pool size and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            pool_size: default_pool_size(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }
}

/// Shows the URL with its password replaced by `***`.
impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_password(&self.url))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

/// `url` with the password (of a URL's user info, or a `password=` pair) replaced by `***`.
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, hosts)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{hosts}{tail}");
        }
        // A password may also be a query parameter.
        if let Some((path, query)) = tail.split_once('?') {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            return format!("{scheme}://{authority}{path}?{}", query.join("&"));
        }
        return url.to_owned();
    }
    // key=value form: the value runs to the next space (a quoted value may contain spaces; its
    // remainder is replaced too, up to the closing quote).
    let mut out = Vec::new();
    let mut words = url.split(' ');
    while let Some(word) = words.next() {
        let Some(value) = word.strip_prefix("password=") else {
            out.push(word.to_owned());
            continue;
        };
        out.push("password=***".to_owned());
        if value.starts_with('\'') && (value.len() == 1 || !value.ends_with('\'')) {
            for rest in words.by_ref() {
                if rest.ends_with('\'') && !rest.ends_with("\\'") {
                    break;
                }
            }
        }
    }
    out.join(" ")
}

/// [`Storage`] on a PostgreSQL database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStorage {
    pool: Pool,
    /// `user@host:port/database`, for logs and error messages (never the password).
    target: Arc<str>,
    /// Enqueues waiting to share a statement.
    enqueues: Arc<batch::Enqueues>,
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// `user@host:port[,host:port…]/database`, from a parsed configuration.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| -> u16 {
        match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        }
    };
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        hosts = config
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{addr}:{}", port(i)))
            .collect();
    }
    let hosts = if hosts.is_empty() {
        "(no host)".to_owned()
    } else {
        hosts.join(",")
    };
    let user = config.get_user().unwrap_or("(no user)");
    let database = config.get_dbname().unwrap_or(user);
    format!("{user}@{hosts}/{database}")
}

/// Connects to the database of `config`, brings its schema up to date (see the crate docs) and
/// returns the store.
///
/// Fails with [`ErrorCode::Unavailable`] (naming the host) when the database cannot be reached
/// within `connect_timeout_secs`, and with [`ErrorCode::Internal`] for a configuration that
/// does not parse or a schema newer than this build knows.
pub async fn open(config: &PgConfig) -> Result<PgStorage, Error> {
    let bad = |what: String| Error::new(ErrorCode::Internal, format!("storage.options: {what}"));
    if config.pool_size == 0 {
        return Err(bad("pool_size must be at least 1".into()));
    }
    if config.connect_timeout_secs == 0 {
        return Err(bad("connect_timeout_secs must be at least 1".into()));
    }
    // The parser's messages quote no part of the URL, so no password can leak through them.
    let mut pg: tokio_postgres::Config = config
        .url
        .parse()
        .map_err(|e| bad(format!("url: not a PostgreSQL connection string: {e}")))?;
    let timeout = Duration::from_secs(config.connect_timeout_secs);
    pg.connect_timeout(timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("sirend");
    }
    let target: Arc<str> = describe_target(&pg).into();

    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(timeout))
        .wait_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("postgresql at {target}: cannot build the connection pool: {e}"),
            )
        })?;
    let storage = PgStorage {
        pool,
        target,
        enqueues: Arc::default(),
    };
    let version = migrate::migrate(&storage).await?;
    storage.check_durability().await?;
    tracing::info!(
        target: "siren_storage_postgres",
        "postgresql at {}: schema version {version}",
        storage.target
    );
    Ok(storage)
}

impl PgStorage {
    /// A connection from the pool.
    async fn client(&self, op: &str) -> Result<deadpool_postgres::Client, Error> {
        self.pool
            .get()
            .await
            .map_err(|e| error::pool_error(op, &self.target, e))
    }

    /// The error of a failed statement of `op`.
    fn db_error(&self, op: &str, e: &tokio_postgres::Error) -> Error {
        error::db_error(op, &self.target, e)
    }

    /// Runs one statement of `op` that changes rows (prepared once per connection); how many
    /// rows it changed.
    async fn change(
        &self,
        op: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<usize, Error> {
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(db)?;
        let changed = client.execute(&statement, params).await.map_err(db)?;
        Ok(rows(changed))
    }

    /// Warns when the server may acknowledge a commit before it is on disk.
    async fn check_durability(&self) -> Result<(), Error> {
        let op = "open";
        let client = self.client(op).await?;
        let row = client
            .query_one(
                "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
                &[],
            )
            .await
            .map_err(|e| self.db_error(op, &e))?;
        let synchronous_commit: String = row.try_get(0).map_err(|e| self.db_error(op, &e))?;
        let fsync: String = row.try_get(1).map_err(|e| self.db_error(op, &e))?;
        if synchronous_commit == "off" || fsync == "off" {
            tracing::warn!(
                target: "siren_storage_postgres",
                "postgresql at {}: synchronous_commit = {synchronous_commit}, fsync = {fsync}: \
                 a crash of the database server can lose messages that were acknowledged",
                self.target
            );
        }
        Ok(())
    }
}

/// Converts a count of rows to `usize` (a count is never negative).
fn rows(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A sequence number or version as stored: one that does not fit in a `bigint` is none that
/// the store can hold.
fn seq_to_db(seq: u64) -> Option<i64> {
    i64::try_from(seq).ok()
}

/// A stored sequence number, count or version (never negative: the schema checks it).
fn seq_from_db(what: &str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| error::corrupt(what, format!("negative number {value}")))
}

/// A time as stored: the same number up to 2^63 − 1, its two's complement above.
fn time_to_db(time: u64) -> i64 {
    time as i64
}

/// A stored time (see [`time_to_db`]).
fn time_from_db(value: i64) -> u64 {
    value as u64
}

/// A credential stamp as stored: any 64-bit value, stored like a time (two's complement above
/// 2^63 − 1).
fn stamp_to_db(stamp: u64) -> i64 {
    stamp as i64
}

/// A stored credential stamp (see [`stamp_to_db`]).
fn stamp_from_db(value: i64) -> u64 {
    value as u64
}

/// A `usize` limit as a SQL `LIMIT` value.
fn limit_to_db(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl Storage for PgStorage {
    fn describe(&self) -> String {
        format!("postgresql at {}", self.target)
    }

    /// Every write was committed (and its log flushed) before it returned: this only checks
    /// that the database still answers.
    async fn flush(&self) -> Result<(), Error> {
        let client = self.client("flush").await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| self.db_error("flush", &e))?;
        Ok(())
    }

    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, Error> {
        leases::take(self, name, holder, ttl).await
    }

    async fn end_lease(&self, name: &str, holder: &str, done: bool) -> Result<(), Error> {
        leases::end(self, name, holder, done).await
    }

    async fn expired_leases(&self, prefix: &str) -> Result<Vec<String>, Error> {
        leases::expired(self, prefix).await
    }

    /// PostgreSQL is backed up with its own tools, which do it better than a copy through this
    /// trait could (consistent snapshots, point-in-time recovery).
    async fn backup(&self, _dir: &std::path::Path) -> Result<(), Error> {
        Err(Error::new(
            ErrorCode::Internal,
            format!(
                "{} is backed up with PostgreSQL's own tools: `pg_dump` (a consistent dump of the \
                 database, while sirend runs) or `pg_basebackup`; see README, \"Backup and \
                 restore\"",
                self.describe()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "postgres://siren:s3cret@db.example:5432/siren",
                "postgres://siren:***@db.example:5432/siren",
            ),
            (
                "postgres://siren@127.0.0.1/siren",
                "postgres://siren@127.0.0.1/siren",
            ),
            (
                "postgresql://u:p@a@host?sslmode=disable",
                "postgresql://u:***@host?sslmode=disable",
            ),
            (
                "postgres://siren@host/db?password=s3cret&application_name=x",
                "postgres://siren@host/db?password=***&application_name=x",
            ),
            (
                "host=/run/postgresql user=siren password=s3cret dbname=siren",
                "host=/run/postgresql user=siren password=*** dbname=siren",
            ),
            (
                "user=siren password='s3 cr et' dbname=siren",
                "user=siren password=*** dbname=siren",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_password(url), want);
            let debug = format!("{:?}", PgConfig::new(url));
            assert!(!debug.contains("s3"), "{debug}");
            assert!(!debug.contains(":p@"), "{debug}");
        }
    }

    #[test]
    fn targets_name_user_host_port_and_database() {
        let config: tokio_postgres::Config =
            "postgres://siren:pw@127.0.0.1:5999/sdb".parse().unwrap();
        assert_eq!(describe_target(&config), "siren@127.0.0.1:5999/sdb");
        let config: tokio_postgres::Config = "host=/run/postgresql user=siren".parse().unwrap();
        assert_eq!(
            describe_target(&config),
            "siren@/run/postgresql/.s.PGSQL.5432/siren"
        );
        let config: tokio_postgres::Config = "postgres://u@a:1,b:2/d".parse().unwrap();
        assert_eq!(describe_target(&config), "u@a:1,b:2/d");
    }

    #[test]
    fn times_keep_their_order_below_2_pow_63_and_round_trip_everywhere() {
        for t in [
            0,
            1,
            1_700_000_000,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(time_from_db(time_to_db(t)), t);
        }
        assert!(time_to_db(5) < time_to_db(6));
        assert_eq!(seq_to_db(u64::MAX), None);
        assert_eq!(seq_to_db(7), Some(7));
        assert!(seq_from_db("x", -1).is_err());
        assert_eq!(limit_to_db(usize::MAX), i64::MAX);
    }
}
