//! Which pages may open the WebSocket: the `Origin` check (RFC 6455 §10.2).
//!
//! A browser names the page that opens a WebSocket in `Origin`, and the server must refuse pages
//! it does not serve: otherwise any site the person visits could open a session to their server
//! from their browser (cross-site WebSocket hijacking). Siren's sessions are authenticated inside
//! the protocol, not by cookies, so such a page learns nothing it could not learn by connecting
//! itself; the check still keeps other sites' pages from spending this server's connections and
//! the person's login attempts. Clients other than browsers send no `Origin` and are let through
//! (they could send any value they liked).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// Whether `text` is an origin as browsers send it: `scheme://host[:port]`, nothing after.
pub fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && !rest.chars().any(char::is_whitespace)
}

/// Checks the request's `Origin` against `allowed` (when empty, the origin the `Host` header
/// names, on `http` or `https`). `Err` says why for the 403 answer.
pub fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "the Origin header is not text".to_owned())?;
    let ok = if allowed.is_empty() {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        !host.is_empty()
            && [("http://", host), ("https://", host)]
                .iter()
                .any(|(scheme, host)| {
                    origin
                        .strip_prefix(scheme)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
                })
    } else {
        allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "pages from {origin} may not open a session here (web.allowed_origins)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_by_default() {
        let allowed: Vec<String> = Vec::new();
        let h = headers(&[
            ("host", "127.0.0.1:7454"),
            ("origin", "http://127.0.0.1:7454"),
        ]);
        assert!(check(&h, &allowed).is_ok());
        let h = headers(&[("host", "chat.example"), ("origin", "https://chat.example")]);
        assert!(check(&h, &allowed).is_ok());
        let h = headers(&[
            ("host", "127.0.0.1:7454"),
            ("origin", "http://evil.example"),
        ]);
        assert!(check(&h, &allowed).is_err());
        // Another port is another origin.
        let h = headers(&[
            ("host", "127.0.0.1:7454"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(check(&h, &allowed).is_err());
        // `null` (sandboxed frames, files) is no origin of ours.
        let h = headers(&[("host", "127.0.0.1:7454"), ("origin", "null")]);
        assert!(check(&h, &allowed).is_err());
        let h = headers(&[("origin", "http://127.0.0.1:7454")]);
        assert!(check(&h, &allowed).is_err(), "no Host, nothing to match");
    }

    #[test]
    fn listed_origins_replace_the_default() {
        let allowed = vec!["https://chat.example.com".to_owned()];
        let h = headers(&[
            ("host", "10.0.0.5:7454"),
            ("origin", "https://chat.example.com"),
        ]);
        assert!(check(&h, &allowed).is_ok());
        let h = headers(&[
            ("host", "10.0.0.5:7454"),
            ("origin", "http://10.0.0.5:7454"),
        ]);
        assert!(check(&h, &allowed).is_err());
    }

    #[test]
    fn no_origin_is_not_a_browser() {
        assert!(check(&headers(&[("host", "x")]), &[]).is_ok());
    }

    #[test]
    fn origins_are_recognised() {
        assert!(is_origin("https://chat.example.com"));
        assert!(is_origin("http://127.0.0.1:7454"));
        assert!(!is_origin("chat.example.com"));
        assert!(!is_origin("https://chat.example.com/"));
        assert!(!is_origin("https://"));
        assert!(!is_origin("https://a b"));
    }
}
