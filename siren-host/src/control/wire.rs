//! The admin channel's wire format: one request and one response per connection, each one line
//! of JSON (so an operator can talk to the socket with `socat` when debugging).
//!
//! ```text
//! → {"cmd":"user-add","user":"bob","password":"…"}
//! ← {"ok":true,"output":"created bob@example.org\n"}
//! ← {"ok":false,"error":"user bob already exists (use `sirend user passwd`)"}
//! ```
//!
//! A request is at most [`MAX_REQUEST`] bytes and must arrive within [`REQUEST_TIMEOUT`];
//! anything else (garbage, an unknown command, a field too many) gets `ok: false` with the reason,
//! and the connection is closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
};

/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The longest response line a client reads (a `user list` of a very large directory fits).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// How long the server waits for a request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An admin command. The field names are the wire's; user names and device fingerprints are
/// checked by the server, which says which one is wrong. (Commands without arguments are empty
/// struct variants, not unit ones: serde ignores unknown fields of an internally tagged unit
/// variant even under `deny_unknown_fields`.)
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// `sirend user add USER`.
    UserAdd {
        /// The username.
        user: String,
        /// The new password.
        password: String,
    },
    /// `sirend user passwd USER`.
    UserPasswd {
        /// The username.
        user: String,
        /// The new password.
        password: String,
    },
    /// `sirend user del USER`.
    UserDel {
        /// The username.
        user: String,
    },
    /// `sirend user list`.
    UserList {},
    /// `sirend devices list USER`.
    DevicesList {
        /// The username.
        user: String,
    },
    /// `sirend devices revoke USER DEVICE`.
    DevicesRevoke {
        /// The username.
        user: String,
        /// The start of the device's fingerprint (at least 4 hex digits; spaces ignored).
        device: String,
    },
    /// `sirend sessions list`.
    SessionsList {},
    /// `sirend sessions kick USER [DEVICE]`.
    SessionsKick {
        /// The username.
        user: String,
        /// Only this device's sessions (the start of its fingerprint).
        #[serde(default)]
        device: Option<String>,
    },
    /// `sirend queue stats [USER]`.
    QueueStats {
        /// Only this user's devices.
        #[serde(default)]
        user: Option<String>,
    },
    /// `sirend federation links`.
    FederationLinks {},
    /// `sirend status`.
    Status {},
    /// `sirend reload`.
    Reload {},
    /// `sirend backup --to DIR`.
    Backup {
        /// The backup directory, absolute (new, or empty).
        to: String,
    },
}

impl Request {
    /// The command's name, for logs (never its fields: a password may be one).
    pub fn name(&self) -> &'static str {
        match self {
            Request::UserAdd { .. } => "user add",
            Request::UserPasswd { .. } => "user passwd",
            Request::UserDel { .. } => "user del",
            Request::UserList {} => "user list",
            Request::DevicesList { .. } => "devices list",
            Request::DevicesRevoke { .. } => "devices revoke",
            Request::SessionsList {} => "sessions list",
            Request::SessionsKick { .. } => "sessions kick",
            Request::QueueStats { .. } => "queue stats",
            Request::FederationLinks {} => "federation links",
            Request::Status {} => "status",
            Request::Backup { .. } => "backup",
            Request::Reload {} => "reload",
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Whether the command succeeded.
    pub ok: bool,
    /// What the command prints (when `ok`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Why it failed (when not `ok`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Response {
    /// A success printing `output`.
    pub fn ok(output: String) -> Self {
        Response {
            ok: true,
            output,
            error: String::new(),
        }
    }

    /// A failure, for `error`.
    pub fn refused(error: impl Into<String>) -> Self {
        Response {
            ok: false,
            output: String::new(),
            error: error.into(),
        }
    }
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Longer than allowed.
    #[error("longer than {0} bytes")]
    TooLong(usize),
    /// The peer closed before the newline.
    #[error("incomplete (no newline before the connection closed)")]
    Incomplete,
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line of at most `max` bytes (newline included), without the newline.
pub async fn read_line(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, LineError> {
    let mut limited = tokio::io::BufReader::new(reader.take(max as u64 + 1));
    let mut line = Vec::new();
    limited.read_until(b'\n', &mut line).await?;
    if line.len() > max {
        return Err(LineError::TooLong(max));
    }
    if line.pop() != Some(b'\n') {
        return Err(LineError::Incomplete);
    }
    Ok(line)
}

/// Writes `value` as one JSON line.
pub async fn write_line(
    writer: &mut (impl AsyncWrite + Unpin),
    value: &impl Serialize,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"user-add","user":"bob","password":"pw"}"#).unwrap();
        assert!(
            r == Request::UserAdd {
                user: "bob".into(),
                password: "pw".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"sessions-kick","user":"bob"}"#).unwrap();
        assert!(
            r == Request::SessionsKick {
                user: "bob".into(),
                device: None
            }
        );
        for bad in [
            r#"{"cmd":"user-add","user":"bob"}"#,
            r#"{"cmd":"status","extra":1}"#,
            r#"{"cmd":"format-disk"}"#,
            r#"[1,2,3]"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut ok: &[u8] = b"{}\nrest";
        assert_eq!(read_line(&mut ok, 8).await.unwrap(), b"{}");
        let mut long: &[u8] = b"0123456789\n";
        assert!(matches!(
            read_line(&mut long, 8).await,
            Err(LineError::TooLong(8))
        ));
        let mut cut: &[u8] = b"{\"cmd\"";
        assert!(matches!(
            read_line(&mut cut, 64).await,
            Err(LineError::Incomplete)
        ));
    }
}
