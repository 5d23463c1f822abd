//! Stage 2a, permit: rate-limit permits for the next part of a chunk, one
//! round trip to the shared bucket per grant. Nothing is written before a
//! permit, so a daemon that dies while waiting leaves nothing in doubt (its
//! messages are simply claimed again).
//!
//! Before each request: a shutdown, a lapsed lease or a paused list (status
//! paused, or a rate of 0, changed by an operator on any daemon) puts the
//! rest of the batch back unchanged. No permit within `worker.permit_timeout`
//! of the batch's start → RATE_LIMIT_TIMEOUT. Redis unreachable → the rest
//! goes back and the supervisor stops claiming until it answers (never send
//! without a permit).
//!
//! Crash point after a grant (`worker.permitted`): the permits are spent
//! (the rate stays within its limit); nothing else was written.

use super::{Abort, BatchRun};
use crate::messages::{Acquire, ListContext};
use crate::ratelimit::{Bucket, RateLimitError};
use tokio::time::Instant;

pub(super) enum Permit {
    /// This many of the wanted messages may go now.
    Granted(usize),
    /// Put the rest back unchanged.
    Release(&'static str),
    /// No permit in time: the rest is RATE_LIMIT_TIMEOUT.
    Timeout(String),
}

impl BatchRun {
    pub(super) async fn permit(
        &mut self,
        list: &ListContext,
        wanted: usize,
        deadline: Instant,
    ) -> Result<Permit, Abort> {
        let cfg = self.d.config.clone();
        let delay = cfg.rate_limit.inter_batch_delay.get();
        if self.granted_before {
            // Smooths a worker's grants ("inter-batch delay").
            tokio::time::sleep(delay).await;
        }
        loop {
            if self.d.instance.is_shutting_down() {
                return Ok(Permit::Release("shutting down"));
            }
            if !self.d.instance.lease_valid() {
                return Ok(Permit::Release("lease not renewed"));
            }
            if list.live.paused() {
                return Ok(Permit::Release("list paused"));
            }
            let grant = self
                .d
                .acquire
                .send(Acquire {
                    list: list.list.id,
                    bucket: Bucket::Admit,
                    per_minute: list.rate_per_minute(),
                    n: wanted.min(u32::MAX as usize) as u32,
                })
                .await
                .map_err(|source| Abort::Mailbox {
                    what: "rate limiter",
                    source,
                })?;
            match grant {
                Err(RateLimitError::Unavailable(e)) => {
                    tracing::warn!(list = %list.list.id, error = %e, "rate limiter unavailable; releasing the batch");
                    self.report.rate_limiter_unavailable = true;
                    return Ok(Permit::Release("rate limiter unavailable"));
                }
                Ok(g) if g.granted == 0 => {
                    let wait = g.wait.max(delay);
                    if Instant::now() + wait > deadline {
                        return Ok(Permit::Timeout(format!(
                            "no rate-limit permit within {} (list rate {}/min)",
                            humantime::format_duration(cfg.worker.permit_timeout.get()),
                            list.rate_per_minute()
                        )));
                    }
                    tokio::time::sleep(wait).await;
                }
                Ok(g) => {
                    self.granted_before = true;
                    crate::failpoint::hit("worker.permitted");
                    return Ok(Permit::Granted((g.granted as usize).min(wanted)));
                }
            }
        }
    }
}
