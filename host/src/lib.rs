//! The Syncline integration host.
//!
//! Data flows one way through its modules: plugins are loaded and run by
//! [`runtime`]; [`plugin_test`] runs a plugin against golden cases with no
//! server.

pub mod runtime;
