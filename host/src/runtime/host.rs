//! What a plugin's store holds and the host services it imports: logging
//! (through the plugin's log gate), its configuration, reference tables,
//! per-tenant state, WASI (nothing granted; stdout and stderr captured per
//! call) and outbound HTTP ([`super::http`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use syncline_model::table::RefTable;

use super::bindings::host_api::{config, log, reference, state};
use super::http::HttpPolicy;
use super::limits::{bytes, Limits};
use super::logs::LogGate;
use super::output::Output;
use super::state::{CallWrites, MemoryState, StateStore};

/// Everything the host knows about one configured use of a plugin: its
/// config, tables, state, allowed hosts and limits. Shared by its instances.
pub struct PluginContext {
    /// Plugin name (state is scoped by it).
    pub plugin: String,
    /// Flattened config entries (see [`flatten_config`]).
    pub config: BTreeMap<String, String>,
    /// Keys whose values are secrets.
    pub secret_keys: Vec<String>,
    /// The secret values, kept out of whatever leaves a call.
    pub secrets: super::redact::Secrets,
    /// Reference tables by name.
    pub tables: BTreeMap<String, Arc<RefTable>>,
    /// Key-value state.
    pub state: Arc<dyn StateStore>,
    /// `host:port` authorities outbound HTTP may reach.
    pub allowed_hosts: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

impl PluginContext {
    /// A context with no config, tables or allowed hosts, default limits and
    /// in-memory state.
    pub fn new(plugin: impl Into<String>) -> PluginContext {
        PluginContext {
            plugin: plugin.into(),
            config: BTreeMap::new(),
            secret_keys: Vec::new(),
            secrets: super::redact::Secrets::default(),
            tables: BTreeMap::new(),
            state: Arc::new(MemoryState::default()),
            allowed_hosts: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.plugin)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Flattens a JSON config object into `a.b.c` keys: strings as they are,
/// numbers and booleans as text, arrays as JSON text; each nested object is
/// also kept whole as JSON text under its own key.
pub fn flatten_config(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        use serde_json::Value;
        match v {
            Value::Object(map) => {
                if !prefix.is_empty() {
                    out.insert(prefix.to_string(), v.to_string());
                }
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// Who the current call is for: set before each call.
#[derive(Debug, Clone, Default)]
pub struct CallInfo {
    /// Tenant of the message(s).
    pub tenant: String,
    /// Correlation id of the (first) message.
    pub correlation_id: String,
}

/// Caps linear memory growth and remembers that the cap was hit, so the
/// resulting trap is reported as a memory limit, not a mystery.
pub struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) exceeded: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} exceeded (asked for {})",
                bytes(self.limit),
                bytes(desired)
            )));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one plugin instance's store.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) policy: HttpPolicy,
    pub(crate) memory: MemoryCap,
    pub(crate) ctx: Arc<PluginContext>,
    pub(crate) call: CallInfo,
    pub(crate) gate: Arc<LogGate>,
    pub(crate) output: Output,
    /// When the current call must end (checked at every epoch tick).
    pub(crate) deadline: Instant,
    /// Log lines the gate dropped during the current call.
    pub(crate) logs_dropped: u64,
    /// State the current call wrote, applied when it returns.
    pub(crate) writes: CallWrites,
}

impl HostState {
    /// Fresh state for an instance of the plugin `ctx` describes. WASI grants
    /// nothing: no files, environment, sockets or arguments; stdout and
    /// stderr go to a bounded per-call capture.
    pub fn new(ctx: Arc<PluginContext>, gate: Arc<LogGate>) -> HostState {
        let output = Output::default();
        let wasi = WasiCtx::builder().stdout(output.clone()).stderr(output.clone()).build();
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy: HttpPolicy::new(ctx.allowed_hosts.clone()),
            memory: MemoryCap { limit: ctx.limits.memory, exceeded: None },
            ctx,
            call: CallInfo::default(),
            gate,
            output,
            deadline: Instant::now(),
            logs_dropped: 0,
            writes: CallWrites::default(),
        }
    }

    /// Arms the state for a new call ending at `deadline`.
    pub(crate) fn begin(&mut self, call: CallInfo, deadline: Instant) {
        self.call = call;
        self.deadline = deadline;
        self.policy.call_deadline = deadline;
        self.policy.sent = 0;
        self.memory.exceeded = None;
        self.logs_dropped = 0;
        self.output.take();
        self.writes.take();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.policy }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let Some(message) = self.gate.admit(&message) else {
            self.logs_dropped += 1;
            return;
        };
        let message = self.ctx.secrets.text(&message);
        let (plugin, tenant, correlation_id) = (&self.ctx.plugin, &self.call.tenant, &self.call.correlation_id);
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", %plugin, %tenant, %correlation_id, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", %plugin, %tenant, %correlation_id, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", %plugin, %tenant, %correlation_id, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", %plugin, %tenant, %correlation_id, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", %plugin, %tenant, %correlation_id, "{message}"),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.ctx.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.ctx.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl HostState {
    fn table_named(&self, name: &str) -> Result<&RefTable, String> {
        self.ctx.tables.get(name).map(|t| t.as_ref()).ok_or_else(|| {
            let names: Vec<_> = self.ctx.tables.keys().map(String::as_str).collect();
            format!("no reference table `{name}` is attached (attached: {})", names.join(", "))
        })
    }
}

impl reference::Host for HostState {
    fn get(&mut self, table: String, key: String) -> Result<Option<Vec<(String, String)>>, String> {
        Ok(self.table_named(&table)?.get(&key))
    }

    fn find(&mut self, table: String, column: String, value: String) -> Result<Vec<Vec<(String, String)>>, String> {
        self.table_named(&table)?.find(&column, &value)
    }

    fn tables(&mut self) -> Vec<String> {
        self.ctx.tables.keys().cloned().collect()
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.writes.get(self.ctx.state.as_ref(), &self.call.tenant, &self.ctx.plugin, &key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.writes.set(self.ctx.state.as_ref(), &self.call.tenant, &self.ctx.plugin, &key, value)
    }

    fn delete(&mut self, key: String) {
        self.writes.delete(self.ctx.state.as_ref(), &self.call.tenant, &self.ctx.plugin, &key)
    }
}

impl super::bindings::transformer::syncline::canonical::types::Host for HostState {}
impl super::bindings::host_api::plugin_types::Host for HostState {}
