//! PROTOCOL.md's primitives written again from the text alone, without `siren-proto`'s
//! internals: the handshake's symmetric state (§7.1), the responder's steps (§7.3, §7.4), the
//! SEK rotation proof (§7.6) and an envelope's key derivation (§12). The vectors use them to show
//! that the document is exact (the same bytes come out) and to build frames the reference code
//! never sends (negative vectors).

use ciborium::Value;
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use hkdf::Hkdf;
use sha2::{Digest as _, Sha256};

/// `label(s)`: one length byte, then the ASCII (§19).
pub fn label(s: &str) -> Vec<u8> {
    let mut out = vec![s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// `X25519(k, u)` (RFC 7748), without the all-zero check: callers look at the result.
pub fn x25519(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(k, u)
}

/// The public key of an X25519 secret.
pub fn public(k: [u8; 32]) -> [u8; 32] {
    x25519(k, x25519_dalek::X25519_BASEPOINT_BYTES)
}

/// HKDF-SHA-256, extract then expand (`info` concatenated).
pub fn hkdf<const N: usize>(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, &mut out)
        .unwrap();
    out
}

pub fn secretbox(key: &[u8; 32], nonce: &[u8; 24], m: &[u8]) -> Vec<u8> {
    XSalsa20Poly1305::new(key.into())
        .encrypt(nonce.into(), m)
        .unwrap()
}

pub fn secretbox_open(key: &[u8; 32], nonce: &[u8; 24], c: &[u8]) -> Option<Vec<u8>> {
    XSalsa20Poly1305::new(key.into())
        .decrypt(nonce.into(), c)
        .ok()
}

/// `ck`, `h` and `k` of §7.1.
pub struct Symmetric {
    pub ck: [u8; 32],
    pub h: [u8; 32],
    pub k: [u8; 32],
}

impl Symmetric {
    /// `Initialize` with the prologue `label("siren/v1/handshake") || u64(version) || u8(role)
    /// || var(server_name) || SEK_responder`.
    pub fn initialize(version: u64, role: u8, server_name: &str, sek: &[u8; 32]) -> Symmetric {
        let h: [u8; 32] = Sha256::digest(b"Siren_IK_25519_XSalsa20Poly1305_SHA256_v1").into();
        let mut s = Symmetric {
            ck: h,
            h,
            k: [0; 32],
        };
        let mut prologue = label("siren/v1/handshake");
        prologue.extend_from_slice(&version.to_be_bytes());
        prologue.push(role);
        prologue.extend_from_slice(&(server_name.len() as u32).to_be_bytes());
        prologue.extend_from_slice(server_name.as_bytes());
        prologue.extend_from_slice(sek);
        s.mix_hash(&prologue);
        s
    }

    pub fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    pub fn mix_key(&mut self, dh: &[u8; 32]) {
        let okm: [u8; 64] = hkdf(Some(&self.ck), dh, &[]);
        self.ck.copy_from_slice(&okm[..32]);
        self.k.copy_from_slice(&okm[32..]);
    }

    fn message_key(&self) -> [u8; 32] {
        let mut mk = [0u8; 32];
        Hkdf::<Sha256>::from_prk(&self.k)
            .unwrap()
            .expand_multi_info(&[b"siren/v1/handshake-message-key", &self.h], &mut mk)
            .unwrap();
        mk
    }

    pub fn encrypt_and_hash(&mut self, m: &[u8]) -> Vec<u8> {
        let c = secretbox(&self.message_key(), &[0; 24], m);
        self.mix_hash(&c);
        c
    }

    pub fn decrypt_and_hash(&mut self, c: &[u8]) -> Vec<u8> {
        let m = secretbox_open(&self.message_key(), &[0; 24], c).expect("the tag verifies");
        self.mix_hash(c);
        m
    }

    /// `Split()`: `(i2r, r2i)`; the handshake hash is `self.h`.
    pub fn split(&self) -> ([u8; 32], [u8; 32]) {
        let okm: [u8; 64] = hkdf(Some(&self.ck), &[], &[b"siren/v1/handshake-split", &self.h]);
        (okm[..32].try_into().unwrap(), okm[32..].try_into().unwrap())
    }
}

/// The SEK rotation proof of §7.6.
pub fn rotation_proof(h0: &[u8; 32], new_secret: [u8; 32], e_pub: [u8; 32]) -> [u8; 32] {
    let new_public = public(new_secret);
    hkdf(
        Some(h0),
        &x25519(new_secret, e_pub),
        &[b"siren/v1/sek-rotation", &new_public],
    )
}

/// CBOR in the profile: a map with text keys, in the order given.
pub fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

pub fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

pub fn parse(bytes: &[u8]) -> Value {
    ciborium::from_reader(bytes).unwrap()
}

/// The value of `key` in a CBOR map.
pub fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

pub fn bytes32(v: &Value) -> [u8; 32] {
    v.as_bytes().unwrap().as_slice().try_into().unwrap()
}

/// Replaces the value of `key` in a CBOR map (keeping the order).
pub fn replace(v: &Value, key: &str, new: Value) -> Value {
    let mut fields = v.as_map().unwrap().clone();
    for (k, val) in fields.iter_mut() {
        if k.as_text() == Some(key) {
            *val = new.clone();
        }
    }
    Value::Map(fields)
}

/// What the responder computes while answering a c2s hello (§7.3, §7.4), with an optional
/// rotation announcement `(new SEK public key, proof)` chosen by the caller (so a liar's proof
/// can be built too).
pub struct Reply {
    pub hello_reply: Vec<u8>,
    /// `h` before payload2 is encrypted (`h0` of §7.4).
    pub h0: [u8; 32],
    pub payload2: Vec<u8>,
    /// The state after `hello_reply`, to read `finish`.
    pub sym: Symmetric,
}

/// The responder side of §7.3–§7.4 for a c2s `hello`, with the SEK secret the hello selected.
/// `rotation` builds `payload2.rot` from `h0`.
pub fn respond(
    hello: &[u8],
    server_name: &str,
    sek_secret: [u8; 32],
    re_secret: [u8; 32],
    challenge: [u8; 32],
    rotation: impl FnOnce(&[u8; 32]) -> Option<([u8; 32], [u8; 32])>,
) -> Reply {
    let hello = parse(hello);
    let e = bytes32(field(&hello, "e"));
    let mut sym = Symmetric::initialize(1, 1, server_name, &public(sek_secret));
    sym.mix_hash(&e);
    sym.mix_key(&x25519(sek_secret, e));
    let s_pub: [u8; 32] = sym
        .decrypt_and_hash(field(&hello, "s").as_bytes().unwrap())
        .try_into()
        .unwrap();
    sym.mix_key(&x25519(sek_secret, s_pub));
    let payload1 = sym.decrypt_and_hash(field(&hello, "p").as_bytes().unwrap());
    assert_eq!(payload1, cbor(&map(vec![])), "c2s payload1 is an empty map");
    let re_pub = public(re_secret);
    sym.mix_hash(&re_pub);
    sym.mix_key(&x25519(re_secret, e));
    sym.mix_key(&x25519(re_secret, s_pub));
    let h0 = sym.h;
    let mut fields = vec![("ch", Value::Bytes(challenge.to_vec()))];
    if let Some((sek, proof)) = rotation(&h0) {
        fields.push((
            "rot",
            map(vec![
                ("sek", Value::Bytes(sek.to_vec())),
                ("proof", Value::Bytes(proof.to_vec())),
            ]),
        ));
    }
    let payload2 = cbor(&map(fields));
    let p = sym.encrypt_and_hash(&payload2);
    let hello_reply = cbor(&map(vec![
        ("t", Value::Text("hello_reply".into())),
        ("e", Value::Bytes(re_pub.to_vec())),
        ("p", Value::Bytes(p)),
    ]));
    Reply {
        hello_reply,
        h0,
        payload2,
        sym,
    }
}

/// A c2s `hello` whose encrypted static key is `s_pub` (any 32 bytes, a low-order point
/// included): §7.2 steps 1–4; `p` is encrypted under the es key only, since whoever sends a key
/// it has no secret for cannot compute ss.
pub fn hello_with_static(
    server_name: &str,
    sek: [u8; 32],
    e_secret: [u8; 32],
    s_pub: [u8; 32],
) -> Vec<u8> {
    let mut sym = Symmetric::initialize(1, 1, server_name, &sek);
    let e_pub = public(e_secret);
    sym.mix_hash(&e_pub);
    sym.mix_key(&x25519(e_secret, sek));
    let c_s = sym.encrypt_and_hash(&s_pub);
    let c_p = sym.encrypt_and_hash(&cbor(&map(vec![])));
    let kid = &Sha256::digest([label("siren/v1/key-id").as_slice(), &sek].concat())[..8];
    cbor(&map(vec![
        ("t", Value::Text("hello".into())),
        ("v", Value::Integer(1.into())),
        ("role", Value::Text("c2s".into())),
        ("srv", Value::Text(server_name.into())),
        ("kid", Value::Bytes(kid.to_vec())),
        ("e", Value::Bytes(e_pub.to_vec())),
        ("s", Value::Bytes(c_s)),
        ("p", Value::Bytes(c_p)),
    ]))
}

/// An envelope's (or USK transfer's) key and nonce: `HKDF(none, dh, info || eph || to_dek, 56)`.
pub fn envelope_key(info: &str, dh: &[u8; 32], eph: &[u8; 32], to_dek: &[u8; 32]) -> [u8; 56] {
    hkdf(None, dh, &[info.as_bytes(), eph, to_dek])
}
