//! Host-side bindings for the five plugin worlds. The transformer world
//! generates the shared types and host-import traits; the others reuse them.
//! Exports are called asynchronously (so a call can be dropped at its
//! deadline while the guest waits in a host call); the host's own imports
//! are synchronous and quick.

#![allow(missing_docs, clippy::all)]

pub mod transformer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "syncline:plugin/transformer",
        exports: { default: async },
    });
}

macro_rules! world {
    ($module:ident, $world:literal, { $($opt:tt)* }, { $($with:tt)* }) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                exports: { default: async },
                $($opt)*
                with: {
                    "syncline:canonical/types": super::transformer::syncline::canonical::types,
                    "syncline:plugin/log": super::transformer::syncline::plugin::log,
                    "syncline:plugin/config": super::transformer::syncline::plugin::config,
                    "syncline:plugin/reference": super::transformer::syncline::plugin::reference,
                    "syncline:plugin/state": super::transformer::syncline::plugin::state,
                    $($with)*
                },
            });
        }
    };
}

world!(validator, "syncline:plugin/validator", {}, {
    "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
});
world!(allocator, "syncline:plugin/allocator", {}, {
    "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
});
world!(source, "syncline:plugin/source", { require_store_data_send: true, }, {
    "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
    "wasi:http": wasmtime_wasi_http::p2::bindings::http,
    "wasi:io": wasmtime_wasi::p2::bindings::io,
    "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
});
world!(sink, "syncline:plugin/sink", { require_store_data_send: true, }, {
    "wasi:http": wasmtime_wasi_http::p2::bindings::http,
    "wasi:io": wasmtime_wasi::p2::bindings::io,
    "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
});

pub use transformer::syncline::canonical::types as wit;
pub use transformer::syncline::plugin as host_api;

pub mod convert {
    use super::wit;
    syncline_model::wit_conversions!(wit);
}
