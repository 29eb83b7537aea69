//! Every domain-separation label Siren uses, in one place.
//!
//! A signature or hash made for one purpose can never be accepted for another, because the label
//! is the first thing in the signed bytes (see [`crate::transcript`]). Labels carry the protocol
//! version; a v2 change to what a label covers gets a new label. PROTOCOL.md §"Labels" lists the
//! same strings with the exact bytes each one covers.

/// Ed25519 by the USK over a device record.
pub const DEVICE_RECORD: &str = "siren/v1/device-record";
/// Ed25519 by the USK over a device revocation.
pub const DEVICE_REVOCATION: &str = "siren/v1/device-revocation";
/// SHA-256 chaining one directory entry to the next.
pub const ENTRY_HASH: &str = "siren/v1/entry-hash";
/// Ed25519 by the USK over a Personal Roster.
pub const ROSTER: &str = "siren/v1/roster";
/// SHA-256 chaining one roster version to the next.
pub const ROSTER_HASH: &str = "siren/v1/roster-hash";
/// Ed25519 by the USK over an end-to-end message envelope.
pub const MESSAGE: &str = "siren/v1/message";
/// HKDF info for an envelope's one-time key and nonce.
pub const MESSAGE_KEY: &str = "siren/v1/message-key";
/// Ed25519 by the USK over a USK transfer to a new device.
pub const USK_TRANSFER: &str = "siren/v1/usk-transfer";
/// HKDF info for a USK transfer's one-time key and nonce.
pub const USK_TRANSFER_KEY: &str = "siren/v1/usk-transfer-key";
/// SHA-256 commitment to the new device's approval nonce.
pub const APPROVAL_COMMIT: &str = "siren/v1/approval-commit";
/// SHA-256 over the whole device-approval exchange.
pub const APPROVAL_TRANSCRIPT: &str = "siren/v1/approval-transcript";
/// SHA-256 from which the six-digit short authentication code is taken.
pub const APPROVAL_CODE: &str = "siren/v1/approval-code";
/// SHA-256 from which the safety number of two users is taken.
pub const SAFETY_NUMBER: &str = "siren/v1/safety-number";
/// SHA-256 key id of an X25519 public key (names a SEK in the hello).
pub const KEY_ID: &str = "siren/v1/key-id";
/// Signature by a client certificate's key in the `X509` login mechanism.
pub const X509_AUTH: &str = "siren/v1/x509-auth";

/// The handshake's protocol name: the initial transcript hash is `SHA-256` of this string.
pub const HANDSHAKE_PROTOCOL: &str = "Siren_IK_25519_XSalsa20Poly1305_SHA256_v1";
/// Prologue label mixed into every handshake transcript.
pub const HANDSHAKE_PROLOGUE: &str = "siren/v1/handshake";
/// HKDF info for a handshake message key (followed by the transcript hash).
pub const HANDSHAKE_MESSAGE_KEY: &str = "siren/v1/handshake-message-key";
/// HKDF info for the transport keys (followed by the final transcript hash).
pub const HANDSHAKE_SPLIT: &str = "siren/v1/handshake-split";
/// HKDF info for the proof that a server holds its new SEK during a rotation.
pub const SEK_ROTATION: &str = "siren/v1/sek-rotation";

/// Signature label for a group's membership version (signed by the USK of the member who made
/// it).
pub const GROUP: &str = "siren/v1/group";
/// Hash label chaining a group's membership versions.
pub const GROUP_HASH: &str = "siren/v1/group-hash";

/// All labels, for the uniqueness test and for PROTOCOL.md.
pub const ALL: &[&str] = &[
    DEVICE_RECORD,
    DEVICE_REVOCATION,
    ENTRY_HASH,
    ROSTER,
    ROSTER_HASH,
    GROUP,
    GROUP_HASH,
    MESSAGE,
    MESSAGE_KEY,
    USK_TRANSFER,
    USK_TRANSFER_KEY,
    APPROVAL_COMMIT,
    APPROVAL_TRANSCRIPT,
    APPROVAL_CODE,
    SAFETY_NUMBER,
    KEY_ID,
    X509_AUTH,
    HANDSHAKE_PROTOCOL,
    HANDSHAKE_PROLOGUE,
    HANDSHAKE_MESSAGE_KEY,
    HANDSHAKE_SPLIT,
    SEK_ROTATION,
];

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_unique_short_ascii() {
        let mut seen = std::collections::HashSet::new();
        for label in super::ALL {
            assert!(label.is_ascii() && label.len() < 256, "{label}");
            assert!(seen.insert(*label), "duplicate label {label}");
        }
    }
}
