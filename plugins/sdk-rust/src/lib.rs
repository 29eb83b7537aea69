//! Write Siren wasm component plugins in Rust.
//!
//! The crate wraps the bindings of the WIT package `siren:plugin@0.1.0`
//! (`plugins/wit/siren-plugin.wit`) in one small trait per kind of plugin. A plugin is a type
//! that implements the trait and one macro call that exports it:
//!
//! ```no_run
//! use siren_plugin_sdk::Config;
//! use siren_plugin_sdk::federation::{Decision, Direction, FederationPolicy};
//!
//! struct Allowlist(Vec<String>);
//!
//! impl FederationPolicy for Allowlist {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Allowlist(config.list("peers")))
//!     }
//!     fn decide(&mut self, peer: &str, _direction: Direction) -> Decision {
//!         if self.0.iter().any(|p| p == peer) {
//!             Decision::Allow
//!         } else {
//!             Decision::Deny(format!("{peer} is not on the allowlist"))
//!         }
//!     }
//! }
//!
//! siren_plugin_sdk::export_federation_policy!(Allowlist);
//! ```
//!
//! Enable the cargo feature of the kind you build (`auth`, `credentials`, `federation`,
//! `filter`, `directory`, `kv`), make the crate a `cdylib`, build it for
//! `wasm32-unknown-unknown` and turn the module into a component with
//! `wasm-tools component new` (see `plugins/README.md`; `scripts/build-plugins.sh` does all
//! of it).
//!
//! What the SDK does for you: `interface-version` answers [`INTERFACE_VERSION`]; `init` hands
//! your constructor the configuration as a [`Config`] and keeps the value it returns for every
//! later call; a panic hook sends panic messages to the server's log (the call then fails
//! and the server replaces the instance); [`log`] writes to the server's log.
//!
//! Plugins run in a sandbox: no filesystem, network, clock or randomness (no WASI), a memory
//! limit and a deadline per call. State kept in memory lasts as long as the instance.

extern crate self as siren_plugin_sdk;

use std::cell::RefCell;
use std::collections::BTreeMap;

/// The version of the WIT package this SDK implements.
pub const INTERFACE_VERSION: &str = "0.1.0";

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}

/// The part every world's module shares: the generated bindings (`wit`), the plugin value kept
/// between calls, and the world-level exports `interface-version` and `init`.
#[doc(hidden)]
#[macro_export]
macro_rules! plugin_world {
    (
        trait: $trait:ident,
        world: $world:literal,
        export_macro_name: $export:literal,
        default_bindings_module: $module:literal,
        doc: $doc:literal,
    ) => {
        #[doc(hidden)]
        pub mod wit {
            wit_bindgen::generate!({
                world: $world,
                path: "../wit",
                pub_export_macro: true,
                export_macro_name: $export,
                default_bindings_module: $module,
                runtime_path: "siren_plugin_sdk::__rt::wit_bindgen::rt",
            });
        }

        std::thread_local! {
            static PLUGIN: $crate::Slot<dyn $trait> = const { $crate::Slot::new() };
        }

        #[doc = $doc]
        #[doc(hidden)]
        pub struct Glue<T>(core::marker::PhantomData<T>);

        impl<T: $trait> wit::Guest for Glue<T> {
            fn interface_version() -> String {
                $crate::INTERFACE_VERSION.to_string()
            }

            fn init(config: Vec<(String, String)>) -> Result<(), String> {
                $crate::__install_panic_hook();
                let plugin = T::init(&$crate::Config::from_pairs(config))?;
                PLUGIN.with(|slot| slot.set(Box::new(plugin)));
                Ok(())
            }
        }
    };
}

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "credentials")]
pub mod credentials;
#[cfg(feature = "directory")]
pub mod directory;
#[cfg(feature = "federation")]
pub mod federation;
#[cfg(feature = "filter")]
pub mod filter;
#[cfg(feature = "kv")]
pub mod kv;

/// A plugin's settings, from the `[config]` table of its configuration in the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(BTreeMap<String, String>);

impl Config {
    /// The settings from a list of pairs.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Config(pairs.into_iter().collect())
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing setting {key:?}"))
    }

    /// The comma-separated items of `key`, trimmed, empty ones dropped (none if unset).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ToString::to_string)
            .collect()
    }

    /// The value of `key` parsed as `T`, `default` if unset, or an error naming the key.
    pub fn parse<T: core::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: core::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| format!("setting {key:?} = {v:?}: {e}")),
        }
    }

    /// Every setting, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Log levels of [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Worth knowing.
    Info,
    /// For debugging.
    Debug,
    /// Very detailed.
    Trace,
}

macro_rules! host_log {
    ($module:ident, $level:expr, $message:expr) => {{
        use $module::wit::siren::plugin::host::{Level as L, log};
        let level = match $level {
            Level::Error => L::Error,
            Level::Warn => L::Warn,
            Level::Info => L::Info,
            Level::Debug => L::Debug,
            Level::Trace => L::Trace,
        };
        log(level, $message);
    }};
}

/// Writes one line to the server's log, attributed to this plugin (cut at 1024 bytes; at most
/// 64 lines per call). Never log passwords or other secrets.
#[allow(unreachable_code, unused_variables)]
pub fn log(level: Level, message: &str) {
    // Every world imports the same `host` interface: use whichever bindings are compiled in.
    #[cfg(feature = "federation")]
    return host_log!(federation, level, message);
    #[cfg(feature = "auth")]
    return host_log!(auth, level, message);
    #[cfg(feature = "credentials")]
    return host_log!(credentials, level, message);
    #[cfg(feature = "filter")]
    return host_log!(filter, level, message);
    #[cfg(feature = "directory")]
    return host_log!(directory, level, message);
    #[cfg(feature = "kv")]
    return host_log!(kv, level, message);
}

/// Sends panic messages to the server's log; called by every `init`.
#[doc(hidden)]
pub fn __install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log(Level::Error, &format!("plugin panicked: {info}"));
    }));
}

/// Keeps the plugin value between calls, in a `thread_local!` (a wasm instance has one
/// thread).
#[doc(hidden)]
pub struct Slot<T: ?Sized>(RefCell<Option<Box<T>>>);

impl<T: ?Sized> Slot<T> {
    #[doc(hidden)]
    pub const fn new() -> Self {
        Slot(RefCell::new(None))
    }

    #[doc(hidden)]
    pub fn set(&self, value: Box<T>) {
        *self.0.borrow_mut() = Some(value);
    }

    /// Runs `f` on the plugin value; panics (a trap) if `init` has not run, which the host
    /// never lets happen.
    #[doc(hidden)]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.0.borrow_mut();
        match guard.as_deref_mut() {
            Some(value) => f(value),
            None => panic!("plugin called before init"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_helpers() {
        let c = Config::from_pairs(vec![
            ("peers".into(), " a.test, ,b.test ".into()),
            ("limit".into(), "30".into()),
            ("bad".into(), "x".into()),
        ]);
        assert_eq!(c.list("peers"), vec!["a.test", "b.test"]);
        assert!(c.list("missing").is_empty());
        assert_eq!(c.parse("limit", 1u32), Ok(30));
        assert_eq!(c.parse("missing", 7u32), Ok(7));
        assert!(c.parse::<u32>("bad", 1).unwrap_err().contains("\"bad\""));
        assert_eq!(
            c.require("nope"),
            Err("missing setting \"nope\"".to_string())
        );
        assert_eq!(c.iter().count(), 3);
    }
}
