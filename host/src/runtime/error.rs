//! Errors of loading and calling plugins. Each names the plugin (and its
//! digest once known) and what went wrong.

use std::path::PathBuf;
use std::time::Duration;

use syncline_model::PluginError;

use super::plugin::World;

/// Loading a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid component for this engine.
    #[error("plugin `{name}` ({digest}) is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// Plugin name.
        name: String,
        /// Digest.
        digest: String,
        /// Compiler's reason.
        reason: String,
    },
    /// The component exports none of the Syncline worlds.
    #[error(
        "plugin `{name}` ({digest}) implements no Syncline plugin world: it exports [{exports}], \
         expected one of syncline:plugin/{{transform,validate,allocate,poll,deliver}}@1.x"
    )]
    NoWorld {
        /// Plugin name.
        name: String,
        /// Digest.
        digest: String,
        /// What it exports.
        exports: String,
    },
    /// Built against a `syncline:plugin` version this host does not run
    /// (another major, or a newer minor).
    #[error(
        "plugin `{name}` ({digest}) was built for syncline:plugin@{version}; this host runs syncline:plugin 1.0 to {}: rebuild it against syncline:plugin@{}",
        super::plugin::PLUGIN_API_VERSION,
        super::plugin::PLUGIN_API_VERSION
    )]
    Version {
        /// Plugin name.
        name: String,
        /// Digest.
        digest: String,
        /// Version found.
        version: String,
    },
    /// The component imports something the host does not provide.
    #[error("plugin `{name}` ({digest}) cannot be linked: {reason}")]
    Link {
        /// Plugin name.
        name: String,
        /// Digest.
        digest: String,
        /// Linker's reason.
        reason: String,
    },
    /// The plugin implements a different world than its user needs.
    #[error(
        "plugin `{name}` ({digest}) implements the `{found}` world, but {needed_by} needs a `{expected}` plugin"
    )]
    WrongWorld {
        /// Plugin name.
        name: String,
        /// Digest.
        digest: String,
        /// World it implements.
        found: World,
        /// World required.
        expected: World,
        /// Who needs it (e.g. `stage 1 of pipeline forecast-release`).
        needed_by: String,
    },
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The plugin returned an error of its own.
    Plugin(PluginError),
    /// The call ran past its wall-time limit and was stopped (in the guest's
    /// own code or while it waited in a host call).
    Timeout(Duration),
    /// The instance tried to grow its memory past the limit.
    MemoryLimit {
        /// The limit.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// The plugin returned more than its output limit allows.
    OutputLimit {
        /// The limit in bytes.
        limit: usize,
        /// What it returned, in bytes (at least).
        size: usize,
    },
    /// The plugin trapped: the cause (stack overflow, unreachable, out of
    /// bounds...) and, for a panic, the guest's panic message.
    Trap(String),
    /// The plugin broke the contract (e.g. wrong number of outcomes).
    Contract(String),
    /// No instance could be created (e.g. the instance pool is exhausted,
    /// or every allowed instance stayed busy past the call's limit).
    Instantiate(String),
}

impl Failure {
    /// Its class, as the `result` label of `syncline_plugin_calls_total`.
    pub fn class(&self) -> &'static str {
        match self {
            Failure::Plugin(_) => "plugin-error",
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit { .. } => "memory-limit",
            Failure::OutputLimit { .. } => "output-limit",
            Failure::Trap(_) => "trap",
            Failure::Contract(_) => "contract",
            Failure::Instantiate(_) => "instantiate",
        }
    }

    /// Whether the same input may succeed on a later attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Plugin(e) => e.retryable,
            Failure::Instantiate(_) => true,
            // A deterministic plugin will trap, loop or bloat again on the same input.
            Failure::Timeout(_) | Failure::MemoryLimit { .. } | Failure::OutputLimit { .. } | Failure::Trap(_) | Failure::Contract(_) => false,
        }
    }

    /// Whether the call failed as a whole, whatever its input held: a limit
    /// or a trap rather than an answer of the plugin's. A sink call that
    /// fails this way says nothing about any one message of its batch.
    pub fn is_whole_call(&self) -> bool {
        !matches!(self, Failure::Plugin(_) | Failure::Contract(_))
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Failure::Plugin(e) => &e.code,
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit { .. } => "memory-limit",
            Failure::OutputLimit { .. } => "output-limit",
            Failure::Trap(_) => "trap",
            Failure::Contract(_) => "contract",
            Failure::Instantiate(_) => "instantiate",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::limits::bytes;
        match self {
            Failure::Plugin(e) => write!(f, "returned error {e}"),
            Failure::Timeout(t) => write!(f, "ran past its wall-time limit of {t:?} and was stopped"),
            Failure::MemoryLimit { limit, requested } => {
                write!(f, "exceeded its memory limit of {} (asked for {})", bytes(*limit), bytes(*requested))
            }
            Failure::OutputLimit { limit, size } => {
                write!(f, "returned {} of output, more than its output limit of {}", bytes(*size), bytes(*limit))
            }
            Failure::Trap(t) => write!(f, "trapped: {t}"),
            Failure::Contract(t) => write!(f, "broke the plugin contract: {t}"),
            Failure::Instantiate(t) => write!(f, "could not be instantiated: {t}"),
        }
    }
}

/// A failed call, naming the plugin and digest, with the tail of what the
/// plugin wrote to stdout/stderr during the call (tracebacks, `print`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("plugin `{plugin}` ({digest}) {failure}{}", output_suffix(.output))]
pub struct CallError {
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest.
    pub digest: String,
    /// What went wrong.
    pub failure: Failure,
    /// The end of the plugin's stdout/stderr during the call (bounded).
    pub output: Option<String>,
}

fn output_suffix(output: &Option<String>) -> String {
    match output {
        Some(o) if !o.trim().is_empty() => format!("; plugin output: {}", o.trim_end()),
        _ => String::new(),
    }
}
