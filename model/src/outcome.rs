//! What plugins return besides messages: errors, violations, delivery
//! outcomes and polled batches (`syncline:plugin/plugin-types` and friends).

use serde::{Deserialize, Serialize};

use crate::{Message, Severity};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// Why a plugin could not process its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the same input may succeed later.
    #[serde(default)]
    pub retryable: bool,
}

impl PluginError {
    /// A permanent error: the same input will fail again.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError { code: code.into(), message: message.into(), retryable: false }
    }

    /// A retryable error: the same input may pass later.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError { code: code.into(), message: message.into(), retryable: true }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if self.retryable {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// One problem a validator found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Violation {
    /// Path of the offending field (e.g. `body.quantity`).
    pub field: String,
    /// Machine-readable code.
    pub code: String,
    /// Severity; `error` and `critical` fail validation.
    pub severity: Severity,
    /// Explanation.
    pub text: String,
}

impl Violation {
    /// An `error` violation.
    pub fn error(field: impl Into<String>, code: impl Into<String>, text: impl Into<String>) -> Self {
        Violation { field: field.into(), code: code.into(), severity: Severity::Error, text: text.into() }
    }

    /// A `warning` violation.
    pub fn warning(field: impl Into<String>, code: impl Into<String>, text: impl Into<String>) -> Self {
        Violation { field: field.into(), code: code.into(), severity: Severity::Warning, text: text.into() }
    }

    /// Whether this violation fails validation.
    pub fn is_blocking(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Critical)
    }
}

/// What happened to one delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case", rename_all_fields = "kebab-case", tag = "outcome", deny_unknown_fields)]
pub enum DeliveryOutcome {
    /// Accepted downstream.
    Delivered {
        /// The downstream's reference.
        reference: String,
    },
    /// May pass later.
    Retryable {
        /// Why it failed.
        reason: String,
        /// How long the downstream asked to wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_ms: Option<u64>,
    },
    /// Refused for good.
    Permanent {
        /// Why.
        reason: String,
    },
}

/// Messages a source plugin polled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollBatch {
    /// Messages read since the cursor.
    pub messages: Vec<Message>,
    /// Cursor for the next poll; `None` keeps the current one.
    pub cursor: Option<String>,
    /// Whether more data is ready right away.
    pub more: bool,
}
