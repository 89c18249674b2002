//! Outbound HTTP for connectors (source and sink worlds), over the standard
//! `wasi:http/outgoing-handler`. The host lets a request through only to the
//! hosts the plugin's configuration allows; anything else fails with
//! [`HttpError::Denied`].

use std::time::Duration;

/// An outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Absolute URL: `http://host:port/path?query` (or `https`).
    pub url: String,
    /// Header (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Time allowed for the whole exchange: connecting, sending, the
    /// response's headers and its whole body. The host also caps it at
    /// what is left of the plugin call's wall-time limit.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request with no headers or body.
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_string(), url: url.to_string(), headers: Vec::new(), body: Vec::new(), timeout: None }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the time allowed for the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header (name, value) pairs; names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the destination: not in the plugin's allowed hosts.
    Denied(String),
    /// The URL could not be understood.
    BadUrl(String),
    /// No response in time.
    Timeout(String),
    /// Connection refused, reset, DNS failure, protocol error, ...
    Transport(String),
}

impl HttpError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HttpError::Timeout(_) | HttpError::Transport(_))
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request denied by the host: {m}"),
            HttpError::BadUrl(m) => write!(f, "bad URL: {m}"),
            HttpError::Timeout(m) => write!(f, "timed out: {m}"),
            HttpError::Transport(m) => write!(f, "transport error: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The parts of an absolute URL: (is https, authority, path and query).
pub(crate) fn split_url(url: &str) -> Result<(bool, &str, &str), HttpError> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(HttpError::BadUrl(format!("`{url}` does not start with http:// or https://")));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::BadUrl(format!("`{url}` has no host")));
    }
    Ok((https, authority, path))
}

/// Sends `request` and waits for the whole response.
///
/// # Errors
///
/// [`HttpError`] when no response arrived: denied destination, bad URL,
/// timeout or transport failure. An HTTP error status is a response, not an
/// error.
pub fn send(request: &Request) -> Result<Response, HttpError> {
    split_url(&request.url)?;
    #[cfg(target_arch = "wasm32")]
    return wasi_impl::send(request);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|h| {
        h.requests.push(request.clone());
        match h.http.as_mut() {
            Some(responder) => responder(request),
            None => Err(HttpError::Denied("the test host has no HTTP responder".into())),
        }
    });
}

/// Sends every request with all of them in flight at once, and waits for
/// every response; results are in request order. A sink delivering a batch
/// uses this to pay one round trip for the batch instead of one per message
/// (the host caps how long each may take, as for [`send`]).
pub fn send_all(requests: &[Request]) -> Vec<Result<Response, HttpError>> {
    #[cfg(target_arch = "wasm32")]
    {
        let started: Vec<_> = requests.iter().map(|r| split_url(&r.url).and_then(|_| wasi_impl::start(r))).collect();
        started.into_iter().map(|s| s.and_then(wasi_impl::finish)).collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    requests.iter().map(send).collect()
}

#[cfg(target_arch = "wasm32")]
mod wasi_impl {
    use super::*;
    use crate::bindings::generated::wasi::http::outgoing_handler;
    use crate::bindings::generated::wasi::http::types::{
        http_error_code, ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use crate::bindings::generated::wasi::io::streams::StreamError;

    fn method(m: &str) -> Method {
        match m.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    fn error(code: ErrorCode) -> HttpError {
        let text = format!("{code:?}");
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied(text),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::DnsTimeout => HttpError::Timeout(text),
            ErrorCode::HttpRequestUriInvalid => HttpError::BadUrl(text),
            _ => HttpError::Transport(text),
        }
    }

    /// A request on its way: the body is written, the response not read.
    pub(super) struct Started {
        future: crate::bindings::generated::wasi::http::types::FutureIncomingResponse,
        finished: Result<(), ErrorCode>,
        write_error: Option<HttpError>,
    }

    pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
        finish(start(request)?)
    }

    /// Sends the request line, headers and body; does not wait for the answer.
    pub(super) fn start(request: &Request) -> Result<Started, HttpError> {
        let (https, authority, path) = split_url(&request.url)?;
        let entries: Vec<(String, Vec<u8>)> =
            request.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
        let headers =
            Fields::from_list(&entries).map_err(|e| HttpError::BadUrl(format!("invalid header: {e:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let bad = |what: &str| HttpError::BadUrl(format!("invalid {what} in `{}`", request.url));
        outgoing.set_method(&method(&request.method)).map_err(|_| bad("method"))?;
        outgoing.set_scheme(Some(if https { &Scheme::Https } else { &Scheme::Http })).map_err(|_| bad("scheme"))?;
        outgoing.set_authority(Some(authority)).map_err(|_| bad("authority"))?;
        outgoing.set_path_with_query(Some(path)).map_err(|_| bad("path"))?;
        let options = RequestOptions::new();
        if let Some(t) = request.timeout {
            let _ = options.set_first_byte_timeout(Some(t.as_nanos() as u64));
        }
        let body = outgoing.body().map_err(|_| HttpError::Transport("request body already taken".into()))?;
        let future = outgoing_handler::handle(outgoing, Some(options)).map_err(error)?;
        // A refused or failed request closes the body stream; the response
        // future then holds the real reason, so a write error is only
        // reported when the future has none.
        let mut write_error = None;
        if let Ok(stream) = body.write() {
            for chunk in request.body.chunks(4096) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    write_error = Some(HttpError::Transport(format!("writing the request body: {e:?}")));
                    break;
                }
            }
        }
        let finished = OutgoingBody::finish(body, None);
        Ok(Started { future, finished, write_error })
    }

    /// Waits for a started request's response and reads its body.
    pub(super) fn finish(started: Started) -> Result<Response, HttpError> {
        let Started { future, finished, write_error } = started;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(error(code)),
            Some(Err(())) | None => return Err(HttpError::Transport("response already taken".into())),
        };
        if let Some(e) = write_error {
            return Err(e);
        }
        finished.map_err(error)?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|_| HttpError::Transport("response body already taken".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|_| HttpError::Transport("response stream unavailable".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        // The host says why when it knows. Wasmtime's
                        // body errors (e.g. the exchange's deadline passing
                        // mid-body) carry no error code, only their text.
                        let text = e.to_debug_string();
                        return Err(match http_error_code(&e) {
                            Some(code) => error(code),
                            None if text.contains("timeout") => HttpError::Timeout(text),
                            None => HttpError::Transport(text),
                        });
                    }
                }
            }
        }
        Ok(Response { status, headers, body })
    }
}
