//! Where plugin calls run: a call runs as a future (wasmtime's async
//! support) polled on the calling thread, and its host I/O — outbound HTTP
//! connections, WASI clocks and streams — and its deadline timer are driven
//! on that same thread, by a current-thread Tokio runtime of its own. That
//! is what lets a call be dropped at its deadline even while the guest sits
//! in a host call, where epoch interruption cannot reach; and a request a
//! sink sends never crosses to another thread and back (what a shared I/O
//! runtime cost: a wake-up and a context switch each way per request).
//!
//! What a call spawns (a request's task, a keep-alive connection) belongs
//! to its thread's runtime and makes progress only while that thread runs a
//! call: so connections are pooled per thread (see `http.rs`).

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::runtime::{Builder, Handle, Runtime};

thread_local! {
    /// This thread's runtime for the plugin calls it makes.
    static LOCAL: Runtime = Builder::new_current_thread().enable_all().build().expect("a plugin call runtime starts");
}

/// The runtime for calls made from inside another Tokio runtime, on a
/// helper thread (where a thread of their own would be made per call).
fn shared() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("syncline-plugin-io")
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
    LOCAL.with(|runtime| {
        let mut fut = pin!(fut);
        {
            let _context = runtime.enter();
            if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                return Some(out);
            }
        }
        runtime.block_on(async { tokio::time::timeout_at(deadline.into(), fut).await.ok() })
    })
}

/// Runs `fut` to completion from inside another Tokio runtime (where
/// blocking the thread is not allowed): on a helper thread, with the shared
/// runtime providing timers, sockets and spawned tasks.
fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| s.spawn(|| shared().block_on(fut)).join().expect("a plugin call does not panic"))
}
