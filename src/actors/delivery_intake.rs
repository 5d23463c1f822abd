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
//! Restart: nothing is lost; an unanswered request fails its HTTP request
//! (503), and the provider sends the report again.

use crate::metrics::Metrics;
use crate::store::{DeliveryApplied, DeliveryUpdate, SentStore, StoreError};
use actix::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// Webhook handler → DeliveryIntake: apply these reports.
#[derive(Message, Debug)]
#[rtype(result = "Result<IntakeResult, StoreError>")]
pub struct ApplyReports(pub Vec<DeliveryUpdate>);

/// What became of one request's reports (all durable, or an error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeResult {
    /// Reports for messages with no `MessageSent` record.
    pub unknown: u64,
}

type Waiter = (
    Vec<DeliveryUpdate>,
    oneshot::Sender<Result<IntakeResult, StoreError>>,
);

pub struct DeliveryIntake {
    store: Arc<dyn SentStore>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    pending: Vec<Waiter>,
    flushing: bool,
}

impl DeliveryIntake {
    pub fn new(store: Arc<dyn SentStore>, metrics: Arc<Metrics>, max_batch: usize) -> Self {
        DeliveryIntake {
            store,
            metrics,
            max_batch: max_batch.max(1),
            pending: Vec::new(),
            flushing: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        self.flushing = true;
        // Take whole requests up to about `max_batch` reports.
        let mut take = 0;
        let mut n = 0;
        for (u, _) in &self.pending {
            if take > 0 && n + u.len() > self.max_batch {
                break;
            }
            n += u.len();
            take += 1;
        }
        let waiters: Vec<Waiter> = self.pending.drain(..take).collect();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let fut = async move {
            let mut all = Vec::with_capacity(n);
            let mut senders = Vec::with_capacity(waiters.len());
            for (updates, tx) in waiters {
                senders.push((updates.iter().map(|u| u.id).collect::<Vec<_>>(), tx));
                all.extend(updates);
            }
            let total = all.len() as u64;
            let res: Result<DeliveryApplied, StoreError> = store.apply_delivery(all).await;
            match &res {
                Ok(r) => {
                    metrics
                        .reports_applied
                        .fetch_add(r.applied, Ordering::Relaxed);
                    metrics
                        .reports_unknown
                        .fetch_add(r.unknown.len() as u64, Ordering::Relaxed);
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
            for (ids, tx) in senders {
                let answer = res.clone().map(|r| {
                    let unknown = ids.iter().filter(|id| r.unknown.contains(id)).count() as u64;
                    IntakeResult { unknown }
                });
                let _ = tx.send(answer);
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.flushing = false;
            act.flush(ctx);
        }));
    }
}

impl Actor for DeliveryIntake {
    type Context = Context<Self>;
}

impl Handler<ApplyReports> for DeliveryIntake {
    type Result = ResponseFuture<Result<IntakeResult, StoreError>>;

    fn handle(&mut self, msg: ApplyReports, ctx: &mut Self::Context) -> Self::Result {
        self.metrics
            .reports_received
            .fetch_add(msg.0.len() as u64, Ordering::Relaxed);
        if msg.0.is_empty() {
            return Box::pin(async { Ok(IntakeResult::default()) });
        }
        let (tx, rx) = oneshot::channel();
        self.pending.push((msg.0, tx));
        self.flush(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Other("delivery intake stopped".into())))
        })
    }
}
