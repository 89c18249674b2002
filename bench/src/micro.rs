//! Single plugin calls per kind against the native twins (1, 10 and 100
//! messages or lines), a no-op transform and a fresh instance per call (the
//! pure boundary and instantiation costs), and compile cold against a load
//! from the on-disk cache. The sink call delivers to `erp-sim` on loopback;
//! its native twin sends the same requests with a native HTTP client.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use syncline::runtime::{EngineOptions, Limits, Runtime};
use syncline_model::{json as mjson, Message};
use syncline_sdk::http::{HttpError, Request, Response};
use syncline_sdk::testing::TestHost;
use syncline_sdk::{Allocator, Sink, Transformer, Validator};

use crate::e2e::{rec, root};
use crate::stages::{bind, tables};
use crate::stats::Stat;

/// µs per call of `f` over `runs` batches of `iterations`, after a warm-up.
fn time_calls(
    iterations: usize,
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Stat> {
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
    let mut m = Message::new(syncline_model::Body::Raw(syncline_model::Raw {
        content_type: "application/json".into(),
        data: text.into_bytes(),
    }));
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
    let one = Limits {
        instances: 1,
        ..Limits::default()
    };
    let mapper = bind(
        &rt,
        "json-mapper",
        mapper_config(),
        BTreeMap::new(),
        one.clone(),
    )?;
    let validator = bind(
        &rt,
        "canonical-validator",
        json!({}),
        BTreeMap::new(),
        one.clone(),
    )?;
    let allocator = bind(&rt, "moq-leadtime", json!({}), tables()?, one.clone())?;
    let tagger = bind(&rt, "tagger-v1", json!({}), BTreeMap::new(), one.clone())?;
    let fresh = bind(
        &rt,
        "tagger-v1",
        json!({}),
        BTreeMap::new(),
        Limits { fresh: true, ..one },
    )?;
    let ex = root().join("examples/forecast-release/ref");
    let mut host = TestHost::new()
        .table_csv("moq", &std::fs::read_to_string(ex.join("moq.csv"))?)
        .table_csv(
            "lead-times",
            &std::fs::read_to_string(ex.join("lead-times.csv"))?,
        );
    for (k, v) in syncline::runtime::flatten_config(&mapper_config()) {
        host = host.config(&k, &v);
    }
    let _host = host.install();

    let mut rows = Vec::new();
    let one_msg = mjson::from_str(&rec(1))?;
    let w = time_calls(iterations, runs, || {
        drop(tagger.transform(one_msg.clone())?);
        Ok(())
    })?;
    rows.push(Row {
        what: "no-op transform (tagger: one header), warm instance".into(),
        lines: 1,
        wasm: w,
        native: None,
    });
    let w = time_calls(iterations, runs, || {
        drop(fresh.transform(one_msg.clone())?);
        Ok(())
    })?;
    rows.push(Row {
        what: "no-op transform, fresh instance per call".into(),
        lines: 1,
        wasm: w,
        native: None,
    });
    // Wasm against native for one call shape: a row of the table.
    let mut pair = |what: &str,
                    lines: usize,
                    its: usize,
                    mut wasm: Box<dyn FnMut() -> anyhow::Result<()> + '_>,
                    mut native: Box<dyn FnMut() -> anyhow::Result<()> + '_>|
     -> anyhow::Result<()> {
        let w = time_calls(its, runs, &mut wasm)?;
        let n = time_calls(its, runs, &mut native)?;
        rows.push(Row {
            what: what.into(),
            lines,
            wasm: w,
            native: Some(n),
        });
        Ok(())
    };
    for lines in [1, 10, 100] {
        let its = (iterations / lines).max(20);
        let raw = raw_export(lines);
        pair(
            "transform: json-mapper (raw export of N lines)",
            lines,
            its,
            Box::new(|| mapper.transform(raw.clone()).map(drop).map_err(Into::into)),
            Box::new(|| {
                json_mapper::JsonMapper::transform(raw.clone())
                    .map(drop)
                    .map_err(anyhow::Error::msg)
            }),
        )?;
        let batch: Vec<Message> = (0..lines)
            .map(|i| mjson::from_str(&rec(i)).unwrap())
            .collect();
        pair(
            "allocate: moq-leadtime (batch of N)",
            lines,
            its,
            Box::new(|| {
                allocator
                    .allocate(batch.clone())
                    .map(drop)
                    .map_err(Into::into)
            }),
            Box::new(|| {
                moq_leadtime::MoqLeadtime::allocate(batch.clone())
                    .map(drop)
                    .map_err(anyhow::Error::msg)
            }),
        )?;
        pair(
            "validate: canonical-validator (N calls)",
            lines,
            its,
            Box::new(|| {
                Ok(batch
                    .iter()
                    .try_for_each(|m| validator.validate(m.clone()).map(drop))?)
            }),
            Box::new(|| {
                batch.iter().for_each(|m| {
                    drop(canonical_validator::CanonicalValidator::validate(m.clone()))
                });
                Ok(())
            }),
        )?;
    }

    // Sink: http-sink delivering N messages to erp-sim, one request at a time.
    let (_erp, erp_url) = crate::e2e::erp("127.0.0.1:0")?;
    let authority = erp_url.trim_start_matches("http://").to_string();
    let sink_config = json!({"url": format!("{erp_url}/requisitions"), "concurrency": "1"});
    let sink = {
        let p = rt.load_file(&root().join("target/plugins/http-sink.wasm"))?;
        let mut ctx = syncline::runtime::PluginContext::new("http-sink");
        ctx.limits = Limits {
            instances: 1,
            ..Limits::default()
        };
        ctx.config = syncline::runtime::flatten_config(&sink_config);
        ctx.allowed_hosts = vec![authority];
        rt.bind(p, ctx)?
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut sink_host = TestHost::new().http(move |r: &Request| native_http(&agent, r));
    for (k, v) in syncline::runtime::flatten_config(&sink_config) {
        sink_host = sink_host.config(&k, &v);
    }
    for lines in [1, 10, 100] {
        let its = (iterations / lines / 4).max(10);
        let batch: Vec<Message> = (0..lines)
            .map(|i| {
                let mut m = mjson::from_str(&rec(i)).unwrap();
                m.id = format!("01JBENCHSINK{i:014}");
                m
            })
            .collect();
        let delivered = |out: &[syncline_model::DeliveryOutcome]| {
            anyhow::ensure!(
                out.iter()
                    .all(|o| matches!(o, syncline_model::DeliveryOutcome::Delivered { .. })),
                "not delivered: {out:?}"
            );
            Ok(())
        };
        pair(
            "deliver: http-sink to erp-sim (N messages, one request each)",
            lines,
            its,
            Box::new(|| delivered(&sink.deliver(batch.clone())?)),
            Box::new(|| {
                delivered(&TestHost::enter(&mut sink_host, || {
                    http_sink::HttpSink::deliver(batch.clone())
                }))
            }),
        )?;
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
        anyhow::ensure!(
            p.cache == syncline::runtime::CacheOutcome::Hit,
            "run {i}: the second load missed the cache"
        );
    }
    Ok((
        rows,
        (Stat::of(cold), Stat::of(warm), bytes.len() as f64 / 1024.0),
    ))
}

/// The SDK's HTTP request sent with a native client (the sink's native twin).
fn native_http(agent: &ureq::Agent, r: &Request) -> Result<Response, HttpError> {
    let mut req = agent.post(&r.url);
    for (k, v) in &r.headers {
        req = req.header(k, v);
    }
    let mut resp = req
        .send(&r.body[..])
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .read_to_vec()
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    Ok(Response {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}
