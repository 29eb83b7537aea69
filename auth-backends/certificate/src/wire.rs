//! The client's response in the `X509` mechanism: `{ "chain": [bstr], "sig": bstr }` in Siren's
//! CBOR profile (PROTOCOL.md §6 and §9.2).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Most certificates accepted in `chain` (the end-entity certificate and its intermediates).
pub const MAX_CHAIN: usize = 8;

/// The client's response: its certificate chain and its proof of possession.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Response {
    /// DER certificates: the end-entity certificate first, then intermediates (not the root).
    pub chain: Vec<Vec<u8>>,
    /// The signature by the end-entity certificate's key over
    /// [`siren_proto::transcript::x509_auth`] (ECDSA as DER, Ed25519 as 64 raw bytes).
    pub sig: Vec<u8>,
}

impl X509Response {
    /// Encodes the response in Siren's CBOR profile.
    pub fn encode(&self) -> Vec<u8> {
        siren_proto::message::encode_value(&Wire {
            chain: self.chain.iter().map(|c| Bstr(c.clone())).collect(),
            sig: Bstr(self.sig.clone()),
        })
    }

    /// Decodes a response, checking the profile and the shape: a map with `chain` (1 to
    /// [`MAX_CHAIN`] byte strings, none empty) and `sig` (a byte string); unknown keys are
    /// ignored (PROTOCOL.md §21).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let wire: Wire = siren_proto::message::decode_value(bytes).map_err(|e| e.to_string())?;
        if wire.chain.is_empty() {
            return Err("empty certificate chain".into());
        }
        if wire.chain.len() > MAX_CHAIN {
            return Err(format!(
                "{} certificates in the chain (at most {MAX_CHAIN})",
                wire.chain.len()
            ));
        }
        if wire.chain.iter().any(|c| c.0.is_empty()) || wire.sig.0.is_empty() {
            return Err("empty certificate or signature".into());
        }
        Ok(X509Response {
            chain: wire.chain.into_iter().map(|c| c.0).collect(),
            sig: wire.sig.0,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    chain: Vec<Bstr>,
    sig: Bstr,
}

/// A CBOR byte string, never an array of integers nor a text string.
struct Bstr(Vec<u8>);

impl Serialize for Bstr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bstr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bstr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bstr, E> {
                Ok(Bstr(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bstr, E> {
                Ok(Bstr(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_profile() {
        let r = X509Response {
            chain: vec![vec![1, 2], vec![3]],
            sig: vec![9; 4],
        };
        let bytes = r.encode();
        // {"chain": [h'0102', h'03'], "sig": h'09090909'}: definite lengths, text keys.
        let expected = [
            0xa2, 0x65, b'c', b'h', b'a', b'i', b'n', 0x82, 0x42, 1, 2, 0x41, 3, 0x63, b's', b'i',
            b'g', 0x44, 9, 9, 9, 9,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(X509Response::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn refuses_other_shapes() {
        let enc = |v: &ciborium::Value| {
            let mut out = Vec::new();
            ciborium::into_writer(v, &mut out).unwrap();
            out
        };
        use ciborium::Value as V;
        let map = |chain: V, sig: V| {
            V::Map(vec![
                (V::Text("chain".into()), chain),
                (V::Text("sig".into()), sig),
            ])
        };
        let good = map(V::Array(vec![V::Bytes(vec![1])]), V::Bytes(vec![2]));
        assert!(X509Response::decode(&enc(&good)).is_ok());
        for bad in [
            // sig as text, as an array of integers; chain of text; empty chain; empty sig
            map(V::Array(vec![V::Bytes(vec![1])]), V::Text("x".into())),
            map(
                V::Array(vec![V::Bytes(vec![1])]),
                V::Array(vec![V::Integer(2.into())]),
            ),
            map(V::Array(vec![V::Text("c".into())]), V::Bytes(vec![2])),
            map(V::Array(vec![]), V::Bytes(vec![2])),
            map(V::Array(vec![V::Bytes(vec![1])]), V::Bytes(vec![])),
            map(
                V::Array(vec![V::Bytes(vec![1]); MAX_CHAIN + 1]),
                V::Bytes(vec![2]),
            ),
            // not a map; a missing field
            V::Array(vec![]),
            V::Map(vec![(V::Text("sig".into()), V::Bytes(vec![2]))]),
        ] {
            assert!(X509Response::decode(&enc(&bad)).is_err(), "{bad:?}");
        }
        // Trailing bytes, truncation, indefinite lengths.
        let mut long = enc(&good);
        long.push(0);
        assert!(X509Response::decode(&long).is_err());
        let short = &enc(&good)[..5];
        assert!(X509Response::decode(short).is_err());
        assert!(X509Response::decode(&[0xbf, 0xff]).is_err());
        // Unknown keys are ignored.
        let mut extra = match good {
            V::Map(m) => m,
            _ => unreachable!(),
        };
        extra.push((V::Text("future".into()), V::Integer(1.into())));
        assert!(X509Response::decode(&enc(&V::Map(extra))).is_ok());
    }
}
