//! Canonical distribution records and the message envelope, as plain Rust
//! values shared by the Syncline host, its SDK and its plugins.
//!
//! The WIT package `syncline:canonical@1.1.0` (in `wit/`) is the contract;
//! this crate is its Rust form with a JSON form ([`json`]) for files, HTTP
//! and tests. Bindings generated from the WIT (host or guest side) convert to
//! and from these types with [`wit_conversions!`], so plugin logic written
//! against them runs the same inside a Wasm component and natively.
#![deny(missing_docs)]

mod convert;
pub mod date;
pub mod json;
mod message;
mod outcome;
mod pairs;
mod records;
pub mod table;
pub mod versions;
#[cfg(feature = "schema")]
pub mod schema;

pub use message::{Body, Header, Kind, Message};
pub use outcome::{DeliveryOutcome, PluginError, PollBatch, Violation};
pub use records::*;

/// The canonical schema version this crate speaks.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Major part of [`SCHEMA_VERSION`].
pub const SCHEMA_MAJOR: u32 = 1;
/// Minor part of [`SCHEMA_VERSION`].
pub const SCHEMA_MINOR: u32 = 1;
