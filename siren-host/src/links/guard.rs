//! What keeps peers' DNS from being asked again and again: DNS answers that a server does not
//! exist (or publishes no usable key or address) are remembered for a while (`[federation]
//! negative_cache_secs`), and link attempts that need a DNS lookup have a budget per address
//! (`new_peer_hellos_per_address_per_minute`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use siren_api::{Error, ServerName};

/// Most entries either table keeps; beyond it, expired entries are dropped first and new ones
/// are not remembered.
const MAX_ENTRIES: usize = 10_000;

/// Failed lookups by server name, each remembered for the cache's time to live.
pub(super) struct NegativeCache {
    ttl: Duration,
    entries: Mutex<HashMap<ServerName, (Instant, Error)>>,
}

impl NegativeCache {
    pub(super) fn new(ttl: Duration) -> Self {
        NegativeCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The error remembered for `peer`, while it is fresh.
    pub(super) fn get(&self, peer: &ServerName) -> Option<Error> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(peer) {
            Some((until, e)) if *until > Instant::now() => Some(e.clone()),
            Some(_) => {
                entries.remove(peer);
                None
            }
            None => None,
        }
    }

    /// Remembers that looking `peer` up failed with `error`.
    pub(super) fn put(&self, peer: &ServerName, error: &Error) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (until, _)| *until > now);
        }
        if entries.len() < MAX_ENTRIES {
            entries.insert(peer.clone(), (now + self.ttl, error.clone()));
        }
    }
}

/// A budget of events per minute for each address (each IPv6 /64 counts as one address).
pub(super) struct PerAddress {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl PerAddress {
    pub(super) fn new(per_minute: u32) -> Self {
        PerAddress {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event from `addr`; false (and not counted) when its minute's budget is spent.
    pub(super) fn allow(&self, addr: IpAddr) -> bool {
        let key = network(addr);
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_ENTRIES && !windows.contains_key(&key) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < MINUTE);
            if windows.len() >= MAX_ENTRIES {
                // A flood from more addresses than the table holds: refuse new ones rather than
                // forget the spent budgets of others.
                return false;
            }
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= MINUTE {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            return false;
        }
        *count += 1;
        true
    }
}

/// The unit of the budget: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64.
fn network(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_api::ErrorCode;

    #[test]
    fn the_budget_counts_per_address_and_per_ipv6_64() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limit.allow(a));
        assert!(limit.allow(mapped), "the same address, written as IPv6");
        assert!(!limit.allow(a));
        assert!(limit.allow("192.0.2.2".parse().unwrap()));
        assert!(limit.allow("2001:db8:1:2::1".parse().unwrap()));
        assert!(limit.allow("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(
            !limit.allow("2001:db8:1:2:abcd::1".parse().unwrap()),
            "one /64"
        );
        assert!(limit.allow("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn failures_are_remembered_for_the_time_to_live_only() {
        let peer = ServerName::parse("nowhere.test").unwrap();
        let e = Error::new(ErrorCode::PeerUnreachable, "no");
        let cache = NegativeCache::new(Duration::from_millis(50));
        assert_eq!(cache.get(&peer), None);
        cache.put(&peer, &e);
        assert_eq!(cache.get(&peer), Some(e.clone()));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&peer), None);
        let off = NegativeCache::new(Duration::ZERO);
        off.put(&peer, &e);
        assert_eq!(off.get(&peer), None);
    }
}
