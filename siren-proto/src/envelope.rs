//! End-to-end envelopes: one message, sealed to one recipient device, signed by the sender's USK.
//!
//! Sealing (PROTOCOL.md §"Envelopes"):
//!
//! 1. a fresh ephemeral X25519 key `e` for this envelope; `dh = X25519(e, to_dek)`, refused if
//!    all-zero;
//! 2. `key || nonce = HKDF-SHA-256(salt = none, ikm = dh, info = "siren/v1/message-key" || e ||
//!    to_dek)` (32 + 24 bytes), `ct = XSalsa20-Poly1305(key, nonce, plaintext)`;
//! 3. `sig = Ed25519(USK, label "siren/v1/message" || from || from_dek || to || to_dek || id ||
//!    ctr || e || ct)`.
//!
//! The ephemeral key means no static-static DH (no key-compromise impersonation through the
//! DEK); the signature binds sender and recipient (no surreptitious forwarding, no reflection),
//! the message id and the per-sender-device counter (with [`ReplayWindow`], no replay and only
//! bounded reordering).

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use zeroize::Zeroizing;

use crate::crypto::BoxKey;
use crate::ids::MessageId;
use crate::keys::{
    DekPublic, DekSecret, Ephemeral, KEY_LEN, KeyError, Signature, UskPublic, UskSecret,
};
use crate::labels;
use crate::transcript::Transcript;

/// How far behind the newest counter a message may arrive and still be accepted.
pub const REPLAY_WINDOW: u64 = 128;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope is addressed to another user or device.
    #[error("envelope is addressed to another user or device")]
    NotForMe,
    /// The signature does not verify under the sender's USK.
    #[error("sender signature does not verify")]
    BadSignature,
    /// Decryption failed.
    #[error("envelope decryption failed")]
    Decrypt,
    /// A key exchange gave the all-zero value (low-order ephemeral or DEK).
    #[error(transparent)]
    Key(KeyError),
    /// This counter was already accepted from this sender device.
    #[error("replayed message (counter {0} already seen)")]
    Replay(u64),
    /// This counter is older than the replay window.
    #[error("message counter {ctr} is too old (newest seen {newest})")]
    TooOld {
        /// The envelope's counter.
        ctr: u64,
        /// The newest counter seen from that device.
        newest: u64,
    },
}

impl From<KeyError> for EnvelopeError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::BadSignature => EnvelopeError::BadSignature,
            other => EnvelopeError::Key(other),
        }
    }
}

/// A sealed, signed message for one recipient device. This is also what the server routes: it
/// reads `from`, `from_dek`, `to`, `to_dek` and `id`, and nothing else means anything to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Message id, shared by every copy of one message.
    pub id: MessageId,
    /// Sender.
    pub from: Uid,
    /// Sender's device.
    pub from_dek: DekPublic,
    /// Recipient.
    pub to: Uid,
    /// Recipient's device.
    pub to_dek: DekPublic,
    /// The sender device's message counter (one step per message, not per copy).
    pub ctr: u64,
    /// The envelope's ephemeral X25519 public key.
    #[serde(with = "crate::strict::fixed")]
    pub eph: [u8; KEY_LEN],
    /// Tag and ciphertext.
    #[serde(with = "crate::strict::bytes")]
    pub ct: Vec<u8>,
    /// Ed25519 signature by the sender's USK over [`Envelope::signed_bytes`].
    pub sig: Signature,
}

/// The sending side's keys.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The sending user.
    pub uid: &'a Uid,
    /// The user's signing key.
    pub usk: &'a UskSecret,
    /// The sending device's DEK.
    pub dek: &'a DekPublic,
}

/// The receiving side's keys.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The receiving user.
    pub uid: &'a Uid,
    /// The receiving device's DEK.
    pub dek: &'a DekSecret,
}

/// Seals `plaintext` to `to_dek` with a fresh ephemeral key; returns the ephemeral public key and
/// the ciphertext. `key_label` separates envelopes from USK transfers.
pub(crate) fn seal_to(
    key_label: &str,
    to_dek: &DekPublic,
    plaintext: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<([u8; KEY_LEN], Vec<u8>), KeyError> {
    let e = Ephemeral::generate(rng);
    let dh = e.agree(to_dek.as_bytes())?;
    let key = BoxKey::derive(
        None,
        dh.as_ref(),
        &[key_label.as_bytes(), e.public(), to_dek.as_bytes()],
    );
    Ok((*e.public(), key.seal(plaintext)))
}

/// Opens what [`seal_to`] sealed.
pub(crate) fn open_from(
    key_label: &str,
    me: &DekSecret,
    eph: &[u8; KEY_LEN],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let dh = me.agree(eph)?;
    let key = BoxKey::derive(
        None,
        dh.as_ref(),
        &[key_label.as_bytes(), eph, me.public().as_bytes()],
    );
    key.open(ct)
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Decrypt)
}

impl Envelope {
    /// Seals and signs `plaintext` for one recipient device.
    pub fn seal(
        sender: Sender<'_>,
        to: &Uid,
        to_dek: &DekPublic,
        id: MessageId,
        ctr: u64,
        plaintext: &[u8],
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Envelope, EnvelopeError> {
        let (eph, ct) = seal_to(labels::MESSAGE_KEY, to_dek, plaintext, rng)?;
        let mut env = Envelope {
            id,
            from: sender.uid.clone(),
            from_dek: *sender.dek,
            to: to.clone(),
            to_dek: *to_dek,
            ctr,
            eph,
            ct,
            sig: Signature::from_bytes([0; 64]),
        };
        env.sig = sender.usk.sign(&env.signed_bytes());
        Ok(env)
    }

    /// The bytes the signature covers (PROTOCOL.md §"Signed bytes").
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(labels::MESSAGE);
        t.text(&self.from.to_string())
            .fixed(self.from_dek.as_bytes())
            .text(&self.to.to_string())
            .fixed(self.to_dek.as_bytes())
            .fixed(self.id.as_bytes())
            .u64(self.ctr)
            .fixed(&self.eph)
            .var(&self.ct);
        t.as_bytes().to_vec()
    }

    /// Checks the signature against the sender's USK (from a verified directory listing). The
    /// server uses this to refuse forged senders; recipients get it as part of [`Envelope::open`].
    pub fn verify_sender(&self, usk: &UskPublic) -> Result<(), EnvelopeError> {
        usk.verify(&self.signed_bytes(), &self.sig)?;
        Ok(())
    }

    /// Verifies, replay-checks and decrypts. `sender_usk` must come from a verified listing of
    /// `self.from` in which `self.from_dek` is live (the caller's cache); `window` is the one kept
    /// for `self.from_dek`. The window moves only if everything else succeeds.
    pub fn open(
        &self,
        me: Recipient<'_>,
        sender_usk: &UskPublic,
        window: &mut ReplayWindow,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        if &self.to != me.uid || self.to_dek != me.dek.public() {
            return Err(EnvelopeError::NotForMe);
        }
        self.verify_sender(sender_usk)?;
        window.check(self.ctr)?;
        let plaintext = open_from(labels::MESSAGE_KEY, me.dek, &self.eph, &self.ct)?;
        window.accept(self.ctr);
        Ok(plaintext)
    }
}

/// Which counters have been accepted from one sender device: the newest, and a bitmap of the
/// [`REPLAY_WINDOW`] counters below it. Persist it with the contact cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredWindow", into = "StoredWindow")]
pub struct ReplayWindow {
    /// Newest counter accepted, if any.
    newest: Option<u64>,
    /// Bit `i` set: counter `newest - i` was accepted.
    seen: u128,
}

/// The stored form of a [`ReplayWindow`]: CBOR has no 128-bit integers without tags, so the
/// bitmap is two 64-bit halves.
#[derive(Serialize, Deserialize)]
struct StoredWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<u64>,
    seen: [u64; 2],
}

impl From<StoredWindow> for ReplayWindow {
    fn from(s: StoredWindow) -> Self {
        ReplayWindow {
            newest: s.newest,
            seen: (u128::from(s.seen[0]) << 64) | u128::from(s.seen[1]),
        }
    }
}

impl From<ReplayWindow> for StoredWindow {
    fn from(w: ReplayWindow) -> Self {
        StoredWindow {
            newest: w.newest,
            seen: [(w.seen >> 64) as u64, w.seen as u64],
        }
    }
}

impl ReplayWindow {
    /// Whether `ctr` would be accepted (new, and not older than the window).
    pub fn check(&self, ctr: u64) -> Result<(), EnvelopeError> {
        let Some(newest) = self.newest else {
            return Ok(());
        };
        if ctr > newest {
            return Ok(());
        }
        let behind = newest - ctr;
        if behind >= REPLAY_WINDOW {
            return Err(EnvelopeError::TooOld { ctr, newest });
        }
        if self.seen & (1u128 << behind) != 0 {
            return Err(EnvelopeError::Replay(ctr));
        }
        Ok(())
    }

    /// Records `ctr` as accepted (call only after [`ReplayWindow::check`] and a successful open).
    pub fn accept(&mut self, ctr: u64) {
        match self.newest {
            None => {
                self.newest = Some(ctr);
                self.seen = 1;
            }
            Some(newest) if ctr > newest => {
                let shift = ctr - newest;
                self.seen = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.newest = Some(ctr);
            }
            Some(newest) => {
                let behind = newest - ctr;
                if behind < REPLAY_WINDOW {
                    self.seen |= 1u128 << behind;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
