//! Federation policy plugins (world `federation-plugin`): which peer servers this server talks
//! to, asked in both directions.

use crate::Config;

pub use wit::exports::siren::plugin::federation_policy::{Decision, Direction};

/// A federation policy.
pub trait FederationPolicy: 'static {
    /// Makes the policy from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Whether this server may talk to `peer` (a DNS name) in `direction`.
    fn decide(&mut self, peer: &str, direction: Direction) -> Decision;
}

impl<T: FederationPolicy> wit::exports::siren::plugin::federation_policy::Guest for Glue<T> {
    fn decide(peer: String, direction: Direction) -> Decision {
        PLUGIN.with(|slot| slot.with(|p| p.decide(&peer, direction)))
    }
}

crate::plugin_world! {
    trait: FederationPolicy,
    world: "federation-plugin",
    export_macro_name: "__export_federation_policy_world",
    default_bindings_module: "siren_plugin_sdk::federation::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_federation_policy!`].",
}

/// Exports `$plugin` (a type implementing [`FederationPolicy`]) as this component's federation policy.
#[macro_export]
macro_rules! export_federation_policy {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::federation::Glue<$plugin>;
        $crate::federation::wit::__export_federation_policy_world!(__SirenPluginGlue with_types_in $crate::federation::wit);
    };
}
