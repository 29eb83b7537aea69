//! The history's keys: one key sealing every value (XSalsa20-Poly1305, a random nonce each),
//! one key for the keyed hashes that stand for peers and message ids in the store's keys.
//!
//! Both come from the profile's history seed with HKDF-SHA256 under the label
//! `siren/v1/history-key` (64 bytes: the sealing key, then the hashing key).

use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use hkdf::Hkdf;
use hmac::Mac;
use rand_core::Rng as _;
use sha2::Sha256;
use siren_api::Uid;
use siren_proto::ids::MessageId;
use zeroize::Zeroizing;

/// The HKDF label of the history key.
pub const HISTORY_KEY_LABEL: &[u8] = b"siren/v1/history-key";
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
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's limit of 255 * 32: expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, seed).expand(HISTORY_KEY_LABEL, okm.as_mut());
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

    /// The keyed hash standing for a message id.
    pub fn id_tag(&self, id: &MessageId) -> Tag {
        self.tag(b"id\0", id.as_bytes())
    }

    /// Seals a value: nonce ‖ ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        siren_proto::os_rng().fill_bytes(&mut nonce);
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
