//! The one conformance suite every Siren storage backend must pass.
//!
//! Like rustls running one test body against every crypto provider, each backend crate runs the
//! same checks against its own store, each as a separately named test. The in-memory backend's
//! `tests/conformance.rs` is:
//!
//! ```
//! // Every promise of the typed stores, on a fresh store per check. The closure returns the
//! // store and a guard that must outlive it (a temporary directory; `()` if none).
//! siren_storage_conformance::storage_tests!(async || (siren_storage_memory::storage(), ()));
//!
//! // Backends built on a `KvEngine`: the engine's own contract, below the adapter.
//! siren_storage_conformance::kv_engine_tests!(|| (siren_storage_memory::MemoryEngine::new(), ()));
//! # fn main() {}
//! ```
//!
//! A backend that persists adds [`persistence_tests!`] with a [`PersistentBackend`], which
//! opens the store on the same data again after the previous store was dropped; the RocksDB
//! backend's `tests/conformance.rs` shows all three macros.
//!
//! Each check panics, with a message saying which promise broke, when the store breaks one.
//! Each macro expands to one test function per check, named after the check (`queue_expire`,
//! `directory_concurrent_appends_one_wins`, …), so a failing promise is named by the test that
//! fails. The checks themselves are the public functions of the modules below; their docs say
//! what each one checks.
//!
//! **Needs to run:** the backend's test crate must depend on `tokio` (with the `macros` and
//! `rt-multi-thread` features): [`storage_tests!`] and [`persistence_tests!`] expand to
//! `#[tokio::test]` functions on a multi-threaded runtime, so that the concurrency checks really
//! run in parallel. A store is "closed" by dropping it; [`Storage::flush`] is called first
//! wherever an unsynced write ([`QueueStore::ack`](siren_api::storage::QueueStore::ack)) must
//! survive.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod directory;
pub mod engine;
pub mod export;
pub mod persistence;
pub mod queue;
pub mod roster;
mod sample;
pub mod sessions;

use std::future::Future;

use siren_api::storage::Storage;

/// What the macros name in the crates that use them.
#[doc(hidden)]
pub mod __private {
    pub use siren_api::storage::Storage;
}

/// A backend whose data outlives the store value: it can open its store, drop it, and open it
/// again on the same data (a RocksDB directory, a PostgreSQL database).
pub trait PersistentBackend: Send + Sync {
    /// The store this backend opens.
    type Store: Storage + 'static;

    /// Opens the store on this backend's data, creating it the first time. The previous store
    /// value, if any, has been dropped.
    fn open(&self) -> impl Future<Output = Self::Store> + Send;
}

/// Expands to one `#[tokio::test]` per check of the typed stores.
///
/// The argument is a closure called once per check, returning a future of
/// `(store, guard)`: a fresh, empty store (any `S: Storage + 'static`) and a value that must
/// live as long as it (a temporary directory, or `()`). The store is dropped before the guard.
#[macro_export]
macro_rules! storage_tests {
    ($make:expr $(,)?) => {
        $crate::__storage_checks!(__storage_test_fns[$make]);
    };
}

/// Expands to one `#[tokio::test]` per check of persistence across closing and reopening.
///
/// The argument is a closure called once per check, returning a future of a fresh
/// [`PersistentBackend`] (one with no data yet).
#[macro_export]
macro_rules! persistence_tests {
    ($make:expr $(,)?) => {
        $crate::__persistence_checks!(__persistence_test_fns[$make]);
    };
}

/// Expands to one `#[test]` per check of the [`KvEngine`](siren_api::storage::KvEngine)
/// contract.
///
/// The argument is a closure called once per check, returning `(engine, guard)`: a fresh, empty
/// engine and a value that must live as long as it (a temporary directory, or `()`). The engine
/// is dropped before the guard.
#[macro_export]
macro_rules! kv_engine_tests {
    ($make:expr $(,)?) => {
        $crate::__engine_checks!(__engine_test_fns[$make]);
    };
}

// ---------------------------------------------------------------------------------------------
// The lists of checks: each list is written once and handed to a callback macro, which makes
// either the test functions or (for this crate's own test) the list of names.

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_checks {
    ($callback:ident [$($args:tt)*]) => {
        $crate::$callback! { [$($args)*]
            accounts::account_missing_is_none,
            accounts::account_round_trip,
            accounts::account_update_credential,
            accounts::account_delete,
            accounts::accounts_listed_sorted,
            accounts::accounts_list_only_accounts,
            directory::directory_empty,
            directory::directory_first_entry_is_1,
            directory::directory_gap_refused,
            directory::directory_delete_entries,
            directory::directory_duplicate_refused,
            directory::directory_entries_in_order,
            directory::directory_users_independent,
            directory::directory_concurrent_appends_one_wins,
            queue::queue_empty,
            queue::queue_seqs_increase,
            queue::queue_devices_independent,
            queue::queue_pending_after_and_limit,
            queue::queue_pending_includes_expired,
            queue::queue_item_bytes_round_trip,
            queue::queue_ack_removes_only_given,
            queue::queue_ack_counts_each_item_once,
            queue::queue_purge,
            queue::queue_expire,
            queue::queue_expire_limit,
            queue::queue_expire_after_ack,
            queue::queue_count,
            queue::queue_usage,
            queue::queue_concurrent_enqueues,
            queue::queue_seqs_not_reused_after_removal,
            sessions::session_missing_is_none,
            sessions::session_round_trip,
            sessions::session_delete,
            sessions::sessions_expire_before_cutoff,
            sessions::sessions_deleted_by_user,
            roster::roster_missing_is_none,
            roster::roster_first_version_is_1,
            roster::roster_next_version_only,
            roster::roster_users_independent,
            roster::roster_delete,
            roster::roster_concurrent_puts_one_wins,
            accounts::storage_describe_and_flush,
            export::export_empty,
            export::export_lists_everything_once,
            export::export_import_roster,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __persistence_checks {
    ($callback:ident [$($args:tt)*]) => {
        $crate::$callback! { [$($args)*]
            persistence::reopen_keeps_accounts,
            persistence::reopen_keeps_directory,
            persistence::reopen_keeps_queue,
            persistence::reopen_keeps_seqs_above_removed_items,
            persistence::reopen_keeps_sessions,
            persistence::reopen_keeps_rosters,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __engine_checks {
    ($callback:ident [$($args:tt)*]) => {
        $crate::$callback! { [$($args)*]
            engine::engine_get_put_delete,
            engine::engine_empty_value_is_a_value,
            engine::engine_batch_applies_in_order,
            engine::engine_scan_bounds,
            engine::engine_scan_reverse_and_limit,
            engine::engine_scan_empty_ranges,
            engine::engine_binary_keys_and_values,
            engine::engine_concurrent_writers,
            engine::engine_flush_and_describe,
            engine::engine_cached_reads_agree,
            engine::engine_cached_scans_agree,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_test_fns {
    ([$make:expr] $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, guard) = ($make)().await;
                let store: ::std::sync::Arc<dyn $crate::__private::Storage> =
                    ::std::sync::Arc::new(store);
                $crate::$module::$check(::std::sync::Arc::clone(&store)).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __persistence_test_fns {
    ([$make:expr] $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = ($make)().await;
                $crate::$module::$check(&backend).await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __engine_test_fns {
    ([$make:expr] $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let (engine, guard) = ($make)();
                $crate::$module::$check(&engine);
                drop(engine);
                drop(guard);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_names {
    ([] $($module:ident :: $check:ident),* $(,)?) => {
        &[$(concat!(stringify!($module), "::", stringify!($check))),*]
    };
}

#[cfg(test)]
mod tests {
    /// Every public check function is in one of the lists (so every backend runs it), and every
    /// listed name is a check function (the latter is also checked by the compiler wherever the
    /// macros are used).
    #[test]
    fn every_check_is_listed() {
        let sources = [
            ("accounts", include_str!("accounts.rs")),
            ("directory", include_str!("directory.rs")),
            ("engine", include_str!("engine.rs")),
            ("export", include_str!("export.rs")),
            ("persistence", include_str!("persistence.rs")),
            ("queue", include_str!("queue.rs")),
            ("roster", include_str!("roster.rs")),
            ("sessions", include_str!("sessions.rs")),
        ];
        let mut defined: Vec<String> = sources
            .iter()
            .flat_map(|(module, source)| {
                source.lines().filter_map(move |line| {
                    let rest = line
                        .strip_prefix("pub async fn ")
                        .or_else(|| line.strip_prefix("pub fn "))?;
                    let name = rest.split(['(', '<']).next()?;
                    Some(format!("{module}::{name}"))
                })
            })
            .collect();
        let storage: &[&str] = crate::__storage_checks!(__check_names []);
        let persistence: &[&str] = crate::__persistence_checks!(__check_names []);
        let engine: &[&str] = crate::__engine_checks!(__check_names []);
        let mut listed: Vec<String> = [storage, persistence, engine]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect();
        defined.sort();
        listed.sort();
        let before = listed.len();
        listed.dedup();
        assert_eq!(before, listed.len(), "a check is listed twice");
        assert_eq!(defined, listed);
    }
}
