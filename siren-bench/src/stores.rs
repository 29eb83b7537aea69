//! Store-level comparison: the same workload on RocksDB (the embedded default) and on
//! PostgreSQL, in the same run, through the `Storage` trait the server uses.
//!
//! * enqueue: `concurrency` tasks each enqueue one item per call (what one `send` to one
//!   device costs the server), every call durable before it returns;
//! * drain: read a device's whole queue page by page (256 per page, like a session) and
//!   acknowledge each page;
//! * lookup: read the directory entries of random users (what a `lookup` reads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use siren_api::Username;
use siren_api::storage::{EntryKind, NewQueueItem, Storage, StoredEntry};

/// The figures for one store.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Durable single-item enqueues per second.
    pub enqueue: f64,
    /// Items drained (read + acked) per second.
    pub drain: f64,
    /// Directory lookups per second.
    pub lookup: f64,
}

/// Sizes of the workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Items enqueued (then drained).
    pub items: usize,
    /// Concurrent enqueuers.
    pub concurrency: usize,
    /// Users with three directory entries each.
    pub users: usize,
    /// Lookups.
    pub lookups: usize,
}

/// Runs the workload on a fresh, empty store.
pub async fn measure(store: Arc<dyn Storage>, w: Workload) -> anyhow::Result<Figures> {
    let device = [7u8; 32];
    let payload = vec![0xa5u8; 512];
    let per_task = w.items / w.concurrency;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..w.concurrency {
        let store = store.clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            for _ in 0..per_task {
                store
                    .enqueue(&[NewQueueItem {
                        device,
                        expires: u64::MAX / 2,
                        bytes: payload.clone(),
                    }])
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let enqueue = rate(per_task * w.concurrency, start.elapsed());

    let start = Instant::now();
    let mut drained = 0;
    let mut after = 0;
    loop {
        let page = store.pending(&device, after, 256).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let seqs: Vec<u64> = page.iter().map(|i| i.seq).collect();
        store.ack(&device, &seqs).await?;
        drained += page.len();
    }
    anyhow::ensure!(
        drained == per_task * w.concurrency,
        "drained {drained} of {} items",
        per_task * w.concurrency
    );
    let drain = rate(drained, start.elapsed());

    let users: Vec<Username> = (0..w.users)
        .map(|i| Username::parse(&format!("user{i}")).context("username"))
        .collect::<anyhow::Result<_>>()?;
    for (i, user) in users.iter().enumerate() {
        for seq in 1..=3u64 {
            store
                .append_entry(
                    user,
                    &StoredEntry {
                        seq,
                        kind: EntryKind::Add,
                        device: [(i % 251) as u8; 32],
                        bytes: vec![seq as u8; 200],
                    },
                )
                .await?;
        }
    }
    let start = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..w.lookups {
        // xorshift: a cheap, fixed sequence of users.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = &users[(x % users.len() as u64) as usize];
        let entries = store.entries(user).await?;
        anyhow::ensure!(
            entries.len() == 3,
            "lookup of {user} found {}",
            entries.len()
        );
    }
    let lookup = rate(w.lookups, start.elapsed());
    Ok(Figures {
        enqueue,
        drain,
        lookup,
    })
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}
