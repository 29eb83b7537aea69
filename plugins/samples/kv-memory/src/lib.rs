//! A key-value engine keeping its data in a `BTreeMap` in guest memory (within the plugin's
//! memory limit). Nothing survives the instance: for tests and experiments, like the server's
//! built-in `memory` store.

use std::collections::BTreeMap;
use std::ops::Bound;

use siren_plugin_sdk::Config;
use siren_plugin_sdk::kv::{Durability, KeyRange, KvEngine, KvPair, WriteOp};

struct Memory(BTreeMap<Vec<u8>, Vec<u8>>);

impl KvEngine for Memory {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Memory(BTreeMap::new()))
    }

    fn describe(&mut self) -> String {
        format!("memory in wasm, {} keys", self.0.len())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(&mut self, range: &KeyRange, limit: u32, reverse: bool) -> Result<Vec<KvPair>, String> {
        let end = if range.end.is_empty() {
            Bound::Unbounded
        } else if range.end <= range.start {
            return Ok(Vec::new());
        } else {
            Bound::Excluded(range.end.clone())
        };
        let entries = self.0.range((Bound::Included(range.start.clone()), end));
        let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| KvPair {
            key: k.clone(),
            value: v.clone(),
        };
        let limit = limit as usize;
        Ok(if reverse {
            entries.rev().take(limit).map(pair).collect()
        } else {
            entries.take(limit).map(pair).collect()
        })
    }

    fn write(&mut self, ops: Vec<WriteOp>, _durability: Durability) -> Result<(), String> {
        // Applying a batch cannot fail half-way here short of running out of memory, which
        // traps and takes the whole instance (and so the whole map) with it.
        for op in ops {
            match op {
                WriteOp::Put(KvPair { key, value }) => {
                    self.0.insert(key, value);
                }
                WriteOp::Delete(key) => {
                    self.0.remove(&key);
                }
            }
        }
        Ok(())
    }
}

siren_plugin_sdk::export_kv_engine!(Memory);
