//! Key types: the Server Encryption Key (SEK), the User Signing Key (USK) and the Device
//! Encryption Key (DEK).
//!
//! * SEK: X25519, one per server (plus retired ones kept during a rotation). Published in DNS.
//! * USK: Ed25519, one per user, generated on the user's first device and handed from device to
//!   device; the server never sees its secret half.
//! * DEK: X25519, one per device login session.
//!
//! Public keys are 32 raw bytes on the wire (CBOR byte strings) and base64 (RFC 4648, standard
//! alphabet, with padding) in text. Secret halves are zeroized when dropped and never printed by
//! `Debug`. The SEK and the DEK are the same kind of key with different jobs; the type parameter
//! keeps them apart so one can never be passed where the other is expected.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::labels;
use crate::transcript::Transcript;

/// Length of every public and secret key, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Errors from decoding keys or from using them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Text that should hold a key is not base64 of 32 bytes.
    #[error("a {what} must be 32 bytes in base64")]
    BadEncoding {
        /// Which key.
        what: &'static str,
    },
    /// An Ed25519 public key is not a valid point, or is of small order.
    #[error("not a usable Ed25519 public key (invalid or small-order point)")]
    WeakSigningKey,
    /// An X25519 exchange produced the all-zero value: the peer's key is of low order.
    #[error("X25519 result is all-zero: the peer sent a low-order point")]
    NonContributory,
    /// A signature did not verify under `verify_strict`.
    #[error("signature does not verify")]
    BadSignature,
}

mod sealed {
    pub trait Sealed {}
}

/// What an X25519 key is for: [`Server`] (SEK) or [`Device`] (DEK).
pub trait X25519Role: sealed::Sealed + 'static {
    /// Short name used in errors and `Debug`.
    const NAME: &'static str;
}

/// Marker for the Server Encryption Key.
#[derive(Debug)]
pub enum Server {}
/// Marker for a Device Encryption Key.
#[derive(Debug)]
pub enum Device {}

impl sealed::Sealed for Server {}
impl sealed::Sealed for Device {}
impl X25519Role for Server {
    const NAME: &'static str = "SEK";
}
impl X25519Role for Device {
    const NAME: &'static str = "DEK";
}

/// An X25519 public key with a role. See [`SekPublic`] and [`DekPublic`].
pub struct X25519Public<R> {
    bytes: [u8; KEY_LEN],
    role: PhantomData<R>,
}

/// The public Server Encryption Key.
pub type SekPublic = X25519Public<Server>;
/// A public Device Encryption Key: it also names the device.
pub type DekPublic = X25519Public<Device>;

impl<R: X25519Role> X25519Public<R> {
    /// Wraps 32 raw bytes. Every value is accepted here; a low-order point is refused when it is
    /// used in an exchange ([`KeyError::NonContributory`]).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        X25519Public {
            bytes,
            role: PhantomData,
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Base64 text (standard alphabet, padded): 44 characters.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes)
    }

    /// Parses base64 text of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_base64_key(text, R::NAME).map(Self::from_bytes)
    }

    /// The key id: the first 8 bytes of `SHA-256(label "siren/v1/key-id" || key)`. A client names
    /// the SEK it expects by this id in its hello, so a server holding several keys (during a
    /// rotation) knows which one to use.
    pub fn key_id(&self) -> [u8; 8] {
        let mut t = Transcript::new(labels::KEY_ID);
        t.fixed(&self.bytes);
        let digest = t.digest();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_bytes()[..8]);
        id
    }
}

fn decode_base64_key(text: &str, what: &'static str) -> Result<[u8; KEY_LEN], KeyError> {
    let raw = BASE64
        .decode(text.trim())
        .map_err(|_| KeyError::BadEncoding { what })?;
    raw.try_into().map_err(|_| KeyError::BadEncoding { what })
}

impl<R> Clone for X25519Public<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for X25519Public<R> {}
impl<R> PartialEq for X25519Public<R> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl<R> Eq for X25519Public<R> {}
impl<R> PartialOrd for X25519Public<R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<R> Ord for X25519Public<R> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl<R> std::hash::Hash for X25519Public<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl<R: X25519Role> fmt::Debug for X25519Public<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", R::NAME, self.to_base64())
    }
}

impl<R: X25519Role> fmt::Display for X25519Public<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl<R: X25519Role> std::str::FromStr for X25519Public<R> {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_base64(s)
    }
}

impl<R: X25519Role> Serialize for X25519Public<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de, R: X25519Role> Deserialize<'de> for X25519Public<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::strict::fixed::deserialize(d).map(Self::from_bytes)
    }
}

/// An X25519 secret key with a role. See [`SekSecret`] and [`DekSecret`]. Zeroized on drop.
pub struct X25519Secret<R> {
    secret: StaticSecret,
    public: X25519Public<R>,
}

/// The secret Server Encryption Key.
pub type SekSecret = X25519Secret<Server>;
/// A secret Device Encryption Key.
pub type DekSecret = X25519Secret<Device>;

impl<R: X25519Role> X25519Secret<R> {
    /// Generates a fresh key.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(*bytes)
    }

    /// Rebuilds a key from its 32 secret bytes (as stored by [`Self::to_bytes`]).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = X25519Public::from_bytes(PublicKey::from(&secret).to_bytes());
        X25519Secret { secret, public }
    }

    /// The 32 secret bytes, for storage; zeroized when the returned value is dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> X25519Public<R> {
        self.public
    }

    /// X25519 with a peer's public key (of any role, or an ephemeral), refusing an all-zero
    /// result.
    pub(crate) fn agree(&self, peer: &[u8; KEY_LEN]) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        dh_static(&self.secret, peer)
    }
}

impl<R: X25519Role> fmt::Debug for X25519Secret<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Secret(public: {})", R::NAME, self.public.to_base64())
    }
}

/// A one-time X25519 key (handshake and envelope ephemerals). Zeroized on drop.
pub(crate) struct Ephemeral {
    secret: StaticSecret,
    public: [u8; KEY_LEN],
}

impl Ephemeral {
    pub(crate) fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        let secret = StaticSecret::from(*bytes);
        let public = PublicKey::from(&secret).to_bytes();
        Ephemeral { secret, public }
    }

    pub(crate) fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    pub(crate) fn agree(&self, peer: &[u8; KEY_LEN]) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
        dh_static(&self.secret, peer)
    }
}

/// X25519, refusing the all-zero output that a low-order peer point forces (RFC 7748 §6.1).
pub(crate) fn dh_static(
    secret: &StaticSecret,
    peer: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(KeyError::NonContributory);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The public User Signing Key (Ed25519). Always a valid point of large order: weak keys are
/// refused when decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UskPublic(VerifyingKey);

impl UskPublic {
    /// Decodes 32 bytes, refusing invalid and small-order points.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::WeakSigningKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakSigningKey);
        }
        Ok(UskPublic(key))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }

    /// Base64 text (standard alphabet, padded).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }

    /// Parses base64 text.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_base64_key(text, "USK")?)
    }

    /// Verifies `signature` over the canonical bytes `signed` with `verify_strict` (which refuses
    /// small-order components and non-canonical encodings).
    pub(crate) fn verify(&self, signed: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(signed, &sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl PartialOrd for UskPublic {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for UskPublic {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for UskPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "USK({})", self.to_base64())
    }
}

impl fmt::Display for UskPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl std::str::FromStr for UskPublic {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_base64(s)
    }
}

impl Serialize for UskPublic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for UskPublic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: [u8; KEY_LEN] = crate::strict::fixed::deserialize(d)?;
        UskPublic::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// The secret User Signing Key. Zeroized on drop. Only ever travels between the user's own
/// devices, sealed (see [`crate::approval`]).
pub struct UskSecret(SigningKey);

impl UskSecret {
    /// Generates a fresh key (on the user's first device).
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_bytes(&seed)
    }

    /// Rebuilds the key from its 32-byte seed (RFC 8032 secret key).
    pub fn from_bytes(seed: &[u8; KEY_LEN]) -> Self {
        UskSecret(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for storage; zeroized when the returned value is dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> UskPublic {
        UskPublic(self.0.verifying_key())
    }

    /// Signs canonical bytes that already start with their domain-separation label.
    pub(crate) fn sign(&self, signed: &[u8]) -> Signature {
        Signature(self.0.sign(signed).to_bytes())
    }
}

impl fmt::Debug for UskSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UskSecret(public: {})", self.public().to_base64())
    }
}

/// An Ed25519 signature as carried on the wire (64 bytes). Only meaningful together with the
/// domain-separated bytes it covers; see each signed type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub(crate) [u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps raw bytes (checked only when verified).
    pub fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Signature(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", BASE64.encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::strict::fixed::deserialize(d).map(Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn secrets_round_trip_and_debug_hides_them() {
        let mut rng = TestRng::seeded(1);
        let dek = DekSecret::generate(&mut rng);
        let again = DekSecret::from_bytes(*dek.to_bytes());
        assert_eq!(dek.public(), again.public());
        let dbg = format!("{dek:?}");
        assert!(dbg.starts_with("DEKSecret(public: "));
        assert!(!dbg.contains(&BASE64.encode(*dek.to_bytes())));

        let usk = UskSecret::generate(&mut rng);
        let again = UskSecret::from_bytes(&usk.to_bytes());
        assert_eq!(usk.public(), again.public());
        assert!(!format!("{usk:?}").contains(&BASE64.encode(*usk.to_bytes())));
    }

    #[test]
    fn base64_round_trip() {
        let mut rng = TestRng::seeded(2);
        let sek = SekSecret::generate(&mut rng).public();
        let text = sek.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<SekPublic>().unwrap(), sek);
        assert!(SekPublic::from_base64("AAAA").is_err());
        assert!(SekPublic::from_base64("not base64!").is_err());
        let usk = UskSecret::generate(&mut rng).public();
        assert_eq!(UskPublic::from_base64(&usk.to_base64()).unwrap(), usk);
    }

    #[test]
    fn weak_usk_refused() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            UskPublic::from_bytes(&identity),
            Err(KeyError::WeakSigningKey)
        );
    }

    #[test]
    fn key_id_depends_on_key() {
        let mut rng = TestRng::seeded(3);
        let a = SekSecret::generate(&mut rng).public();
        let b = SekSecret::generate(&mut rng).public();
        assert_ne!(a.key_id(), b.key_id());
        assert_eq!(a.key_id(), a.key_id());
    }
}
