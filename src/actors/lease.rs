//! # Lease
//!
//! One per daemon. Owns: this instance's lease in the store.
//!
//! Every `daemon.heartbeat_interval` it renews the lease (the store stamps
//! `heartbeat_at` with its own clock) and, on success, opens the instance's
//! window for claiming and starting provider calls for `daemon.lease_ttl`
//! minus the longest provider timeout, counted from when the renewal was
//! sent. If renewals keep failing the window closes by itself: the daemon
//! stops claiming and sending (it fences itself), and once the lease lapses
//! on the database's clock, another daemon's Recovery takes over its claims
//! and judges its unanswered attempts. A live daemon's claims are never
//! taken from it, however slow the store.
//!
//! Each renewal also measures the database clock's offset from ours (for
//! the hard horizon) and reports the lists this daemon serves and the
//! providers it can send through.
//!
//! Handles: [`StopLease`] on shutdown. Restart: the next renewal recreates
//! the lease document.

use crate::clock::SharedClock;
use crate::domain::{LeaseRenewal, SendingListId};
use crate::instance::Instance;
use crate::messages::StopLease;
use crate::store::LeaseStore;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Lease {
    instance: Arc<Instance>,
    store: Arc<dyn LeaseStore>,
    clock: SharedClock,
    interval: Duration,
    ttl: Duration,
    /// How long after a renewal was sent provider calls may still start
    /// (`lease_ttl` minus the longest provider timeout).
    window: Duration,
    providers: Vec<String>,
    started_at: crate::domain::Timestamp,
    /// A renewal is in flight: do not stack another.
    renewing: bool,
    /// Consecutive failed renewals (log the first and every 10th).
    failures: u32,
    /// The window was open at the last check (to log losing and regaining it).
    was_valid: bool,
    /// The instance's sent counts at the previous renewal, and when (the
    /// per-list rate the lease reports).
    last_counts: (Instant, HashMap<SendingListId, u64>),
}

impl Lease {
    pub fn new(
        instance: Arc<Instance>,
        store: Arc<dyn LeaseStore>,
        clock: SharedClock,
        interval: Duration,
        ttl: Duration,
        longest_send: Duration,
        providers: Vec<String>,
    ) -> Self {
        let started_at = clock.now();
        if ttl <= longest_send {
            tracing::error!(lease_ttl = ?ttl, longest_send = ?longest_send,
                "daemon.lease_ttl is not longer than the longest provider timeout: this daemon can never claim or send (check-config rejects this)");
        }
        Lease {
            instance,
            store,
            clock,
            interval,
            ttl,
            window: ttl.saturating_sub(longest_send),
            providers,
            started_at,
            renewing: false,
            failures: 0,
            was_valid: false,
            last_counts: (Instant::now(), HashMap::new()),
        }
    }

    /// Messages sent per list per minute since the previous renewal (lists
    /// that sent nothing are left out).
    fn rates(&mut self) -> BTreeMap<String, u64> {
        let now = Instant::now();
        let counts = self.instance.sent_counts();
        let (then, before) = std::mem::replace(&mut self.last_counts, (now, counts.clone()));
        let secs = now.duration_since(then).as_secs_f64().max(0.001);
        counts
            .into_iter()
            .filter_map(|(list, n)| {
                let d = n.saturating_sub(before.get(&list).copied().unwrap_or(0));
                (d > 0).then(|| (list.to_hex(), (d as f64 * 60.0 / secs).round() as u64))
            })
            .collect()
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        let valid = self.instance.lease_valid();
        if self.was_valid && !valid {
            tracing::error!(instance = %self.instance.id, "lease not renewed in time: this daemon stops claiming and sending until it is");
        }
        self.was_valid = valid;
        if self.renewing || self.instance.is_shutting_down() {
            return;
        }
        self.renewing = true;
        let renewal = LeaseRenewal {
            instance: self.instance.id.clone(),
            daemon_id: self.instance.daemon_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            ttl_ms: self.ttl.as_millis() as i64,
            providers: self.providers.clone(),
            lists: self.instance.lists(),
            sent_per_minute: self.rates(),
        };
        let store = self.store.clone();
        let clock = self.clock.clone();
        let sent = Instant::now();
        let local_sent = clock.now();
        let fut = async move {
            let r = store.renew_lease(&renewal).await;
            (r, clock.now())
        };
        ctx.spawn(fut.into_actor(self).map(move |(res, local_back), act, _| {
            act.renewing = false;
            match res {
                Ok(db_time) => {
                    crate::failpoint::hit("lease.renewed");
                    act.instance.renewed(sent, act.window);
                    act.instance.set_server_clock(db_time, Instant::now());
                    // The server stamped between our send and its answer.
                    let midpoint = local_sent + (local_back - local_sent) / 2;
                    act.instance.set_db_offset(db_time - midpoint);
                    if act.failures > 0 {
                        tracing::info!(instance = %act.instance.id, "lease renewed again");
                    }
                    if !act.was_valid {
                        tracing::info!(instance = %act.instance.id, "lease held");
                        act.was_valid = true;
                    }
                    act.failures = 0;
                }
                Err(e) => {
                    if act.failures % 10 == 0 {
                        tracing::warn!(instance = %act.instance.id, error = %e, failures = act.failures + 1, "lease renewal failed");
                    }
                    act.failures += 1;
                }
            }
        }));
    }
}

impl Actor for Lease {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.renew(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.renew(ctx));
    }
}

impl Handler<StopLease> for Lease {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopLease, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let id = self.instance.id.clone();
        Box::pin(async move {
            if let Err(e) = store.stop_lease(&id).await {
                tracing::warn!(error = %e, "could not mark the lease stopped; it will lapse by itself");
            }
        })
    }
}
