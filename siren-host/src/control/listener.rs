//! The server's side of the admin socket: binding it, checking who connects, answering one
//! request per connection.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use super::commands::Ops;
use super::wire::{self, Request, Response};

/// Admin commands answered at once; more connections are told to retry.
const CONCURRENT: usize = 4;

/// Binds the admin socket at `path` (mode 0600). A socket left behind by a server that was
/// killed is replaced; one another server still answers on is refused.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another sirend answers on {}; stop it first (or give this one another \
                 `[server] data_dir`)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale admin socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| {
        format!(
            "cannot create the admin socket {} (a Unix socket path must be shorter than 108 \
             bytes: use a shorter `[server] data_dir`)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(listener)
}

/// Answers admin connections until `shutdown` flips.
pub async fn serve(ops: Arc<Ops>, listener: UnixListener, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let ops = ops.clone();
        let permit = slots.clone().try_acquire_owned();
        tokio::spawn(async move {
            let mut stream = stream;
            match permit {
                Ok(_permit) => answer(&ops, &mut stream).await,
                Err(_) => {
                    let busy = Response::refused(format!(
                        "sirend is running {CONCURRENT} admin commands already; try again"
                    ));
                    send(&mut stream, &busy).await;
                }
            }
        });
    }
}

/// Whether a process of `uid` may use the admin socket of a server running as `own`: only the
/// server's own user.
fn allowed(uid: u32, own: u32) -> bool {
    uid == own
}

async fn answer(ops: &Ops, stream: &mut UnixStream) {
    let own = rustix::process::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if allowed(cred.uid(), own) => {}
        Ok(cred) => {
            tracing::warn!(
                uid = cred.uid(),
                "admin socket: refused a connection from another user"
            );
            let refusal = Response::refused(format!(
                "refused: sirend's admin socket answers only its own user (uid {own}), not uid {}",
                cred.uid()
            ));
            send(stream, &refusal).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin socket: cannot tell who connected; refused");
            send(
                stream,
                &Response::refused("refused: cannot tell who is connecting"),
            )
            .await;
            return;
        }
    }
    let response = match tokio::time::timeout(
        wire::REQUEST_TIMEOUT,
        wire::read_line(stream, wire::MAX_REQUEST),
    )
    .await
    {
        Err(_) => Response::refused(format!(
            "no request within {} s",
            wire::REQUEST_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Response::refused(format!("bad request: {e}")),
        Ok(Ok(line)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::refused(format!(
                "bad request: {e} (one JSON object per line, as `sirend` sends it)"
            )),
            Ok(request) => {
                let command = request.name();
                match ops.run(request).await {
                    Ok(output) => {
                        tracing::info!(command, "admin command done");
                        Response::ok(output)
                    }
                    Err(e) => {
                        tracing::info!(command, error = %e, "admin command failed");
                        Response::refused(format!("{e:#}"))
                    }
                }
            }
        },
    };
    send(stream, &response).await;
}

async fn send(stream: &mut UnixStream, response: &Response) {
    // A client that does not read its answer gets nothing more than a closed socket.
    let _ = tokio::time::timeout(wire::REQUEST_TIMEOUT, wire::write_line(stream, response)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_own_user_is_answered() {
        assert!(allowed(1000, 1000));
        assert!(
            !allowed(0, 1000),
            "not even root, for a server that is not root"
        );
        assert!(!allowed(65534, 0));
    }
}
