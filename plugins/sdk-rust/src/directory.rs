//! Directory hook plugins (world `directory-plugin`): told when a user's device is added or
//! revoked. Observe only.

use crate::{Config, Slot};

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

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "directory-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_directory_hook_world",
        default_bindings_module: "siren_plugin_sdk::directory::wit",
        runtime_path: "siren_plugin_sdk::__rt::wit_bindgen::rt",
    });
}

std::thread_local! {
    static PLUGIN: Slot<dyn DirectoryHook> = const { Slot::new() };
}

/// Connects a plugin type to the generated bindings; use [`crate::export_directory_hook!`].
#[doc(hidden)]
pub struct Glue<T>(core::marker::PhantomData<T>);

impl<T: DirectoryHook> wit::Guest for Glue<T> {
    fn interface_version() -> String {
        crate::INTERFACE_VERSION.to_string()
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        crate::__install_panic_hook();
        let plugin = T::init(&Config::from_pairs(config))?;
        PLUGIN.with(|slot| slot.set(Box::new(plugin)));
        Ok(())
    }
}

/// Exports `$plugin` (a type implementing [`DirectoryHook`]) as this component's directory hook.
#[macro_export]
macro_rules! export_directory_hook {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::directory::Glue<$plugin>;
        $crate::directory::wit::__export_directory_hook_world!(__SirenPluginGlue with_types_in $crate::directory::wit);
    };
}
