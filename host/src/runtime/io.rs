//! The process-wide Tokio runtime that drives plugin calls: a call runs as
//! a future (wasmtime's async support) polled on the calling thread, while
//! its host I/O — outbound HTTP connections, WASI clocks and streams — and
//! its deadline timer are driven by this runtime's threads. That is what
//! lets a call be dropped at its deadline even while the guest sits in a
//! host call, where epoch interruption cannot reach.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::runtime::{Builder, Handle, Runtime};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plugin-io")
            .enable_all()
            .build()
            .expect("the plugin I/O runtime starts")
    })
}

/// Runs `fut` on the current thread until it finishes (`Some`) or
/// `deadline` passes (`None`: the future is dropped, wherever it waits).
///
/// Most plugin calls never wait on the host: the first poll finishes them,
/// and they cost no timer and no trip through the scheduler. Only a call
/// that waits (on HTTP, a clock) is driven by [`block_on`] under a timer.
pub(crate) fn run_until<F>(deadline: Instant, fut: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if Handle::try_current().is_ok() {
        return block_on(async { tokio::time::timeout_at(deadline.into(), fut).await.ok() });
    }
    let mut fut = pin!(fut);
    {
        let _context = runtime().enter();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Some(out);
        }
    }
    runtime().block_on(async { tokio::time::timeout_at(deadline.into(), fut).await.ok() })
}

/// Runs `fut` to completion on the current thread, with the plugin I/O
/// runtime providing timers, sockets and spawned tasks.
///
/// Called from inside another Tokio runtime (where blocking the thread is
/// not allowed), the future runs on a helper thread instead.
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if Handle::try_current().is_ok() {
        return std::thread::scope(|s| s.spawn(|| runtime().block_on(fut)).join().expect("a plugin call does not panic"));
    }
    runtime().block_on(fut)
}
