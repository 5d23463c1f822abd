//! # ClickIntake
//!
//! One per daemon. Owns: the writing of link clicks (`link_clicks`, and the
//! variant statistics Thompson sampling reads).
//!
//! Handles: [`RecordClicks`] from the link redirect, which has already
//! answered its 302: a click never slows a redirect. Clicks that arrive
//! while a write is in flight are written together in the next one. What
//! waits is bounded (`links.max_pending_clicks`); past it, and when a write
//! fails, the clicks are counted in `link_clicks_dropped_total` and logged,
//! never retried: a lost click costs a statistic, a slow redirect costs the
//! recipient.
//!
//! Restart: clicks still waiting in memory are lost with the process; the
//! store holds every click written.

use super::coalesce::{Coalescer, CoalescingWriter, Requests, answer, flush};
use crate::domain::LinkClick;
use crate::messages::RecordClicks;
use crate::metrics::Metrics;
use crate::store::{LinkStore, StoreError};
use actix::prelude::*;
use futures::future::BoxFuture;
use std::sync::Arc;

pub struct ClickIntake {
    store: Arc<dyn LinkStore>,
    metrics: Arc<Metrics>,
    writes: Coalescer<LinkClick, ()>,
}

impl ClickIntake {
    pub fn new(
        store: Arc<dyn LinkStore>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        max_pending: usize,
    ) -> Self {
        let bytes = max_pending.saturating_mul(std::mem::size_of::<LinkClick>());
        ClickIntake {
            store,
            metrics,
            writes: Coalescer::with_budget(max_batch, bytes),
        }
    }
}

impl CoalescingWriter for ClickIntake {
    type Item = LinkClick;
    type Answer = ();

    fn coalescer(&mut self) -> &mut Coalescer<LinkClick, ()> {
        &mut self.writes
    }

    fn write(&self, requests: Requests<LinkClick, ()>) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            for (clicks, tx) in requests {
                let mut result = Ok(());
                for click in clicks {
                    let bot = click.is_bot;
                    match store.record_click(click).await {
                        Ok(()) => {
                            metrics.clicks_recorded.inc();
                            if bot {
                                metrics.clicks_bot.inc();
                            }
                        }
                        Err(e) => {
                            metrics.clicks_dropped.inc();
                            tracing::warn!(error = %e, "a link click was not recorded");
                            result = Err(e);
                        }
                    }
                }
                let _ = tx.send(result);
            }
        })
    }
}

impl Actor for ClickIntake {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The redirect hands clicks over with `try_send`: a mailbox of its
        // own size, so a burst waits here rather than being refused.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<RecordClicks> for ClickIntake {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: RecordClicks, ctx: &mut Self::Context) -> Self::Result {
        if msg.0.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let n = msg.0.len() as u64;
        let rx = self.writes.push(msg.0);
        flush(self, ctx);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let res = answer(rx, "click intake").await;
            if let Err(StoreError::Overloaded(_)) = &res {
                metrics.clicks_dropped.inc_by(n);
            }
            res
        })
    }
}
