//! Key-value engine plugins (world `kv-plugin`): a sorted map of bytes from which the server
//! builds every store it needs.

use crate::Config;

pub use wit::exports::siren::plugin::kv_engine::{Durability, KeyRange, KvPair, WriteOp};

/// A sorted key-value engine (keys ordered lexicographically as bytes).
pub trait KvEngine: 'static {
    /// Makes the engine from its configuration; an error refuses the plugin at load.
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// A short description for logs.
    fn describe(&mut self) -> String {
        "wasm KV engine".to_string()
    }

    /// The value of `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;

    /// Up to `limit` entries in `range` (`[start, end)`, empty `end`: unbounded), in key order
    /// or reverse key order.
    fn scan(&mut self, range: &KeyRange, limit: u32, reverse: bool) -> Result<Vec<KvPair>, String>;

    /// Applies the operations atomically, in order.
    fn write(&mut self, ops: Vec<WriteOp>, durability: Durability) -> Result<(), String>;

    /// Makes every earlier write durable.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl<T: KvEngine> wit::exports::siren::plugin::kv_engine::Guest for Glue<T> {
    fn describe() -> String {
        PLUGIN.with(|slot| slot.with(|p| p.describe()))
    }

    fn get(key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        PLUGIN.with(|slot| slot.with(|p| p.get(&key)))
    }

    fn scan(range: KeyRange, limit: u32, reverse: bool) -> Result<Vec<KvPair>, String> {
        PLUGIN.with(|slot| slot.with(|p| p.scan(&range, limit, reverse)))
    }

    fn write(ops: Vec<WriteOp>, durability: Durability) -> Result<(), String> {
        PLUGIN.with(|slot| slot.with(|p| p.write(ops, durability)))
    }

    fn flush() -> Result<(), String> {
        PLUGIN.with(|slot| slot.with(|p| p.flush()))
    }
}

crate::plugin_world! {
    trait: KvEngine,
    world: "kv-plugin",
    export_macro_name: "__export_kv_engine_world",
    default_bindings_module: "siren_plugin_sdk::kv::wit",
    doc: "Connects a plugin type to the generated bindings; use [`crate::export_kv_engine!`].",
}

/// Exports `$plugin` (a type implementing [`KvEngine`]) as this component's KV engine.
#[macro_export]
macro_rules! export_kv_engine {
    ($plugin:ty) => {
        type __SirenPluginGlue = $crate::kv::Glue<$plugin>;
        $crate::kv::wit::__export_kv_engine_world!(__SirenPluginGlue with_types_in $crate::kv::wit);
    };
}
