//! Explain before sending: a dry run of a schedule that queues nothing, and
//! a preview of one creative for one contact.
//!
//! The dry run reads the audience exactly as a run would (the same pages,
//! the same screening, the same message building) and reports: the
//! contacts of each audience and of their union; how many are eligible and
//! why the others would be skipped; messages, segments and cost per variant
//! against the account's balance; how long sending takes at the list's
//! rate; and how many messages would reach their turn outside the
//! contact's window at that rate (a message queued at 20:55 local behind a
//! deep queue goes out after 21:00: the worker would then defer or drop
//! it). It differs from a run in two ways only: cooldown reservations are
//! read, not taken (a concurrent campaign may still take some), and
//! Thompson sampling draws its variants afresh.
//!
//! The timing simulation sends the eligible messages in queue order (send
//! time, then evaluation order), one every `60 / rate` seconds, none before
//! its send time. It holds one small entry per eligible message (about 24
//! bytes: a million contacts take about 24 MB); the run itself holds one
//! page at a time.

use super::evaluate::{self, RunContext};
use super::plan::{Plan, PlanError, check_creative};
use crate::domain::*;
use crate::rules::placeholders::ContactView;
use crate::rules::window::LocalWindow;
use crate::store::{StoreError, Stores};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One audience's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudienceSize {
    pub id: AudienceId,
    pub name: String,
    pub contacts: u64,
}

/// One variant's share of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantShare {
    pub key: String,
    pub messages: u64,
    pub segments: u64,
    /// Messages per encoding (`GSM-7`, `UCS-2`).
    pub encodings: BTreeMap<String, u64>,
    pub cost: Money,
}

/// The dry run's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explain {
    pub schedule: ScheduleId,
    /// The instant evaluated at.
    pub at: Timestamp,
    pub audiences: Vec<AudienceSize>,
    /// Contacts in at least one audience (each once).
    pub unique_contacts: u64,
    pub eligible: u64,
    /// Of the eligible, those queued for the start of their next window
    /// (the schedule defers contacts outside it).
    pub deferred: u64,
    pub skipped: BTreeMap<String, u64>,
    pub variants: Vec<VariantShare>,
    pub segments: u64,
    pub cost: Money,
    pub balance: Money,
    /// The balance covers the cost.
    pub affordable: bool,
    pub rate_per_minute: u32,
    /// From the first message's turn to the last one's, at the list's rate.
    pub send_seconds: f64,
    /// When the last message goes out at that rate.
    pub last_send_at: Option<Timestamp>,
    /// Messages whose turn comes outside their contact's window at that rate.
    pub outside_window_at_rate: u64,
}

/// The dry run of `plan` at `now` (writes nothing).
pub async fn explain(
    stores: &Stores,
    plan: &Plan,
    page_size: usize,
    now: Timestamp,
) -> Result<Explain, StoreError> {
    let filters = plan.filters();
    let run = ScheduleRunId::new();
    let mut audiences: Vec<AudienceSize> = plan
        .audiences
        .iter()
        .map(|a| AudienceSize {
            id: a.id,
            name: a.name.clone(),
            contacts: 0,
        })
        .collect();
    let mut unique = 0;
    let mut eligible = 0;
    let mut deferred = 0;
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let mut shares: BTreeMap<String, VariantShare> = BTreeMap::new();
    // (send time, evaluation order, zone) of every message, for the timing.
    let mut timeline: Vec<(i64, u64, Tz)> = Vec::new();
    let mut cursor = None;
    let mut seq = 0u64;
    let mut rng = rand::rng();
    loop {
        let contacts = stores
            .contacts
            .audience_page(plan.account.id, &filters, cursor, page_size.max(1) + 1)
            .await?;
        // The one contact past the page tells whether this page is the last.
        let last_page = contacts.len() <= page_size.max(1);
        let mut contacts = contacts;
        contacts.truncate(page_size.max(1));
        let Some(last) = contacts.last().map(|c| c.id) else {
            break;
        };
        cursor = Some(last);
        unique += contacts.len() as u64;
        for c in &contacts {
            for (size, a) in audiences.iter_mut().zip(&plan.audiences) {
                if a.filter.matches(c) {
                    size.contacts += 1;
                }
            }
        }
        let cooldowns = if plan.list.cooldown_secs > 0 {
            let ids: Vec<ContactId> = contacts.iter().map(|c| c.id).collect();
            stores
                .contacts
                .cooldowns(plan.list.id, &ids, now, None)
                .await?
        } else {
            HashMap::new()
        };
        let verdicts = evaluate::screen(plan, run, &contacts, &cooldowns, now, &mut rng);
        let built = evaluate::build(
            plan,
            RunContext { run, seq, now },
            &contacts,
            &verdicts,
            &HashSet::new(),
            &mut rng,
        );
        seq = built.seq;
        eligible += built.counts.eligible;
        for (k, v) in &built.counts.skipped {
            *skipped.entry(k.clone()).or_default() += v;
        }
        for m in &built.messages {
            let key = m.variant.clone().unwrap_or_default();
            let share = shares.entry(key.clone()).or_insert_with(|| VariantShare {
                key,
                messages: 0,
                segments: 0,
                encodings: BTreeMap::new(),
                cost: Money::default(),
            });
            share.messages += 1;
            share.segments += u64::from(m.segments);
            *share
                .encodings
                .entry(m.encoding.clone().unwrap_or_default())
                .or_default() += 1;
            share.cost = Money(
                share.cost.0.saturating_add(
                    plan.account
                        .price_per_segment
                        .times(u64::from(m.segments))
                        .0,
                ),
            );
            if m.send_at > now {
                deferred += 1;
            }
            let tz = m
                .time_zone
                .as_deref()
                .and_then(|z| z.parse::<Tz>().ok())
                .unwrap_or(Tz::UTC);
            timeline.push((m.send_at.timestamp_millis(), timeline.len() as u64, tz));
        }
        if last_page {
            break;
        }
    }
    let variants: Vec<VariantShare> = plan
        .variants
        .iter()
        .map(|v| {
            shares.remove(&v.key).unwrap_or(VariantShare {
                key: v.key.clone(),
                messages: 0,
                segments: 0,
                encodings: BTreeMap::new(),
                cost: Money::default(),
            })
        })
        .collect();
    let segments = variants.iter().map(|v| v.segments).sum();
    let cost = Money(
        variants
            .iter()
            .map(|v| v.cost.0)
            .fold(0i64, i64::saturating_add),
    );
    let rate = plan.list.rate_limit_per_minute;
    let (send_seconds, last_send_at, outside) =
        simulate(&mut timeline, rate, &plan.list_rules.window, now);
    Ok(Explain {
        schedule: plan.schedule.id,
        at: now,
        audiences,
        unique_contacts: unique,
        eligible,
        deferred,
        skipped,
        variants,
        segments,
        cost,
        balance: plan.account.balance,
        affordable: cost.0 <= plan.account.balance.0,
        rate_per_minute: rate,
        send_seconds,
        last_send_at,
        outside_window_at_rate: outside,
    })
}

/// Sends `timeline` in queue order at `rate` per minute from `now`: the
/// seconds from the first turn to the last, the last turn, and how many
/// turns fall outside their zone's window.
fn simulate(
    timeline: &mut [(i64, u64, Tz)],
    rate_per_minute: u32,
    window: &LocalWindow,
    now: Timestamp,
) -> (f64, Option<Timestamp>, u64) {
    if timeline.is_empty() || rate_per_minute == 0 {
        return (0.0, None, 0);
    }
    timeline.sort_unstable_by_key(|(at, order, _)| (*at, *order));
    let gap_ms = 60_000.0 / f64::from(rate_per_minute);
    let now_ms = now.timestamp_millis() as f64;
    let mut t = f64::NEG_INFINITY;
    let mut first = None;
    let mut outside = 0;
    for (at, _, tz) in timeline.iter() {
        t = if t.is_finite() {
            (t + gap_ms).max(*at as f64)
        } else {
            (*at as f64).max(now_ms)
        };
        first.get_or_insert(t);
        let turn = chrono::DateTime::from_timestamp_millis(t as i64).unwrap_or(now);
        if !window.check(turn, *tz).allowed {
            outside += 1;
        }
    }
    let first = first.unwrap_or(t);
    (
        (t - first) / 1000.0,
        chrono::DateTime::from_timestamp_millis(t as i64),
        outside,
    )
}

/// One variant as one contact would get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub variant: String,
    pub text: String,
    pub encoding: String,
    pub segments: u32,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub code_units: u32,
    /// Tracked links as they would be replaced (example codes).
    pub links: Vec<PreviewLink>,
    /// Placeholders this contact has no value for and no default: the run
    /// would skip the contact (`missing_field`).
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewLink {
    pub short: String,
    pub destination: String,
}

/// Every variant of `creative` rendered for `contact`, with short links made
/// on `link_base` when the creative tracks links.
pub fn preview(
    creative: &MessageCreative,
    contact: &Contact,
    link_base: &str,
) -> Result<Vec<Preview>, PlanError> {
    let variants = check_creative(creative)?;
    let view = ContactView::of(contact);
    let base = link_base.trim_end_matches('/');
    Ok(variants
        .iter()
        .map(|v| {
            let rendered = v.template.render(&view);
            let (text, links) = if creative.track_links {
                let rw = crate::rules::links::rewrite_links(&rendered, base);
                let links = rw
                    .links
                    .iter()
                    .map(|l| PreviewLink {
                        short: format!("{base}/l/{}", l.code),
                        destination: l.destination.clone(),
                    })
                    .collect();
                (rw.body, links)
            } else {
                (rendered, vec![])
            };
            let info = sms::analyze(&text);
            Preview {
                variant: v.key.clone(),
                encoding: info.encoding.as_str().to_string(),
                segments: info.segments,
                code_units: info.code_units,
                missing: v.template.unresolved_without_default(&view),
                text,
                links,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_simulation_counts_turns_past_the_window_at_the_rate() {
        let window = LocalWindow::new(
            chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            chrono::NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
        )
        .unwrap();
        // 20:55 in New York (EST, UTC−5) on 2026-12-01.
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 2, 1, 55, 0).unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        // 600 messages at 60 a minute: ten minutes, the last five outside.
        let mut timeline: Vec<(i64, u64, Tz)> =
            (0..600).map(|i| (now.timestamp_millis(), i, tz)).collect();
        let (secs, last, outside) = simulate(&mut timeline, 60, &window, now);
        assert!((secs - 599.0).abs() < 1e-6, "{secs}");
        assert_eq!(last, Some(now + chrono::Duration::seconds(599)));
        assert_eq!(outside, 300);
        // At 6,000 a minute they all go out in a minute: none outside.
        let (_, _, outside) = simulate(&mut timeline, 6_000, &window, now);
        assert_eq!(outside, 0);
    }
}
