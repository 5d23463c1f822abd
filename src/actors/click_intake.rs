//! # ClickIntake
//!
//! One per daemon. Owns: the writing of link clicks (`link_clicks`, and the
//! variant statistics Thompson sampling reads).
//!
//! Handles: [`RecordClicks`] from the link redirect, which has already
//! answered its 302: a click never slows a redirect. Before writing, it
//! reads the messages' attempt records and flags as a bot every click
//! within two seconds of the message's acceptance or delivery report (a
//! preview fetched as the message arrives; `rules::links::is_preview_timing`);
//! the user agent rule was applied by the redirect. Clicks that arrive
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
use crate::store::{LinkStore, SentStore, StoreError};
use actix::prelude::*;
use futures::future::BoxFuture;
use std::sync::Arc;

pub struct ClickIntake {
    store: Arc<dyn LinkStore>,
    sent: Arc<dyn SentStore>,
    metrics: Arc<Metrics>,
    writes: Coalescer<LinkClick, ()>,
}

impl ClickIntake {
    pub fn new(
        store: Arc<dyn LinkStore>,
        sent: Arc<dyn SentStore>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        max_pending: usize,
    ) -> Self {
        let bytes = max_pending.saturating_mul(std::mem::size_of::<LinkClick>());
        ClickIntake {
            store,
            sent,
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
        let sent = self.sent.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            // When each message was taken and delivered (one read for all).
            let ids: Vec<crate::domain::MessageId> = requests
                .iter()
                .flat_map(|(clicks, _)| clicks.iter())
                .filter(|c| !c.is_bot)
                .filter_map(|c| c.message)
                .collect();
            let times: std::collections::HashMap<_, _> = if ids.is_empty() {
                Default::default()
            } else {
                match sent.get_many(&ids).await {
                    Ok(records) => records
                        .into_iter()
                        .map(|r| (r.id, (r.submitted_at, r.delivery_updated_at)))
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read delivery times; clicks judged by user agent only");
                        Default::default()
                    }
                }
            };
            for (mut clicks, tx) in requests {
                for c in clicks.iter_mut() {
                    if let Some((submitted, delivered)) = c.message.and_then(|m| times.get(&m)) {
                        c.is_bot |= crate::rules::links::is_preview_timing(
                            c.clicked_at,
                            *submitted,
                            *delivered,
                        );
                    }
                }
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
