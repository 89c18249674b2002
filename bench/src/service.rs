//! The baseline: what a user would write instead of Syncline for the
//! workload benchmark ([`crate::workload`]). One axum service takes a
//! planning system's flat recommendation, checks it, converts its unit to
//! the item's base unit, applies MOQ, pack size and lead time, and POSTs
//! the requisition to the ERP with an idempotency key over a keep-alive
//! client; it answers the planning system once the ERP has. No store, no
//! sandbox, no retries: nothing survives a crash, nothing is deduplicated.
//! Written by hand, without Syncline's crates (a date helper aside).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::Deserialize;
use serde_json::json;
use syncline_model::date::Date;

/// One recommendation as the planning system exports it.
#[derive(Deserialize)]
struct Flat {
    rec_id: String,
    sku: String,
    site: String,
    qty: String,
    #[serde(default)]
    unit: Option<String>,
    need_by: String,
    supplier: String,
    reason: String,
    prio: i64,
}

/// The reference tables.
struct Tables {
    base: HashMap<String, String>,
    factors: HashMap<(String, String, String), f64>,
    moq: HashMap<String, (f64, f64)>,
    lead: HashMap<String, i64>,
}

fn csv(path: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().skip(1).map(|l| l.split(',').map(|c| c.trim().to_string()).collect()).collect())
}

impl Tables {
    fn load(dir: &Path) -> anyhow::Result<Tables> {
        let base = csv(&dir.join("items.csv"))?.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        let factors = csv(&dir.join("conversions.csv"))?.into_iter().map(|r| ((r[0].clone(), r[1].clone(), r[2].clone()), r[3].parse().unwrap_or(1.0))).collect();
        let moq = csv(&dir.join("moq.csv"))?.into_iter().map(|r| (r[0].clone(), (r[1].parse().unwrap_or(0.0), r[2].parse().unwrap_or(1.0)))).collect();
        let lead = csv(&dir.join("lead-times.csv"))?.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap_or(0))).collect();
        Ok(Tables { base, factors, moq, lead })
    }

    fn factor(&self, item: &str, from: &str, to: &str) -> Option<f64> {
        if from == to {
            return Some(1.0);
        }
        let key = |i: &str| (i.to_string(), from.to_string(), to.to_string());
        self.factors.get(&key(item)).or_else(|| self.factors.get(&key("*"))).copied()
    }
}

struct App {
    tables: Tables,
    erp: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

fn bad(text: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, text.into())
}

/// Checks, converts, allocates: the requisition for `r`.
fn requisition(t: &Tables, r: &Flat) -> Result<serde_json::Value, (StatusCode, String)> {
    for (field, value) in [("rec_id", &r.rec_id), ("sku", &r.sku), ("site", &r.site), ("supplier", &r.supplier)] {
        if value.trim().is_empty() {
            return Err(bad(format!("`{field}` must not be empty")));
        }
    }
    let qty: f64 = r.qty.trim().parse().map_err(|_| bad(format!("`{}` is not a number", r.qty)))?;
    if !qty.is_finite() || qty < 0.0 {
        return Err(bad("quantities must not be negative"));
    }
    let unit = r.unit.as_deref().unwrap_or("EA");
    let need_by = Date::parse(&r.need_by).map_err(bad)?;
    let base = t.base.get(&r.sku).ok_or_else(|| bad(format!("unknown item `{}`", r.sku)))?;
    let factor = t.factor(&r.sku, unit, base).ok_or_else(|| bad(format!("no conversion from {unit} to {base} for {}", r.sku)))?;
    let (moq, pack) = t.moq.get(&r.sku).copied().unwrap_or((0.0, 1.0));
    let mut quantity = (qty * factor).max(moq);
    if pack > 0.0 {
        quantity = (quantity / pack).ceil() * pack;
    }
    let lead = t.lead.get(&r.supplier).copied().unwrap_or(0);
    Ok(json!({
        "kind": "purchase-requisition",
        "idempotency-key": format!("svc/{}", r.rec_id),
        "body": {
            "id": format!("PR-{}", r.rec_id), "item": r.sku, "location": r.site, "quantity": quantity, "uom": base,
            "supplier": r.supplier, "need-by": need_by.to_string(), "order-by": need_by.add_days(-lead).to_string(),
            "reason": r.reason, "priority": r.prio, "rule": format!("moq {moq}, pack {pack}, lead time {lead} d"),
        }
    }))
}

async fn recommend(State(app): State<Arc<App>>, body: Bytes) -> (StatusCode, String) {
    let r: Flat = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("not a recommendation: {e}")),
    };
    let doc = match requisition(&app.tables, &r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let request = hyper::Request::post(&app.erp)
        .header("content-type", "application/json")
        .header("idempotency-key", format!("svc/{}", r.rec_id))
        .body(Full::new(Bytes::from(doc.to_string())))
        .expect("a valid request");
    match app.client.request(request).await {
        Ok(resp) if resp.status().is_success() => {
            let _ = resp.into_body().collect().await;
            (StatusCode::ACCEPTED, String::new())
        }
        Ok(resp) => (StatusCode::BAD_GATEWAY, format!("the ERP answered {}", resp.status())),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the ERP is unreachable: {e}")),
    }
}

/// Serves `POST /recs` until killed; prints its address.
pub fn serve(erp: &str, tables: &Path) -> anyhow::Result<()> {
    let app = Arc::new(App {
        tables: Tables::load(tables)?,
        erp: format!("{}/requisitions", erp.trim_end_matches('/')),
        client: Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(64).build_http(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("syncline-bench service listening on http://{}", listener.local_addr()?);
        axum::serve(listener, Router::new().route("/recs", post(recommend)).with_state(app)).await?;
        Ok(())
    })
}
