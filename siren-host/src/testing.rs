//! Helpers for the unit tests of several modules.

use siren_api::Uid;
use siren_proto::envelope::Envelope;
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, Signature};

/// An envelope from alice@a.test to bob@`to_server`'s device `[to_dek; 32]`, with `ct` bytes of
/// ciphertext and a signature of no one (nothing here checks it).
pub(crate) fn envelope(to_server: &str, to_dek: u8, ct: usize) -> Envelope {
    Envelope {
        id: MessageId::from_bytes([1; 16]),
        from: Uid::parse("alice@a.test").unwrap(),
        from_dek: DekPublic::from_bytes([2; 32]),
        to: Uid::parse(&format!("bob@{to_server}")).unwrap(),
        to_dek: DekPublic::from_bytes([to_dek; 32]),
        ctr: 1,
        eph: [4; 32],
        ct: vec![5; ct],
        sig: Signature::from_bytes([6; 64]),
    }
}
