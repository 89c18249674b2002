//! `erp-sim`: a simulated ERP for demos and tests. It accepts requisitions,
//! transfer proposals (any JSON POSTed to any path; a JSON array is a bulk
//! request whose documents carry their own `idempotency-key`; a body of
//! another content type, such as a CSV import, is kept as text), dedupes them by
//! `Idempotency-Key` per path (each path stands for one receiving system),
//! records what it received, and can be told to answer
//! slowly, with 429/503/422, or to hang, so every failure path of delivery
//! can be shown for real. `GET /status-feed` answers, as the ERP would, with
//! an execution status for each order it received (its reference, the
//! flow's correlation id). `GET /forecast-feed` serves a planning system's
//! forecast release in pages (`--forecasts N`).
//!
//! ```sh
//! erp-sim --listen 127.0.0.1:9001
//! curl -X POST localhost:9001/_admin/mode -d '{"mode": "503", "times": 3}'
//! curl localhost:9001/_admin/received
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};

/// Command line.
#[derive(Parser)]
#[command(name = "erp-sim", about = "A simulated ERP that dedupes by Idempotency-Key and can be told to fail")]
struct Cli {
    /// Address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Starting mode: ok, slow, 429, 503, 422, hang.
    #[arg(long, default_value = "ok")]
    mode: String,
    /// Delay for `slow` mode, in milliseconds.
    #[arg(long, default_value_t = 500)]
    delay_ms: u64,
    /// Serve this many execution statuses at `GET /feed?cursor=N&limit=M`.
    #[arg(long, default_value_t = 0)]
    feed: u64,
    /// Status N of the feed carries a `note` header of `--feed-large-bytes`
    /// bytes (a message larger than a store may keep).
    #[arg(long)]
    feed_large_at: Option<u64>,
    /// The size of that note.
    #[arg(long, default_value_t = 1_200_000)]
    feed_large_bytes: usize,
    /// Serve a forecast release of this many weekly forecasts at
    /// `GET /forecast-feed?cursor=N&limit=M` (the planning system's export).
    #[arg(long, default_value_t = 0)]
    forecasts: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Mode {
    mode: String,
    #[serde(default)]
    delay_ms: u64,
    /// Apply to the next N requests only, then back to `ok`.
    #[serde(default)]
    times: Option<u64>,
    /// Apply to every Nth request only (the others are `ok`): `every = 10`
    /// fails one request in ten.
    #[serde(default)]
    every: Option<u64>,
}

#[derive(Default)]
struct Sim {
    mode: Option<Mode>,
    /// (path, idempotency key) -> (reference, record).
    by_key: HashMap<(String, String), (String, Value)>,
    order: Vec<String>,
    /// (path, key) of each document, in the order received.
    slots: Vec<(String, String)>,
    /// Receive time (ms since the epoch) of each document, in `order`.
    times: Vec<u64>,
    requests: u64,
    duplicates: u64,
    refused: u64,
    no_key: u64,
    feed: u64,
    /// (index, bytes) of the feed's one large status.
    feed_large: Option<(u64, usize)>,
    feed_cursors: Vec<Option<u64>>,
    forecasts: u64,
    forecast_cursors: Vec<Option<u64>>,
}

type Shared = Arc<Mutex<Sim>>;

fn current_mode(sim: &mut Sim) -> Mode {
    let ok = Mode { mode: "ok".into(), delay_ms: 0, times: None, every: None };
    let Some(m) = sim.mode.clone() else { return ok };
    if m.every.is_some_and(|n| n > 1 && sim.requests % n != 0) {
        return ok;
    }
    match m.times {
        Some(0) => {
            sim.mode = None;
            ok
        }
        Some(n) => {
            sim.mode.as_mut().unwrap().times = Some(n - 1);
            m
        }
        None => m,
    }
}

async fn receive(State(sim): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mode = {
        let mut s = sim.lock().unwrap();
        s.requests += 1;
        current_mode(&mut s)
    };
    match mode.mode.as_str() {
        "slow" => tokio::time::sleep(Duration::from_millis(mode.delay_ms)).await,
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        "429" => {
            sim.lock().unwrap().refused += 1;
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
        }
        "503" => {
            sim.lock().unwrap().refused += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
        }
        "422" => {
            sim.lock().unwrap().refused += 1;
            return (StatusCode::UNPROCESSABLE_ENTITY, "unknown supplier").into_response();
        }
        _ => {}
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let value: Value = if content_type.starts_with("application/json") {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
        }
    } else {
        // A document in another format (a CSV import, an EDI file): kept as text.
        match std::str::from_utf8(&body) {
            Ok(text) => json!({"content-type": content_type, "text": text}),
            Err(_) => return (StatusCode::BAD_REQUEST, "the document is not UTF-8 text").into_response(),
        }
    };
    let correlation = headers.get("x-correlation-id").and_then(|v| v.to_str().ok());
    if let Value::Array(items) = value {
        // Bulk: each document carries its own idempotency key.
        let mut s = sim.lock().unwrap();
        let results: Vec<Value> = items
            .into_iter()
            .map(|doc| match doc.get("idempotency-key").and_then(|k| k.as_str()).map(str::to_string) {
                None => {
                    s.no_key += 1;
                    json!({"error": "a document without `idempotency-key`", "retryable": false})
                }
                Some(key) => {
                    let (reference, _) = store(&mut s, uri.path(), key, correlation, doc);
                    json!({"id": reference})
                }
            })
            .collect();
        return (StatusCode::OK, Json(Value::Array(results))).into_response();
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut s = sim.lock().unwrap();
    let Some(key) = key else {
        s.no_key += 1;
        return (StatusCode::BAD_REQUEST, "an Idempotency-Key header is required").into_response();
    };
    match store(&mut s, uri.path(), key, correlation, value) {
        (reference, true) => (StatusCode::OK, Json(json!({"id": reference, "duplicate": true}))).into_response(),
        (reference, false) => (StatusCode::CREATED, Json(json!({"id": reference}))).into_response(),
    }
}

/// Records a document once per (path, key); returns its reference and
/// whether it was a duplicate.
fn store(s: &mut Sim, path: &str, key: String, correlation: Option<&str>, doc: Value) -> (String, bool) {
    let slot = (path.to_string(), key.clone());
    if let Some((reference, _)) = s.by_key.get(&slot) {
        let reference = reference.clone();
        s.duplicates += 1;
        return (reference, true);
    }
    let reference = format!("ERP-{}", s.by_key.len() + 1);
    let record = json!({"path": path, "correlation-id": correlation, "body": doc});
    s.by_key.insert(slot.clone(), (reference.clone(), record));
    s.slots.push(slot);
    s.order.push(key);
    s.times.push(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0));
    (reference, false)
}

#[derive(Deserialize)]
struct ReceivedQuery {
    #[serde(default)]
    keys: bool,
    #[serde(default)]
    times: bool,
}

async fn received(State(sim): State<Shared>, Query(q): Query<ReceivedQuery>) -> Json<Value> {
    let s = sim.lock().unwrap();
    let mut by_path: HashMap<String, u64> = HashMap::new();
    for (_, rec) in s.by_key.values() {
        *by_path.entry(rec["path"].as_str().unwrap_or("").to_string()).or_default() += 1;
    }
    let mut out = json!({
        "unique": s.by_key.len(),
        "requests": s.requests,
        "duplicates": s.duplicates,
        "refused": s.refused,
        "without-key": s.no_key,
        "by-path": by_path,
        "feed-cursors": s.feed_cursors,
        "forecast-cursors": s.forecast_cursors,
    });
    if q.keys {
        out["keys"] = json!(s.order);
    }
    if q.times {
        out["times"] = json!(s.times);
    }
    Json(out)
}

async fn record(State(sim): State<Shared>, Path(key): Path<String>) -> Response {
    let s = sim.lock().unwrap();
    match s.by_key.iter().find(|((_, k), _)| *k == key) {
        Some((_, (reference, rec))) => Json(json!({"id": reference, "record": rec})).into_response(),
        None => (StatusCode::NOT_FOUND, "no such key").into_response(),
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    cursor: Option<u64>,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

/// A page of the execution-status feed: statuses `cursor..cursor+limit`.
async fn feed(State(sim): State<Shared>, Query(q): Query<FeedQuery>) -> Json<Value> {
    let mut s = sim.lock().unwrap();
    s.feed_cursors.push(q.cursor);
    let start = q.cursor.unwrap_or(0).min(s.feed);
    let end = (start + q.limit).min(s.feed);
    let messages: Vec<Value> = (start..end)
        .map(|i| {
            let mut status = json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": format!("status-PO-{i}"),
                   "body": {"order-ref": format!("PO-{i}"), "kind": "purchase", "status": "confirmed", "quantity": 10 + i, "uom": "EA"}});
            if let Some((_, bytes)) = s.feed_large.filter(|&(at, _)| at == i) {
                status["headers"] = json!({ "note": "n".repeat(bytes) });
            }
            status
        })
        .collect();
    Json(json!({"messages": messages, "cursor": end.to_string(), "more": end < s.feed}))
}

/// A page of the planning system's forecast release: forecasts
/// `cursor..cursor+limit` of `--forecasts` (items SKU-100.., DC-1 and DC-2,
/// 26 weekly buckets from 2026-12-07 each).
async fn forecast_feed(State(sim): State<Shared>, Query(q): Query<FeedQuery>) -> Json<Value> {
    let mut s = sim.lock().unwrap();
    s.forecast_cursors.push(q.cursor);
    let start = q.cursor.unwrap_or(0).min(s.forecasts);
    let end = start.saturating_add(q.limit).min(s.forecasts);
    let monday = syncline_model::date::Date::parse("2026-12-07").expect("a date");
    let messages: Vec<Value> = (start..end)
        .map(|i| {
            let (week, series) = (i % 26, i / 26);
            let (item, location) = (format!("SKU-{}", 100 + series / 2), if series % 2 == 0 { "DC-1" } else { "DC-2" });
            json!({"schema-version": "1.0.0", "kind": "forecast", "idempotency-key": format!("fc-2026-W49-{item}-{location}-{week}"),
                   "body": {"item": item, "location": location, "bucket": {"start": monday.add_days(7 * week as i64).to_string(), "granularity": "week"},
                            "quantity": 20 + (i * 7) % 30, "uom": "EA", "forecast-version": "2026-W49", "scenario": "baseline",
                            "channel": "retail", "source-engine": "stat"}})
        })
        .collect();
    Json(json!({"messages": messages, "cursor": end.to_string(), "more": end < s.forecasts}))
}

/// A page of execution statuses about the orders received (`cursor..`): the
/// ERP answering each requisition or transfer proposal it took, by its own
/// reference, in the flow's correlation id. Statuses cycle through
/// confirmed, delayed (three days later), short (80 %) and received.
async fn status_feed(State(sim): State<Shared>, Query(q): Query<FeedQuery>) -> Json<Value> {
    let s = sim.lock().unwrap();
    let orders: Vec<(&String, &Value)> = s
        .slots
        .iter()
        .filter_map(|slot| s.by_key.get(slot))
        .filter(|(_, rec)| matches!(rec["body"]["kind"].as_str(), Some("purchase-requisition" | "transfer-proposal")))
        .map(|(reference, rec)| (reference, rec))
        .collect();
    let start = (q.cursor.unwrap_or(0) as usize).min(orders.len());
    let end = (start + q.limit as usize).min(orders.len());
    let messages: Vec<Value> = orders[start..end]
        .iter()
        .enumerate()
        .map(|(i, (reference, rec))| {
            let order = &rec["body"];
            let body = &order["body"];
            let quantity = body["quantity"].as_f64().unwrap_or(0.0);
            let (status, quantity, expected) = match (start + i) % 4 {
                0 => ("confirmed", quantity, body["need-by"].clone()),
                1 => ("delayed", quantity, json!(later(body["need-by"].as_str().unwrap_or(""), 3))),
                2 => ("short", (quantity * 0.8).floor(), body["need-by"].clone()),
                _ => ("received", quantity, Value::Null),
            };
            let kind = if order["kind"] == "transfer-proposal" { "transfer" } else { "purchase" };
            let mut m = json!({"schema-version": "1.0.0", "kind": "execution-status", "idempotency-key": format!("status-{reference}"),
                               "body": {"order-ref": reference, "kind": kind, "status": status, "quantity": quantity, "uom": body["uom"],
                                        "recommendation": body["recommendation"]}});
            if !expected.is_null() {
                m["body"]["expected-date"] = expected;
            }
            if let Some(c) = rec["correlation-id"].as_str() {
                m["correlation-id"] = json!(c);
            }
            m
        })
        .collect();
    Json(json!({"messages": messages, "cursor": end.to_string(), "more": end < orders.len()}))
}

/// `date` (YYYY-MM-DD) plus `days`, or `date` itself when it does not read.
fn later(date: &str, days: i64) -> String {
    syncline_model::date::Date::parse(date).map(|d| d.add_days(days).to_string()).unwrap_or_else(|_| date.to_string())
}

async fn set_mode(State(sim): State<Shared>, Json(mode): Json<Mode>) -> Response {
    if !["ok", "slow", "429", "503", "422", "hang"].contains(&mode.mode.as_str()) {
        return (StatusCode::BAD_REQUEST, "mode is one of ok, slow, 429, 503, 422, hang").into_response();
    }
    sim.lock().unwrap().mode = if mode.mode == "ok" { None } else { Some(mode) };
    StatusCode::NO_CONTENT.into_response()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut sim = Sim { feed: cli.feed, feed_large: cli.feed_large_at.map(|at| (at, cli.feed_large_bytes)), forecasts: cli.forecasts, ..Sim::default() };
    if cli.mode != "ok" {
        sim.mode = Some(Mode { mode: cli.mode.clone(), delay_ms: cli.delay_ms, times: None, every: None });
    }
    let shared: Shared = Arc::new(Mutex::new(sim));
    let app = Router::new()
        .route("/_admin/received", get(received))
        .route("/_admin/record/{key}", get(record))
        .route("/_admin/mode", post(set_mode))
        .route("/feed", get(feed))
        .route("/status-feed", get(status_feed))
        .route("/forecast-feed", get(forecast_feed))
        .fallback(post(receive))
        // Large documents (and bulk posts of them) are legal.
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!("erp-sim listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
