//! The TOML configuration: what it may say (strict types, unknown keys are
//! errors), and loading it into a checked [`Config`] with every problem
//! reported at once, each with file, line, column and a fix. The same path
//! serves `syncline check`, start-up and reload.
//!
//! This module reads files and the environment (for secrets); it does not
//! load plugins or start anything.

mod access;
mod error;
mod model;
mod values;

pub use access::{hash_token, is_loopback, new_token, HashSource, IngestQuota, IngestQuotaFile, Role, TenantScope, Token, TokenFile, TOKEN_PREFIX};
pub use error::{nearest, suggestion, ConfigError, ConfigErrors};
pub use model::*;
pub use values::{Name, Size, Span, StatusWindow, Window};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::runtime::World;

/// The config file format version this host reads.
pub const CONFIG_VERSION: u32 = 1;

/// Loads and checks the config in `path`.
///
/// # Errors
///
/// [`ConfigErrors`] with every problem found.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(path, "", None, format!("cannot read config file: {e}"))])
    })?;
    load_str(path, &source)
}

/// Checks config text as if read from `path` (relative paths in it are
/// relative to `path`'s folder).
///
/// # Errors
///
/// [`ConfigErrors`] with every problem found.
pub fn load_str(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    let file: ConfigFile = toml::from_str(source).map_err(|e| {
        let message = e.message().trim_end().to_string();
        let mut err = ConfigError::new(path, source, e.span(), message.clone());
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            err = err.help(match nearest(field, known.iter().copied()) {
                Some(n) => format!("did you mean `{n}`?"),
                None => "remove it or check its spelling".to_string(),
            });
        }
        ConfigErrors(vec![err])
    })?;
    Checker { path, source, errors: Vec::new(), queues: Vec::new() }.check(file)
}

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    errors: Vec<ConfigError>,
    /// Declared exception queues (none: any queue name goes).
    queues: Vec<String>,
}

impl Checker<'_> {
    fn err(&mut self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> &mut ConfigError {
        self.errors.push(ConfigError::new(self.path, self.source, span, message));
        self.errors.last_mut().unwrap()
    }

    /// A pipeline's ordering key, checked: `"none"` is the only word, raw
    /// keys are JSON pointers.
    fn ordering_key(&mut self, p: &PipelineFile) -> OrderingKey {
        let id = p.id.get_ref().to_string();
        let span = Some(p.ordering_key.as_ref().map_or(p.id.span(), |k| k.span()));
        let (fields, raw) = match p.ordering_key.as_ref().map(|k| k.get_ref().clone()) {
            None => (OrderingKey::default_fields(), Vec::new()),
            Some(OrderingKeyFile::Fields(f)) => (f, Vec::new()),
            Some(OrderingKeyFile::Table(t)) => (t.fields.unwrap_or_else(OrderingKey::default_fields), t.raw),
            Some(OrderingKeyFile::Word(w)) if w == "none" => return OrderingKey::None,
            Some(OrderingKeyFile::Word(w)) => {
                self.err(span.clone(), format!("pipeline `{id}`: unknown ordering key `{w}`")).help = Some(
                    "write field paths (`ordering-key = [\"body.item\"]`), add raw-payload pointers (`ordering-key = { raw = [\"/sku\"] }`), or `ordering-key = \"none\"`".into(),
                );
                return OrderingKey::None;
            }
        };
        for r in raw.iter().filter(|r| !r.starts_with('/')) {
            self.err(span.clone(), format!("pipeline `{id}`: raw ordering key `{r}` is not a JSON pointer")).help =
                Some(format!("JSON pointers start with `/`: `/{}`", r.trim_start_matches(['.', '$'])));
        }
        if fields.is_empty() && raw.is_empty() {
            self.err(span, format!("pipeline `{id}` has an empty ordering key")).help =
                Some("name the fields that order messages, or write `ordering-key = \"none\"` if there is no order to keep".into());
        }
        OrderingKey::Keyed { fields, raw }
    }

    /// `[store]`: a NATS store names its server and a replica count a
    /// cluster can keep; the SQLite store takes neither.
    fn store(&mut self, store: &Store) {
        let span = self.source.find("[store]").map(|i| i..i + 7);
        match store.kind {
            StoreKind::Nats => {
                if store.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    self.err(span.clone(), "`[store] kind = \"nats\"` needs the server's `url`").help =
                        Some("`url = \"nats://127.0.0.1:4222\"`, or a cluster's servers separated by commas".into());
                }
                if ![1, 3, 5].contains(&store.replicas) {
                    self.err(span, format!("`[store] replicas = {}`: a NATS stream keeps 1, 3 or 5 copies", store.replicas));
                }
            }
            StoreKind::Sqlite => {
                if store.url.is_some() || store.replicas != 1 {
                    self.err(span, "`url` and `replicas` are settings of the NATS store").help = Some("add `kind = \"nats\"`, or remove them".into());
                }
            }
        }
    }

    fn base(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn check(mut self, file: ConfigFile) -> Result<Config, ConfigErrors> {
        if *file.version.get_ref() != CONFIG_VERSION {
            let v = *file.version.get_ref();
            self.err(Some(file.version.span()), format!("unsupported config version {v}"))
                .help = Some(format!("this host reads `version = {CONFIG_VERSION}`"));
        }
        let base = self.base();
        let plugins_dir = base.join(&file.plugins.dir);
        self.store(&file.store);

        // Tenants.
        let mut tenants = BTreeSet::new();
        for t in &file.tenants {
            if !tenants.insert(t.id.get_ref().clone()) {
                self.err(Some(t.id.span()), format!("tenant `{}` is declared twice", t.id.get_ref()));
            }
        }
        let tenant_names: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let tenant_ingest = self.tenant_quotas(&file.tenants);
        let tokens = self.tokens(&file.tokens, &tenants, &file.server.listen);

        // Tiers.
        let mut tiers = Tiers::default();
        for (name, t) in &file.tiers {
            let Some(tier) = Tier::parse(name) else {
                self.err(Some(t.span()), format!("unknown tier `{name}`")).help = Some("tiers are `critical`, `standard` and `bulk`".into());
                continue;
            };
            let f = t.get_ref();
            let policy = &mut tiers.0[tier.index()];
            if f.weight == Some(0) {
                self.err(Some(t.span()), format!("tier `{name}`: weight must be at least 1")).help = Some("every tier gets a share of each call, so none starves".into());
            }
            policy.weight = f.weight.unwrap_or(policy.weight).max(1);
            policy.retry = f.retry.clone();
            policy.alert_after = f.alert_after.map(|a| a.0);
        }

        // Exception queues.
        let mut exception_queues = BTreeMap::new();
        for (name, q) in &file.exception_queues {
            match Name::try_from(name.clone()) {
                Ok(n) => {
                    let f = q.get_ref();
                    if f.owner.trim().is_empty() {
                        self.err(Some(q.span()), format!("exception queue `{name}` has no owner")).help = Some("name the team that works it: `owner = \"Master data team\"`".into());
                    }
                    exception_queues.insert(n, ExceptionQueue { owner: f.owner.clone(), contact: f.contact.clone(), sla: f.sla.map(|s| s.0) });
                }
                Err(e) => {
                    self.err(Some(q.span()), e);
                }
            }
        }
        self.queues = exception_queues.keys().map(|n| n.to_string()).collect();

        // Sinks.
        let mut sinks = BTreeMap::new();
        for (name, sink) in &file.sinks {
            let name = match Name::try_from(name.clone()) {
                Ok(n) => n,
                Err(e) => {
                    let span = self.source.find(&format!("[sink.{name}]")).map(|i| i + 6..i + 6 + name.len());
                    self.err(span, e);
                    continue;
                }
            };
            if let Some(t) = &sink.tenant {
                if !tenants.contains(t.get_ref()) {
                    let help = suggestion("tenant", t.get_ref().as_str(), tenant_names.iter().map(String::as_str));
                    self.err(Some(t.span()), format!("unknown tenant `{}`", t.get_ref())).help = Some(help);
                }
            }
            let scope = sink.tenant.as_ref().map(|t| t.get_ref().clone());
            let plugin = self.plugin_ref(&plugins_dir, scope.as_ref(), &sink.plugin, World::Sink, format!("sink `{name}`"));
            let settings = self.settings(&sink.config, &sink.tables, &sink.allowed_hosts, &sink.limits);
            if sink.retry.attempts == 0 {
                self.err(None, format!("sink `{name}`: retry.attempts must be at least 1"));
            }
            if file.store.kind == StoreKind::Nats && !(sink.workers.is_power_of_two() && sink.workers <= 64) {
                let span = self.source.find(&format!("[sink.{name}]")).map(|i| i..i + name.as_str().len() + 7);
                self.err(span, format!("sink `{name}`: workers = {} on the NATS store", sink.workers)).help =
                    Some("on the NATS store a queue is cut into 1, 2, 4, 8, 16, 32 or 64 parts: write one of those".into());
            }
            let breaker = self.breaker(&format!("sink `{name}`"), sink.breaker.as_ref());
            let rate_limit = match &sink.rate_limit {
                Some(text) => match RateLimit::parse(text.get_ref(), sink.burst.as_ref().map(|b| *b.get_ref())) {
                    Ok(l) => Some(l),
                    Err(why) => {
                        self.err(Some(text.span()), format!("sink `{name}`: rate-limit `{}` is not a rate", text.get_ref())).help = Some(why);
                        None
                    }
                },
                None => {
                    if let Some(b) = &sink.burst {
                        self.err(Some(b.span()), format!("sink `{name}`: burst without a rate-limit")).help = Some("add `rate-limit = \"50/s\"`, or remove `burst`".into());
                    }
                    None
                }
            };
            sinks.insert(
                name.clone(),
                Sink {
                    name,
                    tenant: scope,
                    plugin,
                    settings,
                    retry: sink.retry.clone(),
                    batch: sink.batch.max(1),
                    batch_bytes: sink.batch_bytes.0.max(1),
                    workers: sink.workers.clamp(1, 64),
                    breaker,
                    maintenance: sink.maintenance.iter().map(|w| w.get_ref().clone()).collect(),
                    rate_limit,
                    tiers: tiers.clone(),
                },
            );
        }
        let sink_names: Vec<String> = sinks.keys().map(|s| s.to_string()).collect();

        // Pipelines.
        let mut pipelines = Vec::new();
        let mut ids = BTreeSet::new();
        for p in &file.pipelines {
            let id = p.id.get_ref().clone();
            if !ids.insert(id.clone()) {
                self.err(Some(p.id.span()), format!("pipeline `{id}` is declared twice"));
            }
            let tenant = p.tenant.get_ref().clone();
            if !tenants.contains(&tenant) {
                let help = suggestion("tenant", tenant.as_str(), tenant_names.iter().map(String::as_str));
                self.err(Some(p.tenant.span()), format!("unknown tenant `{tenant}`")).help = Some(help);
            }
            let source = self.source_of(&plugins_dir, &tenant, &id, p.source.as_ref());
            let mut stages = Vec::new();
            for (i, s) in p.stages.iter().enumerate() {
                if let Some(stage) = self.stage(&plugins_dir, &tenant, &id, i, s) {
                    stages.push(stage);
                }
            }
            let mut routes = Vec::new();
            for r in &p.routes {
                let mut to = Vec::new();
                let span = r.to.span();
                for n in r.to.get_ref().names() {
                    match sinks.get(n) {
                        None => {
                            let help = suggestion("sink", n, sink_names.iter().map(String::as_str));
                            self.err(Some(span.clone()), format!("unknown sink `{n}` in a route of pipeline `{id}`")).help = Some(help);
                        }
                        Some(s) if s.tenant.as_ref().is_some_and(|t| *t != tenant) => {
                            self.err(Some(span.clone()), format!(
                                "sink `{n}` belongs to tenant `{}` and cannot be used by pipeline `{id}` of tenant `{tenant}`",
                                s.tenant.as_ref().unwrap()
                            ));
                        }
                        Some(s) => to.push(s.name.clone()),
                    }
                }
                let when = match &r.when {
                    None => None,
                    Some(w) => match Condition::parse(w.get_ref()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.err(Some(w.span()), format!("bad route condition: {e}"))
                                .help = Some("write e.g. `when = { kind = \"purchase-requisition\", \"body.location\" = [\"DC-1\", \"DC-2\"] }`".into());
                            continue;
                        }
                    },
                };
                routes.push(Route { when, to });
            }
            if routes.is_empty() {
                self.err(Some(p.id.span()), format!("pipeline `{id}` has no routes")).help =
                    Some("add `routes = [{ to = \"SINK\" }]`".into());
            } else if routes.iter().filter(|r| r.when.is_none()).count() > 1 {
                self.err(Some(p.id.span()), format!("pipeline `{id}` has more than one default route (a route without `when`)"));
            }
            let ordering_key = self.ordering_key(p);
            let breaker = self.breaker(&format!("pipeline `{id}`"), p.breaker.as_ref());
            let fallback = self.fallback(&id, p.fallback.as_ref());
            pipelines.push(Pipeline {
                id,
                tenant,
                source,
                tier: self.tier(p.tier.as_ref()),
                breaker,
                ordering_key,
                stages,
                routes,
                max_attempts: p.max_attempts,
                baseline: p.baseline.as_ref().map(|b| BaselinePolicy {
                    freshness: b.get_ref().freshness.0,
                    queue: b.get_ref().exception_queue.clone().unwrap_or_else(|| "planning-feed".into()),
                }),
                fallback,
                expect_status: p.expect_status.as_ref().map(|e| ExpectStatus {
                    within: e.get_ref().within,
                    at_least: e.get_ref().at_least.map_or(std::time::Duration::from_secs(86_400), |a| a.0),
                    queue: e.get_ref().exception_queue.clone().unwrap_or_else(|| "open-loops".into()),
                }),
            });
        }

        // Report in file order.
        self.errors.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
        // A fallback takes a baseline another pipeline of its tenant keeps.
        for p in &pipelines {
            let Some(f) = &p.fallback else { continue };
            let source = pipelines.iter().find(|q| q.tenant == p.tenant && q.id == f.from);
            match source {
                Some(q) if q.baseline.is_some() => {}
                Some(_) => {
                    self.err(None, format!("pipeline `{}` falls back on `{}`, which keeps no baseline", p.id, f.from)).help =
                        Some(format!("add `baseline = {{ freshness = \"6h\" }}` to pipeline `{}`", f.from));
                }
                None => {
                    let names: Vec<String> = pipelines.iter().filter(|q| q.tenant == p.tenant).map(|q| q.id.to_string()).collect();
                    let help = suggestion("pipeline", f.from.as_str(), names.iter().map(String::as_str));
                    self.err(None, format!("pipeline `{}` falls back on unknown pipeline `{}`", p.id, f.from)).help = Some(help);
                }
            }
        }

        if self.errors.is_empty() {
            Ok(Config {
                path: self.path.to_path_buf(),
                server: file.server,
                store: Store { path: base.join(&file.store.path), ..file.store },
                plugins_dir,
                cache_dir: file.plugins.cache_dir.map(|d| base.join(d)),
                plugin_mode: file.plugins.mode,
                tenants: tenants.into_iter().collect(),
                pipelines,
                sinks,
                exception_queues,
                tiers,
                tokens: tokens.into_iter().map(std::sync::Arc::new).collect(),
                tenant_ingest,
            })
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    fn source_of(&mut self, dir: &Path, tenant: &Name, pipeline: &Name, source: Option<&SourceFile>) -> Source {
        let Some(s) = source else { return Source::Http };
        match (&s.http, &s.plugin) {
            (Some(true), None) | (None, None) => Source::Http,
            (Some(_), Some(p)) => {
                self.err(Some(p.span()), format!("pipeline `{pipeline}`: a source is either `http = true` or `plugin = \"...\"`, not both"));
                Source::Http
            }
            (Some(false), None) => Source::None,
            (None, Some(p)) => {
                let plugin = self.plugin_ref(dir, Some(tenant), p, World::Source, format!("the source of pipeline `{pipeline}`"));
                let every = s.every.map(|e| e.0).unwrap_or(std::time::Duration::from_secs(60));
                let settings = self.settings(&s.config, &s.tables, &s.allowed_hosts, &s.limits);
                Source::Poll { plugin, every, settings }
            }
        }
    }

    fn stage(&mut self, dir: &Path, tenant: &Name, pipeline: &Name, index: usize, s: &StageFile) -> Option<Stage> {
        let who = format!("stage {} of pipeline `{pipeline}`", index + 1);
        let (kind, name) = match (&s.transform, &s.validate, &s.allocate) {
            (Some(n), None, None) => (StageKind::Transform, n),
            (None, Some(n), None) => (StageKind::Validate, n),
            (None, None, Some(n)) => (StageKind::Allocate, n),
            _ => {
                self.err(None, format!("{who} must name exactly one of `transform`, `validate` or `allocate`"));
                return None;
            }
        };
        let world = match kind {
            StageKind::Transform => World::Transformer,
            StageKind::Validate => World::Validator,
            StageKind::Allocate => World::Allocator,
        };
        let plugin = self.plugin_ref(dir, Some(tenant), name, world, who.clone());
        let on_violation = match (&s.on_violation, kind) {
            (Some(v), StageKind::Validate) => match OnViolation::parse(v.get_ref()) {
                Ok(OnViolation::Exception(q)) if !self.queues.is_empty() && !self.queues.contains(&q) => {
                    let help = suggestion("exception queue", &q, self.queues.iter().map(String::as_str));
                    self.err(Some(v.span()), format!("{who}: unknown exception queue `{q}`")).help = Some(help);
                    OnViolation::Exception(q)
                }
                Ok(p) => p,
                Err(e) => {
                    self.err(Some(v.span()), e).help = Some("one of `dead-letter`, `exception:QUEUE`, `warn`, `drop`".into());
                    OnViolation::DeadLetter
                }
            },
            (Some(v), _) => {
                self.err(Some(v.span()), format!("{who}: `on-violation` applies to validate stages only"));
                OnViolation::DeadLetter
            }
            (None, _) => OnViolation::DeadLetter,
        };
        if s.batch.is_some() && kind != StageKind::Allocate {
            self.err(Some(name.span()), format!("{who}: `batch` applies to allocate stages only"))
                .help = Some("remove `batch`, or make this an `allocate` stage".into());
        }
        let batch = s.batch.clone().unwrap_or_default();
        let settings = self.settings(&s.config, &s.tables, &s.allowed_hosts, &s.limits);
        let pin = s.pin.as_ref().and_then(|p| {
            let hex = p.get_ref().strip_prefix("sha256:").unwrap_or("");
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                Some(p.get_ref().clone())
            } else {
                self.err(Some(p.span()), format!("`{}` is not a plugin digest", p.get_ref())).help =
                    Some("write `sha256:` and 64 lower-case hex digits, as `syncline inspect` prints".into());
                None
            }
        });
        Some(Stage { kind, plugin, on_violation, batch, settings, pin })
    }

    /// Resolves a plugin name: `<dir>/<tenant>/<name>.wasm`, then
    /// `<dir>/shared/<name>.wasm`. A plugin is named, never given as a path:
    /// a name follows the name rule, so it cannot reach outside those two
    /// folders (another tenant's plugins stay its own).
    /// A pipeline's fallback, its source checked once every pipeline is known.
    fn fallback(&mut self, id: &Name, file: Option<&Spanned<FallbackFile>>) -> Option<FallbackPolicy> {
        let file = file?;
        let f = file.get_ref();
        let auto = match f.release.as_deref() {
            None | Some("auto") => true,
            Some("manual") => false,
            Some(other) => {
                self.err(Some(file.span()), format!("pipeline `{id}`: fallback release `{other}`")).help = Some("write `release = \"auto\"` or `release = \"manual\"`".into());
                true
            }
        };
        match Name::try_from(f.from.clone()) {
            Ok(from) => Some(FallbackPolicy { from, auto }),
            Err(e) => {
                self.err(Some(file.span()), format!("pipeline `{id}`: fallback from: {e}"));
                None
            }
        }
    }

    /// A pipeline's tier (standard unless it says otherwise).
    fn tier(&mut self, text: Option<&Spanned<String>>) -> Tier {
        let Some(text) = text else { return Tier::Standard };
        Tier::parse(text.get_ref()).unwrap_or_else(|| {
            let help = suggestion("tier", text.get_ref(), Tier::ALL.iter().map(|t| t.as_str()));
            self.err(Some(text.span()), format!("unknown tier `{}`", text.get_ref())).help = Some(help);
            Tier::Standard
        })
    }

    /// A sink's or pipeline's breaker policy: the defaults unless `breaker`
    /// says otherwise; `None` when it counts neither failures in a row nor a rate.
    fn breaker(&mut self, who: &str, file: Option<&Spanned<BreakerFile>>) -> Option<BreakerPolicy> {
        let mut policy = BreakerPolicy::default();
        let Some(file) = file else { return Some(policy) };
        let (span, f) = (file.span(), file.get_ref());
        policy.failures = f.failures.unwrap_or(policy.failures);
        policy.window = f.window.map_or(policy.window, |w| w.0);
        policy.min_calls = f.min_calls.unwrap_or(policy.min_calls);
        policy.open_for = f.open_for.map_or(policy.open_for, |w| w.0);
        policy.max_open_for = f.max_open_for.map_or(policy.max_open_for.max(policy.open_for), |w| w.0);
        if policy.max_open_for < policy.open_for {
            self.err(Some(span.clone()), format!("{who}: breaker max-open-for is shorter than open-for"));
        }
        if let Some(text) = &f.rate {
            let share = text.trim().strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok()).filter(|n| *n > 0.0 && *n <= 100.0);
            match share {
                Some(n) => policy.rate = Some(n / 100.0),
                None => {
                    self.err(Some(span.clone()), format!("{who}: breaker rate `{text}` is not a share of calls")).help =
                        Some("write a percentage above 0 and at most 100, e.g. `rate = \"50%\"`".into());
                }
            }
        }
        if policy.open_for.is_zero() {
            self.err(Some(span), format!("{who}: breaker open-for must be longer than 0s"));
        }
        (policy.failures > 0 || policy.rate.is_some()).then_some(policy)
    }

    fn plugin_ref(&mut self, dir: &Path, tenant: Option<&Name>, name: &Spanned<String>, world: World, needed_by: String) -> PluginRef {
        let n = name.get_ref();
        if let Err(e) = Name::try_from(n.clone()) {
            let folders = match tenant {
                Some(t) => format!("`plugins/{t}/` or `plugins/shared/`"),
                None => "`plugins/shared/`".to_string(),
            };
            self.err(Some(name.span()), format!("`{n}` is not a plugin name (for {needed_by})")).help =
                Some(format!("{e}; a plugin is named after its file in {folders}, without `.wasm` and without a path"));
            return PluginRef { name: n.clone(), path: dir.join("shared").join("invalid-name.wasm"), world, needed_by };
        }
        let mut candidates = Vec::new();
        if let Some(t) = tenant {
            candidates.push(dir.join(t.as_str()).join(format!("{n}.wasm")));
        }
        candidates.push(dir.join("shared").join(format!("{n}.wasm")));
        let path = candidates.iter().find(|p| p.exists()).cloned();
        if path.is_none() {
            let mut known: Vec<String> = Vec::new();
            let mut dirs = vec![dir.join("shared")];
            if let Some(t) = tenant {
                dirs.insert(0, dir.join(t.as_str()));
            }
            for d in &dirs {
                if let Ok(entries) = std::fs::read_dir(d) {
                    for e in entries.flatten() {
                        let p = e.path();
                        if p.extension().is_some_and(|x| x == "wasm") {
                            known.push(p.file_stem().unwrap().to_string_lossy().into_owned());
                        }
                    }
                }
            }
            known.sort();
            let help = suggestion("plugin", n, known.iter().map(String::as_str));
            let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            self.err(Some(name.span()), format!("unknown plugin `{n}` for {needed_by} (looked for {})", looked.join(", "))).help = Some(help);
        }
        PluginRef { name: n.clone(), path: path.unwrap_or_else(|| candidates.pop().unwrap()), world, needed_by }
    }

    fn settings(
        &mut self,
        config: &Option<Spanned<toml::Table>>,
        tables: &BTreeMap<String, String>,
        allowed_hosts: &[String],
        limits: &Option<Spanned<LimitsFile>>,
    ) -> PluginSettings {
        let mut secret_keys = Vec::new();
        let json = match config {
            None => serde_json::Value::Object(Default::default()),
            Some(c) => {
                let mut missing = Vec::new();
                let v = resolve_secrets(c.get_ref(), "", &mut secret_keys, &mut missing);
                for var in missing {
                    self.err(Some(c.span()), format!("environment variable `{var}` is not set (a secret in this config)"))
                        .help = Some(format!("export {var}=... before starting syncline"));
                }
                v
            }
        };
        let base = self.base();
        let mut limits_out = crate::runtime::Limits::default();
        if let Some(spanned) = limits {
            let l = spanned.get_ref();
            if let Some(t) = l.timeout {
                limits_out.timeout = t.0;
            }
            if let Some(m) = l.memory {
                limits_out.memory = m.0;
            }
            if let Some(i) = l.instances {
                limits_out.instances = i.max(1);
            }
            if let Some(f) = l.fresh_instance {
                limits_out.fresh = f;
            }
            if let Some(o) = l.output {
                limits_out.output = o.0;
            }
            for (problem, fix) in limits_out.problems() {
                self.err(Some(spanned.span()), problem).help = Some(fix);
            }
        }
        PluginSettings {
            config: json,
            secret_keys,
            tables: tables.iter().map(|(k, v)| (k.clone(), base.join(v))).collect(),
            allowed_hosts: allowed_hosts.to_vec(),
            limits: limits_out,
        }
    }
}

/// TOML config table to JSON, replacing `{ env = "VAR" }` by the variable's value.
fn resolve_secrets(table: &toml::Table, prefix: &str, secrets: &mut Vec<String>, missing: &mut Vec<String>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let value = match v {
            toml::Value::Table(t) if t.len() == 1 && t.get("env").is_some_and(|e| e.is_str()) => {
                let var = t["env"].as_str().unwrap();
                secrets.push(key.clone());
                match std::env::var(var) {
                    Ok(val) => serde_json::Value::String(val),
                    Err(_) => {
                        missing.push(var.to_string());
                        serde_json::Value::Null
                    }
                }
            }
            toml::Value::Table(t) => resolve_secrets(t, &key, secrets, missing),
            other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
        };
        out.insert(k.clone(), value);
    }
    serde_json::Value::Object(out)
}
