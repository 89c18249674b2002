//! The operator console in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/setup`) against a running host with tokens. A wrong token is
//! refused; the right one signs in; the operator opens a pipeline (stages,
//! plugin, digest), follows a correlation's timeline, replays a dead letter,
//! resolves an exception, pauses and resumes a sink and reads the KPIs —
//! each checked through the API as well. Screenshots of each view go to
//! `target/test-artifacts/console/`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use syncline::config::hash_token;

use crate::harness::*;
use crate::support::root;

const OPERATOR: &str = "snl_test-console-operator";

const CONFIG: &str = crate::site_config!(
    r#"
[exception-queue.allocation]
owner = "Supply planning"

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


/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let bin = which("chromedriver").expect("`chromedriver` is missing: run scripts/setup (it installs Debian's chromium and chromium-driver)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--port={port}"));
        let (child, _) = spawn_until(cmd, "started successfully", false, Arc::default());
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = root().join("target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("no `{selector}`: {e}"))
}

/// Waits until the element `selector` shows text containing `text`.
async fn text_in(c: &Client, selector: &str, text: &str) -> String {
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(selector)).await {
            if let Ok(t) = e.text().await {
                if t.contains(text) {
                    return t;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = c.source().await.unwrap_or_default();
    panic!("`{selector}` never showed `{text}`; the page:\n{page}")
}

fn authed(host: &Host, method: &str, path: &str, body: &str) -> (u16, Value) {
    send(method, &format!("{}{path}", host.url), "application/json", &[("authorization", &format!("Bearer {OPERATOR}"))], body.as_bytes())
}

#[test]
fn an_operator_works_the_console_in_a_browser() {
    let erp = Erp::start(&[]);
    let token = format!("\n[[token]]\nid = \"ops\"\nhash = \"sha256:{}\"\ntenants = [\"*\"]\nroles = [\"admin\", \"publisher\"]\n", hex::encode(hash_token(OPERATOR)));
    let site = Site::new(&(CONFIG.to_string() + &token), &erp);
    let host = Host::start(&site);
    let post = |headers: &[(&str, &str)], body: Value| {
        let mut all = vec![("authorization", format!("Bearer {OPERATOR}"))];
        all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, answer) = host.ingest("acme", "recs", "messages", "application/json", &all, body.to_string().as_bytes());
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().unwrap().to_string()
    };
    // A flow that reaches the ERP; a requisition the ERP refuses (dead
    // letter); a recommendation the rules defer (exception).
    post(&[("x-correlation-id", "flow-console")], recommendation("R-1"));
    eventually(Duration::from_secs(20), "R-1 delivered", || (erp.unique() == 1).then_some(()));
    erp.mode("422", Some(1));
    post(&[], recommendation("R-2"));
    let dead = eventually(Duration::from_secs(20), "a dead letter", || {
        let (_, list) = authed(&host, "GET", "/v1/dead-letters", "");
        list["dead-letters"].as_array().and_then(|l| l.first().cloned())
    });
    let mut unknown = recommendation("R-3");
    unknown["body"]["source"] = json!({"supplier": "SUP-UNKNOWN"});
    post(&[], unknown);
    let exception = eventually(Duration::from_secs(20), "an exception", || {
        let (_, list) = authed(&host, "GET", "/v1/exceptions", "");
        list["exceptions"].as_array().and_then(|l| l.first().cloned())
    });

    let driver = Driver::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": which("chromium").expect("chromium").display().to_string(),
                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a browser session");

        // A wrong token is refused with the API's own words; the right one signs in.
        c.goto(&format!("{}/console", host.url)).await.unwrap();
        css(&c, "[data-test=token]").await.send_keys("snl_wrong").await.unwrap();
        css(&c, "[data-test=sign-in]").await.click().await.unwrap();
        text_in(&c, "[data-test=error]", "unauthenticated").await;
        shot(&c, "sign-in-refused").await;
        let field = css(&c, "[data-test=token]").await;
        field.clear().await.unwrap();
        field.send_keys(OPERATOR).await.unwrap();
        css(&c, "[data-test=sign-in]").await.click().await.unwrap();

        // A pipeline: its stage's plugin and digest.
        css(&c, "[data-test=pipeline-recs]").await.click().await.unwrap();
        text_in(&c, "[data-test=stage-plugin]", "moq-leadtime").await;
        let digest = css(&c, "[data-test=stage-digest]").await.text().await.unwrap();
        assert_eq!(digest.len(), 12, "a short digest: {digest}");
        text_in(&c, "[data-test=accepted]", "3").await;
        shot(&c, "pipeline").await;

        // A correlation as a timeline, from acceptance to delivery.
        css(&c, "[data-test=nav-flow]").await.click().await.unwrap();
        css(&c, "[data-test=correlation]").await.send_keys("flow-console").await.unwrap();
        css(&c, "[data-test=follow]").await.click().await.unwrap();
        let timeline = text_in(&c, "[data-test=timeline]", "delivered").await;
        assert!(timeline.contains("accepted") && timeline.contains("replenishment-recommendation"), "{timeline}");
        shot(&c, "flow").await;

        // Replay the dead letter.
        let id = dead["id"].as_i64().unwrap();
        css(&c, "[data-test=nav-dead-letters]").await.click().await.unwrap();
        shot(&c, "dead-letters").await;
        css(&c, &format!("[data-test=replay-{id}]")).await.click().await.unwrap();
        text_in(&c, "[data-test=notice]", &format!("Dead letter {id} replayed")).await;
        let (_, replayed) = authed(&host, "GET", &format!("/v1/dead-letters/{id}"), "");
        assert_eq!(replayed["state"], "replayed", "{replayed}");

        // Resolve the exception with a comment.
        let id = exception["id"].as_i64().unwrap();
        css(&c, "[data-test=nav-exceptions]").await.click().await.unwrap();
        css(&c, &format!("[data-test=comment-{id}]")).await.send_keys("lead time added for SUP-UNKNOWN").await.unwrap();
        shot(&c, "exceptions").await;
        css(&c, &format!("[data-test=resolve-{id}]")).await.click().await.unwrap();
        text_in(&c, "[data-test=notice]", "resolve done").await;
        let (_, resolved) = authed(&host, "GET", &format!("/v1/exceptions/{id}"), "");
        assert_eq!((resolved["state"].as_str(), resolved["note"].as_str()), (Some("resolved"), Some("lead time added for SUP-UNKNOWN")), "{resolved}");

        // Pause the sink, then resume it.
        css(&c, "[data-test=nav-sinks]").await.click().await.unwrap();
        css(&c, "[data-test=pause-reason]").await.send_keys("ERP upgrade").await.unwrap();
        css(&c, "[data-test=pause-erp]").await.click().await.unwrap();
        text_in(&c, "[data-test=sink-erp]", "ERP upgrade").await;
        shot(&c, "sinks-paused").await;
        let (_, sinks) = authed(&host, "GET", "/v1/sinks", "");
        assert_eq!(sinks["sinks"][0]["control"]["paused"]["reason"], "ERP upgrade", "{sinks}");
        css(&c, "[data-test=resume-erp]").await.click().await.unwrap();
        css(&c, "[data-test=pause-erp]").await;

        // The KPIs: one of two recommendations ordered... of three: R-1 and R-2 ordered, R-3 deferred.
        css(&c, "[data-test=nav-kpis]").await.click().await.unwrap();
        text_in(&c, "[data-test=kpi-acme-acceptance]", "66.7%").await;
        shot(&c, "kpis").await;
        c.close().await.unwrap();
    });
}
