//! Wiring: builds the actor tree of one daemon from its parts. Used by
//! `trackly serve`, `trackly demo`, the benchmark and the tests, so they all
//! run the same system.

use crate::actors::billing::Billing;
use crate::actors::coordinator::Coordinator;
use crate::actors::dead_letter::DeadLetter;
use crate::actors::delivery_intake::DeliveryIntake;
use crate::actors::rate_limiter::RateLimiter;
use crate::actors::supervisor::SupervisorDeps;
use crate::actors::worker::WorkerDeps;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;
use crate::ratelimit::PermitBackend;
use crate::store::Stores;
use actix::prelude::*;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What a daemon is made of.
pub struct DaemonParts {
    pub config: Arc<Config>,
    pub daemon_id: String,
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
    pub providers: ProviderRegistry,
    pub clock: SharedClock,
}

/// A running daemon's actors.
#[derive(Clone)]
pub struct Daemon {
    pub coordinator: Addr<Coordinator>,
    pub rate_limiter: Addr<RateLimiter>,
    pub billing: Addr<Billing>,
    pub dead_letter: Addr<DeadLetter>,
    /// The HTTP actor: writes delivery reports.
    pub intake: Addr<DeliveryIntake>,
    pub metrics: Arc<Metrics>,
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
    pub clock: SharedClock,
    pub shutting_down: Arc<AtomicBool>,
}

impl Daemon {
    /// Start every actor on the current actix system.
    pub fn start(parts: DaemonParts) -> Daemon {
        let cfg = parts.config.clone();
        let metrics = Arc::new(Metrics::new());
        let shutting_down = Arc::new(AtomicBool::new(false));
        let rate_limiter = RateLimiter::new(parts.permits.clone(), cfg.rate_limit.clone()).start();
        let billing =
            Billing::new(parts.stores.accounts.clone(), cfg.billing.price_cache.get()).start();
        let dead_letter = DeadLetter::new(
            parts.stores.dead_letters.clone(),
            metrics.clone(),
            cfg.dead_letter.max_batch,
        )
        .start();
        let intake = DeliveryIntake::new(
            parts.stores.sent.clone(),
            metrics.clone(),
            cfg.webhooks.max_batch,
        )
        .start();
        let worker = Arc::new(WorkerDeps {
            stores: parts.stores.clone(),
            clock: parts.clock.clone(),
            config: cfg.clone(),
            acquire: rate_limiter.clone().recipient(),
            throttled: rate_limiter.clone().recipient(),
            charge: billing.clone().recipient(),
            refund: billing.clone().recipient(),
            dead_letter: dead_letter.clone().recipient(),
            metrics: metrics.clone(),
            shutting_down: shutting_down.clone(),
        });
        let providers = parts.providers.clone();
        let check = rate_limiter.clone().recipient();
        let coordinator = Coordinator::new(
            parts.daemon_id.clone(),
            Box::new(move |addr| SupervisorDeps {
                worker,
                providers,
                request_work: addr.clone().recipient(),
                stopped: addr.recipient(),
                check_rate_limiter: check,
            }),
        )
        .start();
        Daemon {
            coordinator,
            rate_limiter,
            billing,
            dead_letter,
            intake,
            metrics,
            stores: parts.stores,
            permits: parts.permits,
            clock: parts.clock,
            shutting_down,
        }
    }

    /// The state the HTTP routes need, for this daemon.
    pub fn http_state(
        &self,
        secrets: Arc<crate::config::Secrets>,
        public_url: &str,
    ) -> crate::http::AppState {
        crate::http::AppState {
            stores: self.stores.clone(),
            permits: self.permits.clone(),
            intake: self.intake.clone().recipient(),
            secrets,
            public_url: public_url.to_string(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Run the HTTP routes for `state` on an already-bound listener (bind first
/// to learn the port, then build the providers with the public URL).
pub fn http_server(
    state: crate::http::AppState,
    listener: std::net::TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(crate::http::configure(state.clone()))
    })
    .disable_signals()
    .shutdown_timeout(5);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
