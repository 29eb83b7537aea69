//! Finding the guests built by `scripts/build-plugins.sh`, and one runtime per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use siren_plugins::{WasmPluginConfig, WasmRuntime};

/// Where `scripts/build-plugins.sh` puts the components: `$SIREN_PLUGIN_DIR`, else
/// `$CARGO_TARGET_DIR/plugins`, else the workspace's `target/plugins`.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIREN_PLUGIN_DIR") {
        return dir.into();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("plugins")
}

/// The path of a built guest; fails the test, saying what to run, if it is missing.
pub fn plugin(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the wasm plugins first with scripts/build-plugins.sh (same \
         CARGO_TARGET_DIR, or point SIREN_PLUGIN_DIR at its output)",
        path.display()
    );
    path
}

/// The configuration of a built guest with default limits.
pub fn config(name: &str) -> WasmPluginConfig {
    WasmPluginConfig::new(plugin(name))
}

/// One runtime (engine + epoch ticker) shared by the tests of a binary.
pub fn runtime() -> &'static WasmRuntime {
    static RUNTIME: OnceLock<WasmRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| WasmRuntime::new().expect("a wasm runtime"))
}
