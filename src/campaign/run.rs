//! Executing a run: the audience read page by page from the run's
//! checkpoint, each page screened, its cooldowns reserved, its messages
//! built and committed (messages, links, checkpoint and counters in one
//! transaction), then the Coordinators told through the bus that messages
//! are queued, so sending starts while evaluation goes on.
//!
//! Memory stays flat whatever the audience: one page of contacts and one
//! page of messages at a time (`scheduler.page_size`).
//!
//! Crash safety. A page is all or nothing, and only the run's owner at the
//! page's starting checkpoint can commit it. A daemon that dies mid-run
//! leaves the run `evaluating` at its last checkpoint; once its lease lapses
//! another daemon takes the run over and goes on from there: no contact is
//! queued twice, none is lost. Cooldown reservations are written before the
//! page (they carry the run, so the resumed run finds its own again).
//!
//! Store errors that pass (MongoDB away for a moment) are retried with
//! backoff while this daemon's lease holds; otherwise the run is left to be
//! resumed.

use super::evaluate::{self, RunContext};
use super::plan::Plan;
use crate::bus::{Event, SharedBus};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::metrics::Metrics;
use crate::store::{RunPage, StoreError, Stores};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What a run needs around it.
#[derive(Clone)]
pub struct RunDeps {
    pub stores: Stores,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub instance: Arc<Instance>,
    pub bus: SharedBus,
    pub metrics: Arc<Metrics>,
}

/// How a run execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every eligible contact's message is queued; the run is `queued`.
    Queued { queued: u64 },
    /// Another daemon owns the run now (it took it over).
    LostOwnership,
    /// This daemon is stopping or lost its lease: the run stays
    /// `evaluating` at its checkpoint, for a daemon to resume.
    Interrupted,
}

const COMMIT_TRIES_ON_DUPLICATE: u32 = 3;

/// Executes (or resumes) `run` with its validated `plan`, from the run's
/// checkpoint.
pub async fn execute(
    deps: &RunDeps,
    plan: Arc<Plan>,
    run: ScheduleRun,
) -> Result<Ended, StoreError> {
    let page_size = deps.config.scheduler.page_size.max(1);
    let filters = plan.filters();
    let mut cursor = run.cursor;
    let mut seq = run.seq;
    let mut queued = run.queued;
    loop {
        if deps.instance.is_shutting_down() {
            return Ok(Ended::Interrupted);
        }
        // One contact more than a page: whether it came tells whether this
        // page is the audience's last (no read of an empty page after it).
        let mut contacts = match retry(deps, "read an audience page", || {
            deps.stores.contacts.audience_page(
                plan.account.id,
                &filters,
                cursor,
                page_size.saturating_add(1),
            )
        })
        .await?
        {
            Some(c) => c,
            None => return Ok(Ended::Interrupted),
        };
        let last_page = contacts.len() <= page_size;
        contacts.truncate(page_size);
        let Some(last) = contacts.last().map(|c| c.id) else {
            break;
        };
        let now = deps.clock.now();
        let ids: Vec<ContactId> = contacts.iter().map(|c| c.id).collect();
        let cooldowns = if plan.list.cooldown_secs > 0 {
            match retry(deps, "read cooldowns", || {
                deps.stores
                    .contacts
                    .cooldowns(plan.list.id, &ids, now, Some(run.id))
            })
            .await?
            {
                Some(c) => c,
                None => return Ok(Ended::Interrupted),
            }
        } else {
            HashMap::new()
        };
        // Screening is CPU work (number parsing, zones): off the actor thread,
        // over the cores.
        let (contacts, verdicts) = {
            let plan = plan.clone();
            let run_id = run.id;
            blocking(move || {
                let v = evaluate::screen_parallel(&plan, run_id, &contacts, &cooldowns, now);
                (contacts, v)
            })
            .await?
        };
        let claims = evaluate::cooldown_claims(&plan, &contacts, &verdicts);
        let refused: HashSet<ContactId> = if claims.is_empty() {
            HashSet::new()
        } else {
            match retry(deps, "reserve cooldowns", || {
                deps.stores
                    .contacts
                    .reserve_cooldowns(plan.list.id, run.id, &claims, now)
            })
            .await?
            {
                Some(r) => {
                    crate::failpoint::hit("scheduler.cooldowns_reserved");
                    r.into_iter().collect()
                }
                None => return Ok(Ended::Interrupted),
            }
        };
        let contacts = Arc::new(contacts);
        let verdicts = Arc::new(verdicts);
        let refused = Arc::new(refused);
        let mut tries = 0;
        let committed = loop {
            tries += 1;
            let built = {
                let (plan, contacts, verdicts, refused) = (
                    plan.clone(),
                    contacts.clone(),
                    verdicts.clone(),
                    refused.clone(),
                );
                let ctx = RunContext {
                    run: run.id,
                    seq,
                    now,
                };
                blocking(move || {
                    evaluate::build_parallel(&plan, ctx, &contacts, &verdicts, &refused)
                })
                .await?
            };
            let page = RunPage {
                run: run.id,
                owner: deps.instance.id.clone(),
                from: cursor,
                to: last,
                seq: built.seq,
                messages: built.messages,
                links: built.links,
                counts: built.counts,
                // The last page finishes the run in the same write.
                finished_at: last_page.then_some(now),
            };
            let counts = page.counts.clone();
            let new_seq = page.seq;
            let earliest = page.messages.iter().map(|m| m.not_before).min();
            let res = retry(deps, "queue a page", || {
                deps.stores.schedules.commit_page(page.clone())
            })
            .await;
            match res {
                Ok(Some(())) => break Some((counts, new_seq, earliest)),
                Ok(None) => return Ok(Ended::Interrupted),
                // A short-link code (or, far less likely, a message id) was
                // taken: new codes, same page.
                Err(StoreError::Duplicate(what)) if tries < COMMIT_TRIES_ON_DUPLICATE => {
                    tracing::warn!(run = %run.id, what = %what, "page collided with an existing key; building it again");
                }
                Err(StoreError::Superseded(_)) => break None,
                Err(e) => return Err(e),
            }
        };
        let Some((counts, new_seq, earliest)) = committed else {
            tracing::warn!(run = %run.id, "another daemon took this run over; stopping here");
            return Ok(Ended::LostOwnership);
        };
        crate::failpoint::hit("scheduler.page_committed");
        seq = new_seq;
        cursor = Some(last);
        queued += counts.queued;
        deps.metrics.campaign_page(&counts);
        if counts.queued > 0 {
            let _ = deps
                .bus
                .publish(Event::Queued {
                    lists: vec![plan.list.id],
                    due: earliest,
                })
                .await;
        }
        tracing::debug!(run = %run.id, contacts = counts.audience, queued = counts.queued, "page queued");
        if last_page {
            crate::failpoint::hit("scheduler.finished");
            return Ok(Ended::Queued { queued });
        }
    }
    let at = deps.clock.now();
    match retry(deps, "finish the run", || {
        deps.stores
            .schedules
            .finish_run(run.id, &deps.instance.id, RunStatus::Queued, None, at)
    })
    .await?
    {
        Some(true) => {
            crate::failpoint::hit("scheduler.finished");
            Ok(Ended::Queued { queued })
        }
        Some(false) => Ok(Ended::LostOwnership),
        None => Ok(Ended::Interrupted),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Stopped("campaign evaluation task"))
}

/// Retries a store call that failed transiently, with backoff, while this
/// daemon may still work (lease held, not stopping). `Ok(None)`: gave up for
/// that reason (the run will be resumed).
async fn retry<T, F, Fut>(deps: &RunDeps, what: &str, mut f: F) -> Result<Option<T>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() => {
                if deps.instance.is_shutting_down() || !deps.instance.lease_valid() {
                    tracing::warn!(what, error = %e, "store unavailable and this daemon is stopping or without a lease; the run will be resumed");
                    return Ok(None);
                }
                tracing::warn!(what, error = %e, "store write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
