//! How precisely a call's wall-time limit holds: the time until a call
//! comes back when its plugin spins in its own code (epoch interruption
//! checked against the clock), sleeps inside a host call (the call's future
//! dropped at the deadline), or reads a downstream that stalls mid-body (the
//! request's own timeout bounds the whole exchange) — on idle cores and with
//! two threads spinning on the same cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncline::runtime::{EngineOptions, Limits, PluginContext, PluginInstance, Runtime};
use syncline::stub_http::{StubResponse, StubServer};
use syncline_model::Message;

use crate::e2e::root;
use crate::stats::Stat;

/// One way of holding a call, and how long the calls took.
pub struct Case {
    /// What the plugin does.
    pub label: String,
    /// The bound that should end it.
    pub bound: Duration,
    /// Seconds per call, cores idle.
    pub idle: Stat,
    /// Seconds per call, two spinning threads beside it.
    pub loaded: Stat,
}

fn bind(rt: &Runtime, name: &str, limits: Limits, config: &[(&str, String)], allowed: Vec<String>) -> anyhow::Result<Arc<PluginInstance>> {
    let plugin = rt.load_file(&root().join("target/plugins").join(format!("{name}.wasm")))?;
    let mut ctx = PluginContext::new(name);
    ctx.limits = limits;
    ctx.allowed_hosts = allowed;
    for (k, v) in config {
        ctx.config.insert(k.to_string(), v.clone());
    }
    rt.bind(plugin, ctx)
}

fn message(header: (&str, &str)) -> Message {
    let mut m = Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "text/plain".into(), data: b"x".to_vec() }));
    m.id = "01JBENCH000000000000000000".into();
    m.tenant = "acme".into();
    m.with_header(header.0, header.1)
}

/// Seconds each of `runs` calls of `f` took.
fn timed(runs: usize, mut f: impl FnMut()) -> Stat {
    Stat::of(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Two threads spinning while `f` runs.
fn loaded<T>(f: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let out = f();
    stop.store(true, Ordering::Relaxed);
    spinners.into_iter().for_each(|s| drop(s.join()));
    out
}

/// Measures each case `runs` times idle and loaded. `spin` is the limit of
/// the spinning case (the others use 1 s, or 200 ms with `quick`).
pub fn run(spin: Duration, quick: bool, runs: usize) -> anyhow::Result<Vec<Case>> {
    let rt = Runtime::new(&EngineOptions { total_instances: 16 }, None)?;
    let short = if quick { Duration::from_millis(200) } else { Duration::from_secs(1) };
    let mut cases = Vec::new();

    let spinner = bind(&rt, "loop-forever", Limits { timeout: spin, ..Limits::default() }, &[], vec![])?;
    let call = || assert!(spinner.transform(message(("loop", "yes"))).is_err(), "a spinning plugin is stopped");
    cases.push(Case { label: "spins in its own code".into(), bound: spin, idle: timed(runs, call), loaded: loaded(|| timed(runs, call)) });

    let sleeper = bind(&rt, "hostile", Limits { timeout: short, ..Limits::default() }, &[], vec![])?;
    let call = || assert!(sleeper.transform(message(("do", "sleep"))).is_err(), "a sleeping plugin is stopped");
    cases.push(Case { label: "sleeps in a host call".into(), bound: short, idle: timed(runs, call), loaded: loaded(|| timed(runs, call)) });

    let mut stall = StubResponse::new(200, &"z".repeat(1000));
    stall.stall_after = Some(10);
    let stub = StubServer::start(vec![stall])?;
    let config = [("url", format!("{}/po", stub.url())), ("timeout-ms", short.as_millis().to_string())];
    let sink = bind(&rt, "http-sink", Limits { timeout: short * 5, ..Limits::default() }, &config, vec![stub.addr.to_string()])?;
    let call = || {
        let out = sink.deliver(vec![message(("n", "1"))]).expect("the sink answers");
        assert!(matches!(out[0], syncline_model::DeliveryOutcome::Retryable { .. }), "the stalled request timed out");
    };
    cases.push(Case {
        label: format!("reads a body that stalls (request timeout; call limit {:?})", short * 5),
        bound: short,
        idle: timed(runs, call),
        loaded: loaded(|| timed(runs, call)),
    });
    Ok(cases)
}
