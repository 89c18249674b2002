//! Host-side bindings for the five plugin worlds, in the current version
//! (`wit/`) and in the frozen 1.0 version (`wit/1.0/`, module [`v1_0`]) that
//! plugins built before 1.1 export. The transformer world generates the
//! shared types and host-import traits; the others reuse them. Exports are
//! called asynchronously (so a call can be dropped at its deadline while the
//! guest waits in a host call); the host's own imports are synchronous and
//! quick, and linked once: a 1.0 plugin's imports of them resolve to the
//! current, semver-compatible ones.

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

/// The five worlds as `syncline:plugin@1.0.0` declared them, for plugins
/// built against `syncline:canonical@1.0.0`. Only the canonical records and
/// the plugin result types are their own; the host services are the
/// current ones.
pub mod v1_0 {
    pub mod transformer {
        wasmtime::component::bindgen!({
            path: "../wit/1.0",
            world: "syncline:plugin/transformer@1.0.0",
            exports: { default: async },
            with: {
                "syncline:plugin/log": super::super::transformer::syncline::plugin::log,
                "syncline:plugin/config": super::super::transformer::syncline::plugin::config,
                "syncline:plugin/reference": super::super::transformer::syncline::plugin::reference,
                "syncline:plugin/state": super::super::transformer::syncline::plugin::state,
            },
        });
    }

    macro_rules! world_1_0 {
        ($module:ident, $world:literal, { $($opt:tt)* }, { $($with:tt)* }) => {
            pub mod $module {
                wasmtime::component::bindgen!({
                    path: "../wit/1.0",
                    world: $world,
                    exports: { default: async },
                    $($opt)*
                    with: {
                        "syncline:canonical/types": super::transformer::syncline::canonical::types,
                        "syncline:plugin/log": super::super::transformer::syncline::plugin::log,
                        "syncline:plugin/config": super::super::transformer::syncline::plugin::config,
                        "syncline:plugin/reference": super::super::transformer::syncline::plugin::reference,
                        "syncline:plugin/state": super::super::transformer::syncline::plugin::state,
                        $($with)*
                    },
                });
            }
        };
    }

    world_1_0!(validator, "syncline:plugin/validator@1.0.0", {}, {
        "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
    });
    world_1_0!(allocator, "syncline:plugin/allocator@1.0.0", {}, {
        "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
    });
    world_1_0!(source, "syncline:plugin/source@1.0.0", { require_store_data_send: true, }, {
        "syncline:plugin/plugin-types": super::transformer::syncline::plugin::plugin_types,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    });
    world_1_0!(sink, "syncline:plugin/sink@1.0.0", { require_store_data_send: true, }, {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    });

    pub use transformer::syncline::canonical::types as wit;

    pub mod convert {
        use super::wit;
        syncline_model::wit_conversions_1_0!(wit);
    }
}

pub use transformer::syncline::canonical::types as wit;
pub use transformer::syncline::plugin as host_api;

/// The current version's worlds under one name, beside [`v1_0`].
pub mod current {
    pub use super::{allocator, convert, sink, source, transformer, validator};
}

pub mod convert {
    use super::wit;
    syncline_model::wit_conversions!(wit);
}
