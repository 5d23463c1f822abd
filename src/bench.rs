//! `trackly bench`: end-to-end figures, from a due message to its recorded
//! outcome, with the fake provider.
//!
//! Two phases per store:
//! - drain: a backlog of `messages` due messages is sent as fast as the
//!   system goes (rate limit set far above it): msg/s, and MongoDB and
//!   Redis round trips per 1,000 messages (every command the MongoDB driver
//!   starts is counted by its command-event handler; every permit call is
//!   counted around the Redis client);
//! - steady: messages are queued continuously at `steady_rate` msg/s with
//!   send time "now" (and a nudge), as a scheduler would; the time from a
//!   message being due to its provider call is reported as p50 and p99.

use crate::app::{Daemon, DaemonParts};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Dur, RateLimitBackend, StoreBackend};
use crate::domain::*;
use crate::messages::{Nudge, Shutdown};
use crate::providers::ProviderRegistry;
use crate::providers::fake::{FakeProvider, FakeSettings};
use crate::ratelimit::PermitBackend;
use crate::ratelimit::local::LocalPermits;
use crate::ratelimit::redis::{RedisPermits, pool};
use crate::seed;
use crate::store::Stores;
use crate::store::mongo::MongoStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub store: StoreBackend,
    pub messages: u64,
    pub latency: Duration,
    pub steady_rate: u64,
    pub steady_secs: u64,
    pub mongodb_uri: String,
    pub redis_url: String,
}

#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub store: &'static str,
    pub messages: u64,
    pub seconds: f64,
    pub msg_per_sec: f64,
    pub mongo_rt_per_1000: Option<f64>,
    pub redis_rt_per_1000: Option<f64>,
    /// MongoDB round trips per 1,000 messages, by command.
    pub mongo_by_command: Vec<(String, f64)>,
    pub steady_rate: u64,
    pub steady_messages: u64,
    pub steady_p50_ms: u64,
    pub steady_p99_ms: u64,
    pub duplicates: usize,
}

impl BenchReport {
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let by_cmd = if self.mongo_by_command.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .mongo_by_command
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            format!(
                "  MongoDB round trips per 1,000 by command: {}\n",
                parts.join(", ")
            )
        };
        by_cmd
            + &format!(
                "\nstore: {store}\n  drain: {n} messages in {s:.2} s = {rate:.0} msg/s\n  round trips per 1,000 messages: MongoDB {m}, Redis {r}\n  steady: {sr} msg/s offered, {sn} messages; due->provider p50 {p50} ms, p99 {p99} ms\n  sent twice: {dup}\n",
                store = self.store,
                n = self.messages,
                s = self.seconds,
                rate = self.msg_per_sec,
                m = opt(self.mongo_rt_per_1000),
                r = opt(self.redis_rt_per_1000),
                sr = self.steady_rate,
                sn = self.steady_messages,
                p50 = self.steady_p50_ms,
                p99 = self.steady_p99_ms,
                dup = self.duplicates,
            )
    }
}

fn bench_config(o: &BenchOptions) -> Config {
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

struct Backends {
    stores: Stores,
    mongo: Option<MongoStore>,
    permits: Arc<dyn PermitBackend>,
}

async fn backends(o: &BenchOptions) -> Result<Backends, String> {
    match o.store {
        StoreBackend::Memory => Ok(Backends {
            stores: Stores::memory(),
            mongo: None,
            permits: Arc::new(LocalPermits::new()),
        }),
        StoreBackend::Mongodb => {
            let db = format!("trackly_bench_{}", MessageId::new().to_hex());
            let m = MongoStore::connect(&o.mongodb_uri, &db, Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
            m.ensure_indexes().await.map_err(|e| e.to_string())?;
            let p = pool(&o.redis_url, 16, Duration::from_secs(2))?;
            let prefix = format!("trackly_bench_{}", MessageId::new().to_hex());
            let permits = RedisPermits::new(p, &prefix, Duration::from_secs(2));
            permits.ping().await.map_err(|e| e.to_string())?;
            Ok(Backends {
                stores: Stores::from_backend(Arc::new(m.clone()), "mongodb"),
                mongo: Some(m),
                permits: Arc::new(permits),
            })
        }
    }
}

fn start(cfg: &Arc<Config>, b: &Backends, fake: &Arc<FakeProvider>, id: &str) -> Daemon {
    Daemon::start(DaemonParts {
        config: cfg.clone(),
        daemon_id: id.into(),
        stores: b.stores.clone(),
        permits: b.permits.clone(),
        providers: ProviderRegistry::new().with_fake(fake.clone()),
        clock: Arc::new(SystemClock),
    })
}

async fn wait_done(d: &Daemon, target: u64, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while d.metrics.done() < target {
        if start.elapsed() > limit {
            return Err(format!(
                "only {} of {target} done after {limit:?}",
                d.metrics.done()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Run both phases on one store.
pub async fn run(o: BenchOptions) -> Result<BenchReport, String> {
    let cfg = Arc::new(bench_config(&o));
    let b = backends(&o).await?;
    let fake = Arc::new(FakeProvider::new(FakeSettings {
        latency: o.latency,
        batch_size: 1000,
        ..Default::default()
    }));
    let now = SystemClock.now();
    let err = |e: crate::store::StoreError| e.to_string();

    // ---- drain
    let balance = Money::from_micros(i64::MAX / 4);
    let c = seed::campaign(
        &b.stores,
        o.messages,
        ProviderSettings::Fake,
        1_000_000_000,
        balance,
        now,
    )
    .await
    .map_err(err)?;
    let mongo_before = b.mongo.as_ref().map(|m| m.round_trips());
    let by_cmd_before = b
        .mongo
        .as_ref()
        .map(|m| m.round_trips_by_command())
        .unwrap_or_default();
    let redis_before = b.permits.round_trips();
    let d = start(&cfg, &b, &fake, "bench-drain");
    let t0 = Instant::now();
    d.coordinator.do_send(Nudge);
    wait_done(&d, o.messages, Duration::from_secs(1800)).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let per_1000 = |delta: u64| delta as f64 * 1000.0 / o.messages.max(1) as f64;
    let mongo_rt = b
        .mongo
        .as_ref()
        .zip(mongo_before)
        .map(|(m, before)| per_1000(m.round_trips() - before));
    let redis_rt = per_1000(b.permits.round_trips() - redis_before);
    let mongo_by_command: Vec<(String, f64)> = b
        .mongo
        .as_ref()
        .map(|m| {
            m.round_trips_by_command()
                .into_iter()
                .map(|(k, v)| {
                    let before = by_cmd_before.get(&k).copied().unwrap_or(0);
                    (k, per_1000(v - before))
                })
                .filter(|(_, v)| *v > 0.0)
                .collect()
        })
        .unwrap_or_default();
    let _ = d
        .coordinator
        .send(Shutdown {
            grace: Duration::from_secs(5),
        })
        .await;

    // ---- steady
    let steady_total = o.steady_rate * o.steady_secs;
    let contacts: Vec<Contact> = (0..steady_total)
        .map(|i| seed::contact(c.account.id, c.list.id, o.messages + i, now))
        .collect();
    for chunk in contacts.chunks(1000) {
        b.stores
            .contacts
            .insert_contacts(chunk.to_vec())
            .await
            .map_err(err)?;
    }
    let d = start(&cfg, &b, &fake, "bench-steady");
    let tick = Duration::from_millis(10);
    let per_tick = (o.steady_rate as f64 * tick.as_secs_f64()).max(1.0);
    let t0 = Instant::now();
    let mut queued = 0u64;
    let mut next = contacts.iter();
    while queued < steady_total {
        let due = ((t0.elapsed().as_secs_f64() / tick.as_secs_f64()).floor() + 1.0) * per_tick;
        let n = (due as u64).min(steady_total) - queued;
        if n > 0 {
            let now = SystemClock.now();
            let batch: Vec<QueuedTextMessage> = next
                .by_ref()
                .take(n as usize)
                .map(|k| seed::queued(&c.list, k, "Steady-state benchmark message.", now))
                .collect();
            queued += batch.len() as u64;
            b.stores.queue.enqueue(batch).await.map_err(err)?;
            d.coordinator.do_send(Nudge);
        }
        tokio::time::sleep(tick).await;
    }
    wait_done(&d, steady_total, Duration::from_secs(600)).await?;
    let steady_lat = d.metrics.due_to_send();
    let _ = d
        .coordinator
        .send(Shutdown {
            grace: Duration::from_secs(5),
        })
        .await;
    if let Some(m) = &b.mongo {
        let _ = m.drop_database().await;
    }
    Ok(BenchReport {
        store: b.stores.backend,
        messages: o.messages,
        seconds,
        msg_per_sec: o.messages as f64 / seconds,
        mongo_rt_per_1000: mongo_rt,
        mongo_by_command,
        redis_rt_per_1000: if b.mongo.is_some() {
            Some(redis_rt)
        } else {
            None
        },
        steady_rate: o.steady_rate,
        steady_messages: steady_total,
        steady_p50_ms: steady_lat.map_or(0, |p| p.p50_ms),
        steady_p99_ms: steady_lat.map_or(0, |p| p.p99_ms),
        duplicates: fake.duplicates().len(),
    })
}
