//! Shared setup: builds the plugins once per test run, finds the binary,
//! makes runtimes and messages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use syncline::runtime::{EngineOptions, Runtime};
use syncline_model::{Body, Forecast, Granularity, Message, TimeBucket};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Builds every guest crate (installing the wasm32-wasip2 target if
/// missing) once, and returns the folder of built plugins.
pub fn plugins_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(root().join("scripts/build-plugins")).output().expect("run scripts/build-plugins");
        assert!(
            out.status.success(),
            "building the plugins failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        root().join("target/plugins")
    })
}

/// Path of a built plugin by name (e.g. `http-sink`).
pub fn plugin(name: &str) -> PathBuf {
    let p = plugins_dir().join(format!("{name}.wasm"));
    assert!(p.exists(), "no plugin {}", p.display());
    p
}

/// A runtime with its compile cache in `cache` (or none).
pub fn runtime_with(cache: Option<&Path>) -> Runtime {
    Runtime::new(&EngineOptions { total_instances: 64 }, cache).expect("runtime")
}

/// A runtime without an on-disk cache.
pub fn runtime() -> Runtime {
    runtime_with(None)
}

/// The `syncline` binary.
pub fn syncline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_syncline"))
}

/// A small valid forecast for tenant `acme`.
pub fn forecast(id: &str) -> Message {
    let mut m = Message::new(Body::Forecast(Forecast {
        item: "SKU-1".into(),
        location: "DC-1".into(),
        bucket: TimeBucket { start: "2026-12-07".into(), granularity: Granularity::Week },
        quantity: 10.0,
        uom: "EA".into(),
        forecast_version: "v1".into(),
        scenario: "baseline".into(),
        channel: "retail".into(),
        source_engine: "stat".into(),
        extensions: vec![],
    }));
    m.id = id.into();
    m.tenant = "acme".into();
    m.correlation_id = format!("corr-{id}");
    m
}

/// Runs `f` on its own thread and returns its result, failing the test if
/// it has not returned after `bound` — a liveness check for calls that
/// must not hang (the bound is far above any limit under test; it is not
/// a timing assertion).
pub fn within<T: Send + 'static>(bound: std::time::Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within {bound:?}"),
    }
}
