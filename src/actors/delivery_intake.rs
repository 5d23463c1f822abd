//! # DeliveryIntake (the HTTP actor)
//!
//! Owns: the writing of delivery reports into `MessageSent`.
//!
//! Handles: [`ApplyReports`] from the webhook handlers (which have already
//! parsed and, for Twilio, verified each request). Requests that arrive while
//! a write is in flight are gathered and written together, so a burst of
//! 10,000 reports becomes a few bulk writes. Each request is answered once
//! its reports are durable; only then does the handler answer 200, so a
//! provider never drops a report we did not keep.
//!
//! Order-safe and idempotent by the store's rule: a final delivery state is
//! never replaced by a later intermediate (or another final) one.
//!
//! A report for an in-doubt (NO_RESPONSE) message proves the provider took
//! it: the message is resolved as sent and its dead letter marked resolved
//! (the store does it in one transaction).
//!
//! What waits is bounded by `webhooks.max_pending_bytes`: past it a request
//! is answered 503 at once and the provider sends it again later.
//!
//! Customer webhooks: after the reports are applied, every report whose
//! record now holds its state (changed now, or already before: a resent
//! report) gets an outbox entry keyed `(message, state)` for the account's
//! delivery webhook, written before the request is answered. The key makes
//! the write idempotent, so a crash between the two writes loses nothing:
//! the provider resends the unanswered report and this writes the entry.
//! The WebhookSender posts the entries.
//!
//! Restart: nothing is lost; an unanswered request fails its HTTP request
//! (503), and the provider sends the report again.

use super::coalesce::{Coalescer, CoalescingWriter, Requests, answer, flush};
use crate::domain::{Account, AccountId, RunCounts, ScheduleRunId};
use crate::messages::{ApplyReports, CountRuns, IntakeResult};
use crate::metrics::Metrics;
use crate::store::{
    AccountStore, DeliveryApplied, DeliveryUpdate, OutboxStore, SentStore, StoreError,
};
use actix::prelude::*;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The accounts that have a delivery webhook, by id.
type HookedAccounts = Arc<HashMap<AccountId, Account>>;

/// What the intake needs to write customer-webhook outbox entries.
#[derive(Clone)]
pub struct OutboxWriter {
    outbox: Arc<dyn OutboxStore>,
    accounts: Arc<dyn AccountStore>,
    clock: crate::clock::SharedClock,
    /// The accounts that have a delivery webhook, as last read, and when.
    /// Read again when older than `refresh`, so that reports of accounts
    /// without one (most) cost no read at all.
    hooked: Arc<tokio::sync::Mutex<Option<(std::time::Instant, HookedAccounts)>>>,
    refresh: std::time::Duration,
    /// This daemon's WebhookSender, woken when entries are written (it
    /// backs off while the outbox is idle).
    wake: Option<actix::Recipient<crate::messages::PollWebhooks>>,
}

impl OutboxWriter {
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        accounts: Arc<dyn AccountStore>,
        clock: crate::clock::SharedClock,
        refresh: std::time::Duration,
    ) -> Self {
        OutboxWriter {
            outbox,
            accounts,
            clock,
            hooked: Default::default(),
            refresh,
            wake: None,
        }
    }

    /// Wake `sender` whenever entries are written.
    pub fn waking(mut self, sender: actix::Recipient<crate::messages::PollWebhooks>) -> Self {
        self.wake = Some(sender);
        self
    }

    async fn hooked_accounts(&self) -> Result<HookedAccounts, StoreError> {
        let mut cached = self.hooked.lock().await;
        if let Some((at, map)) = cached.as_ref()
            && at.elapsed() < self.refresh
        {
            return Ok(map.clone());
        }
        let map: HashMap<AccountId, Account> = self
            .accounts
            .accounts()
            .await?
            .into_iter()
            .filter(|a| a.delivery_webhook.is_some())
            .map(|a| (a.id, a))
            .collect();
        let map = Arc::new(map);
        *cached = Some((std::time::Instant::now(), map.clone()));
        Ok(map)
    }
}

pub struct DeliveryIntake {
    store: Arc<dyn SentStore>,
    /// Customer webhooks (absent when `customer_webhooks.enabled` is off).
    webhooks: Option<OutboxWriter>,
    /// Reports received, applied, unknown and resolved are counted here.
    metrics: Arc<Metrics>,
    /// Requests waiting for the write in flight, within a byte budget.
    writes: Coalescer<DeliveryUpdate, IntakeResult>,
    /// Campaign run counters: delivered and undelivered messages.
    count_runs: Recipient<CountRuns>,
    /// Discord alerts: failed delivery reports (never waits).
    alerts: crate::messages::AlertSink,
}

impl DeliveryIntake {
    pub fn new(
        store: Arc<dyn SentStore>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        max_pending_bytes: usize,
        count_runs: Recipient<CountRuns>,
    ) -> Self {
        DeliveryIntake {
            store,
            webhooks: None,
            metrics,
            writes: Coalescer::with_budget(max_batch, max_pending_bytes),
            count_runs,
            alerts: Default::default(),
        }
    }
}

impl DeliveryIntake {
    /// Also write customer-webhook outbox entries for the reports applied.
    pub fn with_webhooks(mut self, writer: OutboxWriter) -> Self {
        self.webhooks = Some(writer);
        self
    }

    /// Also report failed delivery reports to the Alerts actor.
    pub fn with_alerts(mut self, alerts: crate::messages::AlertSink) -> Self {
        self.alerts = alerts;
        self
    }
}

/// Outbox entries for the reports whose record now holds the reported state
/// (changed by this write or held already), for accounts with a delivery
/// webhook; written idempotently. Returns how many entries were new.
async fn write_outbox(
    w: &OutboxWriter,
    sent: &Arc<dyn SentStore>,
    reported: &[(crate::domain::MessageId, crate::domain::DeliveryState)],
    unknown: &HashSet<crate::domain::MessageId>,
) -> Result<u64, StoreError> {
    use crate::domain::{OutboxEntry, OutboxStatus, WebhookPayload};
    let accounts = w.hooked_accounts().await?;
    if accounts.is_empty() {
        return Ok(0);
    }
    let ids: Vec<_> = reported
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !unknown.contains(id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let records: HashMap<_, _> = sent
        .get_many(&ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let now = w.clock.now();
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (id, state) in reported {
        let Some(r) = records.get(id) else { continue };
        if r.delivery_state != Some(*state) {
            continue;
        }
        let Some(acc) = accounts.get(&r.account) else {
            continue;
        };
        let key = OutboxEntry::key(*id, *state);
        if !seen.insert(key.clone()) {
            continue;
        }
        entries.push(OutboxEntry {
            id: key,
            message: *id,
            account: r.account,
            state: *state,
            rank: OutboxEntry::rank_of(*state),
            body: WebhookPayload::of(r, acc).to_body(),
            status: OutboxStatus::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            claim: None,
            lease_until: None,
            last_error: None,
            finished_at: None,
        });
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let added = w.outbox.add_outbox(entries).await?;
    crate::failpoint::hit("webhooks.enqueued");
    if added > 0
        && let Some(wake) = &w.wake
    {
        // A full mailbox already holds a wake-up; a closed one is a sender
        // shutting down (its next start polls anyway).
        let _ = wake.try_send(crate::messages::PollWebhooks);
    }
    Ok(added)
}

impl CoalescingWriter for DeliveryIntake {
    type Item = DeliveryUpdate;
    type Answer = IntakeResult;

    fn coalescer(&mut self) -> &mut Coalescer<DeliveryUpdate, IntakeResult> {
        &mut self.writes
    }

    fn write(&self, requests: Requests<DeliveryUpdate, IntakeResult>) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let count_runs = self.count_runs.clone();
        let webhooks = self.webhooks.clone();
        let alerts = self.alerts.clone();
        Box::pin(async move {
            let mut all = Vec::new();
            let mut answers = Vec::with_capacity(requests.len());
            for (updates, tx) in requests {
                answers.push((updates.iter().map(|u| u.id).collect::<Vec<_>>(), tx));
                all.extend(updates);
            }
            let total = all.len() as u64;
            let reported: Vec<_> = all.iter().map(|u| (u.id, u.state)).collect();
            let failed_codes: HashMap<_, _> = all
                .iter()
                .filter(|u| u.state.delivered() == Some(false))
                .map(|u| (u.id, u.error_code.clone()))
                .collect();
            let mut res: Result<DeliveryApplied, StoreError> = store.apply_delivery(all).await;
            crate::failpoint::hit("intake.applied");
            // Counted once applied: a resent report changes (and counts)
            // nothing, even when the outbox write below fails.
            if let Ok(r) = &res {
                count_final_states(r, &metrics, &count_runs);
                let items: Vec<_> = r
                    .changed
                    .iter()
                    .filter(|c| c.state.delivered() == Some(false))
                    .map(|c| (c.id, c.state, failed_codes.get(&c.id).cloned().flatten()))
                    .collect();
                if !items.is_empty() {
                    alerts.emit(crate::messages::AlertEvent::ReportsFailed { items });
                }
            }
            if let (Some(w), Ok(applied)) = (&webhooks, &res) {
                let unknown: HashSet<_> = applied.unknown.iter().copied().collect();
                match write_outbox(w, &store, &reported, &unknown).await {
                    Ok(n) => metrics.webhook_enqueued.inc_by(n),
                    Err(e) => {
                        // Not answered 200: the provider resends, and the
                        // entries are written then.
                        tracing::error!(error = %e, reports = total, "customer webhook outbox not written");
                        res = Err(e);
                    }
                }
            }
            match &res {
                Ok(r) => {
                    metrics.reports_applied.inc_by(r.applied);
                    metrics.reports_unknown.inc_by(r.unknown.len() as u64);
                    metrics.reports_resolved.inc_by(r.resolved.len() as u64);
                    if !r.resolved.is_empty() {
                        tracing::info!(
                            count = r.resolved.len(),
                            "in-doubt messages resolved as sent by their delivery reports"
                        );
                    }
                    if !r.unknown.is_empty() {
                        tracing::warn!(
                            count = r.unknown.len(),
                            of = total,
                            "delivery reports for unknown messages"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, reports = total, "delivery reports not written")
                }
            }
            let res = res.map(|r| {
                r.unknown
                    .into_iter()
                    .collect::<std::collections::HashSet<_>>()
            });
            for (ids, tx) in answers {
                let result = match &res {
                    Ok(unknown) => Ok(IntakeResult {
                        unknown: ids.iter().filter(|id| unknown.contains(id)).count() as u64,
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = tx.send(result);
            }
        })
    }
}

/// Delivered and undelivered messages: in the metrics, and by run.
fn count_final_states(r: &DeliveryApplied, metrics: &Metrics, count_runs: &Recipient<CountRuns>) {
    let mut runs: HashMap<ScheduleRunId, RunCounts> = HashMap::new();
    for c in &r.changed {
        let delivered = match c.state.delivered() {
            Some(d) if c.state.is_final() => d,
            _ => continue,
        };
        if delivered {
            metrics.delivered.inc();
        } else {
            metrics.undelivered.inc();
        }
        if let Some(run) = c.run {
            let e = runs.entry(run).or_default();
            if delivered {
                e.delivered += 1;
            } else {
                e.undelivered += 1;
            }
        }
    }
    if !runs.is_empty() {
        count_runs.do_send(CountRuns(runs.into_iter().collect()));
    }
}

impl Actor for DeliveryIntake {
    type Context = Context<Self>;
}

impl Handler<ApplyReports> for DeliveryIntake {
    type Result = ResponseFuture<Result<IntakeResult, StoreError>>;

    fn handle(&mut self, msg: ApplyReports, ctx: &mut Self::Context) -> Self::Result {
        self.metrics.reports_received.inc_by(msg.0.len() as u64);
        if msg.0.is_empty() {
            return Box::pin(async { Ok(IntakeResult::default()) });
        }
        let rx = self.writes.push(msg.0);
        flush(self, ctx);
        Box::pin(answer(rx, "delivery intake"))
    }
}
