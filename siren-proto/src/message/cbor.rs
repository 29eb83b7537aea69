//! Siren's CBOR profile and the one place CBOR is encoded and decoded.
//!
//! Siren uses a strict subset of CBOR (RFC 8949), so that one value has one encoding in practice
//! and implementations in other languages agree on what is valid (PROTOCOL.md §"Encoding"):
//!
//! * the top-level item of every frame is a map;
//! * map keys are text strings;
//! * lengths are definite (no indefinite-length strings, arrays or maps);
//! * no tags and no floating-point values;
//! * nesting at most [`MAX_NESTING`] deep;
//! * the values of the type tags `t` (messages) and `k` (nested variants) are text strings;
//! * exactly one item per frame: trailing bytes are an error.
//!
//! [`check_profile`] walks the item once with `ciborium-ll` (no allocation beyond a small stack)
//! before serde sees it, and picks out the top-level `t` and `rid` on the way.

use ciborium_io::Read as _;
use ciborium_ll::{Decoder, Header};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Nesting deeper than this is refused (the deepest valid message nests about 6 levels).
pub const MAX_NESTING: usize = 32;
/// Longest map key accepted, in bytes (Siren's keys are a few characters).
const MAX_KEY_LEN: usize = 64;
/// Longest `t` value picked out while walking.
const MAX_TYPE_LEN: usize = 64;

/// The top-level `t` and `rid`, if present and well-typed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Peek {
    pub(crate) t: Option<String>,
    pub(crate) rid: Option<u32>,
}

struct Level {
    /// Items in this container (keys and values both count for maps).
    len: usize,
    /// Items consumed so far.
    done: usize,
    map: bool,
    /// The key just read names a type tag, whose value must be text.
    tag_next: bool,
}

/// Keys whose values name a variant (serde would also accept a byte string there).
const TAG_KEYS: [&[u8]; 2] = [b"t", b"k"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum TopKey {
    T,
    Rid,
    Other,
}

/// Checks that `bytes` is exactly one item in Siren's CBOR profile; returns its `t` and `rid`.
pub(crate) fn check_profile(bytes: &[u8]) -> Result<Peek, String> {
    let mut dec = Decoder::from(bytes);
    let mut stack: Vec<Level> = Vec::new();
    let mut peek = Peek::default();
    let mut top_key = TopKey::Other;
    let mut scratch = [0u8; 256];
    loop {
        let is_key = stack.last().is_some_and(|l| l.map && l.done % 2 == 0);
        let tag_value = stack
            .last()
            .is_some_and(|l| l.map && l.done % 2 == 1 && l.tag_next);
        let at_top = stack.len() == 1;
        let offset = dec.offset();
        let header = dec.pull().map_err(|e| match e {
            ciborium_ll::Error::Io(_) => "truncated CBOR".to_owned(),
            ciborium_ll::Error::Syntax(at) => format!("invalid CBOR at byte {at}"),
        })?;
        match header {
            Header::Tag(_) => return Err(format!("CBOR tag at byte {offset}: tags are not used")),
            Header::Float(_) => return Err(format!("float at byte {offset}: floats are not used")),
            Header::Break
            | Header::Bytes(None)
            | Header::Text(None)
            | Header::Array(None)
            | Header::Map(None) => {
                return Err(format!(
                    "indefinite length at byte {offset}: lengths must be definite"
                ));
            }
            _ if stack.is_empty() && !matches!(header, Header::Map(_)) => {
                return Err("a message must be a CBOR map".into());
            }
            _ if is_key && !matches!(header, Header::Text(_)) => {
                return Err(format!("map key at byte {offset} is not a text string"));
            }
            _ if tag_value && !matches!(header, Header::Text(_)) => {
                return Err(format!("type tag at byte {offset} is not a text string"));
            }
            Header::Text(Some(len)) if is_key => {
                if len > MAX_KEY_LEN {
                    return Err(format!("map key of {len} bytes at byte {offset}"));
                }
                let key = &mut scratch[..len];
                dec.read_exact(key)
                    .map_err(|_| "truncated CBOR".to_owned())?;
                if let Some(level) = stack.last_mut() {
                    level.tag_next = TAG_KEYS.contains(&&*key);
                }
                if at_top {
                    top_key = match &*key {
                        b"t" => TopKey::T,
                        b"rid" => TopKey::Rid,
                        _ => TopKey::Other,
                    };
                }
            }
            Header::Text(Some(len)) if at_top && top_key == TopKey::T && len <= MAX_TYPE_LEN => {
                let value = &mut scratch[..len];
                dec.read_exact(value)
                    .map_err(|_| "truncated CBOR".to_owned())?;
                peek.t = Some(
                    std::str::from_utf8(value)
                        .map_err(|_| "message type is not UTF-8".to_owned())?
                        .to_owned(),
                );
            }
            Header::Text(Some(len)) | Header::Bytes(Some(len)) => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(scratch.len());
                    dec.read_exact(&mut scratch[..n])
                        .map_err(|_| "truncated CBOR".to_owned())?;
                    left -= n;
                }
            }
            Header::Positive(n) if at_top && !is_key && top_key == TopKey::Rid => {
                peek.rid = u32::try_from(n).ok();
            }
            Header::Positive(_) | Header::Negative(_) | Header::Simple(_) => {}
            Header::Array(Some(len)) | Header::Map(Some(len)) => {
                let map = matches!(header, Header::Map(_));
                let len = if map { len.checked_mul(2) } else { Some(len) }
                    .ok_or_else(|| "absurd map length".to_owned())?;
                if stack.len() >= MAX_NESTING {
                    return Err("CBOR nested too deeply".into());
                }
                if len > 0 {
                    stack.push(Level {
                        len,
                        done: 0,
                        map,
                        tag_next: false,
                    });
                    continue;
                }
            }
        }
        // One item finished: count it in its container, and close containers that are full.
        loop {
            match stack.last_mut() {
                None => {
                    if dec.offset() != bytes.len() {
                        return Err(format!(
                            "{} trailing bytes after the message",
                            bytes.len() - dec.offset()
                        ));
                    }
                    return Ok(peek);
                }
                Some(level) => {
                    level.done += 1;
                    if level.done < level.len {
                        break;
                    }
                    stack.pop();
                }
            }
        }
    }
}

/// CBOR-encodes any value. Siren's own types always serialize (no maps with non-text keys, no
/// failing `Serialize` impls), so the only possible failure is running out of memory.
pub(crate) fn encode_cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        unreachable!("Siren messages always serialize to CBOR: {e}");
    }
    out
}

/// Decodes bytes that already passed [`check_profile`].
pub(crate) fn decode_checked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::de::from_reader_with_recursion_limit(bytes, MAX_NESTING + 2).map_err(
        |e: ciborium::de::Error<std::io::Error>| match e {
            ciborium::de::Error::Io(_) => "truncated CBOR".to_owned(),
            ciborium::de::Error::Syntax(at) => format!("invalid CBOR at byte {at}"),
            ciborium::de::Error::Semantic(_, msg) => msg,
            ciborium::de::Error::RecursionLimitExceeded => "CBOR nested too deeply".to_owned(),
        },
    )
}

/// Checks the profile and decodes one value.
pub(crate) fn decode_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    check_profile(bytes)?;
    decode_checked(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_rules() {
        // {"t": "ping", "rid": 5}
        let ok = [
            0xa2, 0x61, b't', 0x64, b'p', b'i', b'n', b'g', 0x63, b'r', b'i', b'd', 0x05,
        ];
        assert_eq!(
            check_profile(&ok).unwrap(),
            Peek {
                t: Some("ping".into()),
                rid: Some(5)
            }
        );
        // Same with the key "t" as a byte string.
        let mut bytes_key = ok;
        bytes_key[1] = 0x41;
        assert!(
            check_profile(&bytes_key)
                .unwrap_err()
                .contains("not a text string")
        );
        // Indefinite-length map.
        assert!(
            check_profile(&[0xbf, 0xff])
                .unwrap_err()
                .contains("indefinite")
        );
        // A tag inside.
        assert!(
            check_profile(&[0xa1, 0x61, b'x', 0xc1, 0x00])
                .unwrap_err()
                .contains("tag")
        );
        // A float inside.
        assert!(
            check_profile(&[0xa1, 0x61, b'x', 0xf9, 0x3c, 0x00])
                .unwrap_err()
                .contains("float")
        );
        // Not a map; trailing bytes; truncated.
        assert!(check_profile(&[0x01]).is_err());
        assert!(
            check_profile(&[0xa0, 0x00])
                .unwrap_err()
                .contains("trailing")
        );
        assert!(
            check_profile(&[0xa1, 0x61])
                .unwrap_err()
                .contains("truncated")
        );
        // Empty containers and nesting.
        assert!(check_profile(&[0xa1, 0x61, b'x', 0x80]).is_ok());
        let mut deep = vec![0xa1, 0x61, b'x'];
        deep.extend(std::iter::repeat_n(0x81, MAX_NESTING));
        deep.push(0x00);
        assert!(check_profile(&deep).unwrap_err().contains("deeply"));
    }
}
