//! Stable error codes and the one error type.
//!
//! Every error that crosses the wire carries an [`ErrorCode`]: a number that never changes
//! meaning once released (PROTOCOL.md lists them), plus a human-readable text that may. Codes are
//! grouped by hundreds: 1xx framing and protocol, 2xx session and authentication, 3xx directory
//! and roster, 4xx delivery, 5xx federation, 9xx server conditions.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, $text:literal; )*) => {
        /// A stable numeric error code, as carried by the protocol's `error` message.
        ///
        /// Receivers must accept numbers they do not know (see [`ErrorCode::from_u16`]) and treat
        /// them by their hundred: an unknown 4xx is a delivery error, and so on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        #[repr(u16)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];

            /// The code for a number, if this version knows it.
            pub fn from_u16(n: u16) -> Option<Self> {
                match n {
                    $( $num => Some(ErrorCode::$name), )*
                    _ => None,
                }
            }

            /// A short, stable, lowercase name (used in logs and PROTOCOL.md).
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $text, )*
                }
            }
        }
    };
}

error_codes! {
    /// A frame's length prefix is zero or beyond the maximum, or the frame could not be read.
    BadFrame = 100, "bad_frame";
    /// A message is not valid CBOR or does not match its schema.
    MalformedMessage = 101, "malformed_message";
    /// A message's type (`t`) is not one this peer knows.
    UnknownMessageType = 102, "unknown_message_type";
    /// The protocol version in the hello is not supported.
    UnsupportedVersion = 103, "unsupported_version";
    /// The handshake failed (bad key, failed decryption, wrong challenge response).
    HandshakeFailed = 104, "handshake_failed";
    /// A step took longer than the peer allows.
    Timeout = 105, "timeout";
    /// A known message arrived in a state where it is not allowed.
    UnexpectedMessage = 106, "unexpected_message";
    /// A count or length in a message is beyond the protocol's limit.
    LimitExceeded = 107, "limit_exceeded";
    /// The request needs an authenticated session.
    AuthRequired = 200, "auth_required";
    /// Authentication failed. Deliberately the same for unknown users and wrong credentials.
    AuthFailed = 201, "auth_failed";
    /// The client chose a mechanism the server does not offer.
    UnknownMechanism = 202, "unknown_mechanism";
    /// Too many attempts; try again later.
    RateLimited = 203, "rate_limited";
    /// The device must be approved by one of the user's existing devices first.
    ApprovalRequired = 204, "approval_required";
    /// An existing device refused the approval request.
    ApprovalDenied = 205, "approval_denied";
    /// No existing device answered the approval request in time.
    ApprovalTimeout = 206, "approval_timeout";
    /// Too many logins are being checked right now; nothing was checked. Retry in a moment.
    LoginBusy = 207, "login_busy";
    /// The account was deleted, its password changed or it was disabled: the session ends and
    /// cannot be resumed; log in again.
    CredentialsChanged = 208, "credentials_changed";
    /// An administrator ended this session (`sirend sessions kick`, `sirend devices revoke`):
    /// it cannot be resumed; log in again.
    SessionEnded = 209, "session_ended";
    /// The user (or the requested record) does not exist.
    NotFound = 300, "not_found";
    /// A signature did not verify.
    BadSignature = 301, "bad_signature";
    /// A record or roster is older than, or forks from, the one the server holds.
    Rollback = 302, "rollback";
    /// The record is signed by a different USK than the user's.
    KeyMismatch = 303, "key_mismatch";
    /// The device key is revoked or not registered.
    UnknownDevice = 304, "unknown_device";
    /// This device was revoked (by another device of the account): its session ends and it must
    /// not reconnect with this key.
    DeviceRevoked = 305, "device_revoked";
    /// The sender fields of an envelope do not match the session that sent it.
    ForgedSender = 400, "forged_sender";
    /// The recipient's queue is full.
    QueueFull = 401, "queue_full";
    /// The recipient does not accept messages from the sender.
    Refused = 402, "refused";
    /// Federation is switched off on this server.
    FederationDisabled = 500, "federation_disabled";
    /// The federation policy refuses this peer.
    FederationDenied = 501, "federation_denied";
    /// The peer server could not be reached.
    PeerUnreachable = 502, "peer_unreachable";
    /// The peer's key does not match the pinned key.
    PeerKeyMismatch = 503, "peer_key_mismatch";
    /// Something went wrong inside the server; nothing about the request is implied.
    Internal = 900, "internal";
    /// The server is shutting down; reconnect and resume later.
    ShuttingDown = 901, "shutting_down";
    /// A backend (storage, directory) is unavailable; retry later.
    Unavailable = 902, "unavailable";
}

impl ErrorCode {
    /// The number carried on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// The one error type of the plugin contract: a stable code for the peer and a message for the
/// operator. Backend details stay inside `message`; they are logged, never sent to clients as-is
/// when they could leak (the host decides what a client sees).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl Error {
    /// Makes an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(
                seen.insert(code.as_u16()),
                "duplicate number {}",
                code.as_u16()
            );
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(999), None);
    }

    #[test]
    fn frozen_numbers() {
        // These numbers are part of the protocol; changing one breaks deployed clients.
        assert_eq!(ErrorCode::BadFrame.as_u16(), 100);
        assert_eq!(ErrorCode::UnknownMessageType.as_u16(), 102);
        assert_eq!(ErrorCode::AuthFailed.as_u16(), 201);
        assert_eq!(ErrorCode::Rollback.as_u16(), 302);
        assert_eq!(ErrorCode::ForgedSender.as_u16(), 400);
        assert_eq!(ErrorCode::FederationDisabled.as_u16(), 500);
        assert_eq!(ErrorCode::Internal.as_u16(), 900);
        assert_eq!(ErrorCode::AuthFailed.to_string(), "auth_failed (201)");
    }
}
