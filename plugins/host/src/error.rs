//! Errors of loading and calling wasm plugins. Every message names the plugin.

use std::path::PathBuf;

use siren_api::{Error, ErrorCode};

/// What went wrong with a wasm plugin, at load or in a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The wasm engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The configuration is out of range.
    #[error("plugin {name}: {message}")]
    Config {
        /// The plugin.
        name: String,
        /// Which key is wrong and why.
        message: String,
    },
    /// The file could not be read.
    #[error("plugin {name}: cannot read {}: {message}", path.display())]
    Read {
        /// The plugin.
        name: String,
        /// The file.
        path: PathBuf,
        /// The system's error.
        message: String,
    },
    /// The file is not a WebAssembly component this host can run.
    #[error("plugin {name}: {} is not a valid WebAssembly component: {message}", path.display())]
    Invalid {
        /// The plugin.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The plugin implements another version of the interface.
    #[error(
        "plugin {name} ({}) implements siren:plugin@{found}; this server speaks {expected}",
        path.display()
    )]
    Version {
        /// The plugin.
        name: String,
        /// The file.
        path: PathBuf,
        /// The version the plugin implements.
        found: String,
        /// The version this host speaks.
        expected: String,
    },
    /// The component is valid but not a plugin of the kind asked for, or it asks for imports
    /// this host does not give.
    #[error("plugin {name} ({}): {message}", path.display())]
    Mismatch {
        /// The plugin.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is missing or extra.
        message: String,
    },
    /// The plugin's `init` refused its configuration.
    #[error("plugin {name}: init refused the configuration: {message}")]
    Init {
        /// The plugin.
        name: String,
        /// The plugin's explanation.
        message: String,
    },
    /// A call ran past its deadline and was interrupted.
    #[error("plugin {name}: call exceeded its {deadline_ms} ms deadline")]
    Deadline {
        /// The plugin.
        name: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// A call tried to grow memory beyond the limit.
    #[error("plugin {name}: call exceeded its memory limit of {limit_mib} MiB")]
    Memory {
        /// The plugin.
        name: String,
        /// The limit.
        limit_mib: u32,
    },
    /// The plugin trapped (a panic, an out-of-bounds access, `unreachable`).
    #[error("plugin {name}: trapped: {message}")]
    Trap {
        /// The plugin.
        name: String,
        /// The trap, with the wasm backtrace when there is one.
        message: String,
    },
    /// The plugin answered with an error of its own.
    #[error("plugin {name}: {message}")]
    Guest {
        /// The plugin.
        name: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin answered with something the contract does not allow.
    #[error("plugin {name}: broke the interface contract: {message}")]
    Contract {
        /// The plugin.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The plugin trapped earlier and, as a stateful plugin (a KV engine), is not restarted.
    #[error(
        "plugin {name}: out of service since an earlier failure ({message}); restart the server"
    )]
    Dead {
        /// The plugin.
        name: String,
        /// The failure that stopped it.
        message: String,
    },
}

impl From<PluginError> for Error {
    fn from(e: PluginError) -> Self {
        let code = match e {
            PluginError::Engine(_)
            | PluginError::Config { .. }
            | PluginError::Read { .. }
            | PluginError::Invalid { .. }
            | PluginError::Version { .. }
            | PluginError::Mismatch { .. }
            | PluginError::Init { .. }
            | PluginError::Contract { .. } => ErrorCode::Internal,
            _ => ErrorCode::Unavailable,
        };
        Error::new(code, e.to_string())
    }
}
