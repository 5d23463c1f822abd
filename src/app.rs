//! Wiring: builds the actor tree of one daemon from its parts. Used by
//! `trackly serve`, the devkit's demo, the benchmark and the tests, so they all
//! run the same system.

use crate::actors::billing::Billing;
use crate::actors::coordinator::{Coordinator, CoordinatorDeps};
use crate::actors::customer_webhooks::{SenderDeps, WebhookSender};
use crate::actors::dead_letter::DeadLetter;
use crate::actors::delivery_intake::{DeliveryIntake, OutboxWriter};
use crate::actors::lease::Lease;
use crate::actors::rate_limiter::RateLimiter;
use crate::actors::recovery::{Recovery, RecoveryDeps, UnservableLists};
use crate::actors::scheduler::{Scheduler, SchedulerDeps};
use crate::actors::supervisor::SupervisorDeps;
use crate::actors::worker::WorkerDeps;
use crate::bus::SharedBus;
use crate::clock::SharedClock;
use crate::config::{Config, Secrets};
use crate::instance::Instance;
use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;
use crate::ratelimit::PermitBackend;
use crate::store::Stores;
use actix::prelude::*;
use std::sync::Arc;

/// What a daemon is made of.
pub struct DaemonParts {
    pub config: Arc<Config>,
    /// The configured daemon id; the instance id adds a random part.
    pub daemon_id: String,
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
    pub providers: ProviderRegistry,
    pub clock: SharedClock,
    /// Cross-daemon hints (Redis pub/sub, or in-process).
    pub bus: SharedBus,
    /// Provider credentials (for the lease's timing window).
    pub secrets: Arc<Secrets>,
    /// The registry every part records into (also the store's and Redis'
    /// round trips, when they were built with it).
    pub metrics: Arc<Metrics>,
}

/// A running daemon's actors.
#[derive(Clone)]
pub struct Daemon {
    /// The configuration it was started with.
    pub config: Arc<Config>,
    pub coordinator: Addr<Coordinator>,
    pub rate_limiter: Addr<RateLimiter>,
    pub billing: Addr<Billing>,
    pub dead_letter: Addr<DeadLetter>,
    /// The HTTP actor: writes delivery reports.
    pub intake: Addr<DeliveryIntake>,
    /// Posts the customer-webhook outbox (absent when
    /// `customer_webhooks.enabled` is false).
    pub webhooks: Option<Addr<WebhookSender>>,
    /// Writes link clicks (the redirect never waits for it).
    pub clicks: Addr<crate::actors::click_intake::ClickIntake>,
    pub recovery: Addr<Recovery>,
    /// Settles in-doubt messages by asking their provider (works on the
    /// recovery leader).
    pub resolver: Addr<crate::actors::resolver::Resolver>,
    pub lease: Addr<Lease>,
    /// Counts what becomes of campaign runs' messages.
    pub run_stats: Addr<crate::actors::run_stats::RunStats>,
    /// Triggers campaigns (absent when `scheduler.enabled` is false).
    pub scheduler: Option<Addr<Scheduler>>,
    /// Discord alerts (absent when `alerts.enabled` is false).
    pub alerts: Option<Addr<crate::actors::alerts::Alerts>>,
    pub metrics: Arc<Metrics>,
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
    pub clock: SharedClock,
    pub bus: SharedBus,
    /// This instance: id, tokens, lease window, shutdown flag.
    pub instance: Arc<Instance>,
    /// Lists no live daemon can serve (Recovery's finding, for `/readyz`).
    pub unservable: UnservableLists,
}

impl Daemon {
    /// Start every actor on the current actix system.
    pub fn start(parts: DaemonParts) -> Daemon {
        let cfg = parts.config.clone();
        let metrics = parts.metrics.clone();
        let instance = Arc::new(Instance::new(&parts.daemon_id));
        let unservable: UnservableLists = Default::default();
        let lease = Lease::new(
            instance.clone(),
            parts.stores.leases.clone(),
            parts.clock.clone(),
            cfg.daemon.heartbeat_interval.get(),
            cfg.daemon.lease_ttl.get(),
            cfg.longest_send(&parts.secrets),
            parts.providers.describe(),
        )
        .start();
        let rate_limiter = RateLimiter::new(parts.permits.clone(), cfg.rate_limit.clone()).start();
        let alerts = cfg.alerts.enabled.then(|| {
            crate::actors::alerts::Alerts::new(crate::actors::alerts::AlertsDeps {
                stores: parts.stores.clone(),
                clock: parts.clock.clone(),
                config: cfg.alerts.clone(),
                policy: cfg.customer_webhooks.outbound_policy(),
                metrics: metrics.clone(),
                instance: instance.id.clone(),
            })
            .start()
        });
        let alert_sink = match &alerts {
            Some(a) => crate::messages::AlertSink::new(a.clone().recipient(), metrics.clone()),
            None => crate::messages::AlertSink::off(),
        };
        let billing = Billing::new(
            parts.stores.accounts.clone(),
            parts.stores.sent.clone(),
            cfg.billing.price_cache.get(),
            cfg.coordinator.max_batch * 4,
        )
        .start();
        let dead_letter = DeadLetter::new(
            parts.stores.dead_letters.clone(),
            metrics.clone(),
            cfg.dead_letter.max_batch,
        )
        .with_alerts(alert_sink.clone())
        .start();
        let run_stats = crate::actors::run_stats::RunStats::new(
            parts.stores.schedules.clone(),
            cfg.scheduler.stats_flush_interval.get(),
        )
        .start();
        let webhooks = cfg.customer_webhooks.enabled.then(|| {
            WebhookSender::new(SenderDeps {
                outbox: parts.stores.outbox.clone(),
                accounts: parts.stores.accounts.clone(),
                clock: parts.clock.clone(),
                config: cfg.customer_webhooks.clone(),
                metrics: metrics.clone(),
                instance: instance.id.clone(),
            })
            .start()
        });
        let mut intake = DeliveryIntake::new(
            parts.stores.sent.clone(),
            metrics.clone(),
            cfg.webhooks.max_batch,
            cfg.webhooks.max_pending_bytes,
            run_stats.clone().recipient(),
        )
        .with_alerts(alert_sink.clone());
        if let Some(sender) = &webhooks {
            intake = intake.with_webhooks(
                OutboxWriter::new(
                    parts.stores.outbox.clone(),
                    parts.stores.accounts.clone(),
                    parts.clock.clone(),
                    cfg.customer_webhooks.settings_refresh.get(),
                )
                .waking(sender.clone().recipient()),
            );
        }
        let intake = intake.start();
        let clicks = crate::actors::click_intake::ClickIntake::new(
            parts.stores.links.clone(),
            parts.stores.sent.clone(),
            metrics.clone(),
            cfg.webhooks.max_batch,
            cfg.links.max_pending_clicks,
        )
        .start();
        let recovery = Recovery::new(RecoveryDeps {
            stores: parts.stores.clone(),
            clock: parts.clock.clone(),
            config: cfg.clone(),
            instance: instance.clone(),
            settle: billing.clone().recipient(),
            unservable: unservable.clone(),
            metrics: metrics.clone(),
            alerts: alert_sink.clone(),
        })
        .start();
        let worker = Arc::new(WorkerDeps {
            stores: parts.stores.clone(),
            clock: parts.clock.clone(),
            config: cfg.clone(),
            instance: instance.clone(),
            acquire: rate_limiter.clone().recipient(),
            throttled: rate_limiter.clone().recipient(),
            charge: billing.clone().recipient(),
            settle: billing.clone().recipient(),
            dead_letter: dead_letter.clone().recipient(),
            count_runs: run_stats.clone().recipient(),
            alerts: alert_sink.clone(),
            metrics: metrics.clone(),
        });
        let scheduler = cfg.scheduler.enabled.then(|| {
            Scheduler::new(SchedulerDeps {
                stores: parts.stores.clone(),
                clock: parts.clock.clone(),
                config: cfg.clone(),
                instance: instance.clone(),
                bus: parts.bus.clone(),
                metrics: metrics.clone(),
                providers: parts.providers.describe(),
                alerts: alert_sink.clone(),
            })
            .start()
        });
        let resolver =
            crate::actors::resolver::Resolver::new(crate::actors::resolver::ResolverDeps {
                stores: parts.stores.clone(),
                clock: parts.clock.clone(),
                config: cfg.clone(),
                instance: instance.clone(),
                providers: parts.providers.clone(),
                metrics: metrics.clone(),
                bus: parts.bus.clone(),
            })
            .start();
        let providers = parts.providers.clone();
        let check = rate_limiter.clone().recipient();
        let supervisor_bus = parts.bus.clone();
        let coordinator = Coordinator::start_with(
            CoordinatorDeps {
                stores: parts.stores.clone(),
                clock: parts.clock.clone(),
                config: cfg.clone(),
                instance: instance.clone(),
                bus: parts.bus.clone(),
            },
            move |addr| SupervisorDeps {
                worker,
                providers,
                request_work: addr.clone().recipient(),
                stopped: addr.recipient(),
                check_rate_limiter: check,
                bus: supervisor_bus,
            },
        );
        Daemon {
            config: cfg.clone(),
            coordinator,
            rate_limiter,
            billing,
            dead_letter,
            intake,
            webhooks,
            clicks,
            recovery,
            resolver,
            lease,
            run_stats,
            scheduler,
            alerts,
            metrics,
            stores: parts.stores,
            permits: parts.permits,
            clock: parts.clock,
            bus: parts.bus,
            instance,
            unservable,
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
            clicks: self.clicks.clone().recipient(),
            control: self.coordinator.clone().recipient(),
            explain: self.scheduler.clone().map(|s| s.recipient()),
            look: self.scheduler.clone().map(|s| s.recipient()),
            bus: self.bus.clone(),
            link_base: self.config.link_base_url().to_string(),
            secrets,
            public_url: public_url.to_string(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            instance: self.instance.clone(),
            unservable: self.unservable.clone(),
            outbound: Arc::new(self.config.customer_webhooks.outbound_policy()),
        }
    }

    /// Stop claiming, let in-flight sends finish within `grace`, then mark
    /// the lease stopped so recovery elsewhere need not wait for it to lapse.
    pub async fn shutdown(&self, grace: std::time::Duration) -> crate::messages::ShutdownReport {
        let report = self
            .coordinator
            .send(crate::messages::Shutdown { grace })
            .await
            .unwrap_or_default();
        let _ = self.run_stats.send(crate::messages::FlushRunCounts).await;
        if let Some(a) = &self.alerts {
            let flush = a.send(crate::messages::FlushAlerts);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), flush).await;
        }
        if let Some(w) = &self.webhooks {
            let _ = w.send(crate::messages::StopWebhooks).await;
        }
        let _ = self.lease.send(crate::messages::StopLease).await;
        report
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
