//! Authentication mechanism plugins (world `auth-plugin`): SASL-like exchanges of challenges
//! and responses, one [`Exchange`] per login attempt.

use std::cell::RefCell;

use crate::Config;

use wit::exports::siren::plugin::auth_mechanism as api;
pub use wit::exports::siren::plugin::auth_mechanism::{AuthContext, AuthStep};

/// An authentication mechanism.
pub trait AuthMechanism: 'static {
    /// Makes the mechanism from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// The name offered to clients: upper case, at most 20 characters (`A-Z 0-9 - _`).
    fn name(&self) -> String;

    /// Starts one login attempt.
    fn begin(&mut self, ctx: AuthContext) -> Box<dyn Exchange>;
}

/// One login attempt in progress; dropped when the attempt ends.
pub trait Exchange: 'static {
    /// Processes the client's next response (the first one may be empty). `Err` means the
    /// mechanism could not decide; the login then fails.
    fn step(&mut self, response: &[u8]) -> Result<AuthStep, String>;
}

/// The resource behind an [`Exchange`].
#[doc(hidden)]
pub struct ExchangeBox(RefCell<Box<dyn Exchange>>);

impl api::GuestExchange for ExchangeBox {
    fn step(&self, response: Vec<u8>) -> Result<AuthStep, String> {
        self.0.borrow_mut().step(&response)
    }
}

impl<T: AuthMechanism> api::Guest for Glue<T> {
    type Exchange = ExchangeBox;

    fn name() -> String {
        PLUGIN.with(|slot| slot.with(|p| p.name()))
    }

    fn begin(ctx: AuthContext) -> api::Exchange {
        let exchange = PLUGIN.with(|slot| slot.with(|p| p.begin(ctx)));
        api::Exchange::new(ExchangeBox(RefCell::new(exchange)))
    }
}

crate::plugin_world! {
    trait: AuthMechanism,
    world: "auth-plugin",
    export_macro_name: "__export_auth_mechanism_world",
    default_bindings_module: "siren_plugin_sdk::auth::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_auth_mechanism!`].",
}

/// Exports `$plugin` (a type implementing [`AuthMechanism`]) as this component's auth mechanism.
#[macro_export]
macro_rules! export_auth_mechanism {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::auth::Glue<$plugin>;
        $crate::auth::wit::__export_auth_mechanism_world!(__SirenPluginGlue with_types_in $crate::auth::wit);
    };
}
