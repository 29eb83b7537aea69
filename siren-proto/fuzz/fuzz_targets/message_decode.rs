//! Message decoding: the input is decoded as a `ClientMessage`, a `ServerMessage` and a
//! `LinkMessage`. Nothing may panic, and whatever decodes must round-trip: decoding
//! `encode(msg)` gives `msg` back, and encoding is stable (`encode(decode(encode(msg)))` is the
//! same bytes as `encode(msg)`).
//!
//! Raw bytes rarely get past the CBOR profile check into the per-type schemas, so the same input
//! is also read as a small program that builds a CBOR map in Siren's shape (a known `t`, then
//! fields named from the protocol's vocabulary with plausibly typed values: UIDs, server names,
//! 16/32/64-byte strings, counters, nested maps and arrays), and that map is decoded the same
//! way. The fuzzer then explores the message schemas themselves.

#![no_main]

use std::fmt::Debug;
use std::sync::LazyLock;

use ciborium::Value;
use libfuzzer_sys::fuzz_target;
use siren_proto::keys::UskSecret;
use siren_proto::message::{self, ClientMessage, LinkMessage, ServerMessage, WireMessage};

fn check<M: WireMessage + PartialEq + Debug>(data: &[u8]) {
    match message::decode::<M>(data) {
        Ok(msg) => {
            let bytes = message::encode(&msg);
            let again = message::decode::<M>(&bytes).unwrap_or_else(|e| {
                panic!("re-encoding of {msg:?} does not decode: {e} (bytes {bytes:02x?})")
            });
            assert_eq!(again, msg, "round trip changed the message");
            assert_eq!(message::encode(&again), bytes, "encoding is not stable");
        }
        Err(e) => {
            // Exercise the error paths callers use.
            let _ = e.code();
            let _ = e.to_string();
        }
    }
}

fn check_all(data: &[u8]) {
    check::<ClientMessage>(data);
    check::<ServerMessage>(data);
    check::<LinkMessage>(data);
}

/// Field names and enum tags used on the wire (message fields, records, roster, approval,
/// envelopes, `k`/`s`/`n` tags and their variant names).
const KEYS: &[&str] = &[
    "t",
    "rid",
    "k",
    "s",
    "n",
    "ack",
    "add",
    "added",
    "approval_challenge",
    "approval_deny",
    "approval_grant",
    "approval_request",
    "approval_reveal",
    "available",
    "await_approval",
    "away",
    "blocked",
    "busy",
    "cached",
    "ch",
    "challenge",
    "code",
    "commit",
    "contact_request",
    "contacts",
    "create_user",
    "ct",
    "ctr",
    "current",
    "data",
    "dek",
    "devices",
    "directory_changed",
    "e",
    "env",
    "eph",
    "existing_dek",
    "existing_nonce",
    "from",
    "from_dek",
    "hash",
    "have",
    "head",
    "id",
    "ids",
    "item",
    "listing",
    "max_frame",
    "mech",
    "mechs",
    "message",
    "msg",
    "msgs",
    "name",
    "new_dek",
    "new_nonce",
    "next",
    "nonce",
    "notice",
    "offline",
    "owner",
    "p",
    "presence",
    "prev",
    "previous",
    "proof",
    "published",
    "published_usk",
    "ready",
    "record",
    "records",
    "removed",
    "resumed",
    "revocation",
    "revoked",
    "roster",
    "seq",
    "seqs",
    "server",
    "sid",
    "sig",
    "status",
    "text",
    "to",
    "to_dek",
    "topic",
    "topics",
    "transfer",
    "ts",
    "uid",
    "usk",
    "version",
];

/// Text values: identities, mechanism names, and a few edge cases.
const TEXTS: &[&str] = &[
    "alice@alpha.test",
    "bob@beta.test",
    "alpha.test",
    "beta.test",
    "ALICE@Alpha.Test",
    "PLAIN",
    "",
    "a@b",
    "x..y",
    "alice@",
    "@alpha.test",
];

const BYTE_LENS: [usize; 8] = [0, 8, 16, 24, 32, 48, 64, 65];

struct Vocab {
    types: Vec<&'static str>,
    usk: Vec<u8>,
}

static VOCAB: LazyLock<Vocab> = LazyLock::new(|| {
    let mut types: Vec<&'static str> = Vec::new();
    for t in ClientMessage::TYPES
        .iter()
        .chain(ServerMessage::TYPES)
        .chain(LinkMessage::TYPES)
    {
        if !types.contains(t) {
            types.push(t);
        }
    }
    Vocab {
        types,
        // A valid Ed25519 public key (random bytes often are not one).
        usk: UskSecret::from_bytes(&[5; 32]).public().as_bytes().to_vec(),
    }
});

/// Reads bytes as choices; past the end every choice is 0.
struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_be_bytes(b)
    }

    fn value(&mut self, depth: usize) -> Value {
        let choice = self.byte() % if depth >= 6 { 8 } else { 11 };
        match choice {
            0 => Value::Integer(self.byte().into()),
            1 => Value::Integer(self.u64().into()),
            2 => Value::Integer((-1 - i64::from(self.byte())).into()),
            3 => Value::Text(self.pick(KEYS).to_owned()),
            4 => Value::Text(self.pick(TEXTS).to_owned()),
            5 => {
                let n = usize::from(self.byte() % 24);
                Value::Text(String::from_utf8_lossy(&self.bytes(n)).into_owned())
            }
            6 => {
                let n = self.pick(&BYTE_LENS);
                Value::Bytes(self.bytes(n))
            }
            7 => match self.byte() % 4 {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                2 => Value::Null,
                _ => Value::Bytes(VOCAB.usk.clone()),
            },
            8 | 9 => self.map(depth + 1, false),
            _ => {
                let n = usize::from(self.byte() % 5);
                Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
        }
    }

    fn map(&mut self, depth: usize, top: bool) -> Value {
        let mut entries = Vec::new();
        if top {
            let t = self.pick(&VOCAB.types);
            entries.push((Value::Text("t".into()), Value::Text(t.into())));
        }
        let n = usize::from(self.byte() % 8);
        for _ in 0..n {
            let k = self.pick(KEYS);
            entries.push((Value::Text(k.into()), self.value(depth)));
        }
        Value::Map(entries)
    }
}

fuzz_target!(|data: &[u8]| {
    check_all(data);

    let built = Gen { data, pos: 0 }.map(0, true);
    let mut bytes = Vec::new();
    ciborium::into_writer(&built, &mut bytes).expect("a Value serializes");
    check_all(&bytes);
});
