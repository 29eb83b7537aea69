//! Negative vectors: inputs every implementation must refuse, each built from the positive
//! vectors of the file (so another implementation can rebuild them too), and the test that the
//! reference code refuses each one where and how PROTOCOL.md says.

use ciborium::Value as Cbor;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};
use siren_api::ServerName;
use siren_proto::approval::{ApprovalTranscript, TransferError, UskTransfer};
use siren_proto::envelope::{Envelope, EnvelopeError, Recipient, ReplayWindow, Sender};
use siren_proto::handshake::{
    self, HandshakeError, Initiator, ResponderKeys, Role, SessionRequest,
};
use siren_proto::ids::{MessageId, SessionId};
use siren_proto::keys::{DekPublic, DekSecret, KeyError, SekSecret, Signature, UskSecret};
use siren_proto::message::{self, ClientMessage, DecodeError, ServerMessage};
use siren_proto::records::{DeviceRecord, RecordError};
use siren_proto::transcript::Digest;

use crate::{Scripted, arr, file, fixed, hex, spec, uid, unhex};

/// Wycheproof's X25519 low-order public keys: X25519 of any secret with any of them is all-zero.
const LOW_ORDER_POINTS: [&str; 7] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

/// The order of Ed25519's base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The identity point's encoding (small order: its order is 1).
const IDENTITY: [u8; 32] = {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
};

fn point(i: usize) -> [u8; 32] {
    hex::decode(LOW_ORDER_POINTS[i])
        .unwrap()
        .try_into()
        .unwrap()
}

fn with_field(cbor: &[u8], key: &str, value: Cbor) -> Vec<u8> {
    spec::cbor(&spec::replace(&spec::parse(cbor), key, value))
}

// ---------------------------------------------------------------------------------------------
// X25519: every DH refuses a low-order point.

fn hello_with_ephemeral(all: &Value, p: [u8; 32]) -> Vec<u8> {
    with_field(
        &unhex(&all["handshake_c2s"]["hello"]),
        "e",
        Cbor::Bytes(p.to_vec()),
    )
}

fn hello_with_static(all: &Value, p: [u8; 32]) -> Vec<u8> {
    let h = &all["handshake_c2s"];
    spec::hello_with_static(
        h["server_name"].as_str().unwrap(),
        spec::public(arr(&h["responder_static_secret (sek)"])),
        arr(&h["initiator_ephemeral_secret"]),
        p,
    )
}

fn reply_with_ephemeral(all: &Value, p: [u8; 32]) -> Vec<u8> {
    with_field(
        &unhex(&all["handshake_c2s"]["hello_reply"]),
        "e",
        Cbor::Bytes(p.to_vec()),
    )
}

/// A rotation announcing `sek` with the proof `prove(h0)`.
fn rotation_reply(
    all: &Value,
    sek: [u8; 32],
    prove: impl FnOnce(&[u8; 32]) -> [u8; 32],
) -> Vec<u8> {
    let r = &all["handshake_rotation"];
    spec::respond(
        &unhex(&r["hello"]),
        r["server_name"].as_str().unwrap(),
        arr(&r["pinned_sek_secret (retired)"]),
        arr(&r["responder_ephemeral_secret"]),
        arr(&r["challenge"]),
        |h0| Some((sek, prove(h0))),
    )
    .hello_reply
}

fn rotation_to_low_order(all: &Value, p: [u8; 32]) -> Vec<u8> {
    // The proof a server would compute from the all-zero exchange; the device refuses before.
    rotation_reply(all, p, |h0| {
        spec::hkdf(Some(h0), &[0; 32], &[b"siren/v1/sek-rotation", &p])
    })
}

/// A rotation announcing the new SEK with a proof made with `liar` (a key the server holds
/// instead of the new SEK's secret).
fn rotation_with_liars_proof(all: &Value, liar: [u8; 32]) -> Vec<u8> {
    let r = &all["handshake_rotation"];
    let e_pub = spec::public(arr(&r["initiator_ephemeral_secret"]));
    rotation_reply(all, arr(&r["new_sek_public"]), |h0| {
        spec::rotation_proof(h0, liar, e_pub)
    })
}

fn resign(seed: &[u8; 32], signed: &[u8]) -> Signature {
    Signature::from_bytes(SigningKey::from_bytes(seed).sign(signed).to_bytes())
}

fn envelope_with_ephemeral(all: &Value, p: [u8; 32]) -> Vec<u8> {
    let e = &all["envelope"];
    let mut env: Envelope = message::decode_value(&unhex(&e["cbor"])).unwrap();
    env.eph = p;
    env.sig = resign(&arr(&e["sender_usk_seed"]), &env.signed_bytes());
    message::encode_value(&env)
}

fn transcript(all: &Value) -> ApprovalTranscript {
    let a = &all["approval"];
    ApprovalTranscript {
        uid: uid(a["uid"].as_str().unwrap()),
        new_dek: DekPublic::from_bytes(arr(&a["new_dek_public"])),
        existing_dek: DekPublic::from_bytes(arr(&a["existing_dek_public"])),
        commit: Digest::from_bytes(arr(&a["commit"])),
        existing_nonce: arr(&a["existing_nonce"]),
        new_nonce: arr(&a["new_nonce"]),
    }
}

fn transfer_with_ephemeral(all: &Value, p: [u8; 32]) -> Vec<u8> {
    let a = &all["approval"];
    let mut transfer: UskTransfer = message::decode_value(&unhex(&a["transfer_cbor"])).unwrap();
    transfer.eph = p;
    transfer.sig = resign(
        &arr(&a["usk_seed"]),
        &transfer.signed_bytes(&transcript(all)),
    );
    message::encode_value(&transfer)
}

// ---------------------------------------------------------------------------------------------
// Ed25519: signatures only the permissive rules accept.

fn record_1(all: &Value) -> DeviceRecord {
    message::decode_value(&unhex(&all["directory"]["record_1"]["cbor"])).unwrap()
}

fn with_signature(all: &Value, sig: [u8; 64]) -> Vec<u8> {
    let mut rec = record_1(all);
    rec.sig = Signature::from_bytes(sig);
    message::encode_value(&rec)
}

/// The record's own signature with `S + L` in place of `S`.
fn non_canonical_s(all: &Value) -> [u8; 64] {
    let mut sig = *record_1(all).sig.as_bytes();
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    sig
}

/// `R` = the identity (order 1) and `S = k·a`, so that `[S]B = R + [k]A` holds: the cofactorless
/// equation accepts it, `verify_strict` refuses the small-order `R`.
fn small_order_r(all: &Value) -> [u8; 64] {
    let d = &all["directory"];
    let seed: [u8; 32] = arr(&d["usk_seed"]);
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    let usk = UskSecret::from_bytes(&seed).public();
    let mut hasher = Sha512::new();
    hasher.update(IDENTITY);
    hasher.update(usk.as_bytes());
    hasher.update(unhex(&d["record_1"]["signed_bytes"]));
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&IDENTITY);
    sig[32..].copy_from_slice((k * a).as_bytes());
    sig
}

/// Record 1 claiming the identity point as its USK, signed `(R = identity, S = 0)`: that
/// signature verifies for every message under the permissive rules.
fn small_order_key(all: &Value) -> (Vec<u8>, Vec<u8>, [u8; 64]) {
    let d = &all["directory"]["record_1"];
    let real_usk = UskSecret::from_bytes(&arr(&all["directory"]["usk_seed"])).public();
    let mut signed = unhex(&d["signed_bytes"]);
    let at = signed
        .windows(32)
        .position(|w| w == real_usk.as_bytes())
        .unwrap();
    signed[at..at + 32].copy_from_slice(&IDENTITY);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&IDENTITY);
    let cbor = with_field(&unhex(&d["cbor"]), "usk", Cbor::Bytes(IDENTITY.to_vec()));
    let cbor = with_field(&cbor, "sig", Cbor::Bytes(sig.to_vec()));
    (cbor, signed, sig)
}

// ---------------------------------------------------------------------------------------------
// CBOR outside the profile.

/// The shortest head of major type `major` with argument `n`.
fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [vec![m | 25], (n as u16).to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![m | 26], (n as u32).to_be_bytes().to_vec()].concat(),
        _ => [vec![m | 27], n.to_be_bytes().to_vec()].concat(),
    }
}

fn text(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn bytes(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}

fn uint(n: u64) -> Vec<u8> {
    head(0, n)
}

/// A map of the given (already encoded) keys and values, in order.
fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = head(5, entries.len() as u64);
    for (k, v) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

/// `{"t": t, "rid": 1, extra…}`.
fn msg(t: &str, extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut entries = vec![(text("t"), text(t)), (text("rid"), uint(1))];
    entries.extend_from_slice(extra);
    map(&entries)
}

/// `{"t": "ping", "rid": 1, "x": value}`: a ping with an unknown field.
fn ping_x(value: Vec<u8>) -> Vec<u8> {
    msg("ping", &[(text("x"), value)])
}

fn ping() -> Vec<u8> {
    msg("ping", &[])
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    [vec![0x81; depth], vec![0x00]].concat()
}

/// A map with `n` entries: `t`, `rid` and `n - 2` unknown keys.
fn ping_with_entries(n: usize) -> Vec<u8> {
    let extra: Vec<_> = (0..n - 2)
        .map(|i| (text(&format!("k{i:02}")), uint(0)))
        .collect();
    msg("ping", &extra)
}

fn presence_topic(extra: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut entries = vec![
        (text("k"), text("presence")),
        (text("uid"), text("bob@beta.test")),
    ];
    entries.extend_from_slice(extra);
    map(&entries)
}

fn subscribe(topic: Vec<u8>) -> Vec<u8> {
    msg(
        "subscribe",
        &[(text("topics"), [vec![0x81], topic].concat())],
    )
}

/// (what, decoder, bytes, error, rid)
/// A refused item: what it shows, which message set decodes it, its bytes, the error code and
/// the `rid` of the answer.
type Refused = (&'static str, &'static str, Vec<u8>, u16, Option<u32>);

fn refused_cbor() -> Vec<Refused> {
    let ping = ping();
    let commit = bytes(&[0x2a; 32]);
    vec![
        (
            "indefinite-length map",
            "client",
            [
                vec![0xbf],
                text("t"),
                text("ping"),
                text("rid"),
                uint(1),
                vec![0xff],
            ]
            .concat(),
            101,
            None,
        ),
        (
            "indefinite-length text string",
            "client",
            map(&[
                (
                    text("t"),
                    [vec![0x7f], text("pi"), text("ng"), vec![0xff]].concat(),
                ),
                (text("rid"), uint(1)),
            ]),
            101,
            None,
        ),
        (
            "indefinite-length array in an unknown field",
            "client",
            ping_x(vec![0x9f, 0x01, 0xff]),
            101,
            None,
        ),
        (
            "indefinite-length byte string in an unknown field",
            "client",
            ping_x(vec![0x5f, 0x41, 0x00, 0xff]),
            101,
            None,
        ),
        (
            "tag on a known field (bignum 1 as rid)",
            "client",
            map(&[
                (text("t"), text("ping")),
                (text("rid"), vec![0xc2, 0x41, 0x01]),
            ]),
            101,
            None,
        ),
        (
            "tag in an unknown field",
            "client",
            ping_x(vec![0xc1, 0x00]),
            101,
            None,
        ),
        (
            "float for an integer field",
            "client",
            map(&[
                (text("t"), text("ping")),
                (text("rid"), vec![0xf9, 0x3c, 0x00]),
            ]),
            101,
            None,
        ),
        (
            "float in an unknown field",
            "client",
            ping_x(vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            101,
            None,
        ),
        (
            "null in an unknown field",
            "client",
            ping_x(vec![0xf6]),
            101,
            None,
        ),
        (
            "null for an absent optional field (approval_request.name)",
            "client",
            msg(
                "approval_request",
                &[(text("commit"), commit.clone()), (text("name"), vec![0xf6])],
            ),
            101,
            None,
        ),
        (
            "undefined in an unknown field",
            "client",
            ping_x(vec![0xf7]),
            101,
            None,
        ),
        (
            "simple value 16 in an unknown field",
            "client",
            ping_x(vec![0xf0]),
            101,
            None,
        ),
        (
            "integer map key",
            "client",
            msg("ping", &[(uint(1), uint(0))]),
            101,
            None,
        ),
        (
            "byte-string map key",
            "client",
            msg("ping", &[(bytes(b"x"), uint(0))]),
            101,
            None,
        ),
        (
            "duplicate key (a known field)",
            "client",
            msg("ping", &[(text("rid"), uint(2))]),
            101,
            None,
        ),
        (
            "duplicate key (an unknown field)",
            "client",
            msg("ping", &[(text("x"), uint(0)), (text("x"), uint(1))]),
            101,
            None,
        ),
        (
            "duplicate key in a nested map",
            "client",
            subscribe(presence_topic(&[(text("uid"), text("bob@beta.test"))])),
            101,
            None,
        ),
        (
            "trailing bytes",
            "client",
            [ping.clone(), vec![0x00]].concat(),
            101,
            None,
        ),
        (
            "two messages in one frame",
            "client",
            [ping.clone(), ping.clone()].concat(),
            101,
            None,
        ),
        (
            "nesting of 33 levels (in an unknown field)",
            "client",
            ping_x(nested_arrays(32)),
            101,
            None,
        ),
        (
            "integer not in its shortest form (rid 1 as 18 01)",
            "client",
            map(&[(text("t"), text("ping")), (text("rid"), vec![0x18, 0x01])]),
            101,
            None,
        ),
        (
            "text length not in its shortest form (key t as 78 01 74)",
            "client",
            map(&[
                (vec![0x78, 0x01, b't'], text("ping")),
                (text("rid"), uint(1)),
            ]),
            101,
            None,
        ),
        (
            "map length not in its shortest form (b8 02)",
            "client",
            [vec![0xb8, 0x02], ping[1..].to_vec()].concat(),
            101,
            None,
        ),
        (
            "simple value not in its shortest form (false as f8 14)",
            "client",
            ping_x(vec![0xf8, 0x14]),
            101,
            None,
        ),
        (
            "boolean for an integer field (rid true)",
            "client",
            map(&[(text("t"), text("ping")), (text("rid"), vec![0xf5])]),
            101,
            None,
        ),
        (
            "integer for a boolean field (welcome.resumed 1)",
            "server",
            map(&[
                (text("t"), text("welcome")),
                (text("sid"), bytes(&[0x14; 16])),
                (text("resumed"), uint(1)),
                (text("server"), text("alpha.test")),
                (text("max_frame"), uint(1 << 20)),
            ]),
            101,
            None,
        ),
        (
            "integer beyond the field's range (rid 2^32)",
            "client",
            map(&[(text("t"), text("ping")), (text("rid"), uint(1 << 32))]),
            101,
            None,
        ),
        (
            "negative integer for a uint field (rid -1)",
            "client",
            map(&[(text("t"), text("ping")), (text("rid"), vec![0x20])]),
            101,
            None,
        ),
        (
            "byte string for a text field (lookup.uid)",
            "client",
            msg("lookup", &[(text("uid"), bytes(b"bob@beta.test"))]),
            101,
            Some(1),
        ),
        (
            "text for a byte-string field (approval_request.commit)",
            "client",
            msg(
                "approval_request",
                &[(text("commit"), text(&"*".repeat(32)))],
            ),
            101,
            Some(1),
        ),
        (
            "byte string of the wrong length (commit of 31 bytes)",
            "client",
            msg("approval_request", &[(text("commit"), bytes(&[0x2a; 31]))]),
            101,
            Some(1),
        ),
        (
            "text that is not UTF-8 (in an unknown field)",
            "client",
            ping_x(vec![0x62, 0xc3, 0x28]),
            101,
            None,
        ),
        (
            "UID with an uppercase letter",
            "client",
            msg("lookup", &[(text("uid"), text("Bob@beta.test"))]),
            101,
            Some(1),
        ),
        (
            "required field missing (lookup without uid)",
            "client",
            msg("lookup", &[]),
            101,
            Some(1),
        ),
        (
            "unknown value of a nested variant tag (topic k weather)",
            "client",
            subscribe(map(&[
                (text("k"), text("weather")),
                (text("uid"), text("bob@beta.test")),
            ])),
            101,
            Some(1),
        ),
        (
            "unknown value of an enumerated field (presence status asleep)",
            "client",
            msg(
                "publish",
                &[(text("presence"), map(&[(text("status"), text("asleep"))]))],
            ),
            101,
            Some(1),
        ),
        (
            "map of 65 entries",
            "client",
            ping_with_entries(65),
            101,
            None,
        ),
        (
            "map key of 65 bytes",
            "client",
            msg("ping", &[(text(&"k".repeat(65)), uint(0))]),
            101,
            None,
        ),
        (
            "top-level item not a map",
            "client",
            [vec![0x81], text("ping")].concat(),
            101,
            None,
        ),
        (
            "no field t",
            "client",
            map(&[(text("rid"), uint(1))]),
            101,
            Some(1),
        ),
        (
            "t as a byte string",
            "client",
            map(&[(text("t"), bytes(b"ping")), (text("rid"), uint(1))]),
            101,
            None,
        ),
        (
            "truncated item",
            "client",
            ping[..ping.len() - 1].to_vec(),
            101,
            None,
        ),
        (
            "unknown message type (102, not 101; the session continues)",
            "client",
            msg("teleport", &[]),
            102,
            Some(1),
        ),
    ]
}

/// (what, bytes, the canonical re-encoding of what it decodes to)
fn accepted_cbor() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let ping = ping();
    let topic = presence_topic(&[]);
    vec![
        (
            "fields in another order",
            map(&[(text("rid"), uint(1)), (text("t"), text("ping"))]),
            ping.clone(),
        ),
        (
            "unknown fields of every kind the profile allows",
            ping_x(map(&[(
                text("y"),
                [
                    vec![0x87],
                    bytes(&[0]),
                    text("z"),
                    vec![0xf5, 0xf4, 0x24],
                    uint(u64::MAX),
                    vec![0xa0],
                ]
                .concat(),
            )])),
            ping.clone(),
        ),
        (
            "unknown field in a nested map",
            subscribe(presence_topic(&[(text("since"), uint(5))])),
            subscribe(topic),
        ),
        (
            "nesting of exactly 32 levels",
            ping_x(nested_arrays(31)),
            ping.clone(),
        ),
        ("a map of 64 entries", ping_with_entries(64), ping.clone()),
        (
            "integers at the boundaries of their shortest forms",
            ping_x(
                [
                    vec![0x85],
                    uint(23),
                    uint(24),
                    uint(255),
                    uint(256),
                    uint(65536),
                ]
                .concat(),
            ),
            ping,
        ),
    ]
}

pub fn generate(all: &Value) -> Value {
    let points: Vec<Value> = LOW_ORDER_POINTS.iter().map(|p| json!(p)).collect();
    let (key_cbor, key_signed, key_sig) = small_order_key(all);
    let liar = fixed::<32>(0x19);
    let refused: Vec<Value> = refused_cbor()
        .into_iter()
        .map(|(what, decoder, cbor, error, rid)| {
            json!({ "what": what, "decoder": decoder, "cbor": hex(cbor), "error": error, "rid": rid })
        })
        .collect();
    let accepted: Vec<Value> = accepted_cbor()
        .into_iter()
        .map(|(what, cbor, canonical)| {
            json!({ "what": what, "cbor": hex(cbor), "canonical": hex(canonical) })
        })
        .collect();
    json!({
        "about": "Inputs every implementation must refuse. Each case names the positive vector it \
                  changes (uses), who refuses it (refused_by) and, where an error goes on the \
                  wire, its code (error). See PROTOCOL.md, section Test vectors.",
        "x25519_low_order": {
            "points": points,
            "hello_ephemeral": {
                "uses": "handshake_c2s (hello.e replaced)", "point": 0,
                "hello": hex(hello_with_ephemeral(all, point(0))),
                "refused_by": "responder, at es (all-zero X25519)", "error": 104,
            },
            "hello_static": {
                "uses": "handshake_c2s (initiator_ephemeral_secret; c_s encrypts the point, p under the es key)",
                "point": 1,
                "hello": hex(hello_with_static(all, point(1))),
                "refused_by": "responder, at ss (all-zero X25519)", "error": 104,
            },
            "hello_reply_ephemeral": {
                "uses": "handshake_c2s (hello_reply.e replaced)", "point": 2,
                "hello_reply": hex(reply_with_ephemeral(all, point(2))),
                "refused_by": "initiator, at ee (closes the connection)",
            },
            "rotation_key": {
                "uses": "handshake_rotation (payload2.rot.sek is the point)", "point": 3,
                "hello_reply": hex(rotation_to_low_order(all, point(3))),
                "refused_by": "initiator, checking the proof (closes; the pin is kept)",
            },
            "envelope_ephemeral": {
                "uses": "envelope (eph replaced, signed again by the sender's USK)", "point": 4,
                "cbor": hex(envelope_with_ephemeral(all, point(4))),
                "refused_by": "recipient device, opening (drops the envelope)",
            },
            "envelope_recipient_key": {
                "uses": "envelope (to_dek is the point)", "point": 5,
                "to_dek": LOW_ORDER_POINTS[5],
                "refused_by": "sender, sealing (nothing is sent to that device)",
            },
            "usk_transfer_ephemeral": {
                "uses": "approval (transfer eph replaced, signed again by the USK)", "point": 6,
                "transfer_cbor": hex(transfer_with_ephemeral(all, point(6))),
                "refused_by": "new device, opening (the approval fails)",
            },
        },
        "rotation_bad_proof": {
            "uses": "handshake_rotation (the proof computed with liar_secret, not the new SEK's)",
            "liar_secret": hex(liar),
            "hello_reply": hex(rotation_with_liars_proof(all, liar)),
            "refused_by": "initiator, checking the proof (closes; the pin is kept)",
        },
        "ed25519_strict": {
            "non_canonical_s": {
                "uses": "directory.record_1 (S + L in place of S)",
                "sig": hex(non_canonical_s(all)),
                "cbor": hex(with_signature(all, non_canonical_s(all))),
                "refused_by": "every verifier (register: server; listings: clients)", "error": 301,
            },
            "small_order_r": {
                "uses": "directory.record_1 (R = identity, S = k·a with k = SHA-512(R || A || M))",
                "sig": hex(small_order_r(all)),
                "cbor": hex(with_signature(all, small_order_r(all))),
                "refused_by": "verify_strict (the cofactorless equation alone accepts it)", "error": 301,
            },
            "small_order_key": {
                "uses": "directory.record_1 (usk = identity, R = identity, S = 0)",
                "usk": hex(IDENTITY),
                "signed_bytes": hex(key_signed),
                "sig": hex(key_sig),
                "cbor": hex(key_cbor),
                "refused_by": "every decoder (a small-order USK is malformed); verify_strict too", "error": 101,
            },
        },
        "cbor_profile": { "refused": refused, "accepted": accepted },
    })
}

// ---------------------------------------------------------------------------------------------
// The checks.

fn c2s_responder(all: &Value) -> ResponderKeys {
    let h = &all["handshake_c2s"];
    ResponderKeys {
        name: ServerName::parse(h["server_name"].as_str().unwrap()).unwrap(),
        current: SekSecret::from_bytes(arr(&h["responder_static_secret (sek)"])),
        retired: vec![],
    }
}

fn refused_hello(all: &Value, hello: &[u8]) -> HandshakeError {
    match handshake::read_hello(&c2s_responder(all), Role::ClientToServer, hello) {
        Ok(_) => panic!("hello accepted"),
        Err(e) => e,
    }
}

/// The c2s initiator of the file, after its hello, reading `reply`.
fn refused_c2s_reply(all: &Value, reply: &[u8]) -> HandshakeError {
    let h = &all["handshake_c2s"];
    let (init, _) = Initiator::client(
        &ServerName::parse(h["server_name"].as_str().unwrap()).unwrap(),
        &SekSecret::from_bytes(arr(&h["responder_static_secret (sek)"])).public(),
        &DekSecret::from_bytes(arr(&h["initiator_static_secret (dek)"])),
        SessionRequest::Resume(SessionId::from_bytes(arr(&h["resume_session_id"]))),
        &mut Scripted::new(&[&unhex(&h["initiator_ephemeral_secret"])]),
    )
    .unwrap();
    init.read_reply(reply).expect_err("reply refused")
}

/// The rotation vector's initiator (pinned to the retired key), reading `reply`.
fn refused_rotation_reply(all: &Value, reply: &[u8]) -> HandshakeError {
    let r = &all["handshake_rotation"];
    let (init, _) = Initiator::client(
        &ServerName::parse(r["server_name"].as_str().unwrap()).unwrap(),
        &SekSecret::from_bytes(arr(&r["pinned_sek_secret (retired)"])).public(),
        &DekSecret::from_bytes(arr(&r["initiator_static_secret (dek)"])),
        SessionRequest::Open,
        &mut Scripted::new(&[&unhex(&r["initiator_ephemeral_secret"])]),
    )
    .unwrap();
    init.read_reply(reply).expect_err("reply refused")
}

fn refused_envelope(all: &Value, cbor: &[u8]) -> EnvelopeError {
    let e = &all["envelope"];
    let env: Envelope = message::decode_value(cbor).unwrap();
    env.open(
        Recipient {
            uid: &uid(e["to"].as_str().unwrap()),
            dek: &DekSecret::from_bytes(arr(&e["recipient_dek_secret"])),
        },
        &UskSecret::from_bytes(&arr(&e["sender_usk_seed"])).public(),
        &mut ReplayWindow::default(),
    )
    .expect_err("envelope refused")
}

fn refused_seal(all: &Value, to_dek: [u8; 32]) -> EnvelopeError {
    let e = &all["envelope"];
    let usk = UskSecret::from_bytes(&arr(&e["sender_usk_seed"]));
    Envelope::seal(
        Sender {
            uid: &uid(e["from"].as_str().unwrap()),
            usk: &usk,
            dek: &DekPublic::from_bytes(arr(&e["sender_dek_public"])),
        },
        &uid(e["to"].as_str().unwrap()),
        &DekPublic::from_bytes(to_dek),
        MessageId::from_bytes(arr(&e["message_id"])),
        7,
        b"",
        &mut Scripted::new(&[&unhex(&e["ephemeral_secret"])]),
    )
    .expect_err("sealing refused")
}

fn refused_transfer(all: &Value, cbor: &[u8]) -> TransferError {
    let a = &all["approval"];
    let transfer: UskTransfer = message::decode_value(cbor).unwrap();
    let t = transcript(all);
    transfer
        .open(
            &DekSecret::from_bytes(arr(&a["new_dek_secret"])),
            &t,
            &UskSecret::from_bytes(&arr(&a["usk_seed"])).public(),
            &[t.existing_dek],
        )
        .expect_err("transfer refused")
}

const ZERO_DH: KeyError = KeyError::NonContributory;

#[test]
fn every_low_order_point_is_refused_wherever_x25519_is_used() {
    let all = file();
    let n = &all["negative"]["x25519_low_order"];
    let points: Vec<[u8; 32]> = n["points"].as_array().unwrap().iter().map(arr).collect();
    assert_eq!(points.len(), 7);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(spec::x25519([0x5a; 32], *p), [0; 32], "point {i}");
    }
    // The file's frames, then every point in every place.
    let e = refused_hello(&all, &unhex(&n["hello_ephemeral"]["hello"]));
    assert_eq!(
        (e.clone(), e.code().as_u16()),
        (HandshakeError::Key(ZERO_DH), 104)
    );
    assert_eq!(n["hello_ephemeral"]["error"], 104);
    let e = refused_hello(&all, &unhex(&n["hello_static"]["hello"]));
    assert_eq!(
        (e.clone(), e.code().as_u16()),
        (HandshakeError::Key(ZERO_DH), 104)
    );
    assert_eq!(n["hello_static"]["error"], 104);
    assert_eq!(
        refused_c2s_reply(&all, &unhex(&n["hello_reply_ephemeral"]["hello_reply"])),
        HandshakeError::Key(ZERO_DH)
    );
    assert_eq!(
        refused_rotation_reply(&all, &unhex(&n["rotation_key"]["hello_reply"])),
        HandshakeError::Key(ZERO_DH)
    );
    assert_eq!(
        refused_envelope(&all, &unhex(&n["envelope_ephemeral"]["cbor"])),
        EnvelopeError::Key(ZERO_DH)
    );
    assert_eq!(
        refused_seal(&all, arr(&n["envelope_recipient_key"]["to_dek"])),
        EnvelopeError::Key(ZERO_DH)
    );
    assert_eq!(
        refused_transfer(&all, &unhex(&n["usk_transfer_ephemeral"]["transfer_cbor"])),
        TransferError::Open(EnvelopeError::Key(ZERO_DH))
    );
    for p in points {
        let zero = HandshakeError::Key(ZERO_DH);
        assert_eq!(refused_hello(&all, &hello_with_ephemeral(&all, p)), zero);
        assert_eq!(refused_hello(&all, &hello_with_static(&all, p)), zero);
        assert_eq!(
            refused_c2s_reply(&all, &reply_with_ephemeral(&all, p)),
            zero
        );
        assert_eq!(
            refused_rotation_reply(&all, &rotation_to_low_order(&all, p)),
            zero
        );
        let zero = EnvelopeError::Key(ZERO_DH);
        assert_eq!(
            refused_envelope(&all, &envelope_with_ephemeral(&all, p)),
            zero
        );
        assert_eq!(refused_seal(&all, p), zero);
        assert_eq!(
            refused_transfer(&all, &transfer_with_ephemeral(&all, p)),
            TransferError::Open(zero)
        );
    }
}

#[test]
fn a_rotation_proven_by_another_key_is_refused() {
    let all = file();
    let n = &all["negative"]["rotation_bad_proof"];
    let reply = unhex(&n["hello_reply"]);
    assert_eq!(
        reply,
        rotation_with_liars_proof(&all, arr(&n["liar_secret"]))
    );
    assert_eq!(
        refused_rotation_reply(&all, &reply),
        HandshakeError::BadRotationProof
    );
    // Only the proof is wrong: the same reply with the new key's proof is accepted.
    let r = &all["handshake_rotation"];
    let e_pub = spec::public(arr(&r["initiator_ephemeral_secret"]));
    let honest = rotation_reply(&all, arr(&r["new_sek_public"]), |h0| {
        spec::rotation_proof(h0, arr(&r["new_sek_secret (current)"]), e_pub)
    });
    assert_eq!(honest, unhex(&r["hello_reply"]));
}

/// The record code a server answers `register` with for a refused record (§18).
fn record_code(e: &RecordError) -> u16 {
    match e {
        RecordError::BadSignature => 301,
        other => panic!("unexpected refusal {other:?}"),
    }
}

#[test]
fn strict_ed25519_refuses_what_the_permissive_rules_accept() {
    let all = file();
    let n = &all["negative"]["ed25519_strict"];
    let signed = unhex(&all["directory"]["record_1"]["signed_bytes"]);
    let usk = VerifyingKey::from_bytes(&arr(&all["keys"]["usk_public"])).unwrap();

    // Non-canonical S: S + L, which is S modulo L; no verifier takes it, the decoder reads it.
    let sig: [u8; 64] = arr(&n["non_canonical_s"]["sig"]);
    let s: [u8; 32] = sig[32..].try_into().unwrap();
    assert!(bool::from(Scalar::from_canonical_bytes(s).is_none()));
    assert_eq!(s[31] & 0xe0, 0, "S + L still fits in 253 bits");
    assert_eq!(
        Scalar::from_bytes_mod_order(s).as_bytes(),
        &record_1(&all).sig.as_bytes()[32..]
    );
    let rec: DeviceRecord = message::decode_value(&unhex(&n["non_canonical_s"]["cbor"])).unwrap();
    let e = rec.verify().unwrap_err();
    assert_eq!(
        (e.clone(), record_code(&e)),
        (RecordError::BadSignature, 301)
    );

    // Small-order R: the cofactorless equation holds, verify_strict refuses.
    let sig = ed25519_dalek::Signature::from_bytes(&arr(&n["small_order_r"]["sig"]));
    assert!(
        usk.verify(&signed, &sig).is_ok(),
        "the permissive rules accept it"
    );
    assert!(usk.verify_strict(&signed, &sig).is_err());
    let rec: DeviceRecord = message::decode_value(&unhex(&n["small_order_r"]["cbor"])).unwrap();
    let e = rec.verify().unwrap_err();
    assert_eq!(
        (e.clone(), record_code(&e)),
        (RecordError::BadSignature, 301)
    );

    // Small-order key: (identity, 0) verifies any message under the identity; decoding refuses.
    let weak = VerifyingKey::from_bytes(&arr(&n["small_order_key"]["usk"])).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&arr(&n["small_order_key"]["sig"]));
    let weak_signed = unhex(&n["small_order_key"]["signed_bytes"]);
    assert!(weak.verify(&weak_signed, &sig).is_ok());
    assert!(weak.verify(b"any message at all", &sig).is_ok());
    assert!(weak.verify_strict(&weak_signed, &sig).is_err());
    let e: DecodeError =
        message::decode_value::<DeviceRecord>(&unhex(&n["small_order_key"]["cbor"])).unwrap_err();
    assert_eq!(e.code().as_u16(), 101);
    assert_eq!(n["small_order_key"]["error"], 101);
}

#[test]
fn cbor_outside_the_profile_is_refused_and_inside_it_accepted() {
    let all = file();
    let c = &all["negative"]["cbor_profile"];
    let refused = c["refused"].as_array().unwrap();
    assert!(refused.len() >= 40);
    for case in refused {
        let what = case["what"].as_str().unwrap();
        let bytes = unhex(&case["cbor"]);
        let e = match case["decoder"].as_str().unwrap() {
            "client" => message::decode::<ClientMessage>(&bytes).map(drop),
            "server" => message::decode::<ServerMessage>(&bytes).map(drop),
            other => panic!("unknown decoder {other}"),
        }
        .err()
        .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(
            u64::from(e.code().as_u16()),
            case["error"].as_u64().unwrap(),
            "{what}: {e}"
        );
        assert_eq!(
            e.rid.map(u64::from),
            case["rid"].as_u64(),
            "{what}: the rid of the answer"
        );
    }
    for case in c["accepted"].as_array().unwrap() {
        let what = case["what"].as_str().unwrap();
        let msg = message::decode::<ClientMessage>(&unhex(&case["cbor"]))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(message::encode(&msg), unhex(&case["canonical"]), "{what}");
    }
}
