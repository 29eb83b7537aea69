//! Adding a device: the short authentication code and the USK transfer.
//!
//! The server relays every message between the new device (N) and an existing device (E), so it
//! could try to put its own DEK in the middle. The user defeats that by comparing a six-digit
//! code shown on both devices. The code comes from a commit-then-reveal exchange, so the server
//! cannot search for a DEK whose code collides (each side's random input is fixed before it sees
//! the other's):
//!
//! ```text
//! N -> E   approval_request   (new_dek, commit = H("siren/v1/approval-commit" || uid || new_dek || n_N))
//! E -> N   approval_challenge (existing_dek, n_E)
//! N -> E   approval_reveal    (n_N)                  E checks it against commit
//! both     code = six digits of H("siren/v1/approval-code" || transcript hash)
//! E -> N   approval_grant     (USK sealed to new_dek, signed by the USK, bound to the transcript)
//! ```
//!
//! A MITM must commit before it sees the honest party's nonce, so it matches the code with
//! probability 10^-6 per attempt (and every attempt shows the user a failed comparison).

use std::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use subtle::ConstantTimeEq;

use crate::envelope::{EnvelopeError, open_from, seal_to};
use crate::keys::{DekPublic, DekSecret, KEY_LEN, Signature, UskPublic, UskSecret};
use crate::labels;
use crate::transcript::{Digest, Transcript};

/// A random 32-byte nonce of one side of the exchange.
pub type ApprovalNonce = [u8; 32];

/// A fresh nonce.
pub fn random_nonce(rng: &mut (impl CryptoRng + ?Sized)) -> ApprovalNonce {
    let mut n = [0u8; 32];
    rng.fill_bytes(&mut n);
    n
}

/// The new device's commitment to its nonce.
pub fn commitment(uid: &Uid, new_dek: &DekPublic, nonce: &ApprovalNonce) -> Digest {
    let mut t = Transcript::new(labels::APPROVAL_COMMIT);
    t.text(&uid.to_string())
        .fixed(new_dek.as_bytes())
        .fixed(nonce);
    t.digest()
}

/// Whether a revealed nonce matches the commitment (constant time).
pub fn check_reveal(
    commit: &Digest,
    uid: &Uid,
    new_dek: &DekPublic,
    nonce: &ApprovalNonce,
) -> bool {
    bool::from(
        commitment(uid, new_dek, nonce)
            .as_bytes()
            .ct_eq(commit.as_bytes()),
    )
}

/// Everything both devices saw during one approval; the code and the USK transfer are bound to
/// its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalTranscript {
    /// The user.
    pub uid: Uid,
    /// The new device's DEK.
    pub new_dek: DekPublic,
    /// The approving device's DEK.
    pub existing_dek: DekPublic,
    /// The new device's commitment.
    pub commit: Digest,
    /// The approving device's nonce.
    pub existing_nonce: ApprovalNonce,
    /// The new device's revealed nonce.
    pub new_nonce: ApprovalNonce,
}

impl ApprovalTranscript {
    /// `SHA-256(label "siren/v1/approval-transcript" || uid || new_dek || existing_dek || commit ||
    /// existing_nonce || new_nonce)`.
    pub fn hash(&self) -> Digest {
        let mut t = Transcript::new(labels::APPROVAL_TRANSCRIPT);
        t.text(&self.uid.to_string())
            .fixed(self.new_dek.as_bytes())
            .fixed(self.existing_dek.as_bytes())
            .fixed(self.commit.as_bytes())
            .fixed(&self.existing_nonce)
            .fixed(&self.new_nonce);
        t.digest()
    }

    /// The six-digit code both devices show.
    pub fn short_code(&self) -> ShortCode {
        let mut t = Transcript::new(labels::APPROVAL_CODE);
        t.fixed(self.hash().as_bytes());
        let d = t.digest();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d.as_bytes()[..8]);
        // 2^64 mod 10^6 is tiny next to 2^64: the bias is below 2^-44.
        ShortCode((u64::from_be_bytes(first) % 1_000_000) as u32)
    }
}

/// A six-digit short authentication code, shown as `123 456`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortCode(u32);

impl ShortCode {
    /// The number, 0 to 999 999.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The safety number of two users: 40 digits (8 groups of 5) that both compute from their UIDs
/// and USKs, in the same order whoever computes it. Equal numbers on both sides mean neither
/// user sees a key the server slipped in.
pub fn safety_number(a: (&Uid, &UskPublic), b: (&Uid, &UskPublic)) -> String {
    let (first, second) = if (a.0, a.1.as_bytes()) <= (b.0, b.1.as_bytes()) {
        (a, b)
    } else {
        (b, a)
    };
    let mut t = Transcript::new(labels::SAFETY_NUMBER);
    t.text(&first.0.to_string())
        .fixed(first.1.as_bytes())
        .text(&second.0.to_string())
        .fixed(second.1.as_bytes());
    let d = t.digest();
    d.as_bytes()
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b.copy_from_slice(c);
            format!("{:05}", u32::from_be_bytes(b) % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The USK, sealed by an existing device to a new device's DEK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UskTransfer {
    /// The approving device.
    pub from_dek: DekPublic,
    /// The new device.
    pub to_dek: DekPublic,
    /// Ephemeral X25519 public key.
    #[serde(with = "crate::strict::fixed")]
    pub eph: [u8; KEY_LEN],
    /// The sealed 32-byte USK seed (tag and ciphertext).
    #[serde(with = "crate::strict::bytes")]
    pub ct: Vec<u8>,
    /// Ed25519 signature by the USK over [`UskTransfer::signed_bytes`].
    pub sig: Signature,
}

/// Why a USK transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Addressed to another device.
    #[error("transfer is addressed to another device")]
    NotForMe,
    /// The sending device is not one of the user's published devices.
    #[error("transfer comes from a device that is not published for this user")]
    UnknownSender,
    /// Decryption failed or the key exchange was refused.
    #[error("transfer does not open: {0}")]
    Open(#[from] EnvelopeError),
    /// The plaintext is not a 32-byte key.
    #[error("transfer does not hold a 32-byte key")]
    BadLength,
    /// The key inside is not the user's published USK.
    #[error("the key inside is not the user's published USK")]
    WrongKey,
    /// The signature does not verify under the transferred USK.
    #[error("transfer signature does not verify")]
    BadSignature,
}

impl UskTransfer {
    /// Seals `usk` for the new device, bound to `transcript`.
    pub fn seal(
        usk: &UskSecret,
        transcript: &ApprovalTranscript,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<UskTransfer, EnvelopeError> {
        let seed = usk.to_bytes();
        let (eph, ct) = seal_to(
            labels::USK_TRANSFER_KEY,
            &transcript.new_dek,
            seed.as_ref(),
            rng,
        )?;
        let mut transfer = UskTransfer {
            from_dek: transcript.existing_dek,
            to_dek: transcript.new_dek,
            eph,
            ct,
            sig: Signature::from_bytes([0; 64]),
        };
        transfer.sig = usk.sign(&transfer.signed_bytes(transcript));
        Ok(transfer)
    }

    /// `label "siren/v1/usk-transfer" || uid || from_dek || to_dek || transcript hash || eph ||
    /// var(ct)`.
    pub fn signed_bytes(&self, transcript: &ApprovalTranscript) -> Vec<u8> {
        let mut t = Transcript::new(labels::USK_TRANSFER);
        t.text(&transcript.uid.to_string())
            .fixed(self.from_dek.as_bytes())
            .fixed(self.to_dek.as_bytes())
            .fixed(transcript.hash().as_bytes())
            .fixed(&self.eph)
            .var(&self.ct);
        t.as_bytes().to_vec()
    }

    /// Opens the transfer on the new device (spec: "the device attempts to unpack the encrypted
    /// USK using the list of published DEKs"): the sender must be one of `published`, the key
    /// inside must be `published_usk`, and the signature must verify under it.
    pub fn open(
        &self,
        me: &DekSecret,
        transcript: &ApprovalTranscript,
        published_usk: &UskPublic,
        published: &[DekPublic],
    ) -> Result<UskSecret, TransferError> {
        if self.to_dek != me.public() || transcript.new_dek != me.public() {
            return Err(TransferError::NotForMe);
        }
        if self.from_dek != transcript.existing_dek || !published.contains(&self.from_dek) {
            return Err(TransferError::UnknownSender);
        }
        let plain = open_from(labels::USK_TRANSFER_KEY, me, &self.eph, &self.ct)?;
        let seed: &[u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| TransferError::BadLength)?;
        let usk = UskSecret::from_bytes(seed);
        if &usk.public() != published_usk {
            return Err(TransferError::WrongKey);
        }
        published_usk
            .verify(&self.signed_bytes(transcript), &self.sig)
            .map_err(|_| TransferError::BadSignature)?;
        Ok(usk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    struct Setup {
        uid: Uid,
        usk: UskSecret,
        existing: DekSecret,
        new: DekSecret,
        transcript: ApprovalTranscript,
    }

    fn setup(seed: u64) -> Setup {
        let mut rng = TestRng::seeded(seed);
        let uid = Uid::parse("alice@alpha.test").unwrap();
        let usk = UskSecret::generate(&mut rng);
        let existing = DekSecret::generate(&mut rng);
        let new = DekSecret::generate(&mut rng);
        let new_nonce = random_nonce(&mut rng);
        let commit = commitment(&uid, &new.public(), &new_nonce);
        let transcript = ApprovalTranscript {
            uid: uid.clone(),
            new_dek: new.public(),
            existing_dek: existing.public(),
            commit,
            existing_nonce: random_nonce(&mut rng),
            new_nonce,
        };
        Setup {
            uid,
            usk,
            existing,
            new,
            transcript,
        }
    }

    #[test]
    fn transfer_round_trip() {
        let s = setup(1);
        let mut rng = TestRng::seeded(2);
        let t = UskTransfer::seal(&s.usk, &s.transcript, &mut rng).unwrap();
        let got = t
            .open(
                &s.new,
                &s.transcript,
                &s.usk.public(),
                &[s.existing.public()],
            )
            .unwrap();
        assert_eq!(got.public(), s.usk.public());
        assert!(check_reveal(
            &s.transcript.commit,
            &s.uid,
            &s.new.public(),
            &s.transcript.new_nonce
        ));
    }

    #[test]
    fn transfer_refused_from_unpublished_device_or_other_transcript() {
        let s = setup(3);
        let mut rng = TestRng::seeded(4);
        let t = UskTransfer::seal(&s.usk, &s.transcript, &mut rng).unwrap();
        assert_eq!(
            t.open(&s.new, &s.transcript, &s.usk.public(), &[]).err(),
            Some(TransferError::UnknownSender)
        );
        let mut other = s.transcript.clone();
        other.existing_nonce[0] ^= 1;
        assert_eq!(
            t.open(&s.new, &other, &s.usk.public(), &[s.existing.public()])
                .err(),
            Some(TransferError::BadSignature)
        );
        let wrong_usk = UskSecret::generate(&mut rng).public();
        assert_eq!(
            t.open(&s.new, &s.transcript, &wrong_usk, &[s.existing.public()])
                .err(),
            Some(TransferError::WrongKey)
        );
        // Sealed to N: another device cannot open it even if it claims to be N.
        let stranger = DekSecret::generate(&mut rng);
        assert_eq!(
            t.open(
                &stranger,
                &s.transcript,
                &s.usk.public(),
                &[s.existing.public()]
            )
            .err(),
            Some(TransferError::NotForMe)
        );
    }

    #[test]
    fn code_changes_with_any_input_and_reveal_is_checked() {
        let s = setup(5);
        let code = s.transcript.short_code();
        assert!(code.value() < 1_000_000);
        assert_eq!(code.to_string().len(), 7);
        let mut t = s.transcript.clone();
        t.new_nonce[31] ^= 1;
        assert_ne!(t.short_code(), code);
        let mut bad = s.transcript.new_nonce;
        bad[0] ^= 1;
        assert!(!check_reveal(
            &s.transcript.commit,
            &s.uid,
            &s.new.public(),
            &bad
        ));
    }

    #[test]
    fn safety_number_is_symmetric_and_key_dependent() {
        let mut rng = TestRng::seeded(6);
        let (a, b) = (
            Uid::parse("a@x.test").unwrap(),
            Uid::parse("b@y.test").unwrap(),
        );
        let (ka, kb, kc) = (
            UskSecret::generate(&mut rng).public(),
            UskSecret::generate(&mut rng).public(),
            UskSecret::generate(&mut rng).public(),
        );
        let n = safety_number((&a, &ka), (&b, &kb));
        assert_eq!(n, safety_number((&b, &kb), (&a, &ka)));
        assert_eq!(n.len(), 8 * 5 + 7);
        assert_ne!(n, safety_number((&a, &ka), (&b, &kc)));
    }

    #[test]
    fn short_code_format() {
        assert_eq!(ShortCode(42).to_string(), "000 042");
        assert_eq!(ShortCode(123_456).to_string(), "123 456");
    }
}
