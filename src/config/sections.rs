//! The configuration's sections, each with its defaults (the `Default`
//! impls are the one place defaults live; `config.toml` lists them).

use super::Dur;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub mongo: MongoConfig,
    pub redis: RedisConfig,
    pub coordinator: CoordinatorConfig,
    pub recovery: RecoveryConfig,
    pub resolver: ResolverConfig,
    pub scheduler: SchedulerConfig,
    pub links: LinksConfig,
    pub supervisor: SupervisorConfig,
    pub worker: WorkerConfig,
    pub rate_limit: RateLimitConfig,
    pub billing: BillingConfig,
    pub dead_letter: DeadLetterConfig,
    pub webhooks: WebhooksConfig,
    pub customer_webhooks: CustomerWebhooksConfig,
    pub alerts: AlertsConfig,
    pub providers: ProvidersConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// This daemon's name in claim tokens and logs; empty: `<hostname>-<pid>`.
    pub id: String,
    /// On SIGTERM, how long in-flight sends may take before the daemon exits.
    pub shutdown_grace: Dur,
    /// Retry MongoDB/Redis at start for at most this long (0: forever).
    pub startup_timeout: Dur,
    /// How often this daemon renews its lease.
    pub heartbeat_interval: Dur,
    /// A lease not renewed for this long (on the database's clock) has
    /// lapsed: recovery takes the daemon's claims and judges its unanswered
    /// attempts. The daemon itself stops claiming and sending earlier (this
    /// minus the longest provider timeout after its last renewal).
    pub lease_ttl: Dur,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            id: String::new(),
            shutdown_grace: Dur::secs(20),
            startup_timeout: Dur::secs(0),
            heartbeat_interval: Dur::secs(5),
            lease_ttl: Dur::secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// The base URL providers post delivery reports to. It must reach every
    /// daemon (a load balancer or a shared host name in front of all of
    /// them), not this daemon's own address: any daemon accepts any report,
    /// and a daemon that stops must not take its messages' reports with it.
    /// Twilio signs the exact URL it calls, so this is also the URL checked.
    pub public_url: String,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter (`RUST_LOG` wins when set).
    pub filter: String,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// One INFO line per active list this often (sent, failed, queued,
    /// rate); each costs one count of the list's queue.
    pub progress_interval: Dur,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            json: false,
            progress_interval: Dur::secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Mongodb,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `mongodb` (production) or `memory` (one process, nothing persisted).
    pub backend: StoreBackend,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Mongodb,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// Connection string (credentials here belong in the environment override).
    pub uri: String,
    pub database: String,
    /// How long one operation waits for a usable server.
    pub server_selection_timeout: Dur,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "trackly".into(),
            server_selection_timeout: Dur::secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    pub pool_size: usize,
    /// Prefix of every key this daemon writes.
    pub key_prefix: String,
    /// Timeout of one Redis call.
    pub timeout: Dur,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 16,
            key_prefix: "trackly".into(),
            timeout: Dur::secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// How often the queue is polled for lists with due messages.
    pub poll_interval: Dur,
    /// While polls find nothing that is not already being served, the gap
    /// between polls doubles up to this (a nudge polls at once).
    pub max_poll_interval: Dur,
    /// The gap between timed polls while the event bus is live (queuing
    /// anywhere polls every daemon at once; retries and deferrals this
    /// daemon makes, and the queue's next due time, wake it when they fall
    /// due).
    pub bus_poll_interval: Dur,
    /// Claim at most what a list can send in this much time at its rate.
    pub claim_lookahead: Dur,
    /// Largest batch one claim takes (one worker's batch).
    pub max_batch: usize,
    /// A list supervisor with no work for this long is stopped.
    pub idle_supervisor_after: Dur,
    /// Most lists served per poll.
    pub max_lists: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            poll_interval: Dur::millis(500),
            max_poll_interval: Dur::secs(4),
            bus_poll_interval: Dur::secs(30),
            claim_lookahead: Dur::secs(2),
            max_batch: 5000,
            idle_supervisor_after: Dur::secs(60),
            max_lists: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// How often the claims and unanswered attempts of daemons whose lease
    /// lapsed are recovered.
    pub sweep_interval: Dur,
    /// An attempt unanswered this long (database time) is in doubt even if
    /// its daemon is alive (a wedged worker): the hard horizon.
    pub in_doubt_horizon: Dur,
    /// How often lists that no live daemon can serve are looked for.
    pub unservable_check: Dur,
    /// A timed sweep that finds the leases as the last one did (no daemon
    /// lapsed, stopped or appeared, no batch of this daemon given up) reads
    /// only the leases; the whole sweep runs at least this often.
    pub full_sweep_interval: Dur,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            sweep_interval: Dur::secs(10),
            in_doubt_horizon: Dur::secs(3600),
            unservable_check: Dur::secs(60),
            full_sweep_interval: Dur::secs(300),
        }
    }
}

/// In-doubt messages resolved by asking their provider (the Resolver, on
/// the recovery leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverConfig {
    pub enabled: bool,
    /// How often in-doubt messages are looked for.
    pub interval: Dur,
    /// Wait this long after a message fell in doubt before asking, so the
    /// provider's own records have caught up.
    pub settle_delay: Dur,
    /// In-doubt messages taken per look.
    pub max_per_look: usize,
    /// Messages looked up per minute, at most (separate from sending).
    pub lookups_per_minute: u32,
    /// A failed lookup is tried again after this, doubling up to
    /// `retry_max`; its messages stay in doubt meanwhile.
    pub retry_base: Dur,
    pub retry_max: Dur,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            enabled: true,
            interval: Dur::secs(10),
            settle_delay: Dur::secs(60),
            max_per_look: 1000,
            lookups_per_minute: 6000,
            retry_base: Dur::secs(10),
            retry_max: Dur::secs(600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Trigger due schedules on this daemon (any number of daemons may: an
    /// occurrence is triggered once, by whichever records its run first).
    pub enabled: bool,
    /// Longest wait between two looks for due schedules and for runs whose
    /// daemon stopped (a schedule change on the bus, or the next due time,
    /// wakes the scheduler earlier).
    pub max_idle: Dur,
    /// A due occurrence found later than this (no daemon was up when it
    /// fell due) is recorded as missed instead of sent late.
    pub missed_grace: Dur,
    /// Contacts read, and their messages queued in one transaction, per page.
    pub page_size: usize,
    /// Runs this daemon evaluates at once.
    pub max_concurrent_runs: usize,
    /// The zone of contacts whose zone is neither stored nor known from
    /// their number, when their list sets none (an IANA name).
    pub default_time_zone: String,
    /// Thompson sampling: every variant gets at least this share of the
    /// picks (exploration), at most 1 / variants.
    pub exploration_floor: f64,
    /// How often run counters (sent, failed, delivered) are written: each
    /// run's counts of the interval in one update.
    pub stats_flush_interval: Dur,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            max_idle: Dur::secs(30),
            missed_grace: Dur::secs(15 * 60),
            page_size: 5_000,
            max_concurrent_runs: 2,
            default_time_zone: "America/New_York".into(),
            exploration_floor: 0.05,
            stats_flush_interval: Dur::secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinksConfig {
    /// Base URL of tracked short links (`<base_url>/l/<code>`); empty:
    /// `http.public_url`.
    pub base_url: String,
    /// Clicks that may wait to be written; past it they are dropped and
    /// counted (the redirect never waits for a click).
    pub max_pending_clicks: usize,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            base_url: String::new(),
            max_pending_clicks: 100_000,
        }
    }
}

impl Config {
    /// The base URL short links are made with.
    pub fn link_base_url(&self) -> &str {
        if self.links.base_url.trim().is_empty() {
            &self.http.public_url
        } else {
            &self.links.base_url
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Worker actors per sending list.
    pub workers: usize,
    /// How often a supervisor re-reads its list (status, rate, blocked words).
    pub list_refresh: Dur,
    /// The same while the event bus is live (a change made through any
    /// daemon reaches every supervisor as `ListChanged` at once).
    pub bus_list_refresh: Dur,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            workers: 6,
            list_refresh: Dur::secs(10),
            bus_list_refresh: Dur::secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// A message whose send time is older than this is dead-lettered STALE.
    pub stale_after: Dur,
    /// First retry delay after a transient provider error (doubles each time).
    pub retry_base: Dur,
    /// Longest retry delay.
    pub retry_max: Dur,
    /// A message that gets no rate-limit permit within this is dead-lettered
    /// RATE_LIMIT_TIMEOUT.
    pub permit_timeout: Dur,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            stale_after: Dur::secs(30 * 60),
            retry_base: Dur::secs(2),
            retry_max: Dur::secs(300),
            permit_timeout: Dur::secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// Shared by all daemons (production).
    Redis,
    /// In this process only (embedded mode).
    Local,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub backend: RateLimitBackend,
    /// Bucket capacity, in seconds of the list's rate (the documented burst).
    pub burst_seconds: f64,
    /// Pause between two permit grants to one worker, smoothing the flow.
    pub inter_batch_delay: Dur,
    /// On provider throttling the effective rate is multiplied by this.
    pub decrease_factor: f64,
    /// The effective rate never drops below this fraction of the list's rate.
    pub min_fraction: f64,
    /// Each recovery step adds this fraction of the list's rate back.
    pub recover_step: f64,
    /// Time between recovery steps without new throttling.
    pub recover_every: Dur,
    /// While Redis is unreachable, how often it is retried.
    pub unavailable_retry: Dur,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            backend: RateLimitBackend::Redis,
            burst_seconds: 1.0,
            inter_batch_delay: Dur::millis(10),
            decrease_factor: 0.5,
            min_fraction: 0.05,
            recover_step: 0.1,
            recover_every: Dur::secs(5),
            unavailable_retry: Dur::secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// A billing-blocked message is retried after this.
    pub backoff: Dur,
    /// A message blocked for longer than this is dead-lettered BILLING_BLOCKED.
    pub ttl: Dur,
    /// How long account prices are cached.
    pub price_cache: Dur,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            backoff: Dur::secs(5 * 60),
            ttl: Dur::secs(60 * 60),
            price_cache: Dur::secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Largest number of dead letters written in one insert.
    pub max_batch: usize,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig { max_batch: 1000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Largest number of delivery reports written in one bulk update.
    pub max_batch: usize,
    /// Most report bytes waiting to be written; past it a request is
    /// answered 503 (the provider retries later).
    pub max_pending_bytes: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            max_batch: 5000,
            max_pending_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Signed delivery-status webhooks to customers (README, "Customer delivery
/// webhooks"): the outbox sender's pace, its retry schedule and the SSRF
/// rule's exceptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomerWebhooksConfig {
    /// Write outbox entries for delivery reports and post them. Off: no
    /// entries are written and none posted (entries already written wait).
    pub enabled: bool,
    /// How often the sender looks for due entries while there are some (at
    /// once again after a full batch, and when this daemon writes entries).
    pub poll_interval: Dur,
    /// Looks that find nothing double the wait up to this.
    pub max_poll_interval: Dur,
    /// Most entries claimed (and posted) per round.
    pub batch_size: usize,
    /// Most requests in flight at once.
    pub concurrency: usize,
    /// One request's time limit (connect, send, answer).
    pub request_timeout: Dur,
    /// How long a claimed batch is this daemon's; must exceed the longest a
    /// batch can take. A daemon that dies holding a batch delays it by this.
    pub claim_lease: Dur,
    /// Backoff after a failed try: `retry_base × 2^(tries − 1)`, capped at
    /// `retry_max`, with equal jitter.
    pub retry_base: Dur,
    pub retry_max: Dur,
    /// An entry still failing this long after it was written is given up.
    pub give_up_after: Dur,
    /// How long the report intake trusts its list of accounts that have a
    /// delivery webhook (a webhook set on any daemon gets entries within
    /// this; a cleared one is checked again before every POST).
    pub settings_refresh: Dur,
    /// Accept plain `http://` URLs (tests only; https otherwise).
    pub allow_http: bool,
    /// Accept URLs that resolve to loopback, private, link-local and other
    /// internal addresses (tests only).
    pub allow_private_targets: bool,
    /// Address blocks accepted although the SSRF rule refuses them
    /// (e.g. `["127.0.0.0/8"]` for a local receiver).
    pub allowed_cidrs: Vec<String>,
}

impl Default for CustomerWebhooksConfig {
    fn default() -> Self {
        CustomerWebhooksConfig {
            enabled: true,
            poll_interval: Dur::secs(1),
            max_poll_interval: Dur::secs(60),
            batch_size: 100,
            concurrency: 16,
            request_timeout: Dur::secs(10),
            claim_lease: Dur::secs(300),
            retry_base: Dur::secs(10),
            retry_max: Dur::secs(3600),
            give_up_after: Dur::secs(24 * 3600),
            settings_refresh: Dur::secs(5),
            allow_http: false,
            allow_private_targets: false,
            allowed_cidrs: vec![],
        }
    }
}

impl CustomerWebhooksConfig {
    /// The SSRF rule with this configuration's exceptions (CIDRs that do
    /// not parse are left out; validation refuses them).
    pub fn outbound_policy(&self) -> crate::net::outbound_url::OutboundPolicy {
        crate::net::outbound_url::OutboundPolicy {
            allow_http: self.allow_http,
            allow_private_targets: self.allow_private_targets,
            allowed: self
                .allowed_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
        }
    }

    /// The longest one claimed batch can take to post.
    pub fn longest_batch(&self) -> std::time::Duration {
        let rounds = self.batch_size.div_ceil(self.concurrency.max(1)).max(1) as u32;
        self.request_timeout.0 * rounds
    }
}

/// Discord alerts (README, "Discord alerts"): the Alerts actor's window,
/// thresholds and per-webhook budget. The webhook URL is the account's;
/// it passes the `[customer_webhooks]` SSRF rule (the admin surface's) when
/// saved and again before every post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Count outcomes and post alerts. Off: nothing is counted or posted.
    pub enabled: bool,
    /// The aggregation window: one message per list and window at most.
    pub window: Dur,
    /// After a window ends, how long other daemons may still add their
    /// counts before one daemon claims and sends it (at least twice
    /// `flush_interval`).
    pub grace: Dur,
    /// How often a daemon adds what it counted to the shared windows.
    pub flush_interval: Dur,
    /// The failure rate (failed / (sent + failed)) over the last
    /// `error_rate_windows` windows at or above which a list alerts, in
    /// (0, 1]; a recovery notice follows when it falls below again.
    pub error_rate_threshold: f64,
    /// The sliding window of the error rate, in windows.
    pub error_rate_windows: u32,
    /// Fewest messages (sent + failed) over the sliding window for the
    /// error rate to be judged at all.
    pub min_sample: u64,
    /// Transient plus in-doubt answers of one list in one window at or
    /// above which a provider outage is reported.
    pub outage_threshold: u64,
    /// One-off alerts (billing-blocked account, unservable list) are sent
    /// again at most this often while the condition lasts.
    pub repeat_after: Dur,
    /// Most messages posted to one Discord webhook per minute, across all
    /// daemons; beyond it alerts are dropped and counted, and the next one
    /// that goes says how many.
    pub per_webhook_per_minute: u32,
    /// One Discord request's time limit.
    pub request_timeout: Dur,
    /// A 429 asking to wait longer than this gives the alert up.
    pub max_retry_after: Dur,
    /// Provider codes listed per failure alert (the most frequent).
    pub top_codes: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            window: Dur::secs(60),
            grace: Dur::secs(15),
            flush_interval: Dur::secs(5),
            error_rate_threshold: 0.2,
            error_rate_windows: 5,
            min_sample: 50,
            outage_threshold: 20,
            repeat_after: Dur::secs(3600),
            per_webhook_per_minute: 10,
            request_timeout: Dur::secs(10),
            max_retry_after: Dur::secs(60),
            top_codes: 5,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub infobip: InfobipConfig,
    pub twilio: TwilioConfig,
    pub cm: CmConfig,
    pub fake: FakeProviderConfig,
}

/// Infobip's SMS API (`POST /sms/2/text/advanced`). The API key comes from
/// `TRACKLY_INFOBIP_API_KEY` (or `..._<NAME>` for a list's named credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfobipConfig {
    /// The account's base URL (`https://xxxxx.api.infobip.com`), or the mock.
    pub base_url: String,
    /// Request timeout; an answer later than this is NO_RESPONSE.
    pub timeout: Dur,
    /// Messages per request.
    pub batch_size: usize,
    /// Requests in flight per worker.
    pub concurrency: usize,
}

impl Default for InfobipConfig {
    fn default() -> Self {
        InfobipConfig {
            base_url: "https://api.infobip.com".into(),
            timeout: Dur::secs(10),
            batch_size: 500,
            concurrency: 4,
        }
    }
}

/// Twilio's Messaging API, one request per message. Credentials from
/// `TRACKLY_TWILIO_ACCOUNT_SID` and `TRACKLY_TWILIO_AUTH_TOKEN` (or `..._<NAME>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    pub base_url: String,
    pub timeout: Dur,
    /// Requests in flight per worker.
    pub concurrency: usize,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            base_url: "https://api.twilio.com".into(),
            timeout: Dur::secs(10),
            concurrency: 64,
        }
    }
}

/// CM.com's Business Messaging JSON API. The product token comes from
/// `TRACKLY_CM_PRODUCT_TOKEN` (or `..._<NAME>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CmConfig {
    pub base_url: String,
    pub timeout: Dur,
    /// Messages per request.
    pub batch_size: usize,
    /// Requests in flight per worker.
    pub concurrency: usize,
}

impl Default for CmConfig {
    fn default() -> Self {
        CmConfig {
            base_url: "https://gw.messaging.cm.com".into(),
            timeout: Dur::secs(10),
            batch_size: 500,
            concurrency: 4,
        }
    }
}

/// The in-process fake provider (demo, tests, benchmarks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeProviderConfig {
    /// Lists with provider `fake` are refused unless this is true.
    pub enabled: bool,
    /// Time one provider call takes.
    pub latency: Dur,
    /// Fraction of messages rejected permanently.
    pub reject_rate: f64,
    /// Fraction of calls answered with a transient error (5xx).
    pub transient_rate: f64,
    /// Fraction of calls throttled (429).
    pub throttle_rate: f64,
    /// Fraction of calls that time out after the request went out.
    pub timeout_rate: f64,
    /// Messages per call (the fake's "batch API").
    pub batch_size: usize,
    /// Append every accepted message id to this file (for crash tests);
    /// empty: keep them in memory only.
    pub record_file: String,
    /// Provider timeout used for the in-doubt window.
    pub timeout: Dur,
}

impl Default for FakeProviderConfig {
    fn default() -> Self {
        FakeProviderConfig {
            enabled: false,
            latency: Dur::millis(20),
            reject_rate: 0.0,
            transient_rate: 0.0,
            throttle_rate: 0.0,
            timeout_rate: 0.0,
            batch_size: 500,
            record_file: String::new(),
            timeout: Dur::secs(10),
        }
    }
}
