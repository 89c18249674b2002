//! The standard plugins' native twins as pipeline stages: the same plugin
//! crates the Wasm components are built from, compiled into this binary and
//! called directly, each with the stage's own config and tables (an SDK
//! `TestHost` per worker thread stands in for the host services).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use syncline::pipeline::Engine;
use syncline::runtime::{NativeStage, PluginContext};
use syncline_model::{Message, PluginError, Violation};
use syncline_sdk::testing::TestHost;
use syncline_sdk::{Allocator, Transformer, Validator};

thread_local! {
    /// This thread's host for each twin (a `TestHost` is per thread).
    static HOSTS: RefCell<HashMap<usize, TestHost>> = RefCell::new(HashMap::new());
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One stage's native twin.
struct Twin {
    id: usize,
    plugin: String,
    config: Vec<(String, String)>,
    tables: Vec<(String, syncline_model::table::RefTable)>,
}

impl Twin {
    fn new(ctx: &PluginContext) -> Twin {
        Twin {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            plugin: ctx.plugin.clone(),
            config: ctx
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tables: ctx
                .tables
                .iter()
                .map(|(k, t)| (k.clone(), (**t).clone()))
                .collect(),
        }
    }

    /// Runs `f` with this stage's host current on this thread.
    fn with_host<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut host = HOSTS
            .with(|h| h.borrow_mut().remove(&self.id))
            .unwrap_or_else(|| {
                let mut h = TestHost::new();
                for (k, v) in &self.config {
                    h = h.config(k, v);
                }
                for (k, t) in &self.tables {
                    h = h.with_table(k, t.clone());
                }
                h
            });
        let out = TestHost::enter(&mut host, f);
        HOSTS.with(|h| h.borrow_mut().insert(self.id, host));
        out
    }
}

impl NativeStage for Twin {
    fn transform(&self, msg: Message) -> Result<Vec<Message>, PluginError> {
        match self.plugin.as_str() {
            "json-mapper" => self.with_host(|| json_mapper::JsonMapper::transform(msg)),
            other => Err(PluginError {
                code: "no-twin".into(),
                message: format!("no native twin of `{other}`"),
                retryable: false,
            }),
        }
    }

    fn validate(&self, msg: Message) -> Vec<Violation> {
        self.with_host(|| canonical_validator::CanonicalValidator::validate(msg))
    }

    fn allocate(&self, batch: Vec<Message>) -> Result<Vec<Message>, PluginError> {
        self.with_host(|| moq_leadtime::MoqLeadtime::allocate(batch))
    }
}

/// Replaces every stage of every pipeline by its native twin.
///
/// # Errors
///
/// A stage whose plugin has no twin here.
pub fn install(engine: &Engine) -> anyhow::Result<()> {
    for p in engine.topology().pipelines.values() {
        for stage in &p.stages {
            let current = stage.instance.load_full();
            let name = current.plugin().name.as_str();
            anyhow::ensure!(
                matches!(name, "json-mapper" | "canonical-validator" | "moq-leadtime"),
                "no native twin of plugin `{name}`"
            );
            let twin: Arc<dyn NativeStage> = Arc::new(Twin::new(current.context()));
            stage.instance.store(Arc::new(current.with_native(twin)));
        }
    }
    Ok(())
}
