//! The canonical byte strings that Siren signs and hashes.
//!
//! Signatures never cover CBOR (whose encodings are not unique); they cover a *transcript*: a
//! domain-separation label followed by the fields in a fixed order, each encoded without
//! ambiguity. PROTOCOL.md §"Signed bytes" specifies the rules:
//!
//! * the label: one byte of length, then the ASCII label (e.g. `siren/v1/message`);
//! * a fixed-size field (a key, a hash, a signature): its raw bytes;
//! * a variable-size field (text, ciphertext): a 4-byte big-endian length, then the bytes;
//! * an integer: 8 bytes big-endian;
//! * an optional field: one byte, 0 (absent) or 1 (present) followed by the field;
//! * a list: a 4-byte big-endian count, then each element.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Builds the canonical bytes of one signed or hashed object.
#[derive(Clone)]
pub(crate) struct Transcript(Vec<u8>);

impl Transcript {
    /// Starts a transcript with its domain-separation label.
    pub(crate) fn new(label: &str) -> Self {
        debug_assert!(label.len() < 256 && label.is_ascii());
        let mut buf = Vec::with_capacity(256);
        // Labels are compile-time constants shorter than 256 bytes (checked by a test).
        buf.push(label.len() as u8);
        buf.extend_from_slice(label.as_bytes());
        Transcript(buf)
    }

    /// A field whose size is fixed by the protocol.
    pub(crate) fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A field of variable size (frames bound it far below 4 GiB).
    pub(crate) fn var(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// Text, as a variable-size field of its UTF-8 bytes.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.var(s.as_bytes())
    }

    /// An unsigned integer.
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A count that precedes a list.
    pub(crate) fn count(&mut self, n: usize) -> &mut Self {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// An optional text field.
    pub(crate) fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.text(s);
            }
        }
        self
    }

    /// A boolean as one byte.
    pub(crate) fn flag(&mut self, b: bool) -> &mut Self {
        self.0.push(u8::from(b));
        self
    }

    /// The bytes built so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// SHA-256 of the bytes built so far.
    pub(crate) fn digest(&self) -> Digest {
        Digest::of(&self.0)
    }
}

/// The bytes a device signs with its certificate's key in the `X509` login mechanism
/// (PROTOCOL.md §9.2):
/// `label("siren/v1/x509-auth") || channel_binding || device_key || var(uid)`.
///
/// `channel_binding` is the session's handshake hash and `device_key` the DEK the session was
/// opened with, so a proof made for one handshake is worthless in any other.
pub fn x509_auth(
    channel_binding: &[u8; 32],
    device_key: &[u8; 32],
    uid: &siren_api::Uid,
) -> Vec<u8> {
    let mut t = Transcript::new(crate::labels::X509_AUTH);
    t.fixed(channel_binding)
        .fixed(device_key)
        .text(&uid.to_string());
    t.0
}

/// A SHA-256 value: record hashes, roster hashes, commitments.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The all-zero value that stands for "no previous version".
    pub const ZERO: Digest = Digest([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::strict::fixed::deserialize(d).map(Digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unambiguous() {
        // "ab" + "c" and "a" + "bc" must differ: lengths are part of the encoding.
        let mut x = Transcript::new("t");
        x.text("ab").text("c");
        let mut y = Transcript::new("t");
        y.text("a").text("bc");
        assert_ne!(x.as_bytes(), y.as_bytes());
        // Different labels give different bytes even with equal fields.
        let mut z = Transcript::new("u");
        z.text("ab").text("c");
        assert_ne!(x.digest(), z.digest());
    }

    #[test]
    fn x509_auth_layout() {
        let uid = siren_api::Uid::parse("alice@alpha.test").unwrap();
        let bytes = x509_auth(&[1; 32], &[2; 32], &uid);
        let mut expected = vec![18u8];
        expected.extend_from_slice(b"siren/v1/x509-auth");
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&[0, 0, 0, 16]);
        expected.extend_from_slice(b"alice@alpha.test");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn layout_matches_protocol_md() {
        let mut t = Transcript::new("siren/v1/x");
        t.u64(1).text("hi").opt_text(None).flag(true).count(2);
        let mut expected = vec![10u8];
        expected.extend_from_slice(b"siren/v1/x");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        expected.extend_from_slice(&[0, 1, 0, 0, 0, 2]);
        assert_eq!(t.as_bytes(), &expected[..]);
    }
}
