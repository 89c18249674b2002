//! Who may call the API, against a running host with tokens: every endpoint
//! of `api::auth::ENDPOINTS` × {no token, bad token, wrong role, foreign
//! tenant, hostile path parameters}; a foreign tenant learns nothing of
//! another's messages, exceptions, dead letters, baselines or audit events;
//! refusals and actions are in the audit log with their actor; ingest
//! quotas answer 429 with Retry-After (413 for batches and bodies over a
//! limit) and nothing refused is accepted; `syncline token new` makes a
//! token the host then takes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use syncline::api::auth::{Reach, ENDPOINTS};
use syncline::config::{hash_token, Role};

use crate::harness::*;
use crate::support::syncline;

const ADMIN: &str = "snl_test-admin";
const ALL_OPS: &str = "snl_test-all-ops";
const ACME_PUB: &str = "snl_test-acme-pub";
const ACME_READER: &str = "snl_test-acme-reader";
const ACME_OPS: &str = "snl_test-acme-ops";
const GLOBEX: &str = "snl_test-globex";
const GLOBEX_PUB: &str = "snl_test-globex-pub";

fn token(id: &str, secret: &str, tenants: &str, roles: &str, extra: &str) -> String {
    format!("\n[[token]]\nid = \"{id}\"\nhash = \"sha256:{}\"\ntenants = {tenants}\nroles = {roles}\n{extra}\n", hex::encode(hash_token(secret)))
}

fn config(acme_quota: &str, globex_quota: &str) -> String {
    let head = crate::site_config!(
        r#"{ACME_QUOTA}
[[tenant]]
id = "globex"
{GLOBEX_QUOTA}

[exception-queue.master-data]
owner = "Master data team"

[[pipeline]]
id = "orders"
tenant = "acme"
stages = [{ validate = "canonical-validator", config = { uoms = "EA" }, on-violation = "exception:master-data" }]
routes = [{ to = "erp" }]

[[pipeline]]
id = "globex-orders"
tenant = "globex"
routes = [{ to = "erp" }]

[sink.erp]
plugin = "http-sink"
config = { url = "http://{ERP}/requisitions" }
allowed-hosts = ["{ERP}"]
"#
    );
    let tokens = [
        token("admin", ADMIN, "[\"*\"]", "[\"admin\"]", ""),
        token("all-ops", ALL_OPS, "[\"*\"]", "[\"operator\"]", ""),
        token("acme-pub", ACME_PUB, "[\"acme\"]", "[\"publisher\"]", ""),
        // Its hash is read from a file next to the config.
        "\n[[token]]\nid = \"acme-reader\"\nhash = { file = \"secrets/acme-reader.sha256\" }\ntenants = [\"acme\"]\nroles = [\"reader\"]\n".to_string(),
        token("acme-ops", ACME_OPS, "[\"acme\"]", "[\"operator\"]", ""),
        token("globex", GLOBEX, "[\"globex\"]", "[\"operator\", \"publisher\"]", ""),
        token("globex-pub", GLOBEX_PUB, "[\"globex\"]", "[\"publisher\"]", "ingest = { requests = \"4/m\", request-burst = 4 }"),
    ];
    head.replace("{ACME_QUOTA}", acme_quota).replace("{GLOBEX_QUOTA}", globex_quota) + &tokens.concat()
}

/// An answer: status, JSON body (`Null` when not JSON), headers.
struct Answer {
    status: u16,
    body: Value,
    headers: HashMap<String, String>,
}

fn call(method: &str, url: &str, token: Option<&str>, body: &[u8]) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = if method == "GET" {
        let mut req = agent.get(url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        req.call()
    } else {
        let mut req = agent.post(url).header("content-type", "application/json");
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        req.send(body)
    };
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), headers }
        }
        Err(e) => Answer { status: 0, body: Value::String(e.to_string()), headers: HashMap::new() },
    }
}

fn order(id: &str, uom: &str) -> String {
    let mut m = recommendation(id);
    m["body"]["uom"] = uom.into();
    m.to_string()
}

/// A request written byte for byte on a TCP connection (no client rewrites
/// or refuses the path): the status and the answer's text.
fn raw(host: &Host, method: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let authority = host.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(authority).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer.chars().take(300).collect())
}

/// The tenant's pipeline (ids are unique across tenants).
fn pipeline(tenant: &str) -> &'static str {
    if tenant == "acme" {
        "orders"
    } else {
        "globex-orders"
    }
}

fn ingest(host: &Host, tenant: &str, token: &str, body: &str) -> Answer {
    call("POST", &format!("{}/v1/tenants/{tenant}/pipelines/{}/messages", host.url, pipeline(tenant)), Some(token), body.as_bytes())
}

/// Waits until message `id` is processed and its outputs left the queue.
fn settled(host: &Host, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let a = call("GET", &format!("{}/v1/messages/{id}", host.url), Some(ADMIN), b"");
        if a.status == 200 && a.body["input"]["state"] != "accepted" && !a.body["outputs"].as_array().into_iter().flatten().any(|o| o["state"] == "pending") {
            return a.body;
        }
        assert!(Instant::now() < until, "message {id} did not settle: {}", a.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `path` with its parameters filled: `{id}` by `ids` (per endpoint
/// family), the rest from `params`.
fn fill(path: &str, params: &[(&str, &str)]) -> String {
    params.iter().fold(path.to_string(), |p, (k, v)| p.replace(&format!("{{{k}}}"), v))
}

fn id_for<'a>(path: &str, ids: &'a HashMap<&str, String>) -> &'a str {
    let family = if path.starts_with("/v1/messages") || path.starts_with("/v1/correlations") {
        "message"
    } else if path.starts_with("/v1/exceptions") {
        "exception"
    } else {
        "dead-letter"
    };
    &ids[family]
}

fn url(host: &Host, path: &str, id: &str, tenant: &str) -> String {
    format!("{}{}", host.url, fill(path, &[("tenant", tenant), ("pipeline", "orders"), ("id", id), ("name", "erp"), ("action", "resolve"), ("stage", "1")]))
}

/// A body that would make a POST act (a settle's comment, a purge's reason).
fn body_for(path: &str) -> &'static [u8] {
    if path.ends_with("{action}") {
        br#"{"comment": "done by globex"}"#
    } else if path.ends_with("/purge") {
        br#"{"reason": "by globex"}"#
    } else {
        b""
    }
}

/// A token with the endpoint's reach but not its role.
fn lacking(role: Role) -> &'static str {
    match role {
        Role::Publisher | Role::Operator => ACME_READER,
        Role::Reader => ACME_PUB,
        Role::Admin => ALL_OPS,
    }
}

#[test]
fn every_endpoint_refuses_missing_bad_and_foreign_tokens_and_the_audit_log_names_who_did_what() {
    let erp = Erp::start(&[]);
    let site = Site::new(&config("", ""), &erp);
    std::fs::create_dir_all(site.dir.path().join("secrets")).unwrap();
    std::fs::write(site.dir.path().join("secrets/acme-reader.sha256"), format!("sha256:{}\n", hex::encode(hash_token(ACME_READER)))).unwrap();
    let host = Host::start(&site);
    assert_eq!(call("GET", &format!("{}/healthz", host.url), None, b"").status, 200, "health probes stay open");

    // Acme has a delivered message, a parked exception and a dead letter.
    let a = ingest(&host, "acme", ACME_PUB, &order("A-1", "EA"));
    assert_eq!(a.status, 202, "{}", a.body);
    let message = a.body["id"].as_str().unwrap().to_string();
    let parked = ingest(&host, "acme", ACME_PUB, &order("A-2", "BOX")).body["id"].as_str().unwrap().to_string();
    assert_eq!(settled(&host, &message)["outputs"][0]["state"], "delivered");
    let exception = settled(&host, &parked)["exceptions"][0]["id"].as_i64().expect("parked").to_string();
    erp.mode("422", None);
    let refused = ingest(&host, "acme", ACME_PUB, &order("A-3", "EA")).body["id"].as_str().unwrap().to_string();
    let dead = settled(&host, &refused)["outputs"][0]["state"].clone();
    assert_eq!(dead, "dead");
    let letters = call("GET", &format!("{}/v1/dead-letters", host.url), Some(ADMIN), b"");
    let dead_letter = letters.body["dead-letters"][0]["id"].as_i64().expect("a dead letter").to_string();
    erp.mode("ok", None);
    let ids: HashMap<&str, String> = [("message", message.clone()), ("exception", exception.clone()), ("dead-letter", dead_letter.clone())].into();

    for e in ENDPOINTS {
        let what = format!("{} {}", e.method, e.path);
        let target = url(&host, e.path, id_for(e.path, &ids), "acme");

        // No token, a bad token, a token in the wrong scheme: 401 with a challenge.
        for (token, why) in [(None, "no token"), (Some("snl_not-a-token"), "unknown token")] {
            let a = call(e.method, &target, token, b"");
            assert_eq!(a.status, 401, "{what} with {why}: {}", a.body);
            assert_eq!(a.body["error"]["code"], "unauthenticated", "{what}");
            assert!(a.headers.get("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{what}: {:?}", a.headers);
        }

        // The wrong role: 403, naming the role, not the tenant.
        let a = call(e.method, &target, Some(lacking(e.role)), b"");
        assert_eq!(a.status, 403, "{what} without the {:?} role: {}", e.role, a.body);
        assert!(a.body["error"]["message"].as_str().unwrap().contains(&format!("the `{}` role", e.role.as_str())), "{what}: {}", a.body);

        // A token of another tenant with the role, and a body that would act.
        let foreign = call(e.method, &target, Some(GLOBEX), body_for(e.path));
        match e.reach {
            Reach::Host => assert_eq!(foreign.status, 403, "{what}: a tenant's token on a host-wide endpoint: {}", foreign.body),
            Reach::Tenant if e.path.contains("{tenant}") => {
                assert_eq!(foreign.status, 403, "{what}: {}", foreign.body);
                // The same answer whether the tenant exists or not.
                let nobody = call(e.method, &url(&host, e.path, "1", "no-such-tenant"), Some(GLOBEX), b"");
                assert_eq!((nobody.status, &nobody.body), (403, &foreign.body), "{what}");
            }
            Reach::Tenant if e.path.contains("{id}") => {
                // Another tenant's record reads as no record at all.
                let missing = call(e.method, &url(&host, e.path, "999999", "acme"), Some(GLOBEX), body_for(e.path));
                assert_eq!((foreign.status, missing.status), (404, 404), "{what}: {} vs {}", foreign.body, missing.body);
                assert_eq!(foreign.body["error"]["code"], missing.body["error"]["code"], "{what}");
            }
            Reach::Tenant => {
                // Listings: nothing of acme's.
                assert!(foreign.status < 500, "{what}: {}", foreign.body);
                let text = foreign.body.to_string();
                for secret in [message.as_str(), refused.as_str(), parked.as_str(), "\"acme\""] {
                    assert!(!text.contains(secret), "{what} shows {secret} to globex: {text}");
                }
            }
        }

        // The right token is let in (an empty body or an unknown id keeps it harmless).
        let right = if e.role == Role::Publisher { ACME_PUB } else { ADMIN };
        let harmless = if e.path.contains("{id}") { url(&host, e.path, "999999", "acme") } else { target.clone() };
        let body: &[u8] = if e.path.ends_with(":replay") { br#"{"tenant": "nobody"}"# } else { b"" };
        let a = call(e.method, &harmless, Some(right), body);
        assert!(![401, 403, 0].contains(&a.status) && a.status < 500, "{what} with the right token: {} {}", a.status, a.body);

        // Malformed and oversized bodies: a clear 4xx, nothing done.
        let takes_no_body = ["/v1/reload", "/resume", "/rollback", "{id}/replay"].iter().any(|end| e.path.ends_with(end));
        if e.method == "POST" && !takes_no_body {
            let huge = vec![b'{'; 3 << 20];
            for body in [&b"{\"unclosed"[..], &b"\xff\xfe not utf-8"[..], &b"[1, 2, 3]"[..], &huge[..]] {
                let a = call(e.method, &harmless, Some(right), body);
                assert!((400..500).contains(&a.status), "{what} with a bad body of {} bytes: {} {}", body.len(), a.status, a.body);
            }
        }

        // Hostile path parameters: a clear 4xx, never a 5xx or a dropped connection.
        let long = "x".repeat(100_000);
        for bad in ["..", "%2E%2E", "a%2Fb", "%2F", "nul%00byte", long.as_str()] {
            let params = [("tenant", bad), ("pipeline", bad), ("id", bad), ("name", bad), ("action", bad), ("stage", bad)];
            if !e.path.contains('{') {
                continue;
            }
            let hostile = fill(e.path, &params);
            for token in [ADMIN, ACME_OPS, ACME_PUB] {
                let (status, answer) = raw(&host, e.method, &hostile, token);
                assert!((400..500).contains(&status), "{what} with `{}`: {status} {answer}", &bad[..bad.len().min(20)]);
            }
        }
    }
    assert_eq!(call("GET", &format!("{}/healthz", host.url), None, b"").status, 200, "the host is still up");
    let still = call("GET", &format!("{}/v1/exceptions/{exception}", host.url), Some(ADMIN), b"");
    assert_eq!(still.body["state"], "open", "globex's resolve did not touch acme's exception: {}", still.body);
    let still = call("GET", &format!("{}/v1/dead-letters/{dead_letter}", host.url), Some(ADMIN), b"");
    assert_eq!(still.body["state"], "open", "globex's purge did not touch acme's dead letter: {}", still.body);

    // A foreign operator replays and counts nothing of acme's.
    let a = call("POST", &format!("{}/v1/dead-letters:replay", host.url), Some(GLOBEX), b"{}");
    assert_eq!((a.status, a.body["replayed"].as_array().map(Vec::len)), (200, Some(0)), "{}", a.body);
    let a = call("GET", &format!("{}/v1/pipelines", host.url), Some(GLOBEX), b"");
    let tenants: Vec<&str> = a.body["pipelines"].as_array().unwrap().iter().map(|p| p["tenant"].as_str().unwrap()).collect();
    assert_eq!((tenants, a.body["sinks"].as_array().map(Vec::len)), (vec!["globex"], Some(0)), "{}", a.body);

    // Acme's operator replays its own dead letter; the admin reloads.
    let a = call("POST", &format!("{}/v1/dead-letters/{dead_letter}/replay", host.url), Some(ACME_OPS), b"");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(settled(&host, &refused)["outputs"][0]["state"], "delivered");
    assert_eq!(call("POST", &format!("{}/v1/reload", host.url), Some(ADMIN), b"").status, 200);

    // The audit log: who did what, cut to the caller's tenants.
    let audit = |token: &str, query: &str| {
        let a = call("GET", &format!("{}/v1/audit{query}", host.url), Some(token), b"");
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["events"].as_array().unwrap().clone()
    };
    let all = audit(ADMIN, "?limit=1000");
    let replay = all.iter().find(|e| e["event"]["kind"] == "dead-letter-replayed").expect("the replay is audited");
    assert_eq!((replay["actor"].as_str(), replay["tenant"].as_str()), (Some("token:acme-ops"), Some("acme")), "{replay}");
    let reload = all.iter().rev().find(|e| e["event"]["kind"] == "reload").expect("the reload is audited");
    assert_eq!((reload["actor"].as_str(), reload["tenant"].as_str()), (Some("token:admin"), None), "{reload}");
    let denied = audit(ADMIN, "?kind=denied&limit=1000");
    assert!(denied.iter().any(|e| e["actor"] == "anonymous" && e["event"]["status"] == 401), "{denied:?}");
    assert!(denied.iter().all(|e| e["event"]["path"].as_str().unwrap().len() <= 256));
    assert!(denied.iter().any(|e| e["actor"] == "token:acme-reader" && e["event"]["status"] == 403), "{denied:?}");
    assert_eq!(audit(ADMIN, "?actor=token:acme-ops&kind=dead-letter-replayed").len(), 1);
    let acme_view = audit(ACME_OPS, "");
    assert!(acme_view.iter().all(|e| e["tenant"] == "acme") && acme_view.iter().any(|e| e["event"]["kind"] == "dead-letter-replayed"), "{acme_view:?}");
    assert!(audit(GLOBEX, "").iter().all(|e| e["tenant"] == "globex"), "globex sees none of acme's or the host's events");
    assert_eq!(call("GET", &format!("{}/v1/audit?since=yesterday", host.url), Some(ADMIN), b"").status, 400);

    // The JSON Lines export holds the same events.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = agent
        .get(&format!("{}/v1/audit?format=jsonl", host.url))
        .header("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert!(lines.len() >= all.len() && lines[..all.len()].iter().zip(&all).all(|(l, a)| l["id"] == a["id"]), "{} lines vs {} events", lines.len(), all.len());

    // The CLI: a new token, taken by the host on reload, sent by `syncline audit`.
    let out = syncline().args(["token", "new", "--id", "cli-admin", "--tenant", "*", "--role", "admin"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let new_token = stdout.lines().next().unwrap().to_string();
    assert!(new_token.starts_with("snl_") && !stdout[new_token.len()..].contains(&new_token), "the token is printed once: {stdout}");
    assert!(stdout.contains("[[token]]") && stdout.contains("hash = \"sha256:"), "{stdout}");
    let config = std::fs::read_to_string(site.config()).unwrap() + &stdout[new_token.len()..];
    replace_file(&site.config(), config.as_bytes());
    eventually(Duration::from_secs(20), "the new token is taken", || {
        (call("GET", &format!("{}/v1/sinks", host.url), Some(&new_token), b"").status == 200).then_some(())
    });
    let out = syncline().args(["audit", "--kind", "dead-letter-replayed", "--server", &host.url]).env("SYNCLINE_TOKEN", &new_token).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("token:acme-ops  acme  dead-letter-replayed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = syncline().args(["dlq", "list", "--server", &host.url]).env_remove("SYNCLINE_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"), "{out:?}");
}

#[test]
fn ingest_quotas_answer_429_with_retry_after_and_refused_messages_are_not_accepted() {
    let erp = Erp::start(&[]);
    let acme = "ingest = { messages = \"20/m\", message-burst = 20 }";
    let globex = "ingest = { requests = \"5/m\", request-burst = 5, max-batch = 5, max-body = \"2KiB\" }";
    let site = Site::new(&config(acme, globex), &erp);
    std::fs::create_dir_all(site.dir.path().join("secrets")).unwrap();
    std::fs::write(site.dir.path().join("secrets/acme-reader.sha256"), format!("sha256:{}\n", hex::encode(hash_token(ACME_READER)))).unwrap();
    let host = Host::start(&site);
    let batch = |tenant: &str, token: &str, from: usize, n: usize| {
        let body: Vec<String> = (from..from + n).map(|i| order(&format!("{tenant}-{i}"), "EA")).collect();
        call("POST", &format!("{}/v1/tenants/{tenant}/pipelines/{}/messages:batch", host.url, pipeline(tenant)), Some(token), body.join("\n").as_bytes())
    };

    // Globex: a batch over max-batch and a body over max-body are 413.
    let a = batch("globex", GLOBEX_PUB, 0, 6);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("batch-too-large")), "{}", a.body);
    let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(3000));
    let a = ingest(&host, "globex", GLOBEX_PUB, &big);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("payload-too-large")), "{}", a.body);
    // Within the limits: accepted.
    assert_eq!(batch("globex", GLOBEX_PUB, 10, 5).status, 202);
    assert_eq!(ingest(&host, "globex", GLOBEX_PUB, &order("globex-20", "EA")).status, 202);
    // The token's 4 requests a minute are spent: 429 with Retry-After, naming the token.
    let a = ingest(&host, "globex", GLOBEX_PUB, &order("globex-21", "EA"));
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (429, Some("quota-exceeded")), "{}", a.body);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("token `globex-pub`"), "{}", a.body);
    let retry: u64 = a.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The tenant's 5 are spent too: another token of globex is refused as well.
    let a = ingest(&host, "globex", GLOBEX, &order("globex-22", "EA"));
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("tenant `globex`"), "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));

    // Acme: 20 messages a minute, at most 20 at once.
    let a = batch("acme", ACME_PUB, 0, 21);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (413, Some("batch-too-large")), "{}", a.body);
    assert_eq!(batch("acme", ACME_PUB, 100, 15).status, 202);
    let a = batch("acme", ACME_PUB, 200, 10);
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (429, Some("quota-exceeded")), "{}", a.body);
    assert_eq!(batch("acme", ACME_PUB, 300, 5).status, 202, "what is left of the bucket still goes");

    // Exactly what was accepted reached the ERP: 6 of globex's, 20 of acme's.
    eventually(Duration::from_secs(30), "26 documents at the ERP", || (erp.unique() == 26).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((erp.unique(), erp.received()["duplicates"].as_u64()), (26, Some(0)));
}
