//! Helpers shared by the fuzz targets: deterministic randomness, fixed keys and XOR masks.

#![allow(dead_code)]

use chacha20::ChaCha20Rng;
use rand_core::SeedableRng;
use siren_api::{ServerName, Uid};

/// A seeded ChaCha20 generator: same seed, same keys, same handshake messages.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn server_name(s: &str) -> ServerName {
    ServerName::parse(s).expect("fixed server name parses")
}

pub fn uid(s: &str) -> Uid {
    Uid::parse(s).expect("fixed UID parses")
}

/// `base` with `mask` XORed in from the start; mask bytes beyond `base` are appended, so the
/// fuzzer can also explore lengths. The result equals `base` only for an all-zero mask no longer
/// than `base`.
pub fn xor_into(base: &[u8], mask: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (o, m) in out.iter_mut().zip(mask) {
        *o ^= m;
    }
    if mask.len() > base.len() {
        out.extend_from_slice(&mask[base.len()..]);
    }
    out
}

/// XORs `mask` into a fixed-size array; returns the rest of the mask.
pub fn xor_fixed<'a, const N: usize>(field: &mut [u8; N], mask: &'a [u8]) -> &'a [u8] {
    let (head, rest) = mask.split_at(mask.len().min(N));
    for (f, m) in field.iter_mut().zip(head) {
        *f ^= m;
    }
    rest
}
