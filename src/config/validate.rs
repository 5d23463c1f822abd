//! Semantic checks of a configuration, all reported together. Timing
//! checks use only the providers this daemon would send through.

use super::{Config, ConfigError, ConfigErrors, Secrets};
use std::net::SocketAddr;
use std::time::Duration;

impl Config {
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
        if !(1..=50_000).contains(&self.scheduler.page_size) {
            err(
                "scheduler.page_size",
                format!("must be 1 to 50000, got {}", self.scheduler.page_size),
            );
        }
        if self.links.max_pending_clicks == 0 {
            err("links.max_pending_clicks", "must be at least 1".into());
        }
        if self.scheduler.max_concurrent_runs == 0 {
            err("scheduler.max_concurrent_runs", "must be at least 1".into());
        }
        if self
            .scheduler
            .default_time_zone
            .parse::<chrono_tz::Tz>()
            .is_err()
        {
            err(
                "scheduler.default_time_zone",
                format!(
                    "not an IANA time zone name: {:?}",
                    self.scheduler.default_time_zone
                ),
            );
        }
        if self.resolver.max_per_look == 0 {
            err("resolver.max_per_look", "must be at least 1".into());
        }
        if self.resolver.lookups_per_minute == 0 {
            err("resolver.lookups_per_minute", "must be at least 1".into());
        }
        if self.resolver.retry_max.0 < self.resolver.retry_base.0 {
            err(
                "resolver.retry_max",
                "must be at least resolver.retry_base".into(),
            );
        }
        let floor = self.scheduler.exploration_floor;
        if !(0.0..=0.5).contains(&floor) {
            err(
                "scheduler.exploration_floor",
                format!("must be between 0 and 0.5, got {floor}"),
            );
        }
        let base = self.links.base_url.trim();
        if !base.is_empty()
            && !url::Url::parse(base)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            err(
                "links.base_url",
                format!("not an http(s) URL with a host: {base:?}"),
            );
        }
        let positive = [
            ("coordinator.poll_interval", self.coordinator.poll_interval),
            (
                "coordinator.claim_lookahead",
                self.coordinator.claim_lookahead,
            ),
            ("daemon.heartbeat_interval", self.daemon.heartbeat_interval),
            ("log.progress_interval", self.log.progress_interval),
            ("daemon.lease_ttl", self.daemon.lease_ttl),
            ("recovery.sweep_interval", self.recovery.sweep_interval),
            ("recovery.in_doubt_horizon", self.recovery.in_doubt_horizon),
            ("recovery.unservable_check", self.recovery.unservable_check),
            ("resolver.interval", self.resolver.interval),
            ("resolver.retry_base", self.resolver.retry_base),
            ("resolver.retry_max", self.resolver.retry_max),
            ("scheduler.max_idle", self.scheduler.max_idle),
            (
                "scheduler.stats_flush_interval",
                self.scheduler.stats_flush_interval,
            ),
            ("scheduler.missed_grace", self.scheduler.missed_grace),
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
        let cw = &self.customer_webhooks;
        if cw.poll_interval.0 < Duration::from_millis(10) {
            err(
                "customer_webhooks.poll_interval",
                "must be at least 10ms".into(),
            );
        }
        if cw.max_poll_interval < cw.poll_interval {
            err(
                "customer_webhooks.max_poll_interval",
                "must not be shorter than customer_webhooks.poll_interval".into(),
            );
        }
        if !(1..=10_000).contains(&cw.batch_size) {
            err(
                "customer_webhooks.batch_size",
                format!("must be 1 to 10000, got {}", cw.batch_size),
            );
        }
        if !(1..=1024).contains(&cw.concurrency) {
            err(
                "customer_webhooks.concurrency",
                format!("must be 1 to 1024, got {}", cw.concurrency),
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&cw.request_timeout.0)
        {
            err(
                "customer_webhooks.request_timeout",
                "must be 100ms to 5m".into(),
            );
        }
        if cw.claim_lease.0 <= cw.longest_batch() {
            err(
                "customer_webhooks.claim_lease",
                format!(
                    "must exceed the longest a batch can take: request_timeout × ⌈batch_size / concurrency⌉ = {}",
                    humantime::format_duration(cw.longest_batch())
                ),
            );
        }
        if cw.retry_base.0.is_zero() {
            err("customer_webhooks.retry_base", "must be more than 0".into());
        }
        if cw.retry_max < cw.retry_base {
            err(
                "customer_webhooks.retry_max",
                "must not be shorter than customer_webhooks.retry_base".into(),
            );
        }
        if cw.give_up_after < cw.retry_base {
            err(
                "customer_webhooks.give_up_after",
                "must not be shorter than customer_webhooks.retry_base".into(),
            );
        }
        for (i, c) in cw.allowed_cidrs.iter().enumerate() {
            if let Err(e) = c.parse::<crate::net::outbound_url::Cidr>() {
                err("customer_webhooks.allowed_cidrs", format!("entry {i}: {e}"));
            }
        }
        let al = &self.alerts;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&al.window.0) {
            err("alerts.window", "must be 1s to 1h".into());
        }
        if al.flush_interval.0 < Duration::from_millis(10) || al.flush_interval > al.window {
            err(
                "alerts.flush_interval",
                "must be at least 10ms and not longer than alerts.window".into(),
            );
        }
        if al.grace.0 < al.flush_interval.0 * 2 {
            err(
                "alerts.grace",
                "must be at least twice alerts.flush_interval (other daemons add their counts within it)".into(),
            );
        }
        if !(al.error_rate_threshold > 0.0 && al.error_rate_threshold <= 1.0) {
            err(
                "alerts.error_rate_threshold",
                format!("must be in (0, 1], got {}", al.error_rate_threshold),
            );
        }
        if !(1..=60).contains(&al.error_rate_windows) {
            err(
                "alerts.error_rate_windows",
                format!("must be 1 to 60, got {}", al.error_rate_windows),
            );
        }
        if al.min_sample == 0 {
            err("alerts.min_sample", "must be at least 1".into());
        }
        if al.outage_threshold == 0 {
            err("alerts.outage_threshold", "must be at least 1".into());
        }
        if al.repeat_after < al.window {
            err(
                "alerts.repeat_after",
                "must not be shorter than alerts.window".into(),
            );
        }
        if !(1..=1000).contains(&al.per_webhook_per_minute) {
            err(
                "alerts.per_webhook_per_minute",
                format!("must be 1 to 1000, got {}", al.per_webhook_per_minute),
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&al.request_timeout.0) {
            err("alerts.request_timeout", "must be 100ms to 1m".into());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&al.max_retry_after.0) {
            err("alerts.max_retry_after", "must be 1s to 1h".into());
        }
        if !(1..=20).contains(&al.top_codes) {
            err(
                "alerts.top_codes",
                format!("must be 1 to 20, got {}", al.top_codes),
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
}

fn names(providers: &[(&'static str, Duration, Duration)]) -> String {
    if providers.is_empty() {
        "none configured".into()
    } else {
        providers.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
    }
}
