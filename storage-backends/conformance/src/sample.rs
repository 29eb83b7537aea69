//! Sample values for the checks, and the assertions they share.

use std::fmt::Debug;

use siren_api::storage::{DeviceKey, EntryKind, NewQueueItem, StoredEntry, StoredRoster};
use siren_api::{Error, ErrorCode, Username};

/// The value of a call that must succeed; panics naming the call otherwise.
#[track_caller]
pub(crate) fn ok<T>(result: Result<T, Error>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Panics unless a call failed with `code`.
#[track_caller]
pub(crate) fn refused<T: Debug>(result: Result<T, Error>, code: ErrorCode, what: &str) {
    match result {
        Err(e) if e.code == code => {}
        Err(e) => panic!("{what}: expected a {code} error, got {e}"),
        Ok(value) => panic!("{what}: expected a {code} error, but it succeeded ({value:?})"),
    }
}

/// The value of a spawned task; panics if the task panicked.
#[track_caller]
pub(crate) fn finished<T>(joined: Result<T, tokio::task::JoinError>) -> T {
    match joined {
        Ok(value) => value,
        Err(e) => panic!("a concurrent task failed: {e}"),
    }
}

#[track_caller]
pub(crate) fn user(name: &str) -> Username {
    match Username::parse(name) {
        Ok(user) => user,
        Err(e) => panic!("sample username {name:?}: {e}"),
    }
}

/// A device key that differs from every other `device(n)` in every byte.
pub(crate) fn device(n: u8) -> DeviceKey {
    [n; 32]
}

pub(crate) fn item(device_n: u8, expires: u64, bytes: impl Into<Vec<u8>>) -> NewQueueItem {
    NewQueueItem {
        device: device(device_n),
        expires,
        bytes: bytes.into(),
    }
}

pub(crate) fn entry(seq: u64, bytes: impl Into<Vec<u8>>) -> StoredEntry {
    StoredEntry {
        seq,
        kind: if seq.is_multiple_of(3) {
            EntryKind::Revoke
        } else {
            EntryKind::Add
        },
        device: device((seq % 251) as u8),
        bytes: bytes.into(),
    }
}

pub(crate) fn roster(version: u64, bytes: impl Into<Vec<u8>>) -> StoredRoster {
    StoredRoster {
        version,
        bytes: bytes.into(),
    }
}
