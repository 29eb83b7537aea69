//! Test fixture for `siren-plugin-native`: a library that claims Siren native ABI 2, which this
//! host does not speak. It exports nothing else, so the loader's error shows that the version is
//! checked before any other symbol is looked up.

// `#[unsafe(no_mangle)]` is unsafe code; the workspace forbids it, this crate's Cargo.toml only
// denies it, and this one export needs it.
#![allow(unsafe_code)]

/// Claims an ABI version from the future.
#[unsafe(no_mangle)]
pub extern "C" fn siren_plugin_abi_version() -> u32 {
    2
}
