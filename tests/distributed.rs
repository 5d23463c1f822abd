//! Integration tests on MongoDB and Redis: several daemons (actor systems
//! with their own clients, or processes of the real binary) on one queue.
//! Guarantees 1-3: never twice, never lost, never over the limit.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use trackly::app::{Daemon, DaemonParts};
use trackly::bus::RedisBus;
use trackly::clock::{Clock, ManualClock, SystemClock};
use trackly::config::Secrets;
use trackly::config::{Config, Dur};
use trackly::domain::*;
use trackly::messages::*;
use trackly::providers::ProviderRegistry;
use trackly::providers::fake::{FakeProvider, FakeSettings, Scripted};
use trackly::ratelimit::redis::{RedisPermits, pool};
use trackly::store::Stores;
use trackly::store::mongo::MongoStore;
use trackly_devkit::seed;

/// A daemon in a thread of its own: its own actix system, its own MongoDB
/// and Redis clients. Dropping the handle stops it.
struct ThreadDaemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Its Coordinator (on the daemon's own actix system).
    coordinator: actix::Addr<trackly::actors::coordinator::Coordinator>,
    /// Its counters (MongoDB commands among them).
    metrics: Arc<trackly::metrics::Metrics>,
}

impl ThreadDaemon {
    fn start(
        svc: &Services,
        prefix: &str,
        cfg: Config,
        provider: Arc<FakeProvider>,
        name: &str,
    ) -> ThreadDaemon {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (uri, db, redis, prefix, name) = (
            svc.mongo_uri.clone(),
            svc.db.clone(),
            svc.redis_url.clone(),
            prefix.to_string(),
            name.to_string(),
        );
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let metrics = Arc::new(trackly::metrics::Metrics::new());
                let m =
                    MongoStore::connect(&uri, &db, Duration::from_secs(10), Some(metrics.clone()))
                        .await
                        .expect("mongo");
                let stores = Stores::from_backend(Arc::new(m), "mongodb");
                let p = pool(&redis, 8, Duration::from_secs(2)).expect("pool");
                let permits =
                    RedisPermits::new(p.clone(), &prefix, Duration::from_secs(2), metrics.clone());
                let bus =
                    RedisBus::start(&redis, p, &prefix, Duration::from_secs(2), metrics.clone())
                        .expect("event bus");
                let daemon = Daemon::start(DaemonParts {
                    config: Arc::new(cfg),
                    daemon_id: name,
                    stores,
                    permits: Arc::new(permits),
                    providers: ProviderRegistry::new().with_fake(provider),
                    clock: Arc::new(SystemClock),
                    bus,
                    secrets: Arc::new(Secrets::default()),
                    metrics: metrics.clone(),
                });
                let _ = ready_tx.send((daemon.coordinator.clone(), metrics.clone()));
                let _ = rx.await;
                let _ = daemon
                    .coordinator
                    .send(Shutdown {
                        grace: Duration::from_secs(5),
                    })
                    .await;
            });
        });
        let (coordinator, metrics) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("daemon started");
        ThreadDaemon {
            stop: Some(tx),
            thread: Some(thread),
            coordinator,
            metrics,
        }
    }
}

impl Drop for ThreadDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast_config() -> Config {
    let mut c = test_config();
    c.coordinator.poll_interval = Dur::millis(50);
    c.coordinator.max_poll_interval = Dur::millis(200);
    c.coordinator.max_batch = 50;
    c
}

async fn wait_drained(stores: &Stores, limit: Duration) -> bool {
    let q = stores.queue.clone();
    wait_until(limit, || {
        let q = q.clone();
        async move { q.depth().await.map(|d| d == 0).unwrap_or(false) }
    })
    .await
}

/// (sent, failed by reason) over `ids`, asserting exactly one terminal state each.
async fn outcomes(
    stores: &Stores,
    ids: &[MessageId],
) -> (HashSet<MessageId>, HashMap<FailureReason, Vec<MessageId>>) {
    let mut sent = HashSet::new();
    let mut failed: HashMap<FailureReason, Vec<MessageId>> = HashMap::new();
    for id in ids {
        let s = stores.sent.get(*id).await.unwrap();
        let f = stores.dead_letters.get(*id).await.unwrap();
        assert!(
            stores.queue.get(*id).await.unwrap().is_none(),
            "{id} still queued"
        );
        // A resolved dead letter (an in-doubt message later proved sent) is
        // not a terminal state; its record's `submitted = true` is.
        let f = f.filter(|f| f.resolved.is_none());
        match (s.as_ref().and_then(|s| s.submitted), f) {
            (Some(true), None) => {
                sent.insert(*id);
            }
            (submitted, Some(f))
                if submitted != Some(true) && s.as_ref().is_none_or(|s| s.submitted.is_some()) =>
            {
                failed.entry(f.reason).or_default().push(*id);
            }
            other => panic!("{id} is not in exactly one terminal state: {other:?}"),
        }
    }
    (sent, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_drain_one_queue_with_no_duplicates_and_nothing_lost() {
    let Some(svc) = services("two_daemons") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let provider = Arc::new(FakeProvider::new(FakeSettings {
        latency: Duration::from_millis(5),
        ..Default::default()
    }));
    let prefix = unique_name("two_daemons");
    let a = ThreadDaemon::start(&svc, &prefix, fast_config(), provider.clone(), "daemon-a");
    let b = ThreadDaemon::start(&svc, &prefix, fast_config(), provider.clone(), "daemon-b");
    // Both daemons poll before the campaign is queued, so they compete
    // for it from the first claim.
    let c = seed::campaign(
        &stores,
        600,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    assert!(
        wait_drained(&stores, Duration::from_secs(120)).await,
        "queue not drained"
    );
    drop((a, b));
    assert!(
        provider.duplicates().is_empty(),
        "sent twice: {:?}",
        provider.duplicates()
    );
    let ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    let (sent, failed) = outcomes(&stores, &ids).await;
    assert_eq!((sent.len(), failed.len()), (600, 0));
    assert_eq!(provider.accepted_count(), 600);
    // Both daemons took part.
    let mut tokens = HashSet::new();
    for id in &ids {
        let r = stores.sent.get(*id).await.unwrap().unwrap();
        tokens.insert(r.attempt_token.split(':').next().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 2, "both daemons should have sent: {tokens:?}");
    let _ = m.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lists_rate_limit_holds_across_two_daemons() {
    let Some(svc) = services("rate_two_daemons") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    // 600/min = 10/s, burst 1 s = 10 permits.
    let c = seed::campaign(
        &stores,
        60,
        ProviderSettings::Fake,
        600,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let provider = Arc::new(FakeProvider::new(FakeSettings::default()));
    let prefix = unique_name("rate_two_daemons");
    let a = ThreadDaemon::start(&svc, &prefix, fast_config(), provider.clone(), "daemon-a");
    let b = ThreadDaemon::start(&svc, &prefix, fast_config(), provider.clone(), "daemon-b");
    assert!(
        wait_drained(&stores, Duration::from_secs(60)).await,
        "queue not drained"
    );
    drop((a, b));
    assert_eq!(provider.accepted_count(), 60);
    let mut times = provider.receive_times();
    times.sort();
    // In any window of W seconds, at most rate*W + burst.
    for w in [1.0f64, 2.0, 3.0] {
        let mut j = 0;
        for i in 0..times.len() {
            while (times[i] - times[j]).as_secs_f64() > w {
                j += 1;
            }
            let in_window = i - j + 1;
            assert!(
                in_window as f64 <= 10.0 * w + 10.0 + 1.0,
                "{in_window} sends within {w} s"
            );
        }
    }
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    assert!(
        span >= 4.0,
        "60 messages at 10/s with a burst of 10 take at least 5 s, took {span:.2}"
    );
    let _ = c;
    let _ = m.drop_database().await;
}

#[actix_rt::test]
async fn a_billing_block_clears_when_the_balance_is_topped_up() {
    let Some(svc) = services("billing_topup") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let permits = redis_permits("billing_topup").await.unwrap();
    let t = start_daemon(
        fast_config(),
        stores.clone(),
        permits,
        FakeSettings::default(),
    );
    let c = seed::campaign(
        &stores,
        10,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(5 * 7_500),
        t.now(),
    )
    .await
    .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    let p = t.provider.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let p = p.clone();
            async move { p.accepted_count() == 5 }
        })
        .await
    );
    // The other five wait in the queue, billing-blocked.
    let q = stores.queue.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let q = q.clone();
            async move { q.depth().await.unwrap() == 5 }
        })
        .await
    );
    stores
        .accounts
        .top_up(c.account.id, Money::from_micros(5 * 7_500))
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(5 * 60));
    t.daemon.coordinator.do_send(PollNow);
    assert!(wait_drained(&stores, Duration::from_secs(30)).await);
    assert_eq!(t.provider.accepted_count(), 10);
    let ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    let (sent, _) = outcomes(&stores, &ids).await;
    assert_eq!(sent.len(), 10);
    assert_eq!(
        stores
            .accounts
            .get_account(c.account.id)
            .await
            .unwrap()
            .unwrap()
            .balance,
        Money::ZERO
    );
    let _ = m.drop_database().await;
}

#[actix_rt::test]
async fn every_dead_letter_reason_comes_from_a_real_path() {
    let Some(svc) = services("every_reason") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let permits = redis_permits("every_reason").await.unwrap();
    let mut cfg = fast_config();
    cfg.worker.permit_timeout = Dur::millis(500);
    let clock = ManualClock::starting_now();
    let t = start_daemon_with_clock(cfg, stores.clone(), permits, FakeSettings::default(), clock);
    let now = t.now();
    let rich = seed::account(
        Money::from_micros(1_000_000_000),
        Money::from_micros(7_500),
        now,
    );
    let broke = seed::account(Money::ZERO, Money::from_micros(7_500), now);
    stores.accounts.insert_account(rich.clone()).await.unwrap();
    stores.accounts.insert_account(broke.clone()).await.unwrap();
    let mut main = seed::list(rich.id, ProviderSettings::Fake, 1_000_000, now);
    main.blocked_words = vec!["casino".into()];
    let slow = seed::list(rich.id, ProviderSettings::Fake, 1, now);
    let unpaid = seed::list(broke.id, ProviderSettings::Fake, 1_000_000, now);
    for l in [&main, &slow, &unpaid] {
        stores.lists.insert_list(l.clone()).await.unwrap();
    }
    let k = |acc: &Account, list: &SendingList, i| seed::contact(acc.id, list.id, i, now);
    let cs: Vec<Contact> = vec![
        k(&rich, &main, 0),
        k(&rich, &main, 1),
        k(&rich, &main, 2),
        k(&rich, &main, 3),
        k(&rich, &main, 4),
        k(&rich, &slow, 5),
        k(&rich, &slow, 6),
        k(&rich, &slow, 7),
        k(&broke, &unpaid, 8),
    ];
    stores.contacts.insert_contacts(cs.clone()).await.unwrap();
    stores
        .contacts
        .set_subscription(cs[2].id, main.id, false, now)
        .await
        .unwrap();
    t.provider.script(
        cs[3].phone.as_str(),
        Scripted::Reject {
            code: "E400".into(),
            unsubscribed: false,
        },
    );
    t.provider.script(cs[4].phone.as_str(), Scripted::InDoubt);
    let stale = seed::queued(&main, &cs[0], "hello", now - chrono::Duration::minutes(31));
    let spam = seed::queued(&main, &cs[1], "casino night", now);
    let unsub = seed::queued(&main, &cs[2], "hello", now);
    let rejected = seed::queued(&main, &cs[3], "hello", now);
    let timeout = seed::queued(&main, &cs[4], "hello", now);
    let slow_msgs: Vec<QueuedTextMessage> = cs[5..8]
        .iter()
        .map(|c| seed::queued(&slow, c, "hello", now))
        .collect();
    let unpaid_msg = seed::queued(&unpaid, &cs[8], "hello", now);
    let mut all = vec![
        stale.clone(),
        spam.clone(),
        unsub.clone(),
        rejected.clone(),
        timeout.clone(),
        unpaid_msg.clone(),
    ];
    all.extend(slow_msgs.clone());
    stores.queue.enqueue(all.clone()).await.unwrap();
    t.daemon.coordinator.do_send(Nudge);
    // Everything but the billing-blocked message resolves now.
    let q = stores.queue.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let q = q.clone();
            async move { q.depth().await.unwrap() == 1 }
        })
        .await
    );
    let blocked = stores.queue.get(unpaid_msg.id).await.unwrap().unwrap();
    assert_eq!(blocked.billing_blocked_since, Some(now));
    // Past the billing TTL it is dead-lettered.
    t.clock.advance(Duration::from_secs(61 * 60));
    t.daemon.coordinator.do_send(PollNow);
    assert!(wait_drained(&stores, Duration::from_secs(30)).await);
    let ids: Vec<MessageId> = all.iter().map(|m| m.id).collect();
    let (sent, failed) = outcomes(&stores, &ids).await;
    let one = |r: FailureReason| failed.get(&r).cloned().unwrap_or_default();
    assert_eq!(one(FailureReason::Stale), vec![stale.id]);
    assert_eq!(one(FailureReason::BlockedContent), vec![spam.id]);
    assert_eq!(one(FailureReason::ContactBlocked), vec![unsub.id]);
    assert_eq!(one(FailureReason::ProviderError), vec![rejected.id]);
    assert_eq!(one(FailureReason::NoResponse), vec![timeout.id]);
    assert_eq!(one(FailureReason::BillingBlocked), vec![unpaid_msg.id]);
    assert_eq!(one(FailureReason::RateLimitTimeout).len(), 2, "{failed:?}");
    assert_eq!(sent.len(), 1, "one permit on the 1/min list");
    let f = stores.dead_letters.get(rejected.id).await.unwrap().unwrap();
    assert_eq!(f.provider_code.as_deref(), Some("E400"));
    let _ = m.drop_database().await;
}

/// `trackly serve` processes, one of them killed with SIGKILL mid-campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_campaign_leaves_nothing_lost_or_sent_twice() {
    let Some(svc) = services("sigkill") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let c = seed::campaign(
        &stores,
        400,
        ProviderSettings::Fake,
        6_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(unique_name("sigkill"));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = unique_name("sigkill");
    let spawn = |name: &str| {
        let record = dir.join(format!("{name}.ids"));
        std::process::Command::new(env!("CARGO_BIN_EXE_trackly"))
            .arg("serve")
            .env("TRACKLY_DAEMON__ID", name)
            .env("TRACKLY_HTTP__BIND", "127.0.0.1:0")
            .env("TRACKLY_LOG__FILTER", "warn")
            .env("TRACKLY_MONGO__URI", &svc.mongo_uri)
            .env("TRACKLY_MONGO__DATABASE", &svc.db)
            .env("TRACKLY_REDIS__URL", &svc.redis_url)
            .env("TRACKLY_REDIS__KEY_PREFIX", &prefix)
            .env("TRACKLY_PROVIDERS__FAKE__ENABLED", "true")
            .env("TRACKLY_PROVIDERS__FAKE__LATENCY", "30ms")
            .env("TRACKLY_PROVIDERS__FAKE__BATCH_SIZE", "5")
            .env("TRACKLY_PROVIDERS__FAKE__TIMEOUT", "1s")
            // The in-doubt window counts every provider's timeout.
            .env("TRACKLY_PROVIDERS__INFOBIP__TIMEOUT", "1s")
            .env("TRACKLY_PROVIDERS__TWILIO__TIMEOUT", "1s")
            .env("TRACKLY_PROVIDERS__CM__TIMEOUT", "1s")
            .env("TRACKLY_PROVIDERS__FAKE__RECORD_FILE", &record)
            .env("TRACKLY_WORKER__PERMIT_TIMEOUT", "2s")
            .env("TRACKLY_DAEMON__HEARTBEAT_INTERVAL", "300ms")
            .env("TRACKLY_DAEMON__LEASE_TTL", "3s")
            .env("TRACKLY_RECOVERY__SWEEP_INTERVAL", "500ms")
            .env("TRACKLY_RECOVERY__IN_DOUBT_HORIZON", "1h")
            .env("TRACKLY_COORDINATOR__POLL_INTERVAL", "100ms")
            .env("TRACKLY_COORDINATOR__MAX_POLL_INTERVAL", "300ms")
            .env("TRACKLY_COORDINATOR__MAX_BATCH", "20")
            .spawn()
            .expect("spawn trackly serve")
    };
    let mut victim = Guard(spawn("victim"));
    let mut survivor = Guard(spawn("survivor"));
    let count = |dir: std::path::PathBuf| {
        move || {
            let dir = dir.clone();
            async move {
                let n: usize = ["victim", "survivor"]
                    .iter()
                    .map(|n| {
                        std::fs::read_to_string(dir.join(format!("{n}.ids")))
                            .map(|s| s.lines().count())
                            .unwrap_or(0)
                    })
                    .sum();
                n >= 80
            }
        }
    };
    assert!(
        wait_until(Duration::from_secs(60), count(dir.clone())).await,
        "campaign did not start"
    );
    victim.0.kill().expect("SIGKILL");
    let _ = victim.0.wait();
    assert!(
        wait_drained(&stores, Duration::from_secs(90)).await,
        "survivor did not finish the work"
    );
    unsafe_sigterm(&survivor.0);
    let status = survivor.0.wait().unwrap();
    assert!(status.success(), "survivor exit: {status:?}");

    // Never twice: no id appears twice across both provider records.
    let mut at_provider: HashMap<String, u32> = HashMap::new();
    for n in ["victim", "survivor"] {
        for line in std::fs::read_to_string(dir.join(format!("{n}.ids")))
            .unwrap_or_default()
            .lines()
        {
            *at_provider.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = at_provider.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    // Never lost: each message sent or dead-lettered, exactly once.
    let ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    let (sent, failed) = outcomes(&stores, &ids).await;
    let in_doubt = failed
        .get(&FailureReason::NoResponse)
        .map_or(0, |v| v.len());
    assert_eq!(
        sent.len() + in_doubt,
        400,
        "only sends and in-doubt sends: {failed:?}"
    );
    let by_survivor = std::fs::read_to_string(dir.join("survivor.ids"))
        .unwrap_or_default()
        .lines()
        .count();
    eprintln!(
        "sent {} (survivor {by_survivor}), in doubt {in_doubt}",
        sent.len()
    );
    assert!(by_survivor > 0, "the survivor took over");
    // Balances reconcile with charges and refunds, and nothing else is off.
    let report = trackly::audit::audit(&stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.text());
    for id in &sent {
        assert_eq!(
            at_provider.get(&id.to_hex()),
            Some(&1),
            "{id} recorded sent but not at the provider"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = m.drop_database().await;
}

fn unsafe_sigterm(child: &std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

#[actix_rt::test]
async fn sending_pauses_while_redis_is_down_and_resumes_when_it_returns() {
    let Some(svc) = services("redis_outage") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let proxy = Proxy::start(&host_port(&svc.redis_url), true).await;
    let pool = pool(
        &format!("redis://127.0.0.1:{}", proxy.port),
        4,
        Duration::from_millis(500),
    )
    .unwrap();
    let permits = Arc::new(RedisPermits::new(
        pool,
        &unique_name("redis_outage"),
        Duration::from_millis(500),
        Arc::new(trackly::metrics::Metrics::new()),
    ));
    let mut cfg = fast_config();
    cfg.rate_limit.unavailable_retry = Dur::millis(100);
    proxy.down();
    let t = start_daemon(cfg, stores.clone(), permits, FakeSettings::default());
    let c = seed::campaign(
        &stores,
        30,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        t.now(),
    )
    .await
    .unwrap();
    t.daemon.coordinator.do_send(Nudge);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        t.provider.accepted_count(),
        0,
        "never send without a permit"
    );
    assert_eq!(stores.queue.depth().await.unwrap(), 30, "nothing lost");
    for msg in &c.messages {
        assert!(
            stores.sent.get(msg.id).await.unwrap().is_none(),
            "no attempt left behind"
        );
    }
    proxy.up();
    assert!(
        wait_drained(&stores, Duration::from_secs(30)).await,
        "did not resume"
    );
    let ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    let (sent, failed) = outcomes(&stores, &ids).await;
    assert_eq!((sent.len(), failed.len()), (30, 0));
    let _ = m.drop_database().await;
}

/// Defect 8: a pause, a rate of 0 and a rate change made through one daemon
/// reach the other within a second or two (stored, then broadcast on Redis
/// pub/sub), not at the next list refresh (set to a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_a_rate_change_through_one_daemon_reach_the_other_at_once() {
    let Some(svc) = services("control_two_daemons") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    // 600/min = 10/s: 200 messages would take 20 s.
    let c = seed::campaign(
        &stores,
        200,
        ProviderSettings::Fake,
        600,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let provider = Arc::new(FakeProvider::new(FakeSettings::default()));
    let prefix = unique_name("control_two_daemons");
    let mut cfg = fast_config();
    cfg.supervisor.list_refresh = Dur::secs(60);
    let a = ThreadDaemon::start(&svc, &prefix, cfg.clone(), provider.clone(), "daemon-a");
    let b = ThreadDaemon::start(&svc, &prefix, cfg, provider.clone(), "daemon-b");
    let p = provider.clone();
    let count = move || p.accepted_count();
    let started = count.clone();
    assert!(
        wait_until(Duration::from_secs(30), move || {
            let n = started();
            async move { n >= 15 }
        })
        .await,
        "sending started"
    );
    let control = |d: &ThreadDaemon, command| {
        let addr = d.coordinator.clone();
        let list = c.list.id;
        async move {
            addr.send(ListControl { list, command })
                .await
                .expect("coordinator answers")
                .expect("control accepted")
        }
    };
    // Paused through daemon a: both stop (a chunk already permitted may
    // still finish, slowly on a loaded test server) well before the list
    // refresh (60 s): at 10 messages a second, two quiet seconds mean
    // sending stopped.
    control(&a, ListCommand::Pause).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut at_pause = count();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = count();
        if n == at_pause {
            break;
        }
        at_pause = n;
        assert!(
            std::time::Instant::now() < deadline,
            "both daemons still sending 20 s after the pause"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(), at_pause, "both daemons stopped sending");
    // Resumed with a rate of 0 through daemon b: still paused.
    control(&b, ListCommand::SetRateLimit(0)).await;
    control(&b, ListCommand::Resume).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(), at_pause, "a rate of 0 is a pause");
    // A real rate through daemon b: sending resumes at once, at the new rate.
    control(&b, ListCommand::SetRateLimit(60_000)).await;
    assert!(
        wait_drained(&stores, Duration::from_secs(30)).await,
        "the rest went out after the rate change"
    );
    drop((a, b));
    assert_eq!(provider.accepted_count(), 200);
    assert!(provider.duplicates().is_empty());
    let l = stores.lists.get_list(c.list.id).await.unwrap().unwrap();
    assert_eq!(
        (l.status, l.rate_limit_per_minute),
        (ListStatus::Active, 60_000),
        "the store holds the truth"
    );
    let _ = m.drop_database().await;
}

/// A campaign end to end on MongoDB and Redis: two daemons (each with its
/// Scheduler, talking through the Redis bus) see one schedule due; exactly
/// one run is recorded and evaluated page by page; the union of two
/// overlapping audiences is queued once per eligible contact, with the
/// skips counted by reason; both daemons send; every eligible contact gets
/// exactly one message, nothing twice, and the bill is the run's cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_on_mongodb_is_triggered_once_queued_once_and_sent_once() {
    let Some(svc) = services("campaign_mongo") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let now = SystemClock.now();
    let price = Money::from_micros(10_000);
    let account = seed::account(Money::from_micros(1_000_000_000), price, now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let mut list = seed::list(account.id, ProviderSettings::Fake, 600_000, now);
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    list.cooldown_secs = 86_400;
    stores.lists.insert_list(list.clone()).await.unwrap();
    // 1,200 contacts: audience A is the first 800, B the last 600 (200 in
    // both). Every 20th unsubscribed, every 25th with an invalid number,
    // every 30th messaged on the list an hour ago (disjoint shares).
    let mut expect: std::collections::BTreeMap<String, u64> = Default::default();
    let contacts: Vec<Contact> = (0..1_200u64)
        .map(|i| {
            let mut c = seed::contact(account.id, list.id, i, now);
            if i < 800 {
                c.tags.push("a".into());
            }
            if i >= 600 {
                c.tags.push("b".into());
            }
            let reason = if i % 20 == 3 {
                c.subscriptions[0].subscribed = false;
                Some("unsubscribed")
            } else if i % 25 == 4 {
                c.phone = E164::parse(&format!("+1200{:07}", i)).unwrap();
                Some("invalid_number")
            } else if i % 30 == 5 {
                c.last_sent.push(trackly::domain::contact::LastSent {
                    list: list.id,
                    at: now - chrono::Duration::hours(1),
                });
                Some("cooldown")
            } else {
                None
            };
            if let Some(r) = reason {
                *expect.entry(r.to_string()).or_default() += 1;
            }
            c
        })
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let mut audiences = vec![];
    for tag in ["a", "b"] {
        let a = seed::audience(
            account.id,
            tag,
            AudienceFilter {
                tags_any: vec![tag.into()],
                ..Default::default()
            },
            now,
        );
        stores.contacts.insert_audience(a.clone()).await.unwrap();
        audiences.push(a.id);
    }
    let creative = seed::creative(
        account.id,
        &[
            ("A", "Hi {{first_name|there}}, see https://example.com/a", 1),
            ("B", "Hello {{first_name|you}}: https://example.com/b", 1),
        ],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .unwrap();
    let schedule = seed::schedule(
        &list,
        audiences,
        creative.id,
        ScheduleKind::Once { at: now },
        Some(now),
        now,
    );
    stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .unwrap();

    let provider = Arc::new(FakeProvider::new(FakeSettings {
        latency: Duration::from_millis(5),
        ..Default::default()
    }));
    let mut cfg = fast_config();
    cfg.scheduler.page_size = 250;
    cfg.scheduler.max_idle = Dur::millis(500);
    let prefix = unique_name("campaign_mongo");
    let a = ThreadDaemon::start(&svc, &prefix, cfg.clone(), provider.clone(), "daemon-a");
    let b = ThreadDaemon::start(&svc, &prefix, cfg, provider.clone(), "daemon-b");

    let eligible = 1_200 - expect.values().sum::<u64>();
    let sched = stores.schedules.clone();
    let finished = wait_until(Duration::from_secs(180), || {
        let sched = sched.clone();
        async move {
            sched
                .runs_of(schedule.id, 10)
                .await
                .ok()
                .and_then(|r| r.first().cloned())
                .is_some_and(|r| r.status != RunStatus::Evaluating)
        }
    })
    .await;
    assert!(finished, "the run did not finish queuing");
    let p = provider.clone();
    let all_sent = wait_until(Duration::from_secs(180), || {
        let p = p.clone();
        async move { p.accepted_count() as u64 >= eligible }
    })
    .await;
    assert!(all_sent, "{} of {eligible} sent", provider.accepted_count());
    assert!(wait_drained(&stores, Duration::from_secs(60)).await);
    drop((a, b));

    let runs = stores.schedules.runs_of(schedule.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "one trigger: {runs:?}");
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Queued, "{:?}", run.reason);
    assert_eq!(run.audience, 1_200);
    assert_eq!(run.skipped, expect);
    assert_eq!((run.eligible, run.queued), (eligible, eligible));
    assert_eq!(
        run.variants.values().map(|v| v.messages).sum::<u64>(),
        eligible
    );
    assert_eq!(
        stores
            .schedules
            .get_schedule(schedule.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ScheduleStatus::Done
    );
    assert!(provider.duplicates().is_empty(), "sent twice");
    // Exactly one message per eligible contact, each sent.
    let mut by_contact: HashMap<ContactId, u32> = HashMap::new();
    for id in provider.accepted().keys() {
        let s = stores.sent.get(*id).await.unwrap().expect("sent record");
        assert_eq!(s.submitted, Some(true));
        *by_contact.entry(s.contact).or_default() += 1;
    }
    assert_eq!(by_contact.len() as u64, eligible);
    assert!(by_contact.values().all(|n| *n == 1));
    // Cooldowns were reserved for every queued contact.
    let ids: Vec<ContactId> = contacts.iter().map(|c| c.id).collect();
    let held = stores
        .contacts
        .cooldowns(list.id, &ids, now, None)
        .await
        .unwrap();
    assert_eq!(held.len() as u64, eligible);
    // The bill is the run's cost.
    let after = stores
        .accounts
        .get_account(account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Money(account.balance.0 - after.balance.0), run.cost);
    m.drop_database().await.unwrap();
}

/// Announce on the daemons' Redis bus that `list` has queued messages (as
/// the scheduler does after a page), from outside any daemon.
async fn announce_queued(
    svc: &Services,
    prefix: &str,
    list: SendingListId,
    due: Option<Timestamp>,
) {
    use trackly::bus::EventBus;
    let p = pool(&svc.redis_url, 2, Duration::from_secs(2)).expect("pool");
    let bus = RedisBus::start(
        &svc.redis_url,
        p,
        prefix,
        Duration::from_secs(2),
        Arc::new(trackly::metrics::Metrics::new()),
    )
    .expect("bus");
    bus.publish(trackly::bus::Event::Queued {
        lists: vec![list],
        due,
    })
    .await
    .expect("published");
}

/// What a bus test starts from: the services, a MongoDB store, a fake
/// provider answering in 5 ms, a Redis key prefix and the fast config.
struct BusCase {
    svc: Services,
    m: MongoStore,
    stores: Stores,
    provider: Arc<FakeProvider>,
    prefix: String,
    cfg: Config,
}

async fn bus_case(name: &str) -> Option<BusCase> {
    let svc = services(name)?;
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let provider = Arc::new(FakeProvider::new(FakeSettings {
        latency: Duration::from_millis(5),
        ..Default::default()
    }));
    Some(BusCase {
        svc,
        m,
        stores,
        provider,
        prefix: unique_name(name),
        cfg: fast_config(),
    })
}

/// While the Redis bus is live, messages queued for later and announced
/// with their due time (as a campaign page announces deferred messages) go
/// when they fall due: the announcement sets the coordinator's wake-up
/// time, with its timed polls two minutes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_bus_live_messages_announced_with_their_due_time_go_when_due() {
    let Some(BusCase {
        svc,
        m,
        stores,
        provider,
        prefix,
        mut cfg,
    }) = bus_case("bus_due").await
    else {
        return;
    };
    cfg.coordinator.bus_poll_interval = Dur::secs(120);
    let a = ThreadDaemon::start(&svc, &prefix, cfg, provider.clone(), "daemon-a");
    // Idle long enough for the polls to back off past the due time below.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let due = SystemClock.now() + chrono::Duration::seconds(3);
    let c = seed::campaign(
        &stores,
        10,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        due,
    )
    .await
    .unwrap();
    announce_queued(&svc, &prefix, c.list.id, Some(due)).await;
    let pv = provider.clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let pv = pv.clone();
            async move { pv.accepted_count() >= 10 }
        })
        .await,
        "the announced messages waited for the next timed poll ({} sent)",
        provider.accepted_count()
    );
    drop(a);
    assert!(provider.duplicates().is_empty());
    let _ = m.drop_database().await;
}

/// While the Redis bus is live, an idle daemon's queue polls back off far
/// (`coordinator.bus_poll_interval`), yet messages queued elsewhere and
/// announced on the bus are sent at once, and a retry that falls due later
/// wakes the poll when it is due (not a bus poll interval later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_bus_live_polls_back_off_yet_queued_work_and_retries_go_at_once() {
    let Some(BusCase {
        svc,
        m,
        stores,
        provider,
        prefix,
        mut cfg,
    }) = bus_case("bus_backoff").await
    else {
        return;
    };
    cfg.coordinator.bus_poll_interval = Dur::secs(60);
    cfg.worker.retry_base = Dur::secs(1);
    cfg.worker.retry_max = Dur::secs(1);
    let a = ThreadDaemon::start(&svc, &prefix, cfg, provider.clone(), "daemon-a");

    // Idle: the polls (one `distinct` each) back off past 200 ms.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = || {
        a.metrics
            .mongo_by_command()
            .get("distinct")
            .copied()
            .unwrap_or(0)
    };
    let before = polls();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle_polls = polls() - before;
    assert!(
        idle_polls <= 3,
        "{idle_polls} polls in 4 idle seconds with the bus live (20 at the 200 ms bound)"
    );

    // Queued by someone else (here: written directly, then announced the
    // way the scheduler announces it); the first contact's answer is a
    // transient error, so its message is retried a second later.
    let c = seed::campaign(
        &stores,
        20,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let flaky = c.messages[0].to.as_str().to_string();
    provider.script(&flaky, Scripted::Transient { throttled: false });
    announce_queued(&svc, &prefix, c.list.id, None).await;
    let pv = provider.clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let pv = pv.clone();
            async move { pv.accepted_count() >= 19 }
        })
        .await,
        "the announced messages were not sent before the next timed poll ({} sent)",
        provider.accepted_count()
    );
    // The retry falls due a second after the transient answer; the poll
    // had backed off for up to a minute, but the requeue woke it.
    provider.unscript(&flaky);
    let pv = provider.clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let pv = pv.clone();
            async move { pv.accepted_count() >= 20 }
        })
        .await,
        "the retried message waited for the next timed poll"
    );
    drop(a);
    assert!(provider.duplicates().is_empty());
    let _ = m.drop_database().await;
}
