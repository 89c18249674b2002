//! Where the host's logs and spans go. Log lines go to stderr, filtered by
//! `SYNCLINE_LOG`: text (colored only on a terminal) or one JSON object per
//! line. Spans — `batch` (a shard's claimed messages), `message` (tenant,
//! pipeline, message and correlation id), `stage` (stage number, plugin,
//! digest) and `deliver` (sink, plugin, digest, messages) — are at debug
//! level: free unless wanted, logged with `SYNCLINE_LOG=debug`, and
//! exported over OTLP/HTTP (protobuf) when the standard variable
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set for `syncline run`. Export runs in batches on its own thread, so
//! a slow or absent collector never holds a message; spans it cannot send
//! are dropped, and the last ones are flushed at shutdown.
//!
//! A message whose correlation id is a W3C trace id (as `traceparent` gives
//! on ingest) has its spans in that trace, so a flow started by a traced
//! caller shows up in the caller's trace.

use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The installed logging and, when on, the span export (flushed by
/// [`Telemetry::shutdown`]).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Whether the environment asks for span export.
fn otlp_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn provider() -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build()?;
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name("syncline").build()
    };
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

impl Telemetry {
    /// Installs the global subscriber: log lines in `format`, and span
    /// export when `export` (for `syncline run`) and the environment names
    /// an OTLP endpoint.
    ///
    /// # Errors
    ///
    /// The OTLP exporter cannot be built (a malformed endpoint or header).
    pub fn init(format: LogFormat, export: bool) -> anyhow::Result<Telemetry> {
        let filter = EnvFilter::try_from_env("SYNCLINE_LOG").unwrap_or_else(|_| "info".into());
        let logs = match format {
            LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_writer(std::io::stderr).boxed(),
        }
        .with_filter(filter);
        let provider = if export && otlp_wanted() { Some(provider()?) } else { None };
        let spans = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("syncline")).with_filter(EnvFilter::new("syncline=debug,warn")));
        tracing_subscriber::registry().with(logs).with(spans).init();
        if provider.is_some() {
            tracing::info!("exporting spans over OTLP");
        }
        Ok(Telemetry { provider })
    }

    /// Sends the spans not yet exported (waiting at most a few seconds).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("warning: the last spans could not be exported: {e}");
            }
        }
    }
}

/// The trace a correlation id names: a W3C trace id (32 hex digits, not
/// all zero), as `traceparent` gives on ingest.
fn trace_of(correlation: &str) -> Option<TraceId> {
    if correlation.len() != 32 || !correlation.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    TraceId::from_hex(correlation).ok().filter(|t| *t != TraceId::INVALID)
}

/// Puts `span` (not yet entered) in the trace its message's correlation
/// names, when it names one and spans are exported.
pub fn join_flow(span: &tracing::Span, correlation: &str) {
    if span.is_disabled() {
        return;
    }
    let Some(trace) = trace_of(correlation) else { return };
    // The remote parent is the flow itself: a span id derived from the trace
    // id, the same for every message of the flow.
    let mut id = [0u8; 8];
    id.copy_from_slice(&trace.to_bytes()[8..]);
    let parent = SpanContext::new(trace, SpanId::from_bytes(id), TraceFlags::SAMPLED, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_w3c_trace_id_names_a_trace() {
        assert!(trace_of("4bf92f3577b34da6a3ce929d0e0e4736").is_some());
        assert!(trace_of("00000000000000000000000000000000").is_none(), "the invalid trace id");
        assert!(trace_of("flow-R-1").is_none());
        assert!(trace_of("01M8EZ0PC99J9Z2PJP6V33JFMX").is_none(), "a message id (ULID) is not a trace");
        assert!(trace_of("4bf92f3577b34da6a3ce929d0e0e473g").is_none());
    }
}
