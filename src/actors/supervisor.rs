//! # ListSupervisor
//!
//! One per sending list with work, started by the Coordinator on first work
//! and stopped after `coordinator.idle_supervisor_after` without any.
//!
//! Owns: the list's settings as this daemon sees them ([`ListContext`]:
//! status, rate, compiled blocked words, provider), its `supervisor.workers`
//! Worker actors, and which of them is busy with how many messages.
//!
//! Handles: [`WorkAvailable`] (the Coordinator saw ready messages),
//! [`Control`] (pause, resume, rate change, drain), [`Stop`] (shutdown).
//!
//! Sends: [`RequestWork`] to the Coordinator, one request at a time and only
//! for an idle worker, sized to what the list can send within
//! `coordinator.claim_lookahead` at its rate minus what its workers already
//! hold, so claimed messages never age in memory. [`ProcessBatch`] to that
//! worker. [`SupervisorStopped`] when it stops.
//!
//! Restart of a worker: a worker whose mailbox closes while it holds a batch
//! (it panicked) is replaced at once, and the batch's claim is released for
//! any daemon to take again; the attempt records of what it had already
//! tried keep those messages from being sent twice.

use crate::actors::worker::{Worker, WorkerDeps};
use crate::domain::{ListStatus, SendingList, SendingListId};
use crate::messages::*;
use crate::providers::{ProviderRegistry, SharedProvider};
use actix::prelude::*;
use aho_corasick::AhoCorasick;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A list as its workers need it: settings plus what is derived from them.
pub struct ListContext {
    pub list: SendingList,
    pub provider: SharedProvider,
    blocked: Option<(AhoCorasick, Vec<String>)>,
}

impl std::fmt::Debug for ListContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListContext")
            .field("list", &self.list.id)
            .field("provider", &self.provider.kind())
            .field("rate_per_minute", &self.list.rate_limit_per_minute)
            .finish()
    }
}

impl ListContext {
    pub fn new(list: SendingList, provider: SharedProvider) -> Self {
        let words: Vec<String> = list
            .blocked_words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let blocked = if words.is_empty() {
            None
        } else {
            AhoCorasick::new(&words).ok().map(|ac| (ac, words))
        };
        ListContext {
            list,
            provider,
            blocked,
        }
    }

    pub fn rate_per_minute(&self) -> u32 {
        self.list.rate_limit_per_minute
    }

    /// The first blocked word that appears in `body` as a whole word,
    /// case-insensitively.
    pub fn blocked_word(&self, body: &str) -> Option<String> {
        let (ac, words) = self.blocked.as_ref()?;
        let lower = body.to_lowercase();
        let bytes = lower.as_bytes();
        for m in ac.find_overlapping_iter(&lower) {
            let before = lower[..m.start()].chars().next_back();
            let after = lower[m.end()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
            if boundary(before) && boundary(after) && m.end() <= bytes.len() {
                return words.get(m.pattern().as_usize()).cloned();
            }
        }
        None
    }
}

/// What a supervisor needs; shared by all supervisors of a daemon.
pub struct SupervisorDeps {
    pub worker: Arc<WorkerDeps>,
    pub providers: ProviderRegistry,
    pub request_work: Recipient<RequestWork>,
    pub stopped: Recipient<SupervisorStopped>,
    pub check_rate_limiter: Recipient<CheckRateLimiter>,
}

struct Slot {
    addr: Addr<Worker>,
    /// Messages held while busy.
    busy: Option<usize>,
}

pub struct ListSupervisor {
    list_id: SendingListId,
    deps: Arc<SupervisorDeps>,
    ctx: Option<Arc<ListContext>>,
    slots: Vec<Slot>,
    paused: bool,
    draining: bool,
    requesting: bool,
    has_more: bool,
    rate_limiter_down: bool,
    last_work: Instant,
    drain_waiters: Vec<oneshot::Sender<()>>,
    provider_error_logged: bool,
    /// Rate set by an operator's control message, over the stored one.
    rate_override: Option<u32>,
}

impl ListSupervisor {
    pub fn new(list_id: SendingListId, deps: Arc<SupervisorDeps>) -> Self {
        ListSupervisor {
            list_id,
            deps,
            ctx: None,
            slots: Vec::new(),
            paused: false,
            draining: false,
            requesting: false,
            has_more: true,
            rate_limiter_down: false,
            last_work: Instant::now(),
            drain_waiters: Vec::new(),
            provider_error_logged: false,
            rate_override: None,
        }
    }

    fn config(&self) -> &crate::config::Config {
        &self.deps.worker.config
    }

    fn in_flight(&self) -> usize {
        self.slots.iter().filter_map(|s| s.busy).sum()
    }

    fn busy_workers(&self) -> usize {
        self.slots.iter().filter(|s| s.busy.is_some()).count()
    }

    /// Load (or reload) the list's settings.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let lists = self.deps.worker.stores.lists.clone();
        let id = self.list_id;
        let fut = async move { lists.get_list(id).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(Some(list)) => {
                match act.deps.providers.for_settings(&list.provider) {
                    Ok(provider) => {
                        let mut list = list;
                        // An operator's rate change holds until the next one.
                        if let Some(r) = act.rate_override {
                            list.rate_limit_per_minute = r;
                        }
                        act.ctx = Some(Arc::new(ListContext::new(list, provider)));
                        act.provider_error_logged = false;
                        act.dispatch(ctx);
                    }
                    Err(e) => {
                        // Leave the messages for a daemon that can send them.
                        if !act.provider_error_logged {
                            tracing::error!(list = %act.list_id, error = %e, "cannot send this list's messages on this daemon");
                            act.provider_error_logged = true;
                        }
                        act.ctx = None;
                    }
                }
            }
            Ok(None) => {
                tracing::warn!(list = %act.list_id, "sending list not found; supervisor stops");
                ctx.stop();
            }
            Err(e) => tracing::warn!(list = %act.list_id, error = %e, "could not load the sending list"),
        }));
    }

    /// How many messages the next claim may take.
    fn claim_size(&self, list: &ListContext) -> usize {
        let cfg = self.config();
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
        let Some(list) = self.ctx.clone() else { return };
        if self.paused
            || self.draining
            || self.requesting
            || self.rate_limiter_down
            || !self.has_more
        {
            return;
        }
        if list.list.status != ListStatus::Active {
            return;
        }
        let Some(slot) = self.slots.iter().position(|s| s.busy.is_none()) else {
            return;
        };
        let max = self.claim_size(&list);
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
                    act.has_more = batch.messages.len() >= max;
                    act.last_work = Instant::now();
                    act.assign(slot, batch, list, ctx);
                    act.dispatch(ctx);
                }
                Ok(Err(e)) => {
                    // Wait for the next poll rather than hammering the store.
                    tracing::warn!(list = %act.list_id, error = %e, "claim failed");
                    act.has_more = false;
                }
                Err(e) => {
                    tracing::error!(list = %act.list_id, error = %e, "coordinator unreachable");
                    act.has_more = false;
                }
            }
        }));
    }

    fn assign(
        &mut self,
        slot: usize,
        batch: ClaimedBatch,
        list: Arc<ListContext>,
        ctx: &mut Context<Self>,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.busy = Some(batch.messages.len());
        let token = batch.token.clone();
        let req = s.addr.send(ProcessBatch { batch, list });
        ctx.spawn(req.into_actor(self).map(move |res, act, ctx| {
            if let Some(s) = act.slots.get_mut(slot) {
                s.busy = None;
            }
            act.last_work = Instant::now();
            match res {
                Ok(report) => {
                    if report.rate_limiter_unavailable && !act.rate_limiter_down {
                        act.rate_limiter_down = true;
                        act.probe_rate_limiter(ctx);
                    }
                    if report.store_error.is_some() {
                        act.has_more = false;
                    }
                }
                Err(e) => {
                    tracing::error!(list = %act.list_id, worker = slot, error = %e, "worker crashed; restarting it and releasing its batch");
                    let worker = Worker::new(act.deps.worker.clone()).start();
                    if let Some(s) = act.slots.get_mut(slot) {
                        s.addr = worker;
                    }
                    let queue = act.deps.worker.stores.queue.clone();
                    let list = act.list_id;
                    ctx.spawn(
                        async move {
                            match queue.release(list, &token).await {
                                Ok(n) => tracing::info!(list = %list, released = n, "released the crashed worker's claim"),
                                Err(e) => tracing::warn!(list = %list, error = %e, "could not release the crashed worker's claim; the stale-claim sweep will"),
                            }
                        }
                        .into_actor(act)
                        .map(|_, act, ctx| {
                            act.has_more = true;
                            act.dispatch(ctx);
                        }),
                    );
                }
            }
            act.answer_drain_waiters();
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
            act.load(ctx)
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
        if self.ctx.is_none() {
            // The list could not be served (provider missing); try again.
            self.load(ctx);
        }
        self.dispatch(ctx);
    }
}

impl Handler<Control> for ListSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Control, ctx: &mut Self::Context) -> Self::Result {
        tracing::info!(list = %self.list_id, command = ?msg.0, "control");
        match msg.0 {
            ListCommand::Pause => self.paused = true,
            ListCommand::Resume => {
                self.paused = false;
                self.draining = false;
                self.has_more = true;
                self.dispatch(ctx);
            }
            ListCommand::SetRateLimit(per_minute) => {
                self.rate_override = Some(per_minute);
                if let Some(old) = self.ctx.clone() {
                    let mut list = old.list.clone();
                    list.rate_limit_per_minute = per_minute;
                    self.ctx = Some(Arc::new(ListContext::new(list, old.provider.clone())));
                }
                self.dispatch(ctx);
            }
            ListCommand::Drain => {
                self.draining = true;
                let rx = self.drained();
                return Box::pin(async move {
                    let _ = rx.await;
                });
            }
        }
        Box::pin(async {})
    }
}

impl Handler<Stop> for ListSupervisor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: Stop, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use crate::providers::fake::{FakeProvider, FakeSettings};

    fn ctx_with(words: &[&str]) -> ListContext {
        let mut list = crate::seed::list(
            AccountId::new(),
            ProviderSettings::Fake,
            100,
            chrono::Utc::now(),
        );
        list.blocked_words = words.iter().map(|w| w.to_string()).collect();
        ListContext::new(list, Arc::new(FakeProvider::new(FakeSettings::default())))
    }

    #[test]
    fn blocked_words_match_whole_words_case_insensitively() {
        let c = ctx_with(&["free", "Cash Prize", "ünï"]);
        assert_eq!(c.blocked_word("Get it FREE today").as_deref(), Some("free"));
        assert_eq!(
            c.blocked_word("win a cash prize!").as_deref(),
            Some("cash prize")
        );
        assert_eq!(c.blocked_word("freedom and carefree"), None);
        assert_eq!(c.blocked_word("ÜNÏ."), Some("ünï".into()));
        assert_eq!(c.blocked_word("free"), Some("free".into()));
        assert_eq!(ctx_with(&[]).blocked_word("free"), None);
    }
}
