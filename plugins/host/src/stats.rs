//! What the plugins' calls did, per plugin name, for the server's metrics: calls made, calls
//! that failed (trap, deadline, memory, a guest error) and calls interrupted at their deadline.
//!
//! The counters live in a process-wide table keyed by the plugin's configured name, so a plugin
//! rebuilt by a configuration reload keeps counting where its predecessor stopped (Prometheus
//! counters never go backwards). The table holds one entry per name ever loaded: the names come
//! from the operator's configuration, so it stays small.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::error::PluginError;

/// One plugin's counters.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    deadline_hits: AtomicU64,
}

/// A copy of one plugin's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCounts {
    /// Calls made (instantiation and `init` not included).
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls interrupted at their CPU deadline (also counted in `errors`).
    pub deadline_hits: u64,
}

impl CallStats {
    /// Counts one call and how it ended.
    pub(crate) fn record<R>(&self, outcome: &Result<R, PluginError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = outcome {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if matches!(e, PluginError::Deadline { .. }) {
                self.deadline_hits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn counts(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            deadline_hits: self.deadline_hits.load(Ordering::Relaxed),
        }
    }
}

fn table() -> &'static Mutex<BTreeMap<String, Arc<CallStats>>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, Arc<CallStats>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The counters of the plugin named `name` (created at its first load).
pub(crate) fn for_plugin(name: &str) -> Arc<CallStats> {
    table()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// Every plugin's counters, by name.
pub fn call_counts() -> Vec<(String, CallCounts)> {
    table()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(name, stats)| (name.clone(), stats.counts()))
        .collect()
}
