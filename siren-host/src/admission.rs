//! Which connections get in before anyone has logged in (PROTOCOL.md §20).
//!
//! An anonymous connection costs a slot, a handshake (two X25519 operations) and, if it tries to
//! log in, a password hash; so anonymous connections are bounded separately from logged-in ones:
//!
//! * at most `unauthenticated_per_address` of them per client address — an IPv4 address, or the
//!   /64 an IPv6 address belongs to (one host usually has a whole /64), IPv4-mapped IPv6 counted
//!   as IPv4;
//! * at most `handshakes_per_address_per_second` new connections per address (a token bucket
//!   with a burst of a few seconds' worth);
//! * at most `max_unauthenticated` of them server-wide, so logged-in sessions always find room
//!   under `max_connections`.
//!
//! A connection holds a [`Ticket`]; once it logs in (or resumes a logged-in session) the ticket
//! moves to the logged-in side, and dropping it (the connection closing) gives the slot back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Limits;
use crate::rate::{Buckets, Rate};

/// The unit connections are counted by: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    /// An IPv4 address (also for IPv4-mapped IPv6).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl AddrKey {
    /// The key `addr` is counted under.
    pub fn of(addr: IpAddr) -> AddrKey {
        match addr {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&o[..8]);
                    AddrKey::V6(prefix)
                }
            },
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address has too many connections that have not logged in.
    PerAddress,
    /// The address opens connections too fast.
    HandshakeRate,
    /// The server has too many connections that have not logged in.
    ServerWide,
}

impl Refusal {
    /// For the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerAddress => "too many unauthenticated connections from this address",
            Refusal::HandshakeRate => "too many new connections per second from this address",
            Refusal::ServerWide => "too many unauthenticated connections server-wide",
        }
    }

    /// A short name, for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::PerAddress => "per_address",
            Refusal::HandshakeRate => "handshake_rate",
            Refusal::ServerWide => "server_wide",
        }
    }
}

#[derive(Default)]
struct Counts {
    by_key: HashMap<AddrKey, u32>,
    total: usize,
}

/// The admission state of the server.
pub struct Admission {
    per_address: AtomicU32,
    server_wide: AtomicUsize,
    handshakes: Buckets<AddrKey>,
    counts: Mutex<Counts>,
}

/// A connection's place: unauthenticated until [`Ticket::logged_in`].
pub struct Ticket {
    admission: Arc<Admission>,
    key: AddrKey,
    unauthenticated: bool,
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: &Limits) -> Arc<Admission> {
        Arc::new(Admission {
            per_address: AtomicU32::new(limits.unauthenticated_per_address),
            server_wide: AtomicUsize::new(limits.max_unauthenticated),
            handshakes: Buckets::new(handshake_rate(limits), 100_000),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Applies new limits (a reload) to the connections admitted from now on.
    pub fn set_limits(&self, limits: &Limits) {
        self.per_address
            .store(limits.unauthenticated_per_address, Ordering::Relaxed);
        self.server_wide
            .store(limits.max_unauthenticated, Ordering::Relaxed);
        self.handshakes.set_rate(handshake_rate(limits));
    }

    /// Admits a new connection from `addr`, or says why not.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Ticket, Refusal> {
        let key = AddrKey::of(addr);
        let per_address = self.per_address.load(Ordering::Relaxed);
        {
            let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            if counts.total >= self.server_wide.load(Ordering::Relaxed) {
                return Err(Refusal::ServerWide);
            }
            if counts.by_key.get(&key).copied().unwrap_or(0) >= per_address {
                return Err(Refusal::PerAddress);
            }
        }
        if self.handshakes.take(&key, 1.0).is_err() {
            return Err(Refusal::HandshakeRate);
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        // Checked again: another connection from the same address may have got in meanwhile.
        let n = counts.by_key.entry(key).or_default();
        if *n >= per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        counts.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            key,
            unauthenticated: true,
        })
    }

    fn release(&self, key: AddrKey) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_key.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_key.remove(&key);
            }
        }
    }

    /// Unauthenticated connections right now.
    pub fn unauthenticated(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// New connections per second from one address, with a burst of a few seconds' worth: a client
/// reconnecting after a network change, or a script opening several profiles, is not refused.
fn handshake_rate(limits: &Limits) -> Rate {
    let rate = limits.handshakes_per_address_per_second;
    Rate {
        per_second: f64::from(rate),
        burst: f64::from(rate.saturating_mul(4)).max(1.0),
    }
}

impl Ticket {
    /// The connection logged in (or resumed a logged-in session): it no longer counts against
    /// the anonymous limits.
    pub fn logged_in(&mut self) {
        if self.unauthenticated {
            self.unauthenticated = false;
            self.admission.release(self.key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.unauthenticated {
            self.admission.release(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: u32, server_wide: usize, rate: u32) -> Limits {
        Limits {
            unauthenticated_per_address: per_address,
            max_unauthenticated: server_wide,
            handshakes_per_address_per_second: rate,
            ..Limits::default()
        }
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a), AddrKey::of(b));
        assert_ne!(AddrKey::of(a), AddrKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(AddrKey::of(mapped), AddrKey::of(v4));
    }

    #[test]
    fn per_address_cap_frees_on_login_and_on_close() {
        let adm = Admission::new(&limits(2, 100, 1000));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t1 = adm.admit(ip).unwrap();
        let t2 = adm.admit(ip).unwrap();
        assert_eq!(adm.admit(ip).err(), Some(Refusal::PerAddress));
        // Another address of the same /64 (IPv6) or another IPv4 address is not affected.
        assert!(adm.admit("192.0.2.2".parse().unwrap()).is_ok());
        t1.logged_in();
        let t3 = adm.admit(ip).unwrap();
        drop(t2);
        drop(t3);
        assert!(adm.admit(ip).is_ok());
        drop(t1);
    }

    #[test]
    fn server_wide_cap_keeps_room_for_logged_in_sessions() {
        let adm = Admission::new(&limits(100, 3, 1000));
        let mut held = Vec::new();
        for i in 0..3 {
            held.push(adm.admit(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert_eq!(
            adm.admit("10.0.0.9".parse().unwrap()).err(),
            Some(Refusal::ServerWide)
        );
        held[0].logged_in();
        assert!(adm.admit("10.0.0.9".parse().unwrap()).is_ok());
    }

    #[test]
    fn handshake_rate_per_address() {
        let adm = Admission::new(&limits(1000, 1000, 1));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut ok = 0;
        let mut held = Vec::new();
        for _ in 0..10 {
            if let Ok(t) = adm.admit(ip) {
                ok += 1;
                held.push(t);
            }
        }
        assert_eq!(ok, 4, "the burst is four seconds' worth");
        assert!(adm.admit("192.0.2.2".parse().unwrap()).is_ok());
    }
}
