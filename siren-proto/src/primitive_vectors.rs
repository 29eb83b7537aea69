//! Published test vectors for the primitives, run through Siren's own wrappers (the same code
//! paths the protocol uses), so a change of crate or a wrong wrapper shows up here:
//!
//! * RFC 7748 §5.2 (X25519 function, incl. 1 and 1,000 iterations) and §6.1 (Diffie-Hellman);
//! * RFC 8032 §7.1 TEST 1 (Ed25519, empty message), verified with `verify_strict`;
//! * NaCl `crypto_secretbox` (libsodium `test/default/secretbox.c`) and `crypto_box`
//!   (`test/default/box.c`: X25519 → HSalsa20 → XSalsa20-Poly1305, same message and nonce);
//! * low-order X25519 points (Wycheproof) refused by the DH wrapper.

use hex::FromHex;

use crate::crypto;
use crate::keys::{DekSecret, KeyError, Signature, UskPublic, UskSecret};
use crate::testing::LOW_ORDER_POINTS;

fn h<const N: usize>(s: &str) -> [u8; N] {
    Vec::from_hex(s).unwrap().try_into().unwrap()
}

#[test]
fn rfc7748_section_5_2_function() {
    for (scalar, u, out) in [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ] {
        let secret = DekSecret::from_bytes(h(scalar));
        assert_eq!(*secret.agree(&h(u)).unwrap(), h::<32>(out));
    }
}

#[test]
fn rfc7748_section_5_2_iterated() {
    fn step(k: &mut [u8; 32], u: &mut [u8; 32]) {
        let out = *DekSecret::from_bytes(*k).agree(u).unwrap();
        *u = *k;
        *k = out;
    }
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    step(&mut k, &mut u);
    assert_eq!(
        k,
        h("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    for _ in 1..1000 {
        step(&mut k, &mut u);
    }
    assert_eq!(
        k,
        h("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

const ALICE_SK: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PK: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_SK: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PK: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

#[test]
fn rfc7748_section_6_1_diffie_hellman() {
    let alice = DekSecret::from_bytes(h(ALICE_SK));
    let bob = DekSecret::from_bytes(h(BOB_SK));
    assert_eq!(alice.public().as_bytes(), &h::<32>(ALICE_PK));
    assert_eq!(bob.public().as_bytes(), &h::<32>(BOB_PK));
    assert_eq!(
        *alice.agree(bob.public().as_bytes()).unwrap(),
        h::<32>(SHARED)
    );
    assert_eq!(
        *bob.agree(alice.public().as_bytes()).unwrap(),
        h::<32>(SHARED)
    );
}

#[test]
fn rfc8032_test_1() {
    let usk = UskSecret::from_bytes(&h(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ));
    let public: [u8; 32] = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    assert_eq!(usk.public().as_bytes(), &public);
    let expected: [u8; 64] = h(concat!(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    ));
    let sig = usk.sign(b"");
    assert_eq!(sig.as_bytes(), &expected);
    let pk = UskPublic::from_bytes(&public).unwrap();
    pk.verify(b"", &sig).unwrap();
    let mut bad = expected;
    bad[10] ^= 1;
    assert_eq!(
        pk.verify(b"", &Signature::from_bytes(bad)),
        Err(KeyError::BadSignature)
    );
    assert_eq!(pk.verify(b"x", &sig), Err(KeyError::BadSignature));
}

const NACL_NONCE: &str = "69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37";
const NACL_FIRSTKEY: &str = "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389";
const NACL_MESSAGE: &str = concat!(
    "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a",
    "1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057",
    "e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040",
    "e082f937763848645e0705"
);
/// Tag followed by ciphertext (NaCl's `secretbox.out` / `box.out`, without the zero padding).
const NACL_BOXED: &str = concat!(
    "f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4",
    "476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738",
    "b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de",
    "56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74e355a5"
);

#[test]
fn nacl_secretbox() {
    let msg = Vec::from_hex(NACL_MESSAGE).unwrap();
    let boxed = Vec::from_hex(NACL_BOXED).unwrap();
    let key: [u8; 32] = h(NACL_FIRSTKEY);
    let nonce: [u8; 24] = h(NACL_NONCE);
    assert_eq!(crypto::seal(&key, &nonce, &msg), boxed);
    assert_eq!(crypto::open(&key, &nonce, &boxed).unwrap(), msg);
    let mut bad = boxed.clone();
    bad[0] ^= 0xaa;
    assert!(crypto::open(&key, &nonce, &bad).is_err());
}

#[test]
fn nacl_box() {
    // crypto_box(alicesk, bobpk): k = HSalsa20(X25519(alicesk, bobpk), 0^16), then secretbox.
    let alice = DekSecret::from_bytes(h(ALICE_SK));
    let shared = alice.agree(&h(BOB_PK)).unwrap();
    let key =
        salsa20::hsalsa::<salsa20::cipher::consts::U10>((&*shared).into(), &Default::default());
    let key: [u8; 32] = key.into();
    assert_eq!(key, h::<32>(NACL_FIRSTKEY));
    let msg = Vec::from_hex(NACL_MESSAGE).unwrap();
    assert_eq!(
        crypto::seal(&key, &h(NACL_NONCE), &msg),
        Vec::from_hex(NACL_BOXED).unwrap()
    );
}

#[test]
fn low_order_points_give_an_error_not_a_zero_key() {
    let secret = DekSecret::from_bytes(h(ALICE_SK));
    for point in LOW_ORDER_POINTS {
        assert_eq!(secret.agree(&point).err(), Some(KeyError::NonContributory));
    }
}
