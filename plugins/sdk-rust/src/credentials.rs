//! Credential backend plugins (world `credentials-plugin`): password checks behind the
//! server's password mechanisms.

use crate::Config;

/// A credential backend.
pub trait Credentials: 'static {
    /// Makes the backend from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Whether `password` is `user`'s password. Answer `Ok(false)` for an unknown user, the
    /// same as for a wrong password (and take the same time).
    fn verify(&mut self, user: &str, password: &str) -> Result<bool, String>;

    /// Whether the user exists.
    fn user_exists(&mut self, user: &str) -> Result<bool, String>;
}

impl<T: Credentials> wit::exports::siren::plugin::credentials::Guest for Glue<T> {
    fn verify(user: String, password: String) -> Result<bool, String> {
        PLUGIN.with(|slot| slot.with(|p| p.verify(&user, &password)))
    }

    fn user_exists(user: String) -> Result<bool, String> {
        PLUGIN.with(|slot| slot.with(|p| p.user_exists(&user)))
    }
}

crate::plugin_world! {
    trait: Credentials,
    world: "credentials-plugin",
    export_macro_name: "__export_credentials_world",
    default_bindings_module: "siren_plugin_sdk::credentials::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_credentials!`].",
}

/// Exports `$plugin` (a type implementing [`Credentials`]) as this component's credential backend.
#[macro_export]
macro_rules! export_credentials {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::credentials::Glue<$plugin>;
        $crate::credentials::wit::__export_credentials_world!(__SirenPluginGlue with_types_in $crate::credentials::wit);
    };
}
