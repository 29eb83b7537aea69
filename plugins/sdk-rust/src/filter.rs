//! Message filter plugins (world `filter-plugin`): a decision on every routed message, from
//! its routing metadata only (never a payload).

use crate::{Config, Slot};

pub use wit::exports::siren::plugin::message_filter::{FilterDecision, RoutingMeta};

/// A message filter.
pub trait MessageFilter: 'static {
    /// Makes the filter from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Decides about one message. Use `meta.timestamp` for the time (plugins have no clock).
    fn check(&mut self, meta: &RoutingMeta) -> FilterDecision;
}

impl<T: MessageFilter> wit::exports::siren::plugin::message_filter::Guest for Glue<T> {
    fn check(meta: RoutingMeta) -> FilterDecision {
        PLUGIN.with(|slot| slot.with(|p| p.check(&meta)))
    }
}

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "filter-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_message_filter_world",
        default_bindings_module: "siren_plugin_sdk::filter::wit",
        runtime_path: "siren_plugin_sdk::__rt::wit_bindgen::rt",
    });
}

std::thread_local! {
    static PLUGIN: Slot<dyn MessageFilter> = const { Slot::new() };
}

/// Connects a plugin type to the generated bindings; use [`crate::export_message_filter!`].
#[doc(hidden)]
pub struct Glue<T>(core::marker::PhantomData<T>);

impl<T: MessageFilter> wit::Guest for Glue<T> {
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

/// Exports `$plugin` (a type implementing [`MessageFilter`]) as this component's message filter.
#[macro_export]
macro_rules! export_message_filter {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::filter::Glue<$plugin>;
        $crate::filter::wit::__export_message_filter_world!(__SirenPluginGlue with_types_in $crate::filter::wit);
    };
}
