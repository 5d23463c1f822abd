//! `cargo benchmark` (`devkit bench`): end-to-end figures, from a due message to its recorded
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

use crate::seed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::app::{Daemon, DaemonParts};
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Config, Dur, RateLimitBackend, StoreBackend};
use trackly::domain::*;
use trackly::messages::{Nudge, Shutdown};
use trackly::metrics::Metrics;
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings};
use trackly::ratelimit::PermitBackend;
use trackly::ratelimit::local::LocalPermits;
use trackly::ratelimit::redis::{RedisPermits, pool};
use trackly::store::Stores;
use trackly::store::mongo::MongoStore;

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
    /// From the due-to-send histogram's buckets (upper bounds).
    pub steady_p50_ms: f64,
    pub steady_p99_ms: f64,
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
                "\nstore: {store}\n  drain: {n} messages in {s:.2} s = {rate:.0} msg/s\n  round trips per 1,000 messages: MongoDB {m}, Redis {r}\n  steady: {sr} msg/s offered, {sn} messages; due->provider p50 <= {p50:.1} ms, p99 <= {p99:.1} ms (histogram buckets)\n  sent twice: {dup}\n",
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
    /// One registry for the store's commands, Redis' calls and the daemon:
    /// the figures below are read from it, as /metrics would show them.
    metrics: Arc<Metrics>,
}

async fn backends(o: &BenchOptions) -> Result<Backends, String> {
    let metrics = Arc::new(Metrics::new());
    match o.store {
        StoreBackend::Memory => Ok(Backends {
            stores: Stores::memory(),
            mongo: None,
            permits: Arc::new(LocalPermits::new()),
            metrics,
        }),
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
            Ok(Backends {
                stores: Stores::from_backend(Arc::new(m.clone()), "mongodb"),
                mongo: Some(m),
                permits: Arc::new(permits),
                metrics,
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
        bus: Arc::new(trackly::bus::LocalBus::new()),
        secrets: Arc::new(trackly::config::Secrets::default()),
        metrics: b.metrics.clone(),
    })
}

/// Wait until `target` more messages than `before` have an outcome.
async fn wait_done(d: &Daemon, before: u64, target: u64, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while d.metrics.done() - before < target {
        if start.elapsed() > limit {
            return Err(format!(
                "only {} of {target} done after {limit:?}",
                d.metrics.done() - before
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
    let err = |e: trackly::store::StoreError| e.to_string();

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
    let metrics = b.metrics.clone();
    let mongo_before = metrics.mongo_commands();
    let by_cmd_before = metrics.mongo_by_command();
    let redis_before = metrics.redis_calls();
    let d = start(&cfg, &b, &fake, "bench-drain");
    let t0 = Instant::now();
    d.coordinator.do_send(Nudge);
    wait_done(&d, 0, o.messages, Duration::from_secs(1800)).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let per_1000 = |delta: u64| delta as f64 * 1000.0 / o.messages.max(1) as f64;
    let mongo_rt = b
        .mongo
        .as_ref()
        .map(|_| per_1000(metrics.mongo_commands() - mongo_before));
    let redis_rt = per_1000(metrics.redis_calls() - redis_before);
    let mongo_by_command: Vec<(String, f64)> = if b.mongo.is_some() {
        metrics
            .mongo_by_command()
            .into_iter()
            .map(|(k, v)| {
                let before = by_cmd_before.get(k).copied().unwrap_or(0);
                (k.to_string(), per_1000(v - before))
            })
            .filter(|(_, v)| *v > 0.0)
            .collect()
    } else {
        vec![]
    };
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
    let done_before = metrics.done();
    let latency_before = trackly::metrics::snapshot(&metrics.due_to_send);
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
    wait_done(&d, done_before, steady_total, Duration::from_secs(600)).await?;
    let steady_lat = trackly::metrics::percentiles_since(&metrics.due_to_send, &latency_before);
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
        steady_p50_ms: steady_lat.map_or(0.0, |p| p.p50_ms),
        steady_p99_ms: steady_lat.map_or(0.0, |p| p.p99_ms),
        duplicates: fake.duplicates().len(),
    })
}

// ------------------------------------------------------------ providers

/// One adapter's figures.
#[derive(Debug, Clone)]
pub struct ProviderBench {
    pub provider: &'static str,
    pub messages: u64,
    pub seconds: f64,
    pub msg_per_sec: f64,
    /// CPU the mock process used, as a share of one core.
    pub mock_cpu: f64,
    /// CPU this process (daemon and bench) used, as a share of one core.
    pub daemon_cpu: f64,
    pub duplicates: usize,
}

#[derive(Debug, Clone)]
pub struct IngestBench {
    pub reports: u64,
    pub seconds: f64,
    pub per_sec: f64,
}

/// CPU seconds (user + system) used so far by a process (`/proc`).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields, in USER_HZ (100 on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Send `messages` through one real adapter to a mock provider running as a
/// separate process (`devkit mock-provider`, no reports), with the
/// in-memory store and the rate limit set high.
pub async fn provider_throughput(
    kind: ProviderKind,
    messages: u64,
    latency: Duration,
) -> Result<ProviderBench, String> {
    let secrets = crate::harness::mock_secrets();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let twilio = &secrets.twilio["default"];
    let mut child = std::process::Command::new(exe)
        .args([
            "mock-provider",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--no-reports",
        ])
        .args(["--latency", &format!("{}ms", latency.as_millis())])
        .args(["--twilio-account-sid", twilio.account_sid.expose()])
        .args(["--twilio-auth-token", twilio.auth_token.expose()])
        .args(["--infobip-api-key", secrets.infobip["default"].expose()])
        .args(["--cm-product-token", secrets.cm["default"].expose()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the mock provider: {e}"))?;
    let pid = child.id().to_string();
    let result = async {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut up = false;
        for _ in 0..100 {
            if client
                .get(format!("{base}/mock/stats"))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !up {
            return Err("the mock provider did not start".to_string());
        }
        let mut cfg = Config::default();
        cfg.store.backend = StoreBackend::Memory;
        cfg.rate_limit.backend = RateLimitBackend::Local;
        cfg.rate_limit.inter_batch_delay = Dur::millis(1);
        crate::harness::use_mock(&mut cfg, &base);
        let providers = ProviderRegistry::from_config(&cfg, &secrets).map_err(|e| e.to_string())?;
        let stores = Stores::memory();
        let now = SystemClock.now();
        seed::campaign(
            &stores,
            messages,
            crate::harness::settings_for(kind),
            1_000_000_000,
            Money::from_micros(i64::MAX / 4),
            now,
        )
        .await
        .map_err(|e| e.to_string())?;
        let d = Daemon::start(DaemonParts {
            config: Arc::new(cfg),
            daemon_id: "bench-providers".into(),
            stores: stores.clone(),
            permits: Arc::new(LocalPermits::new()),
            providers,
            clock: Arc::new(SystemClock),
            bus: Arc::new(trackly::bus::LocalBus::new()),
            secrets: Arc::new(trackly::config::Secrets::default()),
            metrics: Arc::new(Metrics::new()),
        });
        let (mock0, self0) = (cpu_seconds(&pid), cpu_seconds("self"));
        let t0 = Instant::now();
        d.coordinator.do_send(Nudge);
        wait_done(&d, 0, messages, Duration::from_secs(600)).await?;
        let seconds = t0.elapsed().as_secs_f64();
        let (mock1, self1) = (cpu_seconds(&pid), cpu_seconds("self"));
        let stats: serde_json::Value = client
            .get(format!("{base}/mock/stats"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let _ = d
            .coordinator
            .send(Shutdown {
                grace: Duration::from_secs(5),
            })
            .await;
        Ok(ProviderBench {
            provider: kind.as_str(),
            messages,
            seconds,
            msg_per_sec: messages as f64 / seconds,
            mock_cpu: (mock1 - mock0) / seconds,
            daemon_cpu: (self1 - self0) / seconds,
            duplicates: stats["duplicates"].as_u64().unwrap_or(0) as usize,
        })
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Post Infobip-format report batches (100 per request, `concurrency` in
/// flight) at the daemon's webhook, in-memory store, and count reports
/// durably applied per second.
pub async fn report_ingestion(reports: u64, concurrency: usize) -> Result<IngestBench, String> {
    let stores = Stores::memory();
    let now = SystemClock.now();
    let c = seed::campaign(&stores, 0, ProviderSettings::Fake, 1000, Money(1), now)
        .await
        .map_err(|e| e.to_string())?;
    let contact = seed::contact(c.account.id, c.list.id, 0, now);
    let mut ids = Vec::with_capacity(reports as usize);
    let mut batch = Vec::with_capacity(1000);
    // Sent messages to report on: attempt records (free, so nothing is
    // debited), answered as accepted.
    let record = |batch: Vec<trackly::domain::MessageSent>| {
        let stores = stores.clone();
        let account = c.account.id;
        async move {
            let settle = batch
                .iter()
                .map(|r| trackly::store::Settlement::Sent {
                    id: r.id,
                    at: now,
                    provider_message_id: Some(r.id.to_hex()),
                    resolved_by: None,
                })
                .collect();
            stores.sent.begin_attempts(account, batch).await?;
            stores.sent.settle(settle).await
        }
    };
    for _ in 0..reports {
        let q = seed::queued(&c.list, &contact, "x", now);
        ids.push(q.id);
        batch.push(trackly::domain::MessageSent::attempt(
            &q,
            ProviderKind::Infobip,
            "bench",
            "bench",
            Money::ZERO,
            now,
        ));
        if batch.len() == 1000 {
            record(std::mem::take(&mut batch))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    record(batch).await.map_err(|e| e.to_string())?;
    let h = crate::harness::HttpDaemon::start(
        Config::default(),
        stores.clone(),
        Arc::new(LocalPermits::new()),
        Arc::new(SystemClock),
        None,
        None,
    )
    .map_err(|e| e.to_string())?;
    let metrics = h.daemon.metrics.clone();
    let webhook_token = h
        .secrets
        .webhook_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .ok_or("no webhook token")?;
    let target = format!("{}/webhooks/infobip/{webhook_token}", h.public_url);
    let bodies: Vec<String> = ids
        .chunks(100)
        .map(|chunk| {
            let results: Vec<serde_json::Value> = chunk
                .iter()
                .map(|id| serde_json::json!({"messageId": id.to_hex(), "to": "41793026727",
                    "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
                    "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": false}}))
                .collect();
            serde_json::json!({"results": results}).to_string()
        })
        .collect();
    let client = trackly::providers::http::client(Duration::from_secs(30), concurrency)
        .map_err(|e| e.to_string())?;

    let t0 = Instant::now();
    let posts: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let client = client.clone();
            let target = target.clone();
            async move {
                client
                    .post(target)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .collect();
    use futures::StreamExt;
    let ok = futures::stream::iter(posts)
        .buffer_unordered(concurrency)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let seconds = t0.elapsed().as_secs_f64();
    let applied = metrics.reports_applied.get();
    h.stop().await;
    if (ok as u64) * 100 < reports || applied < reports {
        return Err(format!(
            "only {ok} posts succeeded, {applied} reports applied"
        ));
    }
    Ok(IngestBench {
        reports,
        seconds,
        per_sec: reports as f64 / seconds,
    })
}

#[derive(Debug, Clone)]
pub struct RedirectBench {
    pub requests: u64,
    pub seconds: f64,
    pub per_sec: f64,
    /// Clicks recorded (in the store) by the end, and dropped.
    pub clicks_recorded: u64,
    pub clicks_dropped: u64,
}

/// `GET /l/<code>` against a whole daemon (actix-web server, in-memory
/// store): `requests` redirects over 1,000 links, `concurrency` in flight,
/// each answered 302; redirects per second, then how many clicks were
/// recorded once the intake caught up.
pub async fn link_redirects(requests: u64, concurrency: usize) -> Result<RedirectBench, String> {
    let stores = Stores::memory();
    let now = SystemClock.now();
    let account = seed::account(Money(1), Money(1), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(|e| e.to_string())?;
    let links: Vec<trackly::domain::MessageShortLink> = (0..1_000)
        .map(|_| trackly::domain::MessageShortLink {
            id: trackly::domain::LinkId::new(),
            code: trackly::rules::links::new_code(&mut rand::rng()),
            account: account.id,
            message: Some(MessageId::new()),
            schedule: None,
            run: None,
            creative: None,
            variant: None,
            destination_url: "https://shop.example.com/spring".into(),
            created_at: now,
        })
        .collect();
    stores
        .links
        .insert_links(links.clone())
        .await
        .map_err(|e| e.to_string())?;
    let h = crate::harness::HttpDaemon::start(
        Config::default(),
        stores.clone(),
        Arc::new(LocalPermits::new()),
        Arc::new(SystemClock),
        None,
        None,
    )
    .map_err(|e| e.to_string())?;
    let metrics = h.daemon.metrics.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let urls: Vec<String> = (0..requests)
        .map(|i| format!("{}/l/{}", h.public_url, links[(i % 1_000) as usize].code))
        .collect();
    let t0 = Instant::now();
    let gets = urls.into_iter().map(|u| {
        let client = client.clone();
        async move {
            client
                .get(u)
                .header("user-agent", "Mozilla/5.0 (iPhone) Mobile Safari")
                .send()
                .await
                .map(|r| r.status().as_u16() == 302)
                .unwrap_or(false)
        }
    });
    use futures::StreamExt;
    let ok = futures::stream::iter(gets)
        .buffer_unordered(concurrency)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await as u64;
    let seconds = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.clicks_recorded.get() + metrics.clicks_dropped.get() < ok
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (recorded, dropped) = (metrics.clicks_recorded.get(), metrics.clicks_dropped.get());
    h.stop().await;
    if ok < requests {
        return Err(format!("only {ok} of {requests} redirects answered 302"));
    }
    Ok(RedirectBench {
        requests,
        seconds,
        per_sec: requests as f64 / seconds,
        clicks_recorded: recorded,
        clicks_dropped: dropped,
    })
}
