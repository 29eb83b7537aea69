//! Running a plugin call from async code without stalling the executor.

use siren_api::{Error, ErrorCode};

/// Runs `f` on tokio's blocking pool when called inside a tokio runtime (a plugin call may take
/// up to its deadline), or in place otherwise.
pub(crate) async fn off_executor<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Error> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(f).await.map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("wasm plugin call did not complete: {e}"),
            )
        }),
        Err(_) => Ok(f()),
    }
}
