//! # Recovery
//!
//! One per daemon. Owns: taking work back from the dead, on the database's
//! clock. Only the recovery leader (the live instance with the smallest id,
//! which every daemon computes from the same leases) recovers other
//! daemons' work, so two sweeps never fight over the same records; every
//! daemon recovers its own orphans (attempts of batches it gave up). Each
//! step is idempotent, so a brief disagreement about the leader only costs
//! a retried transaction.
//!
//! Every `recovery.sweep_interval` (or on [`SweepNow`]):
//!
//! 1. Read the leases and the store's time. An instance is live while its
//!    lease is renewed and not stopped.
//! 2. Judge unanswered attempts (`submitted = null`) that will never be
//!    answered: those of instances that are not live, this instance's own
//!    that no running batch holds (a batch that was given up), and any made
//!    before the hard horizon (`recovery.in_doubt_horizon`, database time).
//!    A delivery report already received proves the provider took the
//!    message: recorded sent. Otherwise it is in doubt: NO_RESPONSE with its
//!    dead letter (the same settlement a worker writes on a timeout), never
//!    resent automatically. Then its queue entry is removed.
//! 3. Release the claims of instances that are not live, for any daemon to
//!    take; the next claimer's screen finds any outcome already written.
//!    A live daemon's claims are never released, however slow it is.
//!    The leader also resolves in-doubt messages whose delivery report
//!    arrived but whose resolution could not finish with it.
//! 4. Every `recovery.unservable_check`: lists with due messages that no
//!    live daemon has the provider credentials for are logged (a line each
//!    time) and shown in `/readyz`; and the in-doubt messages not yet
//!    resolved or requeued are counted (the `in_doubt_messages` gauge).
//!
//! Restart: all its state is derived from the store.

use crate::actors::outcome;
use crate::clock::{SharedClock, chrono_dur};
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::messages::{Settle, SweepNow, SweepReport};
use crate::store::{Settlement, StoreError, Stores, UnansweredQuery};
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

/// How many unanswered attempts one sweep judges (the next sweep goes on).
const SWEEP_LIMIT: usize = 1000;

/// A list with due messages that no live daemon can send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unservable {
    #[serde(serialize_with = "crate::domain::ids::hex")]
    pub list: SendingListId,
    /// `kind:credentials` the list needs.
    pub provider: String,
}

/// What `/readyz` shows of recovery's findings.
pub type UnservableLists = Arc<RwLock<Vec<Unservable>>>;

pub struct RecoveryDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub instance: Arc<Instance>,
    pub settle: Recipient<Settle>,
    pub unservable: UnservableLists,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Discord alerts: lists no daemon can serve (never waits).
    pub alerts: crate::messages::AlertSink,
}

pub struct Recovery {
    /// Shared with the sweep futures it spawns.
    deps: Arc<RecoveryDeps>,
    /// A sweep is running: timed sweeps do not stack.
    sweeping: bool,
    last_unservable_check: Option<Instant>,
    /// What the last whole sweep saw (timed sweeps skip the rest while
    /// nothing changed).
    seen: Arc<std::sync::Mutex<SweepMemo>>,
}

/// The leases as the last whole sweep found them, and when it ran.
#[derive(Default)]
pub struct SweepMemo {
    leases: Option<BTreeSet<(String, bool)>>,
    at: Option<Instant>,
}

impl Recovery {
    pub fn new(deps: RecoveryDeps) -> Self {
        Recovery {
            deps: Arc::new(deps),
            sweeping: false,
            last_unservable_check: None,
            seen: Arc::default(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping || self.deps.instance.is_shutting_down() {
            return;
        }
        self.sweeping = true;
        let check_unservable = self
            .last_unservable_check
            .is_none_or(|t| t.elapsed() >= self.deps.config.recovery.unservable_check.get());
        if check_unservable {
            self.last_unservable_check = Some(Instant::now());
        }
        let deps = self.deps.clone();
        let seen = self.seen.clone();
        let fut = async move {
            let report = sweep_with(&deps, Some(&seen)).await;
            if check_unservable {
                if let Err(e) = check_unservable_lists(&deps).await {
                    tracing::warn!(error = %e, "could not check which lists can be served");
                }
                let open_in_doubt = crate::store::FailedFilter {
                    reason: Some(FailureReason::NoResponse),
                    open_only: true,
                    ..Default::default()
                };
                match deps.stores.dead_letters.count_failed(&open_in_doubt).await {
                    Ok(n) => deps
                        .metrics
                        .in_doubt
                        .set(i64::try_from(n).unwrap_or(i64::MAX)),
                    Err(e) => tracing::warn!(error = %e, "could not count in-doubt messages"),
                }
            }
            report
        };
        ctx.spawn(fut.into_actor(self).map(|report, act, _| {
            act.sweeping = false;
            if let Some(e) = &report.error {
                tracing::error!(error = %e, "recovery sweep failed; it runs again next time");
            }
        }));
    }
}

impl Actor for Recovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = self.deps.config.recovery.sweep_interval.get();
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
    }
}

impl Handler<SweepNow> for Recovery {
    type Result = ResponseFuture<SweepReport>;

    fn handle(&mut self, _: SweepNow, _: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move { sweep(&deps).await })
    }
}

/// One sweep; a store error ends it early (reported, retried next time).
pub async fn sweep(deps: &RecoveryDeps) -> SweepReport {
    sweep_with(deps, None).await
}

/// A sweep; with `memo` (timed sweeps), only the leases are read when they
/// are as the last whole sweep found them and it is recent.
async fn sweep_with(
    deps: &RecoveryDeps,
    memo: Option<&std::sync::Mutex<SweepMemo>>,
) -> SweepReport {
    let mut report = SweepReport::default();
    if let Err(e) = sweep_steps(deps, &mut report, memo).await {
        report.error = Some(e.to_string());
    }
    if report.released_claims > 0 || report.no_response > 0 || report.resolved_sent > 0 {
        tracing::warn!(
            dead = ?report.dead_owners,
            released_claims = report.released_claims,
            in_doubt = report.no_response,
            resolved_sent = report.resolved_sent,
            "recovered the work of stopped daemons"
        );
    }
    report
}

async fn sweep_steps(
    deps: &RecoveryDeps,
    report: &mut SweepReport,
    memo: Option<&std::sync::Mutex<SweepMemo>>,
) -> Result<(), StoreError> {
    let stores = &deps.stores;
    let fresh = deps.config.daemon.heartbeat_interval.get() * 2;
    let server_now = stores.database_now(&deps.instance, fresh).await?;
    let leases = stores.leases.leases().await?;
    let seen: BTreeSet<(String, bool)> = leases
        .iter()
        .map(|l| (l.instance.clone(), l.live_at(server_now)))
        .collect();
    let live: HashSet<String> = seen
        .iter()
        .filter(|(_, live)| *live)
        .map(|(i, _)| i.clone())
        .collect();
    // One daemon recovers the others' work, so that two sweeps never fight
    // over the same records (their transactions would conflict): the live
    // instance with the smallest id. Every daemon recovers its own orphans.
    let leader = live.iter().min() == Some(&deps.instance.id);
    deps.instance.set_leader(leader);
    // A timed sweep that finds every lease as the last whole sweep did (no
    // daemon lapsed, stopped or appeared, so no claim or attempt changed
    // hands) and no batch given up here has nothing new to recover, except
    // what only time changes (the hard horizon, reports that could not
    // finish): those wait for the next whole sweep, at least every
    // `recovery.full_sweep_interval`.
    if let Some(memo) = memo {
        let gave_up = deps.instance.take_given_up();
        let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
        let recent =
            m.at.is_some_and(|t| t.elapsed() < deps.config.recovery.full_sweep_interval.get());
        if !gave_up && recent && m.leases.as_ref() == Some(&seen) {
            return Ok(());
        }
        // Remembered only once the whole sweep succeeded.
        m.leases = None;
        m.at = None;
    }
    recover(deps, report, server_now, &live, leader).await?;
    if let Some(memo) = memo {
        let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
        m.leases = Some(seen);
        m.at = Some(Instant::now());
    }
    Ok(())
}

/// The whole sweep after the leases were read.
async fn recover(
    deps: &RecoveryDeps,
    report: &mut SweepReport,
    server_now: Timestamp,
    live: &HashSet<String>,
    leader: bool,
) -> Result<(), StoreError> {
    let stores = &deps.stores;
    // 2. Attempts that will never be answered.
    let horizon = chrono_dur(deps.config.recovery.in_doubt_horizon.get());
    let q = UnansweredQuery {
        only_mine: !leader,
        live_owners: live.iter().cloned().collect(),
        me: deps.instance.id.clone(),
        active_tokens: deps.instance.active_tokens(),
        attempted_before: server_now - horizon,
        limit: SWEEP_LIMIT,
    };
    let orphans = stores.sent.unanswered(&q).await?;
    if !orphans.is_empty() {
        let ids: Vec<MessageId> = orphans.iter().map(|a| a.id).collect();
        let mut queued: HashMap<MessageId, QueuedTextMessage> = HashMap::new();
        for id in &ids {
            if let Some(m) = stores.queue.get(*id).await? {
                queued.insert(*id, m);
            }
        }
        let now = deps.clock.now();
        let mut by_account: BTreeMap<AccountId, Vec<Settlement>> = BTreeMap::new();
        let mut owners: HashSet<String> = HashSet::new();
        for a in &orphans {
            owners.insert(a.owner.clone());
            let item = if a.delivery_state.is_some() {
                // A report arrived before anyone recorded the send answer:
                // the provider took it.
                Settlement::Sent {
                    id: a.id,
                    at: now,
                    provider_message_id: a.provider_message_id.clone(),
                    resolved_by: Some(crate::store::RESOLVED_BY_REPORT),
                }
            } else {
                let original = queued
                    .get(&a.id)
                    .cloned()
                    .unwrap_or_else(|| outcome::original_from_attempt(a));
                let why = if live.contains(&a.owner) && a.owner != deps.instance.id {
                    "unanswered past the hard horizon"
                } else if a.owner == deps.instance.id {
                    "its batch was given up"
                } else {
                    "its daemon stopped mid-send"
                };
                outcome::in_doubt(
                    &original,
                    None,
                    format!(
                        "attempt by {} at {} was never answered ({why}); not resent",
                        a.attempt_token,
                        a.attempted_at.to_rfc3339()
                    ),
                    now,
                )
            };
            by_account.entry(a.account).or_default().push(item);
        }
        for (account, items) in by_account {
            let settled = deps
                .settle
                .send(Settle { account, items })
                .await
                .map_err(|_| StoreError::Stopped("billing actor"))??;
            report.no_response += settled.failed.len() as u64;
            report.resolved_sent += settled.sent;
        }
        crate::failpoint::hit("recovery.settled");
        // Answered now (by us or meanwhile by someone): out of the queue.
        stores.queue.remove(&ids).await?;
        crate::failpoint::hit("recovery.removed");
        report
            .dead_owners
            .extend(owners.into_iter().filter(|o| !live.contains(o)));
    }

    if !leader {
        return Ok(());
    }
    // In-doubt messages whose report arrived but whose resolution could not
    // finish with it.
    report.resolved_sent += stores
        .sent
        .resolve_reported(SWEEP_LIMIT, server_now)
        .await?
        .len() as u64;

    // 3. Claims of instances that are not live.
    let dead: Vec<String> = stores
        .queue
        .claim_owners()
        .await?
        .into_iter()
        .filter(|o| !live.contains(o))
        .collect();
    if !dead.is_empty() {
        report.released_claims = stores.queue.release_owners(&dead).await?;
        crate::failpoint::hit("recovery.released");
        if report.released_claims > 0 {
            // Ready again: this daemon's Coordinator polls at its next tick
            // (while the bus is live its timed polls may be far apart).
            deps.instance.wake_at(deps.clock.now());
        }
        for d in dead {
            if !report.dead_owners.contains(&d) {
                report.dead_owners.push(d);
            }
        }
    }
    report.dead_owners.sort();
    Ok(())
}

/// Lists with due messages whose provider no live daemon has.
pub async fn unservable_lists(
    stores: &Stores,
    now: Timestamp,
) -> Result<Vec<Unservable>, StoreError> {
    let server_now = stores.leases.server_time().await?;
    unservable_lists_at(stores, now, server_now).await
}

/// [`unservable_lists`] with the database's time already known (leases
/// are judged live by it).
pub async fn unservable_lists_at(
    stores: &Stores,
    now: Timestamp,
    server_now: Timestamp,
) -> Result<Vec<Unservable>, StoreError> {
    // Lists with ready messages first: usually none (or all claimed), and
    // then the leases need no reading.
    let due = stores.queue.due_lists(now, 10_000).await?;
    if due.is_empty() {
        return Ok(vec![]);
    }
    let can: HashSet<String> = stores
        .leases
        .leases()
        .await?
        .into_iter()
        .filter(|l| l.live_at(server_now))
        .flat_map(|l| l.providers)
        .collect();
    let mut out = Vec::new();
    for id in due {
        if let Some(list) = stores.lists.get_list(id).await? {
            let key = list.provider.key();
            if !can.contains(&key) {
                out.push(Unservable {
                    list: id,
                    provider: key,
                });
            }
        }
    }
    Ok(out)
}

async fn check_unservable_lists(deps: &RecoveryDeps) -> Result<(), StoreError> {
    // The database's time as the lease renewal last saw it (no `hello`).
    let fresh = deps.config.daemon.heartbeat_interval.get() * 2;
    let server_now = deps.stores.database_now(&deps.instance, fresh).await?;
    let found = unservable_lists_at(&deps.stores, deps.clock.now(), server_now).await?;
    for u in &found {
        tracing::error!(list = %u.list, provider = %u.provider,
            "no live daemon can send this list's messages (provider credentials missing everywhere)");
        deps.alerts
            .emit(crate::messages::AlertEvent::ListUnservable {
                list: u.list,
                provider: u.provider.clone(),
            });
    }
    *deps.unservable.write().unwrap_or_else(|e| e.into_inner()) = found;
    Ok(())
}
