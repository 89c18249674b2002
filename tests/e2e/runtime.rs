//! The runtime against hostile plugins: each failure is a clear error naming
//! plugin, digest and cause, and the host (and the same plugin) keeps working.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncline::runtime::{CacheOutcome, Failure, Limits, LoadError, PluginContext, World};
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
    let stub = StubServer::start(vec![StubResponse { status: 200, headers: Default::default(), body: String::new(), delay_ms: 0 }]).unwrap();
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
    for w in workers {
        assert!(matches!(w.join().unwrap().failure, Failure::Timeout(_)));
    }
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
