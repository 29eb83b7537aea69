//! Siren's CBOR profile and the one place CBOR is encoded and decoded.
//!
//! Siren uses a strict subset of CBOR (RFC 8949), so that one value has exactly one encoding and
//! implementations in other languages agree on what is valid (PROTOCOL.md §"Encoding"). A
//! decoder refuses (error 101) anything outside it:
//!
//! * the top-level item of every frame is a map;
//! * map keys are text strings of at most [`MAX_KEY_LEN`] bytes, each at most once per map, and a
//!   map has at most [`MAX_MAP_ENTRIES`] entries;
//! * lengths are definite (no indefinite-length strings, arrays or maps);
//! * no tags, no floating-point values, and no simple values but `false` and `true` (no `null`,
//!   no `undefined`);
//! * integers, lengths and simple values in their shortest form (preferred serialization);
//! * text strings are valid UTF-8;
//! * nesting at most [`MAX_NESTING`] deep;
//! * the values of the type tags `t` (messages) and `k` (nested variants) are text strings;
//! * exactly one item per frame: trailing bytes are an error.
//!
//! These rules hold everywhere in the item, unknown fields included. [`check_profile`] walks the
//! item once with `ciborium-ll` (no allocation beyond a small stack) before serde sees it, and
//! picks out the top-level `t` and `rid` on the way.

use ciborium_io::Read as _;
use ciborium_ll::{Decoder, Header, simple};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Nesting deeper than this is refused (the deepest valid message nests about 6 levels).
pub const MAX_NESTING: usize = 32;
/// Longest map key accepted, in bytes (Siren's keys are a few characters).
pub const MAX_KEY_LEN: usize = 64;
/// Most entries in one map (Siren's maps are records of a few named fields).
pub const MAX_MAP_ENTRIES: usize = 64;
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
    /// The keys of this map so far, as ranges of the input, sorted by their bytes.
    keys: Vec<(usize, usize)>,
}

/// Keys whose values name a variant (serde would also accept a byte string there).
const TAG_KEYS: [&str; 2] = ["t", "k"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum TopKey {
    T,
    Rid,
    Other,
}

/// How many bytes the shortest head for argument `n` takes (RFC 8949 §4.2.1).
fn shortest_head(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The length of the shortest head for `header`, for the kinds the profile allows.
fn shortest(header: &Header) -> Option<usize> {
    match *header {
        Header::Positive(n) | Header::Negative(n) => Some(shortest_head(n)),
        Header::Bytes(Some(n))
        | Header::Text(Some(n))
        | Header::Array(Some(n))
        | Header::Map(Some(n)) => Some(shortest_head(n as u64)),
        Header::Simple(v) if v < 24 => Some(1),
        Header::Simple(_) => Some(2),
        _ => None,
    }
}

/// Skips `len` bytes of string content.
fn skip(dec: &mut Decoder<&[u8]>, mut len: usize) -> Result<(), String> {
    let mut scratch = [0u8; 256];
    while len > 0 {
        let n = len.min(scratch.len());
        dec.read_exact(&mut scratch[..n])
            .map_err(|_| "truncated CBOR".to_owned())?;
        len -= n;
    }
    Ok(())
}

/// Checks that `bytes` is exactly one item in Siren's CBOR profile; returns its `t` and `rid`.
pub(crate) fn check_profile(bytes: &[u8]) -> Result<Peek, String> {
    let mut dec = Decoder::from(bytes);
    let mut stack: Vec<Level> = Vec::new();
    let mut peek = Peek::default();
    let mut top_key = TopKey::Other;
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
            Header::Simple(v) if v != simple::FALSE && v != simple::TRUE => {
                let what = match v {
                    simple::NULL => "null".to_owned(),
                    simple::UNDEFINED => "undefined".to_owned(),
                    other => format!("simple value {other}"),
                };
                return Err(format!(
                    "{what} at byte {offset}: only false and true are used (absent fields are left out)"
                ));
            }
            _ => {}
        }
        if shortest(&header) != Some(dec.offset() - offset) {
            return Err(format!(
                "integer or length at byte {offset} is not in its shortest form"
            ));
        }
        match header {
            _ if stack.is_empty() && !matches!(header, Header::Map(_)) => {
                return Err("a message must be a CBOR map".into());
            }
            _ if is_key && !matches!(header, Header::Text(_)) => {
                return Err(format!("map key at byte {offset} is not a text string"));
            }
            _ if tag_value && !matches!(header, Header::Text(_)) => {
                return Err(format!("type tag at byte {offset} is not a text string"));
            }
            Header::Text(Some(len)) => {
                if is_key && len > MAX_KEY_LEN {
                    return Err(format!("map key of {len} bytes at byte {offset}"));
                }
                let start = dec.offset();
                let text = start
                    .checked_add(len)
                    .and_then(|end| bytes.get(start..end))
                    .ok_or_else(|| "truncated CBOR".to_owned())?;
                let text = std::str::from_utf8(text)
                    .map_err(|_| format!("text string at byte {offset} is not UTF-8"))?;
                skip(&mut dec, len)?;
                if is_key && let Some(level) = stack.last_mut() {
                    let key = text.as_bytes();
                    match level.keys.binary_search_by(|&(s, l)| {
                        bytes.get(s..s + l).unwrap_or_default().cmp(key)
                    }) {
                        Ok(_) => {
                            return Err(format!("map key {text:?} at byte {offset} appears twice"));
                        }
                        Err(at) => level.keys.insert(at, (start, len)),
                    }
                    level.tag_next = TAG_KEYS.contains(&text);
                    if at_top {
                        top_key = match text {
                            "t" => TopKey::T,
                            "rid" => TopKey::Rid,
                            _ => TopKey::Other,
                        };
                    }
                } else if at_top && top_key == TopKey::T && len <= MAX_TYPE_LEN {
                    peek.t = Some(text.to_owned());
                }
            }
            Header::Bytes(Some(len)) => skip(&mut dec, len)?,
            Header::Positive(n) if at_top && !is_key && top_key == TopKey::Rid => {
                peek.rid = u32::try_from(n).ok();
            }
            Header::Array(Some(len)) | Header::Map(Some(len)) => {
                let map = matches!(header, Header::Map(_));
                if map && len > MAX_MAP_ENTRIES {
                    return Err(format!(
                        "map of {len} entries at byte {offset} (at most {MAX_MAP_ENTRIES})"
                    ));
                }
                if stack.len() >= MAX_NESTING {
                    return Err("CBOR nested too deeply".into());
                }
                // A map's length counts its keys and values.
                let len = if map { len * 2 } else { len };
                if len > 0 {
                    stack.push(Level {
                        len,
                        done: 0,
                        map,
                        tag_next: false,
                        keys: Vec::new(),
                    });
                    continue;
                }
            }
            _ => {}
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
    // Room for a short message's envelope (~600 bytes with a 256-byte payload) without
    // growing the buffer, which was 6% of the server's CPU per relayed message with room for
    // 128 (1 KiB is still one of glibc's cached allocation sizes).
    let mut out = Vec::with_capacity(1024);
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
        deep.remove(3);
        assert!(check_profile(&deep).is_ok(), "32 levels are allowed");
    }

    /// `{"t": "ping", "rid": 5, "x": <value>}` with `value` as raw CBOR.
    fn ping_with(value: &[u8]) -> Vec<u8> {
        let mut m = vec![
            0xa3, 0x61, b't', 0x64, b'p', b'i', b'n', b'g', 0x63, b'r', b'i', b'd', 0x05, 0x61,
            b'x',
        ];
        m.extend_from_slice(value);
        m
    }

    #[test]
    fn only_false_and_true_among_simple_values() {
        assert!(check_profile(&ping_with(&[0xf4])).is_ok());
        assert!(check_profile(&ping_with(&[0xf5])).is_ok());
        assert!(
            check_profile(&ping_with(&[0xf6]))
                .unwrap_err()
                .contains("null")
        );
        assert!(
            check_profile(&ping_with(&[0xf7]))
                .unwrap_err()
                .contains("undefined")
        );
        assert!(
            check_profile(&ping_with(&[0xe0]))
                .unwrap_err()
                .contains("simple value 0")
        );
        assert!(
            check_profile(&ping_with(&[0xf8, 0xff]))
                .unwrap_err()
                .contains("simple value 255")
        );
    }

    #[test]
    fn integers_lengths_and_simple_values_in_shortest_form() {
        let not_shortest = |value: &[u8]| {
            check_profile(&ping_with(value))
                .unwrap_err()
                .contains("shortest")
        };
        assert!(not_shortest(&[0x18, 0x05])); // 5 in two bytes
        assert!(not_shortest(&[0x19, 0x00, 0xff])); // 255 in three
        assert!(not_shortest(&[0x1a, 0x00, 0x00, 0xff, 0xff])); // 65535 in five
        assert!(not_shortest(&[
            0x1b, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff
        ]));
        assert!(not_shortest(&[0x38, 0x00])); // -1 in two bytes
        assert!(not_shortest(&[0x58, 0x01, 0x00])); // a byte string's length
        assert!(not_shortest(&[0x78, 0x01, b'a'])); // a text string's length
        assert!(not_shortest(&[0x98, 0x00])); // an array's length
        assert!(not_shortest(&[0xb8, 0x00])); // a map's length
        assert!(not_shortest(&[0xf8, 0x14])); // false in two bytes
        // The boundaries in their shortest form are fine.
        for ok in [
            &[0x17][..],
            &[0x18, 0x18],
            &[0x18, 0xff],
            &[0x19, 0x01, 0x00],
            &[0x1a, 0x00, 0x01, 0x00, 0x00],
            &[0x1b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
        ] {
            assert!(check_profile(&ping_with(ok)).is_ok(), "{ok:02x?}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        // {"t": "ping", "t": "pong"}
        let top = [
            0xa2, 0x61, b't', 0x64, b'p', b'i', b'n', b'g', 0x61, b't', 0x64, b'p', b'o', b'n',
            b'g',
        ];
        assert!(check_profile(&top).unwrap_err().contains("twice"));
        // An unknown field holding {"a": 1, "b": 2, "a": 3}.
        let nested = ping_with(&[0xa3, 0x61, b'a', 0x01, 0x61, b'b', 0x02, 0x61, b'a', 0x03]);
        assert!(check_profile(&nested).unwrap_err().contains("twice"));
        // The same key in two different maps is fine.
        let two = ping_with(&[0x82, 0xa1, 0x61, b'a', 0x01, 0xa1, 0x61, b'a', 0x02]);
        assert!(check_profile(&two).is_ok());
    }

    #[test]
    fn map_size_key_length_and_utf8() {
        let map_of = |n: usize| {
            let mut v = vec![0xb8, n as u8];
            for i in 0..n {
                v.extend_from_slice(&[0x62, b'a' + (i / 26) as u8, b'a' + (i % 26) as u8, 0x00]);
            }
            v
        };
        assert!(check_profile(&ping_with(&map_of(MAX_MAP_ENTRIES))).is_ok());
        assert!(
            check_profile(&ping_with(&map_of(MAX_MAP_ENTRIES + 1)))
                .unwrap_err()
                .contains("entries")
        );
        let mut long_key = vec![0xa1, 0x78, (MAX_KEY_LEN + 1) as u8];
        long_key.extend(std::iter::repeat_n(b'k', MAX_KEY_LEN + 1));
        long_key.push(0x00);
        assert!(check_profile(&long_key).unwrap_err().contains("map key of"));
        // Invalid UTF-8 in a text string, even in an unknown field.
        assert!(
            check_profile(&ping_with(&[0x62, 0xc3, 0x28]))
                .unwrap_err()
                .contains("UTF-8")
        );
        assert!(check_profile(&ping_with(&[0x62, 0xc3, 0xa9])).is_ok());
    }
}
