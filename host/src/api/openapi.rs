//! The API described as an OpenAPI 3.1 document, served at
//! `/v1/openapi.json`. Built from the code: the operations are
//! [`auth::ENDPOINTS`] (the table the router is built from) plus the open
//! probes, each with its role and reach; query parameters and request bodies
//! are the JSON Schemas of the handlers' own query and request types
//! (`schemars`); canonical messages use the model's schema; every error is
//! the one [`ErrorBody`] shape. The document's structure is `utoipa`'s
//! OpenAPI model; the schemas are placed in `components` as generated.
//!
//! What is written here by hand is per operation: a summary, which query
//! and body types it reads, its success answer, and the errors it may give
//! besides the ones every guarded operation may (401, 403).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder};

use super::auth::{self, Endpoint, Reach};
use super::ErrorBody;

/// A request body an operation reads.
#[derive(Clone, Copy)]
enum Body {
    /// None.
    Nothing,
    /// JSON of the named component schema (a control request).
    Json(&'static str),
    /// One canonical message (JSON), or a tenant's native payload.
    Message,
    /// Canonical messages as NDJSON or a JSON array.
    Batch,
}

/// What is said by hand of one operation.
struct Op {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// Its query parameters: the properties of this type's schema.
    query: Option<fn() -> Schema>,
    body: Body,
    /// Success statuses and what the answer holds.
    ok: &'static [(&'static str, &'static str)],
    /// Errors besides 401 and 403.
    errors: &'static [(&'static str, &'static str)],
}

const BAD: (&str, &str) = ("400", "The request does not read (a path parameter, the query or the body).");
const MISSING: (&str, &str) = ("404", "No such record, or one of another tenant (the same answer).");
const CONFLICT: (&str, &str) = ("409", "The record is not open any more.");
const UNAVAILABLE: (&str, &str) = ("503", "The store cannot be reached; nothing was done.");

fn schema<T: JsonSchema>() -> Schema {
    schemars::schema_for!(T)
}

/// Every operation (the guarded ones must be exactly [`auth::ENDPOINTS`];
/// a unit test checks).
const OPS: &[Op] = &[
    Op { method: "POST", path: "/v1/tenants/{tenant}/pipelines/{pipeline}/messages", tag: "ingest", summary: "Accept one message: canonical JSON, or a native payload (any other media type, or `?raw=true`) for the pipeline's first stage to map", query: Some(schema::<super::IngestQuery>), body: Body::Message, ok: &[("202", "Stored durably: `{\"id\", \"status\": \"accepted\"}`, answered after the commit that holds it."), ("200", "An idempotency key seen before: `{\"id\": ORIGINAL, \"status\": \"duplicate\"}`; nothing new is stored.")], errors: &[BAD, ("404", "Unknown tenant or pipeline (with the nearest name)."), ("409", "The pipeline is not fed over HTTP."), ("413", "Larger than the body limit."), ("422", "Unsupported schema version."), ("429", "Over the tenant's or token's quota; `Retry-After` says when."), UNAVAILABLE] },
    Op { method: "POST", path: "/v1/tenants/{tenant}/pipelines/{pipeline}/messages:batch", tag: "ingest", summary: "Accept a batch of canonical messages (NDJSON or a JSON array): all or nothing", query: None, body: Body::Batch, ok: &[("202", "Every message stored (or known): `{\"accepted\", \"duplicates\", \"results\"}`.")], errors: &[BAD, ("404", "Unknown tenant or pipeline."), ("409", "The pipeline is not fed over HTTP."), ("413", "Too many messages or bytes."), ("422", "Unsupported schema version (the line is named)."), ("429", "Over quota; `Retry-After` says when."), UNAVAILABLE] },
    Op { method: "GET", path: "/v1/messages/{id}", tag: "traces", summary: "A message's trace: each stage, route, delivery attempt, dead letter and exception", query: None, body: Body::Nothing, ok: &[("200", "The trace.")], errors: &[MISSING] },
    Op { method: "GET", path: "/v1/correlations/{id}", tag: "traces", summary: "Every message of a business flow (one correlation id) and their timeline", query: None, body: Body::Nothing, ok: &[("200", "The messages, their traces and one timeline (at most 500 messages; `truncated` beyond).")], errors: &[MISSING] },
    Op { method: "GET", path: "/v1/loops", tag: "traces", summary: "Delivered orders and their execution status: open, overdue, closed", query: Some(schema::<super::loops::LoopQuery>), body: Body::Nothing, ok: &[("200", "A page of loops, oldest first.")], errors: &[BAD] },
    Op { method: "GET", path: "/v1/pipelines", tag: "pipelines", summary: "Running pipelines with their stages (plugin names, digests, breakers) and routes; sinks for callers of every tenant", query: None, body: Body::Nothing, ok: &[("200", "Pipelines and sinks.")], errors: &[] },
    Op { method: "GET", path: "/v1/tenants/{tenant}/baselines/{pipeline}", tag: "pipelines", summary: "A planning pipeline's last released baseline (what a fallback would release)", query: Some(schema::<super::baselines::BaselineQuery>), body: Body::Nothing, ok: &[("200", "The baseline's records.")], errors: &[BAD, MISSING] },
    Op { method: "POST", path: "/v1/tenants/{tenant}/baselines/{pipeline}/release", tag: "pipelines", summary: "Release the baseline to an execution pipeline now", query: None, body: Body::Json("ReleaseRequest"), ok: &[("200", "How many messages were released.")], errors: &[BAD, MISSING, UNAVAILABLE] },
    Op { method: "POST", path: "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", tag: "pipelines", summary: "Start recording a stage's calls as golden test cases", query: None, body: Body::Json("CaptureRequest"), ok: &[("202", "Capturing until the time is up or enough cases are kept.")], errors: &[BAD, MISSING, ("409", "A capture of this stage is already running.")] },
    Op { method: "GET", path: "/v1/tenants/{tenant}/pipelines/{pipeline}/stages/{stage}/capture", tag: "pipelines", summary: "The cases a capture recorded (as `syncline test` reads them)", query: None, body: Body::Nothing, ok: &[("200", "The capture's state and cases.")], errors: &[MISSING] },
    Op { method: "GET", path: "/v1/exceptions", tag: "exceptions", summary: "Exceptions of the business queues (open by default), with owner and age", query: Some(schema::<super::exceptions::ListQuery>), body: Body::Nothing, ok: &[("200", "A page of exceptions, oldest first.")], errors: &[BAD, UNAVAILABLE] },
    Op { method: "GET", path: "/v1/exceptions/{id}", tag: "exceptions", summary: "One exception with its message", query: None, body: Body::Nothing, ok: &[("200", "The exception.")], errors: &[BAD, MISSING] },
    Op { method: "POST", path: "/v1/exceptions/{id}/{action}", tag: "exceptions", summary: "Settle an exception: `resolve` (with a comment), `retry` (through its pipeline again) or `discard` (with a reason)", query: None, body: Body::Json("SettleRequest"), ok: &[("200", "The settled exception.")], errors: &[BAD, ("404", "No such exception, or an unknown action."), CONFLICT, UNAVAILABLE] },
    Op { method: "GET", path: "/v1/dead-letters", tag: "dead letters", summary: "Dead letters (open by default) with place, reason and every attempt's error", query: Some(schema::<super::dead_letters::ListQuery>), body: Body::Nothing, ok: &[("200", "A page of dead letters, oldest first.")], errors: &[BAD, UNAVAILABLE] },
    Op { method: "POST", path: "/v1/dead-letters:replay", tag: "dead letters", summary: "Replay every open dead letter a filter matches (`{}`: all of the caller's)", query: None, body: Body::Json("DeadLetterFilter"), ok: &[("200", "What was replayed.")], errors: &[BAD, UNAVAILABLE] },
    Op { method: "GET", path: "/v1/dead-letters/{id}", tag: "dead letters", summary: "One dead letter with its message", query: None, body: Body::Nothing, ok: &[("200", "The dead letter.")], errors: &[BAD, MISSING] },
    Op { method: "POST", path: "/v1/dead-letters/{id}/replay", tag: "dead letters", summary: "Replay one dead letter: its message back through its pipeline, or its delivery back to its sink", query: None, body: Body::Nothing, ok: &[("200", "Where it went back to.")], errors: &[BAD, MISSING, CONFLICT, UNAVAILABLE] },
    Op { method: "POST", path: "/v1/dead-letters/{id}/purge", tag: "dead letters", summary: "Drop one dead letter, with a reason", query: None, body: Body::Json("PurgeRequest"), ok: &[("200", "The purged dead letter.")], errors: &[BAD, MISSING, CONFLICT, UNAVAILABLE] },
    Op { method: "GET", path: "/v1/audit", tag: "audit", summary: "The audit log: who did what, when, to which tenant (`format=jsonl` streams every match)", query: Some(schema::<super::audit::AuditQuery>), body: Body::Nothing, ok: &[("200", "A page of events, or JSON lines.")], errors: &[BAD, UNAVAILABLE] },
    Op { method: "GET", path: "/v1/cluster", tag: "operations", summary: "The host processes sharing the store and the queue slots each holds", query: None, body: Body::Nothing, ok: &[("200", "The processes.")], errors: &[UNAVAILABLE] },
    Op { method: "GET", path: "/v1/sinks", tag: "sinks", summary: "Sinks with queue depth, breaker, throttle, pause and maintenance", query: None, body: Body::Nothing, ok: &[("200", "The sinks.")], errors: &[] },
    Op { method: "POST", path: "/v1/sinks/{name}/pause", tag: "sinks", summary: "Hold a sink's queue (messages keep queueing) until resumed; kept across restarts", query: None, body: Body::Json("PauseRequest"), ok: &[("200", "The sink, paused.")], errors: &[BAD, ("404", "No such sink.")] },
    Op { method: "POST", path: "/v1/sinks/{name}/resume", tag: "sinks", summary: "Deliver a paused sink's queue again, in order", query: None, body: Body::Nothing, ok: &[("200", "The sink, resumed.")], errors: &[("404", "No such sink.")] },
    Op { method: "GET", path: "/v1/reloads", tag: "plugins", summary: "Reload history: trigger, what changed, old and new digests, outcome, error", query: None, body: Body::Nothing, ok: &[("200", "The reloads, newest last.")], errors: &[] },
    Op { method: "POST", path: "/v1/reload", tag: "plugins", summary: "Reload config and plugins now", query: None, body: Body::Nothing, ok: &[("200", "The reload's record (`outcome`: applied or unchanged).")], errors: &[("422", "Rejected: the old version keeps running; the error says why.")] },
    Op { method: "POST", path: "/v1/plugins/{name}/rollback", tag: "plugins", summary: "Go back to a plugin's previous version in one step", query: None, body: Body::Nothing, ok: &[("200", "The reload's record.")], errors: &[("409", "No previous version."), ("422", "The previous version was rejected.")] },
    Op { method: "GET", path: "/v1/plugins/approvals", tag: "plugins", summary: "Approved plugin versions (`[plugins] mode = \"approved\"`)", query: None, body: Body::Nothing, ok: &[("200", "The approvals.")], errors: &[UNAVAILABLE] },
    Op { method: "POST", path: "/v1/plugins/{name}/approve", tag: "plugins", summary: "Approve a plugin version (by digest); a waiting version goes live", query: None, body: Body::Json("ApprovalRequest"), ok: &[("200", "The approval and the reload it caused.")], errors: &[BAD, UNAVAILABLE] },
    Op { method: "POST", path: "/v1/plugins/{name}/revoke", tag: "plugins", summary: "Withdraw an approval (the next load of that digest is refused)", query: None, body: Body::Json("ApprovalRequest"), ok: &[("200", "The approval, withdrawn.")], errors: &[BAD, MISSING, UNAVAILABLE] },
    Op { method: "GET", path: "/metrics", tag: "operations", summary: "OpenMetrics text for Prometheus: the flow, failures by class, backlog and the business KPIs (docs/METRICS.md)", query: None, body: Body::Nothing, ok: &[("200", "OpenMetrics text.")], errors: &[] },
];

/// Open operations (no token).
const OPEN: &[Op] = &[
    Op { method: "GET", path: "/healthz", tag: "operations", summary: "Liveness: the process answers", query: None, body: Body::Nothing, ok: &[("200", "`{\"status\": \"ok\"}`.")], errors: &[] },
    Op { method: "GET", path: "/readyz", tag: "operations", summary: "Readiness: the store answers (with its counts)", query: None, body: Body::Nothing, ok: &[("200", "`{\"status\": \"ready\", \"store\": ...}`.")], errors: &[UNAVAILABLE] },
    Op { method: "GET", path: "/v1/openapi.json", tag: "operations", summary: "This document", query: None, body: Body::Nothing, ok: &[("200", "OpenAPI 3.1.")], errors: &[] },
];

/// A path parameter's schema and description.
fn path_param(name: &str) -> (Value, &'static str) {
    match name {
        "tenant" => (json!({"type": "string"}), "Tenant id."),
        "pipeline" => (json!({"type": "string"}), "Pipeline id."),
        "stage" => (json!({"type": "integer", "minimum": 1}), "Stage number, from 1."),
        "action" => (json!({"type": "string", "enum": ["resolve", "retry", "discard"]}), "What to do."),
        "name" => (json!({"type": "string"}), "Sink or plugin name."),
        _ => (json!({"type": "string"}), "Id."),
    }
}

/// The integer id of records numbered by the store.
fn numbered(path: &str) -> bool {
    path.starts_with("/v1/exceptions/") || path.starts_with("/v1/dead-letters/")
}

/// A generated schema as a component: its `$defs` hoisted beside it and
/// references rewritten to point there.
fn add_component(components: &mut Map<String, Value>, name: &str, schema: Value) {
    let mut schema = schema;
    if let Value::Object(o) = &mut schema {
        o.remove("$schema");
        o.remove("title");
        if let Some(Value::Object(defs)) = o.remove("$defs") {
            for (k, v) in defs {
                let mut v = v;
                rewrite_refs(&mut v);
                components.insert(k, v);
            }
        }
    }
    rewrite_refs(&mut schema);
    components.insert(name.to_string(), schema);
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                if let Some(rest) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{rest}");
                }
            }
            o.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn component_ref(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

/// The operation's query parameters from its query type's schema.
fn query_params(schema: &Schema) -> Vec<utoipa::openapi::path::Parameter> {
    let value = schema.as_value();
    let Some(props) = value.get("properties").and_then(Value::as_object) else { return Vec::new() };
    let required: Vec<&str> = value.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    props
        .iter()
        .map(|(name, prop)| {
            let mut prop = prop.clone();
            let description = prop.as_object_mut().and_then(|o| o.remove("description")).and_then(|d| d.as_str().map(str::to_string));
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(if required.contains(&name.as_str()) { Required::True } else { Required::False })
                .description(description)
                .schema(Some(serde_json::from_value::<RefOr<utoipa::openapi::Schema>>(prop).expect("a query field's schema reads as OpenAPI")))
                .build()
        })
        .collect()
}

fn operation(op: &Op, endpoint: Option<&Endpoint>) -> utoipa::openapi::path::Operation {
    let mut b = OperationBuilder::new()
        .tag(op.tag)
        .summary(Some(op.summary))
        .operation_id(Some(format!("{} {}", op.method, op.path)));
    let access = match endpoint {
        Some(e) => {
            b = b.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
            let reach = match e.reach {
                Reach::Tenant => "the tenants of the token (another tenant's records answer as if missing)",
                Reach::Host => "the whole host: a token with `tenants = [\"*\"]`",
            };
            format!("Needs the `{}` role. Reaches {reach}.", e.role.as_str())
        }
        None => {
            b = b.security(SecurityRequirement::default());
            "Open: no token.".to_string()
        }
    };
    b = b.description(Some(access));
    for segment in op.path.split('/') {
        for name in segment.split(['{', '}']).skip(1).step_by(2) {
            let (mut schema, description) = path_param(name);
            if name == "id" && numbered(op.path) {
                schema = json!({"type": "integer"});
            }
            let schema: RefOr<utoipa::openapi::Schema> = serde_json::from_value(schema).expect("a path parameter's schema");
            b = b.parameter(ParameterBuilder::new().name(name).parameter_in(ParameterIn::Path).required(Required::True).description(Some(description)).schema(Some(schema)));
        }
    }
    if let Some(query) = op.query {
        for p in query_params(&query()) {
            b = b.parameter(p);
        }
    }
    let body = match op.body {
        Body::Nothing => None,
        Body::Json(name) => Some(RequestBodyBuilder::new().required(Some(Required::True)).content("application/json", ContentBuilder::new().schema(Some(component_ref(name))).build()).build()),
        Body::Message => Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .description(Some("A canonical message; any other media type is taken as the pipeline's native payload."))
                .content("application/json", ContentBuilder::new().schema(Some(component_ref("Message"))).build())
                .content("*/*", ContentBuilder::new().build())
                .build(),
        ),
        Body::Batch => Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/x-ndjson", ContentBuilder::new().description(Some("One canonical message (the `Message` schema) per line.")).build())
                .content("application/json", ContentBuilder::new().schema(Some(RefOr::T(utoipa::openapi::schema::ArrayBuilder::new().items(component_ref("Message")).build().into()))).build())
                .build(),
        ),
    };
    b = b.request_body(body);
    let media = if op.path == "/metrics" { "application/openmetrics-text" } else { "application/json" };
    for (status, description) in op.ok {
        b = b.response(*status, ResponseBuilder::new().description(*description).content(media, ContentBuilder::new().build()));
    }
    let error = |description: &str| ResponseBuilder::new().description(description).content("application/json", ContentBuilder::new().schema(Some(component_ref("ErrorBody"))).build());
    if endpoint.is_some() {
        b = b.response("401", error("No token, or one the host does not know (`WWW-Authenticate: Bearer`)."));
        b = b.response("403", error("The token lacks the role, or the tenant."));
    }
    for (status, description) in op.errors {
        b = b.response(*status, error(description));
    }
    b.build()
}

/// The document.
pub fn document() -> Value {
    let mut paths = PathsBuilder::new();
    for op in OPS.iter().chain(OPEN) {
        let endpoint = auth::ENDPOINTS.iter().find(|e| e.method == op.method && e.path == op.path);
        let method = if op.method == "POST" { HttpMethod::Post } else { HttpMethod::Get };
        paths = paths.path(op.path, PathItem::new(method, operation(op, endpoint)));
    }
    let components = ComponentsBuilder::new().security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API token (`syncline token new`); config keeps only its SHA-256.")).build())).build();
    let info = InfoBuilder::new()
        .title("Syncline")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("The integration host between ERP and demand-planning systems: ingest canonical messages, follow them through pipelines, work exceptions and dead letters, operate sinks and plugins. Errors are always `{\"error\": {\"code\", \"message\"}}`."))
        .build();
    let doc = OpenApiBuilder::new().info(info).paths(paths).components(Some(components)).build();
    let mut value = serde_json::to_value(&doc).expect("the document serializes");
    let mut schemas = Map::new();
    add_component(&mut schemas, "Message", syncline_model::schema::message_schema());
    add_component(&mut schemas, "ErrorBody", schema::<ErrorBody>().to_value());
    add_component(&mut schemas, "ReleaseRequest", schema::<super::baselines::ReleaseRequest>().to_value());
    add_component(&mut schemas, "CaptureRequest", schema::<super::capture::CaptureRequest>().to_value());
    add_component(&mut schemas, "SettleRequest", schema::<super::exceptions::SettleRequest>().to_value());
    add_component(&mut schemas, "DeadLetterFilter", schema::<crate::store::records::DeadLetterFilter>().to_value());
    add_component(&mut schemas, "PurgeRequest", schema::<super::dead_letters::PurgeRequest>().to_value());
    add_component(&mut schemas, "PauseRequest", schema::<super::sinks::PauseRequest>().to_value());
    add_component(&mut schemas, "ApprovalRequest", schema::<super::plugins::ApprovalRequest>().to_value());
    value["components"]["schemas"] = Value::Object(schemas);
    value
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| serde_json::to_string(&document()).expect("serializes"));

/// `GET /v1/openapi.json`.
pub(super) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guarded_endpoint_is_documented_and_nothing_else_is() {
        for e in auth::ENDPOINTS {
            assert!(OPS.iter().any(|o| o.method == e.method && o.path == e.path), "{} {} is not documented", e.method, e.path);
        }
        for o in OPS {
            assert!(auth::ENDPOINTS.iter().any(|e| o.method == e.method && o.path == e.path), "{} {} is documented but not routed", o.method, o.path);
        }
        let doc = document();
        let count: usize = doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(count, auth::ENDPOINTS.len() + OPEN.len());
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn every_reference_resolves_and_every_parameter_has_a_type() {
        fn walk(v: &Value, refs: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        refs.push(r.clone());
                    }
                    o.values().for_each(|v| walk(v, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = document();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(refs.len() > 20);
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r} points outside the components"));
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["summary"].is_string() && op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let schema = &p["schema"];
                    assert!(schema.get("type").is_some() || schema.get("$ref").is_some(), "{method} {path}: parameter {p} has no type");
                }
            }
        }
        let audit = &doc["paths"]["/v1/audit"]["get"]["parameters"];
        let since = audit.as_array().unwrap().iter().find(|p| p["name"] == "since").expect("the audit query's fields are parameters");
        assert!(since["description"].as_str().unwrap().contains("RFC 3339"), "{since}");
        let settle = &doc["paths"]["/v1/exceptions/{id}/{action}"]["post"];
        assert_eq!(settle["parameters"][0]["schema"]["type"], "integer", "{settle}");
        assert_eq!(settle["security"], json!([{"bearer": []}]));
        assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
    }
}
