//! # ListSupervisor
//!
//! One per sending list with work on this daemon. Owns: the list as this
//! daemon serves it ([`ListContext`]: settings, provider adapter, blocked
//! words, and the live pause/rate its workers read), and its 6 workers.
//!
//! Handles:
//! - [`WorkAvailable`] (from the Coordinator's poll): ask for work for one
//!   idle worker at a time ([`RequestWork`], sized to the list's rate over
//!   `coordinator.claim_lookahead` minus what its workers already hold), as
//!   long as workers are free, the list is active and not paused, and the
//!   last claim found as many ready messages as it asked for;
//! - [`ReloadList`]: the stored settings changed (an operator's pause, resume
//!   or rate change on any daemon): read them now; the list is also re-read
//!   every `supervisor.list_refresh`. Paused (status, or a rate of 0):
//!   nothing is claimed, and running workers put the rest of their batch
//!   back before their next permit;
//! - [`Drain`], [`Stop`].
//!
//! A list that no longer exists (missing on two reads a refresh apart) has
//! its messages dead-lettered LIST_DELETED. A list whose provider this
//! daemon has no credentials for is left to a daemon that has them
//! (Recovery reports lists that no daemon can serve).
//!
//! When a worker's batch is given up (or the worker crashes) the supervisor
//! releases what its token still holds, retrying until the store answers,
//! and restarts a crashed worker in its slot.
//!
//! Stops itself after `coordinator.idle_supervisor_after` without work.

use crate::actors::worker::{Worker, WorkerDeps};
use crate::domain::*;
use crate::messages::*;
use crate::providers::ProviderRegistry;
use crate::store::{QueueStore, StoreError};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What a supervisor needs; shared by all supervisors of a daemon.
pub struct SupervisorDeps {
    pub worker: Arc<WorkerDeps>,
    pub providers: ProviderRegistry,
    pub request_work: Recipient<RequestWork>,
    pub stopped: Recipient<SupervisorStopped>,
    pub check_rate_limiter: Recipient<CheckRateLimiter>,
    /// Whether list changes arrive as events (then re-reads are rarer).
    pub bus: crate::bus::SharedBus,
}

struct Slot {
    addr: Addr<Worker>,
    /// Messages held while busy.
    busy: Option<usize>,
}

pub struct ListSupervisor {
    list_id: SendingListId,
    deps: Arc<SupervisorDeps>,
    /// How the list is served now; None until loaded, or while this daemon
    /// cannot serve it (no credentials for its provider).
    handle: Option<ListHandle>,
    /// Pause and rate as last read, shared with every `ListContext` built
    /// here, so running workers see a change at their next permit.
    live: Arc<ListLive>,
    slots: Vec<Slot>,
    /// Draining or stopping: claim nothing more.
    draining: bool,
    /// Stopping for good (shutdown): a resume does not undo it.
    stopping: bool,
    /// A `RequestWork` is in flight (one at a time).
    requesting: bool,
    /// The last claim found as many ready messages as it asked for (or a
    /// poll said there is work).
    has_more: bool,
    /// A read of the list is on its way.
    loading: bool,
    /// The rate limiter did not answer: claim nothing until it does.
    rate_limiter_down: bool,
    last_work: Instant,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// The missing provider was logged already (once per change).
    provider_error_logged: bool,
    /// When the list was first found missing (it is treated as deleted only
    /// when still missing a refresh later).
    missing_since: Option<Instant>,
    /// When the list was last read.
    last_load: Option<Instant>,
    /// Sent and failed since the last progress line (reset by each line).
    progress_sent: u64,
    progress_failed: u64,
    /// Anything happened since the last progress line (idle lists are quiet).
    progress_active: bool,
}

impl ListSupervisor {
    pub fn new(list_id: SendingListId, deps: Arc<SupervisorDeps>) -> Self {
        ListSupervisor {
            list_id,
            deps,
            handle: None,
            live: Arc::new(ListLive::default()),
            slots: Vec::new(),
            draining: false,
            stopping: false,
            requesting: false,
            has_more: true,
            loading: false,
            rate_limiter_down: false,
            last_work: Instant::now(),
            drain_waiters: Vec::new(),
            provider_error_logged: false,
            missing_since: None,
            last_load: None,
            progress_sent: 0,
            progress_failed: 0,
            progress_active: false,
        }
    }

    /// One INFO line on what the list did since the last one, with its
    /// queue depth counted now (also the `queue_depth` gauge).
    fn log_progress(&mut self, ctx: &mut Context<Self>) {
        if !std::mem::take(&mut self.progress_active) {
            return;
        }
        let sent = std::mem::take(&mut self.progress_sent);
        let failed = std::mem::take(&mut self.progress_failed);
        let (rate, paused) = match &self.handle {
            Some(ListHandle::Serve(c)) => (c.rate_per_minute(), c.live.paused()),
            _ => (0, false),
        };
        let queue = self.queue();
        let list = self.list_id;
        let metrics = self.deps.worker.metrics.clone();
        let every = self.config().log.progress_interval.get();
        ctx.spawn(
            async move {
                let queued = queue.list_depth(list).await;
                match queued {
                    Ok(n) => {
                        metrics.set_queue_depth(&list.to_hex(), n);
                        tracing::info!(list = %list, sent, failed, queued = n, rate_per_minute = rate, paused,
                            interval = %humantime::format_duration(every), "list progress");
                    }
                    Err(e) => {
                        tracing::info!(list = %list, sent, failed, rate_per_minute = rate, paused, queue_error = %e,
                            interval = %humantime::format_duration(every), "list progress");
                    }
                }
            }
            .into_actor(self),
        );
    }

    fn config(&self) -> &crate::config::Config {
        &self.deps.worker.config
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        self.deps.worker.stores.queue.clone()
    }

    fn in_flight(&self) -> usize {
        self.slots.iter().filter_map(|s| s.busy).sum()
    }

    fn busy_workers(&self) -> usize {
        self.slots.iter().filter(|s| s.busy.is_some()).count()
    }

    /// Load (or reload) the list's settings.
    /// A timed re-read of the list: every `list_refresh`, or every
    /// `bus_list_refresh` while the event bus is live.
    fn timed_load(&mut self, ctx: &mut Context<Self>) {
        let c = &self.config().supervisor;
        let every = if self.deps.bus.is_live() {
            c.bus_list_refresh.get().max(c.list_refresh.get())
        } else {
            c.list_refresh.get()
        };
        if self.last_load.is_none_or(|t| t.elapsed() >= every) {
            self.load(ctx);
        }
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        self.last_load = Some(Instant::now());
        self.loading = true;
        let lists = self.deps.worker.stores.lists.clone();
        let id = self.list_id;
        let fut = async move { lists.get_list(id).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.loading = false;
            act.loaded(res, ctx)
        }));
    }

    fn loaded(&mut self, res: Result<Option<SendingList>, StoreError>, ctx: &mut Context<Self>) {
        let act = self;
        match res {
            Ok(Some(list)) => {
                act.missing_since = None;
                match act.deps.providers.for_settings(&list.provider) {
                    Ok(provider) => {
                        let was_paused = act.live.paused();
                        let c = ListContext::new(list, provider, act.live.clone());
                        if was_paused && !act.live.paused() {
                            tracing::info!(list = %act.list_id, "list resumed");
                            act.has_more = true;
                        } else if !was_paused && act.live.paused() {
                            tracing::info!(list = %act.list_id, "list paused");
                        }
                        act.handle = Some(ListHandle::Serve(Arc::new(c)));
                        act.provider_error_logged = false;
                        act.dispatch(ctx);
                    }
                    Err(e) => {
                        // Leave the messages for a daemon that can send them.
                        if !act.provider_error_logged {
                            tracing::error!(list = %act.list_id, error = %e, "cannot send this list's messages on this daemon");
                            act.provider_error_logged = true;
                        }
                        act.handle = None;
                    }
                }
            }
            Ok(None) => match act.missing_since {
                Some(t) if t.elapsed() >= act.config().supervisor.list_refresh.get() => {
                    if !matches!(act.handle, Some(ListHandle::Deleted(_))) {
                        tracing::error!(list = %act.list_id, "sending list no longer exists: its queued messages are dead-lettered LIST_DELETED");
                    }
                    act.handle = Some(ListHandle::Deleted(act.list_id));
                    act.has_more = true;
                    act.dispatch(ctx);
                }
                Some(_) => {}
                None => {
                    tracing::warn!(list = %act.list_id, "sending list not found; checking again before giving its messages up");
                    act.missing_since = Some(Instant::now());
                    act.handle = None;
                    let again = act.config().supervisor.list_refresh.get();
                    ctx.run_later(again, |act, ctx| act.load(ctx));
                }
            },
            Err(e) => {
                tracing::warn!(list = %act.list_id, error = %e, "could not load the sending list")
            }
        }
    }

    /// How many messages the next claim may take.
    fn claim_size(&self, handle: &ListHandle) -> usize {
        let cfg = self.config();
        let ListHandle::Serve(list) = handle else {
            // Deleted: dead-letter in whole batches.
            return cfg.coordinator.max_batch;
        };
        let per_sec = list.rate_per_minute() as f64 / 60.0;
        let budget =
            (per_sec * cfg.coordinator.claim_lookahead.get().as_secs_f64()).ceil() as usize;
        let room = budget.saturating_sub(self.in_flight());
        let size = room.min(cfg.coordinator.max_batch);
        if size == 0 && self.in_flight() == 0 {
            1
        } else {
            size
        }
    }

    /// Ask for work for one idle worker, if everything allows it.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let Some(handle) = self.handle.clone() else {
            return;
        };
        if self.draining || self.requesting || self.rate_limiter_down || !self.has_more {
            return;
        }
        if let ListHandle::Serve(list) = &handle
            && list.live.paused()
        {
            return;
        }
        let Some(slot) = self.slots.iter().position(|s| s.busy.is_none()) else {
            return;
        };
        let max = self.claim_size(&handle);
        if max == 0 {
            return;
        }
        self.requesting = true;
        let req = self.deps.request_work.send(RequestWork {
            list: self.list_id,
            max,
        });
        ctx.spawn(req.into_actor(self).map(move |res, act, ctx| {
            act.requesting = false;
            match res {
                Ok(Ok(batch)) if batch.messages.is_empty() => {
                    act.has_more = false;
                    act.answer_drain_waiters();
                }
                Ok(Ok(batch)) => {
                    // Keep claiming until a claim finds nothing more ready:
                    // a claim that holds fewer than it asked for may only
                    // mean another daemon took part of the range (while the
                    // bus is live the next poll can be `bus_poll_interval`
                    // away). A claim that looked and found fewer than it
                    // asked for ends a drain without one more round trip;
                    // what is queued or falls due later arrives as
                    // `WorkAvailable` from the Coordinator's poll.
                    act.has_more = !batch.exhausted;
                    act.last_work = Instant::now();
                    act.assign(slot, batch, handle, ctx);
                    act.dispatch(ctx);
                }
                Ok(Err(e)) => {
                    // Wait for the next poll rather than hammering the store.
                    tracing::warn!(list = %act.list_id, error = %e, "claim failed");
                    act.has_more = false;
                    act.answer_drain_waiters();
                }
                Err(e) => {
                    tracing::error!(list = %act.list_id, error = %e, "coordinator unreachable");
                    act.has_more = false;
                    act.answer_drain_waiters();
                }
            }
        }));
    }

    fn assign(
        &mut self,
        slot: usize,
        batch: ClaimedBatch,
        handle: ListHandle,
        ctx: &mut Context<Self>,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.busy = Some(batch.messages.len());
        let token = batch.token.clone();
        let req = s.addr.send(ProcessBatch {
            batch,
            list: handle,
        });
        ctx.spawn(req.into_actor(self).map(move |res, act, ctx| {
            if let Some(s) = act.slots.get_mut(slot) {
                s.busy = None;
            }
            act.last_work = Instant::now();
            match res {
                Ok(report) => {
                    act.progress_active = true;
                    act.progress_sent += report.sent;
                    act.progress_failed += report.failed_total();
                    if report.rate_limiter_unavailable && !act.rate_limiter_down {
                        act.rate_limiter_down = true;
                        act.probe_rate_limiter(ctx);
                    }
                    if report.aborted.is_some() {
                        act.has_more = false;
                        act.release(token, ctx);
                    }
                }
                Err(e) => {
                    tracing::error!(list = %act.list_id, worker = slot, error = %e, "worker crashed; restarting it and releasing its batch");
                    act.deps.worker.instance.finish_token(&token);
                    let worker = Worker::new(act.deps.worker.clone()).start();
                    if let Some(s) = act.slots.get_mut(slot) {
                        s.addr = worker;
                    }
                    act.release(token, ctx);
                }
            }
            act.answer_drain_waiters();
            act.dispatch(ctx);
        }));
    }

    /// Put back what `token` still holds, retrying while the store fails
    /// (this daemon is live, so nobody else will release it).
    fn release(&mut self, token: String, ctx: &mut Context<Self>) {
        let queue = self.queue();
        let list = self.list_id;
        let instance = self.deps.worker.instance.clone();
        let fut = async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match queue.release(list, &token).await {
                    Ok(n) => {
                        tracing::info!(list = %list, released = n, "released a given-up batch's claim");
                        return;
                    }
                    Err(e) if !instance.is_shutting_down() => {
                        tracing::warn!(list = %list, error = %e, "could not release a batch's claim; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        // Stopping: the stopped lease lets recovery release it.
                        tracing::warn!(list = %list, error = %e, "claim left for recovery");
                        return;
                    }
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.has_more = true;
            act.dispatch(ctx);
        }));
    }

    /// While the rate limiter is unreachable, ask it every
    /// `rate_limit.unavailable_retry` and resume when it answers.
    fn probe_rate_limiter(&mut self, ctx: &mut Context<Self>) {
        let every = self.config().rate_limit.unavailable_retry.get();
        ctx.run_later(every, |act, ctx| {
            let check = act.deps.check_rate_limiter.send(CheckRateLimiter);
            ctx.spawn(check.into_actor(act).map(|res, act, ctx| {
                if matches!(res, Ok(Ok(()))) {
                    tracing::info!(list = %act.list_id, "rate limiter reachable again; resuming");
                    act.rate_limiter_down = false;
                    act.has_more = true;
                    act.dispatch(ctx);
                } else {
                    act.probe_rate_limiter(ctx);
                }
            }));
        });
    }

    fn answer_drain_waiters(&mut self) {
        if self.busy_workers() == 0 && !self.requesting {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn drained(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.answer_drain_waiters();
        rx
    }
}

impl Actor for ListSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let n = self.config().supervisor.workers;
        self.slots = (0..n)
            .map(|_| Slot {
                addr: Worker::new(self.deps.worker.clone()).start(),
                busy: None,
            })
            .collect();
        self.load(ctx);
        ctx.run_interval(self.config().supervisor.list_refresh.get(), |act, ctx| {
            act.timed_load(ctx)
        });
        ctx.run_interval(self.config().log.progress_interval.get(), |act, ctx| {
            act.log_progress(ctx)
        });
        let idle_after = self.config().coordinator.idle_supervisor_after.get();
        let check_every = (idle_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        ctx.run_interval(check_every, move |act, ctx| {
            let idle = act.busy_workers() == 0 && !act.requesting && !act.has_more;
            if idle && act.last_work.elapsed() >= idle_after {
                tracing::debug!(list = %act.list_id, "idle; stopping the list supervisor");
                ctx.stop();
            }
        });
        tracing::debug!(list = %self.list_id, workers = n, "list supervisor started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps
            .stopped
            .do_send(SupervisorStopped { list: self.list_id });
    }
}

impl Handler<WorkAvailable> for ListSupervisor {
    type Result = ();

    fn handle(&mut self, _: WorkAvailable, ctx: &mut Self::Context) {
        self.has_more = true;
        if self.handle.is_none() && self.missing_since.is_none() && !self.loading {
            // The list could not be served (provider missing); try again.
            // (Not while the first read, from `started`, is on its way.)
            self.load(ctx);
        }
        self.dispatch(ctx);
    }
}

impl Handler<ReloadList> for ListSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ReloadList, ctx: &mut Self::Context) {
        if msg.resume && !self.stopping {
            self.draining = false;
            self.has_more = true;
        }
        self.load(ctx);
    }
}

impl Handler<Drain> for ListSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        tracing::info!(list = %self.list_id, "draining");
        self.draining = true;
        let rx = self.drained();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<Stop> for ListSupervisor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: Stop, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
        self.stopping = true;
        let rx = self.drained();
        Box::pin(
            async move { tokio::time::timeout(msg.grace, rx).await.is_ok() }
                .into_actor(self)
                .map(|done, _, ctx| {
                    ctx.stop();
                    done
                }),
        )
    }
}
