//! The API's OpenAPI document against the running host: it reads as
//! OpenAPI 3.1 (parsed by `oas3`, independently of how it was written), its
//! operations are exactly the guarded endpoints plus the open probes, every
//! operation it lists is routed (a request reaches its guard and handler,
//! never the unknown-endpoint fallback or a 405), the status each one
//! answers is among those it documents, and an undocumented path is not
//! routed.

use syncline::api::auth::ENDPOINTS;

use crate::harness::*;

const CONFIG: &str = crate::site_config!(
    r#"
[[pipeline]]
id = "recs"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
);

/// `path` with its parameters filled with values this site has.
fn fill(path: &str) -> String {
    path.replace("{tenant}", "acme")
        .replace("{pipeline}", "recs")
        .replace("{stage}", "1")
        .replace("{action}", "resolve")
        .replace("{name}", "erp")
        .replace("{id}", "1")
}

#[test]
fn the_document_describes_every_route_and_only_routes() {
    let erp = Erp::start(&[]);
    let site = Site::new(CONFIG, &erp);
    let host = Host::start(&site);
    let text = get_text(&format!("{}/v1/openapi.json", host.url));
    let spec = oas3::from_json(&text).unwrap_or_else(|e| panic!("not an OpenAPI 3.1 document: {e}\n{text}"));
    let version = spec.validate_version().expect("a version");
    assert_eq!((version.major, version.minor), (3, 1));

    let operations: Vec<(String, String)> = spec.operations().map(|(path, method, _)| (path, method.to_string())).collect();
    assert_eq!(operations.len(), ENDPOINTS.len() + 3, "{operations:?}");
    for e in ENDPOINTS {
        assert!(operations.contains(&(e.path.to_string(), e.method.to_string())), "{} {} is routed but not documented", e.method, e.path);
    }
    for open in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert!(operations.contains(&(open.to_string(), "GET".to_string())), "{open} is not documented");
    }

    for (path, method, op) in spec.operations() {
        let url = format!("{}{}", host.url, fill(&path));
        let (status, body) = send(method.as_str(), &url, "application/json", &[], b"{}");
        let what = format!("{method} {path} answered {status} {body}");
        assert!(status != 0 && status != 405 && body["error"]["code"] != "no-such-endpoint", "not routed: {what}");
        let documented = op.responses.as_ref().is_some_and(|r| r.contains_key(&status.to_string()));
        assert!(documented, "undocumented status: {what}");
    }

    // The success answers of ingest (accepted, then the same key again) are documented too.
    let ingest = spec.operation(&http::Method::POST, "/v1/tenants/{tenant}/pipelines/{pipeline}/messages").expect("ingest is documented");
    for expected in [202, 200] {
        let (status, body) = host.ingest("acme", "recs", "messages", "application/json", &[], recommendation("R-1").to_string().as_bytes());
        assert_eq!(status, expected, "{body}");
        assert!(ingest.responses.as_ref().unwrap().contains_key(&status.to_string()), "ingest answered {status}, which it does not document");
    }

    let (status, body) = get(&format!("{}/v1/no-such-thing", host.url));
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("no-such-endpoint")), "{body}");
}
