//! Directory hook plugins (world `directory-plugin`): told when a user's device is added or
//! revoked. Observe only.

use crate::Config;

pub use wit::exports::siren::plugin::directory_hook::{DeviceChange, DirectoryEvent};

/// A directory hook.
pub trait DirectoryHook: 'static {
    /// Makes the hook from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Called after the change is stored.
    fn on_event(&mut self, event: DirectoryEvent);
}

impl<T: DirectoryHook> wit::exports::siren::plugin::directory_hook::Guest for Glue<T> {
    fn on_event(event: DirectoryEvent) {
        PLUGIN.with(|slot| slot.with(|p| p.on_event(event)))
    }
}

crate::plugin_world! {
    trait: DirectoryHook,
    world: "directory-plugin",
    export_macro_name: "__export_directory_hook_world",
    default_bindings_module: "siren_plugin_sdk::directory::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_directory_hook!`].",
}

/// Exports `$plugin` (a type implementing [`DirectoryHook`]) as this component's directory hook.
#[macro_export]
macro_rules! export_directory_hook {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::directory::Glue<$plugin>;
        $crate::directory::wit::__export_directory_hook_world!(__SirenPluginGlue with_types_in $crate::directory::wit);
    };
}
