//! Spans exported over OTLP/HTTP to a receiver on loopback, decoded with the
//! official OpenTelemetry protobuf types: a message sent with a W3C
//! `traceparent` has its `message`, `stage` and `deliver` spans in the
//! caller's trace, carrying tenant, pipeline, correlation id, plugin and
//! digest; and a host whose collector is down delivers all the same.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "recs"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", batch = { max = 10, window = "10ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A span as received, with its service's name.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<String> {
        value(&self.span.attributes, key)
    }
}

fn value(attributes: &[KeyValue], key: &str) -> Option<String> {
    let v = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match v {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::BoolValue(b) => b.to_string(),
        Any::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// An OTLP/HTTP trace receiver on loopback.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = spans.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/v1/traces",
                    post(move |body: axum::body::Bytes| async move {
                        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                        for rs in request.resource_spans {
                            let service = rs.resource.as_ref().and_then(|r| value(&r.attributes, "service.name")).unwrap_or_default();
                            for ss in rs.scope_spans {
                                kept.lock().unwrap().extend(ss.spans.into_iter().map(|span| Received { service: service.clone(), span }));
                            }
                        }
                        ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
                    }),
                );
                axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap();
            });
        });
        Receiver { url, spans }
    }

    fn named(&self, name: &str) -> Vec<Received> {
        self.spans.lock().unwrap().iter().filter(|s| s.span.name == name).cloned().collect()
    }
}

#[test]
fn a_traced_message_has_its_stage_and_delivery_spans_in_the_callers_trace() {
    let receiver = Receiver::start();
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let host = Host::start_env(&site.config(), &[], &env);
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, answer) =
        host.ingest("acme", "recs", "messages", "application/json", &[("traceparent", &traceparent)], recommendation("R-1").to_string().as_bytes());
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let trace = host.settled(&id);
    assert_eq!(trace["outputs"][0]["state"], "delivered", "{trace}");

    let message = eventually(Duration::from_secs(20), "the message span", || {
        receiver.named("message").into_iter().find(|s| s.attr("message_id").as_deref() == Some(id.as_str()))
    });
    assert_eq!(hex::encode(&message.span.trace_id), TRACE, "the message is in the caller's trace");
    assert_eq!(message.service, "syncline");
    for (key, expected) in [("tenant", "acme"), ("pipeline", "recs"), ("correlation_id", TRACE), ("attempt", "1")] {
        assert_eq!(message.attr(key).as_deref(), Some(expected), "{key} of {message:?}");
    }

    // The allocate stage ran its batch under the shard's batch span, in the same trace.
    let stage = eventually(Duration::from_secs(20), "the stage span", || {
        receiver.named("stage").into_iter().find(|s| s.attr("plugin").as_deref() == Some("moq-leadtime"))
    });
    assert_eq!(stage.attr("stage").as_deref(), Some("1"));
    assert!(stage.attr("digest").is_some_and(|d| d.starts_with("sha256:")), "{stage:?}");
    let batch = receiver.named("batch").into_iter().find(|b| b.span.span_id == stage.span.parent_span_id).expect("the stage's batch span");
    assert_eq!((batch.attr("tenant").as_deref(), batch.attr("pipeline").as_deref()), (Some("acme"), Some("recs")));

    let deliver = eventually(Duration::from_secs(20), "the deliver span", || receiver.named("deliver").into_iter().find(|s| s.attr("sink").as_deref() == Some("erp")));
    assert_eq!(deliver.attr("plugin").as_deref(), Some("http-sink"));
    assert!(deliver.attr("digest").is_some_and(|d| d.starts_with("sha256:")), "{deliver:?}");
    assert!(deliver.span.end_time_unix_nano >= deliver.span.start_time_unix_nano);
}

#[test]
fn a_host_whose_collector_is_down_delivers_all_the_same() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let endpoint = format!("http://{closed}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let mut host = Host::start_env(&site.config(), &[], &env);
    for n in 0..5 {
        let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &[], recommendation(&format!("R-{n}")).to_string().as_bytes());
        assert_eq!(status, 202, "{answer}");
        let trace = host.settled(answer["id"].as_str().unwrap());
        assert_eq!(trace["outputs"][0]["state"], "delivered", "{trace}");
    }
    assert!(host.terminate(), "SIGTERM still ends the host with exit 0 (the flush gives up)");
}
