//! The kv-memory guest, through `WasmKvEngine` and the KV adapter, passes the storage
//! conformance suite: the engine contract and every typed store.

mod common;

use siren_plugins::WasmKvEngine;
use siren_storage_kv::KvStorage;

fn engine() -> WasmKvEngine {
    common::runtime()
        .kv_engine("kv-memory", &common::config("kv-memory"))
        .expect("kv-memory loads")
}

siren_storage_conformance::kv_engine_tests!(|| (engine(), ()));

siren_storage_conformance::storage_tests!(async || (KvStorage::new(engine()), ()));
