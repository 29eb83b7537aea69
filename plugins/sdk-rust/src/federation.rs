//! Federation policy plugins (world `federation-plugin`): which peer servers this server talks
//! to, asked in both directions.

use crate::{Config, Slot};

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

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "federation-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_federation_policy_world",
        default_bindings_module: "siren_plugin_sdk::federation::wit",
        runtime_path: "siren_plugin_sdk::__rt::wit_bindgen::rt",
    });
}

std::thread_local! {
    static PLUGIN: Slot<dyn FederationPolicy> = const { Slot::new() };
}

/// Connects a plugin type to the generated bindings; use [`crate::export_federation_policy!`].
#[doc(hidden)]
pub struct Glue<T>(core::marker::PhantomData<T>);

impl<T: FederationPolicy> wit::Guest for Glue<T> {
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

/// Exports `$plugin` (a type implementing [`FederationPolicy`]) as this component's federation policy.
#[macro_export]
macro_rules! export_federation_policy {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::federation::Glue<$plugin>;
        $crate::federation::wit::__export_federation_policy_world!(__SirenPluginGlue with_types_in $crate::federation::wit);
    };
}
