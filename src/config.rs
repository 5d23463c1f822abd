//! Configuration: typed sections with defaults in one place (the `Default`
//! impls below), unknown keys rejected, environment overrides, and every
//! error reported at once.
//!
//! Precedence: built-in defaults < the TOML file < `TRACKLY_SECTION__KEY`
//! environment variables (`TRACKLY_RATE_LIMIT__BACKEND=local`,
//! `TRACKLY_PROVIDERS__FAKE__ENABLED=true`). Secrets never live in the file:
//! see [`Secrets`].

use crate::telemetry::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A duration written as a humantime string (`"250ms"`, `"10m"`, `"1h 30m"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

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
    pub supervisor: SupervisorConfig,
    pub worker: WorkerConfig,
    pub rate_limit: RateLimitConfig,
    pub billing: BillingConfig,
    pub dead_letter: DeadLetterConfig,
    pub webhooks: WebhooksConfig,
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
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            json: false,
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
            claim_lookahead: Dur::secs(2),
            max_batch: 1000,
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
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            sweep_interval: Dur::secs(10),
            in_doubt_horizon: Dur::secs(3600),
            unservable_check: Dur::secs(60),
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
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            workers: 6,
            list_refresh: Dur::secs(10),
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

/// Secrets, read from the environment only.
///
/// Provider credentials come in named sets: a list's provider settings name
/// one (`credentials = "default"` unless set). `TRACKLY_INFOBIP_API_KEY` is
/// the set "default", `TRACKLY_INFOBIP_API_KEY_EU` the set "eu"; likewise
/// `TRACKLY_TWILIO_ACCOUNT_SID[_NAME]` with `TRACKLY_TWILIO_AUTH_TOKEN[_NAME]`,
/// and `TRACKLY_CM_PRODUCT_TOKEN[_NAME]`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub admin_token: Option<Secret>,
    /// Part of the delivery-report URLs of providers that do not sign their
    /// reports (Infobip, CM): `/webhooks/infobip/<token>`.
    pub webhook_token: Option<Secret>,
    pub infobip: std::collections::BTreeMap<String, Secret>,
    pub twilio: std::collections::BTreeMap<String, TwilioCredentials>,
    pub cm: std::collections::BTreeMap<String, Secret>,
}

#[derive(Debug, Clone)]
pub struct TwilioCredentials {
    pub account_sid: Secret,
    pub auth_token: Secret,
}

impl Secrets {
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Pure: tests pass their own environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| Secret::new(v.clone()))
        };
        // `BASE` is the set "default", `BASE_NAME` the set "name".
        let named = |base: &str| -> std::collections::BTreeMap<String, Secret> {
            vars.iter()
                .filter_map(|(n, v)| {
                    let rest = n.strip_prefix(base)?;
                    let name = if rest.is_empty() {
                        "default".to_string()
                    } else {
                        rest.strip_prefix('_')?.to_ascii_lowercase()
                    };
                    Some((name, Secret::new(v.clone())))
                })
                .collect()
        };
        let sids = named("TRACKLY_TWILIO_ACCOUNT_SID");
        let tokens = named("TRACKLY_TWILIO_AUTH_TOKEN");
        let twilio = sids
            .into_iter()
            .filter_map(|(name, sid)| {
                tokens.get(&name).map(|tok| {
                    (
                        name,
                        TwilioCredentials {
                            account_sid: sid,
                            auth_token: tok.clone(),
                        },
                    )
                })
            })
            .collect();
        Secrets {
            admin_token: get("TRACKLY_ADMIN_TOKEN"),
            webhook_token: get("TRACKLY_WEBHOOK_TOKEN"),
            infobip: named("TRACKLY_INFOBIP_API_KEY"),
            twilio,
            cm: named("TRACKLY_CM_PRODUCT_TOKEN"),
        }
    }
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`coordinator.max_batch`), or the env variable.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const ENV_PREFIX: &str = "TRACKLY_";

impl Config {
    /// Load a file (or only defaults when `path` is None), apply environment
    /// overrides from the process environment, and validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    key: p.display().to_string(),
                    message: format!("cannot read: {e}"),
                }])
            })?,
            None => String::new(),
        };
        Self::from_sources(&text, std::env::vars())
    }

    /// Parse TOML text plus `(name, value)` environment pairs. Pure: tests
    /// pass their own environment.
    pub fn from_sources(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let defaults = toml::Value::try_from(Config::default()).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "<defaults>".into(),
                message: e.to_string(),
            }])
        })?;
        let mut value: toml::Value = match toml::from_str::<toml::Table>(text) {
            Ok(t) => toml::Value::Table(t),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    key: "<file>".into(),
                    message: format!("not valid TOML: {}", e.message().trim()),
                }]));
            }
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        check_shape(&value, &defaults, "", &mut errors);
        if !errors.is_empty() {
            // Unknown keys and wrong types are reported; drop them so the
            // remaining values can still be checked below.
            for e in &errors {
                remove_path(&mut value, &e.key);
            }
        }
        for (name, raw) in &env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX)
                && rest.contains("__")
            {
                apply_env(&mut value, &defaults, name, rest, raw, &mut errors);
            }
        }
        // Values of the right shape can still be wrong ("soon" is not a
        // duration): deserialize, and on an error note it, put the default
        // back at that path, and go on, so every such error is reported too.
        let mut cfg = None;
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                Ok(c) => {
                    cfg = Some(c);
                    break;
                }
                Err(e) => {
                    let path = e.path().to_string();
                    errors.push(ConfigError {
                        key: path.clone(),
                        message: e.into_inner().to_string().trim().to_string(),
                    });
                    if !reset_to_default(&mut value, &defaults, &path) {
                        break;
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let Some(cfg) = cfg else {
            return Err(ConfigErrors(vec![ConfigError {
                key: "<config>".into(),
                message: "could not be read".into(),
            }]));
        };
        cfg.validate_with(&Secrets::from_vars(env))?;
        Ok(cfg)
    }

    /// Semantic checks with no provider credentials configured.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.validate_with(&Secrets::default())
    }

    /// The providers this daemon would send through, as `(name, timeout,
    /// longest chunk send)`: those with credentials in `secrets`, and the
    /// fake when enabled. A chunk is at most four provider-sized requests,
    /// sent `concurrency` at a time.
    pub fn configured_providers(
        &self,
        secrets: &Secrets,
    ) -> Vec<(&'static str, Duration, Duration)> {
        let p = &self.providers;
        let rounds = |requests: usize, concurrency: usize| {
            requests.div_ceil(concurrency.max(1)).max(1) as u32
        };
        let mut v = Vec::new();
        if !secrets.infobip.is_empty() {
            v.push((
                "infobip",
                p.infobip.timeout.0,
                p.infobip.timeout.0 * rounds(4, p.infobip.concurrency),
            ));
        }
        if !secrets.twilio.is_empty() {
            // One message per request, `concurrency` in flight: a chunk of
            // four times that takes four rounds.
            v.push(("twilio", p.twilio.timeout.0, p.twilio.timeout.0 * 4));
        }
        if !secrets.cm.is_empty() {
            v.push((
                "cm",
                p.cm.timeout.0,
                p.cm.timeout.0 * rounds(4, p.cm.concurrency),
            ));
        }
        if p.fake.enabled {
            v.push(("fake", p.fake.timeout.0, p.fake.timeout.0 * 4));
        }
        v
    }

    /// The longest provider timeout among configured providers.
    pub fn longest_send(&self, secrets: &Secrets) -> Duration {
        self.configured_providers(secrets)
            .iter()
            .map(|(_, t, _)| *t)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Semantic checks, all of them, reported together; timing checks use
    /// the providers configured in `secrets` (and the fake when enabled).
    pub fn validate_with(&self, secrets: &Secrets) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut err = |key: &str, message: String| {
            errs.push(ConfigError {
                key: key.into(),
                message,
            })
        };
        if self.http.bind.parse::<SocketAddr>().is_err() {
            err(
                "http.bind",
                format!("not a socket address: {:?}", self.http.bind),
            );
        }
        if !(self.http.public_url.starts_with("http://")
            || self.http.public_url.starts_with("https://"))
        {
            err(
                "http.public_url",
                "must start with http:// or https://".into(),
            );
        }
        if !self.mongo.uri.starts_with("mongodb://")
            && !self.mongo.uri.starts_with("mongodb+srv://")
        {
            err(
                "mongo.uri",
                "must start with mongodb:// or mongodb+srv://".into(),
            );
        }
        if self.mongo.database.is_empty()
            || self
                .mongo
                .database
                .contains(['/', '\\', '.', ' ', '"', '$'])
        {
            err(
                "mongo.database",
                format!("not a valid database name: {:?}", self.mongo.database),
            );
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            err("redis.url", "must start with redis:// or rediss://".into());
        }
        if self.redis.pool_size == 0 {
            err("redis.pool_size", "must be at least 1".into());
        }
        let positive = [
            ("coordinator.poll_interval", self.coordinator.poll_interval),
            (
                "coordinator.claim_lookahead",
                self.coordinator.claim_lookahead,
            ),
            ("daemon.heartbeat_interval", self.daemon.heartbeat_interval),
            ("daemon.lease_ttl", self.daemon.lease_ttl),
            ("recovery.sweep_interval", self.recovery.sweep_interval),
            ("recovery.in_doubt_horizon", self.recovery.in_doubt_horizon),
            ("recovery.unservable_check", self.recovery.unservable_check),
            (
                "coordinator.idle_supervisor_after",
                self.coordinator.idle_supervisor_after,
            ),
            ("supervisor.list_refresh", self.supervisor.list_refresh),
            ("worker.stale_after", self.worker.stale_after),
            ("worker.retry_base", self.worker.retry_base),
            ("worker.permit_timeout", self.worker.permit_timeout),
            ("rate_limit.recover_every", self.rate_limit.recover_every),
            (
                "rate_limit.unavailable_retry",
                self.rate_limit.unavailable_retry,
            ),
            ("billing.backoff", self.billing.backoff),
            ("billing.ttl", self.billing.ttl),
            ("redis.timeout", self.redis.timeout),
            (
                "mongo.server_selection_timeout",
                self.mongo.server_selection_timeout,
            ),
            ("providers.fake.timeout", self.providers.fake.timeout),
            ("providers.infobip.timeout", self.providers.infobip.timeout),
            ("providers.twilio.timeout", self.providers.twilio.timeout),
            ("providers.cm.timeout", self.providers.cm.timeout),
        ];
        for (k, d) in positive {
            if d.0.is_zero() {
                err(k, "must be greater than zero".into());
            }
        }
        if !(1..=64).contains(&self.supervisor.workers) {
            err(
                "supervisor.workers",
                format!("must be 1 to 64, got {}", self.supervisor.workers),
            );
        }
        if !(1..=10_000).contains(&self.coordinator.max_batch) {
            err(
                "coordinator.max_batch",
                format!("must be 1 to 10000, got {}", self.coordinator.max_batch),
            );
        }
        if self.coordinator.max_lists == 0 {
            err("coordinator.max_lists", "must be at least 1".into());
        }
        if !(1..=100_000).contains(&self.dead_letter.max_batch) {
            err("dead_letter.max_batch", "must be 1 to 100000".into());
        }
        if !(1..=100_000).contains(&self.webhooks.max_batch) {
            err("webhooks.max_batch", "must be 1 to 100000".into());
        }
        if self.coordinator.max_poll_interval < self.coordinator.poll_interval {
            err(
                "coordinator.max_poll_interval",
                "must not be shorter than coordinator.poll_interval".into(),
            );
        }
        if self.worker.retry_max < self.worker.retry_base {
            err(
                "worker.retry_max",
                "must not be shorter than worker.retry_base".into(),
            );
        }
        if self.billing.ttl < self.billing.backoff {
            err(
                "billing.ttl",
                "must not be shorter than billing.backoff".into(),
            );
        }
        // Timing, against the providers this daemon would use. A live
        // daemon must be able to miss one renewal and still finish a send
        // it started within its lease; otherwise recovery elsewhere would
        // judge its sends in doubt while they are in flight.
        let providers = self.configured_providers(secrets);
        let longest = providers
            .iter()
            .map(|p| p.1)
            .max()
            .unwrap_or(Duration::ZERO);
        let need = self.daemon.heartbeat_interval.0 * 2 + longest;
        if self.daemon.lease_ttl.0 <= need {
            err(
                "daemon.lease_ttl",
                format!(
                    "must exceed twice daemon.heartbeat_interval plus the longest configured provider timeout ({}; providers: {})",
                    humantime::format_duration(need),
                    names(&providers)
                ),
            );
        }
        // The hard horizon must not catch a live daemon's chunk in flight.
        let chunk = providers
            .iter()
            .map(|p| p.2)
            .max()
            .unwrap_or(Duration::ZERO);
        let need = self.daemon.lease_ttl.0 + chunk;
        if self.recovery.in_doubt_horizon.0 <= need {
            err(
                "recovery.in_doubt_horizon",
                format!(
                    "must exceed daemon.lease_ttl plus the longest a chunk can take to send ({}; providers: {})",
                    humantime::format_duration(need),
                    names(&providers)
                ),
            );
        }
        if !(1024..=1 << 34).contains(&self.webhooks.max_pending_bytes) {
            err(
                "webhooks.max_pending_bytes",
                "must be 1 KiB to 16 GiB".into(),
            );
        }
        if !(self.rate_limit.burst_seconds > 0.0 && self.rate_limit.burst_seconds <= 60.0) {
            err("rate_limit.burst_seconds", "must be in (0, 60]".into());
        }
        if !(self.rate_limit.decrease_factor > 0.0 && self.rate_limit.decrease_factor < 1.0) {
            err("rate_limit.decrease_factor", "must be in (0, 1)".into());
        }
        if !(self.rate_limit.min_fraction > 0.0 && self.rate_limit.min_fraction <= 1.0) {
            err("rate_limit.min_fraction", "must be in (0, 1]".into());
        }
        if !(self.rate_limit.recover_step > 0.0 && self.rate_limit.recover_step <= 1.0) {
            err("rate_limit.recover_step", "must be in (0, 1]".into());
        }
        let f = &self.providers.fake;
        for (k, v) in [
            ("providers.fake.reject_rate", f.reject_rate),
            ("providers.fake.transient_rate", f.transient_rate),
            ("providers.fake.throttle_rate", f.throttle_rate),
            ("providers.fake.timeout_rate", f.timeout_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                err(k, format!("must be a fraction in [0, 1], got {v}"));
            }
        }
        if !(1..=10_000).contains(&f.batch_size) {
            err("providers.fake.batch_size", "must be 1 to 10000".into());
        }
        let p = &self.providers;
        for (k, url) in [
            ("providers.infobip.base_url", &p.infobip.base_url),
            ("providers.twilio.base_url", &p.twilio.base_url),
            ("providers.cm.base_url", &p.cm.base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.ends_with('/') {
                err(
                    k,
                    format!("must be an http(s) URL without a trailing slash, got {url:?}"),
                );
            }
        }
        for (k, v) in [
            ("providers.infobip.batch_size", p.infobip.batch_size),
            ("providers.cm.batch_size", p.cm.batch_size),
        ] {
            if !(1..=10_000).contains(&v) {
                err(k, "must be 1 to 10000".into());
            }
        }
        for (k, v) in [
            ("providers.infobip.concurrency", p.infobip.concurrency),
            ("providers.twilio.concurrency", p.twilio.concurrency),
            ("providers.cm.concurrency", p.cm.concurrency),
        ] {
            if !(1..=1024).contains(&v) {
                err(k, "must be 1 to 1024".into());
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// The daemon id, defaulted to `<hostname>-<pid>`.
    pub fn daemon_id(&self) -> String {
        if !self.daemon.id.is_empty() {
            return self.daemon.id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "trackly".into());
        format!("{host}-{}", std::process::id())
    }
}

fn names(providers: &[(&'static str, Duration, Duration)]) -> String {
    if providers.is_empty() {
        "none configured".into()
    } else {
        providers.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
    }
}

/// Remove the value at a dotted `path`, if there is one.
fn remove_path(value: &mut toml::Value, path: &str) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = value;
    for (i, seg) in segs.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i + 1 == segs.len() {
            t.remove(*seg);
            return;
        }
        match t.get_mut(*seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

/// Replace the value at a dotted `path` with the default's. False when the
/// path does not lead anywhere (nothing more can be fixed).
fn reset_to_default(value: &mut toml::Value, defaults: &toml::Value, path: &str) -> bool {
    let segs: Vec<&str> = path
        .split('.')
        .filter(|s| !s.is_empty() && *s != "?")
        .collect();
    if segs.is_empty() {
        return false;
    }
    let mut d = defaults;
    for seg in &segs {
        match d.get(seg) {
            Some(next) => d = next,
            None => return false,
        }
    }
    let mut cur = value;
    for (i, seg) in segs.iter().enumerate() {
        let toml::Value::Table(t) = cur else {
            return false;
        };
        if i + 1 == segs.len() {
            t.insert(seg.to_string(), d.clone());
            return true;
        }
        match t.get_mut(*seg) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    false
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn same_kind(user: &toml::Value, default: &toml::Value) -> bool {
    use toml::Value::*;
    matches!(
        (user, default),
        (String(_), String(_))
            | (Integer(_), Integer(_))
            | (Float(_), Float(_))
            | (Integer(_), Float(_))
            | (Boolean(_), Boolean(_))
            | (Array(_), Array(_))
            | (Table(_), Table(_))
    )
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Walk the user's value against the defaults: unknown keys and wrong types,
/// all of them.
fn check_shape(
    user: &toml::Value,
    default: &toml::Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    if let (toml::Value::Table(u), toml::Value::Table(d)) = (user, default) {
        for (k, v) in u {
            let p = join(path, k);
            match d.get(k) {
                None => errors.push(ConfigError {
                    key: p,
                    message: format!(
                        "unknown key (known here: {})",
                        d.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
                Some(dv) if !same_kind(v, dv) => errors.push(ConfigError {
                    key: p,
                    message: format!("expected {}, found {}", kind(dv), kind(v)),
                }),
                Some(dv) => check_shape(v, dv, &p, errors),
            }
        }
    }
}

/// Apply one `TRACKLY_A__B__C=value` override, typed by the default's type.
fn apply_env(
    value: &mut toml::Value,
    defaults: &toml::Value,
    name: &str,
    rest: &str,
    raw: &str,
    errors: &mut Vec<ConfigError>,
) {
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let mut d = defaults;
    for seg in &path {
        match d.get(seg) {
            Some(next) => d = next,
            None => {
                errors.push(ConfigError {
                    key: name.to_string(),
                    message: format!("no such configuration key: {}", path.join(".")),
                });
                return;
            }
        }
    }
    let parsed = match d {
        toml::Value::String(_) => Some(toml::Value::String(raw.to_string())),
        toml::Value::Integer(_) => raw.trim().parse::<i64>().ok().map(toml::Value::Integer),
        toml::Value::Float(_) => raw.trim().parse::<f64>().ok().map(toml::Value::Float),
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Some(toml::Value::Boolean(true)),
            "false" | "0" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        toml::Value::Table(_) => None,
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v")),
    };
    let Some(parsed) = parsed else {
        errors.push(ConfigError {
            key: name.to_string(),
            message: format!("expected {}, got {raw:?}", kind(d)),
        });
        return;
    };
    let mut cur = value;
    for (i, seg) in path.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i + 1 == path.len() {
            t.insert(seg.clone(), parsed);
            return;
        }
        cur = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::from_sources("", env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
            [coordinator]
            max_batch = "many"
            polling = "1s"
            [supervisor]
            workers = 6
            [nope]
            x = 1
        "#;
        let text = format!("{text}\n[worker]\nstale_after = \"soon\"\nretry_base = \"later\"\n");
        let errs = Config::from_sources(&text, env(&[("TRACKLY_HTTP__BINDD", "x")])).unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"coordinator.max_batch"), "{errs}");
        assert!(keys.contains(&"coordinator.polling"), "{errs}");
        assert!(keys.contains(&"nope"), "{errs}");
        assert!(keys.contains(&"TRACKLY_HTTP__BINDD"), "{errs}");
        assert!(keys.contains(&"worker.stale_after"), "{errs}");
        assert!(keys.contains(&"worker.retry_base"), "{errs}");
        assert_eq!(errs.0.len(), 6, "{errs}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = r#"
            [supervisor]
            workers = 0
            [coordinator]
            max_batch = 0
            [daemon]
            lease_ttl = "1s"
            [http]
            bind = "not-an-address"
        "#;
        let errs = Config::from_sources(text, env(&[])).unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "supervisor.workers",
            "coordinator.max_batch",
            "daemon.lease_ttl",
            "http.bind",
        ] {
            assert!(keys.contains(&k), "{k} missing in {errs}");
        }
    }

    #[test]
    fn timing_is_checked_against_the_configured_providers_only() {
        // Twilio's 10 s timeout needs a lease longer than 2 × 5 s + 10 s;
        // with only the fake (1 s timeout) configured, 15 s is enough.
        let text = r#"
            [daemon]
            lease_ttl = "15s"
            [providers.fake]
            enabled = true
            timeout = "1s"
        "#;
        assert!(Config::from_sources(text, env(&[])).is_ok());
        let errs = Config::from_sources(
            text,
            env(&[
                ("TRACKLY_TWILIO_ACCOUNT_SID", "AC1"),
                ("TRACKLY_TWILIO_AUTH_TOKEN", "t"),
            ]),
        )
        .unwrap_err();
        assert_eq!(errs.0.len(), 1, "{errs}");
        assert_eq!(errs.0[0].key, "daemon.lease_ttl");
        assert!(errs.0[0].message.contains("twilio"), "{errs}");
        // The hard horizon must outlast a lease plus a chunk in flight.
        let errs = Config::from_sources(
            "[recovery]\nin_doubt_horizon = \"20s\"\n[providers.fake]\nenabled = true",
            env(&[]),
        )
        .unwrap_err();
        assert_eq!(errs.0[0].key, "recovery.in_doubt_horizon", "{errs}");
    }

    #[test]
    fn env_overrides_are_typed() {
        let cfg = Config::from_sources(
            "",
            env(&[
                ("TRACKLY_RATE_LIMIT__BACKEND", "local"),
                ("TRACKLY_SUPERVISOR__WORKERS", "3"),
                ("TRACKLY_PROVIDERS__FAKE__ENABLED", "true"),
                ("TRACKLY_PROVIDERS__FAKE__REJECT_RATE", "0.25"),
                ("TRACKLY_DAEMON__ID", "123"),
                ("TRACKLY_ADMIN_TOKEN", "not-an-override"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.rate_limit.backend, RateLimitBackend::Local);
        assert_eq!(cfg.supervisor.workers, 3);
        assert!(cfg.providers.fake.enabled);
        assert_eq!(cfg.providers.fake.reject_rate, 0.25);
        assert_eq!(cfg.daemon.id, "123");
    }

    #[test]
    fn bad_env_values_are_errors() {
        let errs =
            Config::from_sources("", env(&[("TRACKLY_SUPERVISOR__WORKERS", "six")])).unwrap_err();
        assert_eq!(errs.0[0].key, "TRACKLY_SUPERVISOR__WORKERS");
    }

    #[test]
    fn provider_credentials_come_in_named_sets() {
        let s = Secrets::from_vars(env(&[
            ("TRACKLY_INFOBIP_API_KEY", "k1"),
            ("TRACKLY_INFOBIP_API_KEY_EU", "k2"),
            ("TRACKLY_TWILIO_ACCOUNT_SID", "AC1"),
            ("TRACKLY_TWILIO_AUTH_TOKEN", "t1"),
            ("TRACKLY_TWILIO_ACCOUNT_SID_US", "AC2"),
            ("TRACKLY_CM_PRODUCT_TOKEN", ""),
            ("TRACKLY_INFOBIP_API_KEYX", "not-a-set"),
        ]));
        assert_eq!(
            s.infobip.keys().cloned().collect::<Vec<_>>(),
            vec!["default", "eu"]
        );
        assert_eq!(s.infobip["eu"].expose(), "k2");
        // A set needs both its SID and its token.
        assert_eq!(
            s.twilio.keys().cloned().collect::<Vec<_>>(),
            vec!["default"]
        );
        assert!(s.cm.is_empty(), "empty values are ignored");
    }

    #[test]
    fn bad_durations_are_errors() {
        let errs = Config::from_sources("[worker]\nstale_after = \"soon\"", env(&[])).unwrap_err();
        assert!(errs.to_string().contains("invalid duration"), "{errs}");
    }

    /// The shipped config.toml parses, validates, equals the defaults, and
    /// lists every key.
    #[test]
    fn shipped_config_is_complete_and_valid() {
        let text = include_str!("../config.toml");
        let cfg = Config::from_sources(text, env(&[])).unwrap();
        assert_eq!(cfg, Config::default(), "config.toml must show the defaults");
        let shipped: toml::Value = toml::from_str(text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        fn missing(d: &toml::Value, s: &toml::Value, path: &str, out: &mut Vec<String>) {
            if let (toml::Value::Table(dt), toml::Value::Table(st)) = (d, s) {
                for (k, v) in dt {
                    let p = join(path, k);
                    match st.get(k) {
                        None => out.push(p),
                        Some(sv) => missing(v, sv, &p, out),
                    }
                }
            }
        }
        let mut out = vec![];
        missing(&defaults, &shipped, "", &mut out);
        assert!(out.is_empty(), "config.toml lacks keys: {out:?}");
    }
}
