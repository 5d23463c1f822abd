//! # Resolver
//!
//! One per daemon; it works only on the recovery leader (the live instance
//! with the smallest id, as the last recovery sweep found), so two daemons
//! never ask a provider about the same messages. Owns: settling in-doubt
//! (NO_RESPONSE) messages by asking their provider, where the provider can
//! answer (Infobip's message logs, Twilio's Messages list; CM cannot).
//!
//! Every `resolver.interval` (or on [`ResolveNow`]; looks that find nothing
//! to ask about double the wait up to `resolver.settle_delay`, which a new
//! in-doubt message waits anyway): the open in-doubt dead
//! letters older than `resolver.settle_delay` (so the provider's records
//! have caught up), grouped by their list's provider, are looked up in
//! batches within `resolver.lookups_per_minute`. Then, per message:
//!
//! - the provider has it: `MessageSent` submitted = true with the
//!   provider's id and any delivery state it knows, its dead letter
//!   resolved (`provider_lookup`); the charge stands (it was sent);
//! - the provider has no record of it: its charge given back and, while it
//!   is within its staleness window (`worker.stale_after` from its send
//!   time), queued again under a new id for a normal send (once: the dead
//!   letter is marked requeued in the same transaction); otherwise STALE;
//! - the lookup failed: nothing changes, the messages stay in doubt, and
//!   that provider is asked again after a backoff (`resolver.retry_base`,
//!   doubling to `resolver.retry_max`). Nothing is ever guessed.
//!
//! A delivery report that arrives first resolves a message the same way
//! (DeliveryIntake). Lookups never take send permits and never wait on
//! sending.
//!
//! Restart: all its state is in the store, except the backoff (a restart
//! asks again at once) and the minute's lookup budget.

use crate::clock::{SharedClock, chrono_dur};
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::messages::{ResolveNow, ResolveReport};
use crate::metrics::Metrics;
use crate::providers::{LookupAnswer, LookupError, LookupQuery, ProviderRegistry, SharedProvider};
use crate::store::{FailedFilter, LookupNotTaken, LookupTaken, StoreError, Stores};
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ResolverDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub instance: Arc<Instance>,
    pub providers: ProviderRegistry,
    pub metrics: Arc<Metrics>,
    pub bus: crate::bus::SharedBus,
}

/// A provider's lookups that failed: when to ask again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// What the looks share: per provider backoff and the minute's budget.
#[derive(Default)]
struct Pace {
    backoff: HashMap<String, Backoff>,
    /// Messages looked up in the current minute, and when it began.
    minute: Option<(Instant, u64)>,
}

pub struct Resolver {
    deps: Arc<ResolverDeps>,
    pace: Arc<Mutex<Pace>>,
    /// A look is running: timed looks do not stack.
    looking: bool,
    /// Wait between timed looks (grows while looks find nothing).
    gap: Duration,
    last_look: Option<Instant>,
}

impl Resolver {
    pub fn new(deps: ResolverDeps) -> Self {
        Resolver {
            deps: Arc::new(deps),
            pace: Arc::default(),
            looking: false,
            gap: Duration::ZERO,
            last_look: None,
        }
    }
}

impl Actor for Resolver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !self.deps.config.resolver.enabled {
            return;
        }
        ctx.run_interval(self.deps.config.resolver.interval.get(), |act, ctx| {
            if act.looking
                || !act.deps.instance.is_leader()
                || act.deps.instance.is_shutting_down()
                || act.last_look.is_some_and(|t| t.elapsed() < act.gap)
            {
                return;
            }
            act.looking = true;
            act.last_look = Some(Instant::now());
            let (deps, pace) = (act.deps.clone(), act.pace.clone());
            ctx.spawn(
                async move { look(&deps, &pace).await }
                    .into_actor(act)
                    .map(|report, act, _| {
                        act.looking = false;
                        let cfg = &act.deps.config.resolver;
                        let base = cfg.interval.get();
                        let idle = report.error.is_none() && report.looked_up == 0;
                        act.gap = if idle {
                            (act.gap * 2).clamp(base, base.max(cfg.settle_delay.get()))
                        } else {
                            base
                        };
                        if let Some(e) = &report.error {
                            tracing::warn!(error = %e, left = report.left,
                                "in-doubt lookup failed; the messages stay in doubt and are asked about again later");
                        }
                    }),
            );
        });
    }
}

impl Handler<ResolveNow> for Resolver {
    type Result = ResponseFuture<ResolveReport>;

    fn handle(&mut self, _: ResolveNow, _: &mut Self::Context) -> Self::Result {
        let (deps, pace) = (self.deps.clone(), self.pace.clone());
        Box::pin(async move { look(&deps, &pace).await })
    }
}

/// One look over the open in-doubt messages.
async fn look(deps: &ResolverDeps, pace: &Mutex<Pace>) -> ResolveReport {
    let mut report = ResolveReport::default();
    if let Err(e) = look_steps(deps, pace, &mut report).await {
        report.error = Some(e.to_string());
    }
    if report.taken + report.resent + report.stale > 0 {
        tracing::info!(
            looked_up = report.looked_up,
            taken = report.taken,
            resent = report.resent,
            stale = report.stale,
            left = report.left,
            "in-doubt messages resolved by their provider's records"
        );
    }
    report
}

async fn look_steps(
    deps: &ResolverDeps,
    pace: &Mutex<Pace>,
    report: &mut ResolveReport,
) -> Result<(), StoreError> {
    let cfg = &deps.config.resolver;
    let now = deps.clock.now();
    let open = FailedFilter {
        reason: Some(FailureReason::NoResponse),
        open_only: true,
        // In doubt for at least the settle delay (`until` is exclusive).
        until: Some(now - chrono_dur(cfg.settle_delay.get()) + chrono::TimeDelta::milliseconds(1)),
        ..Default::default()
    };
    let letters = deps
        .stores
        .dead_letters
        .list_failed(&open, cfg.max_per_look)
        .await?;
    if letters.is_empty() {
        return Ok(());
    }
    // By list: each list's provider answers for its messages.
    let mut by_list: BTreeMap<SendingListId, Vec<FailedMessage>> = BTreeMap::new();
    for f in letters {
        if f.original.is_some() {
            by_list.entry(f.sending_list).or_default().push(f);
        }
    }
    let mut unresolvable: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, (SharedProvider, Vec<FailedMessage>)> = BTreeMap::new();
    for (list_id, letters) in by_list {
        let Some(list) = deps.stores.lists.get_list(list_id).await? else {
            report.left += letters.len() as u64;
            continue;
        };
        let key = list.provider.key();
        match deps.providers.for_settings(&list.provider) {
            Ok(p) if p.can_look_up() => {
                by_provider
                    .entry(key)
                    .or_insert_with(|| (p, vec![]))
                    .1
                    .extend(letters);
            }
            _ => {
                *unresolvable
                    .entry(list.provider.kind().as_str().to_string())
                    .or_insert(0) += letters.len() as u64;
                report.left += letters.len() as u64;
            }
        }
    }
    for kind in ["infobip", "twilio", "cm", "fake"] {
        deps.metrics
            .set_unresolvable(kind, unresolvable.get(kind).copied().unwrap_or(0));
    }
    for (key, (provider, letters)) in by_provider {
        let waiting = pace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .backoff
            .get(&key)
            .is_some_and(|b| b.until > Instant::now());
        if waiting {
            report.left += letters.len() as u64;
            continue;
        }
        for chunk in letters.chunks(provider.lookup_batch().max(1)) {
            if !take_budget(pace, cfg.lookups_per_minute, chunk.len() as u64) {
                report.left += chunk.len() as u64;
                continue;
            }
            match resolve_chunk(deps, &provider, chunk, report).await {
                Ok(()) => {
                    pace.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .backoff
                        .remove(&key);
                }
                Err(ChunkError::Lookup(e)) => {
                    deps.metrics.lookup_failures.inc();
                    report.left += chunk.len() as u64;
                    report.error = Some(format!("{key}: {e}"));
                    let mut p = pace.lock().unwrap_or_else(|e| e.into_inner());
                    let failures = p.backoff.get(&key).map_or(0, |b| b.failures) + 1;
                    let wait = cfg
                        .retry_base
                        .get()
                        .saturating_mul(1u32 << (failures - 1).min(16))
                        .min(cfg.retry_max.get());
                    p.backoff.insert(
                        key.clone(),
                        Backoff {
                            failures,
                            until: Instant::now() + wait,
                        },
                    );
                    break;
                }
                Err(ChunkError::Store(e)) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Takes `n` from this minute's lookup budget, if it has them.
fn take_budget(pace: &Mutex<Pace>, per_minute: u32, n: u64) -> bool {
    let mut p = pace.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let (start, used) = match p.minute {
        Some((start, used)) if now.duration_since(start) < Duration::from_secs(60) => (start, used),
        _ => (now, 0),
    };
    // A chunk larger than the whole budget still goes, alone in its minute.
    if used > 0 && used + n > u64::from(per_minute) {
        p.minute = Some((start, used));
        return false;
    }
    p.minute = Some((start, used + n));
    true
}

enum ChunkError {
    Lookup(LookupError),
    Store(StoreError),
}

async fn resolve_chunk(
    deps: &ResolverDeps,
    provider: &SharedProvider,
    chunk: &[FailedMessage],
    report: &mut ResolveReport,
) -> Result<(), ChunkError> {
    let ids: Vec<MessageId> = chunk.iter().map(|f| f.id).collect();
    let attempts: HashMap<MessageId, MessageSent> = deps
        .stores
        .sent
        .get_many(&ids)
        .await
        .map_err(ChunkError::Store)?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    // Only those whose attempt is still in doubt (a report may have come),
    // and young enough for the provider's records to hold (older ones stay
    // in doubt for an operator).
    let oldest = provider.lookup_horizon().map(|h| deps.clock.now() - h);
    let asked: Vec<(&FailedMessage, &QueuedTextMessage, &MessageSent)> = chunk
        .iter()
        .filter_map(|f| {
            let a = attempts.get(&f.id).filter(|a| a.in_doubt())?;
            if oldest.is_some_and(|o| a.attempted_at < o) {
                report.left += 1;
                return None;
            }
            Some((f, f.original.as_ref()?, a))
        })
        .collect();
    if asked.is_empty() {
        return Ok(());
    }
    let queries: Vec<LookupQuery> = asked
        .iter()
        .map(|(_, m, a)| LookupQuery {
            id: m.id,
            from: a.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            attempted_at: a.attempted_at,
        })
        .collect();
    deps.metrics.lookups.inc_by(queries.len() as u64);
    report.looked_up += queries.len() as u64;
    let answers = provider
        .lookup(&queries)
        .await
        .map_err(ChunkError::Lookup)?;
    if answers.len() != queries.len() {
        return Err(ChunkError::Lookup(LookupError::Failed(format!(
            "{} answers for {} queries",
            answers.len(),
            queries.len()
        ))));
    }
    let now = deps.clock.now();
    let stale_after = chrono_dur(deps.config.worker.stale_after.get());
    let mut taken = vec![];
    let mut requeued_lists = vec![];
    for ((f, m, _), answer) in asked.iter().zip(answers) {
        match answer {
            LookupAnswer::Taken {
                provider_message_id,
                delivery,
                error_code,
            } => taken.push(LookupTaken {
                id: f.id,
                provider_message_id,
                delivery,
                error_code,
            }),
            LookupAnswer::NotTaken => {
                let fresh = m.send_at + stale_after > now;
                let resend = fresh.then(|| m.resend(m.send_at, now));
                let item = LookupNotTaken { id: f.id, resend };
                if deps
                    .stores
                    .sent
                    .resolve_not_taken(item, now)
                    .await
                    .map_err(ChunkError::Store)?
                {
                    crate::failpoint::hit("resolver.not_taken");
                    if fresh {
                        report.resent += 1;
                        deps.metrics.resolved_by_lookup("resent", 1);
                        requeued_lists.push(m.sending_list);
                    } else {
                        report.stale += 1;
                        deps.metrics.resolved_by_lookup("stale", 1);
                    }
                }
            }
        }
    }
    if !taken.is_empty() {
        let done = deps
            .stores
            .sent
            .resolve_taken(taken, now)
            .await
            .map_err(ChunkError::Store)?;
        crate::failpoint::hit("resolver.taken");
        report.taken += done.len() as u64;
        deps.metrics.resolved_by_lookup("taken", done.len() as u64);
    }
    if !requeued_lists.is_empty() {
        requeued_lists.sort();
        requeued_lists.dedup();
        // A hint: the coordinators' polls find them anyway.
        let _ = deps
            .bus
            .publish(crate::bus::Event::Queued {
                due: None,
                lists: requeued_lists,
            })
            .await;
    }
    Ok(())
}
