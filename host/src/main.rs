//! The `syncline` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use syncline::plugin_test;
use syncline::runtime::{CompileCache, EngineOptions, Plugin, Runtime, World};
use syncline::scaffold;

/// jemalloc instead of glibc's allocator: the host allocates and frees many
/// small buffers per message on several threads, where glibc's malloc was
/// about 15 % of its CPU (docs/benchmarks-analysis.md has the measurement).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Syncline: the integration host between ERP and demand planning.
#[derive(Parser)]
#[command(name = "syncline", version, about)]
struct Cli {
    /// Where compiled plugins are cached (default: $SYNCLINE_CACHE_DIR or ~/.cache/syncline/compiled).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not use the on-disk compile cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Log lines on stderr: `text` (colored only on a terminal) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value = "text", env = "SYNCLINE_LOG_FORMAT")]
    log_format: LogFormat,
    /// API token for commands that call a running host.
    #[arg(long, global = true, env = "SYNCLINE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, the event's fields (plugin, tenant, correlation id...) at its top level.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: HTTP ingest, pipelines, delivery, sources (until SIGTERM or Ctrl-C).
    Run {
        /// The config file.
        config: PathBuf,
        /// Do not watch the config and plugin folder (reload with SIGHUP or POST /v1/reload).
        #[arg(long)]
        no_watch: bool,
    },
    /// Check a config and every plugin and table it names, without starting anything.
    Check {
        /// The config file.
        config: PathBuf,
    },
    /// Run a plugin against golden cases, with no server; exits non-zero on a mismatch.
    Test {
        /// The plugin's .wasm file.
        plugin: PathBuf,
        /// Folder of case files (*.json).
        #[arg(long, value_name = "DIR")]
        cases: PathBuf,
        /// Also write the results as JUnit XML.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Compile plugins into the compile cache ahead of time: every plugin a
    /// config names, or the given .wasm files (exits non-zero if one fails).
    Precompile {
        /// Configs (*.toml) and plugin files (*.wasm).
        #[arg(required = true, value_name = "CONFIG|PLUGIN")]
        targets: Vec<PathBuf>,
    },
    /// Show a plugin's world, versions, imports, exports, digest and size.
    Inspect {
        /// The plugin's .wasm file.
        plugin: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create things.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// Print the JSON Schema of canonical messages.
    Schema,
    /// Manage plugins of a running host.
    Plugin {
        #[command(subcommand)]
        what: PluginCmd,
    },
    /// A running host's sinks: queues, pauses, breakers; pause and resume.
    Sink {
        #[command(subcommand)]
        what: SinkCmd,
        /// The running host.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Work the exception queues of a running host: list, show, resolve, retry, discard.
    Exceptions {
        #[command(subcommand)]
        what: ExceptionCmd,
        /// The running host.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Work with the dead letters of a running host: list, show, replay, purge.
    Dlq {
        #[command(subcommand)]
        what: DlqCmd,
        /// The running host.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Record what a live stage's plugin is given and answers, as golden cases for `syncline test`.
    Capture {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// Pipeline.
        #[arg(long)]
        pipeline: String,
        /// Stage number (from 1).
        #[arg(long, default_value_t = 1)]
        stage: usize,
        /// How long to record: `30s`, `10m`.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Most cases.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// A field to replace by `[redacted]` in inputs and outputs (repeat): `body.source.supplier`.
        #[arg(long)]
        redact: Vec<String>,
        /// Folder to write the cases to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Make API tokens.
    Token {
        #[command(subcommand)]
        what: TokenCmd,
    },
    /// A running host's audit log: who did what and when.
    Audit {
        /// Kind: reload, denied, dead-letter-replayed, sink-paused, ...
        #[arg(long)]
        kind: Option<String>,
        /// Actor: `host` or `token:ID`.
        #[arg(long)]
        actor: Option<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// From this RFC 3339 time or this long ago (`1h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Before this RFC 3339 time or this long ago.
        #[arg(long)]
        until: Option<String>,
        /// Print every matching event as JSON Lines (an export).
        #[arg(long)]
        jsonl: bool,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Show where a message went: stages, plugin digests, timings, outputs, deliveries.
    Trace {
        /// Message id (an accepted message or one of its outputs).
        #[arg(required_unless_present = "correlation", conflicts_with = "correlation")]
        id: Option<String>,
        /// A whole flow instead: every message with this correlation id, as one timeline.
        #[arg(long, value_name = "ID")]
        correlation: Option<String>,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Print the JSON answer instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new random token once, and the `[[token]]` lines (its hash) for the config.
    New {
        /// Its name in the audit log: lower-case words separated by '-'.
        #[arg(long)]
        id: String,
        /// A tenant it may act for (repeat for several; `*` for every tenant).
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// admin, operator, publisher or reader (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ExceptionCmd {
    /// Open exceptions (or those of --state), oldest first, with their age and owner.
    List {
        /// Queue.
        #[arg(long)]
        queue: Option<String>,
        /// Tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Parked at least this long ago: `15m`, `2h`, `7d`.
        #[arg(long)]
        older_than: Option<String>,
        /// open (default), resolved, retried, discarded or all.
        #[arg(long)]
        state: Option<String>,
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// One exception with what is wrong and the parked message.
    Show {
        /// Its number.
        id: i64,
    },
    /// Fixed outside Syncline: close it with a comment.
    Resolve {
        /// Its number.
        id: i64,
        /// What was done.
        #[arg(long)]
        comment: String,
    },
    /// Process its message again through the current plugins (after a fix).
    Retry {
        /// Its number.
        id: i64,
        /// What changed.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Drop it for good, with a reason.
    Discard {
        /// Its number.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum SinkCmd {
    /// Each sink: pending deliveries, the oldest one's age, pause, maintenance window, breaker.
    List {
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Hold a sink's queue (messages keep queueing) until resumed; kept across restarts.
    Pause {
        /// Sink name.
        name: String,
        /// Why (shown with the sink, kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Let a paused sink's queue leave, in order.
    Resume {
        /// Sink name.
        name: String,
    },
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Dead letters, oldest first (open ones unless --state says otherwise).
    List {
        #[command(flatten)]
        filter: DlqFilter,
        /// Print the JSON answer instead of one line each.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter with every attempt and the message as it died.
    Show {
        /// Its number.
        id: i64,
    },
    /// Put dead letters back to work through the current plugins and sinks:
    /// one by number, or with --all every open one the filter matches.
    Replay {
        /// Its number.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every open dead letter the filter matches.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Take a dead letter off the open list for good, with a reason.
    Purge {
        /// Its number.
        id: i64,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Which dead letters.
#[derive(clap::Args)]
struct DlqFilter {
    /// Tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Pipeline.
    #[arg(long)]
    pipeline: Option<String>,
    /// Where they died, by prefix: `sink`, `sink erp`, `stage 2`.
    #[arg(long)]
    place: Option<String>,
    /// Text in the reason: `HTTP 422`, `trapped`, `timed out`.
    #[arg(long)]
    reason: Option<String>,
    /// Died at least this long ago: `15m`, `2h`, `7d`.
    #[arg(long)]
    older_than: Option<String>,
    /// open (default), replayed, purged or all.
    #[arg(long)]
    state: Option<String>,
}

impl DlqFilter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let fields = [
            ("tenant", &self.tenant),
            ("pipeline", &self.pipeline),
            ("place", &self.place),
            ("reason", &self.reason),
            ("older-than", &self.older_than),
            ("state", &self.state),
        ];
        fields.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))).collect()
    }
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Return a plugin to the version that ran before the current one, everywhere, in one step.
    Rollback {
        /// Plugin name.
        name: String,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Approve a plugin version to run (plugins.mode = "approved"); the running host reloads.
    Approve {
        /// Plugin name.
        name: String,
        /// Its digest (`syncline inspect` prints it).
        digest: String,
        /// What the review said (kept with the approval and in the audit log).
        #[arg(long)]
        note: Option<String>,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with = "config")]
        server: String,
        /// No host running yet: write the approval into the store of this config.
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
    },
    /// Withdraw a version's approval (a running version keeps running until replaced).
    Revoke {
        /// Plugin name.
        name: String,
        /// Its digest.
        digest: String,
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// The approved plugin versions of a running host.
    Approvals {
        /// The running host.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

#[derive(Subcommand)]
enum New {
    /// Scaffold a plugin project (Rust, Python or JavaScript) that builds and passes its sample case.
    Plugin {
        /// Plugin name: lower-case words separated by '-'.
        name: String,
        /// transformer, validator, allocator, source or sink.
        #[arg(long, value_parser = parse_world)]
        kind: World,
        /// The plugin's language: rust, python (componentize-py) or js (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// Parent folder (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the syncline-sdk crate (default: $SYNCLINE_SDK or the SDK in this source tree).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn parse_world(s: &str) -> Result<World, String> {
    World::parse(s).ok_or_else(|| format!("`{s}` is not a plugin kind; expected transformer, validator, allocator, source or sink"))
}

fn precompile(cli: &Cli, targets: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!cli.no_cache, "--no-cache leaves nothing to precompile into");
    let plan = syncline::precompile::plan(targets, cli.cache_dir.as_deref())?;
    let mut failed = 0;
    for w in syncline::precompile::warm(&plan)? {
        match w.result {
            Ok(c) => println!(
                "{} {} ({}, {}, {:.1} MiB) in {:.2} s",
                if c.cached { "cached  " } else { "compiled" },
                w.path.display(),
                c.world,
                &c.digest.trim_start_matches("sha256:")[..12],
                c.size as f64 / (1 << 20) as f64,
                c.elapsed.as_secs_f64()
            ),
            Err(e) => {
                failed += 1;
                println!("FAILED   {}: {e}", w.path.display());
            }
        }
    }
    if let Some((_, dir)) = plan.first() {
        println!("cache: {}", dir.display());
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn runtime(cli: &Cli) -> anyhow::Result<Runtime> {
    let dir = cli.cache_dir.clone().unwrap_or_else(CompileCache::default_dir);
    Runtime::new(&EngineOptions::default(), if cli.no_cache { None } else { Some(dir.as_path()) })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => syncline::telemetry::LogFormat::Text,
        LogFormat::Json => {
            syncline::server::JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            syncline::telemetry::LogFormat::Json
        }
    };
    let telemetry = match syncline::telemetry::Telemetry::init(format, matches!(cli.command, Command::Run { .. })) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot export spans: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    };
    telemetry.shutdown();
    code
}

/// The token calls of a running host send (from --token or $SYNCLINE_TOKEN).
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    TOKEN.get_or_init(|| cli.token.clone());
    match &cli.command {
        Command::Token { what: TokenCmd::New { id, tenants, roles } } => token_new(id, tenants, roles),
        Command::Capture { tenant, pipeline, stage, duration, max, redact, out, server } => {
            capture(&format!("/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture"), duration, *max, redact, out, server)
        }
        Command::Audit { kind, actor, tenant, since, until, jsonl, server } => {
            let fields = [("kind", kind), ("actor", actor), ("tenant", tenant), ("since", since), ("until", until)];
            let mut query: Vec<(&str, String)> = fields.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))).collect();
            if *jsonl {
                query.push(("format", "jsonl".into()));
                let (status, text) = api_text(server, "/v1/audit", &query)?;
                if status != 200 {
                    eprintln!("error: {}", serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|b| b["error"]["message"].as_str().map(str::to_string)).unwrap_or(text));
                    return Ok(ExitCode::FAILURE);
                }
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            query.push(("limit", "1000".into()));
            let (status, body) = api_request("GET", server, "/v1/audit", &query, None)?;
            if status != 200 {
                eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
                return Ok(ExitCode::FAILURE);
            }
            let rows: Vec<syncline::store::records::AuditRecord> = serde_json::from_value(body["events"].clone()).context("the server's audit log does not read as events")?;
            print!("{}", syncline::report::audit_lines(&rows));
            if let Some(next) = body["next"].as_i64() {
                println!("(more after {next}: narrow the filter, or export with --jsonl)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config, no_watch } => {
            syncline::server::run(config, cli.cache_dir.as_deref(), !no_watch)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => match syncline::server::check(config, cli.cache_dir.as_deref()) {
            Ok((cfg, plugins)) => {
                println!("{}: ok", config.display());
                println!("  {} tenants, {} pipelines, {} sinks", cfg.tenants.len(), cfg.pipelines.len(), cfg.sinks.len());
                for line in plugins {
                    println!("  plugin {line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e:#}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Test { plugin, cases, junit } => test(cli, plugin, cases, junit.as_deref()),
        Command::Precompile { targets } => precompile(cli, targets),
        Command::Inspect { plugin, json } => {
            let plugin = runtime(cli)?.load_file(plugin)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&inspect_json(&plugin))?);
            } else {
                print!("{}", inspect_text(&plugin));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::New { what: New::Plugin { name, kind, lang, dir, sdk } } => {
            let sdk = sdk.clone().unwrap_or_else(scaffold::default_sdk_path);
            let created = scaffold::new_plugin(dir, name, *kind, *lang, &sdk)?;
            println!("created {kind} plugin `{name}` in {}", created.display());
            println!("{}", scaffold::next_steps(&created, name, *lang));
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { id: None, correlation: Some(c), server, json } => {
            let (status, body) = api_call("GET", server, &format!("/v1/correlations/{c}"))?;
            if status != 200 {
                eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
                return Ok(ExitCode::FAILURE);
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let events: Vec<syncline::store::timeline::TimelineEntry> = serde_json::from_value(body["timeline"].clone()).context("the server's timeline does not read as one")?;
                print!("{}", syncline::report::timeline_lines(&events));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { id, server, json, .. } => {
            let id = id.as_deref().unwrap_or_default();
            let (status, body) = api_call("GET", server, &format!("/v1/messages/{id}"))?;
            if status != 200 {
                eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
                return Ok(ExitCode::FAILURE);
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let trace: syncline::store::records::Trace = serde_json::from_value(body).context("the server's trace does not read as one")?;
                print!("{}", syncline::report::trace_summary(&trace));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { what, server } => dlq(what, server),
        Command::Sink { what, server } => sink(what, server),
        Command::Exceptions { what, server } => exceptions(what, server),
        Command::Plugin { what } => plugin(what),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&syncline_model::schema::message_schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn test(cli: &Cli, path: &Path, cases: &Path, junit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let runtime = runtime(cli)?;
    let plugin = runtime.load_file(path)?;
    println!("testing {} ({} {}, {}) against {}", plugin.name, plugin.world, plugin.short_digest(), human(plugin.size), cases.display());
    let results = plugin_test::run_cases(&runtime, &plugin, cases)?;
    let mut failed = 0;
    for r in &results {
        match &r.failure {
            None => println!("  ok    {}  {}", r.name, r.description),
            Some(f) => {
                failed += 1;
                println!("  FAIL  {}  {}", r.name, r.description);
                for line in f.lines() {
                    println!("        {line}");
                }
            }
        }
    }
    if let Some(junit) = junit {
        plugin_test::write_junit(&plugin, &results, junit).context("writing JUnit XML")?;
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `syncline plugin`: rollback, approvals (each one API call, or an
/// approval written to the store of a config when no host runs yet).
fn plugin(what: &PluginCmd) -> anyhow::Result<ExitCode> {
    let failed = |body: &serde_json::Value| {
        eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
        Ok(ExitCode::FAILURE)
    };
    match what {
        PluginCmd::Rollback { name, server } => {
            let (status, body) = api_call("POST", server, &format!("/v1/plugins/{name}/rollback"))?;
            if status != 200 {
                return failed(&body);
            }
            for p in body["plugins"].as_array().into_iter().flatten() {
                println!("{} for {}: {} -> {}", p["plugin"].as_str().unwrap_or("?"), p["who"].as_str().unwrap_or("?"), p["old"].as_str().unwrap_or("?"), p["new"].as_str().unwrap_or("?"));
            }
        }
        PluginCmd::Approve { name, digest, note, config: Some(config), .. } => {
            let digest = syncline::approval::digest(digest).map_err(anyhow::Error::msg)?;
            let cfg = syncline::config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = syncline::server::open_store(&cfg.store)?;
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let record = syncline::store::records::Approval { plugin: name.clone(), digest: digest.clone(), by, at: syncline::store::now_ms(), note: note.clone() };
            syncline::approval::approve(store.as_ref(), &record)?;
            let place = match cfg.store.kind {
                syncline::config::StoreKind::Nats => cfg.store.url.clone().unwrap_or_default(),
                syncline::config::StoreKind::Sqlite => cfg.store.path.display().to_string(),
            };
            println!("approved {name} {digest} in {place}");
        }
        PluginCmd::Approve { name, digest, note, server, config: None } => {
            let (status, body) = api_request("POST", server, &format!("/v1/plugins/{name}/approve"), &[], Some(&serde_json::json!({"digest": digest, "note": note})))?;
            if status != 200 {
                return failed(&body);
            }
            println!("approved {name} {}; reload {}", body["approval"]["digest"].as_str().unwrap_or("?"), body["reload"]["outcome"].as_str().unwrap_or("?"));
            if let Some(error) = body["reload"]["error"].as_str() {
                println!("{error}");
            }
        }
        PluginCmd::Revoke { name, digest, server } => {
            let (status, body) = api_request("POST", server, &format!("/v1/plugins/{name}/revoke"), &[], Some(&serde_json::json!({"digest": digest})))?;
            if status != 200 {
                return failed(&body);
            }
            println!("revoked {name} {}", body["digest"].as_str().unwrap_or("?"));
        }
        PluginCmd::Approvals { server } => {
            let (status, body) = api_call("GET", server, "/v1/plugins/approvals")?;
            if status != 200 {
                return failed(&body);
            }
            println!("mode: {}", body["mode"].as_str().unwrap_or("?"));
            for a in body["approvals"].as_array().into_iter().flatten() {
                let note = a["note"].as_str().map(|n| format!("  \"{n}\"")).unwrap_or_default();
                println!("{}  {}  by {}{note}", a["plugin"].as_str().unwrap_or("?"), a["digest"].as_str().unwrap_or("?"), a["by"].as_str().unwrap_or("?"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncline capture`: starts a capture, collects its cases until it ends,
/// and writes each as a case file.
fn capture(path: &str, duration: &str, max: usize, redact: &[String], out: &Path, server: &str) -> anyhow::Result<ExitCode> {
    let (status, body) = api_request("POST", server, path, &[], Some(&serde_json::json!({"for": duration, "max": max, "redact": redact})))?;
    if status != 200 {
        eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
        return Ok(ExitCode::FAILURE);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    eprintln!("recording for {duration} (at most {max} calls)...");
    let (mut written, mut tables) = (0, std::collections::BTreeSet::new());
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (status, body) = api_call("GET", server, path)?;
        if status != 200 {
            eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
            return Ok(ExitCode::FAILURE);
        }
        let cases: Vec<syncline::plugin_test::Case> = serde_json::from_value(body["cases"].clone()).context("the server's cases do not read as cases")?;
        for case in cases {
            written += 1;
            tables.extend(case.tables.values().cloned());
            std::fs::write(out.join(format!("captured-{written:04}.json")), serde_json::to_string_pretty(&case)? + "\n")?;
        }
        if body["running"] != true {
            break;
        }
    }
    println!("wrote {written} case(s) to {}", out.display());
    if !tables.is_empty() {
        println!("copy the stage's tables next to them: {}", tables.into_iter().collect::<Vec<_>>().join(", "));
    }
    println!("check a new version against them: syncline test NEW.wasm --cases {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `syncline token new`: a token, printed once, and its config lines.
fn token_new(id: &str, tenants: &[String], roles: &[String]) -> anyhow::Result<ExitCode> {
    syncline::config::Name::try_from(id.to_string()).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    for r in roles {
        anyhow::ensure!(syncline::config::Role::parse(r).is_some(), "--role `{r}`: write admin, operator, publisher or reader");
    }
    let (token, hash) = syncline::config::new_token().map_err(anyhow::Error::msg)?;
    let list = |items: &[String]| items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    eprintln!("the token (shown once; hand it to its caller, who sends `Authorization: Bearer <token>`):");
    println!("{token}");
    eprintln!("\nadd to the config (only the hash is kept there):");
    println!("\n[[token]]\nid = \"{id}\"\nhash = \"{hash}\"\ntenants = [{}]\nroles = [{}]", list(tenants), list(roles));
    Ok(ExitCode::SUCCESS)
}

/// A GET of the running host's API answered as text.
fn api_text(server: &str, path: &str, query: &[(&str, String)]) -> anyhow::Result<(u16, String)> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(&url).query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(Some(token)) = TOKEN.get() {
        req = req.header("authorization", &format!("Bearer {token}"));
    }
    let mut resp = req.call().with_context(|| format!("cannot reach {server}"))?;
    Ok((resp.status().as_u16(), resp.body_mut().read_to_string().context("reading the answer")?))
}

/// Calls the API of a running host: (status, JSON body).
fn api_call(method: &str, server: &str, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    api_request(method, server, path, &[], None)
}

/// A call of the running host's API with query pairs and a JSON body.
fn api_request(method: &str, server: &str, path: &str, query: &[(&str, String)], body: Option<&serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = TOKEN.get().cloned().flatten().map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("POST", body) => {
            let mut req = agent.post(&url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            match body {
                Some(body) => req.send_json(body),
                None => req.send_empty(),
            }
        }
        _ => {
            let mut req = agent.get(&url).query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.call()
        }
    };
    let mut resp = resp.with_context(|| format!("cannot reach {server}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_json().context("reading the answer")?;
    Ok((status, body))
}

/// `syncline exceptions`: each subcommand is one API call; errors print the
/// server's message and exit 1.
fn exceptions(what: &ExceptionCmd, server: &str) -> anyhow::Result<ExitCode> {
    let settle = |id: &i64, action: &str, body: serde_json::Value| api_request("POST", server, &format!("/v1/exceptions/{id}/{action}"), &[], Some(&body));
    let (status, body) = match what {
        ExceptionCmd::List { queue, tenant, pipeline, older_than, state, .. } => {
            let fields = [("queue", queue), ("tenant", tenant), ("pipeline", pipeline), ("older-than", older_than), ("state", state)];
            let query: Vec<(&str, String)> = fields.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))).collect();
            api_request("GET", server, "/v1/exceptions", &query, None)?
        }
        ExceptionCmd::Show { id } => api_call("GET", server, &format!("/v1/exceptions/{id}"))?,
        ExceptionCmd::Resolve { id, comment } => settle(id, "resolve", serde_json::json!({"comment": comment}))?,
        ExceptionCmd::Retry { id, comment } => settle(id, "retry", serde_json::json!({"comment": comment}))?,
        ExceptionCmd::Discard { id, reason } => settle(id, "discard", serde_json::json!({"reason": reason}))?,
    };
    if status != 200 {
        eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
        return Ok(ExitCode::FAILURE);
    }
    match what {
        ExceptionCmd::List { json: false, .. } => print!("{}", syncline::report::exception_lines(&body)),
        ExceptionCmd::Resolve { id, .. } | ExceptionCmd::Retry { id, .. } | ExceptionCmd::Discard { id, .. } => {
            println!("exception {id} {}", body["state"].as_str().unwrap_or("settled"));
        }
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncline sink`: each subcommand is one API call; errors print the
/// server's message and exit 1.
fn sink(what: &SinkCmd, server: &str) -> anyhow::Result<ExitCode> {
    let (status, body) = match what {
        SinkCmd::List { .. } => api_call("GET", server, "/v1/sinks")?,
        SinkCmd::Pause { name, reason } => api_request("POST", server, &format!("/v1/sinks/{name}/pause"), &[], Some(&serde_json::json!({"reason": reason})))?,
        SinkCmd::Resume { name } => api_call("POST", server, &format!("/v1/sinks/{name}/resume"))?,
    };
    if status != 200 {
        eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
        return Ok(ExitCode::FAILURE);
    }
    match what {
        SinkCmd::List { json: false } => print!("{}", syncline::report::sink_lines(&body)),
        SinkCmd::Pause { name, .. } => println!("sink {name} paused"),
        SinkCmd::Resume { name } => println!("sink {name} resumed"),
        SinkCmd::List { json: true } => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `syncline dlq`: each subcommand is one API call; errors print the
/// server's message and exit 1.
fn dlq(what: &DlqCmd, server: &str) -> anyhow::Result<ExitCode> {
    let (status, body) = match what {
        DlqCmd::List { filter, limit, .. } => {
            let mut query = filter.pairs();
            query.push(("limit", limit.to_string()));
            api_request("GET", server, "/v1/dead-letters", &query, None)?
        }
        DlqCmd::Show { id } => api_call("GET", server, &format!("/v1/dead-letters/{id}"))?,
        DlqCmd::Replay { id: Some(id), .. } => api_call("POST", server, &format!("/v1/dead-letters/{id}/replay"))?,
        DlqCmd::Replay { id: None, filter, .. } => {
            let mut f = serde_json::Map::new();
            for (k, v) in filter.pairs() {
                match k {
                    "older-than" => {
                        let span = syncline::config::Span::try_from(v).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
                        f.insert("before".into(), (syncline::store::now_ms() - span.0.as_millis() as i64).into());
                    }
                    _ => {
                        f.insert(k.into(), v.into());
                    }
                }
            }
            api_request("POST", server, "/v1/dead-letters:replay", &[], Some(&serde_json::Value::Object(f)))?
        }
        DlqCmd::Purge { id, reason } => {
            api_request("POST", server, &format!("/v1/dead-letters/{id}/purge"), &[], Some(&serde_json::json!({"reason": reason})))?
        }
    };
    if status != 200 {
        eprintln!("error: {}", body["error"]["message"].as_str().unwrap_or("unexpected answer"));
        return Ok(ExitCode::FAILURE);
    }
    match what {
        DlqCmd::List { json: false, .. } => {
            let rows: Vec<syncline::store::records::DeadLetterRecord> =
                serde_json::from_value(body["dead-letters"].clone()).context("the server's list does not read as dead letters")?;
            print!("{}", syncline::report::dead_letter_lines(&rows, syncline::store::now_ms()));
            if let Some(next) = body["next"].as_i64() {
                println!("(more after {next}: raise --limit)");
            }
        }
        DlqCmd::Replay { id: None, .. } => {
            let n = body["replayed"].as_array().map_or(0, Vec::len);
            println!("replayed {n} dead letter(s)");
        }
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn inspect_json(p: &Plugin) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "digest": p.digest, "size": p.size, "world": p.world.as_str(),
        "package": format!("syncline:plugin@{}", p.api_version),
        "imports": p.imports, "exports": p.exports,
        "beyond-world": p.beyond_world().into_iter().map(|(i, g)| serde_json::json!({"interface": i, "grant": g})).collect::<Vec<_>>(),
    })
}

fn inspect_text(p: &Plugin) -> String {
    let mut s = format!(
        "name     {}\ndigest   {}\nsize     {} ({} bytes)\nworld    syncline:plugin/{}@{}\nexports\n",
        p.name,
        p.digest,
        human(p.size),
        p.size,
        p.world,
        p.api_version
    );
    for e in &p.exports {
        s += &format!("  {e}\n");
    }
    s += "imports\n";
    for i in &p.imports {
        s += &format!("  {i}\n");
    }
    let beyond = p.beyond_world();
    if !beyond.is_empty() {
        s += &format!("imports its {} world does not need (linked; nothing granted)\n", p.world);
        let width = beyond.iter().map(|(i, _)| i.len()).max().unwrap_or(0);
        for (i, grant) in beyond {
            s += &format!("  {i:width$}  {grant}\n");
        }
    }
    s
}
