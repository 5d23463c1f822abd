//! The shared permit backend: one EVALSHA of `lua/token_bucket.lua` per grant
//! (the driver loads the script again by itself after a Redis restart or
//! `SCRIPT FLUSH`).

use super::{Bucket, Grant, PermitBackend, RateLimitError};
use crate::domain::SendingListId;
use crate::metrics::{Metrics, RedisOp};
use async_trait::async_trait;
use deadpool_redis::redis::Script;
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use std::sync::Arc;
use std::time::Duration;

const TOKEN_BUCKET: &str = include_str!("lua/token_bucket.lua");

pub struct RedisPermits {
    pool: Pool,
    script: Script,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Build a connection pool (no connection is made until first use).
pub fn pool(
    url: &str,
    size: usize,
    timeout: Duration,
) -> Result<Pool, deadpool_redis::CreatePoolError> {
    let mut cfg = deadpool_redis::Config::from_url(url);
    let mut pc = PoolConfig::new(size);
    pc.timeouts = Timeouts {
        wait: Some(timeout),
        create: Some(timeout),
        recycle: Some(timeout),
    };
    cfg.pool = Some(pc);
    cfg.create_pool(Some(Runtime::Tokio1))
}

impl RedisPermits {
    pub fn new(pool: Pool, prefix: &str, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        RedisPermits {
            pool,
            script: Script::new(TOKEN_BUCKET),
            prefix: prefix.to_string(),
            timeout,
            metrics,
        }
    }

    fn key(&self, list: SendingListId, bucket: Bucket) -> String {
        match bucket {
            Bucket::Admit => format!("{}:rl:{}", self.prefix, list),
            Bucket::Send => format!("{}:rl:{}:send", self.prefix, list),
        }
    }

    async fn with_timeout<T, F>(&self, fut: F) -> Result<T, RateLimitError>
    where
        F: std::future::Future<Output = Result<T, RateLimitError>>,
    {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| RateLimitError::Unavailable("Redis call timed out".into()))?
    }
}

fn unavailable(e: impl std::fmt::Display) -> RateLimitError {
    RateLimitError::Unavailable(e.to_string())
}

#[async_trait]
impl PermitBackend for RedisPermits {
    async fn acquire(
        &self,
        list: SendingListId,
        bucket: Bucket,
        rate_per_sec: f64,
        capacity: f64,
        n: u32,
    ) -> Result<Grant, RateLimitError> {
        self.metrics.redis_call(RedisOp::Acquire);
        let key = self.key(list, bucket);
        self.with_timeout(async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            let (granted, wait_ms): (i64, i64) = self
                .script
                .key(&key)
                .arg(rate_per_sec)
                .arg(capacity)
                .arg(n)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(Grant {
                granted: granted.clamp(0, n as i64) as u32,
                wait: Duration::from_millis(wait_ms.max(0) as u64),
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), RateLimitError> {
        self.metrics.redis_call(RedisOp::Ping);
        self.with_timeout(async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            deadpool_redis::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
