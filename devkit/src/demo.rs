//! `cargo demo` (`devkit demo`): the whole executor in one process with nothing installed:
//! the in-memory store, the in-process rate limiter and the fake provider
//! (realistic latency, a small failure rate). Seeds an account, a list and a
//! campaign, runs it with a progress bar and prints a summary.

use crate::seed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::app::{Daemon, DaemonParts};
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Config, Dur, RateLimitBackend, StoreBackend};
use trackly::domain::*;
use trackly::messages::Nudge;
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings};
use trackly::ratelimit::local::LocalPermits;
use trackly::store::Stores;

/// Demo knobs (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub messages: u64,
    pub rate_per_minute: u32,
    pub latency: Duration,
    pub reject_rate: f64,
    pub transient_rate: f64,
    pub quiet: bool,
    /// Send through this provider's adapter to an in-process mock provider
    /// over HTTP (reports come back to the daemon's webhooks), instead of
    /// the in-process fake.
    pub via_mock: Option<ProviderKind>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            messages: 10_000,
            rate_per_minute: 500_000,
            latency: Duration::from_millis(20),
            reject_rate: 0.005,
            transient_rate: 0.01,
            quiet: false,
            via_mock: None,
        }
    }
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub messages: u64,
    pub sent: u64,
    pub failed: Vec<(FailureReason, u64)>,
    pub duplicates_at_provider: usize,
    pub duration: Duration,
    pub charged: Money,
    /// Through the mock: the provider, and delivery reports received.
    pub via: Option<ProviderKind>,
    pub delivery: Option<trackly::store::DeliveryCounts>,
}

impl DemoSummary {
    pub fn msg_per_sec(&self) -> f64 {
        (self.sent + self.failed.iter().map(|(_, n)| n).sum::<u64>()) as f64
            / self.duration.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let line = |k: &str, v: String| format!("  {k:<28} {v:>12}\n");
        out.push_str("\nTrackly demo: summary\n");
        out.push_str(&line("messages queued", self.messages.to_string()));
        out.push_str(&line("sent (accepted by provider)", self.sent.to_string()));
        for (r, n) in &self.failed {
            out.push_str(&line(&format!("failed: {r}"), n.to_string()));
        }
        if let (Some(kind), Some(d)) = (self.via, self.delivery) {
            out.push_str(&line(
                "provider (mock, over HTTP)",
                kind.as_str().to_string(),
            ));
            out.push_str(&line("delivered (reports)", d.delivered.to_string()));
            out.push_str(&line("undelivered (reports)", d.undelivered.to_string()));
            out.push_str(&line("awaiting a report", d.unknown.to_string()));
        }
        out.push_str(&line("sent twice", self.duplicates_at_provider.to_string()));
        out.push_str(&line(
            "duration",
            format!("{:.2} s", self.duration.as_secs_f64()),
        ));
        out.push_str(&line(
            "throughput",
            format!("{:.0} msg/s", self.msg_per_sec()),
        ));
        out.push_str(&line("billed", self.charged.to_string()));
        out
    }
}

pub fn demo_config(o: &DemoOptions) -> Config {
    let mut c = Config::default();
    c.store.backend = StoreBackend::Memory;
    c.rate_limit.backend = RateLimitBackend::Local;
    c.coordinator.poll_interval = Dur::millis(100);
    c.coordinator.max_poll_interval = Dur::secs(1);
    c.worker.retry_base = Dur::millis(500);
    c.providers.fake.enabled = true;
    c.providers.fake.latency = Dur(o.latency);
    c.providers.fake.reject_rate = o.reject_rate;
    c.providers.fake.transient_rate = o.transient_rate;
    c
}

/// Seed the demo campaign: every contact subscribed except a few who sent
/// STOP, and a few messages with a blocked word.
async fn seed_demo(
    stores: &Stores,
    o: &DemoOptions,
    provider: ProviderSettings,
    now: Timestamp,
) -> Result<(Account, SendingList), String> {
    let err = |e: trackly::store::StoreError| e.to_string();
    let price = Money::from_micros(7_500);
    let account = seed::account(price.times(o.messages * 2), price, now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(err)?;
    let mut list = seed::list(account.id, provider, o.rate_per_minute, now);
    list.blocked_words = vec!["casino".into()];
    stores.lists.insert_list(list.clone()).await.map_err(err)?;
    let bodies = [
        "Hi! Our spring sale starts today: 20% off everything. Reply STOP to opt out.",
        "Flash sale: free shipping on all orders until midnight. Reply STOP to opt out.",
    ];
    let mut i = 0u64;
    while i < o.messages {
        let n = (o.messages - i).min(1000);
        let mut contacts: Vec<Contact> = (i..i + n)
            .map(|k| seed::contact(account.id, list.id, k, now))
            .collect();
        for (k, c) in contacts.iter_mut().enumerate() {
            // One contact in 500 replied STOP since the audience was built.
            if (i + k as u64) % 500 == 499 {
                c.subscriptions[0].subscribed = false;
            }
        }
        stores
            .contacts
            .insert_contacts(contacts.clone())
            .await
            .map_err(err)?;
        let msgs: Vec<QueuedTextMessage> = contacts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let idx = i + k as u64;
                let body = if idx % 1000 == 777 {
                    "Win big at the casino tonight!"
                } else {
                    bodies[(idx % 2) as usize]
                };
                seed::queued(&list, c, body, now)
            })
            .collect();
        stores.queue.enqueue(msgs).await.map_err(err)?;
        i += n;
    }
    Ok((account, list))
}

/// Run the demo on the current actix system.
pub async fn run(o: DemoOptions) -> Result<DemoSummary, String> {
    let cfg = demo_config(&o);
    let stores = Stores::memory();
    let clock = Arc::new(SystemClock);
    let now = clock.now();
    let provider = o
        .via_mock
        .map_or(ProviderSettings::Fake, crate::harness::settings_for);
    let (account, list) = seed_demo(&stores, &o, provider, now).await?;
    // Either the in-process fake, or the real adapter to a mock over HTTP.
    let (daemon, fake, http) = match o.via_mock {
        None => {
            let fake = Arc::new(FakeProvider::new(FakeSettings::from(&cfg.providers.fake)));
            let daemon = Daemon::start(DaemonParts {
                config: Arc::new(cfg),
                daemon_id: "demo".into(),
                stores: stores.clone(),
                permits: Arc::new(LocalPermits::new()),
                providers: ProviderRegistry::new().with_fake(fake.clone()),
                clock,
                bus: Arc::new(trackly::bus::LocalBus::new()),
                secrets: Arc::new(trackly::config::Secrets::default()),
                metrics: Arc::new(trackly::metrics::Metrics::new()),
            });
            (daemon, Some(fake), None)
        }
        Some(_) => {
            let mock = crate::mock::MockConfig {
                latency: o.latency,
                reject_rate: o.reject_rate,
                // Transient failures the provider documents as "not
                // processed" (429): retried. A 5xx would be in doubt.
                throttle_rate: o.transient_rate,
                report_delay: Duration::from_millis(500),
                delivered_ratio: 0.96,
                failed_ratio: 0.04,
                ..Default::default()
            };
            let h = crate::harness::HttpDaemon::start(
                cfg,
                stores.clone(),
                Arc::new(LocalPermits::new()),
                clock,
                None,
                Some(mock),
            )
            .map_err(|e| format!("cannot start the daemon and the mock provider: {e}"))?;
            (h.daemon.clone(), None, Some(h))
        }
    };
    let bar = if o.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(o.messages);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} messages ({per_sec}) {msg}",
        ) {
            b.set_style(style);
        }
        b
    };
    let start = Instant::now();
    daemon.coordinator.do_send(Nudge);
    let mut sent_done: Option<Duration> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = daemon.metrics.done();
        bar.set_position(done.min(o.messages));
        let reports = daemon.metrics.reports_received.get();
        bar.set_message(format!(
            "sent {}, failed {}, reports {reports}",
            daemon.metrics.sent(),
            daemon.metrics.failed_total()
        ));
        let depth = stores.queue.depth().await.map_err(|e| e.to_string())?;
        if depth == 0 && done >= o.messages && sent_done.is_none() {
            sent_done = Some(start.elapsed());
        }
        if let Some(sent) = sent_done {
            // Through the mock, wait for the delivery reports too.
            let settled = match &http {
                None => true,
                Some(_) => {
                    let c = stores
                        .sent
                        .delivery_counts(list.id)
                        .await
                        .map_err(|e| e.to_string())?;
                    c.unknown == 0 || start.elapsed() > sent + Duration::from_secs(30)
                }
            };
            if settled {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "demo did not finish in 10 minutes ({done} of {} done)",
                o.messages
            ));
        }
    }
    let duration = sent_done.unwrap_or_else(|| start.elapsed());
    bar.finish();
    let failed = stores
        .dead_letters
        .count_by_reason()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let balance = stores
        .accounts
        .get_account(account.id)
        .await
        .map_err(|e| e.to_string())?
        .map(|a| a.balance)
        .unwrap_or(Money::ZERO);
    let delivery = match &http {
        Some(_) => Some(
            stores
                .sent
                .delivery_counts(list.id)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let duplicates = match (&fake, &http) {
        (Some(f), _) => f.duplicates().len(),
        (None, Some(h)) => h.mock.as_ref().map_or(0, |m| m.state.duplicates().len()),
        _ => 0,
    };
    if let Some(h) = http {
        h.stop().await;
    }
    Ok(DemoSummary {
        messages: o.messages,
        sent: daemon.metrics.sent(),
        failed,
        duplicates_at_provider: duplicates,
        duration,
        charged: Money(account.balance.0 - balance.0),
        via: o.via_mock,
        delivery,
    })
}
