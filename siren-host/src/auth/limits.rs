//! Limits on logins: how many password checks run at once, and how many failures an address, an
//! address-and-account pair and an account may have per minute.
//!
//! The design keeps brute force bounded without letting anyone lock other people out:
//!
//! * **Concurrency.** A password check (argon2id, ~19 MiB and tens of milliseconds) runs only
//!   with one of `max_concurrent_logins` permits; without one the client gets error 207
//!   (`login_busy`) at once and nothing is hashed. Memory for hashing is bounded server-wide.
//! * **Counted before hashing.** An attempt is recorded against its address *before* the check
//!   runs and forgotten again if it succeeds, so parallel attempts from one address see each other
//!   and the per-address limit holds even for 60 attempts started at once.
//! * **Per address** (`failures_per_address_per_minute`, all accounts): one address guessing many
//!   accounts.
//! * **Per address and account** (`failures_per_address_and_account_per_minute`): one address
//!   guessing one account is stopped after a few tries — and only that address is.
//! * **Per account** (`failures_per_account_per_minute`, across addresses): many addresses guessing
//!   one account. This limit does not apply to addresses that logged in to that account
//!   successfully before (remembered in memory), so a distributed attack slows guessing from new
//!   places but does not lock the account's owner out where they usually log in.
//!
//! A client over a limit gets error 203 whatever the password, so a limit reveals nothing; the
//! limits forget after a minute.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use siren_api::Username;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::AddrKey;

const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before old ones are pruned (bounds memory under a flood of addresses).
const MAX_TRACKED: usize = 100_000;
/// Addresses remembered per account as "logged in from here before".
const KNOWN_PER_ACCOUNT: usize = 8;

/// Counts events per key over a sliding minute.
struct Window<K> {
    limit: u32,
    events: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    fn new(limit: u32) -> Self {
        Window {
            limit,
            events: HashMap::new(),
        }
    }

    fn count(&mut self, key: &K, now: Instant) -> usize {
        let Some(times) = self.events.get_mut(key) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        let n = times.len();
        if n == 0 {
            self.events.remove(key);
        }
        n
    }

    fn blocked(&mut self, key: &K, now: Instant) -> bool {
        self.count(key, now) >= self.limit as usize
    }

    fn record(&mut self, key: K, now: Instant) {
        if self.events.len() >= MAX_TRACKED && !self.events.contains_key(&key) {
            self.events.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
        }
        let times = self.events.entry(key).or_default();
        times.push_back(now);
        // Keep one more than the limit: enough to know the limit is reached.
        while times.len() > self.limit as usize + 1 {
            times.pop_front();
        }
    }

    /// Forgets the newest event of `key` (an attempt counted in advance that succeeded).
    fn forget_newest(&mut self, key: &K) {
        if let Some(times) = self.events.get_mut(key) {
            times.pop_back();
            if times.is_empty() {
                self.events.remove(key);
            }
        }
    }
}

/// The configured limits.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimitConfig {
    /// Password checks running at once, server-wide.
    pub max_concurrent: usize,
    /// Failures per address per minute, all accounts together.
    pub per_address: u32,
    /// Failures per address and account per minute.
    pub per_address_and_account: u32,
    /// Failures per account per minute from addresses that never logged in to it.
    pub per_account: u32,
}

/// Why a login attempt is refused before its credentials are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many password checks in progress (error 207).
    Busy,
    /// Too many failures from this address (error 203).
    Address,
}

/// An attempt in progress: holds a hashing permit and the failure counted in advance.
pub struct Attempt {
    addr: Option<AddrKey>,
    _permit: OwnedSemaphorePermit,
}

/// Login limits (see the module documentation).
pub struct LoginLimits {
    config: LoginLimitConfig,
    hashing: std::sync::Arc<Semaphore>,
    by_address: Mutex<Window<AddrKey>>,
    by_pair: Mutex<Window<(AddrKey, Username)>>,
    by_account: Mutex<Window<Username>>,
    known: Mutex<HashMap<Username, VecDeque<AddrKey>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LoginLimits {
    /// Limits as configured.
    pub fn new(config: LoginLimitConfig) -> Self {
        LoginLimits {
            config,
            hashing: std::sync::Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            by_address: Mutex::new(Window::new(config.per_address)),
            by_pair: Mutex::new(Window::new(config.per_address_and_account)),
            by_account: Mutex::new(Window::new(config.per_account)),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Starts an attempt from `addr` whose credentials are about to be checked: refused if the
    /// address is over its limit or no hashing permit is free; otherwise counted as a failure of
    /// the address until [`LoginLimits::succeeded`] or [`LoginLimits::failed`] says otherwise.
    pub fn begin(&self, addr: Option<AddrKey>) -> Result<Attempt, Refused> {
        let now = Instant::now();
        if let Some(a) = addr
            && lock(&self.by_address).blocked(&a, now)
        {
            return Err(Refused::Address);
        }
        let permit = self
            .hashing
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        if let Some(a) = addr {
            lock(&self.by_address).record(a, now);
        }
        Ok(Attempt {
            addr,
            _permit: permit,
        })
    }

    /// Whether logins to `user` from `addr` are refused right now (checked after the
    /// mechanism named the account, before its answer is revealed).
    pub fn account_blocked(&self, addr: Option<AddrKey>, user: &Username) -> bool {
        let now = Instant::now();
        if let Some(a) = addr
            && lock(&self.by_pair).blocked(&(a, user.clone()), now)
        {
            return true;
        }
        let known = addr.is_some_and(|a| {
            lock(&self.known)
                .get(user)
                .is_some_and(|list| list.contains(&a))
        });
        !known && lock(&self.by_account).blocked(user, now)
    }

    /// The attempt succeeded: its advance count is forgotten and `addr` becomes a known address
    /// of `user`.
    pub fn succeeded(&self, attempt: Attempt, user: &Username) {
        let Some(a) = attempt.addr else { return };
        lock(&self.by_address).forget_newest(&a);
        let mut known = lock(&self.known);
        if known.len() >= MAX_TRACKED && !known.contains_key(user) {
            known.clear();
        }
        let list = known.entry(user.clone()).or_default();
        list.retain(|k| *k != a);
        list.push_back(a);
        while list.len() > KNOWN_PER_ACCOUNT {
            list.pop_front();
        }
    }

    /// The attempt failed: the address keeps its count; the account named (if any) gets one,
    /// unless this address is already over its limit for that account — so one address adds at
    /// most `per_address_and_account` failures a minute to the account's count, and cannot push
    /// it over the account's limit alone. Returns whether the account got one (in a cluster the
    /// other nodes are then told: [`LoginLimits::failed_elsewhere`]).
    pub fn failed(&self, attempt: Attempt, user: Option<&Username>) -> bool {
        let now = Instant::now();
        let Some(user) = user else { return false };
        if let Some(a) = attempt.addr {
            let mut pairs = lock(&self.by_pair);
            let pair = (a, user.clone());
            if pairs.blocked(&pair, now) {
                return false;
            }
            pairs.record(pair, now);
        }
        lock(&self.by_account).record(user.clone(), now);
        true
    }

    /// Another node of the cluster counted a failed login to `user`: the account's limit holds
    /// across the nodes (its per-address limits stay each node's own).
    pub fn failed_elsewhere(&self, user: &Username) {
        lock(&self.by_account).record(user.clone(), Instant::now());
    }

    /// The attempt ended without a verdict (the mechanism asked for another round, or its
    /// backend failed): the advance count is forgotten.
    pub fn abandoned(&self, attempt: Attempt) {
        if let Some(a) = attempt.addr {
            lock(&self.by_address).forget_newest(&a);
        }
    }

    /// The configured limits.
    pub fn config(&self) -> &LoginLimitConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_concurrent: usize) -> LoginLimits {
        LoginLimits::new(LoginLimitConfig {
            max_concurrent,
            per_address: 20,
            per_address_and_account: 5,
            per_account: 30,
        })
    }

    fn addr(i: u8) -> Option<AddrKey> {
        Some(AddrKey::V4([192, 0, 2, i]))
    }

    #[test]
    fn attempts_count_before_the_check_and_permits_bound_concurrency() {
        let l = limits(4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(l.begin(addr(1)).unwrap());
        }
        assert_eq!(l.begin(addr(2)).err(), Some(Refused::Busy));
        // The four in progress already count against the address.
        for a in held.drain(..) {
            l.abandoned(a);
        }
        let l = limits(100);
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(l.begin(addr(1)).unwrap());
        }
        assert_eq!(l.begin(addr(1)).err(), Some(Refused::Address));
        assert!(l.begin(addr(2)).is_ok());
    }

    #[test]
    fn one_address_cannot_lock_out_another() {
        let l = limits(100);
        let alice = Username::parse("alice").unwrap();
        for _ in 0..5 {
            let a = l.begin(addr(1)).unwrap();
            assert!(!l.account_blocked(addr(1), &alice));
            l.failed(a, Some(&alice));
        }
        assert!(l.account_blocked(addr(1), &alice));
        assert!(!l.account_blocked(addr(2), &alice));
    }

    #[test]
    fn one_address_alone_cannot_reach_the_account_limit() {
        // Even where the per-address limit is above the per-account one.
        let l = LoginLimits::new(LoginLimitConfig {
            max_concurrent: 10,
            per_address: 1000,
            per_address_and_account: 5,
            per_account: 30,
        });
        let alice = Username::parse("alice").unwrap();
        for _ in 0..100 {
            let a = l.begin(addr(1)).unwrap();
            l.failed(a, Some(&alice));
        }
        assert!(l.account_blocked(addr(1), &alice));
        assert!(!l.account_blocked(addr(3), &alice));
    }

    #[test]
    fn many_addresses_slow_new_places_but_not_known_ones() {
        let l = limits(100);
        let alice = Username::parse("alice").unwrap();
        let ok = l.begin(addr(200)).unwrap();
        l.succeeded(ok, &alice);
        for i in 0..30 {
            let a = l.begin(addr(i)).unwrap();
            l.failed(a, Some(&alice));
        }
        assert!(l.account_blocked(addr(100), &alice), "a new address waits");
        assert!(
            !l.account_blocked(addr(200), &alice),
            "a known one does not"
        );
    }

    #[test]
    fn a_success_does_not_count_against_the_address() {
        let l = limits(100);
        let alice = Username::parse("alice").unwrap();
        for _ in 0..50 {
            let a = l.begin(addr(1)).unwrap();
            l.succeeded(a, &alice);
        }
        assert!(l.begin(addr(1)).is_ok());
    }
}
