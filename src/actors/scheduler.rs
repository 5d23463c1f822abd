//! # Scheduler
//!
//! One per daemon (`scheduler.enabled`). Owns: triggering due schedules and
//! executing their runs; resuming the runs of daemons that stopped.
//!
//! A look (every `scheduler.max_idle` at most, sooner when the next
//! schedule falls due, at once on the bus's `SchedulesChanged` or
//! [`LookNow`]):
//!
//! 1. Due schedules (active, `next_run_at` reached). For each occurrence:
//!    found more than `scheduler.missed_grace` late, a `missed` run is
//!    recorded; otherwise this daemon tries to record the run
//!    (`evaluating`, owned by this instance). The run's unique key
//!    `(schedule, occurrence)` lets exactly one daemon win; every daemon
//!    that saw the occurrence due then moves the schedule to its next
//!    occurrence (a conditional write that one of them makes).
//! 2. The winner validates the campaign ([`crate::campaign::plan`]); a
//!    failure ends the run `failed` with its reason, nothing queued.
//!    Otherwise the run executes ([`crate::campaign::run`]) as a future
//!    spawned on this actor, at most `scheduler.max_concurrent_runs` at a
//!    time; the actor is never blocked (screening runs on the blocking
//!    pool).
//! 3. Runs still `evaluating` whose owner's lease lapsed (or that are this
//!    instance's own but no longer executing) are taken over and resumed
//!    from their checkpoint.
//!
//! A look needs this daemon's lease: validation asks which providers the
//! live daemons can send through, and ownership is judged by leases.
//!
//! Restart: nothing is kept here but which runs execute now; the store
//! holds every run's checkpoint.

use crate::bus::{Event, SharedBus};
use crate::campaign::explain;
use crate::campaign::occurrence::{Lateness, Recurrence, lateness};
use crate::campaign::plan::{Capabilities, Plan, PlanError, PrepareError, prepare};
use crate::campaign::run::{self, Ended, RunDeps};
use crate::clock::{SharedClock, chrono_dur};
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::messages::{ExplainError, ExplainSchedule, LookNow, LookReport};
use crate::metrics::Metrics;
use crate::store::{StoreError, Stores};
use actix::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Due schedules handled per look (the next look goes on).
const DUE_LIMIT: usize = 100;
/// How soon to look again when this daemon has no lease yet.
const NO_LEASE_RETRY: Duration = Duration::from_millis(500);

pub struct SchedulerDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub instance: Arc<Instance>,
    pub bus: SharedBus,
    pub metrics: Arc<Metrics>,
    /// Provider keys this daemon can send through (its own lease says the
    /// same, once renewed).
    pub providers: Vec<String>,
    /// Discord alerts: runs that failed (never waits).
    pub alerts: crate::messages::AlertSink,
}

pub struct Scheduler {
    /// Shared with the futures it spawns.
    deps: Arc<SchedulerDeps>,
    /// Runs executing on this daemon now: never started twice here.
    running: HashSet<ScheduleRunId>,
    /// A look is in progress: looks never overlap.
    looking: bool,
    /// Another look was asked for while one ran; these wait for its report.
    again: bool,
    waiting: Vec<tokio::sync::oneshot::Sender<LookReport>>,
    /// The timer of the next look.
    next_look: Option<SpawnHandle>,
    /// The last look used every free slot (or failed): a run that ends
    /// looks again at once, for what may be waiting for its slot.
    slots_were_full: bool,
    /// When a look last read the runs left evaluating (stalled runs).
    stalled_checked: Option<tokio::time::Instant>,
}

/// A run to execute, found by a look.
struct Start {
    run: ScheduleRun,
    plan: Arc<Plan>,
}

impl Scheduler {
    pub fn new(deps: SchedulerDeps) -> Self {
        Scheduler {
            deps: Arc::new(deps),
            running: HashSet::new(),
            looking: false,
            again: false,
            waiting: Vec::new(),
            next_look: None,
            slots_were_full: false,
            stalled_checked: None,
        }
    }

    fn run_deps(&self) -> RunDeps {
        RunDeps {
            stores: self.deps.stores.clone(),
            config: self.deps.config.clone(),
            clock: self.deps.clock.clone(),
            instance: self.deps.instance.clone(),
            bus: self.deps.bus.clone(),
            metrics: self.deps.metrics.clone(),
        }
    }

    fn schedule_look(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(h) = self.next_look.take() {
            ctx.cancel_future(h);
        }
        self.next_look = Some(ctx.run_later(after, |act, ctx| {
            act.next_look = None;
            act.look(ctx, None);
        }));
    }

    /// Starts a look unless one runs (then one more follows it, and `reply`
    /// gets that next look's report).
    fn look(
        &mut self,
        ctx: &mut Context<Self>,
        reply: Option<tokio::sync::oneshot::Sender<LookReport>>,
    ) {
        let mut replies: Vec<_> = self.waiting.drain(..).collect();
        replies.extend(reply);
        // A look that starts a run skips the stalled-run read when one ran
        // within `max_idle` (stalled runs wait for a lapsed lease anyway);
        // asked-for looks (`LookNow`) always read it.
        let stalled_due = !replies.is_empty()
            || self
                .stalled_checked
                .is_none_or(|t| t.elapsed() >= self.deps.config.scheduler.max_idle.get());
        if self.deps.instance.is_shutting_down() {
            for tx in replies {
                let _ = tx.send(LookReport::default());
            }
            return;
        }
        if self.looking {
            self.again = true;
            self.waiting = replies;
            return;
        }
        if !self.deps.instance.lease_valid() {
            for tx in replies {
                let _ = tx.send(LookReport {
                    error: Some("this daemon holds no lease yet".into()),
                    ..Default::default()
                });
            }
            self.schedule_look(ctx, NO_LEASE_RETRY);
            return;
        }
        self.looking = true;
        let deps = self.deps.clone();
        let running: HashSet<ScheduleRunId> = self.running.clone();
        let slots = deps
            .config
            .scheduler
            .max_concurrent_runs
            .saturating_sub(self.running.len());
        let fut = async move { look(&deps, &running, slots, stalled_due).await };
        let began = tokio::time::Instant::now();
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(report, starts, wake, full), act, ctx| {
                    act.looking = false;
                    act.slots_were_full = full;
                    if report.stalled_checked {
                        act.stalled_checked = Some(began);
                    }
                    for s in starts {
                        act.execute(ctx, s);
                    }
                    if let Some(e) = &report.error {
                        tracing::warn!(error = %e, "scheduler look failed; it looks again soon");
                    }
                    for tx in replies {
                        let _ = tx.send(report.clone());
                    }
                    if std::mem::take(&mut act.again) {
                        act.look(ctx, None);
                    } else {
                        act.schedule_look(ctx, wake);
                    }
                }),
        );
    }

    fn execute(&mut self, ctx: &mut Context<Self>, start: Start) {
        if !self.running.insert(start.run.id) {
            return;
        }
        let deps = self.run_deps();
        let metrics = self.deps.metrics.clone();
        let id = start.run.id;
        let schedule = start.run.schedule;
        tracing::info!(run = %id, schedule = %schedule, list = %start.plan.list.id, resumed_from = ?start.run.cursor, "run executing");
        let fut = async move { run::execute(&deps, start.plan, start.run).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.running.remove(&id);
            match res {
                Ok(Ended::Queued { queued }) => {
                    metrics.campaign_run(RunStatus::Queued);
                    tracing::info!(run = %id, schedule = %schedule, queued, "run queued every message");
                }
                Ok(Ended::LostOwnership) => {
                    tracing::warn!(run = %id, "run taken over by another daemon");
                }
                Ok(Ended::Interrupted) => {
                    tracing::info!(run = %id, "run interrupted; it resumes from its checkpoint");
                }
                Err(e) => {
                    tracing::error!(run = %id, error = %e, "run stopped on a store error; it resumes at a later look");
                }
            }
            // A slot is free: due schedules or stalled runs may be
            // waiting for it (only when the last look left none free;
            // otherwise the timer's next look is soon enough).
            if std::mem::take(&mut act.slots_were_full) {
                act.look(ctx, None);
            }
        }));
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.add_stream(crate::bus::stream(self.deps.bus.subscribe()));
        tracing::info!(instance = %self.deps.instance.id, "scheduler started");
        self.look(ctx, None);
    }
}

impl StreamHandler<Event> for Scheduler {
    fn handle(&mut self, event: Event, ctx: &mut Self::Context) {
        if matches!(event, Event::SchedulesChanged | Event::Resync) {
            self.look(ctx, None);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("event bus subscription ended; the scheduler relies on its timer");
    }
}

impl Handler<LookNow> for Scheduler {
    type Result = ResponseFuture<LookReport>;

    fn handle(&mut self, _: LookNow, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.look(ctx, Some(tx));
        Box::pin(async move { rx.await.unwrap_or_default() })
    }
}

impl Handler<ExplainSchedule> for Scheduler {
    type Result = ResponseFuture<Result<explain::Explain, ExplainError>>;

    fn handle(&mut self, msg: ExplainSchedule, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move {
            let schedule = deps
                .stores
                .schedules
                .get_schedule(msg.schedule)
                .await?
                .ok_or(ExplainError::UnknownSchedule(msg.schedule))?;
            let caps = capabilities(&deps).await?;
            let plan = match prepare(&deps.stores, &deps.config, &schedule, &caps).await {
                Ok(p) => p,
                Err(PrepareError::Store(e)) => return Err(e.into()),
                Err(PrepareError::Invalid(e)) => return Err(e.into()),
            };
            let now = deps.clock.now();
            Ok(explain::explain(&deps.stores, &plan, deps.config.scheduler.page_size, now).await?)
        })
    }
}

/// Provider keys some live daemon can send through: the live leases', and
/// this daemon's own.
pub async fn live_capabilities(
    stores: &Stores,
    own: &[String],
    instance: &Instance,
    fresh: std::time::Duration,
) -> Result<(Capabilities, HashSet<String>), StoreError> {
    let server_now = stores.database_now(instance, fresh).await?;
    let leases = stores.leases.leases().await?;
    let mut caps = Capabilities::default();
    caps.providers.extend(own.iter().cloned());
    let mut live = HashSet::new();
    for l in leases.iter().filter(|l| l.live_at(server_now)) {
        caps.providers.extend(l.providers.iter().cloned());
        live.insert(l.instance.clone());
    }
    Ok((caps, live))
}

async fn capabilities(deps: &SchedulerDeps) -> Result<Capabilities, StoreError> {
    Ok(live_capabilities(
        &deps.stores,
        &deps.providers,
        &deps.instance,
        deps.config.daemon.heartbeat_interval.get() * 2,
    )
    .await?
    .0)
}

/// One look: `(report, runs to execute, when to look next, whether it used
/// every free slot)`.
async fn look(
    deps: &SchedulerDeps,
    running: &HashSet<ScheduleRunId>,
    slots: usize,
    stalled_due: bool,
) -> (LookReport, Vec<Start>, Duration, bool) {
    let mut report = LookReport::default();
    let mut starts = Vec::new();
    let max_idle = deps.config.scheduler.max_idle.get();
    let mut next_due = None;
    let full = match look_inner(
        deps,
        running,
        slots,
        stalled_due,
        &mut report,
        &mut starts,
        &mut next_due,
    )
    .await
    {
        Ok(left) => left == 0,
        Err(e) => {
            report.error = Some(e.to_string());
            return (report, starts, Duration::from_secs(2).min(max_idle), true);
        }
    };
    let wake = match next_due {
        Some(t) => (t - deps.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(max_idle),
        None => max_idle,
    };
    // Due schedules waiting for a free slot are looked at when a run ends.
    let wake = if wake.is_zero() && slots <= starts.len() {
        max_idle
    } else {
        wake.max(Duration::from_millis(50))
    };
    (report, starts, wake, full)
}

async fn look_inner(
    deps: &SchedulerDeps,
    running: &HashSet<ScheduleRunId>,
    mut slots: usize,
    stalled_due: bool,
    report: &mut LookReport,
    starts: &mut Vec<Start>,
    next_due: &mut Option<Timestamp>,
) -> Result<usize, StoreError> {
    let now = deps.clock.now();
    let grace = deps.config.scheduler.missed_grace.get();
    // One read for what is due and what falls due before the next timed
    // look (`max_idle`): the earliest of the latter is when to look again.
    let horizon = now + chrono_dur(deps.config.scheduler.max_idle.get());
    let found = deps
        .stores
        .schedules
        .due_schedules(horizon, DUE_LIMIT)
        .await?;
    if found.len() >= DUE_LIMIT
        && found
            .iter()
            .all(|s| s.next_run_at.is_some_and(|t| t <= now))
    {
        // More may be due than one look takes: look again at once.
        soonest(next_due, now);
    }
    let mut due = Vec::with_capacity(found.len());
    for s in found {
        match s.next_run_at {
            Some(t) if t > now => soonest(next_due, t),
            Some(_) => due.push(s),
            None => {}
        }
    }
    let mut caps: Option<Capabilities> = None;
    let mut started_here: HashSet<ScheduleRunId> = HashSet::new();
    for schedule in due {
        let Some(occurrence) = schedule.next_run_at else {
            continue;
        };
        let recurrence = Recurrence::parse(&schedule.kind);
        let late = lateness(occurrence, now, grace);
        if late == Lateness::OnTime && slots == 0 {
            continue; // wait for a free slot
        }
        let mut run = new_run(deps, &schedule, occurrence, now);
        let invalid_timing = recurrence.as_ref().err().map(|e| e.to_string());
        if let Some(reason) = &invalid_timing {
            run.status = RunStatus::Failed;
            run.reason = Some(format!("invalid schedule timing: {reason}"));
            run.finished_at = Some(now);
        } else if late == Lateness::Missed {
            run.status = RunStatus::Missed;
            run.reason = Some(format!(
                "fell due at {occurrence} while no daemon could trigger it; found {}s late (scheduler.missed_grace is {}s)",
                (now - occurrence).num_seconds(),
                grace.as_secs()
            ));
            run.finished_at = Some(now);
        }
        let won = deps.stores.schedules.start_run(run.clone()).await?;
        crate::failpoint::hit("scheduler.run_started");
        // The next occurrence (one that is itself already past the grace is
        // skipped: only the first missed occurrence is recorded).
        let next = match &recurrence {
            Ok(r) => {
                let floor =
                    now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
                let mut next = r.after(occurrence).ok().flatten();
                if next.is_some_and(|n| n < floor) {
                    next = r.first_at_or_after(floor).ok().flatten();
                }
                next
            }
            Err(_) => None,
        };
        deps.stores
            .schedules
            .advance_schedule(schedule.id, occurrence, next)
            .await?;
        crate::failpoint::hit("scheduler.advanced");
        if let Some(n) = next.filter(|n| *n <= horizon) {
            soonest(next_due, n.max(now));
        }
        if !won {
            continue;
        }
        match run.status {
            RunStatus::Missed => {
                report.missed += 1;
                deps.metrics.campaign_run(RunStatus::Missed);
                tracing::warn!(schedule = %schedule.id, occurrence = %occurrence, "occurrence missed");
                continue;
            }
            RunStatus::Failed => {
                report.failed += 1;
                deps.metrics.campaign_run(RunStatus::Failed);
                tracing::error!(schedule = %schedule.id, reason = run.reason.as_deref().unwrap_or(""), "run failed");
                deps.alerts.emit(crate::messages::AlertEvent::RunFailed {
                    account: run.account,
                    list: run.sending_list,
                    schedule: run.schedule,
                    run: run.id,
                    reason: run.reason.clone().unwrap_or_default(),
                });
                continue;
            }
            _ => {}
        }
        let plan = validate_lazily(deps, &schedule, &run, &mut caps, report).await?;
        if let Some(plan) = plan {
            tracing::info!(schedule = %schedule.id, run = %run.id, occurrence = %occurrence, "run triggered");
            report.started += 1;
            slots = slots.saturating_sub(1);
            started_here.insert(run.id);
            starts.push(Start {
                run,
                plan: Arc::new(plan),
            });
        }
    }
    // Runs left evaluating: by a stopped daemon, or this one's own that
    // no longer execute here.
    if slots == 0 {
        return Ok(0);
    }
    if !stalled_due && !starts.is_empty() {
        return Ok(slots);
    }
    report.stalled_checked = true;
    let stalled: Vec<ScheduleRun> = deps
        .stores
        .schedules
        .evaluating_runs(DUE_LIMIT)
        .await?
        .into_iter()
        .filter(|r| !running.contains(&r.id) && !started_here.contains(&r.id))
        .collect();
    if stalled.is_empty() {
        return Ok(slots);
    }
    let (live_caps, live) = live_capabilities(
        &deps.stores,
        &deps.providers,
        &deps.instance,
        deps.config.daemon.heartbeat_interval.get() * 2,
    )
    .await?;
    let me = deps.instance.id.as_str();
    for r in stalled {
        if slots == 0 {
            break;
        }
        let run = if r.owner == me {
            r
        } else if live.contains(&r.owner) {
            continue; // its daemon is alive and working on it
        } else {
            match deps
                .stores
                .schedules
                .take_over_run(r.id, &r.owner, me)
                .await?
            {
                Some(run) => {
                    tracing::warn!(run = %run.id, from = %r.owner, checkpoint = ?run.cursor, "took over the run of a stopped daemon");
                    run
                }
                None => continue, // another daemon took it first
            }
        };
        let Some(schedule) = deps.stores.schedules.get_schedule(run.schedule).await? else {
            finish_failed(deps, &run, "its schedule no longer exists".into(), report).await?;
            continue;
        };
        if let Some(plan) = validate(deps, &schedule, &run, &live_caps, report).await? {
            report.resumed += 1;
            slots -= 1;
            starts.push(Start {
                run,
                plan: Arc::new(plan),
            });
        }
    }
    Ok(slots)
}

/// Keeps the earlier of `next` and `t`.
fn soonest(next: &mut Option<Timestamp>, t: Timestamp) {
    *next = Some(next.map_or(t, |n| n.min(t)));
}

/// Validates the campaign of `run` against this daemon's own providers
/// first; only when the list's provider is not among them are the leases
/// read (`live`, kept for the rest of the look), for another daemon that
/// can send it. An invalid campaign ends the run `failed`.
async fn validate_lazily(
    deps: &SchedulerDeps,
    schedule: &Schedule,
    run: &ScheduleRun,
    live: &mut Option<Capabilities>,
    report: &mut LookReport,
) -> Result<Option<Plan>, StoreError> {
    let prepared = if let Some(caps) = live.as_ref() {
        prepare(&deps.stores, &deps.config, schedule, caps).await
    } else {
        let own = Capabilities {
            providers: deps.providers.iter().cloned().collect(),
        };
        match prepare(&deps.stores, &deps.config, schedule, &own).await {
            Err(PrepareError::Invalid(PlanError::ProviderUnavailable(_))) => {
                let caps = live.insert(capabilities(deps).await?);
                prepare(&deps.stores, &deps.config, schedule, caps).await
            }
            other => other,
        }
    };
    settle_validation(deps, run, prepared, report).await
}

/// Validates the campaign of `run`; an invalid one ends the run `failed`.
async fn validate(
    deps: &SchedulerDeps,
    schedule: &Schedule,
    run: &ScheduleRun,
    caps: &Capabilities,
    report: &mut LookReport,
) -> Result<Option<Plan>, StoreError> {
    let prepared = prepare(&deps.stores, &deps.config, schedule, caps).await;
    settle_validation(deps, run, prepared, report).await
}

/// A validated plan, or the run ended `failed` with validation's reason.
async fn settle_validation(
    deps: &SchedulerDeps,
    run: &ScheduleRun,
    prepared: Result<Plan, PrepareError>,
    report: &mut LookReport,
) -> Result<Option<Plan>, StoreError> {
    match prepared {
        Ok(plan) => Ok(Some(plan)),
        Err(PrepareError::Store(e)) => Err(e),
        Err(PrepareError::Invalid(e)) => {
            finish_failed(deps, run, e.to_string(), report).await?;
            Ok(None)
        }
    }
}

async fn finish_failed(
    deps: &SchedulerDeps,
    run: &ScheduleRun,
    reason: String,
    report: &mut LookReport,
) -> Result<(), StoreError> {
    tracing::error!(run = %run.id, schedule = %run.schedule, reason = %reason, "run failed validation; nothing queued");
    let reason_copy = reason.clone();
    let changed = deps
        .stores
        .schedules
        .finish_run(
            run.id,
            &deps.instance.id,
            RunStatus::Failed,
            Some(reason),
            deps.clock.now(),
        )
        .await?;
    crate::failpoint::hit("scheduler.finished");
    if changed {
        report.failed += 1;
        deps.metrics.campaign_run(RunStatus::Failed);
        deps.alerts.emit(crate::messages::AlertEvent::RunFailed {
            account: run.account,
            list: run.sending_list,
            schedule: run.schedule,
            run: run.id,
            reason: reason_copy,
        });
    }
    Ok(())
}

fn new_run(
    deps: &SchedulerDeps,
    schedule: &Schedule,
    occurrence: Timestamp,
    now: Timestamp,
) -> ScheduleRun {
    ScheduleRun {
        id: ScheduleRunId::new(),
        schedule: schedule.id,
        account: schedule.account,
        sending_list: schedule.sending_list,
        creative: schedule.creative,
        occurrence,
        triggered_by: deps.instance.id.clone(),
        owner: deps.instance.id.clone(),
        status: RunStatus::Evaluating,
        reason: None,
        cursor: None,
        seq: 0,
        audience: 0,
        eligible: 0,
        queued: 0,
        skipped: BTreeMap::new(),
        variants: BTreeMap::new(),
        cost: Money::default(),
        started_at: now,
        finished_at: None,
        stats: Default::default(),
    }
}
