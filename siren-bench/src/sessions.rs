//! Server memory per idle authenticated session: thousands of devices (several per user, each
//! with its own registered DEK) hold ready sessions that do nothing; the server's resident
//! memory is read before and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use siren_proto::handshake::SessionRequest;
use siren_proto::keys::DekSecret;
use siren_proto::message::ServerMessage;
use tokio::task::JoinSet;

use crate::client::{self, Account, Device};
use crate::procfs;
use crate::server::Server;

/// What the memory measurement found.
pub struct Memory {
    /// Idle sessions held open.
    pub sessions: usize,
    /// Users they belong to.
    pub users: usize,
    /// sirend's resident memory after a restart, before any session.
    pub rss_before: u64,
    /// With every session open, ready and idle, `settle` after the last resumption (once the
    /// server's idle blocking threads, which ran the resumptions' store calls, have exited).
    pub rss_after: u64,
    /// The same, 2 s after the last resumption (blocking threads still alive).
    pub rss_early: u64,
    /// sirend's thread count before, 2 s after, and `settle` after the last resumption.
    pub threads: (u64, u64, u64),
    /// sirend's resident memory after another restart, and with as many fresh sessions that
    /// have not logged in (handshake, `welcome`, `auth_mechanisms`), `settle` after the last.
    pub unauthenticated: (u64, u64),
    /// How long registering every device took (login and `register`, sessions then closed).
    pub enroll_elapsed: Duration,
    /// How long resuming every session took (at [`WORKERS`] concurrent connectors).
    pub resume_elapsed: Duration,
}

impl Memory {
    /// Bytes of resident memory per session.
    pub fn per_session(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.sessions.max(1) as f64
    }
}

/// Concurrent connectors while enrolling and resuming.
pub const WORKERS: usize = 64;

/// The user names the memory measurement needs (`sirend user add` them before starting).
pub fn user_names(users: usize) -> Vec<String> {
    (0..users).map(|i| format!("m{i}")).collect()
}

/// Registers `per_user` devices for each of `users` users (created with [`user_names`]) on the
/// running `server`, restarts it (so its memory starts clean), then resumes every device's
/// session and keeps them all open and idle while reading the server's resident memory, 2 s and
/// `settle` after the last resumption (tokio keeps an idle blocking thread for 10 s, and the
/// store's calls run on blocking threads: 12 s lets them exit).
pub async fn measure(
    server: &mut Server,
    users: usize,
    per_user: usize,
    settle: Duration,
) -> anyhow::Result<Memory> {
    let target = server.target()?;
    let start = Instant::now();
    let enrolled: Vec<Vec<Device>> = parallel(users, WORKERS, {
        let target = target.clone();
        move |u| {
            let target = target.clone();
            async move {
                let account = Account::new(&target, &format!("m{u}"))?;
                let mut devices = Vec::with_capacity(per_user);
                // One user's devices one after the other: each record continues the chain.
                for _ in 0..per_user {
                    let (device, conn) = client::enroll(&target, &account).await?;
                    client::bye(conn).await?;
                    devices.push(device);
                }
                Ok(devices)
            }
        }
    })
    .await
    .context("registering devices")?;
    let enroll_elapsed = start.elapsed();
    let devices: Arc<Vec<Device>> = Arc::new(enrolled.into_iter().flatten().collect());

    // A fresh process: nothing allocated by the registrations is left in it.
    server.stop()?;
    server.start()?;
    let target = server.target()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss()?;
    let pid = server.pid()?;
    let threads_before = procfs::threads(pid)?;

    let start = Instant::now();
    let sessions = parallel(devices.len(), WORKERS, {
        let devices = devices.clone();
        move |i| {
            let (target, devices) = (target.clone(), devices.clone());
            async move {
                let mut conn = client::resume(&target, &devices[i]).await?;
                client::drained(&mut conn).await?;
                Ok(conn)
            }
        }
    })
    .await
    .context("resuming sessions")?;
    let resume_elapsed = start.elapsed();
    // Let the server finish whatever the last sessions started.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_early = server.rss()?;
    let threads_early = procfs::threads(pid)?;
    tokio::time::sleep(settle.saturating_sub(Duration::from_secs(2))).await;
    let rss_after = server.rss()?;
    let threads_after = procfs::threads(pid)?;
    let count = sessions.len();
    drop(sessions);

    // Diagnostic: the same number of sessions that only did the handshake.
    server.stop()?;
    server.start()?;
    let target = server.target()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh_before = server.rss()?;
    let fresh = parallel(count, WORKERS, move |_| {
        let target = target.clone();
        async move {
            let dek = DekSecret::generate(&mut siren_proto::os_rng());
            let mut conn = client::open(&target, &dek, SessionRequest::Open).await?;
            client::welcome(&mut conn).await?;
            match client::recv(&mut conn).await? {
                ServerMessage::AuthMechanisms { .. } => Ok(conn),
                other => anyhow::bail!("expected auth_mechanisms, got {other:?}"),
            }
        }
    })
    .await
    .context("opening unauthenticated sessions")?;
    tokio::time::sleep(settle).await;
    let fresh_after = server.rss()?;
    drop(fresh);

    Ok(Memory {
        sessions: count,
        users,
        rss_before,
        rss_after,
        rss_early,
        threads: (threads_before, threads_early, threads_after),
        unauthenticated: (fresh_before, fresh_after),
        enroll_elapsed,
        resume_elapsed,
    })
}

/// Runs `one(i)` for every `i < count` on `workers` concurrent tasks; the results in order.
pub async fn parallel<T, F, Fut>(count: usize, workers: usize, one: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.min(count) {
        let (one, next) = (one.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(done);
                }
                done.push((i, one(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(finished) = tasks.join_next().await {
        all.extend(finished.context("a worker task failed")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}
