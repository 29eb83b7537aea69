//! The configuration of one wasm plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The default memory limit of a plugin instance, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 64;
/// The default CPU deadline of one call into a plugin, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 100;
/// The largest memory limit accepted, in MiB (a wasm32 memory cannot exceed 4 GiB).
pub const MAX_MEMORY_LIMIT_MIB: u32 = 4096;
/// The longest deadline accepted, in milliseconds.
pub const MAX_DEADLINE_MS: u64 = 60_000;

/// How to load and confine one wasm component plugin.
///
/// In the server's TOML configuration:
///
/// ```toml
/// path = "/usr/lib/siren/plugins/federation-allowlist.wasm"
/// memory_limit_mib = 64   # default 64
/// deadline_ms = 100       # default 100
/// [config]                # handed to the plugin's `init`, as strings
/// peers = "beta.test, gamma.test"
/// ```
///
/// Unknown keys are refused, so a misspelt limit is not silently ignored. There is no key that
/// grants WASI, a filesystem, the network or a clock: plugins get none of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmPluginConfig {
    /// The `.wasm` component file.
    pub path: PathBuf,
    /// The most linear memory one instance may use, in MiB (1 to 4096).
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u32,
    /// The most wall-clock time one call may run, in milliseconds (1 to 60000), enforced by
    /// epoch interruption; a call that runs longer fails.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Settings handed to the plugin's `init`, sorted by key.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_memory_limit_mib() -> u32 {
    DEFAULT_MEMORY_LIMIT_MIB
}

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

impl WasmPluginConfig {
    /// The plugin at `path` with the default limits and no settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        WasmPluginConfig {
            path: path.into(),
            memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
            deadline_ms: DEFAULT_DEADLINE_MS,
            config: BTreeMap::new(),
        }
    }

    /// Adds one setting for the plugin's `init`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Sets the memory limit (MiB) and the per-call deadline (milliseconds).
    pub fn with_limits(mut self, memory_limit_mib: u32, deadline_ms: u64) -> Self {
        self.memory_limit_mib = memory_limit_mib;
        self.deadline_ms = deadline_ms;
        self
    }

    /// Checks the limits; the error says which key is out of range.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=MAX_MEMORY_LIMIT_MIB).contains(&self.memory_limit_mib) {
            return Err(format!(
                "memory_limit_mib = {} is out of range (1 to {MAX_MEMORY_LIMIT_MIB})",
                self.memory_limit_mib
            ));
        }
        if !(1..=MAX_DEADLINE_MS).contains(&self.deadline_ms) {
            return Err(format!(
                "deadline_ms = {} is out of range (1 to {MAX_DEADLINE_MS})",
                self.deadline_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: WasmPluginConfig = toml::from_str("path = \"a.wasm\"").unwrap();
        assert_eq!(c, WasmPluginConfig::new("a.wasm"));
        let c: WasmPluginConfig = toml::from_str(
            "path = \"a.wasm\"\nmemory_limit_mib = 8\ndeadline_ms = 5\n[config]\npeers = \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            c,
            WasmPluginConfig::new("a.wasm")
                .with("peers", "x")
                .with_limits(8, 5)
        );
        let err = toml::from_str::<WasmPluginConfig>("path = \"a.wasm\"\nwasi = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `wasi`"), "{err}");
        assert!(
            WasmPluginConfig::new("a")
                .with_limits(0, 5)
                .check()
                .is_err()
        );
        assert!(
            WasmPluginConfig::new("a")
                .with_limits(1, 0)
                .check()
                .is_err()
        );
        assert!(
            WasmPluginConfig::new("a")
                .with_limits(4096, 60_000)
                .check()
                .is_ok()
        );
    }
}
