//! Test fixture for `siren-plugin-native`: a library that speaks Siren native ABI 1 but lacks
//! the required `siren_plugin_verify`. Its `siren_plugin_init` refuses to run, so a loader that
//! initialised a plugin before resolving every required symbol would report that instead.

// Exporting C functions (`#[unsafe(no_mangle)]`) is unsafe code; the workspace forbids it, this
// crate's Cargo.toml only denies it, and it is allowed here for the exports.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

/// ABI 1, the host's.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_abi_version() -> u32 {
    1
}

/// The plugin's name.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_name() -> *const c_char {
    c"missing-symbol".as_ptr()
}

/// Never succeeds: the loader must have refused the library before calling it.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_init(
    _config: *const u8,
    _config_len: usize,
    _error: *mut c_char,
    _error_capacity: usize,
) -> *mut c_void {
    std::ptr::null_mut()
}

/// Always "no".
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_user_exists(
    _ctx: *mut c_void,
    _user: *const u8,
    _user_len: usize,
) -> i32 {
    0
}
