//! What a plugin writes to stdout and stderr (a Rust panic message, a
//! Python traceback, `print`, `console.log`): kept per call as a bounded
//! tail, so a failed call's error, trace and dead letter can say what the
//! plugin said last. Writes always succeed (a plugin is never failed for
//! printing); only the last [`TAIL`] bytes of a call are kept.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of output kept per call.
pub const TAIL: usize = 4096;

#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    written: u64,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.written += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(TAIL)..];
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * TAIL {
            self.buf.drain(..self.buf.len() - TAIL);
        }
    }
}

/// The stdout and stderr of one plugin instance (both write here, in the
/// order written).
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Tail>>);

/// What a call wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// The last [`TAIL`] bytes, as text (invalid UTF-8 replaced).
    pub tail: String,
    /// Bytes written in all.
    pub bytes: u64,
}

impl Output {
    /// Takes what was written since the last take (the start of a call).
    pub fn take(&self) -> Written {
        let mut t = self.0.lock().unwrap();
        if t.written == 0 {
            return Written::default();
        }
        let start = t.buf.len().saturating_sub(TAIL);
        let mut tail = &t.buf[start..];
        // Start at a line or at least a character boundary when cut.
        if start > 0 {
            if let Some(nl) = tail.iter().position(|&b| b == b'\n').filter(|&i| i + 1 < tail.len() && i < 256) {
                tail = &tail[nl + 1..];
            }
        }
        let text = String::from_utf8_lossy(tail).into_owned();
        let written = Written { tail: if start > 0 { format!("…{text}") } else { text }, bytes: t.written };
        *t = Tail::default();
        written
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

impl OutputStream for Output {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.lock().unwrap().push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for Output {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The message of a Rust panic in `tail` (`panicked at FILE:LINE:COL:` and
/// the lines after it, up to the `note:` line), if there is one.
pub fn panic_message(tail: &str) -> Option<String> {
    let start = tail.rfind("panicked at ")?;
    let rest = &tail[start..];
    let body: Vec<&str> = rest.lines().take_while(|l| !l.starts_with("note: ")).collect();
    let text = body.join(" ").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// What componentize-py's runtime writes when a Python export raised.
const PYTHON_RAISED: &str = "Python function threw an unexpected exception";

/// The exception line of the Python traceback that ended the call (e.g.
/// `ValueError: could not convert string to float: 'twelve'`): only when
/// componentize-py's runtime says an export raised (a traceback the plugin
/// printed itself and then went on is not the cause of a later trap).
pub fn python_exception(tail: &str) -> Option<String> {
    let raised = tail.rfind(PYTHON_RAISED)?;
    let start = tail[..raised].rfind("Traceback (most recent call last):")?;
    tail[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("thread ") && !l.contains("panicked at "))
        .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .last()
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_of_a_call_and_resets() {
        let out = Output::default();
        let mut w: Box<dyn OutputStream> = out.p2_stream();
        for i in 0..5000 {
            w.write(Bytes::from(format!("line {i}\n"))).unwrap();
        }
        let written = out.take();
        assert!(written.tail.len() <= TAIL + 4);
        assert!(written.tail.starts_with("…line "), "{}", &written.tail[..20]);
        assert!(written.tail.ends_with("line 4999\n"));
        assert!(written.bytes > 40_000);
        assert_eq!(out.take(), Written::default());
    }

    #[test]
    fn finds_the_panic_message() {
        let tail = "starting\n\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nfixture asked to trap\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(tail).as_deref(), Some("panicked at src/lib.rs:12:9: fixture asked to trap"));
        assert_eq!(panic_message("nothing here"), None);
    }

    #[test]
    fn finds_the_python_exception() {
        let tail = "hi\nTraceback (most recent call last):\n  File \"/0/app.py\", line 14, in transform\n    x = float(q)\nValueError: could not convert string to float: 'twelve'\n\nthread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\n";
        assert_eq!(python_exception(tail).as_deref(), Some("ValueError: could not convert string to float: 'twelve'"));
        assert_eq!(python_exception("no traceback"), None);
        let printed = "Traceback (most recent call last):\n  File \"/0/app.py\", line 3\nKeyError: 'x'\nhandled, going on\n";
        assert_eq!(python_exception(printed), None, "a traceback the plugin printed and survived is not the cause");
    }
}
