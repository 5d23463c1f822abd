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
//! Restart: nothing is lost; an unanswered request fails its HTTP request
//! (503), and the provider sends the report again.

use super::coalesce::{Coalescer, CoalescingWriter, Requests, answer, flush};
use crate::domain::{RunCounts, ScheduleRunId};
use crate::messages::{ApplyReports, CountRuns, IntakeResult};
use crate::metrics::Metrics;
use crate::store::{DeliveryApplied, DeliveryUpdate, SentStore, StoreError};
use actix::prelude::*;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;

pub struct DeliveryIntake {
    store: Arc<dyn SentStore>,
    /// Reports received, applied, unknown and resolved are counted here.
    metrics: Arc<Metrics>,
    /// Requests waiting for the write in flight, within a byte budget.
    writes: Coalescer<DeliveryUpdate, IntakeResult>,
    /// Campaign run counters: delivered and undelivered messages.
    count_runs: Recipient<CountRuns>,
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
            metrics,
            writes: Coalescer::with_budget(max_batch, max_pending_bytes),
            count_runs,
        }
    }
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
        Box::pin(async move {
            let mut all = Vec::new();
            let mut answers = Vec::with_capacity(requests.len());
            for (updates, tx) in requests {
                answers.push((updates.iter().map(|u| u.id).collect::<Vec<_>>(), tx));
                all.extend(updates);
            }
            let total = all.len() as u64;
            let res: Result<DeliveryApplied, StoreError> = store.apply_delivery(all).await;
            crate::failpoint::hit("intake.applied");
            match &res {
                Ok(r) => {
                    metrics.reports_applied.inc_by(r.applied);
                    metrics.reports_unknown.inc_by(r.unknown.len() as u64);
                    metrics.reports_resolved.inc_by(r.resolved.len() as u64);
                    count_final_states(r, &metrics, &count_runs);
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
