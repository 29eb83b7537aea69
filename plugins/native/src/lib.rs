//! Native Siren plugins: shared libraries with a small, versioned C ABI, opened with
//! [`libloading`] and never unloaded.
//!
//! ABI 1 (see [`abi`] and `siren_plugin.h` beside this crate's `Cargo.toml`, which documents the
//! ownership and threading rules) defines one kind of plugin: a credential verifier, which
//! [`load`] turns into a [`NativeCredentials`] implementing
//! [`CredentialBackend`](siren_api::auth::CredentialBackend), the backend behind the password
//! mechanism.
//!
//! # Loading
//!
//! As in proxy-wasm, the version is the first thing looked at: [`load`] resolves and calls
//! `siren_plugin_abi_version` before resolving any other symbol, and refuses a library that
//! lacks it or answers another version (`… implements Siren native ABI 2; this server speaks
//! 1`). Then every required symbol is resolved (a missing one is named in the error), the
//! plugin's name is read and `siren_plugin_init` gets the configuration as `key=value\n` lines.
//! Every error names the library's path. The library is opened with `RTLD_NOW`, so an
//! unresolved dependency fails the load instead of a later login, and it is leaked on purpose:
//! a native library is never unloaded (unloading code that may still have threads, TLS
//! destructors or callbacks registered is a classic source of crashes).
//!
//! # Why plugin calls run on tokio's blocking pool
//!
//! [`CredentialBackend`](siren_api::auth::CredentialBackend) is async but the ABI is a plain
//! synchronous C call. Realistic native verifiers block: PAM conversations, a C LDAP or RADIUS
//! client, bcrypt or argon2 hashing take from milliseconds to seconds. Called directly, such a
//! call would stall every session sharing the executor thread (sirend runs on few threads), so
//! each call runs under `tokio::task::spawn_blocking` and the future only waits for it. tokio
//! is already the host's runtime, so the dependency costs nothing. Outside a tokio runtime (a
//! synchronous tool) the call is made directly.
//!
//! # Safety
//!
//! Loading a native plugin runs its code in the server's process with the server's rights:
//! only configure libraries you trust as much as `sirend` itself. [`load`] refuses a
//! world-writable library file. Everything unsafe in this crate is the FFI itself, in small
//! blocks, each with its `SAFETY:` argument; what the plugin must uphold is the contract in
//! `siren_plugin.h`.

// Calling into a shared library is unsafe by nature; the workspace forbids `unsafe_code`, this
// crate's Cargo.toml only denies it, and it is allowed here for the FFI. Every `unsafe` block is
// small and carries a `SAFETY:` comment.
#![allow(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod abi;

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use async_trait::async_trait;
use libloading::Library;
use serde::Deserialize;
use siren_api::auth::CredentialBackend;
use siren_api::registry::Origin;
use siren_api::{Error, ErrorCode, Username};
use zeroize::Zeroizing;

use crate::abi::{
    ABI_VERSION, AbiVersionFn, ERR_UNAVAILABLE, ERROR_CAPACITY, FreeFn, InitFn, MAX_NAME_LEN, NO,
    NameFn, SYM_ABI_VERSION, SYM_FREE, SYM_INIT, SYM_NAME, SYM_USER_EXISTS, SYM_VERIFY,
    UserExistsFn, VerifyFn, YES,
};

/// One native plugin entry of the server's configuration, e.g.
///
/// ```toml
/// [[plugins.native]]
/// path = "plugins/libsiren_native_sample_auth.so"
/// config = { users = "alice:correct horse,bob:battery staple" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativePluginConfig {
    /// The shared library; a relative path is relative to the `base_dir` given to [`load`]
    /// (the configuration file's directory).
    pub path: PathBuf,
    /// The plugin's own settings, handed to `siren_plugin_init` as `key=value\n` lines sorted
    /// by key. Keys must be non-empty without `=`; neither may contain CR, LF or NUL.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Loads the native plugin `config.path` (relative to `base_dir`), checks its ABI version,
/// resolves its symbols and initialises it with `config.config`.
///
/// Every error has [`ErrorCode::Internal`] and a message naming the library's path and what is
/// wrong (a missing file, a foreign ABI version, a missing symbol, the plugin's own reason for
/// refusing its configuration).
pub fn load(config: &NativePluginConfig, base_dir: &Path) -> Result<NativeCredentials, Error> {
    let path = base_dir.join(&config.path);
    let fail = |what: String| Error::new(ErrorCode::Internal, what);
    let shown = path.display().to_string();

    let config_lines =
        encode_config(&config.config).map_err(|e| fail(format!("native plugin {shown}: {e}")))?;
    check_file(&path).map_err(|e| fail(format!("native plugin {shown}: {e}")))?;
    let library =
        open(&path).map_err(|e| fail(format!("cannot load native plugin {shown}: {e}")))?;

    // 1. The ABI version, before anything else.
    let abi_version: AbiVersionFn = symbol(library, SYM_ABI_VERSION).map_err(|e| {
        fail(format!(
            "{shown} does not export `{SYM_ABI_VERSION}`, so it is not a Siren native plugin \
             (a Rust plugin needs crate-type = [\"cdylib\"] and #[unsafe(no_mangle)]): {e}"
        ))
    })?;
    // SAFETY: the symbol has the type the ABI gives `siren_plugin_abi_version` (every ABI
    // version keeps this one function unchanged, precisely so that it can be called first); it
    // takes nothing and points into a library that stays loaded.
    let version = unsafe { abi_version() };
    if version != ABI_VERSION {
        return Err(fail(format!(
            "{shown} implements Siren native ABI {version}; this server speaks {ABI_VERSION} \
             (rebuild the plugin against this server's siren_plugin.h)"
        )));
    }

    // 2. Every required symbol (and the optional ones that exist).
    let required = |name: &'static str| {
        let shown = &shown;
        move |e: String| {
            fail(format!(
                "{shown} does not export `{name}`, required by Siren native ABI {ABI_VERSION}: {e}"
            ))
        }
    };
    let name_fn: NameFn = symbol(library, SYM_NAME).map_err(required(SYM_NAME))?;
    let init: InitFn = symbol(library, SYM_INIT).map_err(required(SYM_INIT))?;
    let verify: VerifyFn = symbol(library, SYM_VERIFY).map_err(required(SYM_VERIFY))?;
    let user_exists: UserExistsFn =
        symbol(library, SYM_USER_EXISTS).map_err(required(SYM_USER_EXISTS))?;
    let free: Option<FreeFn> = symbol(library, SYM_FREE).ok();

    // 3. Its name.
    // SAFETY: `siren_plugin_name` has this type under ABI 1 (checked above), takes nothing and
    // returns a pointer the plugin owns; it is only read below, after a null check.
    let name_ptr = unsafe { name_fn() };
    let name = plugin_name(name_ptr).map_err(|e| fail(format!("{shown}: `{SYM_NAME}` {e}")))?;

    // 4. Its context.
    let mut error = [0 as c_char; ERROR_CAPACITY];
    // SAFETY: `siren_plugin_init` has this type under ABI 1. `config_lines` is `len` bytes
    // followed by a NUL, and `error` is a zeroed writable buffer of `ERROR_CAPACITY` bytes; both
    // outlive the call, which borrows them only for its duration.
    let ctx = unsafe {
        init(
            config_lines.as_ptr(),
            config_lines.len().saturating_sub(1),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    let Some(ctx) = NonNull::new(ctx) else {
        let reason = error_text(&error);
        let reason = if reason.is_empty() {
            "no reason given".to_owned()
        } else {
            reason
        };
        return Err(fail(format!(
            "native plugin {name} ({shown}) refused its configuration: {reason}"
        )));
    };

    Ok(NativeCredentials {
        inner: Arc::new(Instance {
            name,
            path,
            ctx: PluginContext(ctx),
            verify,
            user_exists,
            free,
        }),
    })
}

/// A credential verifier from a native plugin: the
/// [`CredentialBackend`](siren_api::auth::CredentialBackend) behind the password mechanism.
///
/// Cheap to share (`Arc` inside). When the last clone is dropped and no call is running, the
/// plugin's context is handed to `siren_plugin_free` if the plugin exports it; the library
/// itself stays loaded.
#[derive(Clone)]
pub struct NativeCredentials {
    inner: Arc<Instance>,
}

impl NativeCredentials {
    /// The name the plugin gives itself (`siren_plugin_name`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The native ABI version the plugin implements (always [`abi::ABI_VERSION`] once loaded).
    pub fn abi_version(&self) -> u32 {
        ABI_VERSION
    }

    /// The library file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Where it comes from, for the host's registry and `sirend plugins list`
    /// (`/path/libfoo.so (interface native-abi-1)`).
    pub fn origin(&self) -> Origin {
        Origin::Plugin {
            path: self.inner.path.display().to_string(),
            interface: format!("native-abi-{ABI_VERSION}"),
        }
    }

    /// Runs one plugin call on tokio's blocking pool (or directly, outside a runtime).
    async fn call(
        &self,
        function: &'static str,
        call: impl FnOnce(&Instance) -> i32 + Send + 'static,
    ) -> Result<bool, Error> {
        let inner = Arc::clone(&self.inner);
        let code = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(move || call(&inner))
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("native plugin {}: `{function}` failed: {e}", self.name()),
                    )
                })?,
            Err(_) => call(&inner),
        };
        self.inner.answer(function, code)
    }
}

impl fmt::Debug for NativeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeCredentials")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("abi_version", &ABI_VERSION)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CredentialBackend for NativeCredentials {
    async fn verify(&self, user: &Username, password: &str) -> Result<bool, Error> {
        // The ABI promises NUL-free strings, so that C plugins may use them as C strings; a
        // password with a NUL inside could otherwise be cut short by such a plugin and match a
        // prefix of the real one.
        if password.as_bytes().contains(&0) {
            return Ok(false);
        }
        let user = nul_terminated(user.as_str().as_bytes());
        let password = Zeroizing::new(nul_terminated(password.as_bytes()));
        self.call(SYM_VERIFY, move |plugin| {
            // SAFETY: `verify` is `siren_plugin_verify` of a loaded ABI 1 library; `ctx` is the
            // context its `siren_plugin_init` returned (alive until `Instance` drops, and
            // `plugin` keeps it alive); both strings are NUL-terminated buffers passed with
            // their length without the NUL, alive for the whole call. The ABI makes the
            // function thread-safe.
            unsafe {
                (plugin.verify)(
                    plugin.ctx.0.as_ptr(),
                    user.as_ptr(),
                    user.len().saturating_sub(1),
                    password.as_ptr(),
                    password.len().saturating_sub(1),
                )
            }
        })
        .await
    }

    async fn user_exists(&self, user: &Username) -> Result<bool, Error> {
        let user = nul_terminated(user.as_str().as_bytes());
        self.call(SYM_USER_EXISTS, move |plugin| {
            // SAFETY: as in `verify`: the ABI 1 function with its own context and a
            // NUL-terminated buffer passed with its length, alive for the whole call.
            unsafe {
                (plugin.user_exists)(
                    plugin.ctx.0.as_ptr(),
                    user.as_ptr(),
                    user.len().saturating_sub(1),
                )
            }
        })
        .await
    }
}

/// A loaded, initialised plugin.
struct Instance {
    name: String,
    path: PathBuf,
    ctx: PluginContext,
    verify: VerifyFn,
    user_exists: UserExistsFn,
    free: Option<FreeFn>,
}

impl Instance {
    /// Interprets a result code of `function`: only [`YES`] is yes, and anything outside the
    /// ABI's codes is an error, so a confused plugin fails closed.
    fn answer(&self, function: &str, code: i32) -> Result<bool, Error> {
        match code {
            YES => Ok(true),
            NO => Ok(false),
            ERR_UNAVAILABLE => Err(Error::new(
                ErrorCode::Unavailable,
                format!(
                    "native plugin {}: its backend is unavailable (`{function}` returned {code})",
                    self.name
                ),
            )),
            code if code < 0 => Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "native plugin {}: `{function}` reported an error ({code})",
                    self.name
                ),
            )),
            code => Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "native plugin {}: `{function}` returned {code}, which Siren native ABI \
                     {ABI_VERSION} does not define",
                    self.name
                ),
            )),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: `free` is the plugin's `siren_plugin_free` and `ctx` came from its
            // `siren_plugin_init`. This is the last use of `ctx`: every call holds an
            // `Arc<Instance>`, so none is running, and none can start.
            unsafe { free(self.ctx.0.as_ptr()) }
        }
    }
}

/// The plugin's context pointer.
struct PluginContext(NonNull<c_void>);

// SAFETY: the host never touches the pointee; it only passes the pointer back to the plugin's
// functions, which the ABI (siren_plugin.h, "Threads") requires to be callable from any thread,
// concurrently, with the same context.
unsafe impl Send for PluginContext {}
// SAFETY: as for `Send`: shared use is concurrent calls, which the ABI requires plugins to allow.
unsafe impl Sync for PluginContext {}

/// Checks that `path` is a regular file that not everyone may replace.
fn check_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        _ => format!("cannot read it: {e}"),
    })?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o002 != 0 {
            return Err(
                "the file is world-writable, so anyone could run code in the server; \
                 refusing to load it (chmod o-w)"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// Opens the library (binding every symbol now) and leaks it: it is never unloaded.
fn open(path: &Path) -> Result<&'static Library, libloading::Error> {
    #[cfg(unix)]
    let library = {
        use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: opening a library runs its initialisers; trusting them is the operator's
        // decision in configuring it (see the crate docs). The path names a file (it is joined
        // to a directory and was checked to exist), so no search path is involved.
        Library::from(unsafe { UnixLibrary::open(Some(path), RTLD_NOW | RTLD_LOCAL) }?)
    };
    #[cfg(not(unix))]
    // SAFETY: as above.
    let library = unsafe { Library::new(path) }?;
    Ok(Box::leak(Box::new(library)))
}

/// Resolves the function `name`, whose type under ABI 1 must be `F` (a function pointer).
/// A symbol that is absent or null is an error.
fn symbol<F: Copy>(library: &'static Library, name: &str) -> Result<F, String> {
    // SAFETY: every caller names `F` as the ABI's type for `name` (see `abi`). Reading it as
    // `Option<F>` makes a null symbol `None` instead of an invalid function pointer (the niche
    // of function pointers; libloading also checks the sizes match). The library is never
    // unloaded, so the pointer stays valid after the `Symbol` is gone.
    let symbol = unsafe { library.get::<Option<F>>(name.as_bytes()) }.map_err(|e| e.to_string())?;
    (*symbol).ok_or_else(|| "the symbol is null".to_owned())
}

/// Validates the name `siren_plugin_name` returned.
fn plugin_name(ptr: *const c_char) -> Result<String, String> {
    if ptr.is_null() {
        return Err("returned NULL".to_owned());
    }
    // SAFETY: the ABI makes the result a NUL-terminated string owned by the plugin and valid
    // while the library is loaded (forever); it is copied at once.
    let name = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    let ok =
        !name.is_empty() && name.len() <= MAX_NAME_LEN && name.iter().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(format!(
            "returned {:?}; a plugin name is 1 to {MAX_NAME_LEN} printable ASCII characters \
             without spaces",
            String::from_utf8_lossy(&name[..name.len().min(MAX_NAME_LEN * 2)])
        ));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The text a failed `siren_plugin_init` left in its error buffer (up to the first NUL).
fn error_text(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// `key=value\n` lines, sorted by key, followed by a NUL byte that is not part of them.
fn encode_config(config: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    let bad = |s: &str| s.contains(['\r', '\n', '\0']);
    let mut out = Vec::new();
    for (key, value) in config {
        if key.is_empty() || key.contains('=') || bad(key) {
            return Err(format!(
                "config key {key:?} must be non-empty, without '=', CR, LF or NUL"
            ));
        }
        if bad(value) {
            return Err(format!(
                "config value of {key:?} must not contain CR, LF or NUL"
            ));
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(0);
    Ok(out)
}

/// A copy of `bytes` followed by a NUL, allocated once (so that a password is never left behind
/// in a reallocated buffer).
fn nul_terminated(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.extend_from_slice(bytes);
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_sorted_lines_with_a_hidden_nul() {
        let mut c = BTreeMap::new();
        c.insert("users".to_owned(), "alice:a=b".to_owned());
        c.insert("mode".to_owned(), String::new());
        assert_eq!(encode_config(&c).unwrap(), b"mode=\nusers=alice:a=b\n\0");
        assert_eq!(encode_config(&BTreeMap::new()).unwrap(), b"\0");
    }

    #[test]
    fn config_refuses_what_the_line_format_cannot_carry() {
        for (k, v) in [
            ("", "x"),
            ("a=b", "x"),
            ("a\nb", "x"),
            ("a", "x\ny"),
            ("a", "x\0"),
        ] {
            let c = BTreeMap::from([(k.to_owned(), v.to_owned())]);
            assert!(encode_config(&c).is_err(), "{k:?}={v:?} accepted");
        }
    }

    #[test]
    fn only_one_means_yes() {
        let instance = Instance {
            name: "t".to_owned(),
            path: PathBuf::from("/t.so"),
            ctx: PluginContext(NonNull::dangling()),
            verify: dummy_verify,
            user_exists: dummy_exists,
            free: None,
        };
        assert_eq!(instance.answer(SYM_VERIFY, 1), Ok(true));
        assert_eq!(instance.answer(SYM_VERIFY, 0), Ok(false));
        assert_eq!(
            instance.answer(SYM_VERIFY, -1).unwrap_err().code,
            ErrorCode::Unavailable
        );
        for code in [2, 0x100, i32::MAX, -2, -3, i32::MIN] {
            let err = instance.answer(SYM_VERIFY, code).unwrap_err();
            assert_eq!(err.code, ErrorCode::Internal, "{code}");
        }
    }

    unsafe extern "C" fn dummy_verify(
        _: *mut c_void,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> i32 {
        0
    }

    unsafe extern "C" fn dummy_exists(_: *mut c_void, _: *const u8, _: usize) -> i32 {
        0
    }

    #[test]
    fn error_text_stops_at_the_nul() {
        let mut buf = [0 as c_char; 8];
        for (i, b) in b"bad\0xyz".iter().enumerate() {
            buf[i] = *b as c_char;
        }
        assert_eq!(error_text(&buf), "bad");
        let full = [b'x' as c_char; 8];
        assert_eq!(error_text(&full), "xxxxxxxx");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(plugin_name(c"pam-auth".as_ptr()).unwrap(), "pam-auth");
        assert!(plugin_name(std::ptr::null()).is_err());
        assert!(plugin_name(c"".as_ptr()).is_err());
        assert!(plugin_name(c"two words".as_ptr()).is_err());
    }
}
