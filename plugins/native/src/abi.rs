//! The Siren native plugin ABI, version 1, as Rust types: symbol names, function signatures and
//! result codes. `siren_plugin.h` (beside this crate's `Cargo.toml`) is the C description of the
//! same contract, with the ownership and threading rules; keep the two in step.

use std::ffi::{c_char, c_void};

/// The native ABI version this host speaks. A plugin must return exactly this from
/// `siren_plugin_abi_version`.
///
/// Bump it for any change a built plugin could notice: a signature, a meaning, a required
/// symbol. Adding an *optional* symbol that old plugins simply lack does not need a bump.
pub const ABI_VERSION: u32 = 1;

/// `siren_plugin_verify` / `siren_plugin_user_exists`: yes.
pub const YES: i32 = 1;
/// `siren_plugin_verify` / `siren_plugin_user_exists`: no.
pub const NO: i32 = 0;
/// The plugin's own backend is unavailable (maps to [`siren_api::ErrorCode::Unavailable`]).
pub const ERR_UNAVAILABLE: i32 = -1;
/// Any other failure inside the plugin, such as a caught panic (maps to
/// [`siren_api::ErrorCode::Internal`], as does every other negative value).
pub const ERR_INTERNAL: i32 = -2;

/// The size of the error buffer handed to `siren_plugin_init`, terminating NUL included.
pub const ERROR_CAPACITY: usize = 512;

/// The longest plugin name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Symbol: `uint32_t siren_plugin_abi_version(void)`. Resolved and called before anything else.
pub const SYM_ABI_VERSION: &str = "siren_plugin_abi_version";
/// Symbol: `const char *siren_plugin_name(void)`.
pub const SYM_NAME: &str = "siren_plugin_name";
/// Symbol: `void *siren_plugin_init(const uint8_t *config, size_t config_len, char *error,
/// size_t error_capacity)`.
pub const SYM_INIT: &str = "siren_plugin_init";
/// Symbol: `int32_t siren_plugin_verify(void *ctx, const uint8_t *user, size_t user_len,
/// const uint8_t *password, size_t password_len)`.
pub const SYM_VERIFY: &str = "siren_plugin_verify";
/// Symbol: `int32_t siren_plugin_user_exists(void *ctx, const uint8_t *user, size_t user_len)`.
pub const SYM_USER_EXISTS: &str = "siren_plugin_user_exists";
/// Optional symbol: `void siren_plugin_free(void *ctx)`.
pub const SYM_FREE: &str = "siren_plugin_free";

/// `siren_plugin_abi_version`.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// `siren_plugin_name`.
pub type NameFn = unsafe extern "C" fn() -> *const c_char;
/// `siren_plugin_init`.
pub type InitFn = unsafe extern "C" fn(
    config: *const u8,
    config_len: usize,
    error: *mut c_char,
    error_capacity: usize,
) -> *mut c_void;
/// `siren_plugin_verify`.
pub type VerifyFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    user: *const u8,
    user_len: usize,
    password: *const u8,
    password_len: usize,
) -> i32;
/// `siren_plugin_user_exists`.
pub type UserExistsFn =
    unsafe extern "C" fn(ctx: *mut c_void, user: *const u8, user_len: usize) -> i32;
/// `siren_plugin_free`.
pub type FreeFn = unsafe extern "C" fn(ctx: *mut c_void);
