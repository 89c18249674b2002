//! A plugin bound to its context (config, tables, limits): the handle a
//! pipeline stage holds. It keeps warm instances for reuse, caps how many
//! exist at once, enforces the per-call limits, and turns traps, timeouts,
//! memory blow-ups and oversized outputs into [`CallError`]s. An instance
//! that failed is thrown away; the next call gets a fresh one. With `fresh`
//! limits every call gets a fresh instance (the pooling allocator makes
//! that cheap).
//!
//! Every call runs as a wasmtime async call under one deadline: epoch
//! interruption stops a guest spinning in its own code, and the call's
//! future is dropped at the deadline when the guest waits in a host call
//! (a sleep, a stalled HTTP body). Waiting for a free instance counts
//! against the same deadline. No caller ever waits on a plugin call longer
//! than its wall-time limit (plus the epoch tick).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde::Serialize;
use wasmtime::{Store, Trap, UpdateDeadline};

use syncline_model::{DeliveryOutcome, Message, PluginError, PollBatch, Violation};

use super::calls::{Exports, Pre};
use super::error::{CallError, Failure};
use super::host::{CallInfo, HostState, PluginContext};
use super::logs::LogGate;
#[cfg(feature = "native-stages")]
use super::native::NativeStage;
use super::output::{panic_message, python_exception, Written};
use super::plugin::{Plugin, World};

/// How many instances of one bound plugin are alive.
#[derive(Default)]
struct Slots {
    live: Mutex<usize>,
    freed: Condvar,
}

/// One live instance's claim on its plugin's instance cap: released when
/// the instance is dropped (after a failure, or with a fresh-instance
/// limit), kept while it waits warm in the pool.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.live.lock().unwrap() -= 1;
        self.0.freed.notify_one();
    }
}

struct Warm {
    store: Store<HostState>,
    exports: Exports,
    _slot: Slot,
}

/// What a call did besides its result: log lines its gate dropped, HTTP
/// requests it let through (a failed sink call that sent any may have
/// delivered), and how much it wrote to stdout/stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CallReport {
    /// Log lines dropped by the plugin's log limits during the call.
    pub logs_dropped: u64,
    /// Outbound HTTP requests let through during the call.
    pub http_requests: u32,
    /// Bytes written to stdout/stderr during the call.
    pub output_bytes: u64,
}

/// A plugin bound to a context; cheap to share (`Arc`) between workers.
pub struct PluginInstance {
    plugin: Arc<Plugin>,
    ctx: Arc<PluginContext>,
    pre: Pre,
    idle: Mutex<Vec<Warm>>,
    slots: Arc<Slots>,
    gate: Arc<LogGate>,
    meter: crate::metrics::CallMeter,
    #[cfg(feature = "native-stages")]
    native: Option<Arc<dyn NativeStage>>,
}

impl PluginInstance {
    /// Binds `plugin` to `ctx`, logging through `gate` and counting its
    /// calls with `meter`. Instances are created on first use.
    ///
    /// # Errors
    ///
    /// When the plugin's exports do not have the shape of its world (a
    /// plugin that passed loading always does).
    pub(crate) fn new(plugin: Arc<Plugin>, ctx: PluginContext, gate: Arc<LogGate>, meter: crate::metrics::CallMeter) -> anyhow::Result<PluginInstance> {
        let pre = Pre::new(plugin.world, plugin.api_minor(), plugin.pre.clone())?;
        Ok(PluginInstance {
            plugin,
            ctx: Arc::new(ctx),
            pre,
            idle: Mutex::default(),
            slots: Arc::default(),
            gate,
            meter,
            #[cfg(feature = "native-stages")]
            native: None,
        })
    }

    /// The same plugin and context with its stage calls (transform,
    /// validate, allocate) answered by `native` instead of the component:
    /// for measuring the sandbox's cost (see [`super::native`]). Only with
    /// the `native-stages` feature (the benchmarks').
    #[cfg(feature = "native-stages")]
    pub fn with_native(&self, native: Arc<dyn NativeStage>) -> PluginInstance {
        PluginInstance {
            plugin: self.plugin.clone(),
            ctx: self.ctx.clone(),
            pre: self.pre.clone(),
            idle: Mutex::default(),
            slots: Arc::default(),
            gate: self.gate.clone(),
            meter: self.meter.clone(),
            native: Some(native),
        }
    }

    /// Instantiates the plugin once, so that one whose exports have its
    /// world's names but not its types (wasmtime checks them when an
    /// instance is made) is refused where it is bound — at start, on
    /// `check`, on a reload, which then keeps the version it had — rather
    /// than failing every call. Only the shape is checked: the instance is
    /// not kept, and one that runs out of time or memory (under the call's
    /// limits) is left to the calls to report (a stage given too little
    /// memory fails its calls with `memory-limit`, as it always did).
    ///
    /// # Errors
    ///
    /// A mismatch, or a trap in the plugin's start code, naming the plugin
    /// and its world.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.ctx.limits.timeout;
        match super::io::run_until(deadline, self.make(deadline)) {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) if matches!(e.failure, Failure::Timeout(_) | Failure::MemoryLimit { .. }) => Ok(()),
            Some(Err(e)) => {
                let p = &self.plugin;
                anyhow::bail!("plugin {} ({}) does not match the {} world of syncline:plugin@{}: {}", p.name, p.short_digest(), p.world, p.api_version, e.failure)
            }
        }
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The context it runs with.
    pub fn context(&self) -> &PluginContext {
        &self.ctx
    }

    /// Instances currently alive (idle or busy).
    pub fn live_instances(&self) -> usize {
        *self.slots.live.lock().unwrap()
    }

    pub(super) fn error(&self, failure: Failure) -> CallError {
        CallError { plugin: self.plugin.name.clone(), digest: self.plugin.digest.clone(), failure, output: None }
    }

    pub(super) fn wrong_world(&self, wanted: World) -> CallError {
        self.error(Failure::Contract(format!("called as a {wanted} but it implements the {} world", self.plugin.world)))
    }

    /// Takes an idle instance, or claims a slot for a new one if under the
    /// cap, or waits for one until `deadline`.
    fn checkout(&self, deadline: Instant) -> Result<Result<Warm, Slot>, CallError> {
        if let Some(warm) = self.idle.lock().unwrap().pop() {
            return Ok(Ok(warm));
        }
        let cap = self.ctx.limits.instances.max(1);
        let mut live = self.slots.live.lock().unwrap();
        loop {
            if let Some(warm) = self.idle.lock().unwrap().pop() {
                return Ok(Ok(warm));
            }
            if *live < cap {
                *live += 1;
                return Ok(Err(Slot(self.slots.clone())));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.error(Failure::Instantiate(format!(
                    "all {cap} allowed instances stayed busy past the call's limit of {:?}",
                    self.ctx.limits.timeout
                ))));
            }
            live = self.slots.freed.wait_timeout(live, left).unwrap().0;
        }
    }

    async fn instantiate(&self, slot: Slot, deadline: Instant) -> Result<Warm, CallError> {
        let (store, exports) = self.make(deadline).await?;
        Ok(Warm { store, exports, _slot: slot })
    }

    /// A new instance under the context's limits, its start code under `deadline`.
    async fn make(&self, deadline: Instant) -> Result<(Store<HostState>, Exports), CallError> {
        let engine = self.plugin.pre.engine();
        let mut store = Store::new(engine, HostState::new(self.ctx.clone(), self.gate.clone()));
        // Start functions run guest code too: under the call's deadline.
        store.data_mut().deadline = deadline;
        store.limiter(|s| &mut s.memory);
        // Checked at every epoch tick while the guest runs its own code.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) })
        });
        store.set_epoch_deadline(1);
        match self.pre.instantiate(&mut store).await {
            Ok(exports) => Ok((store, exports)),
            Err(e) => {
                let failure = match self.classify(e, &store) {
                    Failure::Trap(t) => Failure::Instantiate(t),
                    other => other,
                };
                Err(self.error(failure))
            }
        }
    }

    /// What a wasmtime error means: the memory cap, the deadline, or a
    /// trap with its cause and the guest's panic message.
    fn classify(&self, e: wasmtime::Error, store: &Store<HostState>) -> Failure {
        if let Some(requested) = store.data().memory.exceeded {
            return Failure::MemoryLimit { limit: self.ctx.limits.memory, requested };
        }
        let trap = e.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::Interrupt) {
            return Failure::Timeout(self.ctx.limits.timeout);
        }
        let cause = match trap {
            Some(Trap::StackOverflow) => "stack overflow (the call stack is exhausted; deep recursion?)".to_string(),
            Some(Trap::UnreachableCodeReached) => "unreachable code reached (a panic or an abort)".to_string(),
            Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access (also how a Rust plugin's own stack overflow shows)".to_string(),
            Some(Trap::IntegerDivisionByZero) => "integer division by zero".to_string(),
            Some(Trap::IntegerOverflow) => "integer overflow".to_string(),
            Some(Trap::IndirectCallToNull | Trap::BadSignature) => "bad indirect call".to_string(),
            Some(other) => other.to_string(),
            // A host-side error (e.g. an invalid value lifted from the guest).
            None => format!("{e:#}").lines().next().unwrap_or_default().to_string(),
        };
        Failure::Trap(cause)
    }

    /// Runs `request` on an instance with the call limits armed. A failed
    /// instance is dropped, a good one goes back to the pool.
    /// One call: what the plugin answered with its secrets taken out (see
    /// [`super::redact`]), a failure of the whole call logged.
    fn call(&self, info: CallInfo, request: Request) -> (Result<Response, CallError>, CallReport) {
        let started = Instant::now();
        let (result, report) = self.call_raw(info, request);
        self.meter.record(result.as_ref().map_or_else(|e| e.failure.class(), |_| "ok"), started.elapsed());
        let secrets = &self.ctx.secrets;
        let result = if secrets.is_empty() {
            result
        } else {
            match result {
                Ok(Response::Messages(m)) => Ok(Response::Messages(m.into_iter().map(|m| secrets.message(m)).collect())),
                Ok(Response::Violations(v)) => Ok(Response::Violations(v.into_iter().map(|v| secrets.violation(v)).collect())),
                Ok(Response::Batch(b)) => Ok(Response::Batch(secrets.batch(b))),
                Ok(Response::Outcomes(o)) => Ok(Response::Outcomes(o.into_iter().map(|o| secrets.outcome(o)).collect())),
                Err(e) => Err(secrets.error(e)),
            }
        };
        if let Err(e) = &result {
            if e.failure.is_whole_call() {
                tracing::warn!(plugin = %self.plugin.name, digest = %self.plugin.short_digest(), failure = %e.failure, "plugin call failed");
            }
        }
        (result, report)
    }

    /// One call, as the plugin answered it.
    fn call_raw(&self, info: CallInfo, request: Request) -> (Result<Response, CallError>, CallReport) {
        let limits = &self.ctx.limits;
        let deadline = Instant::now() + limits.timeout;
        let claim = match self.checkout(deadline) {
            Ok(c) => c,
            Err(e) => return (Err(e), CallReport::default()),
        };
        // Instantiation (when no warm instance was free) and the call itself
        // both run under the call's deadline.
        let mut warm = match claim {
            Ok(warm) => warm,
            Err(slot) => match super::io::run_until(deadline, self.instantiate(slot, deadline)) {
                Some(Ok(w)) => w,
                Some(Err(e)) => return (Err(e), CallReport::default()),
                None => return (Err(self.error(Failure::Timeout(limits.timeout))), CallReport::default()),
            },
        };
        warm.store.data_mut().begin(info, deadline);
        warm.store.set_epoch_deadline(1);
        let Warm { store, exports, .. } = &mut warm;
        let ran = super::io::run_until(deadline, exports.dispatch(self, store, request));
        // Dropped at the deadline while the guest waited in a host call.
        let mut result = ran.unwrap_or_else(|| Err(self.error(Failure::Timeout(limits.timeout))));
        let data = warm.store.data_mut();
        // The state the call wrote takes effect only when the plugin chose
        // its answer; a call that trapped, timed out or was refused leaves
        // none of its writes behind.
        let writes = data.writes.take();
        let answered = matches!(&result, Ok(_) | Err(CallError { failure: Failure::Plugin(_), .. }));
        if answered && !writes.is_empty() {
            if let Err(e) = self.ctx.state.commit(&data.call.tenant, &self.ctx.plugin, writes) {
                result = Err(self.error(Failure::Plugin(PluginError::retryable("state-quota", e))));
            }
        }
        let written = data.output.take();
        let report = CallReport { logs_dropped: data.logs_dropped, http_requests: data.policy.sent, output_bytes: written.bytes };
        let keep = !limits.fresh && matches!(&result, Ok(_) | Err(CallError { failure: Failure::Plugin(_) | Failure::Contract(_), .. }));
        if keep {
            // Under the count's lock, as a waiter checks the pool under it:
            // no wake-up is lost between its check and its wait.
            let _live = self.slots.live.lock().unwrap();
            self.idle.lock().unwrap().push(warm);
            self.slots.freed.notify_one();
        }
        (result.map_err(|e| explain(e, written)), report)
    }

    /// A trap or limit hit during a call.
    pub(super) fn failed(&self, store: &Store<HostState>, e: wasmtime::Error) -> CallError {
        self.error(self.classify(e, store))
    }

    /// Fails the call when what it returned is larger than the output limit.
    pub(super) fn bounded<T: Serialize>(&self, value: T) -> Result<T, CallError> {
        let limit = self.ctx.limits.output;
        let size = super::size::size_of(&value, limit);
        if size > limit {
            return Err(self.error(Failure::OutputLimit { limit, size }));
        }
        Ok(value)
    }

    /// Calls a transformer.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn transform(&self, msg: Message) -> Result<Vec<Message>, CallError> {
        self.transform_reported(msg).0
    }

    /// [`PluginInstance::transform`] with what the call did besides.
    pub fn transform_reported(&self, msg: Message) -> (Result<Vec<Message>, CallError>, CallReport) {
        #[cfg(feature = "native-stages")]
        if let Some(n) = &self.native {
            return (n.transform(msg).map_err(|e| self.error(Failure::Plugin(e))), CallReport::default());
        }
        let (r, report) = self.call(call_info(Some(&msg)), Request::Transform(msg));
        (r.map(Response::into_messages), report)
    }

    /// Calls a validator.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn validate(&self, msg: Message) -> Result<Vec<Violation>, CallError> {
        self.validate_reported(msg).0
    }

    /// [`PluginInstance::validate`] with what the call did besides.
    pub fn validate_reported(&self, msg: Message) -> (Result<Vec<Violation>, CallError>, CallReport) {
        #[cfg(feature = "native-stages")]
        if let Some(n) = &self.native {
            return (Ok(n.validate(msg)), CallReport::default());
        }
        let (r, report) = self.call(call_info(Some(&msg)), Request::Validate(msg));
        let r = r.map(|resp| match resp {
            Response::Violations(v) => v,
            _ => unreachable!("a validate call answers violations"),
        });
        (r, report)
    }

    /// Calls an allocator with a batch.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn allocate(&self, batch: Vec<Message>) -> Result<Vec<Message>, CallError> {
        self.allocate_reported(batch).0
    }

    /// [`PluginInstance::allocate`] with what the call did besides.
    pub fn allocate_reported(&self, batch: Vec<Message>) -> (Result<Vec<Message>, CallError>, CallReport) {
        #[cfg(feature = "native-stages")]
        if let Some(n) = &self.native {
            return (n.allocate(batch).map_err(|e| self.error(Failure::Plugin(e))), CallReport::default());
        }
        let (r, report) = self.call(call_info(batch.first()), Request::Allocate(batch));
        (r.map(Response::into_messages), report)
    }

    /// Polls a source for `tenant`.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn poll(&self, tenant: &str, cursor: Option<&str>) -> Result<PollBatch, CallError> {
        let info = CallInfo { tenant: tenant.to_string(), correlation_id: String::new() };
        self.call(info, Request::Poll(cursor.map(str::to_string))).0.map(|resp| match resp {
            Response::Batch(b) => b,
            _ => unreachable!("a poll answers a batch"),
        })
    }

    /// Delivers messages through a sink; one outcome per message.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause, including a sink that
    /// returns the wrong number of outcomes.
    pub fn deliver(&self, messages: Vec<Message>) -> Result<Vec<DeliveryOutcome>, CallError> {
        self.deliver_reported(messages).0
    }

    /// [`PluginInstance::deliver`] with what the call did besides (its HTTP
    /// requests tell whether a failed call may have delivered anything).
    pub fn deliver_reported(&self, messages: Vec<Message>) -> (Result<Vec<DeliveryOutcome>, CallError>, CallReport) {
        let (r, report) = self.call(call_info(messages.first()), Request::Deliver(messages));
        let r = r.map(|resp| match resp {
            Response::Outcomes(o) => o,
            _ => unreachable!("a deliver call answers outcomes"),
        });
        (r, report)
    }
}

/// One call into a plugin's export.
pub(super) enum Request {
    Transform(Message),
    Validate(Message),
    Allocate(Vec<Message>),
    Poll(Option<String>),
    Deliver(Vec<Message>),
}

impl Request {
    pub(super) fn world(&self) -> World {
        match self {
            Request::Transform(_) => World::Transformer,
            Request::Validate(_) => World::Validator,
            Request::Allocate(_) => World::Allocator,
            Request::Poll(_) => World::Source,
            Request::Deliver(_) => World::Sink,
        }
    }
}

/// What the export answered.
pub(super) enum Response {
    Messages(Vec<Message>),
    Violations(Vec<Violation>),
    Batch(PollBatch),
    Outcomes(Vec<DeliveryOutcome>),
}

impl Response {
    fn into_messages(self) -> Vec<Message> {
        match self {
            Response::Messages(m) => m,
            _ => unreachable!("a transform or allocate call answers messages"),
        }
    }
}

/// Adds what the plugin wrote during a failed call: a panic message goes
/// into the trap's cause, the rest of the output tail is kept beside it.
fn explain(mut e: CallError, written: Written) -> CallError {
    if written.tail.trim().is_empty() {
        return e;
    }
    if let Failure::Trap(cause) = &mut e.failure {
        // componentize-py turns an uncaught exception into a panic of its
        // runtime ("Python function threw an unexpected exception"): the
        // exception is what the user needs to read first.
        if let Some(exception) = python_exception(&written.tail) {
            cause.push_str(": uncaught Python exception ");
            cause.push_str(&exception);
            let at = written.tail.rfind("thread ").filter(|&i| written.tail[i..].contains("panicked at ")).unwrap_or(written.tail.len());
            e.output = Some(written.tail[..at].trim_end().to_string());
            return e;
        }
        if let Some(panic) = panic_message(&written.tail) {
            cause.push_str(": ");
            cause.push_str(&panic);
            let at = written.tail.rfind("panicked at ").unwrap_or(0);
            let line_start = written.tail[..at].rfind('\n').map_or(0, |i| i + 1);
            let before = written.tail[..line_start].trim_end();
            e.output = (!before.is_empty()).then(|| before.to_string());
            return e;
        }
    }
    e.output = Some(written.tail);
    e
}

fn call_info(first: Option<&Message>) -> CallInfo {
    CallInfo {
        tenant: first.map(|m| m.tenant.clone()).unwrap_or_default(),
        correlation_id: first.map(|m| m.correlation_id.clone()).unwrap_or_default(),
    }
}
