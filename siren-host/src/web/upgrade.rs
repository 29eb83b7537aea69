//! The WebSocket opening handshake (RFC 6455 §4.2), done here rather than by axum's extractor so
//! that sirend holds the upgraded connection itself ([`super::socket`] reads what a client still
//! sends after a close frame; axum's `WebSocket` does not give its connection back).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// An upgrade request checked: the value of its answer's `Sec-WebSocket-Accept`, and the
/// connection once hyper hands it over.
pub struct Upgrade {
    accept: HeaderValue,
    /// Resolves to the connection after the `101` answer went out.
    pub on_upgrade: OnUpgrade,
}

/// Why an upgrade request is refused: 400, or 426 for a WebSocket version other than 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    status: StatusCode,
    why: &'static str,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = format!("{}\n", self.why);
        if self.status == StatusCode::UPGRADE_REQUIRED {
            (self.status, [(header::SEC_WEBSOCKET_VERSION, "13")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

fn bad(why: &'static str) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        why,
    }
}

/// Checks that `request` asks for a WebSocket (version 13) and takes its connection's upgrade.
pub fn check(request: &mut Request) -> Result<Upgrade, Refused> {
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(bad(
            "not a WebSocket request: Connection must include upgrade",
        ));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(bad("not a WebSocket request: Upgrade must be websocket"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refused {
            status: StatusCode::UPGRADE_REQUIRED,
            why: "WebSocket version 13 only",
        });
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad("not a WebSocket request: no Sec-WebSocket-Key"));
    };
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| bad("a bad Sec-WebSocket-Key"))?;
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return Err(bad("this connection cannot be upgraded"));
    };
    Ok(Upgrade { accept, on_upgrade })
}

impl Upgrade {
    /// The `101 Switching Protocols` answer (no subprotocol, no extension).
    pub fn switching(&self) -> Response {
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept.clone()),
            ],
        )
            .into_response()
    }
}

/// Whether a comma-separated header `name` lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/ws");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn requests_that_are_not_websockets_are_refused_with_the_reason() {
        for (drop, status) in [
            ("connection", StatusCode::BAD_REQUEST),
            ("upgrade", StatusCode::BAD_REQUEST),
            ("sec-websocket-version", StatusCode::UPGRADE_REQUIRED),
            ("sec-websocket-key", StatusCode::BAD_REQUEST),
        ] {
            let headers: Vec<_> = GOOD.iter().copied().filter(|(k, _)| *k != drop).collect();
            let refused = check(&mut request(&headers)).err().map(|r| r.status);
            assert_eq!(refused, Some(status), "without {drop}");
        }
        // Everything right, but no connection to take over (not served by hyper).
        assert_eq!(
            check(&mut request(&GOOD)).err().map(|r| r.status),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
