//! The crash test: for every failpoint in turn, a campaign runs through
//! `trackly serve` processes on MongoDB and Redis, sending through the
//! Twilio adapter to the mock provider over HTTP, with delivery reports
//! coming back through one balancer address that every daemon stands behind.
//! The daemon "victim" kills itself with SIGKILL at the failpoint; it is
//! restarted under the same daemon id next to a second daemon, the campaign
//! finishes, and then:
//!
//! - nothing was sent twice at the mock;
//! - nothing is lost: the queue is empty and every message has exactly one
//!   terminal state;
//! - a message is recorded sent exactly when the mock took it (in-doubt
//!   messages the mock took are resolved by their delivery report);
//! - every balance reconciles with its charges and refunds;
//! - `trackly audit` (the library check and the command) finds nothing.
//!
//! The campaign crosses every path: rejections, a STOP, a 429 that is
//! retried, a 5xx after the mock took the message (in doubt), a stale
//! message and an unsubscribed contact. For the recovery failpoints a first
//! daemon is killed mid-send, so that the victim has work to recover.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use trackly::clock::{Clock, SystemClock};
use trackly::domain::*;
use trackly::store::{FailedFilter, Stores};
use trackly_devkit::mock::{MockConfig, MockServer};
use trackly_devkit::seed;

const SID: &str = "ACcrash000000000000000000000000000";
const TOKEN: &str = "crash-auth-token";
const MESSAGES: u64 = 48;

/// Phone numbers (by seed index) with a fate at the mock.
const REJECTED: [u64; 2] = [1, 2];
const STOP: u64 = 3;
const THROTTLED_ONCE: [u64; 2] = [4, 5];
const ERROR_AFTER_ACCEPT: [u64; 2] = [6, 7];

struct Run {
    svc: Services,
    prefix: String,
    dir: PathBuf,
    mock: MockServer,
    balancer: Balancer,
    ports: HashMap<&'static str, u16>,
}

impl Run {
    fn spawn(&self, name: &'static str, failpoint: Option<&str>) -> Guard {
        self.spawn_with(name, failpoint, &[])
    }

    fn spawn_with(
        &self,
        name: &'static str,
        failpoint: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> Guard {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trackly"));
        cmd.arg("serve")
            .env("TRACKLY_DAEMON__ID", name)
            .env(
                "TRACKLY_HTTP__BIND",
                format!("127.0.0.1:{}", self.ports[name]),
            )
            .env("TRACKLY_HTTP__PUBLIC_URL", self.balancer.url())
            .env("TRACKLY_LOG__FILTER", "warn")
            .env("TRACKLY_MONGO__URI", &self.svc.mongo_uri)
            .env("TRACKLY_MONGO__DATABASE", &self.svc.db)
            .env("TRACKLY_REDIS__URL", &self.svc.redis_url)
            .env("TRACKLY_REDIS__KEY_PREFIX", &self.prefix)
            .env("TRACKLY_TWILIO_ACCOUNT_SID", SID)
            .env("TRACKLY_TWILIO_AUTH_TOKEN", TOKEN)
            .env("TRACKLY_PROVIDERS__TWILIO__BASE_URL", self.mock.url())
            .env("TRACKLY_PROVIDERS__TWILIO__TIMEOUT", "2s")
            .env("TRACKLY_PROVIDERS__TWILIO__CONCURRENCY", "8")
            .env("TRACKLY_DAEMON__HEARTBEAT_INTERVAL", "300ms")
            .env("TRACKLY_DAEMON__LEASE_TTL", "3s")
            .env("TRACKLY_DAEMON__SHUTDOWN_GRACE", "5s")
            .env("TRACKLY_RECOVERY__SWEEP_INTERVAL", "500ms")
            .env("TRACKLY_COORDINATOR__POLL_INTERVAL", "100ms")
            .env("TRACKLY_COORDINATOR__MAX_POLL_INTERVAL", "300ms")
            .env("TRACKLY_COORDINATOR__MAX_BATCH", "8")
            .env("TRACKLY_WORKER__RETRY_BASE", "200ms")
            .env("TRACKLY_WORKER__RETRY_MAX", "1s")
            .env("TRACKLY_SCHEDULER__PAGE_SIZE", "10")
            .env("TRACKLY_SCHEDULER__MAX_IDLE", "500ms")
            .env_remove("TRACKLY_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(fp) = failpoint {
            cmd.env("TRACKLY_FAILPOINT", fp);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Guard(cmd.spawn().expect("spawn trackly serve"))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["casualty", "victim", "survivor"] {
            if let Ok(s) = std::fs::read_to_string(self.dir.join(format!("{name}.log"))) {
                let tail: Vec<&str> = s.lines().rev().take(15).collect();
                out.push_str(&format!("--- {name} (last lines)\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Wait until `child` has died by SIGKILL (its failpoint).
async fn killed_at_failpoint(child: &mut Guard, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.0.try_wait() {
            return status.signal() == Some(9);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn sigterm(child: &Guard) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
}

async fn seed_campaign(stores: &Stores) -> (seed::Campaign, Vec<QueuedTextMessage>) {
    let now = SystemClock.now();
    let c = seed::campaign(
        stores,
        MESSAGES,
        trackly_devkit::harness::settings_for(ProviderKind::Twilio),
        600_000,
        Money::from_micros(1_000_000_000),
        now,
    )
    .await
    .unwrap();
    // A stale message and one to a contact who unsubscribed.
    let extra: Vec<Contact> = (0..2)
        .map(|i| seed::contact(c.account.id, c.list.id, 1000 + i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(extra.clone())
        .await
        .unwrap();
    stores
        .contacts
        .set_subscription(extra[1].id, c.list.id, false, now)
        .await
        .unwrap();
    let more = vec![
        seed::queued(
            &c.list,
            &extra[0],
            "yesterday's news",
            now - chrono::Duration::minutes(31),
        ),
        seed::queued(&c.list, &extra[1], "hello", now),
    ];
    stores.queue.enqueue(more.clone()).await.unwrap();
    (c, more)
}

fn numbers(idx: &[u64]) -> HashSet<String> {
    idx.iter()
        .map(|i| seed::phone(*i).as_str().to_string())
        .collect()
}

async fn crash_at(failpoint: &'static str) {
    if failpoint.starts_with("scheduler.") {
        return crash_in_scheduler(failpoint).await;
    }
    if failpoint.starts_with("webhooks.") {
        return crash_in_webhooks(failpoint).await;
    }
    if failpoint.starts_with("resolver.") {
        return crash_in_resolver(failpoint).await;
    }
    if failpoint.starts_with("alerts.") {
        return crash_in_alerts(failpoint).await;
    }
    let name = format!("crash_{}", failpoint.replace('.', "_"));
    let began = std::time::Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "{failpoint}: {what} at {:.1} s",
            began.elapsed().as_secs_f64()
        )
    };
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let (c, extra) = seed_campaign(&stores).await;
    let mut ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    ids.extend(extra.iter().map(|m| m.id));

    let mock = trackly_devkit::mock::start(
        MockConfig {
            reject_numbers: numbers(&REJECTED),
            stop_numbers: numbers(&[STOP]),
            throttle_once_numbers: numbers(&THROTTLED_ONCE),
            error_numbers: numbers(&ERROR_AFTER_ACCEPT),
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some(TOKEN.into()),
            report_delay: Duration::from_millis(100),
            delivered_ratio: 1.0,
            failed_ratio: 0.0,
            latency: Duration::from_millis(5),
            // Providers retry their webhooks for hours; 9 tries span ~100 s.
            report_retries: 9,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let ports: HashMap<&'static str, u16> = ["casualty", "victim", "survivor"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
    let balancer =
        Balancer::start(ports.values().map(|p| format!("127.0.0.1:{p}")).collect()).await;
    let dir = std::env::temp_dir().join(unique_name(&name));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run {
        prefix: unique_name(&name),
        svc,
        dir,
        mock,
        balancer,
        ports,
    };

    // For recovery's failpoints someone must die first, leaving work behind.
    if failpoint.starts_with("recovery.") {
        let mut casualty = run.spawn("casualty", Some("worker.charged@2"));
        assert!(
            killed_at_failpoint(&mut casualty, Duration::from_secs(60)).await,
            "the first daemon never reached worker.charged\n{}",
            run.logs()
        );
    }
    // The victim runs alone until its failpoint kills it.
    let fp = match failpoint {
        "coordinator.claimed"
        | "worker.screened"
        | "worker.permitted"
        | "worker.charged"
        | "worker.sent"
        | "worker.settled"
        | "worker.completed"
        | "lease.renewed" => {
            format!("{failpoint}@3")
        }
        other => other.to_string(),
    };
    let mut victim = run.spawn("victim", Some(&fp));
    assert!(
        killed_at_failpoint(&mut victim, Duration::from_secs(90)).await,
        "the victim never reached {fp}\n{}",
        run.logs()
    );
    drop(victim);
    phase("victim killed");
    // Restarted under the same daemon id, next to a second daemon.
    let victim = run.spawn("victim", None);
    let survivor = run.spawn("survivor", None);
    let q = stores.queue.clone();
    assert!(
        wait_until(Duration::from_secs(120), || {
            let q = q.clone();
            async move { q.depth().await.map(|d| d == 0).unwrap_or(false) }
        })
        .await,
        "the campaign did not finish after the crash at {failpoint}\n{}",
        run.logs()
    );
    phase("queue drained");
    // Every message the mock took is recorded sent once its report came
    // (in-doubt ones included): wait for the reports.
    let accepted_ids = || -> HashSet<MessageId> {
        run.mock
            .state
            .accepted()
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect()
    };
    let st = stores.clone();
    let taken = accepted_ids();
    let settled = wait_until(Duration::from_secs(60), || {
        let st = st.clone();
        let taken = taken.clone();
        async move {
            let ids: Vec<MessageId> = taken.iter().copied().collect();
            let recs = st.sent.get_many(&ids).await.unwrap_or_default();
            recs.len() == ids.len() && recs.iter().all(|r| r.submitted == Some(true))
        }
    })
    .await;
    phase("reports settled");
    sigterm(&victim);
    sigterm(&survivor);
    let mut victim = victim;
    let mut survivor = survivor;
    let _ = victim.0.wait();
    let _ = survivor.0.wait();
    phase("daemons stopped");

    // Never twice.
    assert!(
        run.mock.state.duplicates().is_empty(),
        "sent twice at the mock after a crash at {failpoint}: {:?}",
        run.mock.state.duplicates()
    );
    // Recorded sent exactly when the mock took it.
    if !settled {
        let ids: Vec<MessageId> = accepted_ids().into_iter().collect();
        let recs = stores.sent.get_many(&ids).await.unwrap();
        let open: Vec<String> = recs
            .iter()
            .filter(|r| r.submitted != Some(true))
            .map(|r| {
                format!(
                    "{} to {} submitted {:?} code {:?} delivery {:?}",
                    r.id,
                    r.to.as_str(),
                    r.submitted,
                    r.error_code,
                    r.delivery_state
                )
            })
            .collect();
        panic!(
            "messages the mock took are not all recorded sent ({} of {} records): {open:#?}\nreports: {} sent, {} failed\n{}",
            recs.len(),
            ids.len(),
            run.mock
                .state
                .counters
                .reports_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            run.mock
                .state
                .counters
                .reports_failed
                .load(std::sync::atomic::Ordering::Relaxed),
            run.logs()
        );
    }
    let taken = accepted_ids();
    let mut sent = 0;
    let mut failed: HashMap<FailureReason, usize> = HashMap::new();
    for id in &ids {
        assert!(
            stores.queue.get(*id).await.unwrap().is_none(),
            "{id} lost in the queue"
        );
        let s = stores.sent.get(*id).await.unwrap();
        let f = stores
            .dead_letters
            .get(*id)
            .await
            .unwrap()
            .filter(|f| f.resolved.is_none());
        match (s.as_ref().and_then(|s| s.submitted), &f) {
            (Some(true), None) => {
                assert!(
                    taken.contains(id),
                    "{id} recorded sent but the mock never took it"
                );
                sent += 1;
            }
            (_, Some(f)) => {
                assert!(
                    !taken.contains(id) || f.reason == FailureReason::NoResponse,
                    "{id} was taken by the mock but recorded {}",
                    f.reason
                );
                *failed.entry(f.reason).or_default() += 1;
            }
            other => panic!("{id} has no single terminal state after {failpoint}: {other:?}"),
        }
    }
    eprintln!("{failpoint}: sent {sent}, failed {failed:?}");
    assert!(
        failed.get(&FailureReason::Stale) == Some(&1),
        "the stale message: {failed:?}"
    );
    // The invariant checker, as a library call and as the operator command.
    let report = trackly::audit::audit(&stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        report.is_clean(),
        "audit after {failpoint}:\n{}",
        report.text()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trackly"))
        .arg("audit")
        .env("TRACKLY_MONGO__URI", &run.svc.mongo_uri)
        .env("TRACKLY_MONGO__DATABASE", &run.svc.db)
        .env("TRACKLY_LOG__FILTER", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trackly audit after {failpoint}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("violations: none"));
    let _ = std::fs::remove_dir_all(&run.dir);
    let _ = m.drop_database().await;
}

/// A campaign from its schedule: `MESSAGES` contacts (with the mock's
/// fates by number), a list with a cooldown and a window open now, one
/// audience, a creative with a tracked link, due now.
async fn seed_schedule(stores: &Stores) -> (Schedule, Vec<Contact>) {
    let now = SystemClock.now();
    let account = seed::account(
        Money::from_micros(1_000_000_000),
        Money::from_micros(10_000),
        now,
    );
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let mut list = seed::list(
        account.id,
        trackly_devkit::harness::settings_for(ProviderKind::Twilio),
        600_000,
        now,
    );
    list.cooldown_secs = 3_600;
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..MESSAGES)
        .map(|i| seed::contact(account.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let audience = seed::audience(
        account.id,
        "all",
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
        .unwrap();
    let creative = seed::creative(
        account.id,
        &[("A", "Hi {{first_name|there}} https://shop.example/a", 1)],
        true,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .unwrap();
    let at = now - chrono::Duration::seconds(1);
    let schedule = seed::schedule(
        &list,
        vec![audience.id],
        creative.id,
        ScheduleKind::Once { at },
        Some(at),
        now,
    );
    stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .unwrap();
    (schedule, contacts)
}

/// The scheduler's crash points: the victim triggers the campaign and dies
/// at the failpoint; restarted next to a second daemon, the run is resumed
/// (or finished) and sent; then exactly one run exists, every contact has
/// exactly one message with exactly one terminal state, nothing went twice
/// to the mock, and the audit is clean.
async fn crash_in_scheduler(failpoint: &'static str) {
    let name = format!("crash_{}", failpoint.replace('.', "_"));
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let (schedule, contacts) = seed_schedule(&stores).await;
    let mock = trackly_devkit::mock::start(
        MockConfig {
            reject_numbers: numbers(&REJECTED),
            stop_numbers: numbers(&[STOP]),
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some(TOKEN.into()),
            report_delay: Duration::from_millis(100),
            delivered_ratio: 1.0,
            failed_ratio: 0.0,
            latency: Duration::from_millis(5),
            report_retries: 9,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let ports: HashMap<&'static str, u16> = ["casualty", "victim", "survivor"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
    let balancer =
        Balancer::start(ports.values().map(|p| format!("127.0.0.1:{p}")).collect()).await;
    let dir = std::env::temp_dir().join(unique_name(&name));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run {
        prefix: unique_name(&name),
        svc,
        dir,
        mock,
        balancer,
        ports,
    };
    // Pages of 10 contacts: die on the second page's write.
    let fp = match failpoint {
        "scheduler.cooldowns_reserved" | "scheduler.page_committed" => format!("{failpoint}@2"),
        other => other.to_string(),
    };
    let mut victim = run.spawn("victim", Some(&fp));
    assert!(
        killed_at_failpoint(&mut victim, Duration::from_secs(60)).await,
        "the victim never reached {fp}\n{}",
        run.logs()
    );
    drop(victim);
    let victim = run.spawn("victim", None);
    let survivor = run.spawn("survivor", None);
    let st = stores.clone();
    let done = wait_until(Duration::from_secs(120), || {
        let st = st.clone();
        async move {
            let runs = st
                .schedules
                .runs_of(schedule.id, 10)
                .await
                .unwrap_or_default();
            runs.iter().all(|r| r.status == RunStatus::Queued)
                && !runs.is_empty()
                && st.queue.depth().await.map(|d| d == 0).unwrap_or(false)
        }
    })
    .await;
    assert!(
        done,
        "the campaign did not finish after the crash at {failpoint}\n{}",
        run.logs()
    );
    sigterm(&victim);
    sigterm(&survivor);
    let (mut victim, mut survivor) = (victim, survivor);
    let _ = victim.0.wait();
    let _ = survivor.0.wait();

    let runs = stores.schedules.runs_of(schedule.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "one occurrence, one run: {runs:?}");
    let r = &runs[0];
    assert_eq!(
        (r.audience, r.eligible, r.queued),
        (MESSAGES, MESSAGES, MESSAGES),
        "run counters after {failpoint}: {r:?}"
    );
    assert!(
        run.mock.state.duplicates().is_empty(),
        "sent twice at the mock after a crash at {failpoint}"
    );
    // Every contact: exactly one message, in exactly one terminal state.
    use futures::TryStreamExt;
    let db = m.database();
    let sent: Vec<bson::Document> = db
        .collection::<bson::Document>("message_sent")
        .find(bson::doc! {"run": r.id})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let failed: Vec<bson::Document> = db
        .collection::<bson::Document>("failed_messages")
        .find(bson::doc! {"original.run": r.id, "resolved": bson::Bson::Null})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut by_contact: HashMap<bson::oid::ObjectId, usize> = HashMap::new();
    for d in &sent {
        let done = d.get_bool("submitted").is_ok();
        assert!(done, "an attempt left unanswered after {failpoint}: {d}");
        if d.get_bool("submitted") == Ok(true) {
            *by_contact
                .entry(d.get_object_id("contact").unwrap())
                .or_default() += 1;
        }
    }
    for d in &failed {
        let original = d.get_document("original").unwrap();
        *by_contact
            .entry(original.get_object_id("contact").unwrap())
            .or_default() += 1;
    }
    let contact_ids: HashSet<bson::oid::ObjectId> = contacts.iter().map(|c| c.id.0).collect();
    assert_eq!(
        by_contact.keys().copied().collect::<HashSet<_>>(),
        contact_ids,
        "every contact has its message after {failpoint}"
    );
    assert!(
        by_contact.values().all(|n| *n == 1),
        "a contact has two terminal messages after {failpoint}: {by_contact:?}"
    );
    let report = trackly::audit::audit(&stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        report.is_clean(),
        "audit after {failpoint}:\n{}",
        report.text()
    );
    let _ = std::fs::remove_dir_all(&run.dir);
    let _ = m.drop_database().await;
}

/// Customer webhooks: a `trackly serve` is killed right after writing
/// outbox entries (before answering the provider), after claiming them, or
/// after recording their results; restarted, with the provider resending
/// what was not answered, every (message, state) is posted exactly once,
/// signed, and every entry ends delivered.
async fn crash_in_webhooks(failpoint: &'static str) {
    const SECRET: &str = "crash-webhook-secret-0123";
    const N: u64 = 4;
    let name = format!("crash_{}", failpoint.replace('.', "_"));
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let now = SystemClock.now();
    let account = seed::account(Money::from_micros(1_000_000), Money::from_micros(1), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 1000, now);
    let records: Vec<MessageSent> = (0..N)
        .map(|i| {
            let c = seed::contact(account.id, list.id, i, now);
            let q = seed::queued(&list, &c, "hello", now);
            MessageSent::attempt(&q, ProviderKind::Infobip, "t", "t", Money::ZERO, now)
        })
        .collect();
    stores
        .sent
        .begin_attempts(account.id, records.clone())
        .await
        .unwrap();
    let rx = trackly_devkit::webhook_receiver::Receiver::start(SECRET)
        .await
        .unwrap();
    stores
        .accounts
        .set_delivery_webhook(
            account.id,
            Some(CustomerWebhook {
                url: rx.url("/hook"),
                secret: trackly::telemetry::Secret::new(SECRET),
            }),
        )
        .await
        .unwrap();
    let port = free_port();
    let token = MessageId::new().to_hex();
    let dir = std::env::temp_dir().join(unique_name(&name));
    std::fs::create_dir_all(&dir).unwrap();
    let spawn = |fp: Option<&str>, log: &str| {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trackly"));
        cmd.arg("serve")
            .env("TRACKLY_DAEMON__ID", "victim")
            .env("TRACKLY_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env(
                "TRACKLY_HTTP__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("TRACKLY_LOG__FILTER", "warn")
            .env("TRACKLY_MONGO__URI", &svc.mongo_uri)
            .env("TRACKLY_MONGO__DATABASE", &svc.db)
            .env("TRACKLY_REDIS__URL", &svc.redis_url)
            .env("TRACKLY_REDIS__KEY_PREFIX", unique_name(&name))
            .env("TRACKLY_WEBHOOK_TOKEN", &token)
            .env("TRACKLY_DAEMON__HEARTBEAT_INTERVAL", "300ms")
            .env("TRACKLY_DAEMON__LEASE_TTL", "3s")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__POLL_INTERVAL", "50ms")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__REQUEST_TIMEOUT", "200ms")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__CLAIM_LEASE", "3s")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__RETRY_BASE", "200ms")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__RETRY_MAX", "1s")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__ALLOW_HTTP", "true")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__SETTINGS_REFRESH", "0s")
            .env(
                "TRACKLY_CUSTOMER_WEBHOOKS__ALLOWED_CIDRS",
                "[\"127.0.0.0/8\"]",
            )
            .env_remove("TRACKLY_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(fp) = fp {
            cmd.env("TRACKLY_FAILPOINT", fp);
        }
        Guard(cmd.spawn().expect("spawn trackly serve"))
    };
    let logs = || {
        ["victim.log", "restarted.log"]
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let http = reqwest::Client::new();
    let healthy = || {
        let http = http.clone();
        async move {
            wait_until(Duration::from_secs(60), || {
                let http = http.clone();
                async move {
                    http.get(format!("http://127.0.0.1:{port}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            })
            .await
        }
    };
    let results: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({"messageId": r.id.to_hex(), "to": "41793026727",
                "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}})
        })
        .collect();
    let body = serde_json::json!({ "results": results }).to_string();
    let report_url = format!("http://127.0.0.1:{port}/webhooks/infobip/{token}");
    let post = || {
        let http = http.clone();
        let body = body.clone();
        let report_url = report_url.clone();
        async move {
            http.post(report_url)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    };

    let mut victim = spawn(Some(failpoint), "victim.log");
    assert!(healthy().await, "the victim never answered\n{}", logs());
    let answered = post().await;
    assert!(
        killed_at_failpoint(&mut victim, Duration::from_secs(60)).await,
        "the victim never reached {failpoint}\n{}",
        logs()
    );
    drop(victim);
    if failpoint == "webhooks.enqueued" {
        assert!(!answered, "the report was answered before the outbox write");
    }
    let restarted = spawn(None, "restarted.log");
    assert!(
        healthy().await,
        "the restarted daemon never answered\n{}",
        logs()
    );
    // The provider resends what was not answered 200.
    if !answered {
        assert!(
            wait_until(Duration::from_secs(30), post).await,
            "the resent report was not accepted\n{}",
            logs()
        );
    }
    let st = stores.clone();
    let ids: Vec<MessageId> = records.iter().map(|r| r.id).collect();
    let done = wait_until(Duration::from_secs(60), || {
        let st = st.clone();
        let ids = ids.clone();
        async move {
            for id in ids {
                let key = OutboxEntry::key(id, DeliveryState::Delivered);
                match st.outbox.outbox_entry(&key).await {
                    Ok(Some(e)) if e.status == OutboxStatus::Delivered => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;
    sigterm(&restarted);
    let mut restarted = restarted;
    let _ = restarted.0.wait();
    assert!(
        done,
        "not every entry was delivered after a crash at {failpoint}\n{}",
        logs()
    );
    let got = rx.received();
    let mut per: HashMap<String, usize> = HashMap::new();
    for r in &got {
        assert!(r.signature_ok, "unsigned or badly signed POST");
        if r.status == 200 {
            *per.entry(r.delivery.clone()).or_default() += 1;
        }
    }
    for id in &ids {
        let key = OutboxEntry::key(*id, DeliveryState::Delivered);
        assert_eq!(
            per.get(&key),
            Some(&1),
            "{key} posted {:?} times after a crash at {failpoint}",
            per.get(&key)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = m.drop_database().await;
}

/// The Resolver killed right after settling in-doubt messages by the
/// provider's records (Twilio's Messages list at the mock; no delivery
/// reports, so lookups are the only evidence): a share of requests is taken
/// and answered 5xx, a share answered 5xx without being taken. After the
/// crash a second daemon takes over (the first one's lease lapses, it
/// becomes the recovery leader and its Resolver asks again): every contact
/// ends with exactly one message at the mock, nothing is left in doubt, and
/// the audit is clean.
async fn crash_in_resolver(failpoint: &'static str) {
    const N: u64 = 24;
    let name = format!("crash_{}", failpoint.replace('.', "_"));
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let c = seed::campaign(
        &stores,
        N,
        trackly_devkit::harness::settings_for(ProviderKind::Twilio),
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let mock = trackly_devkit::mock::start(
        MockConfig {
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some(TOKEN.into()),
            reports: false,
            error_numbers: numbers(&[0, 1, 2, 3, 4, 5]),
            error_rate: 0.3,
            accept_on_error: false,
            latency: Duration::from_millis(5),
            seed: 5,
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let ports: HashMap<&'static str, u16> = ["victim", "survivor"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
    let balancer =
        Balancer::start(ports.values().map(|p| format!("127.0.0.1:{p}")).collect()).await;
    let dir = std::env::temp_dir().join(unique_name(&name));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run {
        prefix: unique_name(&name),
        svc,
        dir,
        mock,
        balancer,
        ports,
    };
    let resolver_env = [
        ("TRACKLY_RESOLVER__SETTLE_DELAY", "0s"),
        ("TRACKLY_RESOLVER__INTERVAL", "300ms"),
        ("TRACKLY_RESOLVER__RETRY_BASE", "200ms"),
        ("TRACKLY_RESOLVER__RETRY_MAX", "1s"),
    ];
    let mut victim = run.spawn_with("victim", Some(failpoint), &resolver_env);
    assert!(
        killed_at_failpoint(&mut victim, Duration::from_secs(90)).await,
        "the daemon never reached {failpoint}\n{}",
        run.logs()
    );
    // The provider answers plainly from now on: resends go through.
    run.mock.state.set_config(|m| {
        m.error_rate = 0.0;
        m.error_numbers.clear();
    });
    let survivor = run.spawn_with("survivor", None, &resolver_env);
    let open = FailedFilter {
        reason: Some(FailureReason::NoResponse),
        open_only: true,
        ..Default::default()
    };
    let phones: HashSet<String> = c
        .contacts
        .iter()
        .map(|ct| ct.phone.as_str().to_string())
        .collect();
    let st = stores.clone();
    let mock_state = run.mock.state.clone();
    let settled = wait_until(Duration::from_secs(120), || {
        let st = st.clone();
        let mock_state = mock_state.clone();
        let open = open.clone();
        async move {
            st.dead_letters.count_failed(&open).await.unwrap_or(1) == 0
                && st.queue.depth().await.unwrap_or(1) == 0
                && mock_state.accepted_by_number().len() as u64 == N
        }
    })
    .await;
    sigterm(&survivor);
    let mut survivor = survivor;
    let _ = survivor.0.wait();
    assert!(
        settled,
        "not settled after a crash at {failpoint}: {} in doubt, {} queued, {} numbers reached\n{}",
        stores.dead_letters.count_failed(&open).await.unwrap_or(0),
        stores.queue.depth().await.unwrap_or(0),
        run.mock.state.accepted_by_number().len(),
        run.logs()
    );
    let by_number = run.mock.state.accepted_by_number();
    for p in &phones {
        assert_eq!(
            by_number.get(p),
            Some(&1),
            "{p} got {:?} messages after a crash at {failpoint}",
            by_number.get(p)
        );
    }
    let report = trackly::audit::audit(&stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.text());
    let _ = std::fs::remove_dir_all(&run.dir);
    let _ = m.drop_database().await;
}

/// A `trackly serve` killed at an Alerts crash point, then a second daemon
/// on the same store: an alert is sent at most once, and a window counted
/// by the dead daemon is sent by the other.
///
/// - `alerts.counted` (a billing-blocked account's window written): the
///   other daemon claims the orphan window and sends it, once;
/// - `alerts.claimed` (the window claimed, nothing posted): the alert is
///   lost, never sent twice: the window stays claimed by the dead daemon;
/// - `alerts.held` (a billing-blocked account held for `repeat_after`,
///   nothing posted): the alert is lost, never sent twice, as above;
/// - `alerts.disabled` (a 404 recorded the webhook disabled): the flag
///   stands, nothing more is posted to it;
/// - `alerts.flagged` (a list's error-rate state set to alerting, nothing
///   posted yet): the state stands and no high-error alert is sent later.
async fn crash_in_alerts(failpoint: &'static str) {
    let name = format!("crash_{}", failpoint.replace('.', "_"));
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let now = SystemClock.now();
    let discord = trackly_devkit::discord_mock::DiscordMock::start()
        .await
        .unwrap();
    let url = discord.url(42, "crash-token");
    let rejecting = failpoint == "alerts.flagged";
    // Billing-blocked (no money) for the one-off alert; money and a
    // provider that rejects everything for the error rate.
    let balance = if rejecting { 1_000_000_000 } else { 0 };
    let mut account = seed::account(Money::from_micros(balance), Money::from_micros(7_500), now);
    account.discord_webhook_url = Some(trackly::telemetry::Secret::new(url.clone()));
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 100_000, now);
    stores.lists.insert_list(list.clone()).await.unwrap();
    let n = if rejecting { 12 } else { 1 };
    let contacts: Vec<Contact> = (0..n)
        .map(|i| seed::contact(account.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let queued: Vec<QueuedTextMessage> = contacts
        .iter()
        .map(|c| seed::queued(&list, c, "hello", now))
        .collect();
    if failpoint == "alerts.disabled" {
        discord.set_gone(true);
    }
    let dir = std::env::temp_dir().join(unique_name(&name));
    std::fs::create_dir_all(&dir).unwrap();
    let spawn = |id: &str, fp: Option<&str>| {
        let log = std::fs::File::create(dir.join(format!("{id}.log"))).unwrap();
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trackly"));
        cmd.arg("serve")
            .env("TRACKLY_DAEMON__ID", id)
            .env("TRACKLY_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env(
                "TRACKLY_HTTP__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .env("TRACKLY_LOG__FILTER", "warn")
            .env("TRACKLY_MONGO__URI", &svc.mongo_uri)
            .env("TRACKLY_MONGO__DATABASE", &svc.db)
            .env("TRACKLY_REDIS__URL", &svc.redis_url)
            .env("TRACKLY_REDIS__KEY_PREFIX", unique_name(&name))
            .env("TRACKLY_DAEMON__HEARTBEAT_INTERVAL", "300ms")
            .env("TRACKLY_DAEMON__LEASE_TTL", "3s")
            .env("TRACKLY_PROVIDERS__FAKE__ENABLED", "true")
            .env("TRACKLY_PROVIDERS__FAKE__TIMEOUT", "500ms")
            .env(
                "TRACKLY_PROVIDERS__FAKE__REJECT_RATE",
                if rejecting { "1.0" } else { "0.0" },
            )
            .env("TRACKLY_COORDINATOR__POLL_INTERVAL", "100ms")
            .env("TRACKLY_COORDINATOR__MAX_POLL_INTERVAL", "300ms")
            .env("TRACKLY_ALERTS__WINDOW", "2s")
            .env("TRACKLY_ALERTS__GRACE", "500ms")
            .env("TRACKLY_ALERTS__FLUSH_INTERVAL", "100ms")
            .env("TRACKLY_ALERTS__MIN_SAMPLE", "10")
            .env("TRACKLY_ALERTS__REPEAT_AFTER", "1h")
            .env("TRACKLY_CUSTOMER_WEBHOOKS__ALLOW_HTTP", "true")
            .env(
                "TRACKLY_CUSTOMER_WEBHOOKS__ALLOWED_CIDRS",
                "[\"127.0.0.0/8\"]",
            )
            .env_remove("TRACKLY_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(fp) = fp {
            cmd.env("TRACKLY_FAILPOINT", fp);
        }
        Guard(cmd.spawn().expect("spawn trackly serve"))
    };
    let logs = || {
        ["victim.log", "survivor.log"]
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let mut victim = spawn("victim", Some(failpoint));
    stores.queue.enqueue(queued).await.unwrap();
    assert!(
        killed_at_failpoint(&mut victim, Duration::from_secs(60)).await,
        "the victim never reached {failpoint}\n{}",
        logs()
    );
    drop(victim);
    let survivor = spawn("survivor", None);
    let hook = trackly::actors::alerts::hook_id(&url);
    match failpoint {
        "alerts.counted" => {
            assert!(
                wait_until(Duration::from_secs(30), || async {
                    !discord.delivered().is_empty()
                })
                .await,
                "the orphan window was never sent\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            let got = discord.delivered();
            assert_eq!(got.len(), 1, "sent more than once\n{}", logs());
            let title = got[0].body["embeds"][0]["title"].as_str().unwrap_or("");
            assert!(title.starts_with("Account billing-blocked"), "{title}");
        }
        "alerts.claimed" | "alerts.held" => {
            tokio::time::sleep(Duration::from_secs(6)).await;
            assert!(
                discord.delivered().is_empty(),
                "an alert claimed by the dead daemon was sent again\n{}",
                logs()
            );
        }
        "alerts.disabled" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(
                stores
                    .alerts
                    .alert_flag(&format!("discord_disabled:{hook}"))
                    .await
                    .unwrap()
            );
            assert_eq!(
                discord.requests().len(),
                1,
                "posted to a disabled webhook\n{}",
                logs()
            );
        }
        _ => {
            tokio::time::sleep(Duration::from_secs(6)).await;
            assert!(
                stores
                    .alerts
                    .alert_flag(&format!("error_rate:{}", list.id.to_hex()))
                    .await
                    .unwrap()
            );
            assert!(
                discord.delivered().is_empty(),
                "an alert after the flag was set by the dead daemon\n{}",
                logs()
            );
        }
    }
    let v = discord.violations();
    assert!(v.is_empty(), "{v:?}");
    drop(survivor);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = m.drop_database().await;
}

macro_rules! crash_tests {
    ($($test:ident => $fp:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                crash_at($fp).await;
            }
        )*

        /// Every failpoint the daemon has is crossed by a test above.
        #[test]
        fn every_failpoint_has_a_crash_test() {
            let tested: HashSet<&str> = [$($fp),*].into_iter().collect();
            let all: HashSet<&str> = trackly::failpoint::ALL.iter().copied().collect();
            assert_eq!(tested, all);
        }
    };
}

crash_tests!(
    after_a_claim => "coordinator.claimed",
    after_the_screen => "worker.screened",
    after_a_permit => "worker.permitted",
    after_the_charge_and_attempt_records => "worker.charged",
    after_the_provider_call => "worker.sent",
    after_the_outcomes => "worker.settled",
    after_an_unsubscribe => "worker.unsubscribed",
    after_the_dead_letters => "worker.dead_lettered",
    after_the_requeues => "worker.requeued",
    after_the_completion => "worker.completed",
    after_recovery_recorded_in_doubt => "recovery.settled",
    after_recovery_removed_from_the_queue => "recovery.removed",
    after_recovery_released_claims => "recovery.released",
    after_delivery_reports_were_written => "intake.applied",
    after_lookups_recorded_messages_sent => "resolver.taken",
    after_a_lookup_requeued_a_message_not_taken => "resolver.not_taken",
    after_webhook_outbox_entries_were_written => "webhooks.enqueued",
    after_webhook_entries_were_claimed => "webhooks.claimed",
    after_webhook_results_were_recorded => "webhooks.recorded",
    after_alert_counts_were_written => "alerts.counted",
    after_an_alert_window_was_claimed => "alerts.claimed",
    after_an_alert_was_held_from_repeating => "alerts.held",
    after_a_webhook_was_disabled => "alerts.disabled",
    after_an_error_rate_state_changed => "alerts.flagged",
    after_a_lease_renewal => "lease.renewed",
    after_a_run_was_recorded => "scheduler.run_started",
    after_the_schedule_moved_on => "scheduler.advanced",
    after_cooldowns_were_reserved => "scheduler.cooldowns_reserved",
    after_a_page_was_queued => "scheduler.page_committed",
    after_the_run_finished => "scheduler.finished",
);
