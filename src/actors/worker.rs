//! # Worker
//!
//! Owns: nothing but the batch it is working on (one at a time: its
//! supervisor hands it a new batch only after it answered the last).
//!
//! Handles: [`ProcessBatch`]. For each message, in this order:
//!
//! 1. already resolved? (re-claimed messages only: an existing dead letter
//!    means it is done);
//! 2. stale: its send time is more than `worker.stale_after` ago → STALE;
//!    a billing-blocked message is governed by its billing TTL instead →
//!    BILLING_BLOCKED once blocked longer than `billing.ttl`;
//! 3. blocked content (the list's blocked words) → BLOCKED_CONTENT;
//! 4. the contact's block state, re-read now → CONTACT_BLOCKED;
//! 5. billing (one debit for the batch; unpaid → back to the queue with the
//!    billing backoff; paid and not sent in the end → refunded);
//! 6. the attempt record (`MessageSent`, submitted = null), per chunk of
//!    about the list's burst — a record that already exists means someone
//!    tried: never sent again (guarantee 1);
//! 7. rate-limit permits (one round trip per grant; each granted part goes
//!    straight to the provider; none within `worker.permit_timeout` →
//!    RATE_LIMIT_TIMEOUT, attempt records removed);
//! 8. the provider call, in provider-sized requests;
//! 9. the outcome: accepted; rejected → PROVIDER_ERROR; transient → retried
//!    with exponential backoff and jitter while fresh; no response →
//!    NO_RESPONSE (never retried);
//! 10. only once every outcome is durable, the claim is completed (the queue
//!     entries are deleted) (guarantee 2).
//!
//! Sends: [`Acquire`]/[`Throttled`] to the RateLimiter, [`Charge`]/[`Refund`]
//! to Billing, [`RecordFailures`] to DeadLetter.
//!
//! Restart: a crashed worker loses nothing. Its claim stays in MongoDB; the
//! supervisor releases it, and every message it had attempted is protected
//! by its attempt record.

use crate::actors::supervisor::ListContext;
use crate::clock::{SharedClock, chrono_dur};
use crate::config::Config;
use crate::domain::*;
use crate::messages::*;
use crate::metrics::Metrics;
use crate::providers::{OutboundSms, SendResult};
use crate::ratelimit::RateLimitError;
use crate::store::{Requeue, SendOutcome, StoreError, Stores};
use actix::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Everything a worker talks to, injected (tests pass probes).
pub struct WorkerDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub acquire: Recipient<Acquire>,
    pub throttled: Recipient<Throttled>,
    pub charge: Recipient<Charge>,
    pub refund: Recipient<Refund>,
    pub dead_letter: Recipient<RecordFailures>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: finish the chunk in flight, release the rest.
    pub shutting_down: Arc<AtomicBool>,
}

pub struct Worker {
    deps: Arc<WorkerDeps>,
}

impl Worker {
    pub fn new(deps: Arc<WorkerDeps>) -> Self {
        Worker { deps }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<ProcessBatch> for Worker {
    type Result = ResponseFuture<BatchReport>;

    fn handle(&mut self, msg: ProcessBatch, _: &mut Self::Context) -> Self::Result {
        let run = BatchRun::new(self.deps.clone(), msg.list, msg.batch.token);
        Box::pin(run.execute(msg.batch.messages))
    }
}

/// Why a batch stopped early.
#[derive(Debug)]
enum Abort {
    Store(StoreError),
    Mailbox(String),
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        Abort::Store(e)
    }
}

impl From<MailboxError> for Abort {
    fn from(e: MailboxError) -> Self {
        Abort::Mailbox(e.to_string())
    }
}

/// One batch's work and what it has decided so far.
struct BatchRun {
    d: Arc<WorkerDeps>,
    list: Arc<ListContext>,
    token: String,
    report: BatchReport,
    failures: Vec<FailedMessage>,
    requeues: Vec<Requeue>,
    /// What each paid message cost, until it is sent or refunded.
    cost: HashMap<MessageId, Money>,
    refund: Money,
}

impl BatchRun {
    fn new(d: Arc<WorkerDeps>, list: Arc<ListContext>, token: String) -> Self {
        BatchRun {
            d,
            list,
            token,
            report: BatchReport::default(),
            failures: Vec::new(),
            requeues: Vec::new(),
            cost: HashMap::new(),
            refund: Money::ZERO,
        }
    }

    async fn execute(mut self, messages: Vec<QueuedTextMessage>) -> BatchReport {
        let list_id = self.list.list.id;
        match self.run(messages).await {
            Ok(()) => {}
            Err(abort) => {
                let detail = match abort {
                    Abort::Store(e) => e.to_string(),
                    Abort::Mailbox(e) => format!("actor mailbox: {e}"),
                };
                tracing::error!(list = %list_id, token = %self.token, error = %detail,
                    "batch stopped early; its claim is left for recovery");
                // Messages without an outcome stay claimed: the stale-claim
                // sweep hands them out again, and attempt records and dead
                // letters keep a second pass from sending or failing twice.
                self.report.store_error = Some(detail);
            }
        }
        self.report
    }

    fn fail(
        &mut self,
        m: &QueuedTextMessage,
        reason: FailureReason,
        detail: String,
        provider: Option<(&str, &str)>,
    ) {
        let now = self.d.clock.now();
        self.failures.push(FailedMessage {
            id: m.id,
            account: m.account,
            sending_list: m.sending_list,
            reason,
            detail,
            provider_code: provider.map(|p| p.0.to_string()),
            provider_text: provider.map(|p| p.1.to_string()),
            failed_at: now,
            original: m.clone(),
        });
        *self.report.failed.entry(reason).or_insert(0) += 1;
    }

    fn requeue(
        &mut self,
        m: &QueuedTextMessage,
        not_before: Timestamp,
        attempts: u32,
        billing_since: Option<Timestamp>,
        last_error: Option<String>,
    ) {
        self.requeues.push(Requeue {
            id: m.id,
            not_before,
            attempts,
            billing_blocked_since: billing_since,
            last_error,
        });
        self.report.requeued += 1;
    }

    /// Put back unchanged (shutdown, rate limiter unreachable).
    fn release(&mut self, m: &QueuedTextMessage) {
        let now = self.d.clock.now();
        self.requeue(
            m,
            now.max(m.not_before),
            m.attempts,
            m.billing_blocked_since,
            m.last_error.clone(),
        );
    }

    async fn run(&mut self, messages: Vec<QueuedTextMessage>) -> Result<(), Abort> {
        let cfg = self.d.config.clone();
        let now = self.d.clock.now();
        self.d
            .metrics
            .claimed
            .fetch_add(messages.len() as u64, Ordering::Relaxed);

        // 1. Re-claimed messages may already be resolved by an earlier pass.
        let reclaimed: Vec<MessageId> = messages
            .iter()
            .filter(|m| m.claim_count > 1)
            .map(|m| m.id)
            .collect();
        let resolved: HashSet<MessageId> = if reclaimed.is_empty() {
            HashSet::new()
        } else {
            self.d
                .stores
                .dead_letters
                .get_many(&reclaimed)
                .await?
                .into_iter()
                .map(|f| f.id)
                .collect()
        };

        // 2-3. Staleness, billing TTL, blocked content.
        let stale_after = chrono_dur(cfg.worker.stale_after.get());
        let billing_ttl = chrono_dur(cfg.billing.ttl.get());
        let mut candidates = Vec::with_capacity(messages.len());
        for m in messages {
            if resolved.contains(&m.id) {
                continue;
            }
            if let Some(since) = m.billing_blocked_since {
                // A billing-blocked message is governed by its billing TTL,
                // not by the staleness rule (ARCHITECTURE.md).
                if now - since > billing_ttl {
                    let detail = format!(
                        "account could not pay for {} (billing TTL)",
                        humantime::format_duration(cfg.billing.ttl.get())
                    );
                    self.fail(&m, FailureReason::BillingBlocked, detail, None);
                    continue;
                }
            } else if now - m.send_at > stale_after {
                let detail = format!(
                    "send time {} is more than {} ago",
                    m.send_at.to_rfc3339(),
                    humantime::format_duration(cfg.worker.stale_after.get())
                );
                self.fail(&m, FailureReason::Stale, detail, None);
                continue;
            }
            if let Some(word) = self.list.blocked_word(&m.body) {
                self.fail(
                    &m,
                    FailureReason::BlockedContent,
                    format!("contains the blocked word {word:?}"),
                    None,
                );
                continue;
            }
            candidates.push(m);
        }

        // 4. The contact's block state, read now (one round trip).
        if !candidates.is_empty() {
            let ids: Vec<ContactId> = candidates.iter().map(|m| m.contact).collect();
            let states = self
                .d
                .stores
                .contacts
                .contact_states(self.list.list.id, &ids)
                .await?;
            let mut ok = Vec::with_capacity(candidates.len());
            for m in candidates {
                match states
                    .get(&m.contact)
                    .copied()
                    .unwrap_or(ContactState::Missing)
                {
                    ContactState::Sendable => ok.push(m),
                    other => self.fail(
                        &m,
                        FailureReason::ContactBlocked,
                        other.describe().to_string(),
                        None,
                    ),
                }
            }
            candidates = ok;
        }

        // 5. Billing for the whole batch (one debit). Unpaid messages go
        // back with the billing backoff; paid ones that are not sent in the
        // end are refunded.
        let (paid, cost) = self.bill(candidates).await?;
        self.cost = cost;

        // 6-9. In chunks about the size of the list's burst: the attempt
        // records, then permits, and each granted part goes straight to the
        // provider. Nothing stands between a permit and its send, so sends
        // reach the provider in the shape the bucket granted them (guarantee
        // 3 holds at the provider, not only at the bucket).
        let permit_deadline = tokio::time::Instant::now() + cfg.worker.permit_timeout.get();
        let burst = (self.list.rate_per_minute() as f64 / 60.0 * cfg.rate_limit.burst_seconds)
            .max(1.0) as usize;
        let chunk_size = burst.min(self.list.provider.max_batch().max(1) * 4).max(1);
        let mut remaining: VecDeque<QueuedTextMessage> = paid.into();
        'chunks: while !remaining.is_empty() {
            if self.d.shutting_down.load(Ordering::Relaxed) {
                self.give_back(std::mem::take(&mut remaining));
                break;
            }
            let n = chunk_size.min(remaining.len());
            let chunk: Vec<QueuedTextMessage> = remaining.drain(..n).collect();
            // 7. Attempt records, before anything reaches the provider.
            let mut pending: VecDeque<QueuedTextMessage> =
                self.record_attempts(chunk).await?.into();
            // 8. Permits, then the provider.
            while !pending.is_empty() {
                if self.d.shutting_down.load(Ordering::Relaxed) {
                    self.unattempt(&mut pending).await?;
                    self.give_back(std::mem::take(&mut remaining));
                    break 'chunks;
                }
                let grant = self
                    .d
                    .acquire
                    .send(Acquire {
                        list: self.list.list.id,
                        per_minute: self.list.rate_per_minute(),
                        n: pending.len().min(u32::MAX as usize) as u32,
                    })
                    .await?;
                match grant {
                    Err(RateLimitError::Unavailable(e)) => {
                        // Never send without a permit: put everything back;
                        // the supervisor pauses until the rate limiter answers.
                        tracing::warn!(list = %self.list.list.id, error = %e, "rate limiter unavailable; releasing the batch");
                        self.report.rate_limiter_unavailable = true;
                        self.unattempt(&mut pending).await?;
                        self.give_back(std::mem::take(&mut remaining));
                        break 'chunks;
                    }
                    Ok(g) if g.granted == 0 => {
                        let wait = g.wait.max(cfg.rate_limit.inter_batch_delay.get());
                        if tokio::time::Instant::now() + wait > permit_deadline {
                            let detail = format!(
                                "no rate-limit permit within {} (list rate {}/min)",
                                humantime::format_duration(cfg.worker.permit_timeout.get()),
                                self.list.rate_per_minute()
                            );
                            let ids: Vec<MessageId> = pending.iter().map(|m| m.id).collect();
                            self.d
                                .stores
                                .sent
                                .discard_attempts(&self.token, ids)
                                .await?;
                            for m in pending.drain(..).chain(std::mem::take(&mut remaining)) {
                                self.refund_for(m.id);
                                self.fail(
                                    &m,
                                    FailureReason::RateLimitTimeout,
                                    detail.clone(),
                                    None,
                                );
                            }
                            break 'chunks;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    Ok(g) => {
                        let k = (g.granted as usize).min(pending.len());
                        let granted: Vec<QueuedTextMessage> = pending.drain(..k).collect();
                        self.send_granted(granted).await?;
                        if !pending.is_empty() || !remaining.is_empty() {
                            tokio::time::sleep(cfg.rate_limit.inter_batch_delay.get()).await;
                        }
                    }
                }
            }
        }

        // 10. Make every decision durable, then complete the claim.
        self.finish().await
    }

    /// Charge the account for `msgs` in one debit. Returns the paid
    /// messages (in order) and what each cost; the unpaid ones are requeued
    /// with the billing backoff.
    async fn bill(
        &mut self,
        msgs: Vec<QueuedTextMessage>,
    ) -> Result<(Vec<QueuedTextMessage>, HashMap<MessageId, Money>), Abort> {
        if msgs.is_empty() {
            return Ok((msgs, HashMap::new()));
        }
        let now = self.d.clock.now();
        let account = self.list.list.account;
        let backoff = chrono_dur(self.d.config.billing.backoff.get());
        // A list's messages all belong to the list's account.
        let charged = self
            .d
            .charge
            .send(Charge {
                account,
                items: msgs.iter().map(|m| (m.id, m.segments)).collect(),
            })
            .await??;
        let blocked: HashSet<MessageId> = charged.blocked.iter().copied().collect();
        let mut paid = Vec::with_capacity(msgs.len());
        for m in msgs {
            if blocked.contains(&m.id) {
                let since = m.billing_blocked_since.unwrap_or(now);
                tracing::info!(message_id = %m.id, account = %account, "billing blocked: retrying after the backoff");
                self.requeue(
                    &m,
                    now + backoff,
                    m.attempts,
                    Some(since),
                    Some("billing blocked: insufficient balance".into()),
                );
            } else {
                paid.push(m);
            }
        }
        Ok((paid, charged.paid.into_iter().collect()))
    }

    /// Give back what `id` was charged (it will not be sent in this pass).
    fn refund_for(&mut self, id: MessageId) {
        if let Some(c) = self.cost.remove(&id) {
            self.refund.0 += c.0;
        }
    }

    /// Put messages back unchanged, refunding them (nothing was attempted).
    fn give_back(&mut self, msgs: VecDeque<QueuedTextMessage>) {
        for m in msgs {
            self.refund_for(m.id);
            self.release(&m);
        }
    }

    /// Messages whose attempt records exist but that provably never reached
    /// the provider (no permit yet): remove the records, refund, put back.
    async fn unattempt(&mut self, pending: &mut VecDeque<QueuedTextMessage>) -> Result<(), Abort> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<MessageId> = pending.iter().map(|m| m.id).collect();
        self.d
            .stores
            .sent
            .discard_attempts(&self.token, ids)
            .await?;
        let msgs = std::mem::take(pending);
        self.give_back(msgs);
        Ok(())
    }

    /// Insert attempt records for `paid`; returns the messages this pass may
    /// send (those nobody attempted before).
    async fn record_attempts(
        &mut self,
        paid: Vec<QueuedTextMessage>,
    ) -> Result<Vec<QueuedTextMessage>, Abort> {
        let now = self.d.clock.now();
        let records: Vec<MessageSent> = paid
            .iter()
            .map(|m| {
                self.attempt_record(m, self.cost.get(&m.id).copied().unwrap_or(Money::ZERO), now)
            })
            .collect();
        let attempted = self.d.stores.sent.record_attempts(records).await?;
        if !attempted.already_attempted.is_empty() {
            self.resolve_already_attempted(&paid, &attempted.already_attempted)
                .await?;
        }
        let fresh: HashSet<MessageId> = attempted.inserted.iter().copied().collect();
        Ok(paid.into_iter().filter(|m| fresh.contains(&m.id)).collect())
    }

    /// The provider call and the outcomes of messages that hold permits.
    async fn send_granted(&mut self, to_send: Vec<QueuedTextMessage>) -> Result<(), Abort> {
        let cfg = self.d.config.clone();
        if to_send.is_empty() {
            return Ok(());
        }

        // 8. The provider call, in provider-sized requests sent together.
        let provider = self.list.provider.clone();
        let size = provider.max_batch().max(1);
        let messaging_service = match &self.list.list.provider {
            ProviderSettings::Twilio {
                messaging_service_sid,
                ..
            } => messaging_service_sid.clone(),
            _ => None,
        };
        let outbound: Vec<OutboundSms> = to_send
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
        self.d.metrics.record_due_to_send(to_send.iter().map(|m| {
            (sent_at - m.not_before.max(m.send_at))
                .num_milliseconds()
                .max(0) as u64
        }));
        let calls = outbound.chunks(size).map(|c| provider.send(c));
        self.d
            .metrics
            .provider_calls
            .fetch_add(outbound.len().div_ceil(size) as u64, Ordering::Relaxed);
        let results: Vec<SendResult> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();

        // 9. Outcomes.
        let done_at = self.d.clock.now();
        let mut outcomes = Vec::with_capacity(to_send.len());
        let mut discard = Vec::new();
        let mut throttled = false;
        let mut unsubscribed = Vec::new();
        for (i, m) in to_send.iter().enumerate() {
            let result = results.get(i).cloned().unwrap_or(SendResult::NoResponse {
                text: "provider adapter returned no answer for this message".into(),
            });
            match result {
                SendResult::Accepted {
                    provider_message_id,
                } => {
                    outcomes.push(outcome(
                        m.id,
                        true,
                        done_at,
                        Some(provider_message_id),
                        None,
                        None,
                    ));
                    self.report.sent += 1;
                }
                SendResult::Rejected {
                    code,
                    text,
                    unsubscribed: unsub,
                } => {
                    outcomes.push(outcome(
                        m.id,
                        false,
                        done_at,
                        None,
                        Some(code.clone()),
                        Some(text.clone()),
                    ));
                    self.fail(
                        m,
                        FailureReason::ProviderError,
                        "rejected by the provider".into(),
                        Some((&code, &text)),
                    );
                    self.refund_for(m.id);
                    if unsub {
                        unsubscribed.push(m.contact);
                    }
                }
                SendResult::Transient {
                    code,
                    text,
                    throttled: t,
                } => {
                    throttled |= t;
                    self.refund_for(m.id);
                    let attempts = m.attempts + 1;
                    let next = done_at + chrono_dur(retry_delay(&cfg, m.id, m.attempts));
                    if next - m.send_at <= chrono_dur(cfg.worker.stale_after.get()) {
                        // Nothing reached the provider: the attempt record
                        // goes, so the retry may record a new one.
                        discard.push(m.id);
                        self.requeue(
                            m,
                            next,
                            attempts,
                            m.billing_blocked_since,
                            Some(format!("{code}: {text}")),
                        );
                    } else {
                        outcomes.push(outcome(
                            m.id,
                            false,
                            done_at,
                            None,
                            Some(code.clone()),
                            Some(text.clone()),
                        ));
                        let detail = format!(
                            "transient provider errors until the message went stale ({attempts} attempts)"
                        );
                        self.fail(
                            m,
                            FailureReason::ProviderError,
                            detail,
                            Some((&code, &text)),
                        );
                    }
                }
                SendResult::NoResponse { text } => {
                    // In doubt: the provider may have sent it. Never resent;
                    // the charge stands (a late delivery report can still
                    // show it was delivered).
                    outcomes.push(outcome(
                        m.id,
                        false,
                        done_at,
                        None,
                        Some("NO_RESPONSE".into()),
                        Some(text.clone()),
                    ));
                    self.fail(m, FailureReason::NoResponse, text, None);
                }
            }
        }
        if throttled {
            self.d.metrics.throttled.fetch_add(1, Ordering::Relaxed);
            self.d.throttled.do_send(Throttled {
                list: self.list.list.id,
            });
        }
        self.d.stores.sent.record_outcomes(outcomes).await?;
        if !discard.is_empty() {
            self.d
                .stores
                .sent
                .discard_attempts(&self.token, discard)
                .await?;
        }
        for contact in unsubscribed {
            // The provider says the recipient opted out (Twilio 21610).
            self.d
                .stores
                .contacts
                .set_subscription(contact, self.list.list.id, false, done_at)
                .await?;
        }
        Ok(())
    }

    /// Messages someone already attempted: never sent again. With a recorded
    /// outcome they are done; still in doubt, they wait (claim released until
    /// the in-doubt window has passed) for the sweep to record NO_RESPONSE.
    async fn resolve_already_attempted(
        &mut self,
        paid: &[QueuedTextMessage],
        ids: &[MessageId],
    ) -> Result<(), Abort> {
        let existing: HashMap<MessageId, MessageSent> = self
            .d
            .stores
            .sent
            .get_many(ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let window = chrono_dur(self.d.config.no_response_window());
        let now = self.d.clock.now();
        for m in paid.iter().filter(|m| ids.contains(&m.id)) {
            self.refund_for(m.id);
            self.report.skipped_already_attempted += 1;
            match existing.get(&m.id) {
                Some(r) if r.submitted.is_some() => {
                    tracing::info!(message_id = %m.id, "already sent with a recorded outcome; not sending again");
                }
                Some(r) => {
                    tracing::warn!(message_id = %m.id, attempted_at = %r.attempted_at, "attempt in doubt elsewhere; not sending again");
                    let not_before = (r.attempted_at + window).max(now);
                    self.requeue(
                        m,
                        not_before,
                        m.attempts,
                        m.billing_blocked_since,
                        Some("attempt in doubt".into()),
                    );
                }
                None => {
                    // The record vanished between the insert and the read (a
                    // retry discarded it): leave the message for a later pass.
                    self.release(m);
                }
            }
        }
        self.d
            .metrics
            .already_attempted
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn attempt_record(&self, m: &QueuedTextMessage, cost: Money, now: Timestamp) -> MessageSent {
        MessageSent::attempt(m, self.list.provider.kind(), &self.token, cost, now)
    }

    /// Dead letters, then requeues, then refunds, then delete what is left of
    /// the claim. Each step only after the previous one is durable.
    async fn finish(&mut self) -> Result<(), Abort> {
        let list = self.list.list.id;
        if !self.failures.is_empty() {
            let failures = std::mem::take(&mut self.failures);
            self.d.dead_letter.send(RecordFailures(failures)).await??;
        }
        if !self.requeues.is_empty() {
            let requeues = std::mem::take(&mut self.requeues);
            self.d.stores.queue.requeue(&self.token, requeues).await?;
            self.d
                .metrics
                .requeued
                .fetch_add(self.report.requeued, Ordering::Relaxed);
        }
        if self.refund.0 > 0 {
            let amount = std::mem::take(&mut self.refund);
            self.d
                .refund
                .send(Refund {
                    account: self.list.list.account,
                    amount,
                })
                .await??;
        }
        self.d.stores.queue.complete(list, &self.token).await?;
        self.d
            .metrics
            .sent
            .fetch_add(self.report.sent, Ordering::Relaxed);
        Ok(())
    }
}

fn outcome(
    id: MessageId,
    submitted: bool,
    at: Timestamp,
    provider_message_id: Option<String>,
    error_code: Option<String>,
    error_text: Option<String>,
) -> SendOutcome {
    SendOutcome {
        id,
        submitted,
        at,
        provider_message_id,
        error_code,
        error_text,
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half spread
/// by a hash of the message and attempt (deterministic, so tests can predict
/// it, and different for each message, so retries do not come in waves).
pub fn retry_delay(cfg: &Config, id: MessageId, attempts: u32) -> Duration {
    let base = cfg.worker.retry_base.get();
    let max = cfg.worker.retry_max.get();
    let exp = base.saturating_mul(1u32 << attempts.min(20)).min(max);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, attempts).hash(&mut h);
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    exp.mul_f64(0.5 + 0.5 * frac)
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
