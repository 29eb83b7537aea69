//! Host-side bindings of `plugins/wit/siren-plugin.wit`, one module per world.
//!
//! The `host` import is generated once (in [`federation`]) and shared by every world, so one
//! linker serves every kind of plugin.

#![allow(missing_docs)]

/// The `federation-plugin` world (and the shared `host` import).
pub mod federation {
    wasmtime::component::bindgen!({
        world: "federation-plugin",
        path: "../wit",
    });
}

/// The `auth-plugin` world.
pub mod auth {
    wasmtime::component::bindgen!({
        world: "auth-plugin",
        path: "../wit",
        with: { "siren:plugin/host": crate::bindings::federation::siren::plugin::host },
    });
}

/// The `credentials-plugin` world.
pub mod credentials {
    wasmtime::component::bindgen!({
        world: "credentials-plugin",
        path: "../wit",
        with: { "siren:plugin/host": crate::bindings::federation::siren::plugin::host },
    });
}

/// The `filter-plugin` world.
pub mod filter {
    wasmtime::component::bindgen!({
        world: "filter-plugin",
        path: "../wit",
        with: { "siren:plugin/host": crate::bindings::federation::siren::plugin::host },
    });
}

/// The `directory-plugin` world.
pub mod directory {
    wasmtime::component::bindgen!({
        world: "directory-plugin",
        path: "../wit",
        with: { "siren:plugin/host": crate::bindings::federation::siren::plugin::host },
    });
}

/// The `kv-plugin` world.
pub mod kv {
    wasmtime::component::bindgen!({
        world: "kv-plugin",
        path: "../wit",
        with: { "siren:plugin/host": crate::bindings::federation::siren::plugin::host },
    });
}
