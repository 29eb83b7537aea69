//! The page: the web client's files, built into `sirend`, each answered with the security headers
//! a page that holds keys needs — a Content-Security-Policy that lets it load nothing and talk to
//! nothing outside its own origin, no framing, no sniffing, no referrer.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The policy of every page: scripts and the wasm module from this origin only (wasm needs
/// `'wasm-unsafe-eval'` to be compiled, not `'unsafe-eval'`), the WebSocket and nothing else to
/// talk to, no plugins, no base URL, no forms posted elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' \
     'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One file of the web client.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The files `sirend` serves. Until the browser client is built into `sirend` (issue 15), the
/// page says so and names the WebSocket other clients can use.
const ASSETS: &[Asset] = &[Asset {
    path: "/",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("placeholder.html"),
}];

/// Adds a `GET` route for each built-in file.
pub fn routes<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    ASSETS.iter().fold(router, |router, asset| {
        router.route(asset.path, axum::routing::get(serve))
    })
}

/// Anything else.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Answers `GET uri` from the built-in files.
async fn serve(uri: Uri) -> Response {
    match ASSETS.iter().find(|a| a.path == uri.path()) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body,
        )
            .into_response(),
        None => not_found().await,
    }
}

/// Adds the security headers to every answer of the web listener.
pub async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    response
}
