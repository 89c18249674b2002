//! A wake-up signal between threads: "there may be new work". Waiters wake
//! on a notify or after a timeout, whichever comes first.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The signal.
#[derive(Default)]
pub struct Signal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    /// Wakes every waiter.
    pub fn notify(&self) {
        *self.generation.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    /// The current generation, to pass to [`Signal::wait`].
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap()
    }

    /// Waits until notified after `seen`, or `timeout`.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let g = self.generation.lock().unwrap();
        if *g != seen {
            return;
        }
        let _ = self.cv.wait_timeout_while(g, timeout, |g| *g == seen);
    }
}
