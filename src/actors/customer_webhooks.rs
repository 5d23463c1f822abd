//! # WebhookSender
//!
//! One per daemon (when `customer_webhooks.enabled`). Owns: posting the
//! customer-webhook outbox (`webhook_outbox`) to each account's delivery
//! webhook, signed, retried, in order per message.
//!
//! Every `customer_webhooks.poll_interval` while entries keep coming (and
//! at once after a full batch, or on [`PollWebhooks`], which this daemon's
//! report intake sends when it writes entries) it claims up to `batch_size` due entries with a
//! fresh token and a lease (`claim_lease`), so that of several daemons
//! sharing the store exactly one posts each entry; the claim leaves out an
//! entry whose message still has an earlier entry pending, so a later state
//! of a message is never posted before an earlier one was delivered or
//! given up. For each account in the batch it reads the webhook, vets the
//! URL by the SSRF rule on its resolved addresses (`net::outbound_url`) and
//! pins the requests to those addresses; then it posts the entries,
//! `concurrency` at a time, each signed (`X-Trackly-Signature`,
//! `net::signature`) at the moment it goes. One write records the batch's
//! results: 2xx → delivered; anything else → tried again after
//! `retry_base × 2^(tries − 1)` (capped at `retry_max`, equal jitter) until
//! `give_up_after` from the entry's creation, then given up; a URL refused
//! by the rule → refused (never posted); an account without a webhook →
//! given up.
//!
//! Rounds that find nothing double the wait up to `max_poll_interval`:
//! an idle outbox costs two round trips a minute, not every second.
//! Entries written by another daemon are posted by that daemon's sender
//! (woken by its own intake); this one finds them on its next round.
//!
//! Runs as a future spawned on its own context, one round at a time: it
//! never blocks a handler and never touches the send path.
//!
//! Restart: nothing is lost. Entries live in the store; a batch claimed by a
//! daemon that died is claimed again once its lease runs out (and may be
//! posted twice: receivers dedupe by `X-Trackly-Delivery`, the entry id).

use crate::clock::SharedClock;
use crate::config::CustomerWebhooksConfig;
use crate::domain::{Account, AccountId, OutboxEntry, OutboxStatus};
use crate::messages::{PollWebhooks, StopWebhooks};
use crate::metrics::Metrics;
use crate::net::outbound_url::OutboundPolicy;
use crate::store::{AccountStore, OutboxResult, OutboxStore};
use actix::prelude::*;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header carrying the outbox entry's id (`<message id>:<state>`): the same
/// on every try of one entry, so a receiver can drop a repeat.
pub const DELIVERY_HEADER: &str = "X-Trackly-Delivery";

pub struct SenderDeps {
    pub outbox: Arc<dyn OutboxStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub clock: SharedClock,
    pub config: CustomerWebhooksConfig,
    pub metrics: Arc<Metrics>,
    /// This instance's id (claim tokens start with it).
    pub instance: String,
}

pub struct WebhookSender {
    deps: Arc<SenderDeps>,
    policy: Arc<OutboundPolicy>,
    running: bool,
    again: bool,
    stopping: bool,
    seq: u64,
    last_count: Option<Instant>,
    /// Wait between timed rounds (grows while rounds find nothing).
    gap: Duration,
    last_round: Option<Instant>,
}

impl WebhookSender {
    pub fn new(deps: SenderDeps) -> Self {
        let policy = Arc::new(deps.config.outbound_policy());
        WebhookSender {
            deps: Arc::new(deps),
            policy,
            running: false,
            again: false,
            stopping: false,
            seq: 0,
            last_count: None,
            gap: Duration::ZERO,
            last_round: None,
        }
    }

    /// A timed round: skipped while the idle backoff says so.
    fn timed_round(&mut self, ctx: &mut Context<Self>) {
        if self.last_round.is_none_or(|t| t.elapsed() >= self.gap) {
            self.round(ctx);
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        self.again = false;
        self.last_round = Some(Instant::now());
        self.seq += 1;
        let token = format!("{}:wh:{}", self.deps.instance, self.seq);
        let count = self
            .last_count
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if count {
            self.last_count = Some(Instant::now());
        }
        let fut = run_round(self.deps.clone(), self.policy.clone(), token, count);
        ctx.spawn(fut.into_actor(self).map(|claimed, a, ctx| {
            a.running = false;
            let (base, max) = (
                a.deps.config.poll_interval.get(),
                a.deps.config.max_poll_interval.get(),
            );
            a.gap = match claimed {
                Some(_) => base,
                None => (a.gap * 2).clamp(base, max),
            };
            if a.stopping {
                ctx.stop();
            } else if claimed == Some(true) || a.again {
                a.round(ctx);
            }
        }));
    }
}

impl Actor for WebhookSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.round(ctx);
        ctx.run_interval(self.deps.config.poll_interval.get(), |a, ctx| {
            a.timed_round(ctx)
        });
    }
}

impl Handler<PollWebhooks> for WebhookSender {
    type Result = ();
    fn handle(&mut self, _: PollWebhooks, ctx: &mut Self::Context) {
        self.round(ctx);
    }
}

impl Handler<StopWebhooks> for WebhookSender {
    type Result = ();
    fn handle(&mut self, _: StopWebhooks, ctx: &mut Self::Context) {
        self.stopping = true;
        if !self.running {
            ctx.stop();
        }
    }
}

/// What one try came to.
enum Try {
    Delivered,
    Failed(String),
    Refused(String),
    NoWebhook,
}

/// One round: claim, post, record. Returns `None` when nothing was claimed,
/// else whether the batch was full.
async fn run_round(
    deps: Arc<SenderDeps>,
    policy: Arc<OutboundPolicy>,
    token: String,
    count: bool,
) -> Option<bool> {
    let cfg = &deps.config;
    if count {
        match deps.outbox.outbox_counts(None).await {
            Ok(c) => {
                let pending = c
                    .iter()
                    .find(|(s, _)| *s == OutboxStatus::Pending)
                    .map_or(0, |(_, n)| *n);
                deps.metrics.webhook_pending.set(pending as i64);
            }
            Err(e) => tracing::warn!(error = %e, "customer webhook outbox not counted"),
        }
    }
    let now = deps.clock.now();
    let lease_until = now + crate::clock::chrono_dur(cfg.claim_lease.get());
    let entries = match deps
        .outbox
        .claim_outbox(cfg.batch_size, &token, now, lease_until)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "customer webhook outbox not claimed; trying again later");
            return None;
        }
    };
    if entries.is_empty() {
        return None;
    }
    crate::failpoint::hit("webhooks.claimed");
    let full = entries.len() >= cfg.batch_size;

    // One read and one vetting per account in the batch.
    let mut by_account: HashMap<AccountId, Vec<OutboxEntry>> = HashMap::new();
    for e in entries {
        by_account.entry(e.account).or_default().push(e);
    }
    let mut jobs = Vec::new();
    let mut tried: Vec<(OutboxEntry, Try)> = Vec::new();
    for (account, list) in by_account {
        let acc: Option<Account> = match deps.accounts.get_account(account).await {
            Ok(a) => a,
            Err(e) => {
                // Leave the batch claimed: its lease runs out and it is tried again.
                tracing::warn!(error = %e, "account not read for customer webhooks; retrying after the claim lease");
                continue;
            }
        };
        let Some(hook) = acc.and_then(|a| a.delivery_webhook) else {
            tried.extend(list.into_iter().map(|e| (e, Try::NoWebhook)));
            continue;
        };
        let vetted = match policy.vet(&hook.url).await {
            Ok(v) => v,
            Err(refusal) => {
                tracing::warn!(account = %account, reason = %refusal, "customer webhook URL refused at send time");
                let why = format!("refused: {refusal}");
                tried.extend(list.into_iter().map(|e| (e, Try::Refused(why.clone()))));
                continue;
            }
        };
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.request_timeout.get())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("trackly-webhooks/", env!("CARGO_PKG_VERSION")));
        if matches!(vetted.url.host(), Some(url::Host::Domain(_))) {
            builder = builder.resolve_to_addrs(&vetted.host, &vetted.addrs);
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "HTTP client for customer webhooks not built");
                continue;
            }
        };
        for e in list {
            jobs.push((client.clone(), vetted.url.clone(), hook.secret.clone(), e));
        }
    }
    let metrics = deps.metrics.clone();
    let posted: Vec<(OutboxEntry, Try)> = futures::stream::iter(jobs)
        .map(|(client, url, secret, e)| {
            let metrics = metrics.clone();
            async move {
                let t = chrono::Utc::now().timestamp();
                let sig = crate::net::signature::sign(secret.expose(), t, e.body.as_bytes());
                let started = Instant::now();
                let res = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(crate::net::signature::HEADER, sig)
                    .header(DELIVERY_HEADER, e.id.as_str())
                    .body(e.body.clone())
                    .send()
                    .await;
                metrics
                    .webhook_latency
                    .observe(started.elapsed().as_secs_f64());
                let outcome = match res {
                    Ok(r) if r.status().is_success() => Try::Delivered,
                    Ok(r) => Try::Failed(format!("HTTP {}", r.status().as_u16())),
                    Err(err) if err.is_timeout() => Try::Failed("timeout".into()),
                    Err(err) if err.is_connect() => Try::Failed("connection failed".into()),
                    Err(_) => Try::Failed("request failed".into()),
                };
                (e, outcome)
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    tried.extend(posted);

    let now = deps.clock.now();
    let give_up_at =
        |e: &OutboxEntry| e.created_at + crate::clock::chrono_dur(cfg.give_up_after.get());
    let mut results = Vec::with_capacity(tried.len());
    for (e, outcome) in tried {
        let attempts = e.attempts + 1;
        let mut r = OutboxResult {
            id: e.id.clone(),
            status: OutboxStatus::Delivered,
            attempts,
            next_attempt_at: now,
            last_error: None,
            at: now,
        };
        match outcome {
            Try::Delivered => deps.metrics.webhook_delivered.inc(),
            Try::NoWebhook => {
                r.status = OutboxStatus::GivenUp;
                r.attempts = e.attempts;
                r.last_error = Some("the account has no delivery webhook".into());
                deps.metrics.webhook_given_up.inc();
            }
            Try::Refused(why) => {
                r.status = OutboxStatus::Refused;
                r.attempts = e.attempts;
                r.last_error = Some(why);
                deps.metrics.webhook_refused.inc();
            }
            Try::Failed(why) => {
                deps.metrics.webhook_failed.inc();
                let wait = crate::domain::webhook::backoff(
                    cfg.retry_base.get(),
                    cfg.retry_max.get(),
                    attempts,
                    &e.id,
                );
                let next = now + crate::clock::chrono_dur(wait);
                if next > give_up_at(&e) {
                    tracing::warn!(entry = %e.id, account = %e.account, attempts, last_error = %why, "customer webhook given up");
                    r.status = OutboxStatus::GivenUp;
                    deps.metrics.webhook_given_up.inc();
                } else {
                    tracing::debug!(entry = %e.id, account = %e.account, attempts, error = %why, "customer webhook failed; retrying");
                    r.status = OutboxStatus::Pending;
                    r.next_attempt_at = next;
                    deps.metrics.webhook_retries.inc();
                }
                r.last_error = Some(why);
            }
        }
        results.push(r);
    }
    match deps.outbox.finish_outbox(&token, results).await {
        Ok(_) => crate::failpoint::hit("webhooks.recorded"),
        Err(e) => {
            tracing::warn!(error = %e, "customer webhook results not recorded; the batch is tried again after its claim lease")
        }
    }
    Some(full)
}
