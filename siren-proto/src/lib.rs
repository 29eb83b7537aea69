//! The Siren wire protocol, sans-IO.
//!
//! This crate turns bytes into checked values and back; it never opens a socket, reads a file or
//! starts a thread. `sirend`, the `siren` client, the fuzzers and the tests all drive the same
//! state machines, in the style of `quinn-proto`. PROTOCOL.md is the normative description; each
//! module here implements one of its sections:
//!
//! | module | PROTOCOL.md | what |
//! |---|---|---|
//! | [`frame`] | Framing | 4-byte length prefix, maximum checked before allocating |
//! | [`handshake`] | Handshake | mutual X25519 handshake (client→server, server↔server) |
//! | [`transport`] | Transport | directional keys, counter nonces |
//! | [`message`] | Messages | CBOR message sets and the versioning rules |
//! | [`keys`] | Keys | SEK, USK, DEK |
//! | [`fingerprint`] | Keys | key fingerprints as people compare them |
//! | [`envelope`] | Envelopes | end-to-end sealing and signing, replay window |
//! | [`plaintext`] | Envelopes | what an opened envelope says: `type` registry, receiving rules |
//! | [`records`] | Directory | signed device records and revocations, hash chain |
//! | [`roster`] | Roster | the signed Personal Roster |
//! | [`approval`] | Device approval | short authentication code, USK transfer |
//! | [`labels`] | Signed bytes | every domain-separation label |
//!
//! Randomness comes in through a `rand_core` [`CryptoRng`](rand_core::CryptoRng) argument, so
//! tests and test vectors can be deterministic; production code passes [`os_rng`].
//!
//! # Example: a client and a server agree on a session
//!
//! ```
//! use siren_api::ServerName;
//! use siren_proto::handshake::{self, Initiator, ResponderKeys, Role, SessionRequest};
//! use siren_proto::keys::{DekSecret, SekSecret};
//!
//! let mut rng = siren_proto::os_rng();
//! let server = ResponderKeys {
//!     name: ServerName::parse("alpha.test")?,
//!     current: SekSecret::generate(&mut rng),
//!     retired: vec![],
//! };
//! let device = DekSecret::generate(&mut rng);
//!
//! // The client knows the server's SEK from DNS.
//! let (client, hello) = Initiator::client(
//!     &server.name, &server.current.public(), &device, SessionRequest::Open, &mut rng)?;
//! let received = handshake::read_hello(&server, Role::ClientToServer, &hello)?;
//! let (waiting, reply) = received.reply(&mut rng)?;
//! let (mut client_done, finish) = client.read_reply(&reply)?;
//! let mut server_done = waiting.read_finish(&finish)?;
//!
//! assert_eq!(server_done.peer, handshake::Peer::Device(device.public()));
//! let frame = client_done.transport.seal(b"hi")?;
//! assert_eq!(server_done.transport.open(&frame)?, b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod approval;
mod crypto;
pub mod envelope;
pub mod fingerprint;
pub mod frame;
pub mod group;
pub mod handshake;
pub mod ids;
pub mod keys;
pub mod labels;
pub mod message;
pub mod plaintext;
pub mod records;
pub mod roster;
mod strict;
pub mod transcript;
pub mod transport;

#[cfg(test)]
mod primitive_vectors;
#[cfg(test)]
mod testing;

pub use siren_api;

/// The operating system's random number generator. It panics only if the OS cannot provide
/// randomness at all, in which case no key could be made safely anyway.
pub fn os_rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}
