//! Which argon2 parameters the stored hashes use, and so which cost an unknown user is checked
//! with (issue 11, F24).
//!
//! After `[auth] argon2_memory_kib`/`argon2_iterations` change, a hash keeps its old parameters
//! until its user logs in again (and is rehashed): accounts that never log in keep them for
//! ever. If an unknown user were always checked at the new cost, the time of a failed login
//! would tell which accounts exist (those at an old cost). So an unknown user is checked at one
//! of the costs in use, chosen per username with weights equal to how many accounts use each:
//! for any name the attacker tries, a real account and a missing one are at a given cost with
//! the same probability. The choice is a keyed hash of the name, so one name always gets the
//! same cost (repeating a probe shows nothing) and a client cannot predict it; the server keys
//! it with a secret derived from its SEK, so it also stays the same across restarts.
//!
//! The census is taken by reading every account once, in the background after the backend
//! opens (until then the configured cost is the only one known), and then kept up to date by
//! the backend's own writes (new passwords, rehashes, deletions). Changes made by another
//! process (`sirend user …` against a shared PostgreSQL) count from the next start.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};
use siren_api::Username;

use crate::Cost;

/// Domain separation of the per-username choice.
const LABEL: &[u8] = b"siren/v1/password-dummy-cost";

/// How many stored hashes use each cost.
pub(crate) struct Census {
    key: [u8; 32],
    counts: Mutex<BTreeMap<Cost, u64>>,
}

impl Census {
    /// An empty census whose choices are keyed with `key`.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Census {
            key,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<Cost, u64>> {
        // Counts are only ever set whole or moved by one: a panic cannot leave them torn.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the counts with those of a full scan.
    pub(crate) fn replace(&self, counts: BTreeMap<Cost, u64>) {
        *self.counts() = counts;
    }

    /// One more hash at `cost`.
    pub(crate) fn add(&self, cost: Cost) {
        *self.counts().entry(cost).or_insert(0) += 1;
    }

    /// One hash fewer at `cost`.
    pub(crate) fn remove(&self, cost: Cost) {
        let mut counts = self.counts();
        if let Some(n) = counts.get_mut(&cost) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&cost);
            }
        }
    }

    /// The cost to check an unknown `user` with: one of the costs in use, chosen by a keyed
    /// hash of the name with weights proportional to their counts; `fallback` (the configured
    /// cost) while no hash is known.
    pub(crate) fn cost_for(&self, user: &Username, fallback: Cost) -> Cost {
        let counts = self.counts();
        let total: u64 = counts.values().sum();
        if total == 0 {
            return fallback;
        }
        let digest = Sha256::new()
            .chain_update(LABEL)
            .chain_update(self.key)
            .chain_update(user.as_str().as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        // A 64-bit value reduced modulo a count of accounts: the bias is below 2^-32.
        let mut pick = u64::from_be_bytes(first) % total;
        for (cost, &n) in counts.iter() {
            if pick < n {
                return *cost;
            }
            pick -= n;
        }
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(m: u32) -> Cost {
        Cost {
            memory_kib: m,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn name(i: usize) -> Username {
        Username::parse(&format!("probe{i}")).unwrap()
    }

    #[test]
    fn choices_follow_the_counts_and_are_stable_per_name() {
        let census = Census::new([7; 32]);
        assert_eq!(
            census.cost_for(&name(0), cost(1)),
            cost(1),
            "empty: fallback"
        );
        census.replace(BTreeMap::from([(cost(8), 3), (cost(16), 1)]));
        let mut seen = BTreeMap::new();
        for i in 0..4000 {
            let chosen = census.cost_for(&name(i), cost(1));
            assert_eq!(chosen, census.cost_for(&name(i), cost(1)), "stable");
            *seen.entry(chosen).or_insert(0u32) += 1;
        }
        // Only costs in use, about 3:1 (binomial, 4000 draws: far inside these bounds).
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            [cost(8), cost(16)]
        );
        assert!((2700..3300).contains(&seen[&cost(8)]), "{seen:?}");

        // Every hash moved to the new cost: the old one is no longer chosen.
        census.remove(cost(8));
        census.remove(cost(8));
        census.remove(cost(8));
        census.add(cost(16));
        assert!((0..200).all(|i| census.cost_for(&name(i), cost(1)) == cost(16)));
    }

    #[test]
    fn another_key_chooses_differently() {
        let counts = BTreeMap::from([(cost(8), 1), (cost(16), 1)]);
        let (a, b) = (Census::new([1; 32]), Census::new([2; 32]));
        a.replace(counts.clone());
        b.replace(counts);
        assert!((0..64).any(|i| a.cost_for(&name(i), cost(1)) != b.cost_for(&name(i), cost(1))));
    }
}
