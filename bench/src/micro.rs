//! Single plugin calls per kind against the native twins (1, 10 and 100
//! messages or lines), a no-op transform and a fresh instance per call (the
//! pure boundary and instantiation costs), and compile cold against a load
//! from the on-disk cache.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use syncline::runtime::{EngineOptions, Limits, Runtime};
use syncline_model::{json as mjson, Message};
use syncline_sdk::testing::TestHost;
use syncline_sdk::{Allocator, Transformer, Validator};

use crate::e2e::{rec, root};
use crate::stages::{bind, tables};
use crate::stats::Stat;

/// µs per call of `f` over `runs` batches of `iterations`, after a warm-up.
fn time_calls(iterations: usize, runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Stat> {
    for _ in 0..iterations.min(200) {
        f()?;
    }
    let mut per = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            f()?;
        }
        per.push(started.elapsed().as_secs_f64() * 1e6 / iterations as f64);
    }
    Ok(Stat::of(per))
}

/// A planning export of `n` lines (raw JSON) for json-mapper.
fn raw_export(n: usize) -> Message {
    let lines: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"rec_id": "R-{i}", "sku": "SKU-100", "site": "DC-{i}", "qty": "{}", "need_by": "2026-12-21", "supplier": "SUP-7", "reason": "low", "prio": 2}}"#, i + 1))
        .collect();
    let text = format!(r#"{{"recommendations": [{}]}}"#, lines.join(","));
    let mut m = Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "application/json".into(), data: text.into_bytes() }));
    m.id = "01JBENCH000000000000000000".into();
    m.tenant = "acme".into();
    m
}

fn mapper_config() -> Value {
    json!({"kind": "replenishment-recommendation", "records": "/recommendations",
           "fields": {"id": "/rec_id", "item": "/sku", "location": "/site", "quantity": {"path": "/qty", "type": "number"},
                      "uom": {"path": "/unit", "default": "EA"}, "need-by": "/need_by", "source.supplier": "/supplier",
                      "reason": "/reason", "priority": {"path": "/prio", "type": "integer"}}})
}

/// One measured call: what, size, Wasm µs and native µs when there is a twin.
pub struct Row {
    /// What is called.
    pub what: String,
    /// Lines or messages per call.
    pub lines: usize,
    /// Wasm µs per call.
    pub wasm: Stat,
    /// Native twin µs per call.
    pub native: Option<Stat>,
}

/// The call table and the compile table (cold compile ms, cached load ms, plugin KiB).
pub fn run(iterations: usize, runs: usize) -> anyhow::Result<(Vec<Row>, (Stat, Stat, f64))> {
    let cache = tempfile::tempdir()?;
    let rt = Runtime::new(&EngineOptions::default(), Some(cache.path()))?;
    let one = Limits { instances: 1, ..Limits::default() };
    let mapper = bind(&rt, "json-mapper", mapper_config(), BTreeMap::new(), one.clone())?;
    let validator = bind(&rt, "canonical-validator", json!({}), BTreeMap::new(), one.clone())?;
    let allocator = bind(&rt, "moq-leadtime", json!({}), tables()?, one.clone())?;
    let tagger = bind(&rt, "tagger-v1", json!({}), BTreeMap::new(), one.clone())?;
    let fresh = bind(&rt, "tagger-v1", json!({}), BTreeMap::new(), Limits { fresh: true, ..one })?;
    let ex = root().join("examples/forecast-release/ref");
    let mut host = TestHost::new()
        .table_csv("moq", &std::fs::read_to_string(ex.join("moq.csv"))?)
        .table_csv("lead-times", &std::fs::read_to_string(ex.join("lead-times.csv"))?);
    for (k, v) in syncline::runtime::flatten_config(&mapper_config()) {
        host = host.config(&k, &v);
    }
    let _host = host.install();

    let mut rows = Vec::new();
    let one_msg = mjson::from_str(&rec(1))?;
    let w = time_calls(iterations, runs, || Ok(drop(tagger.transform(one_msg.clone())?)))?;
    rows.push(Row { what: "no-op transform (tagger: one header), warm instance".into(), lines: 1, wasm: w, native: None });
    let w = time_calls(iterations, runs, || Ok(drop(fresh.transform(one_msg.clone())?)))?;
    rows.push(Row { what: "no-op transform, fresh instance per call".into(), lines: 1, wasm: w, native: None });
    for lines in [1, 10, 100] {
        let its = (iterations / lines).max(20);
        let raw = raw_export(lines);
        let w = time_calls(its, runs, || Ok(drop(mapper.transform(raw.clone())?)))?;
        let n = time_calls(its, runs, || Ok(drop(json_mapper::JsonMapper::transform(raw.clone()).map_err(anyhow::Error::msg)?)))?;
        rows.push(Row { what: "transform: json-mapper (raw export of N lines)".into(), lines, wasm: w, native: Some(n) });
        let batch: Vec<Message> = (0..lines).map(|i| mjson::from_str(&rec(i)).unwrap()).collect();
        let w = time_calls(its, runs, || Ok(drop(allocator.allocate(batch.clone())?)))?;
        let n = time_calls(its, runs, || Ok(drop(moq_leadtime::MoqLeadtime::allocate(batch.clone()).map_err(anyhow::Error::msg)?)))?;
        rows.push(Row { what: "allocate: moq-leadtime (batch of N)".into(), lines, wasm: w, native: Some(n) });
        let w = time_calls(its, runs, || {
            batch.iter().try_for_each(|m| validator.validate(m.clone()).map(drop))?;
            Ok(())
        })?;
        let n = time_calls(its, runs, || {
            batch.iter().for_each(|m| drop(canonical_validator::CanonicalValidator::validate(m.clone())));
            Ok(())
        })?;
        rows.push(Row { what: "validate: canonical-validator (N calls)".into(), lines, wasm: w, native: Some(n) });
    }

    // Compile: cold (no cache) against a load from the on-disk cache.
    let bytes = std::fs::read(root().join("target/plugins/json-mapper.wasm"))?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs.max(3) {
        let dir = tempfile::tempdir()?;
        let rt = Runtime::new(&EngineOptions { total_instances: 8 }, Some(dir.path()))?;
        let started = Instant::now();
        rt.load_bytes("json-mapper", &bytes)?;
        cold.push(started.elapsed().as_secs_f64() * 1e3);
        let rt2 = Runtime::new(&EngineOptions { total_instances: 8 }, Some(dir.path()))?;
        let started = Instant::now();
        let p = rt2.load_bytes("json-mapper", &bytes)?;
        warm.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(p.cache == syncline::runtime::CacheOutcome::Hit, "run {i}: the second load missed the cache");
    }
    Ok((rows, (Stat::of(cold), Stat::of(warm), bytes.len() as f64 / 1024.0)))
}
