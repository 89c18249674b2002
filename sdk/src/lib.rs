//! Write Syncline plugins in Rust.
//!
//! Implement the trait for your plugin kind and export it with the matching
//! macro; build with `cargo build --release --target wasm32-wasip2`:
//!
//! ```
//! use syncline_sdk::prelude::*;
//!
//! struct Upper;
//!
//! impl Transformer for Upper {
//!     fn transform(msg: Message) -> Result<Vec<Message>, PluginError> {
//!         Ok(vec![msg.with_header("mapped-by", "upper")])
//!     }
//! }
//!
//! export_transformer!(Upper);
//! ```
//!
//! | world | trait | macro |
//! |---|---|---|
//! | `transformer` | [`Transformer`] | [`export_transformer!`] |
//! | `validator` | [`Validator`] | [`export_validator!`] |
//! | `allocator` | [`Allocator`] | [`export_allocator!`] |
//! | `source` | [`Source`] | [`export_source!`] |
//! | `sink` | [`Sink`] | [`export_sink!`] |
//!
//! Host services: [`log`], [`config`], [`reference`] tables, per-tenant
//! [`state`], and outbound [`http`] for connectors. Plugin logic is plain
//! Rust over the [`syncline_model`] types, so it also compiles natively: unit
//! tests run with `cargo test` against a [`testing::TestHost`] that stands in
//! for the host's config, tables and state.
#![deny(missing_docs)]

pub mod config;
pub mod http;
pub mod log;
pub mod reference;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

mod bindings;

pub use syncline_model::*;

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        config, export_allocator, export_sink, export_source, export_transformer, export_validator,
        log, reference, state, Allocator, Sink, Source, Transformer, Validator,
    };
    pub use syncline_model::*;
}

/// A plugin that maps, enriches, filters or splits messages
/// (world `transformer`).
pub trait Transformer {
    /// The messages that replace `msg`: none filters it, one maps it,
    /// several split it. Build outputs with [`Message::derive`] or by
    /// changing `msg`, so correlation and tenant carry over.
    ///
    /// # Errors
    ///
    /// A [`PluginError`] fails this message (retried when `retryable`).
    fn transform(msg: Message) -> Result<Vec<Message>, PluginError>;
}

/// A plugin that checks messages (world `validator`).
pub trait Validator {
    /// Every violation found in `msg`; empty when it is valid.
    fn validate(msg: Message) -> Vec<Violation>;
}

/// A plugin that decides over a batch at once (world `allocator`).
pub trait Allocator {
    /// The messages that result from `batch`.
    ///
    /// # Errors
    ///
    /// A [`PluginError`] fails the whole batch.
    fn allocate(batch: Vec<Message>) -> Result<Vec<Message>, PluginError>;
}

/// A plugin that pulls messages from an external system (world `source`).
pub trait Source {
    /// What is new since `cursor` (`None` on the first poll).
    ///
    /// # Errors
    ///
    /// A [`PluginError`]; the host keeps the old cursor and polls again later.
    fn poll(cursor: Option<String>) -> Result<PollBatch, PluginError>;
}

/// A plugin that pushes messages to an external system (world `sink`).
pub trait Sink {
    /// One outcome per message, in order.
    fn deliver(messages: Vec<Message>) -> Vec<DeliveryOutcome>;
}

/// Glue used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::convert::Conv;
    pub use crate::bindings::generated as bindings;
    pub use crate::bindings::generated::syncline::canonical::types as wit;
    pub use crate::bindings::generated::syncline::plugin::plugin_types as wit_plugin;
    pub use syncline_sdk_macros::generate_bindings;
    pub use wit_bindgen;

    use crate::*;

    fn error_to_wit(e: PluginError) -> wit_plugin::PluginError {
        wit_plugin::PluginError { code: e.code, message: e.message, retryable: e.retryable }
    }

    pub fn run_transform<T: Transformer>(
        msg: wit::Message,
    ) -> Result<Vec<wit::Message>, wit_plugin::PluginError> {
        T::transform(msg.conv()).map(Conv::conv).map_err(error_to_wit)
    }

    pub fn run_validate<T: Validator>(msg: wit::Message) -> Vec<wit_plugin::Violation> {
        T::validate(msg.conv())
            .into_iter()
            .map(|v| wit_plugin::Violation {
                field: v.field,
                code: v.code,
                severity: v.severity.conv(),
                text: v.text,
            })
            .collect()
    }

    pub fn run_allocate<T: Allocator>(
        batch: Vec<wit::Message>,
    ) -> Result<Vec<wit::Message>, wit_plugin::PluginError> {
        T::allocate(batch.conv()).map(Conv::conv).map_err(error_to_wit)
    }

    pub fn run_poll<T: Source>(cursor: Option<String>) -> Result<PollBatch, wit_plugin::PluginError> {
        T::poll(cursor).map_err(error_to_wit)
    }

    pub fn run_deliver<T: Sink>(messages: Vec<wit::Message>) -> Vec<DeliveryOutcome> {
        T::deliver(messages.conv())
    }
}

mod export;
