//! The client's address behind a reverse proxy: the per-address limits (admission, login
//! failures) must count the person's address, not the proxy's, or one proxy would lock out
//! everyone behind it. Only proxies listed in `[web] trusted_proxies` are believed; their
//! `X-Forwarded-For` is read from the right (the entry the nearest trusted proxy added).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The address the client is counted under: `peer`, or when `peer` is a trusted proxy, the
/// rightmost address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| same(*t, ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let mut hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    while let Some(hop) = hops.pop() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return SocketAddr::new(ip, 0),
            // A value we cannot read: stop believing what lies left of it.
            Err(_) => break,
        }
    }
    peer
}

/// IPv4 and its IPv4-mapped IPv6 form are the same address.
fn same(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = ["127.0.0.1".parse().unwrap()];
        assert_eq!(
            client_addr(proxy, &xff("203.0.113.7"), &trusted).ip(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Not a trusted proxy: its header is ignored.
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(
            client_addr(stranger, &xff("203.0.113.7"), &trusted),
            stranger
        );
        // The client may write anything left of what the proxy appended.
        assert_eq!(
            client_addr(proxy, &xff("10.9.9.9, 203.0.113.7"), &trusted).ip(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Garbage: the proxy's own address.
        assert_eq!(client_addr(proxy, &xff("nonsense"), &trusted), proxy);
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &trusted), proxy);
        // Mapped IPv6 of a trusted IPv4 proxy.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(
            client_addr(mapped, &xff("203.0.113.7"), &trusted).ip(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }
}
