//! Assembling and running the server: the store, the Authentication Manager, the Directory, the
//! Message Queue and the listener; graceful shutdown on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use siren_proto::handshake::ResponderKeys;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::approvals::Approvals;
use crate::auth::{AuthManager, RateLimiter};
use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::pubsub::PubSub;
use crate::queue::{self, Queue};
use crate::roster::Rosters;
use crate::shared::Shared;
use crate::{keyfile, registry, session};

/// How long connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Loads keys, opens the store, binds the listener and serves until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (sek, created) = keyfile::read_or_create(&config.server.key_file)?;
    if created {
        tracing::warn!(
            file = %config.server.key_file.display(),
            "created a new Server Encryption Key; publish it in DNS (sirend dns-records)"
        );
    }
    let retired = config
        .server
        .retired_key_files
        .iter()
        .map(|p| keyfile::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("cannot create {}", config.server.data_dir.display()))?;
    registry::check_plugins(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let filters = registry::open_filters(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let federation =
        registry::open_federation_policy(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let links = crate::links::Links::new(
        &config,
        siren_proto::keys::SekSecret::from_bytes(*sek.to_bytes()),
        federation,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let directory_hooks =
        registry::open_directory_hooks(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let storage = registry::open_storage(&config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let credentials = registry::open_credentials(&config, storage.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mechanisms =
        registry::open_mechanisms(&config, credentials).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let hub = Arc::new(Hub::default());
    let shared = Arc::new(Shared {
        keys: ResponderKeys {
            name: config.server.name.clone(),
            current: sek,
            retired,
        },
        auth: AuthManager::new(
            mechanisms,
            RateLimiter::new(
                config.auth.failures_per_address_per_minute,
                config.auth.failures_per_account_per_minute,
            ),
        ),
        directory: Directory::new(storage.clone()),
        queue: Queue::new(storage.clone(), hub.clone(), config.limits.queue_ttl_secs),
        hub,
        rosters: Rosters::new(storage.clone(), config.roster.non_contacts),
        pubsub: PubSub::default(),
        approvals: Approvals::default(),
        filters,
        directory_hooks,
        links,
        outboxes: crate::federation::waiting::Outboxes::new(&config.federation),
        storage: storage.clone(),
        shutdown: stop_rx.clone(),
        config,
    });
    crate::federation::outbox::resume_outboxes(&shared).await;
    if let Some(events) = shared.links.take_events() {
        tokio::spawn(crate::federation::presence::deliver_events(
            shared.clone(),
            events,
        ));
    }
    tracing::info!(
        name = %shared.config.server.name,
        listen = %local,
        sek = %shared.keys.current.public(),
        storage = %storage.describe(),
        mechanisms = ?shared.auth.names(),
        "sirend ready"
    );
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {local}");

    let sweeper = tokio::spawn(queue::sweeper(
        storage.clone(),
        Duration::from_secs(shared.config.limits.sweep_interval_secs),
        shared.config.limits.session_ttl_secs,
        stop_rx.clone(),
    ));
    let limit = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    let next_conn = AtomicU64::new(1);
    let mut connections = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; refusing");
                    drop(stream);
                    continue;
                };
                let conn = next_conn.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                connections.spawn(async move {
                    session::serve(shared, stream, peer, conn).await;
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut signal => break,
        }
    }

    tracing::info!(
        open = connections.len(),
        "shutting down: no new connections"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections did not finish in time; closing them"
        );
        connections.shutdown().await;
    }
    let _ = sweeper.await;
    storage
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("final flush failed: {e}"))?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
