//! # DeadLetter
//!
//! Owns: the dead letters of messages that never reached the attempt stage
//! (STALE, BLOCKED_CONTENT, CONTACT_BLOCKED, RATE_LIMIT_TIMEOUT,
//! BILLING_BLOCKED, LIST_DELETED): nothing was charged for them. A failure
//! after an attempt is written by Billing, in one transaction with its
//! outcome and refund.
//!
//! Handles: [`RecordFailures`]. Requests that arrive while a write is in
//! flight are gathered and written together in the next insert, so a burst
//! of failures from many workers becomes a few inserts. Each request is
//! answered only once its records are durable: a worker deletes a queued
//! message only after that answer (guarantee 2).
//!
//! Restart: nothing is lost; an unanswered request fails its sender, who
//! leaves the message claimed for recovery.

use super::coalesce::{Coalescer, CoalescingWriter, Requests, answer, flush};
use crate::domain::FailedMessage;
use crate::messages::RecordFailures;
use crate::metrics::Metrics;
use crate::store::{DeadLetterStore, StoreError};
use actix::prelude::*;
use futures::future::BoxFuture;
use std::sync::Arc;

pub struct DeadLetter {
    store: Arc<dyn DeadLetterStore>,
    /// Failures by reason are counted once they are durable.
    metrics: Arc<Metrics>,
    /// Most dead letters in one insert (a coalesced write is split).
    max_batch: usize,
    /// Requests waiting for the write in flight.
    writes: Coalescer<FailedMessage, u64>,
    /// Discord alerts: failures by list, once durable (never waits).
    alerts: crate::messages::AlertSink,
}

impl DeadLetter {
    pub fn new(store: Arc<dyn DeadLetterStore>, metrics: Arc<Metrics>, max_batch: usize) -> Self {
        DeadLetter {
            store,
            metrics,
            max_batch: max_batch.max(1),
            writes: Coalescer::new(max_batch),
            alerts: Default::default(),
        }
    }

    /// Also report durable failures to the Alerts actor.
    pub fn with_alerts(mut self, alerts: crate::messages::AlertSink) -> Self {
        self.alerts = alerts;
        self
    }
}

impl CoalescingWriter for DeadLetter {
    type Item = FailedMessage;
    type Answer = u64;

    fn coalescer(&mut self) -> &mut Coalescer<FailedMessage, u64> {
        &mut self.writes
    }

    fn write(&self, requests: Requests<FailedMessage, u64>) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let max_batch = self.max_batch;
        let alerts = self.alerts.clone();
        Box::pin(async move {
            let mut all = Vec::new();
            let mut answers = Vec::new();
            for (records, tx) in requests {
                answers.push((records.len() as u64, tx));
                all.extend(records);
            }
            let mut by_reason: std::collections::BTreeMap<&'static str, u64> = Default::default();
            for f in &all {
                *by_reason.entry(f.reason.as_str()).or_insert(0) += 1;
                tracing::debug!(
                    message_id = %f.id, list = %f.sending_list, reason = %f.reason,
                    provider_code = f.provider_code.as_deref().unwrap_or(""),
                    "dead-lettered"
                );
            }
            let reasons: Vec<_> = all.iter().map(|f| f.reason).collect();
            let mut by_list: std::collections::BTreeMap<_, Vec<crate::messages::FailureItem>> =
                Default::default();
            for f in &all {
                by_list
                    .entry((f.account, f.sending_list))
                    .or_default()
                    .push(crate::messages::FailureItem {
                        reason: f.reason,
                        provider_code: f.provider_code.clone(),
                    });
            }
            let mut result: Result<(), StoreError> = Ok(());
            for chunk in all.chunks(max_batch) {
                if let Err(e) = store.record(chunk.to_vec()).await {
                    result = Err(e);
                    break;
                }
            }
            match &result {
                Ok(()) => {
                    tracing::info!(count = reasons.len(), by_reason = ?by_reason, "dead letters recorded");
                    for r in reasons {
                        metrics.add_failed(r, 1);
                    }
                    for ((account, list), failures) in by_list {
                        alerts.emit(crate::messages::AlertEvent::Outcomes {
                            account,
                            list,
                            sent: 0,
                            transient: 0,
                            failures,
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, count = reasons.len(), "dead letters not written")
                }
            }
            for (n, tx) in answers {
                let _ = tx.send(result.clone().map(|()| n));
            }
        })
    }
}

impl Actor for DeadLetter {
    type Context = Context<Self>;
}

impl Handler<RecordFailures> for DeadLetter {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    fn handle(&mut self, msg: RecordFailures, ctx: &mut Self::Context) -> Self::Result {
        if msg.0.is_empty() {
            return Box::pin(async { Ok(0) });
        }
        let rx = self.writes.push(msg.0);
        flush(self, ctx);
        Box::pin(answer(rx, "dead-letter writer"))
    }
}
