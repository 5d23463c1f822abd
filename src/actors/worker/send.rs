//! Stage 2c, send: a permit from the list's send bucket (taken right before
//! the call, so the provider sees the rate's exact shape however long the
//! attempt stage took), then the provider call in provider-sized requests
//! sent together, started only while this instance's lease allows it; then
//! each answer classified into how it is recorded:
//!
//! - accepted → sent;
//! - rejected (permanent) → PROVIDER_ERROR, refunded; a STOP-type rejection
//!   (Twilio 21610) also unsubscribes the contact from the list;
//! - not processed, provably (refused before the request was written, 429,
//!   or an answer the provider documents as "not processed") → the attempt
//!   record is removed and refunded, and the message retried with
//!   exponential backoff and jitter while it is still fresh (a 429 also
//!   lowers the list's rate); past freshness → PROVIDER_ERROR;
//! - anything ambiguous (a timeout after the request went out, a 5xx, a 2xx
//!   that cannot be read) → in doubt: NO_RESPONSE, never resent
//!   automatically, the charge stands.
//!
//! Crash point after the call (`worker.sent`): the provider may have taken
//! the messages and nothing recorded it. Recovery records them in doubt
//! once the lease lapses; a delivery report resolves each one it concerns
//! as sent.

use super::{Abort, BatchRun, jitter};
use crate::actors::outcome;
use crate::clock::chrono_dur;
use crate::config::Config;
use crate::domain::*;
use crate::messages::{Acquire, ListContext, Throttled};
use crate::providers::{OutboundSms, SendResult};
use crate::ratelimit::{Bucket, RateLimitError};
use crate::store::Settlement;
use std::time::Duration;
use tokio::time::Instant;

/// What a chunk's provider call decided.
#[derive(Default)]
pub(super) struct Answers {
    pub settlements: Vec<Settlement>,
    /// Contacts the provider says opted out.
    pub unsubscribed: Vec<ContactId>,
    /// Reason each failure will count under, once settled.
    pub reasons: Vec<(MessageId, FailureReason)>,
    /// Transient answers (provably not processed), for alerts.
    pub transient: u64,
}

impl BatchRun {
    pub(super) async fn send(
        &mut self,
        list: &ListContext,
        msgs: &[QueuedTextMessage],
    ) -> Result<Answers, Abort> {
        let cfg = self.d.config.clone();
        let mut answers = Answers::default();
        // The send bucket only smooths the jitter of the work since the
        // admission permit: its wait is short, and bounded.
        let deadline = Instant::now() + cfg.worker.permit_timeout.get();
        let mut rest = msgs;
        while !rest.is_empty() {
            let k = if !self.d.instance.lease_valid() {
                tracing::warn!(list = %list.list.id, "lease not renewed: not sending; the chunk goes back");
                0
            } else {
                self.send_permit(list, rest.len(), deadline).await?
            };
            if k == 0 {
                // Recorded attempts that will not be sent now are withdrawn
                // (refunded) and the messages go back unchanged.
                for m in rest {
                    answers.settlements.push(Settlement::Unsent {
                        id: m.id,
                        token: self.token.clone(),
                    });
                    self.release(m);
                }
                break;
            }
            let (now, later) = rest.split_at(k.min(rest.len()));
            self.call_provider(list, now, &mut answers).await;
            rest = later;
        }
        Ok(answers)
    }

    /// Permits from the list's send bucket for up to `wanted` messages; 0
    /// when none came before `deadline` or the rate limiter is unreachable.
    async fn send_permit(
        &mut self,
        list: &ListContext,
        wanted: usize,
        deadline: Instant,
    ) -> Result<usize, Abort> {
        let delay = self.d.config.rate_limit.inter_batch_delay.get();
        loop {
            let grant = self
                .d
                .acquire
                .send(Acquire {
                    list: list.list.id,
                    bucket: Bucket::Send,
                    per_minute: list.rate_per_minute().max(1),
                    n: wanted.min(u32::MAX as usize) as u32,
                })
                .await
                .map_err(|source| Abort::Mailbox {
                    what: "rate limiter",
                    source,
                })?;
            match grant {
                Ok(g) if g.granted > 0 => return Ok((g.granted as usize).min(wanted)),
                Ok(g) => {
                    let wait = g.wait.max(delay);
                    if Instant::now() + wait > deadline {
                        return Ok(0);
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(RateLimitError::Unavailable(e)) => {
                    tracing::warn!(list = %list.list.id, error = %e, "rate limiter unavailable before sending; the chunk goes back");
                    self.report.rate_limiter_unavailable = true;
                    return Ok(0);
                }
            }
        }
    }

    /// One provider call for `msgs` (in provider-sized requests sent
    /// together), its answers classified into `answers`.
    async fn call_provider(
        &mut self,
        list: &ListContext,
        msgs: &[QueuedTextMessage],
        answers: &mut Answers,
    ) {
        let cfg = self.d.config.clone();
        let provider = list.provider.clone();
        let size = provider.max_batch().max(1);
        let messaging_service = match &list.list.provider {
            ProviderSettings::Twilio {
                messaging_service_sid,
                ..
            } => messaging_service_sid.clone(),
            _ => None,
        };
        let outbound: Vec<OutboundSms> = msgs
            .iter()
            .map(|m| OutboundSms {
                id: m.id,
                list: m.sending_list,
                from: m.from.clone(),
                to: m.to.clone(),
                body: m.body.clone(),
                messaging_service_sid: messaging_service.clone(),
            })
            .collect();
        let sent_at = self.d.clock.now();
        for m in msgs {
            let waited = (sent_at - m.not_before.max(m.send_at)).num_milliseconds();
            self.d
                .metrics
                .due_to_send
                .observe(waited.max(0) as f64 / 1000.0);
        }
        let started = std::time::Instant::now();
        let calls = outbound.chunks(size).map(|c| provider.send(c));
        let results: Vec<SendResult> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        self.d.metrics.provider_call(
            provider.kind(),
            outbound.len().div_ceil(size) as u64,
            started.elapsed().as_secs_f64(),
        );
        crate::failpoint::hit("worker.sent");

        let done_at = self.d.clock.now();
        let mut throttled = false;
        for (i, m) in msgs.iter().enumerate() {
            let result = results.get(i).cloned().unwrap_or(SendResult::InDoubt {
                code: None,
                text: "provider adapter returned no answer for this message".into(),
            });
            match result {
                SendResult::Accepted {
                    provider_message_id,
                } => answers.settlements.push(Settlement::Sent {
                    id: m.id,
                    at: done_at,
                    provider_message_id: Some(provider_message_id),
                    resolved_by: None,
                }),
                SendResult::Rejected {
                    code,
                    text,
                    unsubscribed,
                } => {
                    answers.settlements.push(outcome::rejected(
                        m,
                        &code,
                        &text,
                        "rejected by the provider".into(),
                        done_at,
                    ));
                    answers.reasons.push((m.id, FailureReason::ProviderError));
                    if unsubscribed {
                        answers.unsubscribed.push(m.contact);
                    }
                }
                SendResult::Transient {
                    code,
                    text,
                    throttled: t,
                } => {
                    throttled |= t;
                    answers.transient += 1;
                    let attempts = m.attempts + 1;
                    let next = done_at + chrono_dur(retry_delay(&cfg, m.id, m.attempts));
                    if next - m.send_at <= chrono_dur(cfg.worker.stale_after.get()) {
                        // Provably not taken: the attempt goes (refunded),
                        // so the retry may record a new one.
                        answers.settlements.push(Settlement::Unsent {
                            id: m.id,
                            token: self.token.clone(),
                        });
                        self.requeue(
                            m,
                            next,
                            attempts,
                            m.billing_blocked_since,
                            Some(format!("{code}: {text}")),
                        );
                    } else {
                        let detail = format!(
                            "provider did not take it until it went stale ({attempts} attempts)"
                        );
                        answers
                            .settlements
                            .push(outcome::rejected(m, &code, &text, detail, done_at));
                        answers.reasons.push((m.id, FailureReason::ProviderError));
                    }
                }
                SendResult::InDoubt { code, text } => {
                    answers
                        .settlements
                        .push(outcome::in_doubt(m, code.as_deref(), text, done_at));
                    answers.reasons.push((m.id, FailureReason::NoResponse));
                }
            }
        }
        if throttled {
            self.d.metrics.throttled.inc();
            self.d.throttled.do_send(Throttled { list: list.list.id });
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half spread
/// by a hash of the message and attempt (deterministic, so tests can predict
/// it, and different for each message, so retries do not come in waves).
pub fn retry_delay(cfg: &Config, id: MessageId, attempts: u32) -> Duration {
    let base = cfg.worker.retry_base.get();
    let max = cfg.worker.retry_max.get();
    let exp = base.saturating_mul(1u32 << attempts.min(20)).min(max);
    exp.mul_f64(0.5 + 0.5 * jitter(id, attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let cfg = Config::default();
        let id = MessageId::new();
        let d0 = retry_delay(&cfg, id, 0);
        assert!(
            d0 >= Duration::from_secs(1) && d0 <= Duration::from_secs(2),
            "{d0:?}"
        );
        let d3 = retry_delay(&cfg, id, 3);
        assert!(
            d3 >= Duration::from_secs(8) && d3 <= Duration::from_secs(16),
            "{d3:?}"
        );
        let d30 = retry_delay(&cfg, id, 30);
        assert!(
            d30 <= Duration::from_secs(300) && d30 >= Duration::from_secs(150),
            "{d30:?}"
        );
    }
}
