//! Random identifiers: session ids and message ids.

use std::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// A fresh random id.
            pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                $name(bytes)
            }

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }

            /// Parses [`Self::to_hex`]'s form (either case); `None` unless it is exactly that.
            pub fn from_hex(text: &str) -> Option<Self> {
                let digits = text.as_bytes();
                if digits.len() != 2 * $len || !digits.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let mut bytes = [0u8; $len];
                for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
                    *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
                }
                Some($name(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::strict::fixed::deserialize(d).map($name)
            }
        }
    };
}

random_id!(
    /// A session identifier: 16 random bytes chosen by the server and bound to the DEK that
    /// opened the session. Worthless without that DEK: resuming requires a new handshake that
    /// proves the same DEK. `Debug` shows only a prefix, so logs cannot leak whole ids.
    SessionId,
    16
);

random_id!(
    /// A message identifier: 16 random bytes chosen by the sender, the same in every copy of one
    /// message (one per recipient device). Receivers drop duplicates by it.
    MessageId,
    16
);

random_id!(
    /// A file identifier: 16 random bytes chosen by the sender of a file, naming its manifest
    /// and its chunks (PROTOCOL.md §12).
    FileId,
    16
);

random_id!(
    /// A group identifier: 16 random bytes chosen by the group's creator (PROTOCOL.md §12.1).
    GroupId,
    16
);

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self.to_hex())
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({})", self.to_hex())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.to_hex()[..8])
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_nothing_else_parses() {
        let id = GroupId::from_bytes([0xab; 16]);
        assert_eq!(GroupId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(GroupId::from_hex(&id.to_hex().to_uppercase()), Some(id));
        for bad in [
            "",
            "ab",
            &"ab".repeat(17),
            &format!("+a{}", "ab".repeat(15)),
            &"zz".repeat(16),
        ] {
            assert_eq!(GroupId::from_hex(bad), None, "{bad:?}");
        }
    }
}
