//! Rate-limit state: a token bucket per sending list. Two backends with the
//! same arithmetic: Redis (a Lua script, shared by every daemon) and local
//! (this process only, for the embedded mode). Only the RateLimiter actor
//! calls them.

pub mod local;
pub mod redis;

use crate::domain::SendingListId;
use async_trait::async_trait;
use std::time::Duration;

/// Which of a list's two buckets (same rate, same burst) a permit comes
/// from. `Admit` gates the work before a send (contact re-read, charge,
/// attempt record), so nothing is written for messages the rate does not
/// allow yet; `Send` is taken right before the provider call, so sends
/// reach the provider in the bucket's shape however long that work took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Admit,
    Send,
}

/// Permits granted by one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u32,
    /// When fewer were granted than asked: time until the next permit.
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// The shared state cannot be reached: never send without a permit.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PermitBackend: Send + Sync {
    /// Take up to `n` permits from `list`'s `bucket`, refilled at
    /// `rate_per_sec` up to `capacity`. One round trip.
    async fn acquire(
        &self,
        list: SendingListId,
        bucket: Bucket,
        rate_per_sec: f64,
        capacity: f64,
        n: u32,
    ) -> Result<Grant, RateLimitError>;
    async fn ping(&self) -> Result<(), RateLimitError>;
    fn name(&self) -> &'static str;
}

/// The bucket arithmetic, mirrored by `lua/token_bucket.lua`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub tokens: f64,
    /// Last refill, microseconds on the backend's clock.
    pub ts_us: i64,
}

impl TokenBucket {
    pub fn full(capacity: f64, now_us: i64) -> Self {
        TokenBucket {
            tokens: capacity,
            ts_us: now_us,
        }
    }

    /// Refill to `now_us`, then grant up to `n`.
    pub fn take(&mut self, now_us: i64, rate: f64, capacity: f64, n: u32) -> Grant {
        let elapsed = (now_us - self.ts_us).max(0) as f64;
        self.tokens = (self.tokens + elapsed * rate / 1_000_000.0).min(capacity);
        self.ts_us = now_us;
        let granted = (n as f64).min(self.tokens.floor()).max(0.0) as u32;
        self.tokens -= granted as f64;
        let wait = if granted < n {
            let ms = ((1.0 - self.tokens) / rate * 1000.0).ceil().max(1.0);
            Duration::from_millis(ms as u64)
        } else {
            Duration::ZERO
        };
        Grant { granted, wait }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_grants_its_capacity_then_refills_at_the_rate() {
        let mut b = TokenBucket::full(100.0, 0);
        let g = b.take(0, 100.0, 100.0, 150);
        assert_eq!(g.granted, 100);
        assert_eq!(g.wait, Duration::from_millis(10));
        // 0.5 s later: 50 more.
        let g = b.take(500_000, 100.0, 100.0, 150);
        assert_eq!(g.granted, 50);
        // Never more than capacity after a long idle time.
        let g = b.take(100_000_000, 100.0, 100.0, 1000);
        assert_eq!(g.granted, 100);
    }

    #[test]
    fn grants_over_any_window_stay_within_rate_plus_burst() {
        let (rate, cap) = (283.0, 283.0);
        let mut b = TokenBucket::full(cap, 0);
        let mut total = 0u64;
        let mut t = 0i64;
        // A greedy client asking every 7 ms for 10 s.
        while t <= 10_000_000 {
            total += b.take(t, rate, cap, 1000).granted as u64;
            t += 7_000;
        }
        assert!(total as f64 <= rate * 10.0 + cap + 1.0, "{total}");
        assert!(total as f64 >= rate * 10.0, "{total}");
    }
}
