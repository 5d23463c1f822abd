//! # RunStats
//!
//! One per daemon. Owns: the counters of campaign runs after queuing (sent,
//! failed by reason, delivered, undelivered) that the admin API's run stats
//! and the four campaign metrics are computed from, so no request scans the
//! attempt records.
//!
//! Handles: [`CountRuns`] from Workers (after a batch's outcomes and dead
//! letters are durable) and from DeliveryIntake (after reports are durable):
//! added up in memory, never waiting for the store. Every
//! `scheduler.stats_flush_interval` the sums are written, one update per run
//! (`$inc`, and the earliest and latest send time). A failed write keeps the
//! sums and tries again at the next interval. [`FlushRunCounts`] (shutdown)
//! writes at once. Clicks are counted by the store itself, with the first
//! human click of a message.
//!
//! Restart: counts not yet written are lost with the process (at most one
//! interval's worth): these are statistics, not guarantees. The attempt
//! records and dead letters stay the truth (`trackly audit`).

use crate::domain::{RunCounts, ScheduleRunId};
use crate::messages::{CountRuns, FlushRunCounts};
use crate::store::ScheduleStore;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct RunStats {
    store: Arc<dyn ScheduleStore>,
    interval: Duration,
    pending: HashMap<ScheduleRunId, RunCounts>,
    /// A write is in flight (the next waits for it).
    writing: bool,
}

impl RunStats {
    pub fn new(store: Arc<dyn ScheduleStore>, interval: Duration) -> Self {
        RunStats {
            store,
            interval,
            pending: HashMap::new(),
            writing: false,
        }
    }

    fn add(&mut self, counts: Vec<(ScheduleRunId, RunCounts)>) {
        for (run, c) in counts {
            self.pending.entry(run).or_default().merge(&c);
        }
    }

    /// Writes what is pending; on failure puts it back.
    fn write(&mut self) -> Option<ResponseActFuture<Self, ()>> {
        if self.writing || self.pending.is_empty() {
            return None;
        }
        self.writing = true;
        let batch: Vec<(ScheduleRunId, RunCounts)> = self.pending.drain().collect();
        let store = self.store.clone();
        let keep = batch.clone();
        Some(Box::pin(
            async move { store.add_run_counts(batch).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    act.writing = false;
                    if let Err(e) = res {
                        tracing::warn!(error = %e, runs = keep.len(),
                            "run counters not written; trying again at the next interval");
                        act.add(keep);
                    }
                }),
        ))
    }
}

impl Actor for RunStats {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| {
            if let Some(f) = act.write() {
                ctx.spawn(f);
            }
        });
    }
}

impl Handler<CountRuns> for RunStats {
    type Result = ();

    fn handle(&mut self, msg: CountRuns, _: &mut Self::Context) {
        self.add(msg.0);
    }
}

impl Handler<FlushRunCounts> for RunStats {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: FlushRunCounts, _: &mut Self::Context) -> Self::Result {
        match self.write() {
            Some(f) => f,
            None => Box::pin(actix::fut::ready(())),
        }
    }
}
