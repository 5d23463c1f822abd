//! `trackly demo`: the whole executor in one process with nothing installed:
//! the in-memory store, the in-process rate limiter and the fake provider
//! (realistic latency, a small failure rate). Seeds an account, a list and a
//! campaign, runs it with a progress bar and prints a summary.

use crate::app::{Daemon, DaemonParts};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Dur, RateLimitBackend, StoreBackend};
use crate::domain::*;
use crate::messages::Nudge;
use crate::providers::ProviderRegistry;
use crate::providers::fake::{FakeProvider, FakeSettings};
use crate::ratelimit::local::LocalPermits;
use crate::seed;
use crate::store::Stores;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Demo knobs (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub messages: u64,
    pub rate_per_minute: u32,
    pub latency: Duration,
    pub reject_rate: f64,
    pub transient_rate: f64,
    pub quiet: bool,
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
    now: Timestamp,
) -> Result<(Account, SendingList), String> {
    let err = |e: crate::store::StoreError| e.to_string();
    let price = Money::from_micros(7_500);
    let account = seed::account(price.times(o.messages * 2), price, now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(err)?;
    let mut list = seed::list(account.id, ProviderSettings::Fake, o.rate_per_minute, now);
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
    let cfg = Arc::new(demo_config(&o));
    let stores = Stores::memory();
    let clock = Arc::new(SystemClock);
    let now = clock.now();
    let (account, _list) = seed_demo(&stores, &o, now).await?;
    let fake = Arc::new(FakeProvider::new(FakeSettings::from(&cfg.providers.fake)));
    let daemon = Daemon::start(DaemonParts {
        config: cfg.clone(),
        daemon_id: "demo".into(),
        stores: stores.clone(),
        permits: Arc::new(LocalPermits::new()),
        providers: ProviderRegistry::new().with_fake(fake.clone()),
        clock,
    });
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
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = daemon.metrics.done();
        bar.set_position(done.min(o.messages));
        bar.set_message(format!(
            "sent {}, failed {}",
            daemon.metrics.sent(),
            daemon.metrics.failed_total()
        ));
        let depth = stores.queue.depth().await.map_err(|e| e.to_string())?;
        if depth == 0 && done >= o.messages {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "demo did not finish in 10 minutes ({done} of {} done)",
                o.messages
            ));
        }
    }
    let duration = start.elapsed();
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
    Ok(DemoSummary {
        messages: o.messages,
        sent: daemon.metrics.sent(),
        failed,
        duplicates_at_provider: fake.duplicates().len(),
        duration,
        charged: Money(account.balance.0 - balance.0),
    })
}
