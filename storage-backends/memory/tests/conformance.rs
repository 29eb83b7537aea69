//! The storage conformance suite against the in-memory store and its engine.

siren_storage_conformance::storage_tests!(async || (siren_storage_memory::storage(), ()));

siren_storage_conformance::kv_engine_tests!(|| (siren_storage_memory::MemoryEngine::new(), ()));
