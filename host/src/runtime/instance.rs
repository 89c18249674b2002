//! A plugin bound to its context (config, tables, limits): the handle a
//! pipeline stage holds. It keeps warm instances for reuse, caps how many
//! exist at once, enforces the per-call limits, and turns traps, timeouts
//! and memory blow-ups into [`CallError`]s. An instance that failed is
//! thrown away; the next call gets a fresh one. With `fresh` limits every
//! call gets a fresh instance (the pooling allocator makes that cheap).

use std::sync::{Arc, Condvar, Mutex};

use wasmtime::{Store, Trap};

use syncline_model::{DeliveryOutcome, Message, PluginError, PollBatch, Violation};

use super::bindings::convert::Conv;
use super::bindings::{allocator, sink, source, transformer, validator};
use super::engine::deadline_ticks;
use super::error::{CallError, Failure};
use super::host::{CallInfo, HostState, PluginContext};
use super::native::NativeStage;
use super::plugin::{Plugin, World};

#[derive(Clone)]
enum Pre {
    Transformer(transformer::TransformerPre<HostState>),
    Validator(validator::ValidatorPre<HostState>),
    Allocator(allocator::AllocatorPre<HostState>),
    Source(source::SourcePre<HostState>),
    Sink(sink::SinkPre<HostState>),
}

enum Exports {
    Transformer(transformer::Transformer),
    Validator(validator::Validator),
    Allocator(allocator::Allocator),
    Source(source::Source),
    Sink(sink::Sink),
}

struct Warm {
    store: Store<HostState>,
    exports: Exports,
}

/// A plugin bound to a context; cheap to share (`Arc`) between workers.
pub struct PluginInstance {
    plugin: Arc<Plugin>,
    ctx: Arc<PluginContext>,
    pre: Pre,
    idle: Mutex<Vec<Warm>>,
    live: Mutex<usize>,
    freed: Condvar,
    native: Option<Arc<dyn NativeStage>>,
}

impl PluginInstance {
    /// Binds `plugin` to `ctx`. Instances are created on first use.
    ///
    /// # Errors
    ///
    /// When the plugin's exports do not have the shape of its world (a
    /// plugin that passed loading always does).
    pub fn new(plugin: Arc<Plugin>, ctx: PluginContext) -> anyhow::Result<PluginInstance> {
        let pre = plugin.pre.clone();
        let pre = match plugin.world {
            World::Transformer => Pre::Transformer(transformer::TransformerPre::new(pre)?),
            World::Validator => Pre::Validator(validator::ValidatorPre::new(pre)?),
            World::Allocator => Pre::Allocator(allocator::AllocatorPre::new(pre)?),
            World::Source => Pre::Source(source::SourcePre::new(pre)?),
            World::Sink => Pre::Sink(sink::SinkPre::new(pre)?),
        };
        Ok(PluginInstance { plugin, ctx: Arc::new(ctx), pre, idle: Mutex::default(), live: Mutex::new(0), freed: Condvar::new(), native: None })
    }

    /// The same plugin and context with its stage calls (transform,
    /// validate, allocate) answered by `native` instead of the component:
    /// for measuring the sandbox's cost (see [`super::native`]).
    pub fn with_native(&self, native: Arc<dyn NativeStage>) -> PluginInstance {
        PluginInstance {
            plugin: self.plugin.clone(),
            ctx: self.ctx.clone(),
            pre: self.pre.clone(),
            idle: Mutex::default(),
            live: Mutex::new(0),
            freed: Condvar::new(),
            native: Some(native),
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
        *self.live.lock().unwrap()
    }

    fn error(&self, failure: Failure) -> CallError {
        CallError { plugin: self.plugin.name.clone(), digest: self.plugin.digest.clone(), failure }
    }

    fn wrong_world(&self, wanted: World) -> CallError {
        self.error(Failure::Contract(format!(
            "called as a {wanted} but it implements the {} world",
            self.plugin.world
        )))
    }

    /// Takes an idle instance, or makes one if under the cap, or waits.
    fn checkout(&self) -> Result<Warm, CallError> {
        if let Some(warm) = self.idle.lock().unwrap().pop() {
            return Ok(warm);
        }
        {
            let mut live = self.live.lock().unwrap();
            loop {
                if let Some(warm) = self.idle.lock().unwrap().pop() {
                    return Ok(warm);
                }
                if *live < self.ctx.limits.instances.max(1) {
                    *live += 1;
                    break;
                }
                live = self.freed.wait(live).unwrap();
            }
        }
        self.instantiate().inspect_err(|_| self.release_slot())
    }

    fn release_slot(&self) {
        *self.live.lock().unwrap() -= 1;
        self.freed.notify_one();
    }

    fn instantiate(&self) -> Result<Warm, CallError> {
        let engine = self.plugin.pre.engine();
        let mut store = Store::new(engine, HostState::new(self.ctx.clone()));
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(self.ctx.limits.timeout));
        let exports = match &self.pre {
            Pre::Transformer(p) => p.instantiate(&mut store).map(Exports::Transformer),
            Pre::Validator(p) => p.instantiate(&mut store).map(Exports::Validator),
            Pre::Allocator(p) => p.instantiate(&mut store).map(Exports::Allocator),
            Pre::Source(p) => p.instantiate(&mut store).map(Exports::Source),
            Pre::Sink(p) => p.instantiate(&mut store).map(Exports::Sink),
        };
        match exports {
            Ok(exports) => Ok(Warm { store, exports }),
            Err(e) => {
                let failure = match self.classify(e, &store.data().memory.exceeded) {
                    Failure::Trap(t) => Failure::Instantiate(t),
                    other => other,
                };
                Err(self.error(failure))
            }
        }
    }

    fn classify(&self, e: wasmtime::Error, memory_exceeded: &Option<usize>) -> Failure {
        if let Some(requested) = *memory_exceeded {
            return Failure::MemoryLimit { limit: self.ctx.limits.memory, requested };
        }
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return Failure::Timeout(self.ctx.limits.timeout);
        }
        // The trap code and the guest backtrace, one line each.
        Failure::Trap(format!("{e:#}").lines().next().unwrap_or_default().to_string())
    }

    /// Runs `f` on an instance with the call limits armed; a failed instance
    /// is dropped, a good one goes back to the pool.
    fn call<R>(
        &self,
        info: CallInfo,
        f: impl FnOnce(&mut Store<HostState>, &Exports) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let mut warm = self.checkout()?;
        let data = warm.store.data_mut();
        data.call = info;
        data.memory.exceeded = None;
        warm.store.set_epoch_deadline(deadline_ticks(self.ctx.limits.timeout));
        let result = f(&mut warm.store, &warm.exports);
        match &result {
            Err(CallError { failure: Failure::Plugin(_) | Failure::Contract(_), .. }) | Ok(_) if !self.ctx.limits.fresh => {
                self.idle.lock().unwrap().push(warm);
                self.freed.notify_one();
            }
            _ => {
                drop(warm);
                self.release_slot();
            }
        }
        result
    }

    fn trap(&self, store: &Store<HostState>, e: wasmtime::Error) -> CallError {
        let failure = self.classify(e, &store.data().memory.exceeded);
        tracing::warn!(plugin = %self.plugin.name, digest = %self.plugin.short_digest(), %failure, "plugin call failed");
        self.error(failure)
    }

    /// Calls a transformer.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn transform(&self, msg: Message) -> Result<Vec<Message>, CallError> {
        if let Some(n) = &self.native {
            return n.transform(msg).map_err(|e| self.error(Failure::Plugin(e)));
        }
        self.call(call_info(Some(&msg)), |store, exports| {
            let Exports::Transformer(t) = exports else { return Err(self.wrong_world(World::Transformer)) };
            let input = msg.conv();
            match t.syncline_plugin_transform().call_transform(&mut *store, &input) {
                Ok(Ok(out)) => Ok(out.conv()),
                Ok(Err(e)) => Err(self.error(Failure::Plugin(plugin_error(e)))),
                Err(e) => Err(self.trap(store, e)),
            }
        })
    }

    /// Calls a validator.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn validate(&self, msg: Message) -> Result<Vec<Violation>, CallError> {
        if let Some(n) = &self.native {
            return Ok(n.validate(msg));
        }
        self.call(call_info(Some(&msg)), |store, exports| {
            let Exports::Validator(v) = exports else { return Err(self.wrong_world(World::Validator)) };
            let input = msg.conv();
            match v.syncline_plugin_validate().call_validate(&mut *store, &input) {
                Ok(out) => Ok(out
                    .into_iter()
                    .map(|v| Violation { field: v.field, code: v.code, severity: v.severity.conv(), text: v.text })
                    .collect()),
                Err(e) => Err(self.trap(store, e)),
            }
        })
    }

    /// Calls an allocator with a batch.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn allocate(&self, batch: Vec<Message>) -> Result<Vec<Message>, CallError> {
        if let Some(n) = &self.native {
            return n.allocate(batch).map_err(|e| self.error(Failure::Plugin(e)));
        }
        self.call(call_info(batch.first()), |store, exports| {
            let Exports::Allocator(a) = exports else { return Err(self.wrong_world(World::Allocator)) };
            let input: Vec<_> = batch.conv();
            match a.syncline_plugin_allocate().call_allocate(&mut *store, &input) {
                Ok(Ok(out)) => Ok(out.conv()),
                Ok(Err(e)) => Err(self.error(Failure::Plugin(plugin_error(e)))),
                Err(e) => Err(self.trap(store, e)),
            }
        })
    }

    /// Polls a source for `tenant`.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause.
    pub fn poll(&self, tenant: &str, cursor: Option<&str>) -> Result<PollBatch, CallError> {
        let info = CallInfo { tenant: tenant.to_string(), correlation_id: String::new() };
        self.call(info, |store, exports| {
            let Exports::Source(s) = exports else { return Err(self.wrong_world(World::Source)) };
            match s.syncline_plugin_poll().call_poll(&mut *store, cursor) {
                Ok(Ok(b)) => Ok(PollBatch { messages: b.messages.conv(), cursor: b.cursor, more: b.more }),
                Ok(Err(e)) => Err(self.error(Failure::Plugin(plugin_error(e)))),
                Err(e) => Err(self.trap(store, e)),
            }
        })
    }

    /// Delivers messages through a sink; one outcome per message.
    ///
    /// # Errors
    ///
    /// [`CallError`] naming plugin, digest and cause, including a sink that
    /// returns the wrong number of outcomes.
    pub fn deliver(&self, messages: Vec<Message>) -> Result<Vec<DeliveryOutcome>, CallError> {
        let count = messages.len();
        self.call(call_info(messages.first()), |store, exports| {
            use sink::exports::syncline::plugin::deliver::DeliveryOutcome as W;
            let Exports::Sink(s) = exports else { return Err(self.wrong_world(World::Sink)) };
            let input: Vec<_> = messages.conv();
            let out = s.syncline_plugin_deliver().call_deliver(&mut *store, &input).map_err(|e| self.trap(store, e))?;
            if out.len() != count {
                return Err(self.error(Failure::Contract(format!(
                    "returned {} outcomes for {count} messages",
                    out.len()
                ))));
            }
            Ok(out
                .into_iter()
                .map(|o| match o {
                    W::Delivered(reference) => DeliveryOutcome::Delivered { reference },
                    W::Retryable(r) => DeliveryOutcome::Retryable { reason: r.reason, after_ms: r.after_ms },
                    W::Permanent(reason) => DeliveryOutcome::Permanent { reason },
                })
                .collect())
        })
    }
}

fn plugin_error(e: super::bindings::host_api::plugin_types::PluginError) -> PluginError {
    PluginError { code: e.code, message: e.message, retryable: e.retryable }
}

fn call_info(first: Option<&Message>) -> CallInfo {
    CallInfo {
        tenant: first.map(|m| m.tenant.clone()).unwrap_or_default(),
        correlation_id: first.map(|m| m.correlation_id.clone()).unwrap_or_default(),
    }
}
