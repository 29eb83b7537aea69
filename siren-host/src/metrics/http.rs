//! The metrics listener (`[metrics] enabled`, `listen`, loopback by default): `/metrics` in the
//! OpenMetrics text format Prometheus asks for (the classic text format for other scrapers), `/healthz` (the process answers) and `/readyz`
//! (the store answers, the client listener is bound, the plugins are loaded: 200, else 503 with
//! what is wrong).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use siren_api::Username;
use tokio::net::TcpListener;

use crate::shared::Shared;

/// How long `/readyz` waits for the store.
const STORE_PROBE: Duration = Duration::from_secs(2);

/// Serves the metrics endpoints on `listener` until the server shuts down.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    let stopped = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
}

/// OpenMetrics for a scraper that accepts it (Prometheus does), else the classic text format.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    shared.metrics.sample(&shared).await;
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            shared.metrics.encode(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            shared.metrics.encode_classic(),
        )
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // A read of a key that never exists: answered from the store, whatever it holds.
    let probe = Username::parse("readyz-probe").map_err(|e| e.to_string());
    let store = match probe {
        Ok(user) => match tokio::time::timeout(STORE_PROBE, shared.storage.account(&user)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("store: {e}")),
            Err(_) => Err(format!(
                "store: no answer within {} s",
                STORE_PROBE.as_secs()
            )),
        },
        Err(e) => Err(e),
    };
    // The listener is bound and the plugins loaded before this endpoint exists; a server
    // shutting down is no longer ready.
    let stopping = *shared.shutdown.borrow();
    match (store, stopping) {
        (Ok(()), false) => (
            StatusCode::OK,
            "ready: store answers, listener bound, plugins loaded\n".to_owned(),
        ),
        (Err(why), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
        (Ok(()), true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".to_owned(),
        ),
    }
}
