//! A scripted HTTP server on loopback: answers each request with the next
//! canned response and records what it received. `syncline test` uses it so
//! connector plugins are tested over real HTTP with no real downstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

/// One canned response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StubResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Wait this long before answering (to provoke timeouts).
    #[serde(default)]
    pub delay_ms: u64,
    /// Send the headers (with the whole body's length) and only this many
    /// bytes of the body, then stall forever (a downstream that hangs
    /// mid-response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<usize>,
}

impl StubResponse {
    /// A plain answer with `status` and `body`.
    pub fn new(status: u16, body: &str) -> StubResponse {
        StubResponse { status, headers: Default::default(), body: body.to_string(), delay_ms: 0, stall_after: None }
    }
}

/// A response body that sends its first bytes and then never ends.
struct Stalling(Option<Bytes>);

impl hyper::body::Body for Stalling {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
            None => std::task::Poll::Pending,
        }
    }
}

/// A request the stub received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Body text.
    pub body: String,
}

/// A running stub; stops when dropped.
pub struct StubServer {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StubServer {
    /// Starts a stub on an ephemeral loopback port answering with `responses`
    /// in turn (the last one repeats).
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn start(responses: Vec<StubResponse>) -> anyhow::Result<StubServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let responses = Arc::new(responses);
        let log = received.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, responses) = (log.clone(), responses.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, responses) = (log.clone(), responses.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let index = {
                                let mut log = log.lock().unwrap();
                                log.push(Received { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() });
                                log.len() - 1
                            };
                            let canned = responses.get(index).or(responses.last()).cloned().unwrap_or_else(|| StubResponse::new(200, ""));
                            if canned.delay_ms > 0 {
                                tokio::time::sleep(Duration::from_millis(canned.delay_ms)).await;
                            }
                            let mut resp = hyper::Response::builder().status(canned.status);
                            for (k, v) in &canned.headers {
                                resp = resp.header(k, v);
                            }
                            let body = match canned.stall_after {
                                None => Full::new(Bytes::from(canned.body)).boxed_unsync(),
                                Some(n) => {
                                    resp = resp.header("content-length", canned.body.len().to_string());
                                    let all = Bytes::from(canned.body.into_bytes());
                                    let first = all.slice(..n.min(all.len()));
                                    Stalling(Some(first)).boxed_unsync()
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp.body(body).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(StubServer { addr, received, runtime: Some(runtime) })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
