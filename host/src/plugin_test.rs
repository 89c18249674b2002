//! `syncline test`: runs one plugin against golden cases, with no server.
//!
//! A case is a JSON file in the cases folder:
//!
//! ```json
//! {
//!   "description": "rounds up to the MOQ",
//!   "config": {"url": "{{stub}}/requisitions"},
//!   "tables": {"moq": "moq.csv"},
//!   "responses": [{"status": 201, "body": "{\"id\":\"PR-1\"}"}],
//!   "input": { ...message... },          // or "inputs": [...], or "cursor": "..."
//!   "expect": {"outputs": [...]}         // or violations, error, outcomes, batch, requests
//! }
//! ```
//!
//! Table paths are relative to the case file. `{{stub}}` in config values is
//! replaced by the URL of a loopback HTTP stub answering `responses` in turn
//! (in arrival order: a case about which answer goes to which message sends
//! one request at a time, e.g. http-sink with `"concurrency": "1"`),
//! and the stub's address is then an allowed host. Input messages get
//! deterministic envelope defaults (tenant `test`, id `<case>-<n>`, ...).
//! Expected messages are compared on the envelope fields they state and on
//! their whole body.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use syncline_model::table::RefTable;
use syncline_model::{json as mjson, Message};

use crate::runtime::{flatten_config, CallError, Limits, Plugin, PluginContext, Runtime, World};
use crate::stub_http::{StubResponse, StubServer};

/// A case file (also what `syncline capture` writes).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Case {
    /// What it checks.
    #[serde(default)]
    pub description: String,
    /// The plugin's config.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Reference tables by name: files relative to the case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, String>,
    /// Hosts outbound HTTP may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// The stub's answers, in turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<StubResponse>,
    /// Limits for the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CaseLimits>,
    /// One input message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A batch (allocate, deliver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<Value>>,
    /// A source's cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// What must come out.
    pub expect: Expect,
}

/// A case's limits.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CaseLimits {
    /// Wall time of the call.
    pub timeout_ms: Option<u64>,
    /// Memory of the instance.
    pub memory_mb: Option<usize>,
}

/// What a case expects; the fields given are checked.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expect {
    /// Output messages (envelope fields stated, whole body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Value>>,
    /// A validator's violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Value>>,
    /// A sink's outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Vec<Value>>,
    /// A source's batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Value>,
    /// An error: the keys given (`code`, `message`, `retryable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Map<String, Value>>,
    /// The HTTP requests made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Vec<Value>>,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// Case name (file name without `.json`).
    pub name: String,
    /// What the case says it checks.
    pub description: String,
    /// `None` when it passed; otherwise a readable explanation with a diff.
    pub failure: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// The case files in `dir`, sorted.
///
/// # Errors
///
/// When the folder cannot be read or has no case files.
pub fn case_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read cases folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no case files (*.json) in {}", dir.display());
    }
    Ok(files)
}

/// Runs every case in `dir` against `plugin`.
///
/// # Errors
///
/// Only when the folder cannot be read; a broken case is a failed case.
pub fn run_cases(runtime: &Runtime, plugin: &Arc<Plugin>, dir: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    for file in case_files(dir)? {
        let name = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let started = Instant::now();
        let (description, failure) = match run_case(runtime, plugin, &file, &name) {
            Ok((description, failure)) => (description, failure),
            Err(e) => (description_of(&file), Some(format!("the case could not run: {e:#}"))),
        };
        results.push(CaseResult { name, description, failure, elapsed: started.elapsed() });
    }
    Ok(results)
}

/// The `description` of a case file that could not be run, if it has one.
fn description_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    value.get("description").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn substitute(value: &mut Value, stub: &str) {
    match value {
        Value::String(s) if s.contains("{{stub}}") => *s = s.replace("{{stub}}", stub),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, stub)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, stub)),
        _ => {}
    }
}

/// Fills the envelope fields a case left out, deterministically.
fn input_message(mut value: Value, case: &str, n: usize) -> anyhow::Result<Message> {
    let obj = value.as_object_mut().context("an input must be a JSON object (a message)")?;
    let id = format!("{case}-{n}");
    for (key, default) in [
        ("schema-version", syncline_model::SCHEMA_VERSION.to_string()),
        ("id", id.clone()),
        ("correlation-id", format!("corr-{id}")),
        ("tenant", "test".to_string()),
        ("source-system", "test".to_string()),
        ("occurred-at", "2026-01-01T00:00:00Z".to_string()),
    ] {
        obj.entry(key).or_insert(Value::String(default));
    }
    Ok(mjson::from_value(value)?)
}

fn error_json(e: &CallError) -> Value {
    let (code, message, retryable) = match &e.failure {
        crate::runtime::Failure::Plugin(p) => (p.code.clone(), p.message.clone(), p.retryable),
        other => (other.code().to_string(), e.to_string(), other.is_retryable()),
    };
    json!({"code": code, "message": message, "retryable": retryable})
}

/// Keeps only the envelope keys the expected message states; the body,
/// kind and schema version are always compared.
fn project(actual: &Value, expected: &Value) -> Value {
    let (Some(a), Some(e)) = (actual.as_object(), expected.as_object()) else { return actual.clone() };
    let always = ["kind", "body", "schema-version"];
    Value::Object(a.iter().filter(|(k, _)| always.contains(&k.as_str()) || e.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn project_all(actual: &[Value], expected: &[Value]) -> Vec<Value> {
    actual.iter().enumerate().map(|(i, a)| expected.get(i).map_or(a.clone(), |e| project(a, e))).collect()
}

/// Normalizes an expected message the way inputs are read, so a case may
/// leave out what the model defaults (e.g. `priority`).
fn normalize_expected(v: &Value) -> Value {
    let mut full = v.clone();
    if let Some(o) = full.as_object_mut() {
        o.entry("schema-version").or_insert(json!(syncline_model::SCHEMA_VERSION));
    }
    match mjson::from_value(full) {
        Ok(m) => project(&mjson::to_value(&m), v),
        Err(_) => v.clone(),
    }
}

fn diff(what: &str, expected: &Value, actual: &Value) -> Option<String> {
    if expected == actual {
        return None;
    }
    let e = serde_json::to_string_pretty(expected).unwrap();
    let a = serde_json::to_string_pretty(actual).unwrap();
    let d = similar::TextDiff::from_lines(&e, &a);
    Some(format!("{what} differ (- expected, + actual):\n{}", d.unified_diff().context_radius(3)))
}

/// Whether every key of `expected` matches `actual` (objects recursively;
/// `*-contains` keys match substrings of the key without the suffix).
fn subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, ev)| match k.strip_suffix("-contains") {
            Some(base) => a.get(base).and_then(Value::as_str).zip(ev.as_str()).is_some_and(|(a, e)| a.contains(e)),
            None => a.get(k).is_some_and(|av| subset(ev, av)),
        }),
        (e, a) => e == a,
    }
}

fn run_case(runtime: &Runtime, plugin: &Arc<Plugin>, file: &Path, name: &str) -> anyhow::Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(file)?;
    let mut case: Case = {
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    };
    let dir = file.parent().unwrap_or(Path::new("."));

    let stub = if case.responses.is_empty() { None } else { Some(StubServer::start(std::mem::take(&mut case.responses))?) };
    let mut config = Value::Object(case.config);
    let mut allowed = case.allowed_hosts.clone();
    if let Some(stub) = &stub {
        substitute(&mut config, &stub.url());
        if allowed.is_empty() {
            allowed.push(stub.addr.to_string());
        }
    }

    let mut ctx = PluginContext::new(plugin.name.clone());
    ctx.config = flatten_config(&config);
    ctx.allowed_hosts = allowed;
    for (table, path) in &case.tables {
        let path = dir.join(path);
        let text = std::fs::read_to_string(&path).with_context(|| format!("table `{table}`: cannot read {}", path.display()))?;
        let t = RefTable::from_csv(&text).map_err(|e| anyhow::anyhow!("table `{table}` ({}): {e}", path.display()))?;
        ctx.tables.insert(table.clone(), Arc::new(t));
    }
    let mut limits = Limits { instances: 1, ..Limits::default() };
    if let Some(l) = &case.limits {
        if let Some(t) = l.timeout_ms {
            limits.timeout = Duration::from_millis(t);
        }
        if let Some(m) = l.memory_mb {
            limits.memory = m << 20;
        }
    }
    ctx.limits = limits;
    let instance = runtime.bind(plugin.clone(), ctx)?;

    let mut inputs = Vec::new();
    for (n, v) in case.input.into_iter().chain(case.inputs.into_iter().flatten()).enumerate() {
        inputs.push(input_message(v, name, n).with_context(|| format!("input {n}"))?);
    }
    let needs_input = !matches!(plugin.world, World::Source);
    if needs_input && inputs.is_empty() {
        bail!("the case has no `input` or `inputs`");
    }

    let expect = case.expect;
    let mut problems = Vec::new();
    fn check(problems: &mut Vec<String>, what: &str, expected: Value, actual: Value) {
        if let Some(d) = diff(what, &expected, &actual) {
            problems.push(d);
        }
    }
    let outcome: Result<Value, CallError> = match plugin.world {
        World::Transformer => {
            let mut all = Vec::new();
            let mut err = None;
            for m in inputs {
                match instance.transform(m) {
                    Ok(out) => all.extend(out.iter().map(mjson::to_value)),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            err.map_or(Ok(Value::Array(all)), Err)
        }
        World::Validator => {
            let mut all = Vec::new();
            let mut err = None;
            for m in inputs {
                match instance.validate(m) {
                    Ok(violations) => all.extend(violations.into_iter().map(|v| serde_json::to_value(v).unwrap())),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            err.map_or(Ok(Value::Array(all)), Err)
        }
        World::Allocator => instance.allocate(inputs).map(|out| Value::Array(out.iter().map(mjson::to_value).collect())),
        World::Sink => instance.deliver(inputs).map(|out| serde_json::to_value(out).unwrap()),
        World::Source => instance.poll("test", case.cursor.as_deref()).map(|b| {
            json!({
                "messages": b.messages.iter().map(mjson::to_value).collect::<Vec<_>>(),
                "cursor": b.cursor,
                "more": b.more,
            })
        }),
    };

    match (outcome, &expect.error) {
        (Err(e), Some(expected)) => {
            let actual = error_json(&e);
            if !subset(&Value::Object(expected.clone()), &actual) {
                check(&mut problems, "errors", Value::Object(expected.clone()), actual);
            }
        }
        (Err(e), None) => problems.push(format!("the plugin failed: {e}")),
        (Ok(actual), Some(expected)) => {
            problems.push(format!("expected the error {}, but the plugin returned {}", Value::Object(expected.clone()), actual))
        }
        (Ok(actual), None) => {
            let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
            if let Some(expected) = &expect.outputs {
                let expected: Vec<Value> = expected.iter().map(normalize_expected).collect();
                check(&mut problems, "outputs", Value::Array(expected.clone()), Value::Array(project_all(&list(&actual), &expected)));
            }
            if let Some(expected) = &expect.violations {
                check(&mut problems, "violations", Value::Array(expected.clone()), actual.clone());
            }
            if let Some(expected) = &expect.outcomes {
                let all_match = list(&actual).len() == expected.len() && expected.iter().zip(list(&actual).iter()).all(|(e, a)| subset(e, a));
                if !all_match {
                    check(&mut problems, "outcomes", Value::Array(expected.clone()), actual.clone());
                }
            }
            if let Some(expected) = &expect.batch {
                let (mut expected, mut actual) = (expected.clone(), actual.clone());
                if let Some(e) = expected.get_mut("messages") {
                    let normalized: Vec<Value> = list(e).iter().map(normalize_expected).collect();
                    if let Some(a) = actual.get_mut("messages") {
                        *a = Value::Array(project_all(&list(a), &normalized));
                    }
                    *e = Value::Array(normalized);
                }
                check(&mut problems, "batch", expected, actual);
            }
            if expect.outputs.is_none() && expect.violations.is_none() && expect.outcomes.is_none() && expect.batch.is_none() && expect.requests.is_none() {
                problems.push("the case's `expect` states nothing to check".into());
            }
        }
    }
    if let Some(expected) = &expect.requests {
        let received: Vec<Value> = stub.as_ref().map(|s| s.received()).unwrap_or_default().into_iter().map(|r| serde_json::to_value(r).unwrap()).collect();
        let matches = expected.len() == received.len() && expected.iter().zip(&received).all(|(e, a)| subset(e, a));
        if !matches {
            check(&mut problems, "requests", Value::Array(expected.clone()), Value::Array(received));
        }
    }
    Ok((case.description, if problems.is_empty() { None } else { Some(problems.join("\n")) }))
}

/// Writes the results as JUnit XML (one suite named after the plugin).
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_junit(plugin: &Plugin, results: &[CaseResult], path: &Path) -> anyhow::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("syncline-test:{}", plugin.name));
    for r in results {
        let status = match &r.failure {
            None => TestCaseStatus::success(),
            Some(f) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(f.lines().next().unwrap_or_default().to_string()).set_description(f.clone());
                s
            }
        };
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_time(r.elapsed).set_classname(format!("{}@{}", plugin.name, plugin.short_digest()));
        suite.add_test_case(case);
    }
    let mut report = Report::new("syncline test");
    report.add_test_suite(suite);
    std::fs::write(path, report.to_string()?).with_context(|| format!("cannot write {}", path.display()))
}
