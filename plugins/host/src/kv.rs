//! [`WasmKvEngine`]: a key-value engine plugin as a [`KvEngine`], from which the
//! `siren-storage-kv` adapter builds every typed store.

use std::sync::Arc;

use siren_api::Error;
use siren_api::storage::{Durability, KeyRange, KvEngine, KvPair, WriteBatch, WriteOp};

use crate::bindings::kv::exports::siren::plugin::kv_engine as wit;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{KvKind, Plugin, WasmRuntime};

/// A wasm KV engine. Calls are blocking, as [`KvEngine`] expects, and take turns on the one
/// instance (its data lives in that instance). A plugin that fails once (trap, deadline, memory
/// limit) is not restarted — its data would be gone — and every later call fails, saying so.
///
/// Wrap it as a store with `siren_storage_kv::KvStorage::new(engine)`.
#[derive(Clone)]
pub struct WasmKvEngine {
    plugin: Arc<Plugin<KvKind>>,
}

impl WasmRuntime {
    /// Loads a KV engine plugin (world `kv-plugin`).
    pub fn kv_engine(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmKvEngine, PluginError> {
        Ok(WasmKvEngine {
            plugin: self.load(name, config)?,
        })
    }
}

impl WasmKvEngine {
    fn guest_error(&self, message: String) -> Error {
        PluginError::Guest {
            name: self.plugin.name.to_string(),
            message,
        }
        .into()
    }
}

impl KvEngine for WasmKvEngine {
    fn describe(&self) -> String {
        match self.plugin.run("describe", |b, store| {
            b.siren_plugin_kv_engine().call_describe(store)
        }) {
            Ok(text) => format!("wasm plugin {}: {text}", self.plugin.name),
            Err(e) => format!("wasm plugin {} ({e})", self.plugin.name),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.plugin
            .run("get", |b, store| {
                b.siren_plugin_kv_engine().call_get(store, key)
            })?
            .map_err(|m| self.guest_error(m))
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<KvPair>, Error> {
        let wit_range = wit::KeyRange {
            start: range.start.clone(),
            end: range.end.clone(),
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let pairs = self
            .plugin
            .run("scan", |b, store| {
                b.siren_plugin_kv_engine()
                    .call_scan(store, &wit_range, limit, reverse)
            })?
            .map_err(|m| self.guest_error(m))?;
        // The contract, checked: never more than asked, only keys in the range, in order.
        let ordered = pairs.windows(2).all(|w| {
            if reverse {
                w[0].key > w[1].key
            } else {
                w[0].key < w[1].key
            }
        });
        if pairs.len() > limit as usize || !ordered || !pairs.iter().all(|p| range.contains(&p.key))
        {
            return Err(PluginError::Contract {
                name: self.plugin.name.to_string(),
                message: "scan returned keys out of range, out of order or beyond the limit"
                    .to_owned(),
            }
            .into());
        }
        Ok(pairs.into_iter().map(|p| (p.key, p.value)).collect())
    }

    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
        let ops: Vec<wit::WriteOp> = batch
            .ops
            .iter()
            .map(|op| match op {
                WriteOp::Put(key, value) => wit::WriteOp::Put(wit::KvPair {
                    key: key.clone(),
                    value: value.clone(),
                }),
                WriteOp::Delete(key) => wit::WriteOp::Delete(key.clone()),
            })
            .collect();
        let durability = match durability {
            Durability::Synced => wit::Durability::Synced,
            Durability::Buffered => wit::Durability::Buffered,
        };
        self.plugin
            .run("write", |b, store| {
                b.siren_plugin_kv_engine()
                    .call_write(store, &ops, durability)
            })?
            .map_err(|m| self.guest_error(m))
    }

    fn flush(&self) -> Result<(), Error> {
        self.plugin
            .run("flush", |b, store| {
                b.siren_plugin_kv_engine().call_flush(store)
            })?
            .map_err(|m| self.guest_error(m))
    }
}
