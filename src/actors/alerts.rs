//! # Alerts
//!
//! One per daemon (when `alerts.enabled`). Owns: turning what happened into
//! Discord alerts on the list's Discord webhook (or else the account's), at
//! most one message per list and window, sent by exactly one daemon.
//!
//! Handles: [`AlertEvent`], sent with a bounded `try_send` by the Worker
//! (outcomes of each chunk, billing-blocked accounts), DeadLetter
//! (pre-send failures), DeliveryIntake (failed delivery reports), Recovery
//! (lists no daemon can serve) and the Scheduler (runs that failed
//! validation). Handling an event only adds to counters in memory.
//!
//! Every `alerts.flush_interval` it adds what it counted to shared **alert
//! windows** in the store (one upsert per window: `$inc`), keyed
//! `list:<list>:<window start>` for a list's outcomes, so that every daemon
//! adds to the same document; a window that closes within the next flush is
//! counted into the current one instead. One-off alerts get a key of their
//! own: `billing:<account>:<bucket>` and `unservable:<list>:<bucket>`
//! (`bucket`: `alerts.repeat_after`), `run:<run>`; so that two buckets'
//! windows are not both said within `repeat_after`, the daemon that claims
//! one first holds its subject (`hold:billing:<account>`, atomic) for
//! `repeat_after`, and a window claimed within the hold is not sent. A window can be claimed
//! once `closes_at` (its end plus `alerts.grace`) has passed; the claim is
//! atomic, so exactly one daemon gets it, and that daemon sends it. A daemon
//! claims when its own windows close, and every `alerts.window` looks for
//! windows whose daemon died before claiming them.
//!
//! From one claimed list window: a failure alert (counts by reason, the
//! most frequent provider codes, failed delivery reports), a spam alert
//! (Twilio 30007, CM 401, Infobip codes naming spam), a provider-outage
//! alert (transient + in-doubt answers at or above `outage_threshold`), and
//! the error rate over the last `error_rate_windows` windows against
//! `error_rate_threshold` (at least `min_sample` messages): the list's
//! state (alerting or not) is a flag in the store, swapped atomically, so
//! the high-error alert and the recovery notice each go once per change.
//! All of one window's alerts go in one message (one embed each).
//!
//! Posting (a future of its own, never in a handler): the webhook disabled
//! flag (set after a 404 or 401, by whichever daemon saw it) is read; the
//! per-webhook budget (`per_webhook_per_minute`, a shared counter per
//! minute) is spent or the alert dropped and counted, the next message
//! saying how many; the URL is vetted again by the SSRF rule and the
//! request pinned to the vetted addresses; a 429 waits `retry_after` (up to
//! `max_retry_after`); 5xx and network errors are tried three times.
//!
//! Restart: counts not yet added to the store are lost (at most one
//! `flush_interval`; a clean shutdown writes them, [`FlushAlerts`]); windows in the store are claimed by any daemon once
//! they close. A daemon that dies after claiming a window and before
//! posting loses that alert: alerts are at most once, never repeated.

use crate::clock::SharedClock;
use crate::config::AlertsConfig;
use crate::domain::alert::{counter, counter_name};
use crate::domain::*;
use crate::messages::{AlertEvent, FailureItem, FlushAlerts};
use crate::metrics::Metrics;
use crate::net::discord::{self, Answer, Embed, colour};
use crate::net::outbound_url::OutboundPolicy;
use crate::store::Stores;
use crate::telemetry::{Secret, mask_url};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Events waiting in the mailbox beyond this are dropped (and counted).
pub const MAILBOX: usize = 4096;
/// Windows claimed per look.
const CLAIM_BATCH: usize = 16;
/// Distinct provider codes counted per window in memory; more go under
/// `other`.
const MAX_CODES: usize = 50;
/// Failed delivery reports waiting for their lists to be read.
const MAX_REPORTS: usize = 100_000;
/// Most bytes of a Discord answer read (a 429's `retry_after`, an error
/// code): the URL is customer input.
const MAX_ANSWER: usize = 64 * 1024;

pub struct AlertsDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: AlertsConfig,
    /// The admin surface's outbound-URL rule (`[customer_webhooks]`).
    pub policy: OutboundPolicy,
    pub metrics: Arc<Metrics>,
    /// This instance's id (the claimer recorded on windows).
    pub instance: String,
}

pub struct Alerts {
    deps: Arc<AlertsDeps>,
    /// Counts not yet in the store, by window id.
    pending: HashMap<String, AlertWindow>,
    /// Failed delivery reports whose list is still to be read.
    reports: Vec<(MessageId, DeliveryState, Option<String>)>,
    /// One-off windows this daemon already added (not added again).
    once: HashSet<String>,
    flushing: bool,
    claiming: bool,
    /// The earliest `closes_at` of windows this daemon added to.
    due: Option<Timestamp>,
    /// When this daemon last looked for any closed window.
    last_look: Option<Timestamp>,
}

impl Alerts {
    pub fn new(deps: AlertsDeps) -> Self {
        Alerts {
            deps: Arc::new(deps),
            pending: HashMap::new(),
            reports: Vec::new(),
            once: HashSet::new(),
            flushing: false,
            claiming: false,
            due: None,
            last_look: None,
        }
    }

    fn window(&self) -> chrono::Duration {
        crate::clock::chrono_dur(self.deps.config.window.get())
    }

    /// This list's window in memory for `now`.
    fn list_window(
        &mut self,
        account: AccountId,
        list: SendingListId,
        now: Timestamp,
    ) -> &mut AlertWindow {
        let cfg = &self.deps.config;
        let start = window_start(now, cfg.window.get());
        let id = format!("list:{}:{}", list.to_hex(), start.timestamp_millis());
        let closes_at = start + self.window() + crate::clock::chrono_dur(cfg.grace.get());
        self.pending
            .entry(id.clone())
            .or_insert_with(|| AlertWindow {
                id,
                kind: AlertKind::List,
                account: Some(account),
                list: Some(list),
                window_start: start,
                closes_at,
                counts: Default::default(),
                detail: None,
                claimed_by: None,
            })
    }

    /// A one-off window, added once per key by this daemon.
    fn once(&mut self, w: AlertWindow) {
        if self.once.len() > 10_000 {
            self.once.clear();
        }
        if !self.once.insert(w.id.clone()) {
            return;
        }
        match self.pending.get_mut(&w.id) {
            Some(p) => p.merge(&w),
            None => {
                self.pending.insert(w.id.clone(), w);
            }
        }
    }

    fn bucket(&self, now: Timestamp) -> i64 {
        window_start(now, self.deps.config.repeat_after.get()).timestamp_millis()
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.deps.clock.now();
        if !self.flushing && (!self.pending.is_empty() || !self.reports.is_empty()) {
            self.flush(now, ctx);
        }
        let look = self.due.is_some_and(|d| d <= now)
            || self.last_look.is_none_or(|l| now - l >= self.window());
        if !self.claiming && look {
            self.claim(now, ctx);
        }
    }

    /// Add what this daemon counted to the shared windows.
    fn flush(&mut self, now: Timestamp, ctx: &mut Context<Self>) {
        self.flushing = true;
        let soon = now + crate::clock::chrono_dur(self.deps.config.flush_interval.get());
        let mut batch: Vec<AlertWindow> = Vec::with_capacity(self.pending.len());
        let mut late: Vec<AlertWindow> = Vec::new();
        for (_, w) in self.pending.drain() {
            // A list window about to be claimed would lose these counts:
            // they go into the current window instead.
            if w.kind == AlertKind::List && w.closes_at <= soon {
                late.push(w);
            } else {
                batch.push(w);
            }
        }
        for w in late {
            if let (Some(account), Some(list)) = (w.account, w.list) {
                self.list_window(account, list, now).merge(&w);
            }
        }
        batch.extend(self.pending.drain().map(|(_, w)| w));
        let reports = std::mem::take(&mut self.reports);
        let deps = self.deps.clone();
        let fut = async move {
            if !reports.is_empty() {
                match report_windows(&deps, reports, now).await {
                    Ok(ws) => batch.extend(ws),
                    Err(e) => {
                        deps.metrics.alerts_dropped.inc();
                        tracing::warn!(error = %e, "failed delivery reports not counted for alerts (their records were not read)");
                    }
                }
            }
            let mut kept = Vec::new();
            let mut due: Option<Timestamp> = None;
            let mut failed = false;
            for w in batch {
                if failed {
                    kept.push(w);
                    continue;
                }
                let closes = w.closes_at;
                match deps.stores.alerts.add_to_alert_window(w.clone()).await {
                    Ok(()) => {
                        crate::failpoint::hit("alerts.counted");
                        due = Some(due.map_or(closes, |d| d.min(closes)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, window = %w.id, "alert counts not written; kept for the next flush");
                        failed = true;
                        kept.push(w);
                    }
                }
            }
            (kept, due)
        };
        ctx.spawn(fut.into_actor(self).map(|(kept, due), a, _| {
            a.flushing = false;
            if let Some(d) = due {
                a.due = Some(a.due.map_or(d, |x| x.min(d)));
            }
            // Put back what was not written, merged with what came since
            // (bounded: one window per list and window start).
            for w in kept {
                if a.pending.len() >= 10_000 {
                    a.deps.metrics.alerts_dropped.inc();
                    continue;
                }
                match a.pending.get_mut(&w.id) {
                    Some(p) => p.merge(&w),
                    None => {
                        a.pending.insert(w.id.clone(), w);
                    }
                }
            }
        }));
    }

    /// Claim closed windows and send them.
    fn claim(&mut self, now: Timestamp, ctx: &mut Context<Self>) {
        self.claiming = true;
        self.last_look = Some(now);
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
        }
        let deps = self.deps.clone();
        let fut = async move {
            let claimed = match deps
                .stores
                .alerts
                .claim_alert_windows(now, &deps.instance, CLAIM_BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "alert windows not claimed; looking again later");
                    return Some(now);
                }
            };
            let full = claimed.len() >= CLAIM_BATCH;
            if !claimed.is_empty() {
                crate::failpoint::hit("alerts.claimed");
            }
            for w in claimed {
                // Each on its own: a webhook that asks to wait (429) or a
                // slow one delays only its own alert.
                actix::spawn(deliver(deps.clone(), w));
            }
            full.then_some(now)
        };
        ctx.spawn(fut.into_actor(self).map(|again, a, _| {
            a.claiming = false;
            if let Some(t) = again {
                a.due = Some(a.due.map_or(t, |d| d.min(t)));
            }
        }));
    }
}

impl Actor for Alerts {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(self.deps.config.flush_interval.get(), |a, ctx| a.tick(ctx));
    }
}

impl Handler<FlushAlerts> for Alerts {
    type Result = ResponseFuture<()>;

    /// At shutdown: what this daemon counted goes to the shared windows now
    /// (another daemon sends them once they close).
    fn handle(&mut self, _: FlushAlerts, _: &mut Self::Context) -> Self::Result {
        let batch: Vec<AlertWindow> = self.pending.drain().map(|(_, w)| w).collect();
        let deps = self.deps.clone();
        Box::pin(async move {
            for w in batch {
                if let Err(e) = deps.stores.alerts.add_to_alert_window(w).await {
                    tracing::warn!(error = %e, "alert counts not written at shutdown");
                    return;
                }
            }
        })
    }
}

impl Handler<AlertEvent> for Alerts {
    type Result = ();

    fn handle(&mut self, ev: AlertEvent, _: &mut Self::Context) {
        let now = self.deps.clock.now();
        match ev {
            AlertEvent::Outcomes {
                account,
                list,
                sent,
                transient,
                failures,
            } => {
                let w = self.list_window(account, list, now);
                add_outcomes(w, sent, transient, &failures);
            }
            AlertEvent::ReportsFailed { items } => {
                let room = MAX_REPORTS.saturating_sub(self.reports.len());
                if items.len() > room {
                    self.deps.metrics.alerts_dropped.inc();
                }
                self.reports.extend(items.into_iter().take(room));
            }
            AlertEvent::BillingBlocked {
                account,
                list,
                messages,
            } => {
                let id = format!("billing:{}:{}", account.to_hex(), self.bucket(now));
                let mut w = one_off(
                    id,
                    AlertKind::BillingBlocked,
                    Some(account),
                    Some(list),
                    now,
                );
                w.add(counter::BLOCKED, messages as i64);
                // Counted every time; the window is added once (below) and
                // its count is what this daemon saw before.
                match self.pending.get_mut(&w.id) {
                    Some(p) => p.merge(&w),
                    None => self.once(w),
                }
            }
            AlertEvent::ListUnservable { list, provider } => {
                let id = format!("unservable:{}:{}", list.to_hex(), self.bucket(now));
                let mut w = one_off(id, AlertKind::Unservable, None, Some(list), now);
                w.detail = Some(discord::cut(&provider, 200));
                self.once(w);
            }
            AlertEvent::RunFailed {
                account,
                list,
                schedule,
                run,
                reason,
            } => {
                let id = format!("run:{}", run.to_hex());
                let mut w = one_off(id, AlertKind::RunFailed, Some(account), Some(list), now);
                w.detail = Some(discord::cut(&reason, 900));
                w.add(format!("s:{}", schedule.to_hex()), 1);
                self.once(w);
            }
        }
    }
}

/// The start of the window of length `len` that holds `t` (aligned to the
/// epoch, so every daemon computes the same).
pub fn window_start(t: Timestamp, len: Duration) -> Timestamp {
    let ms = (len.as_millis() as i64).max(1);
    let start = t.timestamp_millis().div_euclid(ms) * ms;
    chrono::DateTime::from_timestamp_millis(start).unwrap_or(t)
}

fn one_off(
    id: String,
    kind: AlertKind,
    account: Option<AccountId>,
    list: Option<SendingListId>,
    now: Timestamp,
) -> AlertWindow {
    AlertWindow {
        id,
        kind,
        account,
        list,
        window_start: now,
        closes_at: now,
        counts: Default::default(),
        detail: None,
        claimed_by: None,
    }
}

fn add_outcomes(w: &mut AlertWindow, sent: u64, transient: u64, failures: &[FailureItem]) {
    w.add(counter::SENT, sent as i64);
    w.add(counter::TRANSIENT, transient as i64);
    for f in failures {
        w.add(counter_name(counter::REASON, f.reason.as_str()), 1);
        if f.reason == FailureReason::NoResponse {
            w.add(counter::IN_DOUBT, 1);
        }
        if let Some(code) = f.provider_code.as_deref().filter(|c| !c.is_empty()) {
            add_code(w, code);
        }
    }
}

fn add_code(w: &mut AlertWindow, code: &str) {
    let name = counter_name(counter::CODE, code);
    let codes = w.with_prefix(counter::CODE).count();
    if codes >= MAX_CODES && !w.counts.contains_key(&name) {
        w.add(counter_name(counter::CODE, "other"), 1);
    } else {
        w.add(name, 1);
    }
}

/// Failed delivery reports into their lists' current windows (one read of
/// their records).
async fn report_windows(
    deps: &AlertsDeps,
    reports: Vec<(MessageId, DeliveryState, Option<String>)>,
    now: Timestamp,
) -> Result<Vec<AlertWindow>, crate::store::StoreError> {
    let mut records = HashMap::new();
    let ids: Vec<MessageId> = reports.iter().map(|r| r.0).collect();
    for chunk in ids.chunks(1000) {
        for r in deps.stores.sent.get_many(chunk).await? {
            records.insert(r.id, (r.account, r.sending_list));
        }
    }
    let start = window_start(now, deps.config.window.get());
    let closes_at = start
        + crate::clock::chrono_dur(deps.config.window.get())
        + crate::clock::chrono_dur(deps.config.grace.get());
    let mut out: HashMap<SendingListId, AlertWindow> = HashMap::new();
    for (id, state, code) in reports {
        let Some((account, list)) = records.get(&id).copied() else {
            continue;
        };
        let w = out.entry(list).or_insert_with(|| AlertWindow {
            id: format!("list:{}:{}", list.to_hex(), start.timestamp_millis()),
            kind: AlertKind::List,
            account: Some(account),
            list: Some(list),
            window_start: start,
            closes_at,
            counts: Default::default(),
            detail: None,
            claimed_by: None,
        });
        w.add(counter_name(counter::REPORT, state.as_str()), 1);
        if let Some(c) = code.as_deref().filter(|c| !c.is_empty()) {
            add_code(w, c);
        }
    }
    Ok(out.into_values().collect())
}

/// Whether a provider code means the message was filtered as spam
/// (shared/reference/providers.md): Twilio 30007 (carrier filtering), CM
/// 401 (spam filtered), Infobip statuses and errors whose name says spam.
/// The fake provider (tests, demo) uses Twilio's code.
pub fn is_spam(provider: ProviderKind, code: &str) -> bool {
    let code = code.trim();
    match provider {
        ProviderKind::Twilio | ProviderKind::Fake => {
            code == "30007" || code.to_ascii_uppercase().contains("SPAM")
        }
        ProviderKind::Cm => code == "401",
        ProviderKind::Infobip => code.to_ascii_uppercase().contains("SPAM"),
    }
}

/// A short, stable id of a webhook URL (for its state in the store and
/// logs): the URL itself is a credential and is never stored twice.
pub fn hook_id(url: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(url.trim().as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Send one claimed window.
async fn deliver(deps: Arc<AlertsDeps>, w: AlertWindow) {
    if !repeat_allowed(&deps, &w).await {
        return;
    }
    let built = match build(&deps, &w).await {
        Ok(b) => b,
        Err(e) => {
            deps.metrics.alerts_dropped.inc();
            tracing::warn!(error = %e, window = %w.id, "alert not built (store unavailable); it is not sent");
            return;
        }
    };
    let Some((account, url, embeds, kinds)) = built else {
        return;
    };
    post(&deps, account, &url, embeds, &kinds).await;
}

/// A billing-blocked account or an unservable list is said once per
/// `alerts.repeat_after`, whatever buckets the windows fell in: the first
/// claimed window holds its subject that long; a later one within the hold
/// is not sent. Other kinds are not held (a list window is once per window,
/// a failed run once per run).
async fn repeat_allowed(deps: &AlertsDeps, w: &AlertWindow) -> bool {
    let subject = match (w.kind, w.account, w.list) {
        (AlertKind::BillingBlocked, Some(account), _) => format!("billing:{}", account.to_hex()),
        (AlertKind::Unservable, _, Some(list)) => format!("unservable:{}", list.to_hex()),
        _ => return true,
    };
    let now = deps.clock.now();
    let until = now + crate::clock::chrono_dur(deps.config.repeat_after.get());
    match deps
        .stores
        .alerts
        .hold_alert(&format!("hold:{subject}"), now, until)
        .await
    {
        Ok(true) => {
            crate::failpoint::hit("alerts.held");
            true
        }
        Ok(false) => {
            tracing::debug!(window = %w.id, "alert not repeated: the same one went less than alerts.repeat_after ago");
            false
        }
        Err(e) => {
            deps.metrics.alerts_dropped.inc();
            tracing::warn!(error = %e, window = %w.id, "alert not sent: its repeat hold could not be written");
            false
        }
    }
}

type Built = Option<(AccountId, Secret, Vec<Embed>, Vec<&'static str>)>;

/// The embeds for a window, and where they go (`None`: nothing to say, or
/// nowhere to say it).
async fn build(deps: &AlertsDeps, w: &AlertWindow) -> Result<Built, crate::store::StoreError> {
    let stores = &deps.stores;
    let list = match w.list {
        Some(l) => stores.lists.get_list(l).await?,
        None => None,
    };
    let Some(account_id) = w.account.or(list.as_ref().map(|l| l.account)) else {
        return Ok(None);
    };
    let Some(account) = stores.accounts.get_account(account_id).await? else {
        return Ok(None);
    };
    // The list's webhook before the account's; an account's own alert
    // (billing) the other way round.
    let of_list = list.as_ref().and_then(|l| l.discord_webhook_url.clone());
    let of_account = account.discord_webhook_url.clone();
    let url = match w.kind {
        AlertKind::BillingBlocked => of_account.or(of_list),
        _ => of_list.or(of_account),
    };
    let Some(url) = url else {
        return Ok(None);
    };
    let list_name = |fallback: Option<SendingListId>| match (&list, fallback) {
        (Some(l), _) => format!("{} ({})", l.name, l.id),
        (None, Some(id)) => format!("list {id}"),
        (None, None) => "—".into(),
    };
    let footer = format!("account {} · {}", account.id, w.id);
    let mut embeds = Vec::new();
    let mut kinds = Vec::new();
    match w.kind {
        AlertKind::List => {
            let Some(list) = &list else {
                return Ok(None);
            };
            list_embeds(deps, w, list, &footer, &mut embeds, &mut kinds).await?;
        }
        AlertKind::BillingBlocked => {
            embeds.push(
                Embed::new(format!("Account billing-blocked: {}", account.name), colour::RED)
                    .description(
                        "The balance does not cover these messages. They are retried after the billing backoff and dead-lettered BILLING_BLOCKED when the billing TTL runs out. Top up the account to release them.",
                    )
                    .field("Balance", account.balance.to_string(), true)
                    .field("Messages blocked", w.count(counter::BLOCKED).max(1).to_string(), true)
                    .field("Seen first on", list_name(w.list), false)
                    .footer(footer)
                    .timestamp(w.window_start),
            );
            kinds.push("billing_blocked");
        }
        AlertKind::Unservable => {
            embeds.push(
                Embed::new(
                    format!("No daemon can serve {}", list_name(w.list)),
                    colour::RED,
                )
                .description(
                    "Messages are due on this list, but no live daemon has credentials for its provider. They wait in the queue (and may go stale) until a daemon that has them runs.",
                )
                .field("Provider", w.detail.clone().unwrap_or_default(), true)
                .footer(footer)
                .timestamp(w.window_start),
            );
            kinds.push("unservable");
        }
        AlertKind::RunFailed => {
            let schedule = match w.with_prefix("s:").next() {
                Some((id, _)) => match id.parse::<ScheduleId>() {
                    Ok(s) => stores
                        .schedules
                        .get_schedule(s)
                        .await?
                        .map(|s| format!("{} ({})", s.name, s.id))
                        .unwrap_or_else(|| format!("schedule {s}")),
                    Err(_) => "—".into(),
                },
                None => "—".into(),
            };
            let run = w.id.strip_prefix("run:").unwrap_or(&w.id).to_string();
            embeds.push(
                Embed::new("Campaign run failed validation", colour::RED)
                    .description("The run ended `failed`: nothing was queued.")
                    .field("Schedule", schedule, false)
                    .field("List", list_name(w.list), true)
                    .field("Run", run, true)
                    .field("Reason", w.detail.clone().unwrap_or_default(), false)
                    .footer(footer)
                    .timestamp(w.window_start),
            );
            kinds.push("run_failed");
        }
    }
    if embeds.is_empty() {
        return Ok(None);
    }
    Ok(Some((account.id, url, embeds, kinds)))
}

async fn list_embeds(
    deps: &AlertsDeps,
    w: &AlertWindow,
    list: &SendingList,
    footer: &str,
    embeds: &mut Vec<Embed>,
    kinds: &mut Vec<&'static str>,
) -> Result<(), crate::store::StoreError> {
    let cfg = &deps.config;
    let provider = list.provider.kind();
    let name = format!("{} ({})", list.name, list.id);
    let window_end = w.window_start + crate::clock::chrono_dur(cfg.window.get());
    let span = format!(
        "{} – {} UTC",
        w.window_start.format("%Y-%m-%d %H:%M:%S"),
        window_end.format("%H:%M:%S")
    );
    let reasons: Vec<(&str, i64)> = w
        .with_prefix(counter::REASON)
        .filter(|(_, n)| *n > 0)
        .collect();
    let reports: Vec<(&str, i64)> = w
        .with_prefix(counter::REPORT)
        .filter(|(_, n)| *n > 0)
        .collect();
    let failed: i64 = reasons.iter().map(|(_, n)| n).sum();
    let reported: i64 = reports.iter().map(|(_, n)| n).sum();
    let mut codes: Vec<(&str, i64)> = w
        .with_prefix(counter::CODE)
        .filter(|(_, n)| *n > 0)
        .collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top = |codes: &[(&str, i64)]| -> String {
        codes
            .iter()
            .take(cfg.top_codes)
            .map(|(c, n)| format!("`{c}` × {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    };

    if failed + reported > 0 {
        let mut e = Embed::new(format!("Delivery failures: {name}"), colour::ORANGE).description(
            format!(
                "{failed} message(s) dead-lettered and {reported} failed delivery report(s) in {span}."
            ),
        );
        for (r, n) in &reasons {
            e = e.field(*r, n.to_string(), true);
        }
        if !reports.is_empty() {
            let v = reports
                .iter()
                .map(|(s, n)| format!("{s} × {n}"))
                .collect::<Vec<_>>()
                .join("\n");
            e = e.field("Failed delivery reports", v, false);
        }
        if !codes.is_empty() {
            e = e.field(
                format!("Top provider codes ({})", provider.as_str()),
                top(&codes),
                false,
            );
        }
        embeds.push(e.footer(footer).timestamp(w.window_start));
        kinds.push("failures");
    }

    let spam: Vec<(&str, i64)> = codes
        .iter()
        .copied()
        .filter(|(c, _)| is_spam(provider, c))
        .collect();
    let spam_total: i64 = spam.iter().map(|(_, n)| n).sum();
    if spam_total > 0 {
        embeds.push(
            Embed::new(format!("Spam filtering: {name}"), colour::RED)
                .description(format!(
                    "{spam_total} message(s) were filtered as spam by the carrier or {} in {span}. Review the content and the sender numbers before sending more.",
                    provider.as_str()
                ))
                .field("Codes", top(&spam), false)
                .footer(footer)
                .timestamp(w.window_start),
        );
        kinds.push("spam");
    }

    let transient = w.count(counter::TRANSIENT);
    let in_doubt = w.count(counter::IN_DOUBT);
    if (transient + in_doubt) as u64 >= cfg.outage_threshold {
        embeds.push(
            Embed::new(
                format!("Provider trouble: {} on {name}", provider.as_str()),
                colour::RED,
            )
            .description(format!(
                "{} transient error(s) and in-doubt answer(s) in {span} (threshold {}). Transient ones are retried; in-doubt ones (NO_RESPONSE) are never resent and wait for a report or a lookup.",
                transient + in_doubt,
                cfg.outage_threshold
            ))
            .field("Transient (retried)", transient.to_string(), true)
            .field("In doubt", in_doubt.to_string(), true)
            .footer(footer)
            .timestamp(w.window_start),
        );
        kinds.push("outage");
    }

    // The error rate over the sliding window ending with this one.
    let windows = cfg.error_rate_windows.max(1);
    let from = w.window_start - crate::clock::chrono_dur(cfg.window.get() * (windows - 1));
    let recent = deps
        .stores
        .alerts
        .list_alert_windows(list.id, from, w.window_start)
        .await?;
    let mut sent = 0i64;
    let mut bad = 0i64;
    for r in recent
        .iter()
        .filter(|r| r.id != w.id)
        .chain(std::iter::once(w))
    {
        sent += r.count(counter::SENT);
        bad += r.with_prefix(counter::REASON).map(|(_, n)| n).sum::<i64>();
    }
    let total = sent + bad;
    if total > 0 && total as u64 >= cfg.min_sample {
        let rate = bad as f64 / total as f64;
        let flag = format!("error_rate:{}", list.id.to_hex());
        let over = rate >= cfg.error_rate_threshold;
        let changed = deps
            .stores
            .alerts
            .swap_alert_flag(&flag, !over, over)
            .await?;
        if changed {
            crate::failpoint::hit("alerts.flagged");
            let minutes = humantime::format_duration(cfg.window.get() * windows);
            let pct = |x: f64| format!("{:.1}%", x * 100.0);
            let e = if over {
                kinds.push("error_rate");
                Embed::new(format!("High error rate: {name}"), colour::RED).description(format!(
                    "{} of messages failed over the last {minutes} (threshold {}).",
                    pct(rate),
                    pct(cfg.error_rate_threshold)
                ))
            } else {
                kinds.push("recovered");
                Embed::new(format!("Error rate recovered: {name}"), colour::GREEN).description(
                    format!(
                        "The failure rate is back to {} over the last {minutes} (threshold {}).",
                        pct(rate),
                        pct(cfg.error_rate_threshold)
                    ),
                )
            };
            embeds.push(
                e.field("Failed", bad.to_string(), true)
                    .field("Sent", sent.to_string(), true)
                    .footer(footer)
                    .timestamp(w.window_start),
            );
        }
    }
    Ok(())
}

/// Post `embeds` to the webhook, within its budget.
async fn post(
    deps: &AlertsDeps,
    account: AccountId,
    url: &Secret,
    mut embeds: Vec<Embed>,
    kinds: &[&'static str],
) {
    let cfg = &deps.config;
    let store = &deps.stores.alerts;
    let hook = hook_id(url.expose());
    let masked = mask_url(url.expose());
    let kind = kinds.join(",");
    let disabled_key = format!("discord_disabled:{hook}");
    match store.alert_flag(&disabled_key).await {
        Ok(true) => {
            tracing::debug!(account = %account, webhook = %masked, hook = %hook, kind = %kind, "Discord webhook disabled (it answered 404/401): alert not sent");
            return;
        }
        Ok(false) => {}
        Err(e) => {
            deps.metrics.alerts_dropped.inc();
            tracing::warn!(error = %e, account = %account, kind = %kind, "alert not sent: webhook state not read");
            return;
        }
    }
    let now = deps.clock.now();
    let minute = window_start(now, Duration::from_secs(60));
    let budget_key = format!("budget:{hook}:{}", minute.timestamp_millis());
    let suppressed_key = format!("suppressed:{hook}");
    let spent = store
        .bump_alert_counter(&budget_key, 1, minute + chrono::Duration::minutes(2))
        .await;
    match spent {
        Ok(n) if n > i64::from(cfg.per_webhook_per_minute) => {
            deps.metrics.alerts_dropped.inc();
            let _ = store
                .bump_alert_counter(&suppressed_key, 1, now + chrono::Duration::days(7))
                .await;
            tracing::warn!(account = %account, webhook = %masked, hook = %hook, kind = %kind,
                budget = cfg.per_webhook_per_minute, "Discord alert dropped: the webhook's budget for this minute is spent");
            return;
        }
        Ok(_) => {}
        Err(e) => {
            // The budget cannot be judged: better one alert too many.
            tracing::warn!(error = %e, "alert budget not read; sending anyway");
        }
    }
    if let Ok(n) = store.take_alert_counter(&suppressed_key).await
        && n > 0
        && let Some(first) = embeds.first_mut()
    {
        first.fields.push(discord::Field {
            name: "Dropped earlier".into(),
            value: format!("{n} alert(s) to this webhook were dropped by its per-minute budget"),
            inline: false,
        });
    }
    let vetted = match deps.policy.vet(url.expose()).await {
        Ok(v) => v,
        Err(refusal) => {
            deps.metrics.alerts_dropped.inc();
            tracing::warn!(account = %account, webhook = %masked, reason = %refusal, kind = %kind,
                "Discord webhook URL refused at send time by the outbound-URL rule: alert not sent");
            return;
        }
    };
    let mut builder = reqwest::Client::builder()
        .timeout(cfg.request_timeout.get())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("trackly-alerts/", env!("CARGO_PKG_VERSION")));
    if matches!(vetted.url.host(), Some(url::Host::Domain(_))) {
        builder = builder.resolve_to_addrs(&vetted.host, &vetted.addrs);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            deps.metrics.alerts_dropped.inc();
            tracing::error!(error = %e, "HTTP client for Discord alerts not built");
            return;
        }
    };
    let body = discord::Message::new(embeds).fitted();
    let mut errors = 0u32;
    let mut limited = 0u32;
    loop {
        let res = client.post(vetted.url.clone()).json(&body).send().await;
        let answer = match res {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let header = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string);
                // The URL is customer input: read at most a small answer.
                let mut bytes = Vec::new();
                while let Ok(Some(chunk)) = r.chunk().await {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() >= MAX_ANSWER {
                        break;
                    }
                }
                let a = discord::answer(status, header.as_deref(), &bytes);
                if let Answer::Failed(_) = a {
                    // Discord's error code only (its message may echo input).
                    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("code").and_then(|c| c.as_i64()));
                    tracing::debug!(status, discord_code = ?code, "Discord refused the alert");
                }
                a
            }
            // No answer: 0 stands for a timeout, 1 for anything else.
            Err(e) => Answer::Failed(if e.is_timeout() { 0 } else { 1 }),
        };
        match answer {
            Answer::Posted => {
                for k in kinds {
                    deps.metrics.alert_sent(k);
                }
                tracing::info!(account = %account, webhook = %masked, hook = %hook, kind = %kind, "Discord alert posted");
                return;
            }
            Answer::RateLimited(wait) => {
                limited += 1;
                if wait > cfg.max_retry_after.get() || limited > 5 {
                    deps.metrics.alerts_dropped.inc();
                    tracing::warn!(account = %account, webhook = %masked, kind = %kind, retry_after = ?wait,
                        "Discord keeps rate-limiting this webhook: alert given up");
                    return;
                }
                tracing::info!(account = %account, webhook = %masked, retry_after = ?wait, "Discord answered 429: waiting retry_after");
                tokio::time::sleep(wait).await;
            }
            Answer::Gone(status) => {
                let first = store
                    .swap_alert_flag(&disabled_key, false, true)
                    .await
                    .unwrap_or(false);
                if first {
                    crate::failpoint::hit("alerts.disabled");
                    deps.metrics.discord_webhook_disabled.inc();
                }
                deps.metrics.alerts_dropped.inc();
                tracing::warn!(account = %account, webhook = %masked, hook = %hook, status,
                    "Discord webhook disabled: it answered {status} (unknown webhook or invalid token); no more alerts go to it until the account's webhook is set again");
                return;
            }
            Answer::Failed(status) => {
                errors += 1;
                if !(100..500).contains(&status) && errors < 3 {
                    tokio::time::sleep(Duration::from_secs(u64::from(errors))).await;
                    continue;
                }
                deps.metrics.alerts_dropped.inc();
                let shown = match status {
                    0 => "timeout".to_string(),
                    1 => "connection failed".to_string(),
                    s => format!("HTTP {s}"),
                };
                tracing::warn!(account = %account, webhook = %masked, kind = %kind, answer = %shown, "Discord alert not posted");
                return;
            }
        }
    }
}
