//! The encrypted transport after the handshake.
//!
//! Each direction has its own key (from the handshake's split) and its own counter, starting at
//! zero and never sent on the wire. The nonce is the direction byte (1 initiator→responder, 2
//! responder→initiator), 15 zero bytes, then the counter as 8 bytes big-endian. TCP delivers in
//! order, so the receiver knows the counter: a replayed, dropped, reordered or reflected frame
//! fails to decrypt, and the connection must then be closed ([`Transport::open`] refuses to go
//! on).

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{self, NONCE_LEN, TAG_LEN};

/// Encryption overhead per frame (the Poly1305 tag).
pub const OVERHEAD: usize = TAG_LEN;

/// Transport failures; all of them end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A frame failed to authenticate (altered, replayed, reordered, reflected or truncated).
    #[error("frame failed to authenticate")]
    Decrypt,
    /// An earlier frame failed; the stream cannot be trusted any more.
    #[error("the transport already failed; close the connection")]
    Failed,
    /// 2^64 frames were sent in one direction.
    #[error("frame counter exhausted")]
    CounterExhausted,
}

struct Direction {
    key: Zeroizing<[u8; 32]>,
    tag: u8,
    counter: u64,
}

impl Direction {
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[0] = self.tag;
        n[NONCE_LEN - 8..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    fn advance(&mut self) -> Result<(), TransportError> {
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or(TransportError::CounterExhausted)?;
        Ok(())
    }
}

/// Directional keys and counters for one connection.
pub struct Transport {
    sealer: Sealer,
    opener: Opener,
}

const I2R: u8 = 1;
const R2I: u8 = 2;

impl Transport {
    pub(crate) fn new(i2r: &[u8; 32], r2i: &[u8; 32], initiator: bool) -> Self {
        let dir = |key: &[u8; 32], tag| Direction {
            key: Zeroizing::new(*key),
            tag,
            counter: 0,
        };
        let (send, recv) = if initiator {
            (dir(i2r, I2R), dir(r2i, R2I))
        } else {
            (dir(r2i, R2I), dir(i2r, I2R))
        };
        Transport {
            sealer: Sealer { dir: send },
            opener: Opener {
                dir: recv,
                failed: false,
            },
        }
    }

    /// Encrypts the next outgoing frame payload.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sealer.seal(plaintext)
    }

    /// Decrypts the next incoming frame payload. After one failure every later call fails too.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.opener.open(ciphertext)
    }

    /// Frames sent and received so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.sealer.dir.counter, self.opener.dir.counter)
    }

    /// Splits the transport into its two directions, so that a reader task and a writer task
    /// can each own one.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

/// The sending direction of a [`Transport`].
pub struct Sealer {
    dir: Direction,
}

impl Sealer {
    /// Encrypts the next outgoing frame payload.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.dir.counter == u64::MAX {
            return Err(TransportError::CounterExhausted);
        }
        let ct = crypto::seal(&self.dir.key, &self.dir.nonce(), plaintext);
        self.dir.advance()?;
        Ok(ct)
    }
}

/// The receiving direction of a [`Transport`].
pub struct Opener {
    dir: Direction,
    failed: bool,
}

impl Opener {
    /// Decrypts the next incoming frame payload. After one failure every later call fails too.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.failed {
            return Err(TransportError::Failed);
        }
        match crypto::open(&self.dir.key, &self.dir.nonce(), ciphertext) {
            Ok(pt) => {
                self.dir.advance()?;
                Ok(pt)
            }
            Err(_) => {
                self.failed = true;
                Err(TransportError::Decrypt)
            }
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("sent", &self.sealer.dir.counter)
            .field("received", &self.opener.dir.counter)
            .field("failed", &self.opener.failed)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("sent", &self.dir.counter)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("received", &self.dir.counter)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
