//! The in-process permit backend (embedded mode): the same bucket arithmetic
//! as the Lua script, on this process's monotonic clock.

use super::{Bucket, Grant, PermitBackend, RateLimitError, TokenBucket};
use crate::domain::SendingListId;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct LocalPermits {
    start: Instant,
    buckets: Mutex<HashMap<(SendingListId, Bucket), TokenBucket>>,
}

impl Default for LocalPermits {
    fn default() -> Self {
        LocalPermits {
            start: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl LocalPermits {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PermitBackend for LocalPermits {
    async fn acquire(
        &self,
        list: SendingListId,
        bucket: Bucket,
        rate_per_sec: f64,
        capacity: f64,
        n: u32,
    ) -> Result<Grant, RateLimitError> {
        let now = self.start.elapsed().as_micros() as i64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets
            .entry((list, bucket))
            .or_insert_with(|| TokenBucket::full(capacity, now));
        Ok(b.take(now, rate_per_sec, capacity, n))
    }

    async fn ping(&self) -> Result<(), RateLimitError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
