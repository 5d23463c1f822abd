//! `cargo benchmark --suite webhooks`: customer webhook deliveries per
//! second. `entries` outbox entries (one account, one receiver) are written
//! to the store, then a WebhookSender (the daemon's actor, its default
//! batch size and concurrency) posts them, signed, to a receiver on
//! 127.0.0.1 that verifies every signature; the clock runs from the
//! sender's start to the last 200.

use crate::webhook_receiver::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::actors::customer_webhooks::{SenderDeps, WebhookSender};
use trackly::clock::{Clock, SystemClock};
use trackly::config::{CustomerWebhooksConfig, Dur, StoreBackend};
use trackly::domain::*;
use trackly::metrics::Metrics;
use trackly::store::Stores;
use trackly::store::mongo::MongoStore;

#[derive(Debug, Clone)]
pub struct WebhookBenchOptions {
    pub store: StoreBackend,
    pub entries: u64,
    pub mongodb_uri: String,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookBenchReport {
    pub store: &'static str,
    pub entries: u64,
    pub seconds: f64,
    pub per_sec: f64,
    pub batch_size: usize,
    pub concurrency: usize,
    pub bad_signatures: u64,
    pub mongo_rt_per_1000: Option<f64>,
}

impl WebhookBenchReport {
    pub fn table(&self) -> String {
        format!(
            "\nstore: {store}\n  customer webhooks: {n} signed POSTs to 127.0.0.1 (batch {b}, {c} in flight) in {s:.2} s = {r:.0} deliveries/s; bad signatures: {bad}; MongoDB round trips per 1,000: {m}\n",
            store = self.store,
            n = self.entries,
            b = self.batch_size,
            c = self.concurrency,
            s = self.seconds,
            r = self.per_sec,
            bad = self.bad_signatures,
            m = self
                .mongo_rt_per_1000
                .map_or("-".to_string(), |v| format!("{v:.1}")),
        )
    }
}

pub async fn run(opts: WebhookBenchOptions) -> Result<WebhookBenchReport, String> {
    const SECRET: &str = "bench-webhook-secret-0123456789";
    let metrics = Arc::new(Metrics::new());
    let (stores, mongo) = match opts.store {
        StoreBackend::Memory => (Stores::memory(), None),
        StoreBackend::Mongodb => {
            let db = format!("bench_wh_{}", MessageId::new().to_hex());
            let m = MongoStore::connect(
                &opts.mongodb_uri,
                &db,
                Duration::from_secs(10),
                Some(metrics.clone()),
            )
            .await
            .map_err(|e| e.to_string())?;
            m.ensure_indexes().await.map_err(|e| e.to_string())?;
            (
                Stores::from_backend(Arc::new(m.clone()), "mongodb"),
                Some(m),
            )
        }
    };
    let rx = Receiver::start_with(SECRET, false)
        .await
        .map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let mut account = crate::seed::account(Money(1_000_000), Money(1), now);
    account.delivery_webhook = Some(CustomerWebhook {
        url: rx.url("/hook"),
        secret: trackly::telemetry::Secret::new(SECRET),
    });
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({
        "id": "0", "account": account.id.to_hex(), "sendingList": MessageId::new().to_hex(),
        "messageCreative": null, "fromNumber": "+15551234567", "toNumber": "+15559876543",
        "delivered": true, "sendType": "campaign", "filterBots": false, "length": 142,
        "timestamp": "2024-01-15T10:30:00Z"
    })
    .to_string();
    let mut batch = Vec::with_capacity(1000);
    for _ in 0..opts.entries {
        let m = MessageId::new();
        batch.push(OutboxEntry {
            id: OutboxEntry::key(m, DeliveryState::Delivered),
            message: m,
            account: account.id,
            state: DeliveryState::Delivered,
            rank: 1,
            body: body.clone(),
            status: OutboxStatus::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            claim: None,
            lease_until: None,
            last_error: None,
            finished_at: None,
        });
        if batch.len() == 1000 {
            stores
                .outbox
                .add_outbox(std::mem::take(&mut batch))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    stores
        .outbox
        .add_outbox(batch)
        .await
        .map_err(|e| e.to_string())?;
    let config = CustomerWebhooksConfig {
        poll_interval: Dur::millis(10),
        allow_http: true,
        allowed_cidrs: vec!["127.0.0.0/8".into()],
        ..Default::default()
    };
    let mongo_before = metrics.mongo_commands();
    let started = Instant::now();
    let sender = actix::Actor::start(WebhookSender::new(SenderDeps {
        outbox: stores.outbox.clone(),
        accounts: stores.accounts.clone(),
        clock: Arc::new(SystemClock),
        config: config.clone(),
        metrics: metrics.clone(),
        instance: "bench".into(),
    }));
    let deadline = Instant::now() + Duration::from_secs(600);
    while rx.ok_count() < opts.entries {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} webhooks delivered in 10 minutes",
                rx.ok_count(),
                opts.entries
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = sender.send(trackly::messages::StopWebhooks).await;
    let mongo_rt = mongo.as_ref().map(|_| {
        (metrics.mongo_commands() - mongo_before) as f64 * 1000.0 / opts.entries.max(1) as f64
    });
    if let Some(m) = mongo {
        let _ = m.drop_database().await;
    }
    Ok(WebhookBenchReport {
        store: stores.backend,
        entries: opts.entries,
        seconds,
        per_sec: opts.entries as f64 / seconds,
        batch_size: config.batch_size,
        concurrency: config.concurrency,
        bad_signatures: rx
            .state
            .bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        mongo_rt_per_1000: mongo_rt,
    })
}
