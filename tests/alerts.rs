//! Discord alerts end to end, against a mock Discord endpoint on 127.0.0.1
//! (`devkit::discord_mock`) that checks every message against Discord's
//! limits and answers 429 and 404 on demand: every alert kind; 1,000
//! failures on two daemons give one message; counts of two daemons are
//! sent once, summed; the error rate alerts once and recovers once; a 429
//! is honoured; a 404 disables the webhook for every daemon; the
//! per-webhook budget; a loopback URL refused under the default policy;
//! a one-off alert not repeated within `repeat_after` across its bucket's
//! edge.
//! Each runs on the in-memory store and on MongoDB.

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use trackly::actors::alerts::{Alerts, AlertsDeps};
use trackly::clock::{Clock, ManualClock, SharedClock};
use trackly::config::{AlertsConfig, Config, Dur};
use trackly::domain::*;
use trackly::messages::{AlertEvent, FailureItem};
use trackly::metrics::Metrics;
use trackly::net::outbound_url::OutboundPolicy;
use trackly::providers::fake::{FakeSettings, Scripted};
use trackly::store::Stores;
use trackly::telemetry::Secret;
use trackly_devkit::discord_mock::DiscordMock;

use actix::prelude::*;

const WINDOW: Duration = Duration::from_secs(60);
/// Past a window's end and its grace.
const CLOSE: Duration = Duration::from_secs(75);

fn alerts_config() -> AlertsConfig {
    AlertsConfig {
        window: Dur(WINDOW),
        grace: Dur::secs(10),
        flush_interval: Dur::millis(20),
        request_timeout: Dur::secs(2),
        max_retry_after: Dur::secs(5),
        ..AlertsConfig::default()
    }
}

/// What tests use: plain http to 127.0.0.1.
fn test_policy() -> OutboundPolicy {
    OutboundPolicy {
        allow_http: true,
        allow_private_targets: true,
        allowed: vec![],
    }
}

struct Setup {
    account: Account,
    list: SendingList,
}

/// An account whose Discord webhook is `url`, and a Twilio list.
async fn seed(stores: &Stores, url: &str, now: Timestamp) -> Setup {
    let mut account = trackly_devkit::seed::account(
        Money::from_micros(5_000_000),
        Money::from_micros(7_500),
        now,
    );
    account.discord_webhook_url = Some(Secret::new(url));
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = trackly_devkit::seed::list(
        account.id,
        ProviderSettings::Twilio {
            credentials: "default".into(),
            messaging_service_sid: None,
        },
        600,
        now,
    );
    stores.lists.insert_list(list.clone()).await.unwrap();
    Setup { account, list }
}

struct Node {
    addr: Addr<Alerts>,
    metrics: Arc<Metrics>,
}

fn start_alerts(
    stores: &Stores,
    clock: &ManualClock,
    config: AlertsConfig,
    policy: OutboundPolicy,
    name: &str,
) -> Node {
    let metrics = Arc::new(Metrics::new());
    let addr = Alerts::new(AlertsDeps {
        stores: stores.clone(),
        clock: Arc::new(clock.clone()) as SharedClock,
        config,
        policy,
        metrics: metrics.clone(),
        instance: format!("{name}:{}", MessageId::new().to_hex()),
    })
    .start();
    Node { addr, metrics }
}

fn failures(n: usize, code: &str) -> Vec<FailureItem> {
    (0..n)
        .map(|_| FailureItem {
            reason: FailureReason::ProviderError,
            provider_code: Some(code.into()),
        })
        .collect()
}

fn outcomes(s: &Setup, sent: u64, transient: u64, failures: Vec<FailureItem>) -> AlertEvent {
    AlertEvent::Outcomes {
        account: s.account.id,
        list: s.list.id,
        sent,
        transient,
        failures,
    }
}

/// Wait until the mock accepted `n` messages.
async fn delivered(mock: &DiscordMock, n: usize, timeout: Duration) -> bool {
    wait_until(timeout, || async { mock.delivered().len() >= n }).await
}

/// Titles of a message's embeds.
fn titles(p: &Value) -> Vec<String> {
    p["embeds"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["title"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A field's value in the embed whose title starts with `title`.
fn field(p: &Value, title: &str, name: &str) -> Option<String> {
    let es = p["embeds"].as_array()?;
    let e = es
        .iter()
        .find(|e| e["title"].as_str().unwrap_or("").starts_with(title))?;
    e["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"].as_str() == Some(name))
        .and_then(|f| f["value"].as_str())
        .map(str::to_string)
}

/// Wait until the list's windows in the store hold `sent` sends in all
/// (the daemons' counts were written).
async fn counted(stores: &Stores, list: SendingListId, sent: i64) -> bool {
    counted_as(stores, list, "sent", sent).await
}

/// Wait until the list's windows hold `total` in the counters whose name
/// starts with `prefix`.
async fn counted_as(stores: &Stores, list: SendingListId, prefix: &str, total: i64) -> bool {
    let far = chrono::Duration::days(3650);
    let now = chrono::Utc::now();
    wait_until(Duration::from_secs(30), || async {
        stores
            .alerts
            .list_alert_windows(list, now - far, now + far)
            .await
            .map(|ws| {
                ws.iter()
                    .flat_map(|w| w.with_prefix(prefix).map(|(_, n)| n))
                    .sum::<i64>()
                    == total
            })
            .unwrap_or(false)
    })
    .await
}

fn assert_clean(mock: &DiscordMock) {
    let v = mock.violations();
    assert!(v.is_empty(), "Discord would refuse: {v:?}");
}

// ------------------------------------------------------------ the tests

/// 1,000 messages rejected by the provider, sent by two daemons sharing
/// the store: one Discord message for the list's window, with the counts
/// by reason, the top codes, the spam filtering and the error rate.
async fn a_thousand_failures_on_two_daemons_give_one_message(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let mut cfg: Config = test_config();
    cfg.alerts = alerts_config();
    cfg.customer_webhooks.allow_http = true;
    cfg.customer_webhooks.allow_private_targets = true;
    let permits = local_permits();
    let fake = FakeSettings {
        reject_rate: 1.0,
        ..Default::default()
    };
    let a = start_daemon_with_clock(
        cfg.clone(),
        stores.clone(),
        permits.clone(),
        fake.clone(),
        clock.clone(),
    );
    let b = start_daemon_with_clock(cfg, stores.clone(), permits, fake, clock.clone());
    // Ten numbers filtered as spam (Twilio's 30007), on both daemons'
    // fakes, before anything is queued.
    for i in 0..10 {
        for d in [&a, &b] {
            d.provider.script(
                trackly_devkit::seed::phone(i).as_str(),
                Scripted::Reject {
                    code: "30007".into(),
                    unsubscribed: false,
                },
            );
        }
    }
    let c = trackly_devkit::seed::campaign(
        &stores,
        1000,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        now,
    )
    .await
    .unwrap();
    stores
        .accounts
        .set_discord_webhook(c.account.id, Some(Secret::new(mock.url(1, "tok-a"))))
        .await
        .unwrap();
    assert!(a.drained(Duration::from_secs(120)).await, "not all sent");
    // Counts reach the store within a flush; then the window closes.
    assert!(counted_as(&stores, c.list.id, "r:", 1000).await);
    assert!(mock.requests().is_empty(), "sent before the window closed");
    clock.advance(CLOSE);
    assert!(
        delivered(&mock, 1, Duration::from_secs(30)).await,
        "no alert"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = mock.requests();
    assert_eq!(got.len(), 1, "one message, not one per failure or daemon");
    assert_clean(&mock);
    let m = &got[0].body;
    let t = titles(m);
    assert!(
        t.iter().any(|t| t.starts_with("Delivery failures")),
        "{t:?}"
    );
    assert!(t.iter().any(|t| t.starts_with("Spam filtering")), "{t:?}");
    assert!(t.iter().any(|t| t.starts_with("High error rate")), "{t:?}");
    assert_eq!(
        field(m, "Delivery failures", "PROVIDER_ERROR").as_deref(),
        Some("1000")
    );
    let codes = field(m, "Delivery failures", "Top provider codes (fake)").unwrap();
    assert!(codes.contains("`FAKE_REJECTED` × 990"), "{codes}");
    assert!(codes.contains("`30007` × 10"), "{codes}");
    assert_eq!(
        field(m, "Spam filtering", "Codes").as_deref(),
        Some("`30007` × 10")
    );
    let sent = |k: &str| a.daemon.metrics.alerts_sent(k) + b.daemon.metrics.alerts_sent(k);
    assert!(wait_until(Duration::from_secs(5), || async { sent("failures") == 1 }).await);
    assert_eq!(sent("spam"), 1);
    assert_eq!(sent("error_rate"), 1);
}

/// A provider that answers every call with a transient error, on a real
/// daemon: the worker's answers reach the Alerts actor as a provider
/// outage of the list.
async fn transient_answers_on_a_daemon_report_an_outage(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let mut cfg: Config = test_config();
    cfg.alerts = alerts_config();
    cfg.customer_webhooks.allow_http = true;
    cfg.customer_webhooks.allow_private_targets = true;
    let fake = FakeSettings {
        transient_rate: 1.0,
        ..Default::default()
    };
    let d = start_daemon_with_clock(cfg, stores.clone(), local_permits(), fake, clock.clone());
    let c = trackly_devkit::seed::campaign(
        &stores,
        30,
        ProviderSettings::Fake,
        1_000_000,
        Money::from_micros(1_000_000_000),
        clock.now(),
    )
    .await
    .unwrap();
    stores
        .accounts
        .set_discord_webhook(c.account.id, Some(Secret::new(mock.url(11, "tok-k"))))
        .await
        .unwrap();
    assert!(counted_as(&stores, c.list.id, "transient", 30).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    assert_clean(&mock);
    let m = &mock.delivered()[0].body;
    assert_eq!(
        field(m, "Provider trouble: fake", "Transient (retried)").as_deref(),
        Some("30")
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            d.daemon.metrics.alerts_sent("outage") == 1
        })
        .await
    );
}

/// Two daemons count parts of one window: one message, with the sum.
async fn counts_of_two_daemons_are_sent_once_summed(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(2, "tok-b"), clock.now()).await;
    let a = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    let b = start_alerts(&stores, &clock, alerts_config(), test_policy(), "b");
    for _ in 0..30 {
        a.addr.do_send(outcomes(&s, 10, 0, failures(10, "21211")));
    }
    for _ in 0..20 {
        b.addr.do_send(outcomes(&s, 0, 0, failures(10, "21610")));
    }
    b.addr.do_send(outcomes(&s, 1, 0, vec![]));
    assert!(counted(&stores, s.list.id, 301).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = mock.requests();
    assert_eq!(got.len(), 1, "sent by one daemon only");
    assert_clean(&mock);
    let m = &got[0].body;
    assert_eq!(
        field(m, "Delivery failures", "PROVIDER_ERROR").as_deref(),
        Some("500")
    );
    let codes = field(m, "Delivery failures", "Top provider codes (twilio)").unwrap();
    assert_eq!(codes, "`21211` × 300\n`21610` × 200");
    assert_eq!(
        a.metrics.alerts_sent("failures") + b.metrics.alerts_sent("failures"),
        1
    );
}

/// Every kind: failures, spam, outage and high error rate in one list
/// window; billing-blocked, unservable list, failed run on their own.
async fn every_kind_reaches_discord(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(3, "tok-c"), clock.now()).await;
    let n = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    // A list window: 60 failures (5 of them 30007), 25 in doubt, 10 sent,
    // 30 transient answers.
    let mut f = failures(55, "21211");
    f.extend(failures(5, "30007"));
    f.extend((0..25).map(|_| FailureItem {
        reason: FailureReason::NoResponse,
        provider_code: Some("TIMEOUT".into()),
    }));
    n.addr.do_send(outcomes(&s, 10, 30, f));
    // One-off alerts: due at once.
    n.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 7,
    });
    n.addr.do_send(AlertEvent::ListUnservable {
        list: s.list.id,
        provider: "cm:default".into(),
    });
    n.addr.do_send(AlertEvent::RunFailed {
        account: s.account.id,
        list: s.list.id,
        schedule: ScheduleId::new(),
        run: ScheduleRunId::new(),
        reason: "the creative has no variant".into(),
    });
    assert!(delivered(&mock, 3, Duration::from_secs(30)).await);
    assert!(counted(&stores, s.list.id, 10).await);
    assert_eq!(mock.requests().len(), 3, "the list window is still open");
    clock.advance(CLOSE);
    assert!(delivered(&mock, 4, Duration::from_secs(30)).await);
    assert_clean(&mock);
    let all: Vec<String> = mock
        .delivered()
        .iter()
        .flat_map(|p| titles(&p.body))
        .collect();
    for prefix in [
        "Delivery failures",
        "Spam filtering",
        "Provider trouble: twilio",
        "High error rate",
        "Account billing-blocked",
        "No daemon can serve",
        "Campaign run failed validation",
    ] {
        assert!(
            all.iter().any(|t| t.starts_with(prefix)),
            "no {prefix:?} in {all:?}"
        );
    }
    let last = &mock.delivered()[3].body;
    assert_eq!(
        field(last, "Provider trouble", "Transient (retried)").as_deref(),
        Some("30")
    );
    assert_eq!(
        field(last, "Provider trouble", "In doubt").as_deref(),
        Some("25")
    );
    assert_eq!(
        field(last, "Delivery failures", "NO_RESPONSE").as_deref(),
        Some("25")
    );
    // Counted once Discord's answer is read (just after the mock saw it).
    assert!(
        wait_until(Duration::from_secs(5), || async {
            n.metrics.alerts_sent("failures") == 1
        })
        .await
    );
    for k in [
        "failures",
        "spam",
        "outage",
        "error_rate",
        "billing_blocked",
        "unservable",
        "run_failed",
    ] {
        assert_eq!(n.metrics.alerts_sent(k), 1, "{k}");
    }
    // The same one-off conditions again within `repeat_after`: not again.
    n.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 3,
    });
    n.addr.do_send(AlertEvent::ListUnservable {
        list: s.list.id,
        provider: "cm:default".into(),
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(mock.requests().len(), 4);
}

/// Failed delivery reports (Twilio's 30007 comes in a status callback)
/// count for their message's list: a failure alert and a spam alert.
async fn failed_delivery_reports_count_for_their_list(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let s = seed(&stores, &mock.url(10, "tok-j"), now).await;
    let records: Vec<MessageSent> = (0..5)
        .map(|i| {
            let c = trackly_devkit::seed::contact(s.account.id, s.list.id, i, now);
            let q = trackly_devkit::seed::queued(&s.list, &c, "hello", now);
            MessageSent::attempt(&q, ProviderKind::Twilio, "t", "t", Money::ZERO, now)
        })
        .collect();
    stores
        .sent
        .begin_attempts(s.account.id, records.clone())
        .await
        .unwrap();
    let n = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    let mut items = Vec::new();
    for r in &records[..3] {
        items.push((r.id, DeliveryState::Undelivered, Some("30007".to_string())));
    }
    for r in &records[3..] {
        items.push((r.id, DeliveryState::Failed, Some("30003".to_string())));
    }
    // An unknown message counts for nobody.
    items.push((
        MessageId::new(),
        DeliveryState::Failed,
        Some("30007".into()),
    ));
    n.addr.do_send(AlertEvent::ReportsFailed { items });
    assert!(counted_as(&stores, s.list.id, "d:", 5).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    assert_clean(&mock);
    let m = &mock.delivered()[0].body;
    let reports = field(m, "Delivery failures", "Failed delivery reports").unwrap();
    assert!(reports.contains("undelivered × 3"), "{reports}");
    assert!(reports.contains("failed × 2"), "{reports}");
    assert_eq!(
        field(m, "Spam filtering", "Codes").as_deref(),
        Some("`30007` × 3")
    );
}

/// A list's own webhook takes its alerts; the account's keeps the rest.
async fn a_lists_webhook_comes_before_the_accounts(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(12, "tok-account"), clock.now()).await;
    stores
        .lists
        .set_list_discord_webhook(s.list.id, Some(Secret::new(mock.url(12, "tok-list"))))
        .await
        .unwrap();
    let n = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    n.addr.do_send(outcomes(&s, 0, 0, failures(3, "21211")));
    n.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 1,
    });
    assert!(counted_as(&stores, s.list.id, "r:", 3).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 2, Duration::from_secs(30)).await);
    assert_clean(&mock);
    for p in mock.delivered() {
        let t = titles(&p.body);
        if t[0].starts_with("Delivery failures") {
            assert!(p.path.ends_with("/tok-list"), "{}", p.path);
        } else {
            assert!(t[0].starts_with("Account billing-blocked"), "{t:?}");
            assert!(p.path.ends_with("/tok-account"), "{}", p.path);
        }
    }
}

/// The admin API sets a list's Discord webhook only past the outbound-URL
/// rule, and never shows it.
async fn the_admin_api_sets_a_lists_webhook_by_the_url_rule(stores: Stores) {
    use actix_web::test as atest;
    const OPERATOR: &str = "op-token-0123456789";
    let secrets = Arc::new(trackly::config::Secrets {
        admin_token: Some(Secret::new(OPERATOR)),
        ..Default::default()
    });
    let td = start_daemon(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let s = seed(
        &stores,
        "https://discord.example/api/webhooks/1/x",
        td.now(),
    )
    .await;
    let app = atest::init_service(
        actix_web::App::new().configure(trackly::http::configure(
            td.daemon
                .http_state(secrets.clone(), "https://trackly.example"),
        )),
    )
    .await;
    let path = format!("/api/v1/lists/{}/discord-webhook", s.list.id);
    for url in [
        "https://127.0.0.1/api/webhooks/1/x",
        "https://10.0.0.1/api/webhooks/1/x",
        "https://169.254.169.254/api/webhooks/1/x",
        "http://93.184.216.34/api/webhooks/1/x",
    ] {
        let req = atest::TestRequest::put()
            .uri(&path)
            .insert_header(("authorization", format!("Bearer {OPERATOR}")))
            .insert_header(("content-type", "application/json"))
            .set_payload(serde_json::json!({ "url": url }).to_string())
            .to_request();
        let resp = atest::call_service(&app, req).await;
        assert_eq!(resp.status(), 422, "{url} must be refused");
        let b: Value = atest::read_body_json(resp).await;
        assert_eq!(b["field"], "url", "{url}");
    }
    let l = stores.lists.get_list(s.list.id).await.unwrap().unwrap();
    assert!(l.discord_webhook_url.is_none(), "nothing stored");
    // A public address literal passes the rule (no DNS needed).
    let good = "https://93.184.216.34/api/webhooks/1/secret-token";
    let req = atest::TestRequest::put()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .insert_header(("content-type", "application/json"))
        .set_payload(serde_json::json!({ "url": good }).to_string())
        .to_request();
    let resp = atest::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    let l = stores.lists.get_list(s.list.id).await.unwrap().unwrap();
    assert_eq!(
        l.discord_webhook_url.as_ref().map(|u| u.expose()),
        Some(good)
    );
    let req = atest::TestRequest::get()
        .uri(&format!("/api/v1/lists/{}", s.list.id))
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .to_request();
    let resp = atest::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8(atest::read_body(resp).await.to_vec()).unwrap();
    assert!(!body.contains("secret-token"), "the URL is shown: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["discord_webhook_set"], true);
    let req = atest::TestRequest::delete()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    let l = stores.lists.get_list(s.list.id).await.unwrap().unwrap();
    assert!(l.discord_webhook_url.is_none());
    let req = atest::TestRequest::delete()
        .uri(&format!(
            "/api/v1/lists/{}/discord-webhook",
            SendingListId::new()
        ))
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 404);
}

/// A clean shutdown writes the counts still in memory (the next flush was
/// seconds away): another daemon sends them.
async fn counts_are_written_at_shutdown(stores: Stores) {
    let clock = ManualClock::starting_now();
    let s = seed(
        &stores,
        "https://discord.example/api/webhooks/1/x",
        clock.now(),
    )
    .await;
    let mut cfg = alerts_config();
    cfg.flush_interval = Dur::secs(30);
    cfg.grace = Dur::secs(60);
    let n = start_alerts(&stores, &clock, cfg, test_policy(), "a");
    n.addr.do_send(outcomes(&s, 7, 0, failures(2, "21211")));
    n.addr.send(trackly::messages::FlushAlerts).await.unwrap();
    // Answered once written: no waiting for a flush.
    let t = clock.now();
    let ws = stores
        .alerts
        .list_alert_windows(s.list.id, t - chrono::Duration::hours(1), t)
        .await
        .unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].count("sent"), 7);
    assert_eq!(ws[0].count("r:PROVIDER_ERROR"), 2);
}

/// The error rate over the sliding window alerts once, and a recovery
/// notice follows once when it falls back.
async fn the_error_rate_alerts_once_and_recovers(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(4, "tok-d"), clock.now()).await;
    let mut cfg = alerts_config();
    cfg.error_rate_windows = 2;
    let n = start_alerts(&stores, &clock, cfg, test_policy(), "a");
    // Window 1: 50 of 150 failed (33%).
    n.addr.do_send(outcomes(&s, 100, 0, failures(50, "21211")));
    assert!(counted(&stores, s.list.id, 100).await);
    clock.advance(WINDOW);
    // Window 2: 400 sent; over both windows 50 / 550 (9%).
    n.addr.do_send(outcomes(&s, 400, 0, vec![]));
    assert!(counted(&stores, s.list.id, 500).await);
    clock.advance(WINDOW);
    // Window 3: 100 sent, nothing changes.
    n.addr.do_send(outcomes(&s, 100, 0, vec![]));
    assert!(counted(&stores, s.list.id, 600).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 2, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = mock.delivered();
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|p| titles(&p.body)).collect::<Vec<_>>()
    );
    assert_clean(&mock);
    let all: Vec<Vec<String>> = got.iter().map(|p| titles(&p.body)).collect();
    let high = all
        .iter()
        .position(|t| t.iter().any(|t| t.starts_with("High error rate")))
        .expect("a high error rate alert");
    let rec = all
        .iter()
        .position(|t| t.iter().any(|t| t.starts_with("Error rate recovered")))
        .expect("a recovery notice");
    assert_ne!(high, rec);
    assert_eq!(n.metrics.alerts_sent("error_rate"), 1);
    assert_eq!(n.metrics.alerts_sent("recovered"), 1);
}

/// A 429 is honoured: the alert goes again after `retry_after`, once.
async fn a_429_is_retried_after_retry_after(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(5, "tok-e"), clock.now()).await;
    let n = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    mock.rate_limit_next(1, Duration::from_millis(800));
    n.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 1,
    });
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    let r = mock.requests();
    assert_eq!(r.len(), 2, "one 429, then the message");
    assert_eq!(r[0].status, 429);
    assert_eq!(r[1].status, 204);
    let waited = r[1].at.duration_since(r[0].at);
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}, before retry_after"
    );
    assert_eq!(r[0].body, r[1].body);
    assert_clean(&mock);
}

/// A webhook answering 404 is disabled: no daemon posts to it again.
async fn a_404_disables_the_webhook(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let s = seed(&stores, &mock.url(6, "tok-f"), clock.now()).await;
    let a = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    let b = start_alerts(&stores, &clock, alerts_config(), test_policy(), "b");
    mock.set_gone(true);
    a.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 1,
    });
    assert!(
        wait_until(Duration::from_secs(30), || async {
            // Either daemon may have claimed the window.
            a.metrics.discord_webhook_disabled.get() + b.metrics.discord_webhook_disabled.get() == 1
        })
        .await
    );
    assert_eq!(mock.requests().len(), 1);
    // Even if it answered again, neither daemon posts to it.
    mock.set_gone(false);
    for node in [&a, &b] {
        node.addr.do_send(AlertEvent::RunFailed {
            account: s.account.id,
            list: s.list.id,
            schedule: ScheduleId::new(),
            run: ScheduleRunId::new(),
            reason: "invalid".into(),
        });
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(mock.requests().len(), 1, "posted to a disabled webhook");
    // A new URL set for the account is used.
    stores
        .accounts
        .set_discord_webhook(s.account.id, Some(Secret::new(mock.url(6, "tok-new"))))
        .await
        .unwrap();
    b.addr.do_send(AlertEvent::RunFailed {
        account: s.account.id,
        list: s.list.id,
        schedule: ScheduleId::new(),
        run: ScheduleRunId::new(),
        reason: "invalid".into(),
    });
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    assert!(mock.delivered()[0].path.ends_with("/tok-new"));
}

/// Beyond `per_webhook_per_minute` alerts are dropped and counted; the next
/// message that goes says how many.
async fn the_per_webhook_budget_drops_and_reports(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    // Early in a minute, so that the four alerts share it.
    let start = chrono::DateTime::from_timestamp(1_900_000_000 / 60 * 60 + 1, 0).unwrap();
    let clock = ManualClock::new(start);
    let s = seed(&stores, &mock.url(7, "tok-g"), clock.now()).await;
    let mut cfg = alerts_config();
    cfg.per_webhook_per_minute = 2;
    let n = start_alerts(&stores, &clock, cfg, test_policy(), "a");
    let failed_run = || AlertEvent::RunFailed {
        account: s.account.id,
        list: s.list.id,
        schedule: ScheduleId::new(),
        run: ScheduleRunId::new(),
        reason: "invalid".into(),
    };
    for _ in 0..2 {
        n.addr.do_send(failed_run());
    }
    assert!(delivered(&mock, 2, Duration::from_secs(30)).await);
    for _ in 0..2 {
        n.addr.do_send(failed_run());
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            n.metrics.alerts_dropped.get() == 2
        })
        .await
    );
    assert_eq!(mock.requests().len(), 2);
    clock.advance(Duration::from_secs(60));
    n.addr.do_send(failed_run());
    assert!(delivered(&mock, 3, Duration::from_secs(30)).await);
    let third = &mock.delivered()[2].body;
    assert_eq!(
        field(third, "Campaign run failed", "Dropped earlier").as_deref(),
        Some("2 alert(s) to this webhook were dropped by its per-minute budget")
    );
    assert_clean(&mock);
}

/// Under the default policy a loopback webhook URL is refused at send
/// time: nothing reaches it.
async fn a_loopback_url_is_refused_at_send_time(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    // Saved directly (the admin API would have refused it).
    let s = seed(&stores, &mock.url(8, "tok-h"), clock.now()).await;
    let n = start_alerts(
        &stores,
        &clock,
        alerts_config(),
        OutboundPolicy::default(),
        "a",
    );
    n.addr.do_send(AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 1,
    });
    assert!(
        wait_until(Duration::from_secs(30), || async {
            n.metrics.alerts_dropped.get() >= 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(mock.requests().is_empty(), "posted to loopback");
}

/// Text over Discord's limits is cut with an ellipsis, not refused.
async fn oversized_text_is_cut_not_refused(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let clock = ManualClock::starting_now();
    let mut s = seed(&stores, &mock.url(9, "tok-i"), clock.now()).await;
    // A list with a 400-character name, its own list.
    s.list.id = SendingListId::new();
    s.list.name = "L".repeat(400);
    stores.lists.insert_list(s.list.clone()).await.unwrap();
    let n = start_alerts(&stores, &clock, alerts_config(), test_policy(), "a");
    // 60 distinct long codes, many reasons.
    let mut f = Vec::new();
    for i in 0..60 {
        f.push(FailureItem {
            reason: FailureReason::ALL[i % FailureReason::ALL.len()],
            provider_code: Some(format!("{}{i}", "C".repeat(200))),
        });
    }
    n.addr.do_send(outcomes(&s, 0, 0, f));
    n.addr.do_send(AlertEvent::RunFailed {
        account: s.account.id,
        list: s.list.id,
        schedule: ScheduleId::new(),
        run: ScheduleRunId::new(),
        reason: "x".repeat(10_000),
    });
    assert!(counted_as(&stores, s.list.id, "r:", 60).await);
    clock.advance(CLOSE);
    assert!(delivered(&mock, 2, Duration::from_secs(30)).await);
    assert_clean(&mock);
    let all: Vec<String> = mock
        .delivered()
        .iter()
        .flat_map(|p| titles(&p.body))
        .collect();
    assert!(
        all.iter()
            .any(|t| t.starts_with("Delivery failures") && t.ends_with('…')),
        "{all:?}"
    );
}

/// One-off windows are bucketed by `repeat_after` (aligned to the epoch):
/// a billing-blocked account seen again just after a bucket starts, seconds
/// after its alert went, is not alerted again; once `repeat_after` has
/// passed since that alert, it is.
async fn a_one_off_alert_does_not_repeat_across_a_bucket_edge(stores: Stores) {
    let mock = DiscordMock::start().await.unwrap();
    let config = alerts_config();
    let bucket = config.repeat_after.get().as_millis() as i64;
    let edge = (chrono::Utc::now().timestamp_millis() / bucket + 1) * bucket;
    let clock = ManualClock::new(chrono::DateTime::from_timestamp_millis(edge - 10_000).unwrap());
    let s = seed(&stores, &mock.url(12, "tok-l"), clock.now()).await;
    let n = start_alerts(&stores, &clock, config.clone(), test_policy(), "a");
    let blocked = || AlertEvent::BillingBlocked {
        account: s.account.id,
        list: s.list.id,
        messages: 2,
    };
    // A failed run after each: claimed with or after the billing window
    // (windows are claimed earliest first), so once its alert is in, the
    // billing window has been judged.
    let run_failed = || AlertEvent::RunFailed {
        account: s.account.id,
        list: s.list.id,
        schedule: ScheduleId::new(),
        run: ScheduleRunId::new(),
        reason: "the list is paused".into(),
    };
    n.addr.do_send(blocked());
    assert!(delivered(&mock, 1, Duration::from_secs(30)).await);
    clock.advance(Duration::from_secs(20));
    n.addr.do_send(blocked());
    n.addr.do_send(run_failed());
    assert!(delivered(&mock, 2, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let titles_now = |m: &DiscordMock| -> Vec<String> {
        m.delivered().iter().flat_map(|p| titles(&p.body)).collect()
    };
    let all = titles_now(&mock);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].starts_with("Account billing-blocked"), "{all:?}");
    assert!(
        all[1].starts_with("Campaign run failed validation"),
        "{all:?}"
    );
    assert_eq!(n.metrics.alerts_sent("billing_blocked"), 1);
    // `repeat_after` after the first alert: said again.
    clock.advance(config.repeat_after.get());
    n.addr.do_send(blocked());
    assert!(delivered(&mock, 3, Duration::from_secs(30)).await);
    assert_clean(&mock);
    let all = titles_now(&mock);
    assert!(all[2].starts_with("Account billing-blocked"), "{all:?}");
}

// ------------------------------------------------------------ both stores

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(trackly::store::Stores::memory()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[actix_rt::test]
                async fn $name() {
                    let Some(ts) = crate::common::mongo(stringify!($name)).await else { return };
                    super::$name(ts.stores.clone()).await;
                    ts.cleanup().await;
                }
            )*
        }
    };
}

on_both!(
    a_thousand_failures_on_two_daemons_give_one_message,
    transient_answers_on_a_daemon_report_an_outage,
    counts_of_two_daemons_are_sent_once_summed,
    every_kind_reaches_discord,
    failed_delivery_reports_count_for_their_list,
    a_lists_webhook_comes_before_the_accounts,
    counts_are_written_at_shutdown,
    the_admin_api_sets_a_lists_webhook_by_the_url_rule,
    the_error_rate_alerts_once_and_recovers,
    a_429_is_retried_after_retry_after,
    a_404_disables_the_webhook,
    the_per_webhook_budget_drops_and_reports,
    a_loopback_url_is_refused_at_send_time,
    oversized_text_is_cut_not_refused,
    a_one_off_alert_does_not_repeat_across_a_bucket_edge,
);
