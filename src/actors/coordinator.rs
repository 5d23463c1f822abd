//! # Coordinator
//!
//! One per daemon. Owns: the only way messages leave the queue (claims,
//! with a token this instance minted: unique for ever), the map of running
//! list supervisors, and operators' list control.
//!
//! Handles:
//! - a poll every `coordinator.poll_interval` (backing off while every due
//!   list is already served), and at once on [`Nudge`], [`PollNow`] or a
//!   `Queued` event from any daemon: which lists have ready, due messages →
//!   start their supervisor if needed and tell it [`WorkAvailable`];
//! - [`RequestWork`] from a supervisor: claim up to `max` messages of its
//!   list (the supervisor sized the request to its rate budget and its idle
//!   workers: demand-driven, nothing is pushed unasked). Nothing is claimed
//!   while this instance's lease is not renewed or the daemon is stopping;
//! - [`ListControl`] (operators): pause, resume and rate changes are stored,
//!   then broadcast on the event bus, and every daemon's supervisor for the
//!   list reloads it on the `ListChanged` event; drain is local;
//! - [`ActiveLists`], [`Shutdown`] (SIGTERM), [`SupervisorStopped`].
//!
//! Restart: all its state is derived (supervisors are restarted on the next
//! poll); claims and attempts live in the store.

use crate::actors::supervisor::{ListSupervisor, SupervisorDeps};
use crate::bus::{Event, SharedBus};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::messages::*;
use crate::store::{Claimant, StoreError, Stores};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// What the Coordinator itself uses.
pub struct CoordinatorDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub instance: Arc<Instance>,
    pub bus: SharedBus,
}

pub struct Coordinator {
    deps: CoordinatorDeps,
    /// Handed to every supervisor it starts (built with this actor's address).
    supervisor_deps: Arc<SupervisorDeps>,
    supervisors: HashMap<SendingListId, Addr<ListSupervisor>>,
    /// A poll is in flight; `poll_again` asks for another right after it.
    polling: bool,
    poll_again: bool,
    /// Consecutive failed polls (log the first and every 20th).
    poll_failures: u32,
    /// Lists being served continuously: a claim is in flight, or the last
    /// one came back full (the supervisor asks again as soon as a worker is
    /// free). Polling finds nothing new for them.
    claiming: HashMap<SendingListId, u32>,
    full: HashSet<SendingListId>,
    /// Current gap between timed polls (grows while every due list is busy).
    poll_gap: Duration,
    last_poll: Instant,
    /// Something may have changed the queue's next due time since it was
    /// last read (an event that did not say when its messages fall due, a
    /// nudge, a wake-up): read it again before the next long wait.
    next_due_stale: bool,
}

impl Coordinator {
    /// Start it; `supervisor_deps` builds what supervisors need from the
    /// Coordinator's own address (they send it their requests).
    pub fn start_with(
        deps: CoordinatorDeps,
        supervisor_deps: impl FnOnce(Addr<Coordinator>) -> SupervisorDeps,
    ) -> Addr<Coordinator> {
        Coordinator::create(move |ctx| Coordinator {
            supervisor_deps: Arc::new(supervisor_deps(ctx.address())),
            deps,
            supervisors: HashMap::new(),
            polling: false,
            poll_again: false,
            poll_failures: 0,
            claiming: HashMap::new(),
            full: HashSet::new(),
            poll_gap: Duration::ZERO,
            last_poll: Instant::now(),
            next_due_stale: true,
        })
    }

    fn may_claim(&self) -> bool {
        !self.deps.instance.is_shutting_down() && self.deps.instance.lease_valid()
    }

    fn supervisor(&mut self, list: SendingListId) -> Option<Addr<ListSupervisor>> {
        if let Some(addr) = self.supervisors.get(&list)
            && addr.connected()
        {
            return Some(addr.clone());
        }
        if self.deps.instance.is_shutting_down() {
            return None;
        }
        let addr = ListSupervisor::new(list, self.supervisor_deps.clone()).start();
        self.supervisors.insert(list, addr.clone());
        self.publish_lists();
        Some(addr)
    }

    /// Tell the lease which lists this daemon serves.
    fn publish_lists(&self) {
        let mut lists: Vec<SendingListId> = self.supervisors.keys().copied().collect();
        lists.sort();
        self.deps.instance.set_lists(lists);
    }

    /// A timed poll: skipped while the backoff says so, unless a message
    /// this daemon knows of falls due now.
    fn timed_poll(&mut self, ctx: &mut Context<Self>) {
        let due = self.deps.instance.take_wake(self.deps.clock.now());
        // While the bus is live one poll wakes the lists that are due; its
        // result decides the gap (zero only if it found an unserved list),
        // so a stream of requeues does not restart the backoff each time.
        if due {
            self.next_due_stale = true;
            if !self.deps.bus.is_live() {
                self.poll_gap = Duration::ZERO;
            }
        }
        if due || self.last_poll.elapsed() >= self.poll_gap {
            self.poll(ctx);
        }
    }

    /// Before a long wait: when does the next queued message fall due?
    /// (One round trip; the poll then comes no later than that.)
    fn look_for_next_due(&mut self, ctx: &mut Context<Self>) {
        self.next_due_stale = false;
        let queue = self.deps.stores.queue.clone();
        let now = self.deps.clock.now();
        let fut = async move { queue.next_due(now).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| match res {
            Ok(Some(at)) => act.deps.instance.wake_at(at),
            Ok(None) => {}
            Err(e) => {
                act.next_due_stale = true;
                tracing::debug!(error = %e, "next due time not read; polling sooner");
                act.poll_gap = act.deps.config.coordinator.max_poll_interval.get();
            }
        }));
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if !self.may_claim() {
            return;
        }
        if self.polling {
            self.poll_again = true;
            return;
        }
        self.polling = true;
        self.last_poll = Instant::now();
        let now = self.deps.clock.now();
        let max_lists = self.deps.config.coordinator.max_lists;
        let queue = self.deps.stores.queue.clone();
        let fut = async move { queue.due_lists(now, max_lists).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.polling = false;
            match res {
                Ok(lists) => {
                    if act.poll_failures > 0 {
                        tracing::info!("queue reachable again");
                    }
                    act.poll_failures = 0;
                    let c = &act.deps.config.coordinator;
                    // While the bus is live, queuing anywhere polls at once
                    // (`Queued`), so a poll that finds nothing new can wait
                    // much longer; messages that fall due later (retries,
                    // deferrals) wake it through `Instance::wake_at`.
                    let live = act.deps.bus.is_live();
                    let (base, max) = (
                        c.poll_interval.get(),
                        if live {
                            c.bus_poll_interval.get().max(c.max_poll_interval.get())
                        } else {
                            c.max_poll_interval.get()
                        },
                    );
                    // A poll only helps with lists nobody is serving yet.
                    // While polls find none (nothing due, or every due list
                    // is being claimed from continuously), back off; the
                    // first poll that finds one, or a nudge, resets the gap.
                    //
                    // While the bus is live, a due list that already has a
                    // supervisor counts as served too: this poll wakes it,
                    // and it claims again on its own until a claim comes
                    // back empty; what falls due later arrives as an event
                    // or a wake-up time.
                    let nothing_new = lists.iter().all(|l| {
                        act.full.contains(l)
                            || act.claiming.contains_key(l)
                            || (live && act.supervisors.get(l).is_some_and(|a| a.connected()))
                    });
                    act.poll_gap = if nothing_new && live && !act.poll_gap.is_zero() {
                        // While live, what a poll would find arrives as an
                        // event, a wake-up or a claim of its own: after the
                        // first poll that found nothing new, the next is
                        // the safety poll.
                        max
                    } else if nothing_new {
                        (act.poll_gap * 2).clamp(base, max)
                    } else if live {
                        // The supervisors this poll woke claim on their own
                        // until a claim finds nothing more ready. A poll
                        // soon after helps only one whose first claims all
                        // lost races to other daemons' claims: it comes
                        // after `max_poll_interval`, not at once.
                        c.max_poll_interval.get().max(base)
                    } else {
                        Duration::ZERO
                    };
                    tracing::trace!(lists = lists.len(), next_gap = ?act.poll_gap, "polled");
                    // Read once after each change, not before every wait:
                    // what queuing anywhere adds comes as an event, and
                    // this daemon's own requeues set the wake-up time.
                    if act.poll_gap > c.max_poll_interval.get() && act.next_due_stale {
                        act.look_for_next_due(ctx);
                    }
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
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = self.deps.config.coordinator.poll_interval.get();
        ctx.run_interval(every, |act, ctx| act.timed_poll(ctx));
        ctx.add_stream(crate::bus::stream(self.deps.bus.subscribe()));
        tracing::info!(instance = %self.deps.instance.id, "coordinator started");
        self.poll(ctx);
    }
}

impl StreamHandler<Event> for Coordinator {
    fn handle(&mut self, event: Event, ctx: &mut Self::Context) {
        match event {
            Event::ListChanged { list } => {
                if let Some(sup) = self.supervisors.get(&list).filter(|a| a.connected()) {
                    sup.do_send(ReloadList::default());
                }
            }
            Event::Queued { due, .. } => {
                // Deferred messages wake the poll when they fall due; an
                // event that does not say reads the next due time again.
                match due {
                    Some(t) if t > self.deps.clock.now() => self.deps.instance.wake_at(t),
                    Some(_) => {} // due now: this poll finds them
                    None => self.next_due_stale = true,
                }
                if !self.deps.bus.is_live() {
                    self.poll_gap = Duration::ZERO;
                }
                self.poll(ctx);
            }
            Event::Resync => {
                self.next_due_stale = true;
                // Events may have been missed: look at everything now.
                for sup in self.supervisors.values().filter(|a| a.connected()) {
                    sup.do_send(ReloadList::default());
                }
                self.poll_gap = Duration::ZERO;
                self.poll(ctx);
            }
            Event::SchedulesChanged => {}
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The bus closed (its backend went away for good): polls go on.
        tracing::warn!("event bus subscription ended; relying on polls");
    }
}

impl Handler<RequestWork> for Coordinator {
    type Result = ResponseActFuture<Self, Result<ClaimedBatch, StoreError>>;

    fn handle(&mut self, msg: RequestWork, _: &mut Self::Context) -> Self::Result {
        if !self.may_claim() {
            return Box::pin(actix::fut::ready(Ok(ClaimedBatch {
                token: String::new(),
                messages: vec![],
                exhausted: true,
            })));
        }
        let instance = self.deps.instance.clone();
        let token = instance.mint_token();
        let claimant = Claimant {
            token: token.clone(),
            owner: instance.id.clone(),
        };
        *self.claiming.entry(msg.list).or_insert(0) += 1;
        let queue = self.deps.stores.queue.clone();
        let now = self.deps.clock.now();
        let fut = async move {
            let claimed = queue.claim(msg.list, msg.max, &claimant, now).await;
            crate::failpoint::hit("coordinator.claimed");
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) => {
                    instance.finish_token(&claimant.token);
                    return Err(e);
                }
            };
            if claimed.quarantined > 0 {
                tracing::error!(list = %msg.list, count = claimed.quarantined, "undecodable queued documents quarantined as dead letters (MALFORMED)");
            }
            if claimed.messages.is_empty() {
                instance.finish_token(&claimant.token);
            } else {
                tracing::debug!(list = %msg.list, token = %claimant.token, count = claimed.messages.len(), "claimed");
            }
            Ok(ClaimedBatch {
                token: claimant.token,
                messages: claimed.messages,
                exhausted: claimed.exhausted,
            })
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
        self.next_due_stale = true;
        self.poll_gap = Duration::ZERO;
        self.poll(ctx);
    }
}

impl Handler<PollNow> for Coordinator {
    type Result = ();
    fn handle(&mut self, _: PollNow, ctx: &mut Self::Context) {
        self.next_due_stale = true;
        self.poll(ctx);
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
            self.publish_lists();
        }
    }
}

impl Handler<ListControl> for Coordinator {
    type Result = ResponseActFuture<Self, Result<(), ControlError>>;

    fn handle(&mut self, msg: ListControl, _: &mut Self::Context) -> Self::Result {
        if self.deps.instance.is_shutting_down() {
            return Box::pin(actix::fut::ready(Err(ControlError::ShuttingDown)));
        }
        let lists = self.deps.stores.lists.clone();
        let bus = self.deps.bus.clone();
        let list = msg.list;
        let fut = async move {
            let stored = match msg.command {
                ListCommand::Pause => lists.set_list_status(list, ListStatus::Paused).await,
                ListCommand::Resume => lists.set_list_status(list, ListStatus::Active).await,
                ListCommand::SetRateLimit(r) => lists.set_rate_limit(list, r).await,
                ListCommand::Drain => lists.get_list(list).await.and_then(|l| {
                    l.map(|_| ())
                        .ok_or_else(|| StoreError::NotFound(format!("list {list}")))
                }),
            };
            match stored {
                Ok(()) => {}
                Err(StoreError::NotFound(_)) => return Err(ControlError::UnknownList(list)),
                Err(e) => return Err(ControlError::Store(e)),
            }
            if msg.command != ListCommand::Drain
                && let Err(e) = bus.publish(Event::ListChanged { list }).await
            {
                // Stored: other daemons see it at their next list refresh.
                tracing::warn!(list = %list, error = %e, "list change stored but not broadcast");
            }
            Ok(())
        };
        Box::pin(fut.into_actor(self).then(move |res, act, _| {
            let sup = act
                .supervisors
                .get(&list)
                .filter(|a| a.connected())
                .cloned();
            async move {
                res?;
                if let Some(sup) = sup {
                    if msg.command == ListCommand::Drain {
                        sup.send(Drain)
                            .await
                            .map_err(ControlError::SupervisorGone)?;
                    } else {
                        // Locally at once, without waiting for the bus.
                        sup.do_send(ReloadList {
                            resume: msg.command == ListCommand::Resume,
                        });
                    }
                }
                Ok(())
            }
            .into_actor(act)
        }))
    }
}

impl Handler<Shutdown> for Coordinator {
    type Result = ResponseFuture<ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.deps
            .instance
            .shutting_down
            .store(true, Ordering::Relaxed);
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
