//! Assembling and running the server: the store, the Authentication Manager, the Directory, the
//! Message Queue, the listener and the admin socket; graceful shutdown on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use siren_proto::handshake::ResponderKeys;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::admission::{Admission, Refusal};
use crate::approvals::Approvals;
use crate::auth::{AuthManager, LoginLimitConfig, LoginLimits};
use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::pubsub::PubSub;
use crate::queue::{self, Queue};
use crate::quota::{SendRate, UsageCache};
use crate::rate::Rate;
use crate::roster::Rosters;
use crate::shared::Shared;
use crate::{filemodes, keyfile, registry, session};

/// How long connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Loads keys, opens the store, binds the listener and serves until SIGINT or SIGTERM.
pub async fn run(config: Config, reloader: Arc<crate::reload::Reloader>) -> anyhow::Result<()> {
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
    // The store holds password hashes and everything else sirend keeps: only its own user may
    // read it (files are created private by the umask; directories made by hand are checked).
    filemodes::create_private_dir(&config.server.data_dir)?;
    filemodes::refuse_shared(
        &config.server.data_dir,
        "data directory",
        filemodes::PRIVATE_DIR,
    )?;
    let store_dir = config.storage_path();
    if store_dir.exists() {
        filemodes::refuse_shared(&store_dir, "store directory", filemodes::PRIVATE_DIR)?;
    }
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
    let mechanisms = registry::open_mechanisms(&config, credentials.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let local = listener.local_addr()?;
    let web = if config.web.enabled {
        Some(crate::web::Bound::bind(&config.web).await?)
    } else {
        None
    };
    let web_url = web.as_ref().map(crate::web::Bound::url).transpose()?;
    let started = std::time::Instant::now();
    // Bound before the store is served, after it was opened: a second server on the same
    // RocksDB store fails on the store's lock before it could touch the first one's socket.
    let socket = crate::control::socket_path(&config);
    let control = crate::control::listener::bind(&socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let hub = Arc::new(Hub::default());
    let metrics = crate::metrics::Metrics::new();
    let usage = UsageCache::new(
        storage.clone(),
        config.limits.max_queue_items_per_device,
        config.limits.max_queue_bytes_per_device,
    );
    let shared = Arc::new(Shared {
        keys: ResponderKeys {
            name: config.server.name.clone(),
            current: sek,
            retired,
        },
        auth: AuthManager::new(mechanisms, LoginLimits::new(login_limits(&config))),
        admission: Admission::new(&config.limits),
        directory: Directory::new(storage.clone(), config.limits.max_directory_entries),
        queue: Queue::new(
            storage.clone(),
            hub.clone(),
            config.limits.queue_ttl_secs,
            usage.clone(),
            metrics.messages_acknowledged_unsynced.clone(),
        ),
        send_rate: {
            let (envelopes, bytes) = send_rates(&config.limits);
            SendRate::new(envelopes, bytes)
        },
        directory_changes: crate::rate::Buckets::new(
            directory_change_rate(&config.limits),
            100_000,
        ),
        credentials,
        hub,
        rosters: Rosters::new(storage.clone(), config.roster.non_contacts),
        pubsub: PubSub::default(),
        approvals: Approvals::new(
            config.limits.pending_approvals_per_account,
            config.limits.pending_approvals_per_address,
        ),
        filters: arc_swap::ArcSwap::from_pointee(filters),
        directory_hooks: arc_swap::ArcSwap::from_pointee(directory_hooks),
        links,
        outboxes: crate::federation::waiting::Outboxes::new(&config.federation),
        storage: storage.clone(),
        metrics,
        shutdown: stop_rx.clone(),
        cluster: std::sync::OnceLock::new(),
        running: arc_swap::ArcSwap::from_pointee(config),
    });
    reloader.attach(&shared);
    let cluster = shared.config().cluster.clone();
    if cluster.enabled {
        // Other nodes append to the same chains: a cached one is trusted for one re-read period.
        shared
            .directory
            .set_shared(std::time::Duration::from_secs(cluster.poll_secs));
        crate::cluster::join(&cluster, shared.clone()).await?;
        tracing::info!(node = %cluster.node_id, nats = ?cluster.nats, "cluster node");
    }
    crate::federation::outbox::resume_outboxes(&shared).await;
    if let Some(events) = shared.links.take_events() {
        tokio::spawn(crate::federation::presence::deliver_events(
            shared.clone(),
            events,
        ));
    }
    tracing::info!(
        name = %shared.config().server.name,
        listen = %local,
        sek = %shared.keys.current.public(),
        storage = %storage.describe(),
        mechanisms = ?shared.auth.names(),
        "sirend ready"
    );
    if shared.config().metrics.enabled {
        let at = shared.config().metrics.listen;
        let metrics = TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot listen on {at} (`metrics.listen`)"))?;
        tracing::info!(listen = %metrics.local_addr()?, "metrics on /metrics, /healthz, /readyz");
        tokio::spawn(crate::metrics::http::serve(shared.clone(), metrics));
    }
    let admin = tokio::spawn(crate::control::listener::serve(
        Arc::new(crate::control::commands::Ops::live(
            shared.clone(),
            crate::control::commands::ServerInfo {
                started,
                listen: local,
                web: web_url.clone(),
                socket: socket.clone(),
                reload: reloader.clone(),
            },
        )),
        control,
        stop_rx.clone(),
    ));
    let limit = Arc::new(Semaphore::new(shared.config().limits.max_connections));
    let next_conn = Arc::new(AtomicU64::new(1));
    let web_sessions = tokio_util::task::TaskTracker::new();
    if let Some(web) = web {
        // Tests and scripts read this line to learn the web port when listening on port 0.
        let url = web.url()?;
        println!("web client on {url}");
        match web.assets_source() {
            Some(dir) => tracing::info!(%url, files = %dir.display(), "web client and WebSocket"),
            None => tracing::warn!(
                %url,
                "the web client is not built (scripts/build-web.sh, then `[web] assets`): \
                 serving its WebSocket and a page saying so"
            ),
        }
        let gate = crate::web::Gate {
            limit: limit.clone(),
            next_conn: next_conn.clone(),
        };
        tokio::spawn(crate::web::serve(
            shared.clone(),
            web,
            gate,
            web_sessions.clone(),
        ));
    }
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on {local}");

    let sweeper = tokio::spawn(queue::sweeper(
        storage.clone(),
        usage,
        Duration::from_secs(shared.config().limits.sweep_interval_secs),
        shared.config().limits.session_ttl_secs,
        shared.metrics.messages_expired.clone(),
        stop_rx.clone(),
    ));
    let account_watch = tokio::spawn(crate::accounts::watch(shared.clone()));
    let mut connections = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")?;
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
                shared.metrics.connections.inc();
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    shared.metrics.connection_refused("max_connections");
                    tracing::warn!(%peer, "connection limit reached; refusing");
                    drop(stream);
                    continue;
                };
                let ticket = match shared.admission.admit(peer.ip()) {
                    Ok(ticket) => ticket,
                    Err(refusal) => {
                        shared.metrics.connection_refused(refusal.name());
                        tracing::debug!(%peer, reason = refusal.as_str(), "connection refused");
                        refuse(&stream, refusal);
                        drop(stream);
                        continue;
                    }
                };
                let conn = next_conn.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                connections.spawn(async move {
                    match session::Connection::tcp(stream) {
                        Ok(connection) => {
                            shared.metrics.connections_open.inc();
                            session::serve(shared.clone(), connection, peer, conn, ticket).await;
                            shared.metrics.connections_open.dec();
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "connection lost at once"),
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut signal => break,
            Some(()) = hangup.recv() => {
                // Off the accept loop: a reload reads a file and may load plugins' checks.
                let reloader = reloader.clone();
                tokio::task::spawn_blocking(move || match reloader.reload() {
                    Ok(done) => tracing::info!("SIGHUP: {}", done.trim_end()),
                    Err(e) => tracing::warn!("SIGHUP: {e:#}"),
                });
            }
        }
    }

    tracing::info!(
        open = connections.len() + web_sessions.len(),
        "shutting down: no new connections"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    web_sessions.close();
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
        web_sessions.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len() + web_sessions.len(),
            "connections did not finish in time; closing them"
        );
        connections.shutdown().await;
    }
    let _ = sweeper.await;
    let _ = admin.await;
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!(socket = %socket.display(), error = %e, "cannot remove the admin socket");
    }
    let _ = account_watch.await;
    storage
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("final flush failed: {e}"))?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Tells a refused client why, in a plaintext `error` frame (PROTOCOL.md §7.4) written without
/// waiting: the socket is fresh, so its buffer has room, and a client that does not read loses
/// nothing the server cares about.
fn refuse(stream: &tokio::net::TcpStream, refusal: Refusal) {
    let frame = siren_proto::handshake::error_frame(
        siren_api::ErrorCode::RateLimited,
        &format!("{}; try again later", refusal.as_str()),
    );
    let mut bytes = Vec::with_capacity(frame.len() + 4);
    bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&frame);
    let _ = stream.try_write(&bytes);
}

/// The login limits of `config` (0 concurrent logins: twice the CPU cores).
fn login_limits(config: &Config) -> LoginLimitConfig {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    LoginLimitConfig {
        max_concurrent: match config.auth.max_concurrent_logins {
            0 => 2 * cores,
            n => n,
        },
        per_address: config.auth.failures_per_address_per_minute,
        per_address_and_account: config.auth.failures_per_address_and_account_per_minute,
        per_account: config.auth.failures_per_account_per_minute,
    }
}

/// The per-sender rates of `limits`: envelopes, and bytes.
pub(crate) fn send_rates(limits: &crate::config::Limits) -> (Rate, Rate) {
    (
        Rate {
            per_second: f64::from(limits.send_envelopes_per_second),
            burst: f64::from(limits.send_envelope_burst),
        },
        Rate {
            per_second: limits.send_bytes_per_second as f64,
            burst: limits.send_byte_burst as f64,
        },
    )
}

/// The rate of device registrations and revocations per user of `limits`.
pub(crate) fn directory_change_rate(limits: &crate::config::Limits) -> Rate {
    Rate {
        per_second: f64::from(limits.directory_changes_per_hour) / 3600.0,
        burst: f64::from(limits.directory_changes_per_hour),
    }
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
