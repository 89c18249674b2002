//! The one wasmtime engine: component model, pooling allocator sized for
//! plugins, epoch interruption driven by a ticker thread.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: how often a running guest checks its
/// call's deadline, so the granularity of per-call wall-time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Largest linear memory any plugin may be given (per-plugin limits are
/// lower and enforced per store).
pub const MAX_PLUGIN_MEMORY: usize = 1 << 30;

/// Engine-wide sizing of the instance pool.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Component instances that may be alive at once, across all plugins.
    pub total_instances: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { total_instances: 256 }
    }
}

/// Builds the engine and starts its epoch ticker (a daemon thread that lives
/// as long as the engine does).
///
/// # Errors
///
/// When wasmtime rejects the configuration (e.g. the pool cannot be reserved).
pub fn build(options: &EngineOptions) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let n = options.total_instances;
    pool.total_component_instances(n)
        // Guest languages with big runtimes (Python, JS) have many core
        // instances and a few memories per component.
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 8)
        .total_stacks(n)
        .max_memory_size(MAX_PLUGIN_MEMORY)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .max_component_instance_size(1 << 20)
        // Keep a little of each slot resident and reset it with pagemap scans:
        // measured here to halve instantiation time.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .parallel_compilation(true);
    let engine = Engine::new(&config)?;

    let weak = engine.weak();
    std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || loop {
        std::thread::sleep(EPOCH_TICK);
        match weak.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
    })?;
    Ok(engine)
}

/// An engine shared by everything in the process.
pub type SharedEngine = Arc<Engine>;
