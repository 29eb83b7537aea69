//! Message filter plugins (world `filter-plugin`): a decision on every routed message, from
//! its routing metadata only (never a payload).

use crate::Config;

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

crate::plugin_world! {
    trait: MessageFilter,
    world: "filter-plugin",
    export_macro_name: "__export_message_filter_world",
    default_bindings_module: "siren_plugin_sdk::filter::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_message_filter!`].",
}

/// Exports `$plugin` (a type implementing [`MessageFilter`]) as this component's message filter.
#[macro_export]
macro_rules! export_message_filter {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::filter::Glue<$plugin>;
        $crate::filter::wit::__export_message_filter_world!(__SirenPluginGlue with_types_in $crate::filter::wit);
    };
}
