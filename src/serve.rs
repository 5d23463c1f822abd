//! `trackly serve`: connect to MongoDB and Redis (retrying with backoff),
//! start the actor tree and the HTTP server, and shut down cleanly on
//! SIGTERM or SIGINT.

use crate::app::{Daemon, DaemonParts};
use crate::bus::{LocalBus, RedisBus, SharedBus};
use crate::clock::SystemClock;
use crate::config::{Config, RateLimitBackend, Secrets, StoreBackend};
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;
use crate::ratelimit::PermitBackend;
use crate::ratelimit::local::LocalPermits;
use crate::ratelimit::redis::{RedisPermits, pool};
use crate::store::Stores;
use crate::store::mongo::MongoStore;
use crate::telemetry::mask_url;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the daemon (or `trackly audit`) could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{service} unreachable after {after}: {source}")]
    Unreachable {
        service: &'static str,
        after: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("invalid Redis configuration: {0}")]
    Redis(#[from] deadpool_redis::CreatePoolError),
    #[error("the event bus cannot use Redis: {0}")]
    Bus(#[from] deadpool_redis::redis::RedisError),
    #[error("a provider cannot be set up: {0}")]
    Provider(#[from] crate::providers::ProviderSetupError),
    #[error("store.backend is \"memory\": there is nothing persisted to audit")]
    NothingPersisted,
}

/// Retry `attempt` with exponential backoff (250 ms doubling to 10 s) until
/// it succeeds or `limit` (zero: no limit) has passed, logging each failure.
pub async fn with_retry<T, E, F, Fut>(
    what: &'static str,
    limit: Duration,
    mut attempt: F,
) -> Result<T, SetupError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if !limit.is_zero() && start.elapsed() + delay > limit {
                    return Err(SetupError::Unreachable {
                        service: what,
                        after: humantime::format_duration(limit).to_string(),
                        source: Box::new(e),
                    });
                }
                tracing::warn!(service = what, error = %e, retry_in = ?delay, "unreachable at start; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Connect the configured store, waiting for it to answer; MongoDB's
/// commands are counted in `metrics`.
pub async fn connect_store(cfg: &Config, metrics: Arc<Metrics>) -> Result<Stores, SetupError> {
    match cfg.store.backend {
        StoreBackend::Memory => Ok(Stores::memory()),
        StoreBackend::Mongodb => {
            tracing::info!(uri = %mask_url(&cfg.mongo.uri), database = %cfg.mongo.database, "connecting to MongoDB");
            let store = MongoStore::connect(
                &cfg.mongo.uri,
                &cfg.mongo.database,
                cfg.mongo.server_selection_timeout.get(),
                Some(metrics),
            )
            .await?;
            let limit = cfg.daemon.startup_timeout.get();
            with_retry("MongoDB", limit, || store.ensure_indexes()).await?;
            Ok(Stores::from_backend(Arc::new(store), "mongodb"))
        }
    }
}

/// Build the configured permit backend and event bus, waiting for Redis to
/// answer. With the local rate limiter both are in-process.
pub async fn connect_permits(
    cfg: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Arc<dyn PermitBackend>, SharedBus), SetupError> {
    match cfg.rate_limit.backend {
        RateLimitBackend::Local => Ok((Arc::new(LocalPermits::new()), Arc::new(LocalBus::new()))),
        RateLimitBackend::Redis => {
            tracing::info!(url = %mask_url(&cfg.redis.url), "connecting to Redis");
            let p = pool(&cfg.redis.url, cfg.redis.pool_size, cfg.redis.timeout.get())?;
            let permits = RedisPermits::new(
                p.clone(),
                &cfg.redis.key_prefix,
                cfg.redis.timeout.get(),
                metrics.clone(),
            );
            with_retry("Redis", cfg.daemon.startup_timeout.get(), || permits.ping()).await?;
            let bus = RedisBus::start(
                &cfg.redis.url,
                p,
                &cfg.redis.key_prefix,
                cfg.redis.timeout.get(),
                metrics,
            )?;
            Ok((Arc::new(permits), bus))
        }
    }
}

/// Run the daemon until a signal stops it. Returns the process exit code.
pub async fn run(cfg: Config) -> i32 {
    let cfg = Arc::new(cfg);
    let daemon_id = cfg.daemon_id();
    tracing::info!(daemon = %daemon_id, bind = %cfg.http.bind, "starting trackly");
    let metrics = Arc::new(Metrics::new());
    let stores = match connect_store(&cfg, metrics.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    let (permits, bus) = match connect_permits(&cfg, metrics.clone()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    let secrets = Arc::new(Secrets::from_env());
    let providers = match ProviderRegistry::from_config(&cfg, &secrets) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    tracing::info!(providers = ?providers.describe(), "providers configured");
    if !providers.describe().iter().all(|p| p == "fake") && is_loopback_url(&cfg.http.public_url) {
        tracing::warn!(public_url = %cfg.http.public_url,
            "http.public_url is a loopback address: providers elsewhere cannot deliver reports; set it to the address every daemon stands behind");
    }
    if secrets.webhook_token.is_none() && (!secrets.infobip.is_empty() || !secrets.cm.is_empty()) {
        tracing::warn!(
            "TRACKLY_WEBHOOK_TOKEN is not set: Infobip and CM delivery reports are refused (403)"
        );
    }
    let daemon = Daemon::start(DaemonParts {
        config: cfg.clone(),
        daemon_id,
        stores,
        permits,
        providers,
        clock: Arc::new(SystemClock),
        bus,
        secrets: secrets.clone(),
        metrics,
    });
    let state: AppState = daemon.http_state(secrets, &cfg.http.public_url);
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(crate::http::configure(state.clone()))
    })
    .disable_signals()
    .shutdown_timeout(5);
    if cfg.http.workers > 0 {
        server = server.workers(cfg.http.workers);
    }
    let server = match server.bind(&cfg.http.bind) {
        Ok(s) => s.run(),
        Err(e) => {
            tracing::error!(bind = %cfg.http.bind, error = %e, "cannot listen");
            return 1;
        }
    };
    let handle = server.handle();
    let server_task = actix_rt::spawn(server);
    tracing::info!(bind = %cfg.http.bind, "ready");

    let signal = wait_for_signal().await;
    tracing::info!(signal, "stopping");
    let grace = cfg.daemon.shutdown_grace.get();
    let r = daemon.shutdown(grace).await;
    tracing::info!(
        drained = r.drained,
        timed_out = r.timed_out,
        "in-flight work finished; lease released"
    );
    // HTTP stops last, so delivery reports keep landing while sends finish.
    handle.stop(true).await;
    let _ = server_task.await;
    tracing::info!("stopped");
    0
}

/// Whether a URL's host is a loopback or unspecified address.
fn is_loopback_url(url: &str) -> bool {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()));
    match host.as_deref() {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()),
        None => false,
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Signal handlers could not be installed: fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
