//! Native stages: a stage's logic compiled into the host process instead of
//! run as a Wasm component. This exists for measurement only — it is how the
//! benchmarks run the very same pipeline without the sandbox to state what
//! the sandbox costs. It is compiled only with the `native-stages` feature
//! (the benchmark crate turns it on); no config can select it, a program
//! that embeds the engine installs one with
//! [`super::PluginInstance::with_native`].

use syncline_model::{Message, PluginError, Violation};

/// Plugin logic called directly. A method a stage kind does not use may
/// keep its default, which fails the call.
pub trait NativeStage: Send + Sync {
    /// A transformer's call.
    ///
    /// # Errors
    ///
    /// The plugin's error.
    fn transform(&self, msg: Message) -> Result<Vec<Message>, PluginError> {
        let _ = msg;
        Err(unsupported("transform"))
    }

    /// A validator's call.
    fn validate(&self, msg: Message) -> Vec<Violation> {
        let _ = msg;
        Vec::new()
    }

    /// An allocator's call.
    ///
    /// # Errors
    ///
    /// The plugin's error.
    fn allocate(&self, batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {
        let _ = batch;
        Err(unsupported("allocate"))
    }
}

fn unsupported(what: &str) -> PluginError {
    PluginError { code: "unsupported".into(), message: format!("this native stage does not {what}"), retryable: false }
}
