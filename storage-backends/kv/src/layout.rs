//! The key layout and the value encodings (see the crate documentation for the table).
//!
//! Keys start with a one-letter keyspace and a `/`; integers are big-endian so that byte order is
//! numeric order. Values are a few fixed-width fields followed by the opaque bytes, which take
//! the rest of the value (no length prefix needed). Decoding never panics: a value that does not
//! fit its shape is an [`ErrorCode::Internal`] error naming what was being read.

use siren_api::storage::{DeviceKey, EntryKind, UnixTime};
use siren_api::{Error, ErrorCode, Username};

/// `a/<username>`: accounts.
pub(crate) const ACCOUNTS: &[u8] = b"a/";
/// `d/<username>/<seq>`: directory entries.
pub(crate) const DIRECTORY: &[u8] = b"d/";
/// `n/<device>`: the highest sequence number ever removed from a device's queue.
pub(crate) const HIGH_WATER: &[u8] = b"n/";
/// `q/<device><seq>`: queue items.
pub(crate) const QUEUE: &[u8] = b"q/";
/// `r/<username>`: rosters.
pub(crate) const ROSTERS: &[u8] = b"r/";
/// `s/<id>`: sessions.
pub(crate) const SESSIONS: &[u8] = b"s/";
/// `x/<expires><device><seq>`: the queue's expiry index.
pub(crate) const EXPIRY: &[u8] = b"x/";

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The error for a stored key or value that does not have the shape this layout gives it.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("stored {what} is corrupt: {detail}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Keys.

pub(crate) fn account_key(user: &Username) -> Vec<u8> {
    key(&[ACCOUNTS, user.as_str().as_bytes()])
}

/// The user of an `a/` key.
pub(crate) fn account_user(key: &[u8]) -> Result<Username, Error> {
    let name = key
        .strip_prefix(ACCOUNTS)
        .ok_or_else(|| corrupt("account key", "wrong keyspace"))?;
    let name = std::str::from_utf8(name).map_err(|e| corrupt("account key", e))?;
    Username::parse(name).map_err(|e| corrupt("account key", e))
}

/// `d/<username>/`: every entry of one user (usernames never contain `/`, so no other user's
/// keys share this prefix).
pub(crate) fn directory_prefix(user: &Username) -> Vec<u8> {
    key(&[DIRECTORY, user.as_str().as_bytes(), b"/"])
}

pub(crate) fn directory_key(user: &Username, seq: u64) -> Vec<u8> {
    key(&[&directory_prefix(user), &seq.to_be_bytes()])
}

/// The sequence number of a `d/` key, given the user's prefix length.
pub(crate) fn directory_seq(key: &[u8], prefix_len: usize) -> Result<u64, Error> {
    let tail = key.get(prefix_len..).unwrap_or_default();
    be_u64(tail).ok_or_else(|| corrupt("directory key", "no 8-byte sequence number"))
}

/// `q/<device>`: every item of one device.
pub(crate) fn queue_prefix(device: &DeviceKey) -> Vec<u8> {
    key(&[QUEUE, device])
}

pub(crate) fn queue_key(device: &DeviceKey, seq: u64) -> Vec<u8> {
    key(&[QUEUE, device, &seq.to_be_bytes()])
}

/// The sequence number of a `q/` key.
pub(crate) fn queue_seq(key: &[u8]) -> Result<u64, Error> {
    let tail = key.get(QUEUE.len() + 32..).unwrap_or_default();
    be_u64(tail).ok_or_else(|| corrupt("queue key", "no 8-byte sequence number"))
}

pub(crate) fn expiry_key(expires: UnixTime, device: &DeviceKey, seq: u64) -> Vec<u8> {
    key(&[EXPIRY, &expires.to_be_bytes(), device, &seq.to_be_bytes()])
}

/// The first key of the expiry index after every item expiring at or before `now`, as the end
/// of a scan (empty when `now` is the last representable time: no upper bound).
pub(crate) fn expiry_end(now: UnixTime) -> Vec<u8> {
    match now.checked_add(1) {
        Some(next) => key(&[EXPIRY, &next.to_be_bytes()]),
        None => siren_api::storage::KeyRange::prefix(EXPIRY).end,
    }
}

/// The expiry time, device and sequence number of an `x/` key.
pub(crate) fn expiry_item(key: &[u8]) -> Result<(UnixTime, DeviceKey, u64), Error> {
    let rest = key
        .strip_prefix(EXPIRY)
        .filter(|rest| rest.len() == 8 + 32 + 8)
        .ok_or_else(|| corrupt("expiry index key", "wrong length"))?;
    let mut reader = Reader::new("expiry index key", rest);
    let expires = reader.u64()?;
    let device = reader.array::<32>()?;
    let seq = reader.u64()?;
    Ok((expires, device, seq))
}

pub(crate) fn high_water_key(device: &DeviceKey) -> Vec<u8> {
    key(&[HIGH_WATER, device])
}

pub(crate) fn session_key(id: &[u8; 16]) -> Vec<u8> {
    key(&[SESSIONS, id])
}

pub(crate) fn roster_key(user: &Username) -> Vec<u8> {
    key(&[ROSTERS, user.as_str().as_bytes()])
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

// ---------------------------------------------------------------------------------------------
// Values.

/// Reads fixed-width fields from the front of a stored value.
pub(crate) struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader { what, bytes }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt(self.what, format!("shorter than its {N}-byte field")))?;
        self.bytes = rest;
        Ok(*head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        self.array::<8>().map(u64::from_be_bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        self.array::<1>().map(|[b]| b)
    }

    /// The next byte, left unread.
    pub(crate) fn peek_u8(&self) -> Result<u8, Error> {
        self.bytes
            .first()
            .copied()
            .ok_or_else(|| corrupt(self.what, "shorter than its 1-byte field"))
    }

    /// An optional UTF-8 text: a flag byte (0 absent, 1 present) and the rest of the value.
    pub(crate) fn optional_text(self) -> Result<Option<&'a str>, Error> {
        let what = self.what;
        let mut this = self;
        match this.u8()? {
            0 => this.finish().map(|()| None),
            1 => std::str::from_utf8(this.bytes)
                .map(Some)
                .map_err(|e| corrupt(what, e)),
            flag => Err(corrupt(what, format!("bad text flag {flag}"))),
        }
    }

    /// Whatever follows the fixed fields.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.bytes
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt(self.what, "trailing bytes"))
        }
    }
}

fn push_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The format byte of values written with a credential stamp (accounts and sessions); values
/// written before stamps existed start that byte with a text flag, 0 or 1.
const STAMPED: u8 = 2;

/// Account: `created u64 | 2 | stamp u64 | credential flag u8 | credential UTF-8 (rest)`. Read
/// also in the earlier form without the stamp (`created u64 | credential flag u8 | credential`),
/// as stamp 0.
pub(crate) fn account_value(created: UnixTime, stamp: u64, credential: Option<&str>) -> Vec<u8> {
    let mut out = key(&[&created.to_be_bytes(), &[STAMPED], &stamp.to_be_bytes()]);
    push_optional_text(&mut out, credential);
    out
}

/// The creation time, credential stamp and credential of an account value.
pub(crate) fn read_account(value: &[u8]) -> Result<(UnixTime, u64, Option<String>), Error> {
    let mut reader = Reader::new("account", value);
    let created = reader.u64()?;
    let stamp = if reader.peek_u8()? == STAMPED {
        reader.u8()?;
        reader.u64()?
    } else {
        0
    };
    let credential = reader.optional_text()?.map(str::to_owned);
    Ok((created, stamp, credential))
}

/// Directory entry: `kind u8 (0 add, 1 revoke) | device [32] | entry bytes (rest)`.
pub(crate) fn entry_value(kind: EntryKind, device: &DeviceKey, bytes: &[u8]) -> Vec<u8> {
    let kind = match kind {
        EntryKind::Add => 0,
        EntryKind::Revoke => 1,
    };
    key(&[&[kind], device, bytes])
}

pub(crate) fn read_entry(value: &[u8]) -> Result<(EntryKind, DeviceKey, Vec<u8>), Error> {
    let mut reader = Reader::new("directory entry", value);
    let kind = match reader.u8()? {
        0 => EntryKind::Add,
        1 => EntryKind::Revoke,
        other => return Err(corrupt("directory entry", format!("bad kind {other}"))),
    };
    let device = reader.array::<32>()?;
    Ok((kind, device, reader.rest().to_vec()))
}

/// Queue item: `expires u64 | item bytes (rest)`.
pub(crate) fn queue_value(expires: UnixTime, bytes: &[u8]) -> Vec<u8> {
    key(&[&expires.to_be_bytes(), bytes])
}

pub(crate) fn read_queue_value(value: &[u8]) -> Result<(UnixTime, &[u8]), Error> {
    let mut reader = Reader::new("queue item", value);
    let expires = reader.u64()?;
    Ok((expires, reader.rest()))
}

/// High-water mark: `seq u64`.
pub(crate) fn read_high_water(value: &[u8]) -> Result<u64, Error> {
    let mut reader = Reader::new("queue high-water mark", value);
    let seq = reader.u64()?;
    reader.finish()?;
    Ok(seq)
}

/// A session as stored: device, last seen, user, credential stamp.
pub(crate) type SessionFields = (DeviceKey, UnixTime, Option<Username>, Option<u64>);

/// Session: `device [32] | last_seen u64 | 2 | stamp flag u8 (0 none, 1 present) | stamp u64 if
/// present | user flag u8 | username (rest)`. Read also in the earlier form without the stamp
/// (`device | last_seen | user flag | username`), whose logged-in sessions read as stamp 0.
pub(crate) fn session_value(
    device: &DeviceKey,
    last_seen: UnixTime,
    user: Option<&str>,
    stamp: Option<u64>,
) -> Vec<u8> {
    let mut out = key(&[device, &last_seen.to_be_bytes(), &[STAMPED]]);
    match stamp {
        None => out.push(0),
        Some(stamp) => {
            out.push(1);
            out.extend_from_slice(&stamp.to_be_bytes());
        }
    }
    push_optional_text(&mut out, user);
    out
}

pub(crate) fn read_session(value: &[u8]) -> Result<SessionFields, Error> {
    let mut reader = Reader::new("session", value);
    let device = reader.array::<32>()?;
    let last_seen = reader.u64()?;
    let stamped = reader.peek_u8()? == STAMPED;
    let stamp = if stamped {
        reader.u8()?;
        match reader.u8()? {
            0 => None,
            1 => Some(reader.u64()?),
            flag => return Err(corrupt("session", format!("bad stamp flag {flag}"))),
        }
    } else {
        None
    };
    let user = match reader.optional_text()? {
        None => None,
        Some(name) => Some(Username::parse(name).map_err(|e| corrupt("session", e))?),
    };
    // Logged in before stamps were stored: checked against the stamp of unchanged accounts.
    let stamp = if stamped {
        stamp
    } else {
        user.as_ref().map(|_| 0)
    };
    Ok((device, last_seen, user, stamp))
}

/// Roster: `version u64 | roster bytes (rest)`.
pub(crate) fn roster_value(version: u64, bytes: &[u8]) -> Vec<u8> {
    key(&[&version.to_be_bytes(), bytes])
}

pub(crate) fn read_roster(value: &[u8]) -> Result<(u64, Vec<u8>), Error> {
    let mut reader = Reader::new("roster", value);
    let version = reader.u64()?;
    Ok((version, reader.rest().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically_and_stay_in_their_keyspace() {
        let alice = Username::parse("alice").unwrap();
        assert!(directory_key(&alice, 255) < directory_key(&alice, 256));
        let dev = [7; 32];
        assert!(queue_key(&dev, 9) < queue_key(&dev, 10));
        assert!(expiry_key(255, &[9; 32], 1) < expiry_key(256, &[0; 32], 0));
        assert!(expiry_key(5, &dev, 1) < expiry_end(5));
        assert!(expiry_key(6, &dev, 1) >= expiry_end(5));
        assert_eq!(expiry_end(u64::MAX), b"x0");
        assert_eq!(expiry_item(&expiry_key(5, &dev, 42)).unwrap(), (5, dev, 42));
        assert_eq!(queue_seq(&queue_key(&dev, 42)).unwrap(), 42);
        let prefix = directory_prefix(&alice);
        assert_eq!(
            directory_seq(&directory_key(&alice, 3), prefix.len()).unwrap(),
            3
        );
        assert_eq!(account_user(&account_key(&alice)).unwrap(), alice);
    }

    #[test]
    fn values_round_trip() {
        let v = account_value(12, 7, Some("$argon2id$x"));
        assert_eq!(
            read_account(&v).unwrap(),
            (12, 7, Some("$argon2id$x".into()))
        );
        assert_eq!(
            read_account(&account_value(1, 0, None)).unwrap(),
            (1, 0, None)
        );
        // An empty credential is not an absent one.
        assert_eq!(
            read_account(&account_value(1, u64::MAX, Some(""))).unwrap(),
            (1, u64::MAX, Some(String::new()))
        );

        let v = entry_value(EntryKind::Revoke, &[3; 32], b"sig");
        assert_eq!(
            read_entry(&v).unwrap(),
            (EntryKind::Revoke, [3; 32], b"sig".to_vec())
        );

        let v = queue_value(99, b"");
        assert_eq!(read_queue_value(&v).unwrap(), (99, &b""[..]));

        let bob = Username::parse("bob").unwrap();
        let v = session_value(&[1; 32], 5, Some("bob"), Some(9));
        assert_eq!(
            read_session(&v).unwrap(),
            ([1; 32], 5, Some(bob.clone()), Some(9))
        );
        let v = session_value(&[1; 32], 5, Some("bob"), None);
        assert_eq!(read_session(&v).unwrap(), ([1; 32], 5, Some(bob), None));
        let v = session_value(&[1; 32], 5, None, None);
        assert_eq!(read_session(&v).unwrap(), ([1; 32], 5, None, None));

        assert_eq!(
            read_roster(&roster_value(3, b"r")).unwrap(),
            (3, b"r".to_vec())
        );
    }

    #[test]
    fn values_written_before_stamps_still_read() {
        // `created | flag | credential` and `device | last_seen | flag | username`, as the
        // store wrote them before credential stamps: stamp 0, and 0 for logged-in sessions.
        let mut old_account = 12u64.to_be_bytes().to_vec();
        old_account.push(1);
        old_account.extend_from_slice(b"$argon2id$x");
        assert_eq!(
            read_account(&old_account).unwrap(),
            (12, 0, Some("$argon2id$x".into()))
        );
        let mut no_credential = 12u64.to_be_bytes().to_vec();
        no_credential.push(0);
        assert_eq!(read_account(&no_credential).unwrap(), (12, 0, None));

        let mut old_session = [1u8; 32].to_vec();
        old_session.extend_from_slice(&5u64.to_be_bytes());
        let mut anonymous = old_session.clone();
        anonymous.push(0);
        assert_eq!(read_session(&anonymous).unwrap(), ([1; 32], 5, None, None));
        old_session.push(1);
        old_session.extend_from_slice(b"bob");
        assert_eq!(
            read_session(&old_session).unwrap(),
            ([1; 32], 5, Some(Username::parse("bob").unwrap()), Some(0))
        );
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let internal = |r: Result<(), Error>| assert_eq!(r.unwrap_err().code, ErrorCode::Internal);
        internal(read_account(b"short").map(drop));
        internal(read_account(&[0, 0, 0, 0, 0, 0, 0, 1, 7]).map(drop));
        internal(read_account(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff]).map(drop));
        internal(read_entry(&[2; 40]).map(drop));
        internal(read_entry(&[0; 20]).map(drop));
        internal(read_queue_value(&[1, 2]).map(drop));
        internal(read_high_water(&[0; 9]).map(drop));
        internal(read_session(&[0; 39]).map(drop));
        internal(read_session(&[0; 40]).map(drop));
        let mut bad_stamp = session_value(&[1; 32], 5, None, None);
        bad_stamp[41] = 7;
        internal(read_session(&bad_stamp).map(drop));
        internal(read_account(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 0]).map(drop));
        let mut bad_user = session_value(&[1; 32], 5, Some("bob"), Some(1));
        bad_user.push(b'/');
        internal(read_session(&bad_user).map(drop));
        internal(read_roster(&[]).map(drop));
        internal(expiry_item(b"x/short").map(drop));
        internal(queue_seq(b"q/short").map(drop));
        internal(account_user(b"a/Not Valid").map(drop));
    }
}
