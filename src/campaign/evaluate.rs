//! One page of an audience, evaluated: the filter chain for every contact
//! ([`crate::rules::eligibility`]), then for each eligible one its message:
//! variant, placeholders, tracked links, encoding and segments, cost.
//!
//! Plain functions over a page in memory (no store, no clock): the run
//! driver ([`super::run`]) reads the page and the cooldowns, calls these,
//! reserves the cooldowns and commits; the dry run ([`super::explain`])
//! calls the same functions and writes nothing. CPU-bound work, so the
//! driver runs it off the actor threads.

use super::plan::Plan;
use crate::domain::*;
use crate::rules::eligibility::{self, Candidate, Decision, SkipReason};
use crate::rules::links::rewrite_links_with;
use crate::rules::placeholders::ContactView;
use crate::rules::variants::{ArmStats, pick_weighted, thompson_pick};
use crate::store::PageCounts;
use chrono_tz::Tz;
use rand::CryptoRng;
use siphasher::sip::SipHasher24;
use std::collections::HashMap;
use std::hash::Hasher;

/// What screening decided for one contact of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Gets variant `variant` (an index into the plan's variants), sent at
    /// `send_at`, its window checked in `tz`.
    Eligible {
        send_at: Timestamp,
        tz: Tz,
        variant: usize,
    },
    Skip(SkipReason),
}

/// The chain for every contact of a page at `now`, then each eligible
/// contact's variant, skipping (`missing_field`) those who lack a value the
/// variant needs. `cooldowns` holds the send time of each contact's running
/// cooldown reservation on the list (the stored `last_sent` counts too).
pub fn screen<R: rand::Rng + ?Sized>(
    plan: &Plan,
    run: ScheduleRunId,
    contacts: &[Contact],
    cooldowns: &HashMap<ContactId, Timestamp>,
    now: Timestamp,
    rng: &mut R,
) -> Vec<Verdict> {
    let list = plan.list.id;
    let weights = plan.weights();
    contacts
        .iter()
        .map(|c| {
            let mut cand = Candidate::of(c, list);
            if let Some(at) = cooldowns.get(&c.id) {
                cand.last_sent = Some(cand.last_sent.map_or(*at, |l| l.max(*at)));
            }
            let (send_at, tz) =
                match eligibility::evaluate(&cand, &plan.list_rules, &plan.schedule_rules, now) {
                    Decision::Eligible { send_at, tz } => (send_at, tz),
                    Decision::Skip(r) => return Verdict::Skip(r),
                };
            let Some(variant) = pick_variant(plan, &weights, c.id, run, rng) else {
                // No positive weight: validation refuses such creatives.
                return Verdict::Skip(SkipReason::MissingField);
            };
            let complete = plan.variants.get(variant).is_some_and(|v| {
                v.template
                    .unresolved_without_default(&ContactView::of(c))
                    .is_empty()
            });
            if !complete {
                return Verdict::Skip(SkipReason::MissingField);
            }
            Verdict::Eligible {
                send_at,
                tz,
                variant,
            }
        })
        .collect()
}

/// Threads for a page's CPU work: one per core, parts of at least 1,024
/// contacts.
fn parts(len: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(len / 1_024).max(1)
}

/// Joins a scoped thread, passing its panic on (the work has no panicking
/// path on any input; a bug would surface, not be swallowed).
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// [`screen`] over the cores: the page split in parts screened at once
/// (each thread with its own random source), verdicts in page order.
pub fn screen_parallel(
    plan: &Plan,
    run: ScheduleRunId,
    contacts: &[Contact],
    cooldowns: &HashMap<ContactId, Timestamp>,
    now: Timestamp,
) -> Vec<Verdict> {
    let n = parts(contacts.len());
    if n == 1 {
        return screen(plan, run, contacts, cooldowns, now, &mut rand::rng());
    }
    let size = contacts.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = contacts
            .chunks(size)
            .map(|part| s.spawn(move || screen(plan, run, part, cooldowns, now, &mut rand::rng())))
            .collect();
        handles.into_iter().flat_map(join).collect()
    })
}

/// The cooldown reservations a screened page needs (none when the list has
/// no cooldown): each eligible contact from its send time for the cooldown.
pub fn cooldown_claims(
    plan: &Plan,
    contacts: &[Contact],
    verdicts: &[Verdict],
) -> Vec<crate::store::CooldownClaim> {
    if plan.list.cooldown_secs == 0 {
        return vec![];
    }
    let span = chrono::TimeDelta::seconds(
        i64::try_from(plan.list.cooldown_secs).unwrap_or(i64::MAX / 1000),
    );
    contacts
        .iter()
        .zip(verdicts)
        .filter_map(|(c, v)| match v {
            Verdict::Eligible { send_at, .. } => Some(crate::store::CooldownClaim {
                contact: c.id,
                at: *send_at,
                until: *send_at + span,
            }),
            Verdict::Skip(_) => None,
        })
        .collect()
}

/// Where a page's messages come from: the run, and the next message number.
#[derive(Debug, Clone, Copy)]
pub struct RunContext {
    pub run: ScheduleRunId,
    pub seq: u64,
    pub now: Timestamp,
}

/// A page's messages, links and counters.
#[derive(Debug, Default)]
pub struct Built {
    pub messages: Vec<QueuedTextMessage>,
    pub links: Vec<MessageShortLink>,
    pub counts: PageCounts,
    /// The message counter after this page.
    pub seq: u64,
}

/// A message id ordered by send time, then by number within the run:
/// seconds of `send_at`, four bytes of a hash of the run id, and the
/// message's 32-bit number. The queue is claimed in `_id` order, so FIFO
/// holds by send time and then by insertion order, and the numbers never
/// repeat within a run (a page that was not committed is numbered again
/// from the same checkpoint).
pub fn message_id(send_at: Timestamp, run: ScheduleRunId, seq: u64) -> MessageId {
    let mut h = SipHasher24::new_with_keys(0x6d65_7373_6167_6569, 0x6473_5f70_6572_7275);
    h.write(&run.0.bytes());
    let tag = h.finish().to_be_bytes();
    let secs = u32::try_from(send_at.timestamp().max(0)).unwrap_or(u32::MAX);
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&secs.to_be_bytes());
    b[4..8].copy_from_slice(&tag[0..4]);
    b[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
    MessageId(bson::oid::ObjectId::from_bytes(b))
}

/// Which variant a contact gets: the stable weighted split, or a Thompson
/// draw over the variants with a positive weight.
fn pick_variant<R: rand::Rng + ?Sized>(
    plan: &Plan,
    weights: &[u32],
    contact: ContactId,
    run: ScheduleRunId,
    rng: &mut R,
) -> Option<usize> {
    match &plan.arms {
        None => pick_weighted(weights, contact, run),
        Some(arms) => {
            let live: Vec<usize> = (0..plan.variants.len())
                .filter(|i| weights.get(*i).is_some_and(|w| *w > 0))
                .collect();
            let live_arms: Vec<ArmStats> = live
                .iter()
                .map(|i| arms.get(*i).copied().unwrap_or_default())
                .collect();
            thompson_pick(&live_arms, plan.exploration_floor, rng)
                .and_then(|k| live.get(k).copied())
        }
    }
}

/// [`build`] over the cores: the page split in parts built at once, each
/// numbering its messages from where the parts before it end, so the page is
/// the same as one [`build`] would make (but for the random link codes).
pub fn build_parallel(
    plan: &Plan,
    ctx: RunContext,
    contacts: &[Contact],
    verdicts: &[Verdict],
    refused: &std::collections::HashSet<ContactId>,
) -> Built {
    let n = parts(contacts.len());
    if n == 1 {
        return build(plan, ctx, contacts, verdicts, refused, &mut rand::rng());
    }
    let size = contacts.len().div_ceil(n);
    // Messages each part will number: eligible, not refused, a variant.
    let mut seq = ctx.seq;
    let mut starts = vec![];
    for (cs, vs) in contacts.chunks(size).zip(verdicts.chunks(size)) {
        starts.push(seq);
        seq += cs
            .iter()
            .zip(vs)
            .filter(|(c, v)| match v {
                Verdict::Eligible { variant, .. } => {
                    !refused.contains(&c.id) && plan.variants.get(*variant).is_some()
                }
                Verdict::Skip(_) => false,
            })
            .count() as u64;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = contacts
            .chunks(size)
            .zip(verdicts.chunks(size))
            .zip(starts)
            .map(|((cs, vs), seq)| {
                let ctx = RunContext { seq, ..ctx };
                s.spawn(move || build(plan, ctx, cs, vs, refused, &mut rand::rng()))
            })
            .collect();
        let mut out = Built {
            seq: ctx.seq,
            ..Default::default()
        };
        for h in handles {
            let part = join(h);
            out.messages.extend(part.messages);
            out.links.extend(part.links);
            out.counts.add(&part.counts);
            out.seq = part.seq;
        }
        out
    })
}

/// Builds the messages of the contacts the chain let through (in page
/// order); contacts in `refused` lost their cooldown reservation to another
/// campaign and count as `cooldown`. `verdicts[i]` belongs to `contacts[i]`.
pub fn build<R: CryptoRng + ?Sized>(
    plan: &Plan,
    ctx: RunContext,
    contacts: &[Contact],
    verdicts: &[Verdict],
    refused: &std::collections::HashSet<ContactId>,
    rng: &mut R,
) -> Built {
    let mut out = Built {
        seq: ctx.seq,
        ..Default::default()
    };
    let price = plan.account.price_per_segment;
    let from_numbers = &plan.list.from_numbers;
    out.counts.audience = contacts.len() as u64;
    let skip = |out: &mut Built, r: SkipReason| {
        *out.counts
            .skipped
            .entry(r.as_str().to_string())
            .or_default() += 1;
    };
    for (c, v) in contacts.iter().zip(verdicts) {
        let (send_at, tz, vi) = match v {
            Verdict::Skip(r) => {
                skip(&mut out, *r);
                continue;
            }
            Verdict::Eligible {
                send_at,
                tz,
                variant,
            } => (*send_at, *tz, *variant),
        };
        if refused.contains(&c.id) {
            skip(&mut out, SkipReason::Cooldown);
            continue;
        }
        let Some(variant) = plan.variants.get(vi) else {
            skip(&mut out, SkipReason::MissingField);
            continue;
        };
        let view = ContactView::of(c);
        out.counts.eligible += 1;
        let rendered = variant.template.render(&view);
        let id = message_id(send_at, ctx.run, out.seq);
        let body = match &plan.link_base {
            Some(base) => {
                let rw = rewrite_links_with(&rendered, base, rng);
                for l in rw.links {
                    out.links.push(MessageShortLink {
                        id: LinkId::new(),
                        code: l.code,
                        account: plan.account.id,
                        message: Some(id),
                        schedule: Some(plan.schedule.id),
                        run: Some(ctx.run),
                        creative: Some(plan.creative.id),
                        variant: Some(variant.key.clone()),
                        destination_url: l.destination,
                        created_at: ctx.now,
                    });
                }
                rw.body
            }
            None => rendered,
        };
        let info = sms::analyze(&body);
        let from = if from_numbers.is_empty() {
            String::new()
        } else {
            from_numbers[(out.seq % from_numbers.len() as u64) as usize].clone()
        };
        out.seq += 1;
        out.counts.queued += 1;
        let vc = out.counts.variants.entry(variant.key.clone()).or_default();
        vc.messages += 1;
        vc.segments += u64::from(info.segments);
        out.counts.cost = Money(
            out.counts
                .cost
                .0
                .saturating_add(price.times(u64::from(info.segments)).0),
        );
        out.messages.push(QueuedTextMessage {
            id,
            account: plan.account.id,
            sending_list: plan.list.id,
            contact: c.id,
            schedule: Some(plan.schedule.id),
            run: Some(ctx.run),
            creative: Some(plan.creative.id),
            variant: Some(variant.key.clone()),
            send_type: SendType::Campaign,
            from,
            to: c.phone.clone(),
            body,
            segments: info.segments,
            encoding: Some(info.encoding.as_str().to_string()),
            time_zone: Some(tz.name().to_string()),
            defer_outside_window: plan.schedule.defer_outside_window,
            send_at,
            not_before: send_at,
            claimed_by: None,
            claimed_at: None,
            claim_owner: None,
            claim_count: 0,
            attempts: 0,
            billing_blocked_since: None,
            last_error: None,
            queued_at: ctx.now,
        });
    }
    out
}
