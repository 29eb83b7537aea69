//! The symmetric primitives, wrapped once: XSalsa20-Poly1305 (NaCl `crypto_secretbox`) and
//! HKDF-SHA-256. Every other module goes through these two functions, so the choice of crate and
//! the ciphertext layout live in one place.
//!
//! Ciphertext layout is NaCl's: the 16-byte Poly1305 tag, then the encrypted bytes (same length
//! as the plaintext).

use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// XSalsa20 key length (256 bits).
pub const KEY_LEN: usize = 32;
/// XSalsa20 nonce length (192 bits).
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Authentication failed (wrong key, wrong nonce or altered ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenError;

/// A one-time symmetric key and nonce derived by HKDF; zeroized on drop.
pub(crate) struct BoxKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
}

impl BoxKey {
    pub(crate) fn new(key: [u8; KEY_LEN], nonce: [u8; NONCE_LEN]) -> Self {
        BoxKey {
            key: Zeroizing::new(key),
            nonce,
        }
    }

    /// HKDF-SHA-256 (`salt`, `ikm`, `info` = concatenation of `info`) into a key and a nonce.
    pub(crate) fn derive(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> Self {
        let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN]);
        hkdf(salt, ikm, info, okm.as_mut());
        let mut key = [0u8; KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        key.copy_from_slice(&okm[..KEY_LEN]);
        nonce.copy_from_slice(&okm[KEY_LEN..]);
        let out = BoxKey::new(key, nonce);
        zeroize::Zeroize::zeroize(&mut key);
        out
    }

    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.key, &self.nonce, plaintext)
    }

    pub(crate) fn open(&self, ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
        open(&self.key, &self.nonce, ciphertext)
    }
}

/// XSalsa20-Poly1305 encryption: returns tag || ciphertext.
pub(crate) fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(key.into());
    // Encryption into a Vec can only fail on allocation, which aborts anyway.
    cipher
        .encrypt(nonce.into(), plaintext)
        .unwrap_or_else(|_| unreachable!("secretbox encryption into a Vec cannot fail"))
}

/// XSalsa20-Poly1305 decryption of tag || ciphertext.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let cipher = XSalsa20Poly1305::new(key.into());
    cipher
        .decrypt(nonce.into(), ciphertext)
        .map_err(|_| OpenError)
}

/// HKDF-SHA-256 (RFC 5869) extract-then-expand into `out` (at most 255 × 32 bytes; callers ask
/// for 64 or fewer).
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    hk.expand_multi_info(info, out)
        .unwrap_or_else(|_| unreachable!("HKDF output lengths are constants ≤ 64 bytes"));
}

/// HKDF-SHA-256 expand only, from a uniformly random 32-byte pseudorandom key.
pub(crate) fn hkdf_expand(prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::from_prk(prk)
        .unwrap_or_else(|_| unreachable!("a 32-byte PRK is the SHA-256 output size"));
    hk.expand_multi_info(info, out)
        .unwrap_or_else(|_| unreachable!("HKDF output lengths are constants ≤ 64 bytes"));
}
