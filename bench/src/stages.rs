//! The three stages of the example in one process over the same messages:
//! as Wasm components through the runtime (limits armed, warm instances)
//! and as the same plugin crates compiled natively, for the ratio.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use syncline::runtime::{EngineOptions, Limits, PluginContext, PluginInstance, Runtime};
use syncline_model::table::RefTable;
use syncline_model::{json as mjson, Message};
use syncline_sdk::{Allocator, Transformer, Validator};

use crate::e2e::{rec, root};
use crate::stats::Figures;

/// The example's reference tables.
pub fn tables() -> anyhow::Result<BTreeMap<String, Arc<RefTable>>> {
    let ex = root().join("examples/forecast-release/ref");
    let mut out = BTreeMap::new();
    for (name, file) in [("moq", "moq.csv"), ("lead-times", "lead-times.csv")] {
        let t = RefTable::from_csv(&std::fs::read_to_string(ex.join(file))?)
            .map_err(anyhow::Error::msg)?;
        out.insert(name.to_string(), Arc::new(t));
    }
    Ok(out)
}

/// Binds standard plugin `name` with `config` and `tables`, one instance.
pub fn bind(
    rt: &Runtime,
    name: &str,
    config: Value,
    tables: BTreeMap<String, Arc<RefTable>>,
    limits: Limits,
) -> anyhow::Result<Arc<PluginInstance>> {
    let p = rt.load_file(&root().join(format!("target/plugins/{name}.wasm")))?;
    let mut ctx = PluginContext::new(name);
    ctx.tables = tables;
    ctx.limits = limits;
    ctx.config = syncline::runtime::flatten_config(&config);
    rt.bind(p, ctx)
}

/// `runs` runs over `messages` each way; records `wasm` and `native` msg/s
/// and their `ratio` per run.
pub fn run(messages: usize, runs: usize, f: &mut Figures) -> anyhow::Result<()> {
    let inputs: Vec<Message> = (0..messages)
        .map(|i| mjson::from_str(&rec(i)).unwrap())
        .collect();
    let rt = Runtime::new(
        &EngineOptions::default(),
        Some(&root().join("target/bench-cache")),
    )?;
    let one = Limits {
        instances: 1,
        ..Limits::default()
    };
    let kind = json!({"kind": "replenishment-recommendation"});
    let mapper = bind(
        &rt,
        "json-mapper",
        kind.clone(),
        BTreeMap::new(),
        one.clone(),
    )?;
    let validator = bind(
        &rt,
        "canonical-validator",
        kind.clone(),
        BTreeMap::new(),
        one.clone(),
    )?;
    let allocator = bind(&rt, "moq-leadtime", kind, tables()?, one)?;

    let wasm_run = || -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut valid = Vec::with_capacity(messages);
        for m in &inputs {
            for o in mapper.transform(m.clone())? {
                if validator.validate(o.clone())?.is_empty() {
                    valid.push(o);
                }
            }
        }
        let mut out = 0usize;
        for chunk in valid.chunks(500) {
            for o in allocator.allocate(chunk.to_vec())? {
                out += mjson::to_string(&o).len();
            }
        }
        std::hint::black_box(out);
        Ok(messages as f64 / started.elapsed().as_secs_f64())
    };
    let ex = root().join("examples/forecast-release/ref");
    let host = syncline_sdk::testing::TestHost::new()
        .config("kind", "replenishment-recommendation")
        .table_csv("moq", &std::fs::read_to_string(ex.join("moq.csv"))?)
        .table_csv(
            "lead-times",
            &std::fs::read_to_string(ex.join("lead-times.csv"))?,
        )
        .install();
    let native_run = || -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut valid = Vec::with_capacity(messages);
        for m in &inputs {
            for o in json_mapper::JsonMapper::transform(m.clone()).map_err(anyhow::Error::msg)? {
                if canonical_validator::CanonicalValidator::validate(o.clone()).is_empty() {
                    valid.push(o);
                }
            }
        }
        let mut out = 0usize;
        for chunk in valid.chunks(500) {
            for o in
                moq_leadtime::MoqLeadtime::allocate(chunk.to_vec()).map_err(anyhow::Error::msg)?
            {
                out += mjson::to_string(&o).len();
            }
        }
        std::hint::black_box(out);
        Ok(messages as f64 / started.elapsed().as_secs_f64())
    };
    wasm_run()?;
    native_run()?;
    for _ in 0..runs {
        let (w, n) = (wasm_run()?, native_run()?);
        f.add("wasm", w);
        f.add("native", n);
        f.add("ratio", w / n);
    }
    drop(host);
    Ok(())
}
