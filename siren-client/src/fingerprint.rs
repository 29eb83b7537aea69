//! Key fingerprints, as people read and compare them (PROTOCOL.md §3): SHA-256 of the 32-byte
//! public key, the first 16 bytes in lowercase hex, in eight groups of four digits separated by
//! spaces (`3e44 28c4 …`). The one definition lives in `siren-proto`, so that `sirend devices
//! list` names a device the way `siren devices list` does.

pub use siren_proto::fingerprint::fingerprint;
