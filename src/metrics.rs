//! The daemon's metrics: one Prometheus registry, served at `/metrics`
//! (text format) and read by the benchmark and the demo.
//!
//! Counters and histograms are atomics (no lock on the hot paths). Labelled
//! families whose label values are known in advance (failure reasons,
//! providers, MongoDB command names, Redis operations) have their children
//! resolved once, at construction, so recording never looks a child up.
//! Only the per-list queue depth is looked up by label, by the progress
//! logger every few seconds.

use crate::domain::{FailureReason, ProviderKind};
use prometheus::core::Metric as _;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;

/// MongoDB commands counted by name; any other counts as "other".
const MONGO_COMMANDS: &[&str] = &[
    "find",
    "getMore",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "aggregate",
    "distinct",
    "count",
    "commitTransaction",
    "abortTransaction",
    "hello",
    "isMaster",
    "ping",
    "createIndexes",
    "endSessions",
    "other",
];

/// Metric names, help texts and labels below are constants: they cannot be
/// rejected (a test builds them all).
const VALID: &str = "constant metric options are valid";

/// Redis operations counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOp {
    /// A permit grant (one EVALSHA of the token bucket).
    Acquire,
    Ping,
    /// An event published on the bus.
    Publish,
}

const PROVIDERS: [ProviderKind; 4] = [
    ProviderKind::Infobip,
    ProviderKind::Twilio,
    ProviderKind::Cm,
    ProviderKind::Fake,
];

/// Latency buckets, seconds: 0.5 ms to ~100 s, ×1.2 apart, so a percentile
/// read from the buckets is within 20 % of the true value. (An observation
/// scans the bounds; 68 comparisons cost nothing beside a provider call.)
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0005, 1.2, 68).unwrap_or_default()
}

pub struct Metrics {
    pub registry: Registry,
    pub claimed: IntCounter,
    pub sent: IntCounter,
    pub requeued: IntCounter,
    pub already_attempted: IntCounter,
    pub throttled: IntCounter,
    pub rate_limit_waits: IntCounter,
    pub claims: IntCounter,
    pub claims_released: IntCounter,
    pub quarantined: IntCounter,
    pub reports_received: IntCounter,
    pub reports_applied: IntCounter,
    pub reports_unknown: IntCounter,
    pub reports_resolved: IntCounter,
    /// Messages whose delivery report reached a final state: delivered to
    /// the handset, or not.
    pub delivered: IntCounter,
    pub undelivered: IntCounter,
    /// In-doubt (NO_RESPONSE) messages not resolved or requeued yet, as
    /// last counted by Recovery.
    pub in_doubt: IntGauge,
    /// In-doubt messages looked up at their provider, and lookups that
    /// failed (their messages stay in doubt).
    pub lookups: IntCounter,
    pub lookup_failures: IntCounter,
    /// In-doubt messages the provider's records settled, by outcome
    /// (`taken`, `resent`, `stale`).
    resolved_by_lookup: IntCounterVec,
    /// In-doubt messages the Resolver cannot look up, by provider (CM has no
    /// lookup; or this daemon lacks the credentials), as last counted.
    unresolvable: IntGaugeVec,
    /// Contacts unsubscribed and resubscribed by inbound keywords.
    pub inbound_unsubscribes: IntCounter,
    pub inbound_resubscribes: IntCounter,
    /// Short-link redirects answered (302), and clicks recorded by kind.
    pub redirects: IntCounter,
    pub clicks_recorded: IntCounter,
    pub clicks_bot: IntCounter,
    /// Clicks not recorded: the intake was full or the write failed (the
    /// redirect was answered anyway).
    pub clicks_dropped: IntCounter,
    /// Seconds from a message being due to its provider call.
    pub due_to_send: Histogram,
    failed: Vec<IntCounter>,
    provider_calls: Vec<IntCounter>,
    provider_latency: Vec<Histogram>,
    mongo: Vec<IntCounter>,
    redis: [IntCounter; 3],
    queue_depth: IntGaugeVec,
    /// Messages queued by campaign runs.
    pub campaign_queued: IntCounter,
    /// Contacts skipped at audience evaluation, by reason.
    campaign_skipped: IntCounterVec,
    /// Runs ended, by status (queued, failed, missed).
    campaign_runs: IntCounterVec,
    /// Customer webhook tries by result: delivered, failed (a try that
    /// will be retried), given_up, refused (SSRF rule at send time).
    pub webhook_delivered: IntCounter,
    pub webhook_failed: IntCounter,
    pub webhook_given_up: IntCounter,
    pub webhook_refused: IntCounter,
    /// Retries scheduled (a failed try with another to come).
    pub webhook_retries: IntCounter,
    /// Outbox entries written (new ones; a resent report adds none).
    pub webhook_enqueued: IntCounter,
    /// Outbox entries pending (as last counted by the sender).
    pub webhook_pending: prometheus::IntGauge,
    /// Time of one webhook POST.
    pub webhook_latency: Histogram,
    /// Discord alerts posted, by kind (failures, spam, outage, error_rate,
    /// recovered, billing_blocked, unservable, run_failed).
    alerts_sent: IntCounterVec,
    /// Alert events or messages dropped: the actor's mailbox was full, the
    /// per-webhook budget was spent, the URL was refused, Discord refused
    /// or did not answer.
    pub alerts_dropped: IntCounter,
    /// Discord webhooks disabled after a 404 or 401.
    pub discord_webhook_disabled: IntCounter,
}

/// Percentiles read from a histogram's buckets (each is the upper bound of
/// the bucket the quantile falls in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// One Discord alert of `kind` posted.
    pub fn alert_sent(&self, kind: &str) {
        self.alerts_sent.with_label_values(&[kind]).inc();
    }

    /// Discord alerts of `kind` posted so far.
    pub fn alerts_sent(&self, kind: &str) -> u64 {
        self.alerts_sent.with_label_values(&[kind]).get()
    }

    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("trackly".into()), None).unwrap_or_else(|_| Registry::new());
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect(VALID);
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let vec = |name: &str, help: &str, label: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect(VALID);
            let _ = registry.register(Box::new(v.clone()));
            v
        };
        let failed_vec = vec(
            "messages_failed_total",
            "Messages dead-lettered, by reason",
            "reason",
        );
        let calls_vec = vec(
            "provider_calls_total",
            "Provider requests made, by provider",
            "provider",
        );
        let mongo_vec = vec(
            "mongodb_commands_total",
            "MongoDB commands sent (round trips), by command",
            "command",
        );
        let redis_vec = vec(
            "redis_calls_total",
            "Redis round trips, by operation",
            "operation",
        );
        let latency_vec = HistogramVec::new(
            HistogramOpts::new(
                "provider_latency_seconds",
                "Time of one provider call (a chunk's requests), by provider",
            )
            .buckets(latency_buckets()),
            &["provider"],
        )
        .expect(VALID);
        let _ = registry.register(Box::new(latency_vec.clone()));
        let due_to_send = Histogram::with_opts(
            HistogramOpts::new(
                "due_to_send_seconds",
                "From a message being due to its provider call",
            )
            .buckets(latency_buckets()),
        )
        .expect(VALID);
        let _ = registry.register(Box::new(due_to_send.clone()));
        let in_doubt = IntGauge::new(
            "in_doubt_messages",
            "In-doubt (NO_RESPONSE) messages neither resolved nor requeued (as last counted)",
        )
        .expect(VALID);
        let _ = registry.register(Box::new(in_doubt.clone()));
        let unresolvable = IntGaugeVec::new(
            Opts::new(
                "in_doubt_unresolvable",
                "In-doubt messages that cannot be looked up, by provider (as last counted)",
            ),
            &["provider"],
        )
        .expect(VALID);
        let _ = registry.register(Box::new(unresolvable.clone()));
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_depth", "Messages queued per list (as last counted)"),
            &["list"],
        )
        .expect(VALID);
        let _ = registry.register(Box::new(queue_depth.clone()));
        let campaign_skipped = vec(
            "campaign_contacts_skipped_total",
            "Contacts skipped at audience evaluation, by reason",
            "reason",
        );
        let campaign_runs = vec(
            "campaign_runs_total",
            "Campaign runs ended, by status",
            "status",
        );
        let webhook_vec = vec(
            "customer_webhook_deliveries_total",
            "Customer webhook tries, by result (delivered, failed, given_up, refused)",
            "result",
        );
        let webhook_pending = prometheus::IntGauge::new(
            "customer_webhook_outbox_pending",
            "Customer webhook outbox entries pending (as last counted)",
        )
        .expect(VALID);
        let _ = registry.register(Box::new(webhook_pending.clone()));
        let webhook_latency = Histogram::with_opts(
            HistogramOpts::new(
                "customer_webhook_latency_seconds",
                "Time of one customer webhook POST",
            )
            .buckets(latency_buckets()),
        )
        .expect(VALID);
        let _ = registry.register(Box::new(webhook_latency.clone()));
        let alerts_sent = vec(
            "alerts_sent_total",
            "Discord alerts posted, by kind",
            "kind",
        );
        Metrics {
            alerts_sent,
            alerts_dropped: counter(
                "alerts_dropped_total",
                "Alert events or messages dropped (mailbox full, budget spent, URL refused, not posted)",
            ),
            discord_webhook_disabled: counter(
                "discord_webhook_disabled_total",
                "Discord webhooks disabled after a 404 or 401",
            ),
            webhook_delivered: webhook_vec.with_label_values(&["delivered"]),
            webhook_failed: webhook_vec.with_label_values(&["failed"]),
            webhook_given_up: webhook_vec.with_label_values(&["given_up"]),
            webhook_refused: webhook_vec.with_label_values(&["refused"]),
            webhook_retries: counter(
                "customer_webhook_retries_total",
                "Customer webhook retries scheduled",
            ),
            webhook_enqueued: counter(
                "customer_webhook_enqueued_total",
                "Customer webhook outbox entries written",
            ),
            webhook_pending,
            webhook_latency,
            campaign_queued: counter(
                "campaign_messages_queued_total",
                "Messages queued by campaign runs",
            ),
            campaign_skipped,
            campaign_runs,
            claimed: counter("messages_claimed_total", "Messages claimed"),
            sent: counter(
                "messages_sent_total",
                "Messages the provider accepted (recorded sent)",
            ),
            requeued: counter(
                "messages_requeued_total",
                "Messages put back in the queue (retry, backoff, released)",
            ),
            already_attempted: counter(
                "messages_already_attempted_total",
                "Messages found attempted before (never sent again)",
            ),
            throttled: counter(
                "provider_throttled_total",
                "Provider calls answered 429 (the list slows down)",
            ),
            rate_limit_waits: counter(
                "rate_limit_waits_total",
                "Permit requests that had to wait for the bucket",
            ),
            claims: counter("queue_claims_total", "Claim operations"),
            claims_released: counter(
                "queue_claims_released_total",
                "Claims of stopped daemons released by recovery",
            ),
            quarantined: counter(
                "queue_quarantined_total",
                "Undecodable queued documents dead-lettered MALFORMED",
            ),
            reports_received: counter(
                "delivery_reports_received_total",
                "Delivery reports received",
            ),
            redirects: counter("link_redirects_total", "Short-link redirects answered"),
            inbound_unsubscribes: counter(
                "inbound_unsubscribes_total",
                "Inbound opt-out keywords that unsubscribed a contact",
            ),
            inbound_resubscribes: counter(
                "inbound_resubscribes_total",
                "Inbound START keywords that subscribed a contact again",
            ),
            clicks_recorded: counter("link_clicks_recorded_total", "Link clicks recorded"),
            clicks_bot: counter(
                "link_clicks_bot_total",
                "Link clicks recorded as preview fetchers or crawlers",
            ),
            clicks_dropped: counter(
                "link_clicks_dropped_total",
                "Link clicks not recorded (intake full or store error)",
            ),
            reports_applied: counter(
                "delivery_reports_applied_total",
                "Delivery reports that changed a record",
            ),
            reports_unknown: counter(
                "delivery_reports_unknown_total",
                "Delivery reports for messages we do not know",
            ),
            reports_resolved: counter(
                "in_doubt_resolved_total",
                "In-doubt messages a delivery report proved sent",
            ),
            delivered: counter(
                "messages_delivered_total",
                "Messages a delivery report said reached the handset",
            ),
            undelivered: counter(
                "messages_undelivered_total",
                "Messages a delivery report said did not reach the handset",
            ),
            in_doubt,
            lookups: counter(
                "in_doubt_lookups_total",
                "In-doubt messages looked up at their provider",
            ),
            lookup_failures: counter(
                "in_doubt_lookup_failures_total",
                "Provider lookups that failed (their messages stay in doubt)",
            ),
            resolved_by_lookup: vec(
                "in_doubt_resolved_by_lookup_total",
                "In-doubt messages settled by the provider's records, by outcome (taken, resent, stale)",
                "outcome",
            ),
            unresolvable,
            due_to_send,
            failed: FailureReason::ALL
                .iter()
                .map(|r| failed_vec.with_label_values(&[r.as_str()]))
                .collect(),
            provider_calls: PROVIDERS
                .iter()
                .map(|p| calls_vec.with_label_values(&[p.as_str()]))
                .collect(),
            provider_latency: PROVIDERS
                .iter()
                .map(|p| latency_vec.with_label_values(&[p.as_str()]))
                .collect(),
            mongo: MONGO_COMMANDS
                .iter()
                .map(|c| mongo_vec.with_label_values(&[c]))
                .collect(),
            redis: [
                redis_vec.with_label_values(&["acquire"]),
                redis_vec.with_label_values(&["ping"]),
                redis_vec.with_label_values(&["publish"]),
            ],
            queue_depth,
            registry,
        }
    }

    /// In-doubt messages the provider's records settled as `outcome`.
    pub fn resolved_by_lookup(&self, outcome: &str, n: u64) {
        self.resolved_by_lookup
            .with_label_values(&[outcome])
            .inc_by(n);
    }

    /// How many so far settled as `outcome`.
    pub fn resolved_by_lookup_count(&self, outcome: &str) -> u64 {
        self.resolved_by_lookup.with_label_values(&[outcome]).get()
    }

    /// In-doubt messages that cannot be looked up, per provider.
    pub fn set_unresolvable(&self, provider: &str, n: u64) {
        self.unresolvable
            .with_label_values(&[provider])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A campaign page was queued.
    pub fn campaign_page(&self, c: &crate::store::PageCounts) {
        self.campaign_queued.inc_by(c.queued);
        for (reason, n) in &c.skipped {
            self.campaign_skipped
                .with_label_values(&[reason.as_str()])
                .inc_by(*n);
        }
    }

    /// A campaign run ended with `status`.
    pub fn campaign_run(&self, status: crate::domain::RunStatus) {
        self.campaign_runs
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// Contacts skipped for `reason` so far.
    pub fn campaign_skipped(&self, reason: &str) -> u64 {
        self.campaign_skipped.with_label_values(&[reason]).get()
    }

    fn reason_idx(r: FailureReason) -> usize {
        FailureReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
    }

    fn provider_idx(p: ProviderKind) -> usize {
        PROVIDERS.iter().position(|x| *x == p).unwrap_or(0)
    }

    pub fn add_failed(&self, r: FailureReason, n: u64) {
        if let Some(c) = self.failed.get(Self::reason_idx(r)) {
            c.inc_by(n);
        }
    }

    pub fn failed(&self, r: FailureReason) -> u64 {
        self.failed.get(Self::reason_idx(r)).map_or(0, |c| c.get())
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|c| c.get()).sum()
    }

    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// Messages with a terminal outcome recorded by this daemon.
    pub fn done(&self) -> u64 {
        self.sent() + self.failed_total()
    }

    /// One provider call (`requests` requests) that took `seconds`.
    pub fn provider_call(&self, p: ProviderKind, requests: u64, seconds: f64) {
        let i = Self::provider_idx(p);
        if let (Some(c), Some(h)) = (self.provider_calls.get(i), self.provider_latency.get(i)) {
            c.inc_by(requests);
            h.observe(seconds);
        }
    }

    /// A MongoDB command was sent (the driver's command-started event).
    pub fn mongo_command(&self, name: &str) {
        let i = MONGO_COMMANDS
            .iter()
            .position(|c| *c == name)
            .unwrap_or(MONGO_COMMANDS.len() - 1);
        if let Some(c) = self.mongo.get(i) {
            c.inc();
        }
    }

    pub fn mongo_commands(&self) -> u64 {
        self.mongo.iter().map(|c| c.get()).sum()
    }

    /// MongoDB commands by name (those sent at least once).
    pub fn mongo_by_command(&self) -> BTreeMap<&'static str, u64> {
        MONGO_COMMANDS
            .iter()
            .zip(&self.mongo)
            .map(|(n, c)| (*n, c.get()))
            .filter(|(_, v)| *v > 0)
            .collect()
    }

    pub fn redis_call(&self, op: RedisOp) {
        let i = match op {
            RedisOp::Acquire => 0,
            RedisOp::Ping => 1,
            RedisOp::Publish => 2,
        };
        self.redis[i].inc();
    }

    pub fn redis_calls(&self) -> u64 {
        self.redis.iter().map(|c| c.get()).sum()
    }

    pub fn set_queue_depth(&self, list: &str, depth: u64) {
        self.queue_depth
            .with_label_values(&[list])
            .set(depth.min(i64::MAX as u64) as i64);
    }

    /// p50 and p99 from due-to-send's buckets.
    pub fn due_to_send(&self) -> Option<Percentiles> {
        percentiles(&self.due_to_send)
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A histogram's state at one moment: its buckets as `(upper bound,
/// cumulative count)` and its total count (which includes samples above
/// the last bucket).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

pub fn snapshot(h: &Histogram) -> Snapshot {
    let m = h.metric();
    let hist = m.get_histogram();
    Snapshot {
        buckets: hist
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect(),
        count: hist.get_sample_count(),
    }
}

/// p50 and p99 of a histogram, as the upper bounds of their buckets.
pub fn percentiles(h: &Histogram) -> Option<Percentiles> {
    percentiles_since(h, &Snapshot::default())
}

/// p50 and p99 of what a histogram recorded since `before`, as the upper
/// bounds of their buckets (infinite above the last bucket).
pub fn percentiles_since(h: &Histogram, before: &Snapshot) -> Option<Percentiles> {
    let now = snapshot(h);
    let count = now.count - before.count;
    if count == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = (q * count as f64).ceil() as u64;
        now.buckets
            .iter()
            .enumerate()
            .find(|(i, (_, c))| c - before.buckets.get(*i).map_or(0, |b| b.1) >= rank)
            .map_or(f64::INFINITY, |(_, (ub, _))| *ub)
            * 1000.0
    };
    Some(Percentiles {
        count,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_percentiles_come_from_the_registry() {
        let m = Metrics::new();
        m.add_failed(FailureReason::Stale, 2);
        m.sent.inc_by(3);
        m.mongo_command("insert");
        m.mongo_command("weird");
        m.redis_call(RedisOp::Acquire);
        for ms in [1.0, 2.0, 3.0, 100.0] {
            m.due_to_send.observe(ms / 1000.0);
        }
        assert_eq!(m.done(), 5);
        assert_eq!(m.mongo_commands(), 2);
        assert_eq!(m.mongo_by_command().get("other"), Some(&1));
        let p = m.due_to_send().unwrap();
        assert_eq!(p.count, 4);
        assert!(p.p50_ms >= 2.0 && p.p50_ms < 2.4, "{p:?}");
        assert!(p.p99_ms >= 100.0 && p.p99_ms < 120.0, "{p:?}");
        let text = m.encode();
        assert!(text.contains("trackly_messages_failed_total{reason=\"STALE\"} 2"));
        assert!(text.contains("trackly_mongodb_commands_total{command=\"insert\"} 1"));
    }
}
