//! Credential backend plugins (world `credentials-plugin`): password checks behind the
//! server's password mechanisms.

use crate::{Config, Slot};

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

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "credentials-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_credentials_world",
        default_bindings_module: "siren_plugin_sdk::credentials::wit",
        runtime_path: "siren_plugin_sdk::__rt::wit_bindgen::rt",
    });
}

std::thread_local! {
    static PLUGIN: Slot<dyn Credentials> = const { Slot::new() };
}

/// Connects a plugin type to the generated bindings; use [`crate::export_credentials!`].
#[doc(hidden)]
pub struct Glue<T>(core::marker::PhantomData<T>);

impl<T: Credentials> wit::Guest for Glue<T> {
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

/// Exports `$plugin` (a type implementing [`Credentials`]) as this component's credential backend.
#[macro_export]
macro_rules! export_credentials {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::credentials::Glue<$plugin>;
        $crate::credentials::wit::__export_credentials_world!(__SirenPluginGlue with_types_in $crate::credentials::wit);
    };
}
