//! `cargo benchmark --suite campaign`: audience evaluation and queuing, and
//! a campaign end to end.
//!
//! - evaluate: a schedule's audience of `contacts` contacts (New York and
//!   Los Angeles numbers, a stored zone on some; 2 % invalid numbers, 3 %
//!   unsubscribed) is evaluated and queued by the real run code
//!   (`campaign::run::execute`: pages, number parsing, zones, windows,
//!   variants, placeholders, short links, segments, page transactions).
//!   Contacts per second, and the process's resident memory sampled every
//!   20 ms: before, peak and after, and (in memory) its growth per queued
//!   message, which is the in-memory queue's own size.
//! - end to end (MongoDB): a schedule of `end_to_end` contacts is triggered
//!   by the Scheduler of a whole daemon and sent through the fake provider;
//!   MongoDB and Redis round trips per 1,000 messages sent, everything
//!   included (the scheduler's reads and page transactions, the executor's
//!   claims, charges and outcomes, and every time-driven query), from the
//!   trigger until the last message is sent.

use crate::seed;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trackly::app::{Daemon, DaemonParts};
use trackly::campaign::plan::{Capabilities, prepare};
use trackly::campaign::run::{RunDeps, execute};
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Config, Dur, RateLimitBackend, StoreBackend};
use trackly::domain::*;
use trackly::instance::Instance;
use trackly::messages::Shutdown;
use trackly::metrics::Metrics;
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings};
use trackly::ratelimit::PermitBackend;
use trackly::ratelimit::local::LocalPermits;
use trackly::ratelimit::redis::{RedisPermits, pool};
use trackly::store::Stores;
use trackly::store::mongo::MongoStore;

#[derive(Debug, Clone)]
pub struct CampaignBenchOptions {
    pub store: StoreBackend,
    /// Contacts evaluated and queued.
    pub contacts: u64,
    /// Contacts of the end-to-end campaign (MongoDB only; 0 skips it).
    pub end_to_end: u64,
    /// How long the end-to-end daemon runs idle before the campaign falls
    /// due (a long-lived daemon's polls have backed off by then).
    pub warm_up: Duration,
    pub latency: Duration,
    pub mongodb_uri: String,
    pub redis_url: String,
}

#[derive(Debug, Clone, Default)]
pub struct EndToEnd {
    pub messages: u64,
    pub seconds: f64,
    pub mongo_rt_per_1000: f64,
    pub redis_rt_per_1000: f64,
    pub mongo_by_command: Vec<(String, f64)>,
    pub duplicates: usize,
    /// MongoDB round trips per minute of the idle daemon, over the second
    /// half of the warm-up.
    pub idle_mongo_per_minute: f64,
    pub warm_up_seconds: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CampaignBenchReport {
    pub store: &'static str,
    pub contacts: u64,
    pub seconds: f64,
    pub queued: u64,
    pub skipped: BTreeMap<String, u64>,
    pub rss_before_mb: f64,
    pub rss_peak_mb: f64,
    pub rss_after_mb: f64,
    /// MongoDB round trips per 1,000 contacts evaluated (evaluation alone).
    pub eval_mongo_rt_per_1000: Option<f64>,
    pub end_to_end: Option<EndToEnd>,
}

impl CampaignBenchReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "\ncampaign, store: {store}\n  evaluate and queue: {n} contacts in {s:.2} s = {rate:.0} contacts/s; queued {q}, skipped {sk:?}\n  resident memory: {b:.0} MB before, peak {p:.0} MB, {a:.0} MB after",
            store = self.store,
            n = self.contacts,
            s = self.seconds,
            rate = self.contacts as f64 / self.seconds.max(1e-9),
            q = self.queued,
            sk = self.skipped,
            b = self.rss_before_mb,
            p = self.rss_peak_mb,
            a = self.rss_after_mb,
        );
        if self.store == "memory" && self.queued > 0 {
            out += &format!(
                " ({:.0} bytes per queued message: the in-memory queue itself)",
                (self.rss_after_mb - self.rss_before_mb) * 1_048_576.0 / self.queued as f64
            );
        }
        out.push('\n');
        if let Some(rt) = self.eval_mongo_rt_per_1000 {
            out += &format!("  MongoDB round trips per 1,000 contacts evaluated: {rt:.2}\n");
        }
        if let Some(e) = &self.end_to_end {
            let parts: Vec<String> = e
                .mongo_by_command
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            out += &format!(
                "  idle daemon (second half of a {w:.0} s warm-up): {i:.1} MongoDB round trips per minute\n",
                w = e.warm_up_seconds,
                i = e.idle_mongo_per_minute,
            );
            let idle_share =
                e.idle_mongo_per_minute * e.seconds / 60.0 * 1000.0 / e.messages.max(1) as f64;
            out += &format!(
                "  of the MongoDB figure below, about {idle_share:.1} per 1,000 is what the daemon asks while idle (its idle rate over the campaign's {s:.1} s); the rest, about {work:.1}, is the campaign's own work\n",
                s = e.seconds,
                work = (e.mongo_rt_per_1000 - idle_share).max(0.0),
            );
            out += &format!(
                "  end to end: {n} contacts triggered, queued and sent in {s:.2} s = {r:.0} msg/s\n  round trips per 1,000 messages sent, everything included: MongoDB {m:.2}, Redis {rd:.2}\n  MongoDB by command: {by}\n  sent twice: {d}\n",
                n = e.messages,
                s = e.seconds,
                r = e.messages as f64 / e.seconds.max(1e-9),
                m = e.mongo_rt_per_1000,
                rd = e.redis_rt_per_1000,
                by = parts.join(", "),
                d = e.duplicates,
            );
        }
        out
    }
}

/// Resident set size of this process, MB (Linux; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Samples the RSS every 20 ms until dropped; `peak()` is the highest seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new((rss_mb() * 1024.0) as u64));
        let (s, p) = (stop.clone(), peak_kb.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max((rss_mb() * 1024.0) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, peak_kb }
    }
    fn peak_mb(&self) -> f64 {
        self.peak_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(o: &CampaignBenchOptions) -> Config {
    let mut c = Config::default();
    c.store.backend = o.store;
    c.rate_limit.backend = match o.store {
        StoreBackend::Memory => RateLimitBackend::Local,
        StoreBackend::Mongodb => RateLimitBackend::Redis,
    };
    c.rate_limit.inter_batch_delay = Dur::millis(1);
    c.providers.fake.enabled = true;
    c.providers.fake.latency = Dur(o.latency);
    c.providers.fake.batch_size = 1000;
    c
}

/// What a seeded campaign is made of.
struct Seeded {
    schedule: Schedule,
}

/// An account, a list open now in New York and Los Angeles, `n` contacts in
/// pages of 10,000, an audience of the list, a two-variant creative with a
/// tracked link, and a schedule due now.
async fn seed_campaign(
    stores: &Stores,
    n: u64,
    now: Timestamp,
    due: Timestamp,
) -> Result<Seeded, String> {
    let err = |e: trackly::store::StoreError| e.to_string();
    let account = seed::account(
        Money::from_micros(i64::MAX / 4),
        Money::from_micros(7_500),
        now,
    );
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(err)?;
    let mut list = seed::list(account.id, ProviderSettings::Fake, 100_000_000, now);
    // Open from five hours before New York's time now to twelve after:
    // both coasts inside it whatever the hour the benchmark runs at.
    let ny = seed::window_open_around(now, "America/New_York");
    list.tcpa_window = TcpaWindow {
        start_minute: (ny.start_minute + 1440 - 120) % 1440,
        end_minute: (ny.end_minute + 180) % 1440,
    };
    stores.lists.insert_list(list.clone()).await.map_err(err)?;
    let mut i = 0;
    while i < n {
        let batch: Vec<Contact> = (i..(i + 10_000).min(n))
            .map(|k| {
                let mut c = seed::contact(account.id, list.id, k, now);
                c.custom_fields
                    .insert("first_name".into(), format!("Pat{}", k % 997));
                match k % 100 {
                    // Derived from the number (libphonenumber's zone table).
                    0..=49 => c.time_zone = String::new(),
                    50..=59 => c.time_zone = "America/Los_Angeles".into(),
                    60..=61 => {
                        c.phone = E164::parse(&format!("+1200{:07}", k % 10_000_000))
                            .unwrap_or(c.phone.clone())
                    }
                    62..=64 => c.subscriptions[0].subscribed = false,
                    _ => {}
                }
                c
            })
            .collect();
        stores.contacts.insert_contacts(batch).await.map_err(err)?;
        i += 10_000;
    }
    let audience = seed::audience(
        account.id,
        "everyone",
        AudienceFilter {
            list: Some(list.id),
            ..Default::default()
        },
        now,
    );
    stores
        .contacts
        .insert_audience(audience.clone())
        .await
        .map_err(err)?;
    let creative = seed::creative(
        account.id,
        &[
            (
                "A",
                "Hi {{first_name|there}}, 20% off today: https://shop.example/sale",
                1,
            ),
            (
                "B",
                "{{first_name|Hello}}! Your coupon is ready https://shop.example/c",
                1,
            ),
        ],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .map_err(err)?;
    let schedule = seed::schedule(
        &list,
        vec![audience.id],
        creative.id,
        ScheduleKind::Once { at: due },
        Some(due),
        now,
    );
    stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .map_err(err)?;
    Ok(Seeded { schedule })
}

async fn connect(
    o: &CampaignBenchOptions,
    metrics: &Arc<Metrics>,
) -> Result<(Stores, Option<MongoStore>, Arc<dyn PermitBackend>), String> {
    match o.store {
        StoreBackend::Memory => Ok((Stores::memory(), None, Arc::new(LocalPermits::new()))),
        StoreBackend::Mongodb => {
            let db = format!("trackly_bench_{}", MessageId::new().to_hex());
            let m = MongoStore::connect(
                &o.mongodb_uri,
                &db,
                Duration::from_secs(10),
                Some(metrics.clone()),
            )
            .await
            .map_err(|e| e.to_string())?;
            m.ensure_indexes().await.map_err(|e| e.to_string())?;
            let p = pool(&o.redis_url, 16, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            let prefix = format!("trackly_bench_{}", MessageId::new().to_hex());
            let permits = RedisPermits::new(p, &prefix, Duration::from_secs(2), metrics.clone());
            permits.ping().await.map_err(|e| e.to_string())?;
            Ok((
                Stores::from_backend(Arc::new(m.clone()), "mongodb"),
                Some(m),
                Arc::new(permits),
            ))
        }
    }
}

fn per_1000(delta: u64, n: u64) -> f64 {
    delta as f64 * 1000.0 / n.max(1) as f64
}

/// Evaluate and queue (and, on MongoDB, the end-to-end campaign).
pub async fn run(o: CampaignBenchOptions) -> Result<CampaignBenchReport, String> {
    let cfg = Arc::new(config(&o));
    let metrics = Arc::new(Metrics::new());
    let (stores, mongo, permits) = connect(&o, &metrics).await?;
    let now = SystemClock.now();
    let seeded = seed_campaign(&stores, o.contacts, now, now).await?;

    // ---- evaluate and queue, by the run code itself (no sending)
    let instance = Arc::new(Instance::new("bench-campaign"));
    let deps = RunDeps {
        stores: stores.clone(),
        config: cfg.clone(),
        clock: Arc::new(SystemClock),
        instance: instance.clone(),
        bus: Arc::new(trackly::bus::LocalBus::new()),
        metrics: metrics.clone(),
    };
    let caps = Capabilities {
        providers: ["fake".to_string()].into(),
    };
    let plan = prepare(&stores, &cfg, &seeded.schedule, &caps)
        .await
        .map_err(|e| e.to_string())?;
    let mut run = seed::run(&seeded.schedule, now, &instance.id, now);
    stores
        .schedules
        .start_run(run.clone())
        .await
        .map_err(|e| e.to_string())?;
    run.owner = instance.id.clone();
    let rss_before = rss_mb();
    let sampler = RssSampler::start();
    let mongo_before = metrics.mongo_commands();
    let t0 = Instant::now();
    execute(&deps, Arc::new(plan), run.clone())
        .await
        .map_err(|e| e.to_string())?;
    let seconds = t0.elapsed().as_secs_f64();
    let eval_rt = mongo
        .as_ref()
        .map(|_| per_1000(metrics.mongo_commands() - mongo_before, o.contacts));
    let rss_peak = sampler.peak_mb();
    drop(sampler);
    let rss_after = rss_mb();
    let done = stores
        .schedules
        .get_run(run.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the run vanished")?;
    let mut report = CampaignBenchReport {
        store: stores.backend,
        contacts: o.contacts,
        seconds,
        queued: done.queued,
        skipped: done.skipped.clone(),
        rss_before_mb: rss_before,
        rss_peak_mb: rss_peak,
        rss_after_mb: rss_after,
        eval_mongo_rt_per_1000: eval_rt,
        end_to_end: None,
    };
    if let (Some(m), true) = (&mongo, o.end_to_end > 0) {
        let _ = m.drop_database().await;
        report.end_to_end = Some(end_to_end(&o, &cfg).await?);
    } else if let Some(m) = &mongo {
        let _ = m.drop_database().await;
    }
    drop(permits);
    Ok(report)
}

/// A schedule triggered by a whole daemon and sent: round trips per 1,000
/// messages sent, everything included.
async fn end_to_end(o: &CampaignBenchOptions, cfg: &Arc<Config>) -> Result<EndToEnd, String> {
    let metrics = Arc::new(Metrics::new());
    let (stores, mongo, permits) = connect(o, &metrics).await?;
    let now = SystemClock.now();
    // The schedule falls due after the daemon has run idle for the
    // warm-up, as in a long-lived daemon; counting starts then.
    let warm_up = chrono::Duration::from_std(o.warm_up).map_err(|e| e.to_string())?;
    let due = now + warm_up;
    let seeded = seed_campaign(&stores, o.end_to_end, now, due).await?;
    let fake = Arc::new(FakeProvider::new(FakeSettings {
        latency: o.latency,
        batch_size: 1000,
        ..Default::default()
    }));
    // The benchmark watches the run through a connection of its own, so
    // its polling is not counted as the daemon's round trips.
    let observer = match &mongo {
        Some(m) => Stores::from_backend(
            Arc::new(
                MongoStore::connect(
                    &o.mongodb_uri,
                    m.database().name(),
                    Duration::from_secs(10),
                    None,
                )
                .await
                .map_err(|e| e.to_string())?,
            ),
            "mongodb",
        ),
        None => stores.clone(),
    };
    // The event bus as `trackly serve` has it: Redis pub/sub.
    let bus: trackly::bus::SharedBus = match o.store {
        StoreBackend::Mongodb => {
            let p = pool(&o.redis_url, 4, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            let prefix = format!("trackly_bench_{}", MessageId::new().to_hex());
            trackly::bus::RedisBus::start(
                &o.redis_url,
                p,
                &prefix,
                Duration::from_secs(2),
                metrics.clone(),
            )
            .map_err(|e| e.to_string())?
        }
        StoreBackend::Memory => Arc::new(trackly::bus::LocalBus::new()),
    };
    let d = Daemon::start(DaemonParts {
        config: cfg.clone(),
        daemon_id: "bench-campaign".into(),
        stores: stores.clone(),
        permits,
        providers: ProviderRegistry::new().with_fake(fake.clone()),
        clock: Arc::new(SystemClock),
        bus,
        secrets: Arc::new(trackly::config::Secrets::default()),
        metrics: metrics.clone(),
    });
    if d.scheduler.is_none() {
        return Err("the scheduler is disabled".into());
    }
    // Idle: the second half of the warm-up, up to just before the due time.
    let until = |at: Timestamp| (at - SystemClock.now()).to_std().unwrap_or_default();
    let idle_from = due - warm_up / 2;
    tokio::time::sleep(until(idle_from)).await;
    let idle_before = metrics.mongo_commands();
    let idle_t = Instant::now();
    tokio::time::sleep(until(due - chrono::Duration::milliseconds(200))).await;
    let idle_mongo_per_minute = (metrics.mongo_commands() - idle_before) as f64
        / idle_t.elapsed().as_secs_f64().max(1e-9)
        * 60.0;
    let before_mongo = metrics.mongo_commands();
    let before_by = metrics.mongo_by_command();
    let before_redis = metrics.redis_calls();
    tokio::time::sleep(until(due)).await;
    let t0 = Instant::now();
    // The daemon's scheduler triggers it on its own timer, as in
    // production (its last idle look set the timer for the due time).
    let expected = {
        // Everyone but the invalid numbers and the unsubscribed (5 %).
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let runs = observer
                .schedules
                .runs_of(seeded.schedule.id, 1)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(r) = runs.first().filter(|r| r.status != RunStatus::Evaluating) {
                break r.queued;
            }
            if Instant::now() > deadline {
                return Err("the run did not finish".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    while metrics.sent() < expected {
        if Instant::now() > deadline {
            return Err(format!("only {} of {expected} sent", metrics.sent()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mongo_rt = per_1000(metrics.mongo_commands() - before_mongo, expected);
    let redis_rt = per_1000(metrics.redis_calls() - before_redis, expected);
    let by: Vec<(String, f64)> = metrics
        .mongo_by_command()
        .into_iter()
        .map(|(k, v)| {
            let b = before_by.get(k).copied().unwrap_or(0);
            (k.to_string(), per_1000(v - b, expected))
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let _ = d
        .coordinator
        .send(Shutdown {
            grace: Duration::from_secs(5),
        })
        .await;
    if let Some(m) = &mongo {
        let _ = m.drop_database().await;
    }
    Ok(EndToEnd {
        messages: expected,
        seconds,
        mongo_rt_per_1000: mongo_rt,
        redis_rt_per_1000: redis_rt,
        mongo_by_command: by,
        duplicates: fake.duplicates().len(),
        idle_mongo_per_minute,
        warm_up_seconds: o.warm_up.as_secs_f64(),
    })
}
