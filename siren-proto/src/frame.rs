//! Framing: every Siren message travels in a frame of a 4-byte big-endian length followed by
//! that many bytes. The length is checked against a maximum (1 MiB by default) before any memory
//! is set aside for the frame, and a zero length is refused.
//!
//! Hosts that read from an async stream use [`parse_header`] and then read exactly the length it
//! returns; [`FrameDecoder`] does the same job for callers that receive bytes in arbitrary
//! pieces (and for the fuzzer).

/// Default largest frame payload, in bytes (the 4-byte prefix not counted).
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Why a frame was refused. Both cases close the connection (PROTOCOL.md error 100).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame announced a length of zero.
    #[error("empty frame")]
    Empty,
    /// A frame announced, or a sender tried to send, more than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Checks a length prefix and returns the payload length it announces.
pub fn parse_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    check_len(len, max)?;
    Ok(len)
}

fn check_len(len: usize, max: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(())
}

/// Appends one frame (prefix and payload) to `out`.
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8], max: usize) -> Result<(), FrameError> {
    check_len(payload.len(), max)?;
    // check_len bounds the length by u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// One frame (prefix and payload) as a new buffer.
pub fn encode(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(&mut out, payload, max)?;
    Ok(out)
}

/// Splits a byte stream that arrives in arbitrary pieces into frames.
///
/// Memory held is what the caller pushed and has not yet taken out as frames; a caller that
/// drains [`FrameDecoder::next_frame`] before pushing more keeps it below one frame plus one read.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `max`.
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete frame's payload, `None` if more bytes are needed, or an error (after
    /// which the stream is unusable: close the connection).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = parse_header(*header, self.max)?;
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let frame = payload.to_vec();
        self.pos += HEADER_LEN + len;
        if self.pos > self.max {
            // Compact now and then so a long-lived decoder does not grow without bound.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_zero_and_oversized_before_buffering() {
        assert_eq!(parse_header([0, 0, 0, 0], 10), Err(FrameError::Empty));
        assert_eq!(
            parse_header([0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
        let mut d = FrameDecoder::new(16);
        d.push(&[0, 0, 0, 17]);
        // The error comes from the header alone: no payload needed.
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
        assert!(encode(&[0; 17], 16).is_err());
        assert!(encode(&[], 16).is_err());
    }

    #[test]
    fn waits_for_whole_frames() {
        let mut d = FrameDecoder::new(100);
        let wire = encode(b"hello", 100).unwrap();
        d.push(&wire[..3]);
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(&wire[3..6]);
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(&wire[6..]);
        assert_eq!(d.next_frame().unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8),
            cuts in proptest::collection::vec(1usize..40, 0..20),
        ) {
            let mut wire = Vec::new();
            for f in &frames {
                encode_into(&mut wire, f, 64).unwrap();
            }
            let mut d = FrameDecoder::new(64);
            let mut got = Vec::new();
            let mut rest = &wire[..];
            for cut in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
                let n = cut.min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
        }
    }
}
