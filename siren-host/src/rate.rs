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
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Buckets refilling at `rate`, at most `max_keys` of them remembered.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Buckets {
            rate,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens from `key`'s bucket. `Err(wait)`: not enough; nothing was taken, and
    /// `wait` is how long until there would be (`Duration::MAX` if `n` exceeds the burst).
    pub fn take(&self, key: &K, n: f64) -> Result<(), Duration> {
        self.take_at(key, n, Instant::now())
    }

    fn take_at(&self, key: &K, n: f64, now: Instant) -> Result<(), Duration> {
        if n > self.rate.burst {
            return Err(Duration::MAX);
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            prune(&mut buckets, self.rate, now);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.rate.burst,
            at: now,
        });
        bucket.refill(self.rate, now);
        if bucket.tokens >= n {
            bucket.tokens -= n;
            return Ok(());
        }
        let missing = n - bucket.tokens;
        if self.rate.per_second <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64(missing / self.rate.per_second))
    }

    /// Gives back `n` tokens taken earlier (for work that turned out not to happen).
    pub fn give_back(&self, key: &K, n: f64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + n).min(self.rate.burst);
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
        assert!(b.buckets.lock().unwrap().len() <= 100);
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(wait_secs(Duration::from_millis(10)), 1);
        assert_eq!(wait_secs(Duration::from_millis(1500)), 2);
        assert_eq!(wait_secs(Duration::from_secs(3)), 3);
    }
}
