//! Sealing what a device keeps at rest, the same way wherever the core runs (the `siren` profile
//! and history files; the browser's IndexedDB):
//!
//! * [`passphrase_key`]: a passphrase stretched into a 32-byte key with argon2id
//!   ([`KDF_MEMORY_KIB`], [`KDF_ITERATIONS`], one lane), which seals the device's keys;
//! * [`HistoryKeys`]: the history's keys — one key sealing every value (XSalsa20-Poly1305, a
//!   random nonce each), one key for the keyed hashes that stand for peers and message ids in the
//!   store's keys. Both come from the profile's history seed with HKDF-SHA256 under the label
//!   `siren/v1/history-key` (64 bytes: the sealing key, then the hashing key). The browser's
//!   store derives keys of the same shape under its own labels ([`HistoryKeys::derive_for`]):
//!   `siren/v1/browser-lock` from the passphrase key, `siren/v1/browser-store` from its random
//!   store key.
//!
//! Randomness is an argument, as everywhere in the core.

use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use hkdf::Hkdf;
use hmac::Mac;
use rand_core::CryptoRng;
use sha2::Sha256;
use siren_api::Uid;
use siren_proto::ids::MessageId;
use zeroize::Zeroizing;

/// Argon2id memory cost for a passphrase, in KiB (19 MiB: OWASP's minimum for argon2id).
pub const KDF_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes for a passphrase.
pub const KDF_ITERATIONS: u32 = 2;

/// A passphrase could not be stretched (argon2 refused its parameters or input).
#[derive(Debug, thiserror::Error)]
#[error("argon2: {0}")]
pub struct KdfError(String);

/// Stretches `passphrase` with `salt` (16 random bytes, stored beside what the key seals) into a
/// 32-byte sealing key.
pub fn passphrase_key(passphrase: &str, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    let params = argon2::Params::new(KDF_MEMORY_KIB, KDF_ITERATIONS, 1, Some(32))
        .map_err(|e| KdfError(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| KdfError(e.to_string()))?;
    Ok(key)
}

/// The HKDF label of the history key.
pub const HISTORY_KEY_LABEL: &[u8] = b"siren/v1/history-key";
/// The HKDF label of the key that seals the browser store's key, from the passphrase key.
pub const BROWSER_LOCK_LABEL: &[u8] = b"siren/v1/browser-lock";
/// The HKDF label of the browser store's keys, from its random store key.
pub const BROWSER_STORE_LABEL: &[u8] = b"siren/v1/browser-store";
/// Length of a keyed hash in the store's keys.
pub const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 24;

/// A keyed hash of a peer or of a message id.
pub type Tag = [u8; TAG_LEN];

/// The keys of one history file.
pub struct HistoryKeys {
    cipher: XSalsa20Poly1305,
    tag_key: Zeroizing<[u8; 32]>,
}

/// A sealed value did not open (wrong key or altered bytes).
#[derive(Debug)]
pub struct OpenFailed;

impl HistoryKeys {
    /// Derives the keys from the profile's history seed.
    pub fn derive(seed: &[u8; 32]) -> HistoryKeys {
        HistoryKeys::derive_for(seed, HISTORY_KEY_LABEL)
    }

    /// Derives keys of the same shape for another use, named by its own HKDF `label` (the
    /// browser's store: [`BROWSER_LOCK_LABEL`], [`BROWSER_STORE_LABEL`]).
    pub fn derive_for(seed: &[u8; 32], label: &[u8]) -> HistoryKeys {
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, seed).expand(label, okm.as_mut());
        let mut seal_key = Zeroizing::new([0u8; 32]);
        let mut tag_key = Zeroizing::new([0u8; 32]);
        seal_key.copy_from_slice(&okm[..32]);
        tag_key.copy_from_slice(&okm[32..]);
        HistoryKeys {
            cipher: XSalsa20Poly1305::new(seal_key.as_ref().into()),
            tag_key,
        }
    }

    fn tag(&self, domain: &[u8], data: &[u8]) -> Tag {
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.tag_key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(domain);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        for (t, b) in tag.iter_mut().zip(full.iter()) {
            *t = *b;
        }
        tag
    }

    /// The keyed hash standing for a peer.
    pub fn peer_tag(&self, peer: &Uid) -> Tag {
        self.tag(b"peer\0", peer.to_string().as_bytes())
    }

    /// The keyed hash standing for a conversation: a user's is [`HistoryKeys::peer_tag`]'s (so
    /// histories written before groups read on), a group's is keyed apart.
    pub fn chat_tag(&self, chat: &crate::model::Chat) -> Tag {
        match chat {
            crate::model::Chat::User(uid) => self.peer_tag(uid),
            crate::model::Chat::Group(id) => self.tag(b"group\0", id.as_bytes()),
        }
    }

    /// The keyed hash standing for a record's name (the browser's store).
    pub fn name_tag(&self, name: &str) -> Tag {
        self.tag(b"name\0", name.as_bytes())
    }

    /// The keyed hash standing for a message id.
    pub fn id_tag(&self, id: &MessageId) -> Tag {
        self.tag(b"id\0", id.as_bytes())
    }

    /// Seals a value: nonce ‖ ciphertext, the nonce from `rng`.
    pub fn seal(&self, plain: &[u8], rng: &mut (impl CryptoRng + ?Sized)) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt((&nonce).into(), plain)
            .unwrap_or_else(|_| unreachable!("XSalsa20-Poly1305 seals any length we store"));
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`HistoryKeys::seal`] sealed.
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenFailed> {
        let (nonce, ct) = sealed.split_at_checked(NONCE_LEN).ok_or(OpenFailed)?;
        self.cipher
            .decrypt(nonce.into(), ct)
            .map(Zeroizing::new)
            .map_err(|_| OpenFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_keys_and_unaltered() {
        let keys = HistoryKeys::derive(&[7; 32]);
        let sealed = keys.seal(b"hello", &mut siren_proto::os_rng());
        assert_eq!(keys.open(&sealed).unwrap().as_slice(), b"hello");
        assert!(HistoryKeys::derive(&[8; 32]).open(&sealed).is_err());
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(keys.open(&altered).is_err());
        assert!(keys.open(&sealed[..10]).is_err());
        // A fresh nonce each time.
        assert_ne!(sealed, keys.seal(b"hello", &mut siren_proto::os_rng()));
    }

    #[test]
    fn each_label_gives_its_own_keys() {
        let seed = [7; 32];
        let history = HistoryKeys::derive(&seed);
        let store = HistoryKeys::derive_for(&seed, BROWSER_STORE_LABEL);
        let lock = HistoryKeys::derive_for(&seed, BROWSER_LOCK_LABEL);
        let sealed = store.seal(b"hello", &mut siren_proto::os_rng());
        assert!(history.open(&sealed).is_err() && lock.open(&sealed).is_err());
        assert_eq!(store.open(&sealed).unwrap().as_slice(), b"hello");
        assert_ne!(store.name_tag("secrets"), lock.name_tag("secrets"));
        assert_eq!(
            HistoryKeys::derive_for(&seed, HISTORY_KEY_LABEL)
                .peer_tag(&"a@b.test".parse().unwrap()),
            history.peer_tag(&"a@b.test".parse().unwrap())
        );
    }

    #[test]
    fn passphrase_keys_depend_on_passphrase_and_salt() {
        let a = passphrase_key("correct horse", &[1; 16]).unwrap();
        assert_eq!(*a, *passphrase_key("correct horse", &[1; 16]).unwrap());
        assert_ne!(*a, *passphrase_key("correct horse", &[2; 16]).unwrap());
        assert_ne!(*a, *passphrase_key("correct horsf", &[1; 16]).unwrap());
    }
}
