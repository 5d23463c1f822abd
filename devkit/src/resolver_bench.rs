//! `cargo benchmark --suite resolver`: how long in-doubt messages wait for
//! their resolution, and what it costs at the provider. For Infobip and
//! Twilio: a daemon (real adapters, the mock provider over HTTP on
//! 127.0.0.1) sends `messages` messages that the mock takes and then
//! answers 5xx, every one of them (no delivery reports: lookups are the only
//! evidence). The clock runs from the first message recorded in doubt to
//! the last one resolved as sent by a lookup, with `resolver.settle_delay`
//! at 0 and `resolver.interval` at 100 ms (in production the settle delay,
//! 1 minute by default, comes on top). Lookups per 1,000 in-doubt messages
//! are the mock's lookup requests.

use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Dur, StoreBackend};
use trackly::domain::*;
use trackly::ratelimit::local::LocalPermits;
use trackly::store::mongo::MongoStore;
use trackly::store::{FailedFilter, Stores};

#[derive(Debug, Clone)]
pub struct ResolverBenchOptions {
    pub store: StoreBackend,
    pub messages: u64,
    pub mongodb_uri: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResolverBenchLine {
    pub provider: &'static str,
    pub messages: u64,
    pub seconds: f64,
    pub lookup_requests: u64,
    pub resolved: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ResolverBenchReport {
    pub store: &'static str,
    pub lines: Vec<ResolverBenchLine>,
}

impl ResolverBenchReport {
    pub fn table(&self) -> String {
        let mut out = format!("\nstore: {}\n", self.store);
        for l in &self.lines {
            out.push_str(&format!(
                "  in-doubt resolution, {p}: {n} messages taken and answered 5xx; first in doubt to last resolved {s:.2} s; {r} resolved as sent; {q} lookup requests = {per:.1} per 1,000 in-doubt messages\n",
                p = l.provider,
                n = l.messages,
                s = l.seconds,
                r = l.resolved,
                q = l.lookup_requests,
                per = l.lookup_requests as f64 * 1000.0 / l.messages.max(1) as f64,
            ));
        }
        out
    }
}

async fn open_in_doubt(stores: &Stores) -> u64 {
    let f = FailedFilter {
        reason: Some(FailureReason::NoResponse),
        open_only: true,
        ..Default::default()
    };
    stores.dead_letters.count_failed(&f).await.unwrap_or(0)
}

pub async fn run(opts: ResolverBenchOptions) -> Result<ResolverBenchReport, String> {
    let mut report = ResolverBenchReport {
        store: match opts.store {
            StoreBackend::Memory => "memory",
            StoreBackend::Mongodb => "mongodb",
        },
        lines: vec![],
    };
    for kind in [ProviderKind::Infobip, ProviderKind::Twilio] {
        let (stores, mongo) = match opts.store {
            StoreBackend::Memory => (Stores::memory(), None),
            StoreBackend::Mongodb => {
                let db = format!("bench_rs_{}", MessageId::new().to_hex());
                let m = MongoStore::connect(&opts.mongodb_uri, &db, Duration::from_secs(10), None)
                    .await
                    .map_err(|e| e.to_string())?;
                m.ensure_indexes().await.map_err(|e| e.to_string())?;
                (
                    Stores::from_backend(Arc::new(m.clone()), "mongodb"),
                    Some(m),
                )
            }
        };
        let mut cfg = trackly::config::Config::default();
        cfg.providers.fake.enabled = false;
        cfg.recovery.sweep_interval = Dur::millis(200);
        cfg.resolver.interval = Dur::millis(100);
        cfg.resolver.settle_delay = Dur::millis(0);
        cfg.coordinator.poll_interval = Dur::millis(50);
        let mock = trackly_devkit_mock_config();
        let d = crate::harness::HttpDaemon::start(
            cfg,
            stores.clone(),
            Arc::new(LocalPermits::new()),
            Arc::new(SystemClock),
            None,
            Some(mock),
        )
        .map_err(|e| e.to_string())?;
        crate::seed::campaign(
            &stores,
            opts.messages,
            crate::harness::settings_for(kind),
            1_000_000,
            Money::from_micros(1_000_000_000_000),
            SystemClock.now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        d.daemon.coordinator.do_send(trackly::messages::Nudge);
        let limit = Instant::now() + Duration::from_secs(600);
        // The first message in doubt.
        let start = loop {
            if open_in_doubt(&stores).await > 0 {
                break Instant::now();
            }
            if Instant::now() > limit {
                return Err(format!("{kind:?}: nothing fell in doubt"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let resolved = |m: &trackly::metrics::Metrics| m.resolved_by_lookup_count("taken");
        loop {
            if resolved(&d.daemon.metrics) >= opts.messages
                && stores.queue.depth().await.unwrap_or(1) == 0
            {
                break;
            }
            if Instant::now() > limit {
                return Err(format!(
                    "{kind:?}: {} of {} resolved after 10 minutes",
                    resolved(&d.daemon.metrics),
                    opts.messages
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seconds = start.elapsed().as_secs_f64();
        let lookups = d.mock.as_ref().map_or(0, |m| {
            m.state
                .counters
                .lookups
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        report.lines.push(ResolverBenchLine {
            provider: kind.as_str(),
            messages: opts.messages,
            seconds,
            lookup_requests: lookups,
            resolved: resolved(&d.daemon.metrics),
        });
        d.stop().await;
        if let Some(m) = mongo {
            let _ = m.drop_database().await;
        }
    }
    Ok(report)
}

/// Every request taken and answered 502; no reports.
fn trackly_devkit_mock_config() -> crate::mock::MockConfig {
    crate::mock::MockConfig {
        reports: false,
        error_rate: 1.0,
        error_status: 502,
        accept_on_error: true,
        latency: Duration::from_millis(5),
        ..Default::default()
    }
}
