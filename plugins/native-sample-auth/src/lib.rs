//! A sample native Siren auth plugin (Siren native ABI 1): a credential verifier whose users
//! and passwords come from its configuration.
//!
//! ```toml
//! [[plugins.native]]
//! path = "libsiren_native_sample_auth.so"
//! config = { users = "alice:correct horse,bob:battery staple" }
//! ```
//!
//! `users` is a comma-separated list of `name:password` entries: the name is trimmed and must
//! be a Siren username (lowercase letters, digits, `.`, `_`, `-`); the password is everything
//! after the first `:`, verbatim (so it cannot contain `,`). Plain-text passwords in a
//! configuration file are for demonstrations and tests only.
//!
//! It shows what every native plugin needs: the exported `extern "C"` functions of
//! `plugins/native/siren_plugin.h`, each wrapped in [`std::panic::catch_unwind`] so that no panic
//! unwinds into the host (a panic becomes `SIREN_PLUGIN_ERR_INTERNAL`), a context that is
//! immutable after `siren_plugin_init` (hence thread-safe), and a constant-time password
//! comparison ([`subtle`]) that also runs for unknown users.
//!
//! It does not depend on any Siren crate: the contract is the C ABI, not a Rust API.

// Exporting C functions (`#[unsafe(no_mangle)]`) and reading the host's raw pointers is unsafe
// code; the workspace forbids it, this crate's Cargo.toml only denies it, and it is allowed here
// for the ABI boundary. Every `unsafe` block is small and carries a `SAFETY:` comment.
#![allow(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use subtle::ConstantTimeEq;

/// The Siren native ABI version this plugin implements (`SIREN_PLUGIN_ABI_VERSION`).
const ABI_VERSION: u32 = 1;
const YES: i32 = 1;
const NO: i32 = 0;
const ERR_INTERNAL: i32 = -2;

/// The plugin's context: built once by `siren_plugin_init`, then only read (so shared use from
/// many threads is safe).
struct Users {
    passwords: BTreeMap<String, Vec<u8>>,
    /// Compared against when the user is unknown, so that an unknown user costs the same time.
    dummy: Vec<u8>,
}

/// Reports the ABI version. Called by the host before anything else.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_abi_version() -> u32 {
    ABI_VERSION
}

/// The plugin's name, a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_name() -> *const c_char {
    c"sample-auth".as_ptr()
}

/// Parses the configuration (`key=value\n` lines) into the context; NULL and a message in
/// `error` if it is wrong.
///
/// # Safety
///
/// `config` points to `config_len` readable bytes and `error` to `error_capacity` writable
/// bytes, for the duration of the call (the host guarantees this; see siren_plugin.h).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siren_plugin_init(
    config: *const u8,
    config_len: usize,
    error: *mut c_char,
    error_capacity: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract above.
    let config = unsafe { bytes(config, config_len) };
    let result = catch_unwind(|| parse_config(config));
    let message = match result {
        Ok(Ok(users)) => return Box::into_raw(Box::new(users)).cast(),
        Ok(Err(message)) => message,
        Err(_) => "sample-auth panicked while reading its configuration".to_owned(),
    };
    // SAFETY: the caller's contract above.
    unsafe { write_error(error, error_capacity, &message) };
    std::ptr::null_mut()
}

/// Whether `password` is `user`'s password: 1 yes, 0 no, -2 on a panic.
///
/// # Safety
///
/// `ctx` was returned by `siren_plugin_init` and not freed; `user` and `password` point to
/// `user_len` and `password_len` readable bytes for the duration of the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siren_plugin_verify(
    ctx: *mut c_void,
    user: *const u8,
    user_len: usize,
    password: *const u8,
    password_len: usize,
) -> i32 {
    // SAFETY: the caller's contract above; `Users` is only ever read through it.
    let users = unsafe { &*ctx.cast::<Users>() };
    // SAFETY: the caller's contract above.
    let (user, password) = unsafe { (bytes(user, user_len), bytes(password, password_len)) };
    catch_unwind(AssertUnwindSafe(|| users.verify(user, password))).unwrap_or(ERR_INTERNAL)
}

/// Whether `user` exists: 1 yes, 0 no, -2 on a panic.
///
/// # Safety
///
/// `ctx` was returned by `siren_plugin_init` and not freed; `user` points to `user_len` readable
/// bytes for the duration of the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siren_plugin_user_exists(
    ctx: *mut c_void,
    user: *const u8,
    user_len: usize,
) -> i32 {
    // SAFETY: the caller's contract above; `Users` is only ever read through it.
    let users = unsafe { &*ctx.cast::<Users>() };
    // SAFETY: the caller's contract above.
    let user = unsafe { bytes(user, user_len) };
    catch_unwind(AssertUnwindSafe(|| {
        let known = std::str::from_utf8(user).is_ok_and(|u| users.passwords.contains_key(u));
        if known { YES } else { NO }
    }))
    .unwrap_or(ERR_INTERNAL)
}

/// Frees the context.
///
/// # Safety
///
/// `ctx` was returned by `siren_plugin_init`, is not used again, and no call is running with it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siren_plugin_free(ctx: *mut c_void) {
    // SAFETY: the caller's contract above: `ctx` is the `Box<Users>` made by
    // `siren_plugin_init`, given back exactly once.
    let users = unsafe { Box::from_raw(ctx.cast::<Users>()) };
    // Dropping a map of strings cannot panic in practice; catch it anyway (nothing may unwind
    // into the host), and leak rather than abort.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(users)));
}

impl Users {
    fn verify(&self, user: &[u8], password: &[u8]) -> i32 {
        let stored = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.passwords.get(u));
        // The comparison runs for unknown users too, against a dummy, and its result only counts
        // for a known user.
        let expected = stored.unwrap_or(&self.dummy);
        let equal = bool::from(expected.as_slice().ct_eq(password));
        if equal && stored.is_some() { YES } else { NO }
    }
}

/// Reads `key=value` lines: one key, `users`.
fn parse_config(config: &[u8]) -> Result<Users, String> {
    let config = std::str::from_utf8(config).map_err(|_| "the configuration is not UTF-8")?;
    let mut users = None;
    for line in config.lines().filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some(("users", list)) => users = Some(parse_users(list)?),
            Some((key, _)) => {
                return Err(format!(
                    "unknown setting {key:?} (sample-auth knows `users`)"
                ));
            }
            None => return Err(format!("malformed configuration line {line:?}")),
        }
    }
    let passwords = users.ok_or("missing setting `users` (\"name:password,...\")")?;
    Ok(Users {
        passwords,
        dummy: b"sample-auth: no such user".to_vec(),
    })
}

/// Parses `name:password,name:password`.
fn parse_users(list: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut users = BTreeMap::new();
    for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
        let Some((name, password)) = entry.split_once(':') else {
            return Err(format!(
                "`users` entry {:?} is not name:password",
                entry.trim()
            ));
        };
        let name = name.trim();
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !valid {
            return Err(format!(
                "`users`: {name:?} is not a Siren username (lowercase letters, digits, '.', '_', '-')"
            ));
        }
        if password.is_empty() {
            return Err(format!("`users`: {name} has an empty password"));
        }
        if users
            .insert(name.to_owned(), password.as_bytes().to_vec())
            .is_some()
        {
            return Err(format!("`users`: {name} is listed twice"));
        }
    }
    if users.is_empty() {
        return Err("`users` lists nobody".to_owned());
    }
    Ok(users)
}

/// The `len` bytes at `ptr` (empty for a null pointer).
///
/// # Safety
///
/// A non-null `ptr` points to `len` readable bytes that outlive the returned slice's use.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: the function's contract.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Writes `message` as a NUL-terminated string into the host's buffer, truncated to fit.
///
/// # Safety
///
/// A non-null `buffer` points to `capacity` writable bytes.
unsafe fn write_error(buffer: *mut c_char, capacity: usize, message: &str) {
    if buffer.is_null() || capacity == 0 {
        return;
    }
    let n = message.len().min(capacity - 1);
    // SAFETY: `n + 1 <= capacity` bytes are written, within the buffer of the contract; the
    // message and the buffer do not overlap (the host owns the buffer).
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), n);
        *buffer.add(n) = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_refuses_bad_entries() {
        let u = parse_config(b"users=alice:pw1, bob:p:w,\n").unwrap();
        assert_eq!(u.passwords["alice"], b"pw1");
        assert_eq!(u.passwords["bob"], b"p:w");
        for bad in [
            &b""[..],
            b"users=\n",
            b"users=alice\n",
            b"users=Alice:x\n",
            b"users=alice:\n",
            b"users=alice:a,alice:b\n",
            b"user=alice:a\n",
            b"nonsense\n",
        ] {
            assert!(
                parse_config(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn verifies_in_constant_time_style() {
        let u = parse_config(b"users=alice:pw1\n").unwrap();
        assert_eq!(u.verify(b"alice", b"pw1"), YES);
        assert_eq!(u.verify(b"alice", b"pw2"), NO);
        assert_eq!(u.verify(b"alice", b"pw1x"), NO);
        assert_eq!(u.verify(b"mallory", b"pw1"), NO);
        assert_eq!(u.verify(b"mallory", &u.dummy), NO);
    }
}
