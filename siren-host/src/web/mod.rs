//! The web listener (`[web]`, 127.0.0.1:7454 by default): the browser client's page at `/` (its
//! files from `[web] assets`, [`assets`]), the server's name and key at `/siren.json`, and Siren
//! sessions over a WebSocket at `/ws`.
//!
//! A WebSocket session is bridged to frames ([`socket`]) and served by the same session code as
//! the client listener's TCP connections: the same handshake, limits, timeouts and rate limits.
//! What this module adds is HTTP's part: each connection counts against `[limits]
//! max_connections` with the client listener's (a connection over the cap is closed at once, as
//! there), its request headers must arrive within `handshake_timeout_secs` (hyper's header
//! timeout, which also closes a connection idle that long between requests), the WebSocket upgrade
//! is refused to pages of other origins ([`origin`]), admission before login counts the client's
//! address — behind a trusted reverse proxy the one it forwards ([`forwarded`]) — and every answer
//! carries the page's security headers ([`assets`]). HTTPS through rustls when `tls_cert` and
//! `tls_key` are set ([`tls`]).

mod assets;
mod forwarded;
pub mod origin;
mod socket;
mod tls;
mod upgrade;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::config::WebSection;
use crate::shared::Shared;

/// What the web listener shares with the client listener: the connection cap and the numbering
/// of connections (in logs).
#[derive(Clone)]
pub struct Gate {
    /// `[limits] max_connections`, for both listeners together.
    pub limit: Arc<Semaphore>,
    /// The next connection's number.
    pub next_conn: Arc<AtomicU64>,
}

/// The bound web listener, its certificate loaded: start-up fails on either before serving.
pub struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    assets: Arc<assets::Assets>,
}

impl Bound {
    /// Loads the certificate (when configured) and the client's files, and binds `web.listen`.
    pub async fn bind(web: &WebSection) -> anyhow::Result<Bound> {
        let tls = match (&web.tls_cert, &web.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let assets = Arc::new(assets::Assets::load(web.assets.as_deref())?);
        let listener = TcpListener::bind(web.listen)
            .await
            .with_context(|| format!("cannot listen on {} (`web.listen`)", web.listen))?;
        Ok(Bound {
            listener,
            tls,
            assets,
        })
    }

    /// Where the browser client's files were read from (`None`: it is not built, and `/`
    /// says how to build it).
    pub fn assets_source(&self) -> Option<&std::path::Path> {
        self.assets.source.as_deref()
    }

    /// The page's address, e.g. `http://127.0.0.1:7454/`.
    pub fn url(&self) -> std::io::Result<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}/", self.listener.local_addr()?))
    }
}

/// What every request of one connection knows about it.
#[derive(Clone)]
struct Conn {
    assets: Arc<assets::Assets>,
    peer: SocketAddr,
    /// The connection's place under `max_connections`: taken by the WebSocket session when the
    /// connection is upgraded, else given back when the connection closes.
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    next_conn: Arc<AtomicU64>,
    sessions: TaskTracker,
}

/// Serves the web listener until shutdown; its connections and sessions are tracked by
/// `tracker` (for the drain at shutdown).
pub async fn serve(shared: Arc<Shared>, bound: Bound, gate: Gate, tracker: TaskTracker) {
    let Bound {
        listener,
        tls,
        assets,
    } = bound;
    let stop = stopped(shared.shutdown.clone());
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        shared.metrics.connections.inc();
        let Ok(permit) = gate.limit.clone().try_acquire_owned() else {
            shared.metrics.connection_refused("max_connections");
            tracing::warn!(%peer, "connection limit reached; refusing a web connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            assets: assets.clone(),
            peer,
            permit: Arc::new(Mutex::new(Some(permit))),
            next_conn: gate.next_conn.clone(),
            sessions: tracker.clone(),
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let step = Duration::from_secs(shared.config().limits.handshake_timeout_secs);
            match tls {
                None => http(shared, stream, conn, step).await,
                Some(tls) => match tokio::time::timeout(step, tls.accept(stream)).await {
                    Ok(Ok(stream)) => http(shared, stream, conn, step).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection (the page's files, or the upgrade to a WebSocket).
async fn http<S>(shared: Arc<Shared>, io: S, conn: Conn, step: Duration)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let peer = conn.peer;
    let app = router(shared.clone())
        .layer(Extension(conn.assets.clone()))
        .layer(Extension(conn));
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(step)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        () = stopped(shared.shutdown.clone()) => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "web connection ended");
    }
}

/// Resolves once the server is shutting down.
async fn stopped(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/siren.json", get(server_info))
        .fallback(get(assets::serve))
        .layer(middleware::map_response(assets::secure))
        .with_state(shared)
}

/// `GET /siren.json`: what the page needs to reach this server — its name and its key (which
/// the page pins when it creates a device, and checks in every handshake after).
async fn server_info(State(shared): State<Arc<Shared>>) -> Response {
    let body = serde_json::json!({
        "server": shared.keys.name.to_string(),
        "key": shared.keys.current.public().to_base64(),
        "websocket": "/ws",
    });
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `GET /ws`: the upgrade to a Siren session, for pages of an allowed origin.
async fn websocket(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    mut request: Request,
) -> Response {
    let config = shared.config();
    let headers = request.headers();
    if let Err(why) = origin::check(headers, &config.web.allowed_origins) {
        tracing::info!(peer = %conn.peer, %why, "WebSocket refused");
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let client = forwarded::client_addr(conn.peer, headers, &config.web.trusted_proxies);
    let upgrade = match upgrade::check(&mut request) {
        Ok(upgrade) => upgrade,
        Err(refused) => return refused.into_response(),
    };
    let Some(permit) = conn.permit.lock().ok().and_then(|mut p| p.take()) else {
        return (StatusCode::BAD_REQUEST, "one WebSocket per connection\n").into_response();
    };
    let admitted = shared.admission.admit(client.ip());
    if let Err(refusal) = &admitted {
        shared.metrics.connection_refused(refusal.name());
        tracing::debug!(%client, reason = refusal.as_str(), "WebSocket session refused");
    }
    let max = config.limits.max_frame as usize;
    let id = conn.next_conn.fetch_add(1, Ordering::Relaxed);
    let answer = upgrade.switching();
    let on_upgrade = upgrade.on_upgrade;
    conn.sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = socket::accept(upgraded, max).await;
                match admitted {
                    Ok(ticket) => {
                        shared.metrics.connections_open.inc();
                        socket::run(shared.clone(), ws, client, id, ticket).await;
                        shared.metrics.connections_open.dec();
                    }
                    Err(refusal) => socket::refuse(ws, refusal).await,
                }
            }
            Err(e) => tracing::debug!(%client, error = %e, "WebSocket upgrade failed"),
        }
        drop(permit);
    });
    answer
}
