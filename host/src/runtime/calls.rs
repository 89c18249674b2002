//! Instantiating a plugin and calling its export through the bindings of
//! the `syncline:plugin` version it was built against: the current one, or
//! 1.0 for plugins built before 1.1 (their records are converted by the
//! 1.0 rules of `syncline_model::versions` on the way in and out). The two
//! are the same code over different generated types, written once by
//! [`calls!`].

use wasmtime::component::InstancePre;
use wasmtime::Store;

use super::error::CallError;
use super::host::HostState;
use super::instance::{PluginInstance, Request, Response};
use super::plugin::World;

/// A plugin ready to instantiate, by the version of its bindings.
#[derive(Clone)]
pub(super) enum Pre {
    Current(current::Pre),
    V1_0(v1_0::Pre),
}

/// A live instance's exports, by the version of its bindings.
pub(super) enum Exports {
    Current(current::Exports),
    V1_0(v1_0::Exports),
}

impl Pre {
    /// The bindings for a plugin of `world` built against minor version
    /// `minor` of `syncline:plugin` 1.x.
    pub(super) fn new(world: World, minor: u32, pre: InstancePre<HostState>) -> anyhow::Result<Pre> {
        Ok(match minor {
            0 => Pre::V1_0(v1_0::Pre::new(world, pre)?),
            _ => Pre::Current(current::Pre::new(world, pre)?),
        })
    }

    pub(super) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
        match self {
            Pre::Current(p) => p.instantiate(store).await.map(Exports::Current),
            Pre::V1_0(p) => p.instantiate(store).await.map(Exports::V1_0),
        }
    }
}

impl Exports {
    /// Calls the export `request` names.
    pub(super) async fn dispatch(&self, inst: &PluginInstance, store: &mut Store<HostState>, request: Request) -> Result<Response, CallError> {
        match self {
            Exports::Current(e) => current::dispatch(inst, store, e, request).await,
            Exports::V1_0(e) => v1_0::dispatch(inst, store, e, request).await,
        }
    }
}

/// A plugin's outputs have the shape of the bindings they came through,
/// whatever `schema-version` the plugin wrote on them (a stale copy of its
/// input's, a typo): they are labelled with this host's version, which is
/// the form they are stored and delivered in.
fn relabelled(mut messages: Vec<syncline_model::Message>) -> Vec<syncline_model::Message> {
    for m in &mut messages {
        if m.schema_version != syncline_model::SCHEMA_VERSION {
            m.schema_version = syncline_model::SCHEMA_VERSION.to_string();
        }
    }
    messages
}

macro_rules! calls {
    ($version:ident) => {
        mod $version {
            use wasmtime::component::InstancePre;
            use wasmtime::Store;

            use syncline_model::{DeliveryOutcome, Message, PluginError, PollBatch, Violation};

            use super::super::bindings::$version::convert::Conv;
            use super::super::bindings::$version::{allocator, sink, source, transformer, validator};
            use super::super::error::{CallError, Failure};
            use super::super::host::HostState;
            use super::super::instance::{PluginInstance, Request, Response};
            use super::super::plugin::World;

            #[derive(Clone)]
            pub(in super::super) enum Pre {
                Transformer(transformer::TransformerPre<HostState>),
                Validator(validator::ValidatorPre<HostState>),
                Allocator(allocator::AllocatorPre<HostState>),
                Source(source::SourcePre<HostState>),
                Sink(sink::SinkPre<HostState>),
            }

            pub(in super::super) enum Exports {
                Transformer(transformer::Transformer),
                Validator(validator::Validator),
                Allocator(allocator::Allocator),
                Source(source::Source),
                Sink(sink::Sink),
            }

            impl Pre {
                pub(super) fn new(world: World, pre: InstancePre<HostState>) -> anyhow::Result<Pre> {
                    Ok(match world {
                        World::Transformer => Pre::Transformer(transformer::TransformerPre::new(pre)?),
                        World::Validator => Pre::Validator(validator::ValidatorPre::new(pre)?),
                        World::Allocator => Pre::Allocator(allocator::AllocatorPre::new(pre)?),
                        World::Source => Pre::Source(source::SourcePre::new(pre)?),
                        World::Sink => Pre::Sink(sink::SinkPre::new(pre)?),
                    })
                }

                pub(super) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
                    match self {
                        Pre::Transformer(p) => p.instantiate_async(&mut *store).await.map(Exports::Transformer),
                        Pre::Validator(p) => p.instantiate_async(&mut *store).await.map(Exports::Validator),
                        Pre::Allocator(p) => p.instantiate_async(&mut *store).await.map(Exports::Allocator),
                        Pre::Source(p) => p.instantiate_async(&mut *store).await.map(Exports::Source),
                        Pre::Sink(p) => p.instantiate_async(&mut *store).await.map(Exports::Sink),
                    }
                }
            }

            pub(super) async fn dispatch(
                inst: &PluginInstance,
                store: &mut Store<HostState>,
                exports: &Exports,
                request: Request,
            ) -> Result<Response, CallError> {
                use sink::exports::syncline::plugin::deliver::DeliveryOutcome as W;
                let plugin_error = |e: transformer::syncline::plugin::plugin_types::PluginError| {
                    inst.error(Failure::Plugin(crate::runtime::clip::error(PluginError { code: e.code, message: e.message, retryable: e.retryable })))
                };
                match (request, exports) {
                    (Request::Transform(msg), Exports::Transformer(t)) => {
                        match t.syncline_plugin_transform().call_transform(&mut *store, &msg.conv()).await {
                            Ok(Ok(out)) => inst.bounded(out.conv()).map(|m| Response::Messages(super::relabelled(m))),
                            Ok(Err(e)) => Err(plugin_error(e)),
                            Err(e) => Err(inst.failed(store, e)),
                        }
                    }
                    (Request::Validate(msg), Exports::Validator(v)) => match v.syncline_plugin_validate().call_validate(&mut *store, &msg.conv()).await {
                        Ok(out) => inst
                            .bounded(out.into_iter().map(|v| Violation { field: v.field, code: v.code, severity: v.severity.conv(), text: v.text }).collect())
                            .map(|found| Response::Violations(crate::runtime::clip::violations(found))),
                        Err(e) => Err(inst.failed(store, e)),
                    },
                    (Request::Allocate(batch), Exports::Allocator(a)) => {
                        let input: Vec<_> = batch.conv();
                        match a.syncline_plugin_allocate().call_allocate(&mut *store, &input).await {
                            Ok(Ok(out)) => inst.bounded(out.conv()).map(|m| Response::Messages(super::relabelled(m))),
                            Ok(Err(e)) => Err(plugin_error(e)),
                            Err(e) => Err(inst.failed(store, e)),
                        }
                    }
                    (Request::Poll(cursor), Exports::Source(s)) => match s.syncline_plugin_poll().call_poll(&mut *store, cursor.as_deref()).await {
                        Ok(Ok(b)) => {
                            let messages: Vec<Message> = super::relabelled(inst.bounded(b.messages.conv())?);
                            Ok(Response::Batch(PollBatch { messages, cursor: b.cursor, more: b.more }))
                        }
                        Ok(Err(e)) => Err(plugin_error(e)),
                        Err(e) => Err(inst.failed(store, e)),
                    },
                    (Request::Deliver(messages), Exports::Sink(s)) => {
                        let count = messages.len();
                        let input: Vec<_> = messages.conv();
                        let out = s.syncline_plugin_deliver().call_deliver(&mut *store, &input).await.map_err(|e| inst.failed(store, e))?;
                        if out.len() != count {
                            return Err(inst.error(Failure::Contract(format!("returned {} outcomes for {count} messages", out.len()))));
                        }
                        let outcomes = out
                            .into_iter()
                            .map(|o| match o {
                                W::Delivered(reference) => DeliveryOutcome::Delivered { reference: crate::runtime::clip::text(reference, 4 * crate::runtime::clip::WORD) },
                                W::Retryable(r) => DeliveryOutcome::Retryable { reason: crate::runtime::clip::text(r.reason, crate::runtime::clip::TEXT), after_ms: r.after_ms },
                                W::Permanent(reason) => DeliveryOutcome::Permanent { reason: crate::runtime::clip::text(reason, crate::runtime::clip::TEXT) },
                            })
                            .collect();
                        inst.bounded(outcomes).map(Response::Outcomes)
                    }
                    (request, _) => Err(inst.wrong_world(request.world())),
                }
            }
        }
    };
}

calls!(current);
calls!(v1_0);
