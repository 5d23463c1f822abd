//! Shared test support: services from the environment, per-test databases.
#![allow(dead_code)]

use trackly::store::Stores;
use trackly::store::mongo::MongoStore;

/// A test that needs MongoDB or Redis fails when the service is missing,
/// with a message naming the test command (scripts/test), unless
/// `TRACKLY_SKIP_SERVICES=1` asks on purpose to skip such tests. Under
/// `CI=true` nothing is ever skipped.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || !std::env::var("TRACKLY_SKIP_SERVICES").is_ok_and(|v| v == "1")
}

pub fn mongo_uri() -> Option<String> {
    match std::env::var("MONGODB_URI") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !services_required(),
                "MONGODB_URI is not set: this test needs MongoDB. Run the tests with scripts/test, which starts MongoDB and Redis (or set TRACKLY_SKIP_SERVICES=1 to skip such tests on purpose)"
            );
            eprintln!("skipping on purpose (TRACKLY_SKIP_SERVICES=1): MONGODB_URI not set");
            None
        }
    }
}

pub fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                !services_required(),
                "REDIS_URL is not set: this test needs Redis. Run the tests with scripts/test, which starts MongoDB and Redis (or set TRACKLY_SKIP_SERVICES=1 to skip such tests on purpose)"
            );
            eprintln!("skipping on purpose (TRACKLY_SKIP_SERVICES=1): REDIS_URL not set");
            None
        }
    }
}

/// A database name of its own for each test, so tests run in parallel.
pub fn unique_name(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect();
    format!("t_{short}_{}", trackly::domain::MessageId::new().to_hex())
}

/// Stores under test, and what to clean up afterwards.
pub struct TestStores {
    pub stores: Stores,
    pub mongo: Option<MongoStore>,
}

impl TestStores {
    pub async fn cleanup(self) {
        if let Some(m) = self.mongo {
            let _ = m.drop_database().await;
        }
    }
}

pub async fn memory(_test: &str) -> Option<TestStores> {
    Some(TestStores {
        stores: Stores::memory(),
        mongo: None,
    })
}

pub async fn mongo(test: &str) -> Option<TestStores> {
    let uri = mongo_uri()?;
    let m = connect_mongo(&uri, &unique_name(test)).await;
    Some(TestStores {
        stores: Stores::from_backend(std::sync::Arc::new(m.clone()), "mongodb"),
        mongo: Some(m),
    })
}

pub async fn connect_mongo(uri: &str, db: &str) -> MongoStore {
    let m = MongoStore::connect(uri, db, std::time::Duration::from_secs(10), None)
        .await
        .expect("MongoDB client");
    m.ensure_indexes().await.expect("indexes");
    m
}

// ------------------------------------------------------------ daemons

use std::sync::Arc;
use std::time::Duration;
use trackly::app::{Daemon, DaemonParts};
use trackly::clock::{Clock, ManualClock, SharedClock};
use trackly::config::{Config, Dur};
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings};
use trackly::ratelimit::PermitBackend;
use trackly::ratelimit::local::LocalPermits;

/// A configuration for tests: short intervals, a recovery sweep only when
/// asked, a lease renewed often (its window is 8 s: 10 s minus the 2 s
/// provider timeouts).
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.coordinator.poll_interval = Dur::millis(20);
    c.coordinator.max_poll_interval = Dur::millis(100);
    c.recovery.sweep_interval = Dur::secs(3600);
    c.daemon.heartbeat_interval = Dur::millis(100);
    c.daemon.lease_ttl = Dur::secs(10);
    c.providers.fake.timeout = Dur::secs(2);
    c.providers.infobip.timeout = Dur::secs(2);
    c.providers.twilio.timeout = Dur::secs(2);
    c.providers.cm.timeout = Dur::secs(2);
    c.coordinator.idle_supervisor_after = Dur::secs(60);
    c.rate_limit.inter_batch_delay = Dur::millis(1);
    c.providers.fake.enabled = true;
    c
}

pub struct TestDaemon {
    pub daemon: Daemon,
    pub provider: Arc<FakeProvider>,
    pub stores: Stores,
    pub clock: ManualClock,
}

/// Start a daemon on the current actix system with a fake provider and a
/// hand-driven clock.
pub fn start_daemon(
    config: Config,
    stores: Stores,
    permits: Arc<dyn PermitBackend>,
    fake: FakeSettings,
) -> TestDaemon {
    let clock = ManualClock::starting_now();
    start_daemon_with_clock(config, stores, permits, fake, clock)
}

pub fn start_daemon_with_clock(
    config: Config,
    stores: Stores,
    permits: Arc<dyn PermitBackend>,
    fake: FakeSettings,
    clock: ManualClock,
) -> TestDaemon {
    let provider = Arc::new(FakeProvider::new(fake));
    let daemon = Daemon::start(DaemonParts {
        config: Arc::new(config),
        daemon_id: format!("test-{}", trackly::domain::MessageId::new().to_hex()),
        stores: stores.clone(),
        permits,
        providers: ProviderRegistry::new().with_fake(provider.clone()),
        clock: Arc::new(clock.clone()) as SharedClock,
        bus: Arc::new(trackly::bus::LocalBus::new()),
        secrets: Arc::new(trackly::config::Secrets::default()),
        metrics: Arc::new(trackly::metrics::Metrics::new()),
    });
    TestDaemon {
        daemon,
        provider,
        stores,
        clock,
    }
}

pub fn local_permits() -> Arc<dyn PermitBackend> {
    Arc::new(LocalPermits::new())
}

/// Poll `check` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestDaemon {
    pub fn now(&self) -> trackly::domain::Timestamp {
        self.clock.now()
    }

    /// Wait until the queue is empty.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let q = self.stores.queue.clone();
        wait_until(timeout, || {
            let q = q.clone();
            async move { q.depth().await.map(|d| d == 0).unwrap_or(false) }
        })
        .await
    }
}

/// Redis-backed permits under a key prefix of the test's own.
pub async fn redis_permits(test: &str) -> Option<Arc<dyn PermitBackend>> {
    let url = redis_url()?;
    let pool =
        trackly::ratelimit::redis::pool(&url, 8, Duration::from_secs(2)).expect("redis pool");
    let p = trackly::ratelimit::redis::RedisPermits::new(
        pool,
        &unique_name(test),
        Duration::from_secs(2),
        Arc::new(trackly::metrics::Metrics::new()),
    );
    p.ping().await.expect("Redis answers");
    Some(Arc::new(p))
}

/// The test services, or None (skip) when they are missing outside CI.
pub struct Services {
    pub mongo_uri: String,
    pub redis_url: String,
    pub db: String,
}

pub fn services(test: &str) -> Option<Services> {
    let mongo_uri = mongo_uri()?;
    let redis_url = redis_url()?;
    Some(Services {
        mongo_uri,
        redis_url,
        db: unique_name(test),
    })
}

// ------------------------------------------------------------ TCP proxy

/// A TCP proxy in front of a real service, to take the service "down" and
/// bring it back without touching the shared server: while down, open
/// connections are cut and new ones are closed at once.
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// Start on a free port, forwarding to `target` ("host:port"). Runs on
    /// the current tokio runtime.
    pub async fn start(target: &str, up: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let up_flag = Arc::new(std::sync::atomic::AtomicBool::new(up));
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let target = target.to_string();
        let flag = up_flag.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut_rx = cut_rx.clone();
                // Only cuts after this connection was made concern it.
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up: up_flag,
            cut,
        }
    }

    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// "host:port" of a mongodb:// or redis:// URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// Kills a child process when dropped, so a failing test never leaves a
/// daemon running (it would hold the test's output open).
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ------------------------------------------------------- load balancer

/// A TCP load balancer: the one address every daemon stands behind (what
/// `http.public_url` must name). Each connection goes to the next backend
/// that accepts it, so a stopped daemon's share goes to the others.
pub struct Balancer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<String>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("balancer bind");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let start = next;
                next = next.wrapping_add(1);
                let backends = backends.clone();
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let target = &backends[(start + i) % backends.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// ------------------------------------------------------- gated permits

/// A permit backend whose admission bucket grants only the tickets a test
/// hands out (the send bucket always grants), to stop a batch between two
/// chunks.
pub struct Gated {
    tickets: std::sync::atomic::AtomicU32,
    pub asked: std::sync::atomic::AtomicU64,
}

impl Gated {
    pub fn new(tickets: u32) -> Arc<Gated> {
        Arc::new(Gated {
            tickets: tickets.into(),
            asked: 0.into(),
        })
    }

    pub fn allow(&self, n: u32) {
        self.tickets
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl PermitBackend for Gated {
    async fn acquire(
        &self,
        _list: trackly::domain::SendingListId,
        bucket: trackly::ratelimit::Bucket,
        _rate: f64,
        _cap: f64,
        n: u32,
    ) -> Result<trackly::ratelimit::Grant, trackly::ratelimit::RateLimitError> {
        use std::sync::atomic::Ordering::SeqCst;
        if bucket == trackly::ratelimit::Bucket::Send {
            return Ok(trackly::ratelimit::Grant {
                granted: n,
                wait: Duration::ZERO,
            });
        }
        self.asked.fetch_add(1, SeqCst);
        let mut granted = 0;
        let _ = self.tickets.fetch_update(SeqCst, SeqCst, |t| {
            granted = t.min(n);
            Some(t - granted)
        });
        Ok(trackly::ratelimit::Grant {
            granted,
            wait: Duration::from_millis(10),
        })
    }
    async fn ping(&self) -> Result<(), trackly::ratelimit::RateLimitError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "gated"
    }
}
