//! # RateLimiter
//!
//! Owns: every touch of rate-limit state (a [`PermitBackend`]: Redis Lua
//! scripts shared by all daemons, or in-process), and each list's AIMD factor.
//!
//! Handles: [`Acquire`] (one round trip grants a batch of permits),
//! [`Throttled`] (multiplicative decrease), [`CheckRateLimiter`],
//! [`EffectiveFraction`].
//!
//! The effective rate of a list is its configured rate times a factor in
//! `[min_fraction, 1]`. Provider throttling halves the factor (by default);
//! every `recover_every` without throttling adds `recover_step` back. The
//! factor is per daemon: each daemon that sees throttling slows itself, and
//! the shared bucket refills at the rate its caller passes, so the total
//! never exceeds the configured rate.
//!
//! Restart: the factor resets to 1 (the provider's next 429 lowers it again);
//! bucket state lives in Redis and survives.

use crate::config::RateLimitConfig;
use crate::domain::SendingListId;
use crate::messages::{Acquire, CheckRateLimiter, EffectiveFraction, Throttled};
use crate::ratelimit::{Grant, PermitBackend, RateLimitError};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Aimd {
    factor: f64,
    /// When the factor last changed (decrease or recovery step).
    changed: Instant,
}

pub struct RateLimiter {
    /// Where the buckets live (Redis for all daemons, or this process).
    backend: Arc<dyn PermitBackend>,
    /// Burst and AIMD settings.
    cfg: RateLimitConfig,
    /// Lists whose effective rate is lowered after throttling (absent: 1.0).
    aimd: HashMap<SendingListId, Aimd>,
}

impl RateLimiter {
    pub fn new(backend: Arc<dyn PermitBackend>, cfg: RateLimitConfig) -> Self {
        RateLimiter {
            backend,
            cfg,
            aimd: HashMap::new(),
        }
    }

    /// The list's factor now, with recovery steps applied lazily.
    fn factor(&mut self, list: SendingListId) -> f64 {
        let Some(a) = self.aimd.get_mut(&list) else {
            return 1.0;
        };
        let every = self.cfg.recover_every.get();
        let steps = a.changed.elapsed().as_secs_f64() / every.as_secs_f64().max(1e-9);
        if steps >= 1.0 {
            let whole = steps.floor();
            a.factor = (a.factor + whole * self.cfg.recover_step).min(1.0);
            a.changed += every.mul_f64(whole);
        }
        let f = a.factor;
        if f >= 1.0 {
            self.aimd.remove(&list);
        }
        f
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;
}

impl Handler<Acquire> for RateLimiter {
    type Result = ResponseFuture<Result<Grant, RateLimitError>>;

    fn handle(&mut self, msg: Acquire, _: &mut Self::Context) -> Self::Result {
        if msg.per_minute == 0 {
            // 0/min is a pause: nothing is granted (workers check the pause
            // before asking, so this only covers a change in between).
            let wait = self.cfg.unavailable_retry.get();
            return Box::pin(async move { Ok(Grant { granted: 0, wait }) });
        }
        let factor = self.factor(msg.list);
        let rate = (msg.per_minute as f64 / 60.0) * factor;
        let capacity = (rate * self.cfg.burst_seconds).max(1.0);
        let backend = self.backend.clone();
        Box::pin(async move {
            backend
                .acquire(msg.list, msg.bucket, rate, capacity, msg.n.max(1))
                .await
        })
    }
}

impl Handler<Throttled> for RateLimiter {
    type Result = ();

    fn handle(&mut self, msg: Throttled, _: &mut Self::Context) {
        let current = self.factor(msg.list);
        let next = (current * self.cfg.decrease_factor).max(self.cfg.min_fraction);
        tracing::warn!(list = %msg.list, from = current, to = next, "provider throttling: lowering the list's effective rate");
        self.aimd.insert(
            msg.list,
            Aimd {
                factor: next,
                changed: Instant::now(),
            },
        );
    }
}

impl Handler<EffectiveFraction> for RateLimiter {
    type Result = f64;

    fn handle(&mut self, msg: EffectiveFraction, _: &mut Self::Context) -> f64 {
        self.factor(msg.list)
    }
}

impl Handler<CheckRateLimiter> for RateLimiter {
    type Result = ResponseFuture<Result<(), RateLimitError>>;

    fn handle(&mut self, _: CheckRateLimiter, _: &mut Self::Context) -> Self::Result {
        let backend = self.backend.clone();
        Box::pin(async move { backend.ping().await })
    }
}
