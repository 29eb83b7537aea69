//! End-to-end envelopes: `Envelope::open` (and `verify_sender`) on hostile envelopes. Nothing may
//! panic, and no altered envelope may open.
//!
//! Byte 0 of the input picks a mode; the rest is the payload:
//!
//! * 0: the payload is CBOR-decoded as an `Envelope` (the serde form the server routes); a
//!   decoded envelope must re-encode to an equal one, and is then verified and opened as Bob's;
//! * 1: the payload is an XOR mask over a genuine envelope from Alice to Bob: bytes 0..32 go into
//!   `eph`, 32..96 into `sig`, 96..104 into `ctr`, 104..136 into `from_dek`, the rest into `ct`
//!   (bytes beyond `ct` are appended to it). It must open, exactly once, if and only if the mask
//!   changed nothing;
//! * 2: a malicious but genuine sender: the mask goes into `eph` (0..32) and `ct` (the rest, as
//!   above), and Alice re-signs the result. Signature and replay checks pass, so decryption runs
//!   on the altered ciphertext; it must fail unless the mask changed nothing.

#![no_main]

mod common;

use std::sync::LazyLock;

use common::{rng, uid, xor_fixed, xor_into};
use ed25519_dalek::{Signer as _, SigningKey};
use libfuzzer_sys::fuzz_target;
use siren_api::Uid;
use siren_proto::envelope::{Envelope, EnvelopeError, Recipient, ReplayWindow, Sender};
use siren_proto::ids::MessageId;
use siren_proto::keys::{DekPublic, DekSecret, Signature, UskPublic, UskSecret};

const PLAINTEXT: &[u8] = b"hello bob, this is alice";
const ALICE_USK_SEED: [u8; 32] = [5; 32];

struct Fixture {
    alice_usk: UskPublic,
    alice_signer: SigningKey,
    bob: Uid,
    bob_dek: DekSecret,
    genuine: Envelope,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let alice = uid("alice@alpha.test");
    let alice_usk = UskSecret::from_bytes(&ALICE_USK_SEED);
    let alice_dek = DekSecret::from_bytes([6; 32]).public();
    let bob = uid("bob@beta.test");
    let bob_dek = DekSecret::from_bytes([7; 32]);
    let genuine = Envelope::seal(
        Sender {
            uid: &alice,
            usk: &alice_usk,
            dek: &alice_dek,
        },
        &bob,
        &bob_dek.public(),
        MessageId::from_bytes([9; 16]),
        42,
        PLAINTEXT,
        &mut rng(11),
    )
    .expect("seal");
    Fixture {
        alice_usk: alice_usk.public(),
        alice_signer: SigningKey::from_bytes(&ALICE_USK_SEED),
        bob,
        bob_dek,
        genuine,
    }
});

impl Fixture {
    fn open(&self, env: &Envelope, window: &mut ReplayWindow) -> Result<Vec<u8>, EnvelopeError> {
        env.open(
            Recipient {
                uid: &self.bob,
                dek: &self.bob_dek,
            },
            &self.alice_usk,
            window,
        )
        .map(|p| p.to_vec())
    }
}

fn xor_u64(v: &mut u64, mask: &[u8]) -> usize {
    let mut bytes = v.to_be_bytes();
    let rest = xor_fixed(&mut bytes, mask);
    *v = u64::from_be_bytes(bytes);
    mask.len() - rest.len()
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIX;
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(env) = ciborium::from_reader::<Envelope, _>(payload) else {
                return;
            };
            let mut bytes = Vec::new();
            ciborium::into_writer(&env, &mut bytes).expect("an envelope serializes");
            let again: Envelope =
                ciborium::from_reader(&bytes[..]).expect("a re-encoded envelope decodes");
            assert_eq!(again, env, "envelope CBOR round trip changed it");
            let _ = env.signed_bytes();
            let _ = env.verify_sender(&f.alice_usk);
            let mut window = ReplayWindow::default();
            if let Ok(plaintext) = f.open(&env, &mut window) {
                // Only Alice can sign, and this harness never signed anything but `genuine`.
                assert_eq!(env, f.genuine, "a foreign envelope opened");
                assert_eq!(plaintext, PLAINTEXT);
            }
        }
        1 => {
            let mut env = f.genuine.clone();
            let mut rest = xor_fixed(&mut env.eph, payload);
            let mut sig = *env.sig.as_bytes();
            rest = xor_fixed(&mut sig, rest);
            env.sig = Signature::from_bytes(sig);
            let n = xor_u64(&mut env.ctr, rest);
            rest = &rest[n..];
            let mut from_dek = *env.from_dek.as_bytes();
            rest = xor_fixed(&mut from_dek, rest);
            env.from_dek = DekPublic::from_bytes(from_dek);
            env.ct = xor_into(&env.ct, rest);
            let changed = env != f.genuine;
            let mut window = ReplayWindow::default();
            match f.open(&env, &mut window) {
                Ok(plaintext) => {
                    assert!(!changed, "an altered envelope opened: {env:?}");
                    assert_eq!(plaintext, PLAINTEXT);
                    assert!(
                        matches!(f.open(&env, &mut window), Err(EnvelopeError::Replay(42))),
                        "replay accepted"
                    );
                }
                Err(e) => {
                    assert!(changed, "the genuine envelope did not open: {e}");
                    assert_eq!(window, ReplayWindow::default(), "window moved on failure");
                }
            }
        }
        _ => {
            let mut env = f.genuine.clone();
            let rest = xor_fixed(&mut env.eph, payload);
            env.ct = xor_into(&env.ct, rest);
            env.sig = Signature::from_bytes(f.alice_signer.sign(&env.signed_bytes()).to_bytes());
            env.verify_sender(&f.alice_usk)
                .expect("Alice's re-signed envelope verifies");
            let changed = env.eph != f.genuine.eph || env.ct != f.genuine.ct;
            let mut window = ReplayWindow::default();
            match f.open(&env, &mut window) {
                Ok(plaintext) => {
                    assert!(!changed, "altered ciphertext opened: {env:?}");
                    assert_eq!(plaintext, PLAINTEXT);
                }
                Err(e) => {
                    assert!(changed, "the genuine envelope did not open: {e}");
                    assert!(
                        matches!(e, EnvelopeError::Decrypt | EnvelopeError::Key(_)),
                        "unexpected error for a well-signed envelope: {e:?}"
                    );
                    assert_eq!(window, ReplayWindow::default(), "window moved on failure");
                }
            }
        }
    }
});
