//! Worker supervision: one named thread per pipeline shard, polled source,
//! sink worker and the maintenance loop, grouped by owner. Retiring an
//! owner stops its workers after their current plugin call without waiting
//! for them; a successor's workers wait until they have ended. Workers get
//! a [`WorkerCtx`]: the store, this host's lease name and the stop flag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::metrics::Metrics;
use crate::store::Store;

/// What a worker thread gets.
#[derive(Clone)]
pub struct WorkerCtx {
    store: Arc<dyn Store>,
    holder: Arc<str>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl WorkerCtx {
    /// The live instruments.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// This host's name in partition leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Owner {
    Pipeline(String, String),
    Sink(String),
    Maintenance,
}

/// How many of one owner's worker threads still run. A part rebuilt by a
/// reload starts its new workers only once the old ones have ended, so a
/// shard or a sink's key range never has two workers at once; the reload
/// itself never waits for them.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    ended: Condvar,
}

impl Running {
    fn wait_idle(&self) {
        let mut n = self.count.lock().unwrap();
        while *n > 0 {
            n = self.ended.wait(n).unwrap();
        }
    }
}

/// Counts one worker thread as running until dropped.
struct Shift(Arc<Running>);

impl Shift {
    fn start(running: &Arc<Running>) -> Shift {
        *running.count.lock().unwrap() += 1;
        Shift(running.clone())
    }
}

impl Drop for Shift {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap() -= 1;
        self.0.ended.notify_all();
    }
}

/// The worker threads of one owner.
#[derive(Default)]
struct Crew {
    handles: Vec<JoinHandle<()>>,
    running: Arc<Running>,
}

/// Every owner's workers.
pub(crate) struct Crews {
    ctx: WorkerCtx,
    workers: Mutex<BTreeMap<Owner, Crew>>,
    /// Workers of retired parts, still finishing (or abandoning) their
    /// current call; joined at stop.
    retiring: Mutex<Vec<JoinHandle<()>>>,
    /// The crews of retired parts, so their successors can wait for them.
    previous: Mutex<BTreeMap<Owner, Arc<Running>>>,
}

impl Crews {
    /// No workers yet; they will use `store`, lease as `holder` and record
    /// into `metrics`.
    pub(crate) fn new(store: Arc<dyn Store>, holder: &str, metrics: Arc<Metrics>) -> Crews {
        Crews {
            ctx: WorkerCtx { store, holder: holder.into(), stop: Arc::default(), metrics },
            workers: Mutex::default(),
            retiring: Mutex::default(),
            previous: Mutex::default(),
        }
    }

    /// What workers get.
    pub(crate) fn ctx(&self) -> &WorkerCtx {
        &self.ctx
    }

    /// Starts a worker thread for `owner`. If a retired crew of the same
    /// owner is still finishing, the new worker waits for it first.
    pub(crate) fn spawn(&self, owner: Owner, name: String, f: impl FnOnce(WorkerCtx) + Send + 'static) {
        let ctx = self.ctx.clone();
        let before = self.previous.lock().unwrap().get(&owner).cloned();
        let mut workers = self.workers.lock().unwrap();
        let crew = workers.entry(owner).or_default();
        let shift = Shift::start(&crew.running);
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _shift = shift;
                if let Some(before) = before {
                    before.wait_idle();
                }
                f(ctx)
            })
            .expect("spawn worker");
        crew.handles.push(handle);
    }

    /// Stops `owner`'s workers without waiting for them: they end after
    /// their current plugin call; a successor's workers wait for that.
    pub(crate) fn retire(&self, owner: Owner) {
        let Some(crew) = self.workers.lock().unwrap().remove(&owner) else { return };
        self.retiring.lock().unwrap().extend(crew.handles);
        self.previous.lock().unwrap().insert(owner, crew.running);
        // Forget the handles of workers that have ended.
        let mut retiring = self.retiring.lock().unwrap();
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *retiring).into_iter().partition(|h| h.is_finished());
        done.into_iter().for_each(|h| drop(h.join()));
        *retiring = running;
    }

    /// Asks every worker to stop (call `wake` to interrupt their waits),
    /// then joins them all.
    pub(crate) fn stop(&self, wake: impl FnOnce()) {
        self.ctx.stop.store(true, Ordering::Relaxed);
        wake();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        let retiring = std::mem::take(&mut *self.retiring.lock().unwrap());
        for handle in workers.into_values().flat_map(|c| c.handles).chain(retiring) {
            let _ = handle.join();
        }
    }
}
