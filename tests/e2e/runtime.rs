//! The runtime against hostile plugins: each failure is a clear error naming
//! plugin, digest and cause, and the host (and the same plugin) keeps working.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncline::runtime::{CacheOutcome, Failure, Limits, LoadError, PluginContext, StateStore, World};
use syncline::stub_http::{StubResponse, StubServer};
use syncline_model::DeliveryOutcome;

use crate::support::*;

fn bind(name: &str, limits: Limits) -> Arc<syncline::runtime::PluginInstance> {
    let rt = runtime();
    let plugin = rt.load_file(&plugin(name)).unwrap();
    let mut ctx = PluginContext::new(name);
    ctx.limits = limits;
    rt.bind(plugin, ctx).unwrap()
}

#[test]
fn trap_fails_the_call_and_the_next_call_works() {
    let p = bind("trap", Limits { instances: 1, ..Limits::default() });
    for _ in 0..5 {
        let err = p.transform(forecast("m1").with_header("trap", "yes")).unwrap_err();
        assert!(matches!(err.failure, Failure::Trap(_)), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("plugin `trap` (sha256:"), "{text}");
        assert!(text.contains("trapped"), "{text}");
    }
    // With one instance allowed, five traps in a row must not leak the slot.
    let out = p.transform(forecast("m2")).unwrap();
    assert_eq!(out[0].header("seen-by"), Some("trap"));
    assert_eq!(p.live_instances(), 1);
}

#[test]
fn loop_forever_is_stopped_at_the_wall_time_limit() {
    let p = bind("loop-forever", Limits { timeout: Duration::from_millis(200), ..Limits::default() });
    let err = p.transform(forecast("m1").with_header("loop", "yes")).unwrap_err();
    assert_eq!(err.failure, Failure::Timeout(Duration::from_millis(200)));
    assert!(err.to_string().contains("ran past its wall-time limit of 200ms"), "{err}");
    assert!(!err.failure.is_retryable());
    let out = p.transform(forecast("m2")).unwrap();
    assert_eq!(out[0].header("seen-by"), Some("loop-forever"));
}

#[test]
fn alloc_forever_is_stopped_at_the_memory_limit() {
    let p = bind("alloc-forever", Limits { memory: 16 << 20, ..Limits::default() });
    let err = p.transform(forecast("m1").with_header("alloc", "yes")).unwrap_err();
    match &err.failure {
        Failure::MemoryLimit { limit, requested } => {
            assert_eq!(*limit, 16 << 20);
            assert!(*requested > *limit);
        }
        other => panic!("expected a memory limit failure, got {other:?}"),
    }
    assert!(err.to_string().contains("exceeded its memory limit of 16 MiB"), "{err}");
    let out = p.transform(forecast("m2")).unwrap();
    assert_eq!(out[0].header("seen-by"), Some("alloc-forever"));
}

#[test]
fn wrong_world_is_refused_with_both_worlds_named() {
    let rt = runtime();
    let err = rt.load_for(&plugin("wrong-world"), World::Transformer, "stage 1 of pipeline forecast-release").unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { found: World::Validator, expected: World::Transformer, .. }));
    let text = err.to_string();
    assert!(
        text.contains("implements the `validator` world, but stage 1 of pipeline forecast-release needs a `transformer` plugin"),
        "{text}"
    );
    assert!(text.starts_with("plugin `wrong-world` (sha256:"), "{text}");
    // Calling a validator as a transformer through a bound instance is refused too.
    let v = rt.bind(rt.load_file(&plugin("wrong-world")).unwrap(), PluginContext::new("wrong-world")).unwrap();
    assert!(matches!(v.transform(forecast("x")).unwrap_err().failure, Failure::Contract(_)));
    assert!(v.validate(forecast("x")).unwrap().is_empty());
}

#[test]
fn http_to_a_host_not_allowed_is_refused_and_an_allowed_one_works() {
    let stub = StubServer::start(vec![StubResponse::new(200, "")]).unwrap();
    let rt = runtime();
    let p = rt.load_file(&plugin("http-to-forbidden-host")).unwrap();

    let mut ctx = PluginContext::new("http-to-forbidden-host");
    ctx.config.insert("url".into(), format!("{}/x", stub.url()));
    ctx.allowed_hosts = vec!["erp.example:443".into()];
    let denied = rt.bind(p.clone(), ctx).unwrap().deliver(vec![forecast("m1")]).unwrap();
    match &denied[0] {
        DeliveryOutcome::Permanent { reason } => assert!(reason.contains("HttpRequestDenied"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(stub.received().is_empty(), "a denied request must not leave the host");

    let mut ctx = PluginContext::new("http-to-forbidden-host");
    ctx.config.insert("url".into(), format!("{}/x", stub.url()));
    ctx.allowed_hosts = vec![stub.addr.to_string()];
    let ok = rt.bind(p, ctx).unwrap().deliver(vec![forecast("m2")]).unwrap();
    assert_eq!(ok, vec![DeliveryOutcome::Delivered { reference: "http-200".into() }]);
    assert_eq!(stub.received().len(), 1);
}

#[test]
fn files_that_are_not_plugins_are_refused_clearly() {
    let rt = runtime();
    let err = rt.load_bytes("garbage", b"not wasm at all").unwrap_err();
    assert!(err.to_string().starts_with("plugin `garbage` (sha256:"), "{err}");
    assert!(err.to_string().contains("not a valid WebAssembly component"), "{err}");

    let bytes = std::fs::read(plugin("trap")).unwrap();
    let err = rt.load_bytes("truncated", &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");

    // A core module (not a component) is refused too.
    let core = b"\0asm\x01\0\0\0";
    assert!(matches!(rt.load_bytes("core", core).unwrap_err(), LoadError::Invalid { .. }));

    let err = rt.load_file(std::path::Path::new("/nonexistent/x.wasm")).unwrap_err();
    assert!(err.to_string().contains("cannot read plugin file /nonexistent/x.wasm"), "{err}");
}

#[test]
fn compile_cache_is_hit_on_a_second_load_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime_with(Some(dir.path())).load_file(&plugin("moq-leadtime")).unwrap();
    assert_eq!(first.cache, CacheOutcome::Miss);

    let rt = runtime_with(Some(dir.path()));
    let second = rt.load_file(&plugin("moq-leadtime")).unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit);
    assert_eq!(first.digest, second.digest);
    // The cached artifact runs.
    let v = rt.bind(rt.load_file(&plugin("canonical-validator")).unwrap(), PluginContext::new("cv")).unwrap();
    assert!(v.validate(forecast("m")).unwrap().is_empty());

    // A damaged artifact is discarded and the plugin recompiled. (Replaced
    // as a new file: the live runtime above still maps the old one, as a
    // running host would; the cache itself only ever writes by rename.)
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"damaged").unwrap();
    }
    let third = runtime_with(Some(dir.path())).load_file(&plugin("moq-leadtime")).unwrap();
    assert_eq!(third.cache, CacheOutcome::Miss);
    let fourth = runtime_with(Some(dir.path())).load_file(&plugin("moq-leadtime")).unwrap();
    assert_eq!(fourth.cache, CacheOutcome::Hit);
}

#[test]
fn instance_cap_bounds_concurrent_instances() {
    let p = bind("loop-forever", Limits { timeout: Duration::from_millis(100), instances: 2, ..Limits::default() });
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (p, done, peak) = (p.clone(), done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(p.live_instances(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || p.transform(forecast(&format!("m{i}")).with_header("loop", "yes")).unwrap_err())
        })
        .collect();
    // Waiting for a free instance counts against the call's limit: a call
    // either ran and timed out, or found both instances busy until then.
    let mut timeouts = 0;
    for w in workers {
        match w.join().unwrap().failure {
            Failure::Timeout(_) => timeouts += 1,
            Failure::Instantiate(why) => assert!(why.contains("all 2 allowed instances stayed busy past the call's limit"), "{why}"),
            other => panic!("unexpected failure {other:?}"),
        }
    }
    assert!(timeouts >= 2, "at least the first two calls ran");
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak >= 1 && peak <= 2, "peak live instances {peak}");
    assert_eq!(p.live_instances(), 0, "failed instances are dropped");
}

#[test]
fn every_fixture_plugin_has_a_test() {
    let mut tests = String::new();
    for f in std::fs::read_dir(root().join("tests/e2e")).unwrap() {
        tests += &std::fs::read_to_string(f.unwrap().path()).unwrap();
    }
    for entry in std::fs::read_dir(root().join("plugins/fixtures")).unwrap() {
        let entry = entry.unwrap();
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(tests.contains(&format!("\"{name}\"")), "fixture `{name}` is not used by any test in tests/e2e/");
    }
}

#[test]
fn fresh_instance_limit_gives_every_call_a_new_instance() {
    // The tagger counts the calls its instance has served.
    let warm = bind("tagger-v1", Limits { instances: 1, ..Limits::default() });
    let calls: Vec<String> = (0..3).map(|i| warm.transform(forecast(&format!("w{i}"))).unwrap()[0].header("instance-calls").unwrap().to_string()).collect();
    assert_eq!(calls, ["1", "2", "3"], "a warm instance is reused");

    let fresh = bind("tagger-v1", Limits { instances: 1, fresh: true, ..Limits::default() });
    for i in 0..3 {
        let out = fresh.transform(forecast(&format!("f{i}"))).unwrap();
        assert_eq!(out[0].header("instance-calls"), Some("1"), "call {i} ran on a used instance");
        assert_eq!(out[0].header("version"), Some("v1"));
    }
    assert_eq!(fresh.live_instances(), 0, "a fresh instance is dropped after its call");
}

// ---------------------------------------------------------------- hostile guests

fn hostile(limits: Limits) -> Arc<syncline::runtime::PluginInstance> {
    bind("hostile", limits)
}

fn asked(what: &str) -> syncline_model::Message {
    forecast("h1").with_header("do", what).with_header("item", "SKU-9")
}

#[test]
fn a_plugin_sleeping_in_a_host_call_is_stopped_at_its_limit() {
    let p = hostile(Limits { timeout: Duration::from_millis(300), instances: 1, ..Limits::default() });
    let q = p.clone();
    let (err, elapsed) = within(Duration::from_secs(60), "a call sleeping in a host call", move || {
        let started = std::time::Instant::now();
        (q.transform(asked("sleep")).unwrap_err(), started.elapsed())
    });
    eprintln!("a 300 ms limit stopped a guest sleeping in a host call after {elapsed:?}");
    assert_eq!(err.failure, Failure::Timeout(Duration::from_millis(300)), "{err}");
    assert!(err.to_string().contains("ran past its wall-time limit of 300ms"), "{err}");
    // The instance went with the dropped call; the next call gets a new one.
    assert_eq!(p.live_instances(), 0);
    assert_eq!(p.transform(forecast("h2")).unwrap()[0].header("seen-by"), Some("hostile"));
}

#[test]
fn traps_keep_their_cause_and_the_plugins_last_words() {
    let p = hostile(Limits::default());
    let err = p.transform(asked("panic")).unwrap_err();
    let text = err.to_string();
    match &err.failure {
        Failure::Trap(cause) => {
            assert!(cause.starts_with("unreachable code reached (a panic or an abort): panicked at "), "{cause}");
            assert!(cause.contains("hostile/src/lib.rs:"), "{cause}");
            assert!(cause.ends_with("the order book for SKU-9 is corrupt"), "{cause}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(!text.contains("wasm backtrace"), "{text}");

    let err = p.transform(asked("recurse")).unwrap_err();
    assert_eq!(err.failure, Failure::Trap("stack overflow (the call stack is exhausted; deep recursion?)".into()), "{err}");

    let err = p.transform(asked("huge-alloc")).unwrap_err();
    match &err.failure {
        Failure::Trap(cause) => assert!(cause.contains("capacity overflow"), "{cause}"),
        other => panic!("expected a trap, got {other:?}"),
    }

    // A plugin's own error keeps what it printed during the call.
    let err = p.transform(asked("print")).unwrap_err();
    assert!(matches!(&err.failure, Failure::Plugin(e) if e.code == "empty-order"), "{err}");
    assert_eq!(err.output.as_deref(), Some("reading the order book\norder 17 has no lines\n"));
    assert!(err.to_string().ends_with("; plugin output: reading the order book\norder 17 has no lines"), "{err}");
    // None of it leaks into the next call.
    assert!(p.transform(forecast("h3")).is_ok());
    let err = p.transform(asked("recurse")).unwrap_err();
    assert_eq!(err.output, None, "{err}");
}

#[test]
fn a_log_flood_is_cut_and_counted_and_the_call_still_works() {
    let rt = runtime();
    let plugin = rt.load_file(&plugin("hostile")).unwrap();
    let p = rt.bind(plugin, PluginContext::new("hostile")).unwrap();
    let flood = asked("log-flood").with_header("lines", "5000").with_header("line-bytes", "65536");
    let (out, report) = p.transform_reported(flood);
    assert_eq!(out.unwrap()[0].header("seen-by"), Some("hostile"));
    assert!(report.logs_dropped >= 4000, "{report:?}");
    assert_eq!(rt.logs().dropped(), vec![("hostile".to_string(), report.logs_dropped)]);
}

#[test]
fn an_output_past_the_limit_fails_the_call() {
    let p = hostile(Limits { output: 4 << 20, ..Limits::default() });
    let err = p.transform(asked("big-output").with_header("copies", "20").with_header("bytes", "1048576")).unwrap_err();
    match &err.failure {
        Failure::OutputLimit { limit, size } => {
            assert_eq!(*limit, 4 << 20);
            assert!(*size > *limit);
        }
        other => panic!("expected the output limit, got {other:?}"),
    }
    assert!(err.to_string().contains("more than its output limit of 4 MiB"), "{err}");
    assert!(!err.failure.is_retryable());
    // Under the limit the same plugin answers.
    let out = p.transform(asked("big-output").with_header("copies", "2").with_header("bytes", "1000")).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn a_downstream_stalling_mid_body_is_bounded_by_the_request_timeout_and_the_call_limit() {
    let stalled = || {
        let mut r = StubResponse::new(200, &"z".repeat(1000));
        r.stall_after = Some(10);
        StubServer::start(vec![r]).unwrap()
    };
    let sink = |url: String, timeout_ms: &str, limit: Duration| {
        let rt = runtime();
        let p = rt.load_file(&plugin("http-sink")).unwrap();
        let mut ctx = PluginContext::new("http-sink");
        ctx.config.insert("url".into(), url.clone());
        ctx.config.insert("timeout-ms".into(), timeout_ms.into());
        ctx.allowed_hosts = vec![url.trim_start_matches("http://").split('/').next().unwrap().to_string()];
        ctx.limits = Limits { timeout: limit, ..Limits::default() };
        rt.bind(p, ctx).unwrap()
    };
    // The request's own timeout (1 s) is the smaller: the plugin gets a
    // timeout for that request and says it is retryable.
    let stub = stalled();
    let p = sink(format!("{}/po", stub.url()), "1000", Duration::from_secs(2));
    let (outcomes, elapsed) = within(Duration::from_secs(60), "a delivery to a stalled server", move || {
        let started = std::time::Instant::now();
        (p.deliver(vec![forecast("s1")]).unwrap(), started.elapsed())
    });
    eprintln!("a stalled body ended a 1 s request after {elapsed:?}");
    match &outcomes[0] {
        DeliveryOutcome::Retryable { reason, .. } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
    assert_eq!(stub.received().len(), 1);
    // The call's limit (1 s) is the smaller: the call is stopped whole.
    let stub = stalled();
    let p = sink(format!("{}/po", stub.url()), "60000", Duration::from_secs(1));
    let (result, report) = within(Duration::from_secs(60), "a delivery to a stalled server", move || p.deliver_reported(vec![forecast("s2")]));
    assert_eq!(result.unwrap_err().failure, Failure::Timeout(Duration::from_secs(1)));
    assert_eq!(report.http_requests, 1, "the call says it had sent a request");
}

/// Real in-memory state that also records each commit it is handed.
#[derive(Default)]
struct RecordedState {
    state: syncline::runtime::MemoryState,
    commits: std::sync::Mutex<Vec<syncline::runtime::state::Writes>>,
}

impl StateStore for RecordedState {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.state.get(tenant, plugin, key)
    }
    fn used(&self, tenant: &str, plugin: &str) -> usize {
        self.state.used(tenant, plugin)
    }
    fn quota(&self) -> usize {
        self.state.quota()
    }
    fn commit(&self, tenant: &str, plugin: &str, writes: syncline::runtime::state::Writes) -> Result<(), String> {
        self.commits.lock().unwrap().push(writes.clone());
        self.state.commit(tenant, plugin, writes)
    }
}

#[test]
fn a_state_flood_is_one_write_per_key_and_a_trapped_call_writes_nothing() {
    let rt = runtime();
    let recorded = Arc::new(RecordedState::default());
    let mut ctx = PluginContext::new("hostile");
    ctx.state = recorded.clone();
    // About what is written, not how fast: a million host calls in a debug
    // build on a busy machine may take longer than the default 5 s.
    ctx.limits = Limits { timeout: Duration::from_secs(120), ..Limits::default() };
    let p = rt.bind(rt.load_file(&plugin("hostile")).unwrap(), ctx).unwrap();
    let tenant = forecast("x").tenant.clone();

    // A million sets of one key and 500 of others: one commit, 501 writes.
    let out = p.transform(asked("state-flood").with_header("writes", "1000000").with_header("keys", "500")).unwrap();
    assert_eq!(out[0].header("state-refused"), Some(""), "{:?}", out[0].headers);
    let commits = recorded.commits.lock().unwrap().clone();
    assert_eq!(commits.len(), 1, "one commit for the whole call");
    assert_eq!(commits[0].len(), 501);
    assert_eq!(recorded.get(&tenant, "hostile", "hot").as_deref(), Some(&b"1000000"[..]), "the last value wins");

    // Past the keys a call may write, `set` is refused and the call goes on.
    let out = p.transform(asked("state-flood").with_header("writes", "1").with_header("keys", "20000")).unwrap();
    let refused = out[0].header("state-refused").unwrap_or_default();
    assert!(refused.contains("at most 10000 distinct state keys"), "{refused}");
    assert_eq!(recorded.commits.lock().unwrap().len(), 2);

    // Past the quota, `set` is refused too.
    let big = asked("state-flood").with_header("writes", "0").with_header("keys", "200000");
    let mut quota_ctx = PluginContext::new("hostile");
    quota_ctx.state = Arc::new(syncline::runtime::MemoryState::with_quota(1000));
    let small = rt.bind(rt.load_file(&plugin("hostile")).unwrap(), quota_ctx).unwrap();
    let refused = small.transform(big).unwrap()[0].header("state-refused").unwrap_or_default().to_string();
    assert!(refused.contains("state quota of 1000 bytes"), "{refused}");

    // A call that writes and then traps leaves the state as it was.
    let before = recorded.get(&tenant, "hostile", "hot");
    let err = p.transform(asked("state-flood").with_header("writes", "5").with_header("keys", "3").with_header("then", "panic")).unwrap_err();
    assert!(matches!(err.failure, Failure::Trap(_)), "{err}");
    assert_eq!(recorded.commits.lock().unwrap().len(), 2, "a trapped call commits nothing");
    assert_eq!(recorded.get(&tenant, "hostile", "hot"), before);

    // A call that runs out of time after writing leaves nothing either.
    let mut slow_ctx = PluginContext::new("hostile");
    slow_ctx.state = recorded.clone();
    slow_ctx.limits = Limits { timeout: Duration::from_millis(200), ..Limits::default() };
    let slow = rt.bind(rt.load_file(&plugin("hostile")).unwrap(), slow_ctx).unwrap();
    let err = slow.transform(asked("state-flood").with_header("writes", "1000000000")).unwrap_err();
    assert_eq!(err.failure, Failure::Timeout(Duration::from_millis(200)), "{err}");
    assert_eq!(recorded.commits.lock().unwrap().len(), 2, "a timed-out call commits nothing");
    assert_eq!(recorded.get(&tenant, "hostile", "hot"), before);
}

/// A downstream that closes each keep-alive connection shortly after
/// answering, without saying so (as servers with a short keep-alive timeout
/// do): the connection the sink pooled between two calls is gone when the
/// next call comes, and that call must still be delivered, not failed.
#[test]
fn a_keep_alive_connection_the_downstream_closed_between_calls_is_not_a_failure() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request (head and body), one answer, then the close.
                loop {
                    let Ok(n) = stream.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + length {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
                std::thread::sleep(Duration::from_millis(50));
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    let rt = runtime();
    let p = rt.load_file(&plugin("http-sink")).unwrap();
    let mut ctx = PluginContext::new("http-sink");
    ctx.config.insert("url".into(), format!("http://{addr}/requisitions"));
    ctx.allowed_hosts = vec![addr.to_string()];
    let sink = rt.bind(p, ctx).unwrap();
    for round in 0..3 {
        let out = sink.deliver(vec![forecast(&format!("m{round}"))]).unwrap();
        assert!(matches!(out[0], DeliveryOutcome::Delivered { .. }), "round {round}: {out:?}");
        // The server closes the connection meanwhile.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(served.load(Ordering::SeqCst), 3);
}
