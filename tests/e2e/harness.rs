//! Real processes for end-to-end tests: `syncline run` on a config in a
//! temporary folder, and `erp-sim`, both on loopback ports they pick
//! themselves, with helpers to talk to them over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// A test config: the common head (loopback on a free port, the store in
/// `data/`, plugins in `plugins/`, the shared compile cache, tenant `acme`)
/// followed by `$rest`. `{ERP}` and `{CACHE}` are filled in by [`Site`].
#[macro_export]
macro_rules! site_config {
    ($rest:literal) => {
        concat!(
            "version = 1\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"data/syncline.db\"\nsync = \"normal\"\n\n",
            "[plugins]\ndir = \"plugins\"\ncache-dir = \"{CACHE}\"\n\n[[tenant]]\nid = \"acme\"\n",
            $rest
        )
    };
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An HTTP answer: status and JSON body (`Null` when not JSON).
pub fn send(method: &str, url: &str, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let agent = agent();
    let result = match method {
        "GET" => {
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = agent.post(url).header("content-type", content_type);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body)
        }
    };
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// A canonical replenishment recommendation for tenant acme's tests: item
/// SKU-100 at DC-1, 5 EA from supplier SUP-7, keyed by `id`.
pub fn recommendation(id: &str) -> Value {
    serde_json::json!({"schema-version": "1.0.0", "kind": "replenishment-recommendation", "idempotency-key": id,
           "body": {"id": id, "item": "SKU-100", "location": "DC-1", "quantity": 5.0, "uom": "EA", "need-by": "2026-12-21",
                    "source": {"supplier": "SUP-7"}, "reason": "below-safety-stock", "priority": 2}})
}

/// The file `name` on `PATH` (a command the project's setup installs).
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// GET `url` as text (e.g. `/metrics`).
pub fn get_text(url: &str) -> String {
    agent().get(url).call().map(|mut r| r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

/// GET `url` as JSON.
pub fn get(url: &str) -> (u16, Value) {
    send("GET", url, "", &[], b"")
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a child, reads its output until a line contains `marker`, and
/// keeps collecting the rest. Returns the marker line.
pub(crate) fn spawn_until(mut cmd: Command, marker: &str, from_stderr: bool, log: Arc<Mutex<String>>) -> (Child, String) {
    if from_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn");
    let out: Box<dyn std::io::Read + Send> =
        if from_stderr { Box::new(child.stderr.take().unwrap()) } else { Box::new(child.stdout.take().unwrap()) };
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if !sent && line.contains(&wanted) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            panic!("the process did not print `{marker}`; it printed:\n{}", seen.lock().unwrap());
        }
    }
}

fn address(line: &str) -> String {
    let i = line.find("http://").expect("an address");
    line[i..].split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_string()
}

/// A running simulated ERP.
pub struct Erp {
    child: Child,
    /// Base URL.
    pub url: String,
    /// `host:port`.
    pub authority: String,
}

impl Erp {
    /// Starts `erp-sim` on a free port, with extra arguments.
    pub fn start(args: &[&str]) -> Erp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_erp-sim"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let (child, line) = spawn_until(cmd, "listening", false, Arc::default());
        let url = address(&line);
        let authority = url.trim_start_matches("http://").to_string();
        Erp { child, url, authority }
    }

    /// What it received (`/_admin/received?keys=true`).
    pub fn received(&self) -> Value {
        get(&format!("{}/_admin/received?keys=true", self.url)).1
    }

    /// Every document it holds, in the order received: `{path,
    /// correlation-id, body}` (a body in another format than JSON is
    /// `{content-type, text}`).
    pub fn documents(&self) -> Vec<Value> {
        let keys: Vec<String> = self.received()["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        keys.iter()
            .map(|k| {
                let encoded: String = k.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
                get(&format!("{}/_admin/record/{encoded}", self.url)).1["record"].clone()
            })
            .collect()
    }

    /// Number of distinct documents it holds.
    pub fn unique(&self) -> u64 {
        self.received()["unique"].as_u64().unwrap_or(0)
    }

    /// Sets its failure mode.
    pub fn mode(&self, mode: &str, times: Option<u64>) {
        let body = match times {
            Some(t) => format!(r#"{{"mode": "{mode}", "times": {t}}}"#),
            None => format!(r#"{{"mode": "{mode}"}}"#),
        };
        let (status, _) = send("POST", &format!("{}/_admin/mode", self.url), "application/json", &[], body.as_bytes());
        assert_eq!(status, 204);
    }
}

impl Drop for Erp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `path` the way deploy tools do: write a temporary file next to
/// it, then rename it over the old one.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A folder with a config, plugins and data for `syncline run`.
pub struct Site {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A site whose config is `config` (`{ERP}` replaced by the ERP's
    /// authority), with the standard plugins in `plugins/shared/` and the
    /// example's reference tables in `ref/`.
    pub fn new(config: &str, erp: &Erp) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("plugins/shared");
        std::fs::create_dir_all(&shared).unwrap();
        for p in ["json-mapper", "canonical-validator", "moq-leadtime", "http-sink", "http-source", "json-formatter", "csv-formatter", "channel-reconciler", "regional-allocator", "csv-mapper", "x12-formatter", "edifact-formatter"] {
            std::fs::copy(plugin(p), shared.join(format!("{p}.wasm"))).unwrap();
        }
        let refs = dir.path().join("ref");
        std::fs::create_dir_all(&refs).unwrap();
        for t in ["moq.csv", "lead-times.csv"] {
            std::fs::copy(root().join("examples/forecast-release/ref").join(t), refs.join(t)).unwrap();
        }
        let text = config.replace("{ERP}", &erp.authority).replace("{CACHE}", &root().join("target/test-cache").display().to_string());
        std::fs::write(dir.path().join("syncline.toml"), text).unwrap();
        Site { dir }
    }

    /// Rewrites the config (atomically), with `{ERP}`/`{CACHE}` filled in for `erp`.
    pub fn rewrite(&self, config: &str, erp: &Erp) {
        let text = config.replace("{ERP}", &erp.authority).replace("{CACHE}", &root().join("target/test-cache").display().to_string());
        replace_file(&self.config(), text.as_bytes());
    }

    /// Puts the built plugin `built` into `plugins/shared/` as `name`.
    pub fn share_plugin(&self, built: &str, name: &str) {
        std::fs::copy(plugin(built), self.dir.path().join(format!("plugins/shared/{name}.wasm"))).unwrap();
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("syncline.toml")
    }
}

/// A running `syncline run`.
pub struct Host {
    child: Option<Child>,
    /// Base URL.
    pub url: String,
    /// Everything it logged.
    pub log: Arc<Mutex<String>>,
}

impl Host {
    /// Starts `syncline run` on the site's config and waits until it listens.
    pub fn start(site: &Site) -> Host {
        Host::start_config(&site.config())
    }

    /// Starts `syncline run` on a config file.
    pub fn start_config(config: &Path) -> Host {
        Host::start_args(config, &[])
    }

    /// Starts `syncline run CONFIG ARGS...`.
    pub fn start_args(config: &Path, args: &[&str]) -> Host {
        Host::start_env(config, args, &[])
    }

    /// Starts `syncline run CONFIG ARGS...` with `env` set besides.
    pub fn start_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline"));
        cmd.arg("run").arg(config).args(args).env("SYNCLINE_LOG", "info,syncline::delivery=debug").env("ERP_TOKEN", "test-token");
        cmd.envs(env.iter().copied());
        let log = Arc::new(Mutex::new(String::new()));
        // The log line (text or JSON) saying where it listens.
        let (child, line) = spawn_until(cmd, "listening on http://", true, log.clone());
        Host { child: Some(child), url: address(&line), log }
    }

    /// POSTs to a pipeline's ingest endpoint (`suffix` is `messages` or `messages:batch`).
    pub fn ingest(&self, tenant: &str, pipeline: &str, suffix: &str, content_type: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        send("POST", &format!("{}/v1/tenants/{tenant}/pipelines/{pipeline}/{suffix}", self.url), content_type, headers, body)
    }

    /// The trace of a message.
    pub fn trace(&self, id: &str) -> (u16, Value) {
        get(&format!("{}/v1/messages/{id}", self.url))
    }

    /// Waits until message `id`'s outputs are all delivered (or it ended
    /// without outputs), and returns its trace. On a timeout the panic
    /// shows the last trace seen (where the message was waiting).
    pub fn settled(&self, id: &str) -> Value {
        let mut last = Value::Null;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, t) = self.trace(id);
            if status == 200 && t["input"]["state"] != "accepted" {
                let pending = t["outputs"].as_array().into_iter().flatten().any(|o| o["state"] == "pending");
                if !pending {
                    return t;
                }
            }
            last = if status == 200 { t } else { last };
            assert!(Instant::now() < until, "timed out after 30s waiting for message {id} to settle; last trace: {last}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The reload history (`GET /v1/reloads`).
    pub fn reloads(&self) -> Vec<Value> {
        get(&format!("{}/v1/reloads", self.url)).1["reloads"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for reload number `n` (1-based) and returns it.
    pub fn reload_number(&self, n: usize) -> Value {
        eventually(Duration::from_secs(30), &format!("reload #{n}"), || self.reloads().get(n - 1).cloned())
    }

    /// Waits until `n` reloads have been applied (ignoring reloads that
    /// found nothing to change) and returns the `n`th applied or rejected one.
    pub fn effective_reload(&self, n: usize) -> Value {
        eventually(Duration::from_secs(30), &format!("effective reload #{n}"), || {
            self.reloads().into_iter().filter(|r| r["outcome"] != "unchanged").nth(n - 1)
        })
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
    }

    /// Kills it with SIGKILL (no chance to finish anything).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > until {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the syncline log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
