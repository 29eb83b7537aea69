//! Frames on a socket: read one frame (length checked before the buffer is allocated), write one
//! frame.

use siren_proto::frame::{self, FrameError, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection (or it broke).
    #[error("connection closed: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix is zero or too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Reads one frame's payload, refusing lengths above `max` before allocating.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    rd.read_exact(&mut header).await?;
    let len = frame::parse_header(header, max)?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Writes one frame (prefix and payload) in a single write.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    payload: &[u8],
    max: usize,
) -> std::io::Result<()> {
    let bytes = frame::encode(payload, max)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    wr.write_all(&bytes).await
}
