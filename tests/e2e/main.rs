//! End-to-end tests: the real host, real compiled plugins (built by the
//! test setup for wasm32-wasip2), real HTTP on loopback. One binary, one
//! module per topic.

mod access;
mod allocate;
mod approval;
mod capture;
mod cli;
mod cluster;
mod config_errors;
mod console;
mod correlation;
mod dead_letters;
mod exceptions;
mod fallback;
mod formatting;
mod guests;
mod hardening;
mod logs;
mod loops;
mod metrics;
mod openapi;
mod ordering;
mod harness;
mod pipeline;
mod reconcile;
mod regional;
mod reload;
mod runtime;
mod scaffold;
mod secrets;
mod sinks;
mod spans;
mod scenarios;
mod schema;
mod support;
mod versions;
