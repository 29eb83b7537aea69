//! The admin commands' side of the admin socket.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::UnixStream;

use super::wire::{self, Request, Response};

/// The longest a command may take inside the server (a `queue stats` over a large store reads
/// every queue).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `request` to the server listening on `socket`. `Ok(None)` when no server listens there
/// (no socket, or one left behind by a server that was killed): the caller then works on the
/// store itself.
pub async fn call(socket: &Path, request: &Request) -> anyhow::Result<Option<Response>> {
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => bail!(
            "cannot reach sirend's admin socket {}: {e} (run the command as the user sirend \
             runs as)",
            socket.display()
        ),
    };
    let talk = async {
        // A server that refuses the connection (another user) answers and closes without
        // reading: the write may fail, and the answer is still there to read.
        let written = wire::write_line(&mut stream, request).await;
        let line = match wire::read_line(&mut stream, wire::MAX_RESPONSE).await {
            Ok(line) => line,
            Err(e) => {
                written?;
                return Err(e.into());
            }
        };
        let response: Response = serde_json::from_slice(&line)?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(ANSWER_TIMEOUT, talk)
        .await
        .with_context(|| format!("sirend did not answer within {ANSWER_TIMEOUT:?}"))?
        .with_context(|| format!("talking to sirend on {}", socket.display()))?;
    Ok(Some(response))
}
