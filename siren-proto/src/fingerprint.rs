//! Key fingerprints, as people read and compare them (PROTOCOL.md §3): SHA-256 of the 32-byte
//! public key, the first 16 bytes in lowercase hex, in eight groups of four digits separated by
//! spaces (`3e44 28c4 …`).

use crate::transcript::Digest;

/// The fingerprint of a 32-byte public key (a USK, a DEK or a SEK), as clients show it and as
/// `sirend devices list` names devices.
pub fn fingerprint(key: &[u8; 32]) -> String {
    let hex = Digest::of(key).to_hex();
    hex.as_bytes()
        .chunks(4)
        .take(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_of_sha256_in_groups_of_four() {
        // SHA-256 of 32 zero bytes is 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
        assert_eq!(
            fingerprint(&[0; 32]),
            "6668 7aad f862 bd77 6c8f c18b 8e9f 8e20"
        );
    }
}
