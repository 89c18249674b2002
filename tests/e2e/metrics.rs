//! Metrics as a real Prometheus server sees them: Debian's `prometheus`
//! (installed by `scripts/setup`) is started on loopback, scrapes the
//! host's `/metrics` every second with a reader token, and after real
//! traffic the business KPIs are read back with PromQL — the acceptance rate
//! of recommendations, replenishment delivered late, inventory event
//! latency — along with exceptions, dead letters, plugin failures by class,
//! deliveries and the latency histograms. A scrape Prometheus cannot parse
//! would leave `up` at 0 and every query empty.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use syncline::config::hash_token;

use crate::harness::*;

const READER: &str = "snl_test-prometheus-reader";
const ADMIN: &str = "snl_test-metrics-admin";

const CONFIG: &str = crate::site_config!(
    r#"
# Every replenishment message delivered more than 1 ms after its acceptance is late.
[tier.standard]
alert-after = "1ms"

[exception-queue.allocation]
owner = "Supply planning"

[[pipeline]]
id = "recs"
tenant = "acme"
stages = [{ allocate = "moq-leadtime", batch = { max = 10, window = "10ms" }, tables = { moq = "ref/moq.csv", lead-times = "ref/lead-times.csv" } }]
routes = [{ to = "erp" }]

[[pipeline]]
id = "inventory"
tenant = "acme"
routes = [{ to = "planning" }]

[[pipeline]]
id = "hostile"
tenant = "acme"
stages = [{ transform = "hostile" }]
routes = [{ to = "planning" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]

[sink.planning]
plugin = "http-sink"
config = { url = "http://{ERP}/positions" }
allowed-hosts = ["{ERP}"]
"#
);

fn tokens() -> String {
    let token = |id: &str, secret: &str, roles: &str| {
        format!("\n[[token]]\nid = \"{id}\"\nhash = \"sha256:{}\"\ntenants = [\"*\"]\nroles = {roles}\n", hex::encode(hash_token(secret)))
    };
    token("prometheus", READER, r#"["reader"]"#) + &token("ops", ADMIN, r#"["admin", "publisher"]"#)
}

/// A Prometheus server on loopback scraping `target` (host:port) every second.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let bin = which("prometheus").expect("the `prometheus` command is missing: run scripts/setup (it installs Debian's prometheus package)");
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: syncline\n    authorization:\n      credentials: {READER}\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let (child, _) = spawn_until(cmd, "Server is ready to receive web requests", true, Arc::default());
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The value of an instant PromQL query with one result, if it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let text = agent.get(format!("{}/api/v1/query", self.url)).query("query", promql).call().ok()?.body_mut().read_to_string().ok()?;
        let answer: Value = serde_json::from_str(&text).ok()?;
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let result = answer["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql} has {} series: {answer}", result.len());
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` is `expected` (KPIs only grow, so a value that
    /// went past it is a failure).
    fn expect(&self, promql: &str, expected: f64) {
        eventually(Duration::from_secs(30), &format!("{promql} == {expected} (last: {:?})", self.value(promql)), || {
            self.value(promql).filter(|v| (v - expected).abs() < 1e-9)
        });
    }

    /// Waits until `promql` is at least `floor`, and returns it.
    fn at_least(&self, promql: &str, floor: f64) -> f64 {
        eventually(Duration::from_secs(30), &format!("{promql} >= {floor}"), || self.value(promql).filter(|v| *v >= floor))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}


fn inventory(id: &str, as_of: &str) -> String {
    json!({"schema-version": "1.0.0", "kind": "inventory-position", "idempotency-key": id,
           "body": {"item": "SKU-100", "location": "DC-1", "on-hand": 40.0, "allocated": 5.0, "in-transit": 0.0, "available": 35.0, "uom": "EA", "as-of": as_of}})
    .to_string()
}

#[test]
fn prometheus_scrapes_the_flow_and_the_business_kpis() {
    let erp = Erp::start(&[]);
    let site = Site::new(&(CONFIG.to_string() + &tokens()), &erp);
    site.share_plugin("hostile", "hostile");
    let host = Host::start(&site);
    let prometheus = Prometheus::start(host.url.trim_start_matches("http://"));
    let auth = format!("Bearer {ADMIN}");
    let post = |pipeline: &str, body: String| {
        let (status, answer) = host.ingest("acme", pipeline, "messages", "application/json", &[("authorization", &auth)], body.as_bytes());
        assert_eq!(status, 202, "{answer}");
    };

    // Two recommendations become requisitions; one names a supplier with no
    // lead time, which the rules defer as an exception: acceptance 2/3.
    post("recs", recommendation("R-1").to_string());
    post("recs", recommendation("R-2").to_string());
    let mut unknown = recommendation("R-3");
    unknown["body"]["source"] = json!({"supplier": "SUP-UNKNOWN"});
    post("recs", unknown.to_string());
    // Two positions counted two hours ago; one message the plugin traps on.
    let two_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let as_of = two_hours_ago.format(&time::format_description::well_known::Rfc3339).unwrap();
    post("inventory", inventory("INV-1", &as_of));
    post("inventory", inventory("INV-2", &as_of));
    let mut trap = recommendation("H-1");
    trap["headers"] = json!({"do": "panic", "item": "SKU-100"});
    post("hostile", trap.to_string());

    // The scrape parses: the target is up with no error.
    prometheus.expect(r#"up{job="syncline"}"#, 1.0);
    let (_, targets) = get(&format!("{}/api/v1/targets", prometheus.url));
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!((target["health"].as_str(), target["lastError"].as_str()), (Some("up"), Some("")), "{targets}");

    // Messages in, through the stages, out to the sinks.
    prometheus.expect(r#"sum(syncline_messages_accepted_total{tenant="acme"})"#, 6.0);
    prometheus.expect(r#"syncline_stage_messages_total{pipeline="recs",stage="1",plugin="moq-leadtime",outcome="passed"}"#, 3.0);
    prometheus.expect(r#"syncline_messages_routed_total{tenant="acme",pipeline="recs",sink="erp"}"#, 2.0);
    prometheus.expect(r#"syncline_deliveries_total{sink="erp",outcome="delivered"}"#, 2.0);
    prometheus.expect(r#"syncline_deliveries_total{sink="planning",outcome="delivered"}"#, 2.0);
    prometheus.expect(r#"syncline_delivery_latency_seconds_count{tenant="acme",sink="erp"}"#, 2.0);
    prometheus.at_least(r#"sum(syncline_plugin_call_seconds_count{plugin="moq-leadtime",world="allocator"})"#, 1.0);
    prometheus.at_least(r#"sum(syncline_stage_seconds_count{pipeline="recs"})"#, 3.0);

    // The business KPIs.
    prometheus.expect(r#"sum(syncline_recommendations_total{outcome="ordered"}) / sum(syncline_recommendations_total)"#, 2.0 / 3.0);
    prometheus.expect(r#"sum(syncline_replenishment_delayed_total{kind="purchase-requisition"})"#, 2.0);
    prometheus.expect(r#"syncline_inventory_event_latency_seconds_count{tenant="acme",sink="planning"}"#, 2.0);
    let latency = prometheus.at_least(r#"syncline_inventory_event_latency_seconds_sum{tenant="acme",sink="planning"}"#, 2.0 * 7200.0);
    assert!(latency < 2.0 * 7200.0 + 600.0, "two positions counted two hours ago: {latency}");
    prometheus.expect(r#"syncline_exceptions_open{queue="allocation"}"#, 1.0);
    prometheus.expect(r#"syncline_exceptions_raised_total{tenant="acme",queue="allocation"}"#, 1.0);
    prometheus.at_least(r#"syncline_exception_oldest_age_seconds{queue="allocation"}"#, 0.0);

    // The trap: a failure by class, a dead letter kept and counted.
    prometheus.expect(r#"syncline_plugin_calls_total{plugin="hostile",world="transformer",result="trap"}"#, 1.0);
    prometheus.expect(r#"syncline_dead_lettered_total{tenant="acme",place="pipeline/hostile"}"#, 1.0);
    prometheus.expect(r#"syncline_dead_letters_open{tenant="acme"}"#, 1.0);
    prometheus.expect(r#"syncline_sink_breaker_state{sink="erp"}"#, 0.0);

    // Prometheus knows each family's type from the exposition.
    let (_, metadata) = get(&format!("{}/api/v1/metadata", prometheus.url));
    let kind = |m: &str| metadata["data"][m][0]["type"].as_str().map(str::to_string);
    assert_eq!(kind("syncline_recommendations").as_deref(), Some("counter"), "{metadata}");
    assert_eq!(kind("syncline_delivery_latency_seconds").as_deref(), Some("histogram"), "{metadata}");
    assert_eq!(kind("syncline_dead_letters_open").as_deref(), Some("gauge"), "{metadata}");

    // Without the token the scrape is refused (401), not served.
    assert_eq!(send("GET", &format!("{}/metrics", host.url), "", &[], b"").0, 401);
}
