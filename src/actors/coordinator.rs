//! # Coordinator
//!
//! One per daemon. Owns: the only way messages leave the queue (claims, with
//! a token unique to this daemon and this batch), the map of running list
//! supervisors, and the recovery sweep.
//!
//! Handles:
//! - a poll every `coordinator.poll_interval`, and at once on [`Nudge`] or
//!   [`PollNow`]: which lists have ready, due messages → start their
//!   supervisor if needed and tell it [`WorkAvailable`];
//! - [`RequestWork`] from a supervisor: claim up to `max` messages of its
//!   list (the supervisor sized the request to its rate budget and its idle
//!   workers: demand-driven, nothing is pushed unasked);
//! - the sweep every `coordinator.sweep_interval` (or [`SweepNow`]): release
//!   claims older than `coordinator.stale_claim_after` for any daemon to take;
//!   record NO_RESPONSE for attempts still unanswered after the in-doubt
//!   window (their daemon died mid-send) and remove them from the queue —
//!   never sending them again (guarantee 1);
//! - [`ListControl`] (operators), [`ActiveLists`] (which lists have a
//!   running supervisor), [`Shutdown`] (SIGTERM), [`SupervisorStopped`].
//!
//! Restart: all its state is derived (supervisors are restarted on the next
//! poll); claims and attempts live in the store.

use crate::actors::supervisor::{ListSupervisor, SupervisorDeps};
use crate::clock::chrono_dur;
use crate::domain::*;
use crate::messages::*;
use crate::store::{SendOutcome, StoreError};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Builds the supervisors' dependencies once the Coordinator's own address
/// exists (supervisors send their requests to it).
pub type SupervisorDepsFactory = Box<dyn FnOnce(Addr<Coordinator>) -> SupervisorDeps>;

pub struct Coordinator {
    daemon_id: String,
    deps_factory: Option<SupervisorDepsFactory>,
    deps: Option<Arc<SupervisorDeps>>,
    supervisors: HashMap<SendingListId, Addr<ListSupervisor>>,
    batch_seq: u64,
    polling: bool,
    poll_again: bool,
    sweeping: bool,
    poll_failures: u32,
    /// Lists being served continuously: a claim is in flight, or the last
    /// one came back full (the supervisor asks again as soon as a worker is
    /// free). Polling finds nothing new for them.
    claiming: HashMap<SendingListId, u32>,
    full: std::collections::HashSet<SendingListId>,
    /// Current gap between timed polls (grows while every due list is busy).
    poll_gap: Duration,
    last_poll: Instant,
}

impl Coordinator {
    pub fn new(daemon_id: String, deps_factory: SupervisorDepsFactory) -> Self {
        Coordinator {
            daemon_id,
            deps_factory: Some(deps_factory),
            deps: None,
            supervisors: HashMap::new(),
            batch_seq: 0,
            polling: false,
            poll_again: false,
            sweeping: false,
            poll_failures: 0,
            claiming: HashMap::new(),
            full: Default::default(),
            poll_gap: Duration::ZERO,
            last_poll: Instant::now(),
        }
    }

    fn deps(&self) -> Option<&Arc<SupervisorDeps>> {
        self.deps.as_ref()
    }

    fn shutting_down(&self) -> bool {
        self.deps()
            .is_none_or(|d| d.worker.shutting_down.load(Ordering::Relaxed))
    }

    fn supervisor(&mut self, list: SendingListId) -> Option<Addr<ListSupervisor>> {
        if let Some(addr) = self.supervisors.get(&list)
            && addr.connected()
        {
            return Some(addr.clone());
        }
        let deps = self.deps()?.clone();
        let addr = ListSupervisor::new(list, deps).start();
        self.supervisors.insert(list, addr.clone());
        Some(addr)
    }

    /// A timed poll: skipped while the backoff says so.
    fn timed_poll(&mut self, ctx: &mut Context<Self>) {
        if self.last_poll.elapsed() >= self.poll_gap {
            self.poll(ctx);
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down() {
            return;
        }
        if self.polling {
            self.poll_again = true;
            return;
        }
        let Some(deps) = self.deps().cloned() else {
            return;
        };
        self.polling = true;
        self.last_poll = Instant::now();
        let now = deps.worker.clock.now();
        let max_lists = deps.worker.config.coordinator.max_lists;
        let queue = deps.worker.stores.queue.clone();
        let fut = async move { queue.due_lists(now, max_lists).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.polling = false;
            match res {
                Ok(lists) => {
                    if act.poll_failures > 0 {
                        tracing::info!("queue reachable again");
                    }
                    act.poll_failures = 0;
                    let (base, max) = act.deps().map_or((Duration::from_millis(500), Duration::from_secs(4)), |d| {
                        let c = &d.worker.config.coordinator;
                        (c.poll_interval.get(), c.max_poll_interval.get())
                    });
                    // A poll only helps with lists nobody is serving yet.
                    // While polls find none (nothing due, or every due list
                    // is being claimed from continuously), back off; the
                    // first poll that finds one, or a nudge, resets the gap.
                    let nothing_new = lists.iter().all(|l| act.full.contains(l) || act.claiming.contains_key(l));
                    act.poll_gap = if nothing_new {
                        (act.poll_gap * 2).clamp(base, max)
                    } else {
                        Duration::ZERO
                    };
                    tracing::trace!(lists = lists.len(), next_gap = ?act.poll_gap, "polled");
                    for list in lists {
                        if let Some(sup) = act.supervisor(list) {
                            sup.do_send(WorkAvailable);
                        }
                    }
                }
                Err(e) => {
                    // Log the first failure and then every 20th, not every poll.
                    if act.poll_failures % 20 == 0 {
                        tracing::error!(error = %e, failures = act.poll_failures + 1, "polling the queue failed");
                    }
                    act.poll_failures += 1;
                }
            }
            if std::mem::take(&mut act.poll_again) {
                act.poll(ctx);
            }
        }));
    }

    fn sweep_future(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<SweepReport, StoreError>> + 'static> {
        let deps = self.deps()?.clone();
        Some(async move {
            let w = &deps.worker;
            let now = w.clock.now();
            let cfg = &w.config;
            let mut report = SweepReport {
                released_claims: w
                    .stores
                    .queue
                    .release_stale(now - chrono_dur(cfg.coordinator.stale_claim_after.get()))
                    .await?,
                ..Default::default()
            };
            if report.released_claims > 0 {
                tracing::warn!(released = report.released_claims, "released stale claims");
            }
            let window = cfg.no_response_window();
            let doubtful = w
                .stores
                .sent
                .in_doubt(now - chrono_dur(window), 1000)
                .await?;
            for attempt in doubtful {
                // Record the outcome first, guarded on `submitted = null`: if
                // the sender answered meanwhile, its outcome wins and nothing
                // is dead-lettered.
                let updated = w
                    .stores
                    .sent
                    .record_outcomes(vec![SendOutcome {
                        id: attempt.id,
                        submitted: false,
                        at: now,
                        provider_message_id: None,
                        error_code: Some("NO_RESPONSE".into()),
                        error_text: Some("no answer recorded within the in-doubt window".into()),
                    }])
                    .await?;
                if updated == 0 {
                    continue;
                }
                let original = match w.stores.queue.get(attempt.id).await? {
                    Some(q) => q,
                    None => original_from_attempt(&attempt),
                };
                let failure = FailedMessage {
                    id: attempt.id,
                    account: attempt.account,
                    sending_list: attempt.sending_list,
                    reason: FailureReason::NoResponse,
                    detail: format!(
                        "attempt by {} at {} was never answered (daemon stopped mid-send?); not resent",
                        attempt.attempt_token,
                        attempt.attempted_at.to_rfc3339()
                    ),
                    provider_code: None,
                    provider_text: None,
                    failed_at: now,
                    original,
                };
                w.dead_letter
                    .send(RecordFailures(vec![failure]))
                    .await
                    .map_err(|e| StoreError::Other(e.to_string()))??;
                w.stores.queue.remove(&[attempt.id]).await?;
                report.no_response += 1;
            }
            if report.no_response > 0 {
                tracing::warn!(
                    count = report.no_response,
                    "in-doubt sends recorded as NO_RESPONSE"
                );
            }
            Ok(report)
        })
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping || self.shutting_down() {
            return;
        }
        let Some(fut) = self.sweep_future() else {
            return;
        };
        self.sweeping = true;
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.sweeping = false;
            if let Err(e) = res {
                tracing::error!(error = %e, "recovery sweep failed");
            }
        }));
    }
}

/// A dead letter needs the original message; when the queue entry is gone,
/// rebuild what the attempt record knows (the body is not kept there).
fn original_from_attempt(a: &MessageSent) -> QueuedTextMessage {
    QueuedTextMessage {
        id: a.id,
        account: a.account,
        sending_list: a.sending_list,
        contact: a.contact,
        schedule: a.schedule,
        run: a.run,
        creative: a.creative,
        variant: a.variant.clone(),
        send_type: a.send_type,
        from: a.from.clone(),
        to: a.to.clone(),
        body: String::new(),
        segments: a.segments,
        send_at: a.attempted_at,
        not_before: a.attempted_at,
        claimed_by: None,
        claimed_at: None,
        claim_count: 0,
        attempts: 0,
        billing_blocked_since: None,
        last_error: None,
        queued_at: a.attempted_at,
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(factory) = self.deps_factory.take() {
            self.deps = Some(Arc::new(factory(ctx.address())));
        }
        let Some(deps) = self.deps().cloned() else {
            return;
        };
        let cfg = &deps.worker.config.coordinator;
        ctx.run_interval(cfg.poll_interval.get(), |act, ctx| act.timed_poll(ctx));
        ctx.run_interval(cfg.sweep_interval.get(), |act, ctx| act.sweep(ctx));
        tracing::info!(daemon = %self.daemon_id, "coordinator started");
        self.poll(ctx);
        self.sweep(ctx);
    }
}

impl Handler<RequestWork> for Coordinator {
    type Result = ResponseActFuture<Self, Result<ClaimedBatch, StoreError>>;

    fn handle(&mut self, msg: RequestWork, _: &mut Self::Context) -> Self::Result {
        let token = format!("{}:{}", self.daemon_id, self.batch_seq);
        self.batch_seq += 1;
        let deps = match (self.shutting_down(), self.deps()) {
            (false, Some(d)) => d.clone(),
            _ => {
                return Box::pin(actix::fut::ready(Ok(ClaimedBatch {
                    token,
                    messages: vec![],
                })));
            }
        };
        *self.claiming.entry(msg.list).or_insert(0) += 1;
        let fut = async move {
            let now = deps.worker.clock.now();
            let messages = deps
                .worker
                .stores
                .queue
                .claim(msg.list, msg.max, &token, now)
                .await?;
            if !messages.is_empty() {
                tracing::debug!(list = %msg.list, token = %token, count = messages.len(), "claimed");
            }
            Ok(ClaimedBatch { token, messages })
        };
        Box::pin(
            fut.into_actor(self)
                .map(move |res: Result<ClaimedBatch, StoreError>, act, _| {
                    if let Some(n) = act.claiming.get_mut(&msg.list) {
                        *n -= 1;
                        if *n == 0 {
                            act.claiming.remove(&msg.list);
                        }
                    }
                    match &res {
                        Ok(b) if b.messages.len() >= msg.max => {
                            act.full.insert(msg.list);
                        }
                        _ => {
                            act.full.remove(&msg.list);
                        }
                    }
                    res
                }),
        )
    }
}

impl Handler<Nudge> for Coordinator {
    type Result = ();
    fn handle(&mut self, _: Nudge, ctx: &mut Self::Context) {
        self.poll_gap = Duration::ZERO;
        self.poll(ctx);
    }
}

impl Handler<PollNow> for Coordinator {
    type Result = ();
    fn handle(&mut self, _: PollNow, ctx: &mut Self::Context) {
        self.poll(ctx);
    }
}

impl Handler<SweepNow> for Coordinator {
    type Result = ResponseFuture<SweepReport>;
    fn handle(&mut self, _: SweepNow, _: &mut Self::Context) -> Self::Result {
        let fut = self.sweep_future();
        Box::pin(async move {
            match fut {
                Some(f) => f.await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "recovery sweep failed");
                    SweepReport::default()
                }),
                None => SweepReport::default(),
            }
        })
    }
}

impl Handler<ActiveLists> for Coordinator {
    type Result = Vec<SendingListId>;
    fn handle(&mut self, _: ActiveLists, _: &mut Self::Context) -> Vec<SendingListId> {
        let mut v: Vec<SendingListId> = self
            .supervisors
            .iter()
            .filter(|(_, a)| a.connected())
            .map(|(l, _)| *l)
            .collect();
        v.sort();
        v
    }
}

impl Handler<SupervisorStopped> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: SupervisorStopped, _: &mut Self::Context) {
        if self
            .supervisors
            .get(&msg.list)
            .is_some_and(|a| !a.connected())
        {
            self.supervisors.remove(&msg.list);
        }
    }
}

impl Handler<ListControl> for Coordinator {
    type Result = ResponseActFuture<Self, Result<(), ControlError>>;

    fn handle(&mut self, msg: ListControl, _: &mut Self::Context) -> Self::Result {
        if self.shutting_down() {
            return Box::pin(actix::fut::ready(Err(ControlError::ShuttingDown)));
        }
        let lists = self.deps().map(|d| d.worker.stores.lists.clone());
        Box::pin(
            async move {
                match lists {
                    Some(l) => l
                        .get_list(msg.list)
                        .await
                        .map_err(|e| ControlError::Store(e.to_string())),
                    None => Err(ControlError::ShuttingDown),
                }
            }
            .into_actor(self)
            .then(move |res, act, _| {
                let sup = match res {
                    Ok(Some(_)) => act.supervisor(msg.list).ok_or(ControlError::ShuttingDown),
                    Ok(None) => Err(ControlError::UnknownList(msg.list)),
                    Err(e) => Err(e),
                };
                async move {
                    let sup = sup?;
                    sup.send(Control(msg.command))
                        .await
                        .map_err(|e| ControlError::Store(format!("supervisor unreachable: {e}")))
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<Shutdown> for Coordinator {
    type Result = ResponseFuture<ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        if let Some(d) = self.deps() {
            d.worker.shutting_down.store(true, Ordering::Relaxed);
        }
        tracing::info!(lists = self.supervisors.len(), grace = ?msg.grace, "shutting down: no new claims; finishing in-flight sends");
        let sups: Vec<Addr<ListSupervisor>> = self.supervisors.values().cloned().collect();
        Box::pin(async move {
            let stops = sups.iter().map(|s| s.send(Stop { grace: msg.grace }));
            let results = futures::future::join_all(stops).await;
            let mut report = ShutdownReport::default();
            for r in results {
                match r {
                    Ok(true) | Err(_) => report.drained += 1,
                    Ok(false) => report.timed_out += 1,
                }
            }
            report
        })
    }
}
