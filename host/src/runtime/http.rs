//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`): only to the
//! allowed authorities, and every exchange — connect, request, headers and
//! the whole response body — bounded by one deadline: the smaller of the
//! request's own timeout and what is left of the call's wall-time limit.
//! A downstream that sends headers and then stalls mid-body fails that
//! request at its deadline (a timeout the plugin sees and can classify as
//! retryable), instead of holding the call.
//!
//! Plain HTTP goes through one pooled keep-alive client for the process;
//! HTTPS through wasmtime-wasi-http's default sender.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

type WasiResponse = http::Response<WasiBody>;
type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The outbound policy of one plugin instance.
pub struct HttpPolicy {
    allowed: Vec<String>,
    /// When the current call must end.
    pub(crate) call_deadline: Instant,
    /// Requests let through during the current call.
    pub(crate) sent: u32,
}

impl HttpPolicy {
    /// A policy letting requests through to `allowed` (`host:port`, or `*`).
    pub fn new(allowed: Vec<String>) -> HttpPolicy {
        HttpPolicy { allowed, call_deadline: Instant::now(), sent: 0 }
    }

    fn allows(&self, authority: &str) -> bool {
        self.allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(authority))
    }

    /// How long an exchange may take: the request's own (smallest) timeout
    /// capped by what is left of the call.
    fn budget(&self, options: Option<&RequestOptions>) -> Duration {
        let left = self.call_deadline.saturating_duration_since(Instant::now());
        let own = options.into_iter().flat_map(|o| [o.connect_timeout, o.first_byte_timeout, o.between_bytes_timeout]).flatten().min();
        own.map_or(left, |t| t.min(left))
    }
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<(WasiResponse, IoFuture), Error>> + Send> {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let authority = match uri.authority() {
            Some(a) if a.port().is_some() => a.to_string(),
            Some(a) => format!("{}:{}", a.host(), if https { 443 } else { 80 }),
            None => String::new(),
        };
        if !self.allows(&authority) {
            tracing::warn!(%authority, allowed = ?self.allowed, "plugin HTTP request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        self.sent += 1;
        let budget = self.budget(options.as_ref());
        let deadline = tokio::time::Instant::now() + budget;
        let send: Pin<Box<dyn Future<Output = Result<(WasiResponse, IoFuture), Error>> + Send>> = if https {
            struct Stock;
            impl WasiHttpHooks for Stock {}
            let options = RequestOptions { connect_timeout: Some(budget), first_byte_timeout: Some(budget), between_bytes_timeout: Some(budget) };
            Box::into_pin(Stock.send_request(request, Some(options), fut))
        } else {
            Box::pin(pooled_send(request))
        };
        Box::new(async move {
            let (response, io) = tokio::time::timeout_at(deadline, send).await.map_err(|_| Error::ConnectionReadTimeout)??;
            let response = response.map(|body| DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep_until(deadline)) }.boxed_unsync());
            Ok((response, io))
        })
    }
}

/// A response body that fails with a read timeout once the exchange's
/// deadline has passed, however the downstream trickles (or stalls).
struct DeadlineBody {
    inner: WasiBody,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One HTTP/1.1 client for every plugin, keeping connections alive between
/// requests (the stock sender opens a connection per request).
fn pooled_client() -> &'static hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, WasiBody> {
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, WasiBody>> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector)
    })
}

/// Sends a plain-HTTP request over the pooled client (the caller bounds it).
async fn pooled_send(request: http::Request<WasiBody>) -> Result<(WasiResponse, IoFuture), Error> {
    let response = match pooled_client().request(request).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Error::ConnectionRefused),
        Err(e) => {
            tracing::debug!(error = %e, "outbound HTTP request failed");
            return Err(Error::ConnectionTerminated);
        }
    };
    let response = response.map(|body| body.map_err(Error::Hyper).boxed_unsync());
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}
