//! Token buckets, one per key, for the server's rate limits (handshakes per address, envelopes
//! and bytes per sender, directory changes per user).
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per second; taking `n` tokens
//! succeeds if that many are there, and otherwise says how long to wait. The table of buckets is
//! bounded: when it is full, buckets that have refilled completely (and so carry no information)
//! are dropped first; if none has, the oldest half is dropped. Memory stays bounded under a flood
//! of keys, at the price of forgetting some partial debts.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rate and burst of one kind of limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens a bucket holds (and the largest single take that can ever succeed).
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
    }
}

/// Keyed token buckets.
pub struct Buckets<K> {
    max_keys: usize,
    table: Mutex<Table<K>>,
}

/// The rate and the buckets, under one lock so that a reload's new rate applies to every take
/// after it.
struct Table<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Buckets refilling at `rate`, at most `max_keys` of them remembered.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Buckets {
            max_keys: max_keys.max(1),
            table: Mutex::new(Table {
                rate,
                buckets: HashMap::new(),
            }),
        }
    }

    /// Changes the rate (a reload). Buckets keep their tokens, capped at the new burst when
    /// they next refill.
    pub fn set_rate(&self, rate: Rate) {
        self.lock().rate = rate;
    }

    /// The rate in force.
    pub fn rate(&self) -> Rate {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table<K>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` tokens from `key`'s bucket. `Err(wait)`: not enough; nothing was taken, and
    /// `wait` is how long until there would be (`Duration::MAX` if `n` exceeds the burst).
    pub fn take(&self, key: &K, n: f64) -> Result<(), Duration> {
        self.take_at(key, n, Instant::now())
    }

    fn take_at(&self, key: &K, n: f64, now: Instant) -> Result<(), Duration> {
        let mut table = self.lock();
        let rate = table.rate;
        if n > rate.burst {
            return Err(Duration::MAX);
        }
        if !table.buckets.contains_key(key) && table.buckets.len() >= self.max_keys {
            prune(&mut table.buckets, rate, now);
        }
        let bucket = table.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        bucket.refill(rate, now);
        if bucket.tokens >= n {
            bucket.tokens -= n;
            return Ok(());
        }
        let missing = n - bucket.tokens;
        if rate.per_second <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64(missing / rate.per_second))
    }

    /// Gives back `n` tokens taken earlier (for work that turned out not to happen).
    pub fn give_back(&self, key: &K, n: f64) {
        let mut table = self.lock();
        let burst = table.rate.burst;
        if let Some(bucket) = table.buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + n).min(burst);
        }
    }
}

/// Drops full buckets; if that frees nothing, the older half.
fn prune<K: Hash + Eq + Clone>(buckets: &mut HashMap<K, Bucket>, rate: Rate, now: Instant) {
    let before = buckets.len();
    buckets.retain(|_, b| {
        let mut b = *b;
        b.refill(rate, now);
        b.tokens < rate.burst
    });
    if buckets.len() < before {
        return;
    }
    let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
    ages.sort_unstable();
    if let Some(median) = ages.get(ages.len() / 2).copied() {
        buckets.retain(|_, b| b.at > median);
    }
}

/// A rate in seconds, for error texts ("retry in 3 s"): at least 1.
pub fn wait_secs(wait: Duration) -> u64 {
    if wait == Duration::MAX {
        return u64::MAX;
    }
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let b = Buckets::new(
            Rate {
                per_second: 2.0,
                burst: 4.0,
            },
            10,
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(b.take_at(&1, 1.0, t0).is_ok());
        }
        let wait = b.take_at(&1, 1.0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another key is independent.
        assert!(b.take_at(&2, 4.0, t0).is_ok());
        // Half a second later one token is back.
        assert!(b.take_at(&1, 1.0, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take_at(&1, 1.0, t0 + Duration::from_millis(500)).is_err());
        // More than the burst never fits.
        assert_eq!(b.take_at(&3, 5.0, t0), Err(Duration::MAX));
    }

    #[test]
    fn the_table_stays_bounded() {
        let b = Buckets::new(
            Rate {
                per_second: 1.0,
                burst: 1.0,
            },
            100,
        );
        let t0 = Instant::now();
        for k in 0..10_000u32 {
            let _ = b.take_at(&k, 1.0, t0 + Duration::from_micros(u64::from(k)));
        }
        assert!(b.lock().buckets.len() <= 100);
    }

    #[test]
    fn a_new_rate_applies_to_the_next_take() {
        let b = Buckets::new(
            Rate {
                per_second: 1.0,
                burst: 10.0,
            },
            10,
        );
        let t0 = Instant::now();
        assert!(b.take_at(&1, 2.0, t0).is_ok());
        b.set_rate(Rate {
            per_second: 1.0,
            burst: 1.0,
        });
        // More than the new burst never fits; the old bucket is capped at the new burst.
        assert_eq!(b.take_at(&1, 2.0, t0), Err(Duration::MAX));
        assert!(b.take_at(&1, 1.0, t0).is_ok());
        assert!(b.take_at(&1, 1.0, t0).is_err());
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(wait_secs(Duration::from_millis(10)), 1);
        assert_eq!(wait_secs(Duration::from_millis(1500)), 2);
        assert_eq!(wait_secs(Duration::from_secs(3)), 3);
    }
}
