//! The Syncline integration host.
//!
//! Data flows one way through its modules: plugins are loaded and run by
//! [`runtime`]; [`plugin_test`] runs a plugin against golden cases with no
//! server (over the loopback [`stub_http`] for connectors); [`scaffold`]
//! writes new plugin crates.

pub mod api;
pub mod approval;
pub mod breaker;
pub mod config;
pub mod delivery;
pub mod handoff;
pub mod pipeline;
pub mod metrics;
pub mod plugin_test;
pub mod precompile;
pub mod runtime;
pub mod reload;
pub mod report;
pub mod scaffold;
pub mod server;
pub mod source;
pub mod store;
pub mod stub_http;
pub mod telemetry;
