//! Ingest quotas: requests and messages per time for each tenant and each
//! token (token buckets that outlive reloads while their limit stays the
//! same), the largest batch and the largest body. A refusal is 429 with
//! `Retry-After`, or 413 for a batch or body no quota could ever admit;
//! either way nothing of the request was accepted.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue, StatusCode};
use governor::clock::{Clock, DefaultClock};
use governor::DefaultDirectRateLimiter;

use super::auth::Caller;
use super::ApiError;
use crate::config::{IngestQuota, RateLimit};
use crate::delivery::throttle::limiter;

/// The buckets, by owner (`tenant acme`, `token acme-erp`) and kind.
#[derive(Default)]
pub struct Quotas {
    buckets: Mutex<HashMap<(String, Kind), (RateLimit, Arc<DefaultDirectRateLimiter>)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Messages,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Messages => "messages",
        }
    }
}

/// The quotas that apply to one ingest call: the tenant's and the token's.
pub struct Applicable<'a> {
    owners: Vec<(String, &'a IngestQuota)>,
}

impl<'a> Applicable<'a> {
    /// The tenant's quota (if configured) and the caller's token's.
    pub fn new(tenant: &str, tenant_quota: Option<&'a IngestQuota>, caller: &'a Caller) -> Applicable<'a> {
        let mut owners = Vec::new();
        if let Some(q) = tenant_quota {
            owners.push((format!("tenant `{tenant}`"), q));
        }
        if let Some(t) = &caller.token {
            owners.push((format!("token `{}`", t.id), &t.ingest));
        }
        Applicable { owners }
    }

    /// The largest body: the smallest `max-body` that applies, else `server`.
    pub fn max_body(&self, server: usize) -> usize {
        self.owners.iter().filter_map(|(_, q)| q.max_body).min().unwrap_or(server)
    }

    /// Refuses a batch of `n` messages above a `max-batch` (413).
    ///
    /// # Errors
    ///
    /// 413 `batch-too-large`.
    pub fn batch(&self, n: usize) -> Result<(), ApiError> {
        for (who, q) in &self.owners {
            if let Some(max) = q.max_batch.filter(|max| n > *max) {
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch-too-large", format!("the batch has {n} messages; {who} may send at most {max} per batch (max-batch); nothing was accepted")));
            }
        }
        Ok(())
    }
}

impl Quotas {
    /// Takes one request from every applicable bucket.
    ///
    /// # Errors
    ///
    /// 429 `quota-exceeded` with `Retry-After`.
    pub fn request(&self, applicable: &Applicable<'_>) -> Result<(), ApiError> {
        self.take(applicable, Kind::Requests, 1)
    }

    /// Takes `n` messages from every applicable bucket.
    ///
    /// # Errors
    ///
    /// 429 `quota-exceeded` with `Retry-After`, or 413 when `n` is more
    /// than a bucket holds at all (its burst).
    pub fn messages(&self, applicable: &Applicable<'_>, n: usize) -> Result<(), ApiError> {
        self.take(applicable, Kind::Messages, n)
    }

    fn take(&self, applicable: &Applicable<'_>, kind: Kind, n: usize) -> Result<(), ApiError> {
        for (who, q) in &applicable.owners {
            let limit = match kind {
                Kind::Requests => &q.requests,
                Kind::Messages => &q.messages,
            };
            let Some(limit) = limit else { continue };
            let bucket = self.bucket(who, kind, limit);
            let cells = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX).max(1)).expect("at least 1");
            match bucket.check_n(cells) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    let mut e = ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "quota-exceeded",
                        format!("{who} is over its ingest quota of {} {}; retry after {seconds} s; nothing was accepted", limit, kind.as_str()),
                    );
                    e.headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                    return Err(e);
                }
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "batch-too-large",
                        format!("the batch has {n} messages; {who} may send at most {} at once (its message burst); nothing was accepted", limit.burst),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The bucket of `who` for `kind`, new when its limit changed.
    fn bucket(&self, who: &str, kind: Kind, limit: &RateLimit) -> Arc<DefaultDirectRateLimiter> {
        let mut buckets = self.buckets.lock().unwrap();
        let entry = buckets.entry((who.to_string(), kind)).or_insert_with(|| (limit.clone(), Arc::new(limiter(limit))));
        if entry.0 != *limit {
            *entry = (limit.clone(), Arc::new(limiter(limit)));
        }
        entry.1.clone()
    }
}
