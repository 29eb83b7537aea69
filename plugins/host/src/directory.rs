//! [`WasmDirectoryHook`]: a directory event hook plugin as a [`DirectoryHook`].

use std::sync::Arc;

use siren_api::hooks::{DirectoryEvent, DirectoryHook};

use crate::bindings::directory::exports::siren::plugin::directory_hook as wit;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{DirectoryKind, Plugin, WasmRuntime};

/// A wasm directory hook: observes device additions and revocations. Its failures are logged;
/// they never undo the change.
pub struct WasmDirectoryHook {
    plugin: Arc<Plugin<DirectoryKind>>,
}

impl WasmRuntime {
    /// Loads a directory hook plugin (world `directory-plugin`).
    pub fn directory_hook(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmDirectoryHook, PluginError> {
        Ok(WasmDirectoryHook {
            plugin: self.load(name, config)?,
        })
    }
}

impl WasmDirectoryHook {
    /// Tells the plugin about the event; the error if the plugin failed.
    pub fn try_event(&self, ev: &DirectoryEvent) -> Result<(), PluginError> {
        let event = match ev {
            DirectoryEvent::DeviceAdded { uid, device } => {
                wit::DirectoryEvent::DeviceAdded(wit::DeviceChange {
                    uid: uid.to_string(),
                    device: device.to_vec(),
                })
            }
            DirectoryEvent::DeviceRevoked { uid, device } => {
                wit::DirectoryEvent::DeviceRevoked(wit::DeviceChange {
                    uid: uid.to_string(),
                    device: device.to_vec(),
                })
            }
            // A newer event this interface version cannot express: nothing to tell.
            _ => return Ok(()),
        };
        self.plugin.run("on-event", |b, store| {
            b.siren_plugin_directory_hook().call_on_event(store, &event)
        })
    }
}

impl DirectoryHook for WasmDirectoryHook {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn event(&self, ev: &DirectoryEvent) {
        if let Err(e) = self.try_event(ev) {
            tracing::warn!("directory hook failed: {e}");
        }
    }
}
