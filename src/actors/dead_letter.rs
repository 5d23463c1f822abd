//! # DeadLetter
//!
//! Owns: every write to the `FailedMessage` collection.
//!
//! Handles: [`RecordFailures`]. Requests that arrive while a write is in
//! flight are gathered and written together in the next insert, so a burst
//! of failures from many workers becomes a few inserts. Each request is
//! answered only once its records are durable: a worker deletes a queued
//! message only after that answer (guarantee 2).
//!
//! Restart: nothing is lost; an unanswered request fails its sender, who
//! leaves the message claimed for recovery.

use crate::domain::FailedMessage;
use crate::messages::RecordFailures;
use crate::metrics::Metrics;
use crate::store::{DeadLetterStore, StoreError};
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

type Waiter = (Vec<FailedMessage>, oneshot::Sender<Result<u64, StoreError>>);

pub struct DeadLetter {
    store: Arc<dyn DeadLetterStore>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    pending: Vec<Waiter>,
    flushing: bool,
}

impl DeadLetter {
    pub fn new(store: Arc<dyn DeadLetterStore>, metrics: Arc<Metrics>, max_batch: usize) -> Self {
        DeadLetter {
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
        let waiters = std::mem::take(&mut self.pending);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let max_batch = self.max_batch;
        let fut = async move {
            let mut all = Vec::new();
            let mut senders = Vec::new();
            for (records, tx) in waiters {
                senders.push((records.len(), tx));
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
            tracing::info!(count = all.len(), by_reason = ?by_reason, "dead letters recorded");
            let reasons: Vec<_> = all.iter().map(|f| f.reason).collect();
            let mut result: Result<u64, StoreError> = Ok(0);
            let mut rest = all;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(max_batch));
                let chunk = std::mem::replace(&mut rest, tail);
                match store.record(chunk).await {
                    Ok(n) => {
                        if let Ok(total) = result.as_mut() {
                            *total += n;
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if result.is_ok() {
                for r in reasons {
                    metrics.add_failed(r, 1);
                }
            }
            // New-record counts are per insert, not per request: each waiter
            // learns whether its records are durable, and its own count.
            for (n, tx) in senders {
                let _ = tx.send(result.clone().map(|_| n as u64));
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.flushing = false;
            act.flush(ctx);
        }));
    }
}

impl Actor for DeadLetter {
    type Context = Context<Self>;
}

impl Handler<RecordFailures> for DeadLetter {
    type Result = ResponseFuture<Result<u64, StoreError>>;

    fn handle(&mut self, msg: RecordFailures, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if msg.0.is_empty() {
            return Box::pin(async { Ok(0) });
        }
        self.pending.push((msg.0, tx));
        self.flush(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Other("dead-letter writer stopped".into())))
        })
    }
}
