//! Keeping a partition's lease while a worker runs: taken before the first
//! claim, renewed when half its time is gone, given up when the worker
//! ends, and dropped when an ack finds it was taken over (the next round
//! tries to take it again).

use std::time::Duration;

use crate::store::{now_ms, Lease, Partition, Store, StoreError, LEASE_TTL_MS};

/// A worker's hold on one partition.
pub struct LeaseKeeper<'a> {
    store: &'a dyn Store,
    partition: Partition,
    holder: &'a str,
    lease: Option<Lease>,
}

impl<'a> LeaseKeeper<'a> {
    /// Holds nothing yet.
    pub fn new(store: &'a dyn Store, partition: Partition, holder: &'a str) -> LeaseKeeper<'a> {
        LeaseKeeper { store, partition, holder, lease: None }
    }

    /// The lease, taken or renewed when due.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] while another holder has the partition, or
    /// the store's failure; the caller waits ([`LeaseKeeper::pause`]) and
    /// tries again.
    pub fn lease(&mut self) -> Result<&Lease, StoreError> {
        let now = now_ms();
        if self.lease.as_ref().is_none_or(|l| l.renew_due(now, LEASE_TTL_MS)) {
            match self.store.lease(&self.partition, self.holder, now, LEASE_TTL_MS) {
                Ok(l) => self.lease = Some(l),
                Err(e) => {
                    self.lease = None;
                    return Err(e);
                }
            }
        }
        Ok(self.lease.as_ref().expect("just taken"))
    }

    /// Notes that an ack under the lease was refused (`e`): the lease is
    /// forgotten when another holder took it.
    pub fn refused(&mut self, e: &StoreError) {
        if matches!(e, StoreError::Conflict(_)) {
            self.lease = None;
        }
    }

    /// How long to wait after a lease or store failure.
    pub fn pause(e: &StoreError) -> Duration {
        match e {
            StoreError::Conflict(_) => Duration::from_secs(1),
            _ => Duration::from_millis(500),
        }
    }
}

impl Drop for LeaseKeeper<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            if let Err(e) = self.store.release(&l) {
                tracing::debug!(queue = %l.partition.queue.name(), error = %e, "cannot release a lease; it expires on its own");
            }
        }
    }
}
