//! Customer delivery webhooks end to end: a delivery report arriving at the
//! real report endpoint becomes one signed POST of the documented payload to
//! the account's URL; failures are retried with backoff; a message's states
//! go out in order; pending entries survive a restart (MongoDB); the SSRF
//! rule refuses internal targets when saved (admin API) and when sending.

mod common;

use actix_web::test as atest;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use trackly::config::{Config, Dur, Secrets};
use trackly::domain::*;
use trackly::providers::fake::FakeSettings;
use trackly::store::Stores;
use trackly::telemetry::Secret;
use trackly_devkit::webhook_receiver::Receiver;

const SECRET: &str = "whsec-0123456789abcdef";
const OPERATOR: &str = "op-token-0123456789";
const READER: &str = "ro-token-0123456789";
const PUBLIC: &str = "https://trackly.example";

/// Test config: the sender looks often, retries after about a second, and
/// may post to a local receiver over plain http.
fn config() -> Config {
    let mut c = test_config();
    let w = &mut c.customer_webhooks;
    w.poll_interval = Dur::millis(20);
    w.request_timeout = Dur::secs(2);
    w.claim_lease = Dur::secs(30);
    w.retry_base = Dur::secs(1);
    w.retry_max = Dur::secs(8);
    w.allow_http = true;
    w.allowed_cidrs = vec!["127.0.0.0/8".into()];
    w.settings_refresh = Dur::millis(0);
    c
}

fn secrets() -> Arc<Secrets> {
    let mut s = trackly_devkit::harness::mock_secrets();
    s.admin_token = Some(Secret::new(OPERATOR));
    s.readonly_token = Some(Secret::new(READER));
    Arc::new(s)
}

struct World {
    account: Account,
    records: Vec<MessageSent>,
}

/// An account (filterBots on) and `n` attempt records sent through Infobip.
async fn world(stores: &Stores, n: u64, now: Timestamp) -> World {
    let mut account = trackly_devkit::seed::account(Money(1_000_000), Money(1), now);
    account.filter_bots = true;
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = trackly_devkit::seed::list(account.id, ProviderSettings::Fake, 1000, now);
    let creative = CreativeId::new();
    let mut records = vec![];
    for i in 0..n {
        let c = trackly_devkit::seed::contact(account.id, list.id, i, now);
        let mut q = trackly_devkit::seed::queued(&list, &c, "hello there", now);
        q.creative = Some(creative);
        records.push(MessageSent::attempt(
            &q,
            ProviderKind::Infobip,
            "t",
            "t",
            Money::ZERO,
            now,
        ));
    }
    stores
        .sent
        .begin_attempts(account.id, records.clone())
        .await
        .unwrap();
    World { account, records }
}

async fn set_hook(stores: &Stores, account: AccountId, url: &str) {
    assert!(
        stores
            .accounts
            .set_delivery_webhook(
                account,
                Some(CustomerWebhook {
                    url: url.into(),
                    secret: Secret::new(SECRET),
                }),
            )
            .await
            .unwrap()
    );
}

fn infobip_body(entries: &[(MessageId, i64, i64, &str)]) -> String {
    let results: Vec<Value> = entries
        .iter()
        .map(|(id, group, sid, name)| {
            json!({"messageId": id.to_hex(), "to": "41793026727",
                "status": {"groupId": group, "groupName": "X", "id": sid, "name": name}})
        })
        .collect();
    json!({"results": results}).to_string()
}

const DELIVERED: (i64, i64, &str) = (3, 5, "DELIVERED_TO_HANDSET");
const PENDING: (i64, i64, &str) = (1, 26, "PENDING_ACCEPTED");

macro_rules! app {
    ($td:expr, $secrets:expr) => {
        atest::init_service(actix_web::App::new().configure(trackly::http::configure(
            $td.daemon.http_state($secrets.clone(), PUBLIC),
        )))
        .await
    };
}

/// Post an Infobip report through the real endpoint; 200 expected.
macro_rules! report {
    ($app:expr, $secrets:expr, $id:expr, $st:expr) => {{
        let token = $secrets
            .webhook_token
            .as_ref()
            .unwrap()
            .expose()
            .to_string();
        let req = atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{token}"))
            .insert_header(("content-type", "application/json"))
            .set_payload(infobip_body(&[($id, $st.0, $st.1, $st.2)]))
            .to_request();
        let resp = atest::call_service(&$app, req).await;
        assert_eq!(resp.status(), 200, "the report is accepted");
    }};
}

async fn entry(stores: &Stores, id: MessageId, state: DeliveryState) -> Option<OutboxEntry> {
    stores
        .outbox
        .outbox_entry(&OutboxEntry::key(id, state))
        .await
        .unwrap()
}

/// Wait (real time, up to `secs`) for `n` requests answered 2xx.
async fn oks(rx: &Receiver, n: u64, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || async { rx.ok_count() >= n }).await
}

// ------------------------------------------------------------ the payload

async fn a_report_becomes_one_signed_post_of_the_documented_payload(stores: Stores) {
    let rx = Receiver::start(SECRET).await.unwrap();
    let secrets = secrets();
    let td = start_daemon(
        config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 2, td.now()).await;
    set_hook(&stores, w.account.id, &rx.url("/hooks/trackly")).await;
    let app = app!(td, secrets);
    let m = &w.records[0];
    report!(app, secrets, m.id, DELIVERED);
    assert!(oks(&rx, 1, 10).await, "one POST arrives");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/hooks/trackly");
    assert!(r.signature_ok, "signature verifies: {}", r.signature);
    assert!(r.signature.starts_with("t=") && r.signature.contains(",v1="));
    assert_eq!(r.delivery, OutboxEntry::key(m.id, DeliveryState::Delivered));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    let keys: std::collections::BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let documented: std::collections::BTreeSet<&str> = [
        "id",
        "account",
        "sendingList",
        "messageCreative",
        "fromNumber",
        "toNumber",
        "delivered",
        "sendType",
        "filterBots",
        "length",
        "timestamp",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, documented, "exactly the documented fields");
    let rec = stores.sent.get(m.id).await.unwrap().unwrap();
    assert_eq!(body["id"], m.id.to_hex());
    assert_eq!(body["account"], w.account.id.to_hex());
    assert_eq!(body["sendingList"], m.sending_list.to_hex());
    assert_eq!(body["messageCreative"], m.creative.unwrap().to_hex());
    assert_eq!(body["fromNumber"], m.from);
    assert_eq!(body["toNumber"], m.to.as_str());
    assert_eq!(body["delivered"], true);
    assert_eq!(body["sendType"], "campaign");
    assert_eq!(body["filterBots"], true);
    assert_eq!(body["length"], "hello there".len());
    assert_eq!(
        body["timestamp"],
        rec.delivery_updated_at
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // The result is written once the answer is in (right after the POST).
    let st = stores.clone();
    let mid = m.id;
    wait_until(Duration::from_secs(10), || {
        let st = st.clone();
        async move {
            entry(&st, mid, DeliveryState::Delivered)
                .await
                .is_some_and(|e| e.status == OutboxStatus::Delivered)
        }
    })
    .await;
    let e = entry(&stores, m.id, DeliveryState::Delivered)
        .await
        .unwrap();
    assert_eq!((e.status, e.attempts), (OutboxStatus::Delivered, 1));

    // The provider resends the same report: no second entry, no second POST.
    report!(app, secrets, m.id, DELIVERED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "a resent report posts nothing more");
    assert_eq!(td.daemon.metrics.webhook_delivered.get(), 1);
    assert_eq!(td.daemon.metrics.webhook_enqueued.get(), 1);

    // An account without a webhook gets no entry.
    stores
        .accounts
        .set_delivery_webhook(w.account.id, None)
        .await
        .unwrap();
    report!(app, secrets, w.records[1].id, DELIVERED);
    assert!(
        entry(&stores, w.records[1].id, DeliveryState::Delivered)
            .await
            .is_none()
    );
}

// ------------------------------------------------------------ retries

async fn failures_are_retried_with_backoff_until_delivered(stores: Stores) {
    let rx = Receiver::start(SECRET).await.unwrap();
    rx.fail_next(3);
    let secrets = secrets();
    let td = start_daemon(
        config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 1, td.now()).await;
    set_hook(&stores, w.account.id, &rx.url("/h")).await;
    let app = app!(td, secrets);
    let m = w.records[0].id;
    report!(app, secrets, m, DELIVERED);
    let attempts = |n: u32| {
        let st = stores.clone();
        async move {
            wait_until(Duration::from_secs(10), || {
                let st = st.clone();
                async move {
                    entry(&st, m, DeliveryState::Delivered)
                        .await
                        .is_some_and(|e| e.attempts >= n)
                }
            })
            .await
        }
    };
    for n in 1..=3u32 {
        assert!(attempts(n).await, "try {n} happened");
        let e = entry(&stores, m, DeliveryState::Delivered).await.unwrap();
        assert_eq!(e.status, OutboxStatus::Pending);
        assert_eq!(e.last_error.as_deref(), Some("HTTP 500"));
        // Exponential: base × 2^(n−1), equal jitter (half to all of it).
        let full = Duration::from_secs(1) * 2u32.pow(n - 1);
        let wait = (e.next_attempt_at - td.now()).to_std().unwrap();
        assert!(
            wait >= full / 2 && wait <= full,
            "try {n}: next in {wait:?}, schedule {full:?}"
        );
        // Not tried again before it is due...
        td.clock.advance(wait / 4);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            rx.received().len(),
            n as usize,
            "no early retry after try {n}"
        );
        // ...and tried once it is.
        td.clock.advance(wait);
    }
    assert!(oks(&rx, 1, 10).await, "delivered on the fourth try");
    let got = rx.received();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.signature_ok && r.body == got[0].body));
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 500, 200]
    );
    let st = stores.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = st.clone();
            async move {
                entry(&st, m, DeliveryState::Delivered)
                    .await
                    .is_some_and(|e| e.status == OutboxStatus::Delivered && e.attempts == 4)
            }
        })
        .await
    );
    assert_eq!(td.daemon.metrics.webhook_failed.get(), 3);
    assert_eq!(td.daemon.metrics.webhook_retries.get(), 3);
    assert_eq!(td.daemon.metrics.webhook_delivered.get(), 1);
}

async fn an_entry_failing_past_the_horizon_is_given_up(stores: Stores) {
    let rx = Receiver::start(SECRET).await.unwrap();
    rx.fail_next(u32::MAX);
    let mut cfg = config();
    cfg.customer_webhooks.give_up_after = Dur::secs(3);
    let secrets = secrets();
    let td = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 1, td.now()).await;
    set_hook(&stores, w.account.id, &rx.url("/h")).await;
    let app = app!(td, secrets);
    let m = w.records[0].id;
    report!(app, secrets, m, DELIVERED);
    let st = stores.clone();
    let clock = td.clock.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let st = st.clone();
            clock.advance(Duration::from_millis(200));
            async move {
                entry(&st, m, DeliveryState::Delivered)
                    .await
                    .is_some_and(|e| e.status == OutboxStatus::GivenUp)
            }
        })
        .await,
        "given up"
    );
    let e = entry(&stores, m, DeliveryState::Delivered).await.unwrap();
    assert!(e.attempts >= 2, "{e:?}");
    assert_eq!(td.daemon.metrics.webhook_given_up.get(), 1);
    let n = rx.received().len();
    td.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.received().len(), n, "never posted again");
}

// ------------------------------------------------------------ order

async fn a_messages_states_are_posted_in_order(stores: Stores) {
    let rx = Receiver::start(SECRET).await.unwrap();
    rx.fail_next(2);
    let secrets = secrets();
    let td = start_daemon(
        config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 1, td.now()).await;
    set_hook(&stores, w.account.id, &rx.url("/h")).await;
    let app = app!(td, secrets);
    let m = w.records[0].id;
    report!(app, secrets, m, PENDING);
    // The intermediate state fails once before the final state arrives.
    let rx_ref = &rx;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !rx_ref.received().is_empty()
        })
        .await
    );
    report!(app, secrets, m, DELIVERED);
    let clock = td.clock.clone();
    assert!(
        wait_until(Duration::from_secs(15), || {
            clock.advance(Duration::from_millis(300));
            async { rx_ref.ok_count() >= 2 }
        })
        .await,
        "both states delivered"
    );
    let got = rx.received();
    let states: Vec<(Value, u16)> = got
        .iter()
        .map(|r| {
            let b: Value = serde_json::from_str(&r.body).unwrap();
            (b["delivered"].clone(), r.status)
        })
        .collect();
    let first_final = states.iter().position(|(d, _)| *d == json!(true)).unwrap();
    let last_pending_ok = states
        .iter()
        .position(|(d, s)| d.is_null() && *s == 200)
        .unwrap();
    assert!(
        last_pending_ok < first_final,
        "the final state was posted before the intermediate one was delivered: {states:?}"
    );
    assert!(states[..first_final].iter().all(|(d, _)| d.is_null()));
}

// ------------------------------------------------------------ SSRF

async fn internal_urls_are_refused_by_the_admin_api(stores: Stores) {
    let mut cfg = config();
    cfg.customer_webhooks.allow_http = false;
    cfg.customer_webhooks.allowed_cidrs = vec![];
    let secrets = secrets();
    let td = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 0, td.now()).await;
    let app = app!(td, secrets);
    let path = format!("/api/v1/accounts/{}/delivery-webhook", w.account.id);
    let put = |token: &str, body: Value| {
        atest::TestRequest::put()
            .uri(&path)
            .insert_header(("authorization", format!("Bearer {token}")))
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
            .to_request()
    };
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost:8443/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.1.2.3]/hook",
        "https://100.64.0.1/hook",
        "http://93.184.216.34/hook",
        "https://user:pw@93.184.216.34/hook",
        "not a url",
    ] {
        let resp =
            atest::call_service(&app, put(OPERATOR, json!({"url": url, "secret": SECRET}))).await;
        assert_eq!(resp.status(), 422, "{url} must be refused");
        let b: Value = atest::read_body_json(resp).await;
        assert_eq!(b["error"], "invalid_field", "{url}");
        assert_eq!(b["field"], "url", "{url}");
        let a = stores
            .accounts
            .get_account(w.account.id)
            .await
            .unwrap()
            .unwrap();
        assert!(a.delivery_webhook.is_none(), "{url}: nothing changed");
    }
    // The same rule for the account's Discord webhook (alerts).
    let discord = format!("/api/v1/accounts/{}/discord-webhook", w.account.id);
    for url in [
        "https://127.0.0.1/api/webhooks/1/x",
        "https://10.0.0.1/api/webhooks/1/x",
        "https://169.254.169.254/api/webhooks/1/x",
        "https://localhost/api/webhooks/1/x",
    ] {
        let req = atest::TestRequest::put()
            .uri(&discord)
            .insert_header(("authorization", format!("Bearer {OPERATOR}")))
            .insert_header(("content-type", "application/json"))
            .set_payload(json!({ "url": url }).to_string())
            .to_request();
        let resp = atest::call_service(&app, req).await;
        assert_eq!(resp.status(), 422, "Discord {url} must be refused");
        let a = stores
            .accounts
            .get_account(w.account.id)
            .await
            .unwrap()
            .unwrap();
        assert!(a.discord_webhook_url.is_none(), "{url}: nothing changed");
    }
    let req = atest::TestRequest::put()
        .uri(&discord)
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .insert_header(("content-type", "application/json"))
        .set_payload(json!({"url": "https://93.184.216.34/api/webhooks/1/x"}).to_string())
        .to_request();
    let resp = atest::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    let b: Value = atest::read_body_json(resp).await;
    assert_eq!(b["discord_webhook_set"], true);
    assert!(
        !b.to_string().contains("93.184.216.34"),
        "the Discord URL is a credential: never shown"
    );
    assert!(
        stores
            .accounts
            .get_account(w.account.id)
            .await
            .unwrap()
            .unwrap()
            .discord_webhook_url
            .is_some()
    );
    // A bad secret, a read-only token, an unknown account, an unknown field.
    let resp = atest::call_service(
        &app,
        put(
            OPERATOR,
            json!({"url": "https://93.184.216.34/hook", "secret": "short"}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 422);
    let b: Value = atest::read_body_json(resp).await;
    assert_eq!(b["field"], "secret");
    let resp = atest::call_service(
        &app,
        put(
            READER,
            json!({"url": "https://93.184.216.34/hook", "secret": SECRET}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = atest::call_service(
        &app,
        put(
            OPERATOR,
            json!({"url": "https://93.184.216.34/hook", "secret": SECRET, "x": 1}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let req = atest::TestRequest::put()
        .uri(&format!(
            "/api/v1/accounts/{}/delivery-webhook",
            AccountId::new()
        ))
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .set_payload(json!({"url": "https://93.184.216.34/hook", "secret": SECRET}).to_string())
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 404);
    assert!(
        stores
            .accounts
            .get_account(w.account.id)
            .await
            .unwrap()
            .unwrap()
            .delivery_webhook
            .is_none()
    );
    // A public address is saved; read back (the secret never shown); cleared.
    let resp = atest::call_service(
        &app,
        put(
            OPERATOR,
            json!({"url": "https://93.184.216.34/hook", "secret": SECRET}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let a = stores
        .accounts
        .get_account(w.account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.delivery_webhook.as_ref().map(|h| h.url.as_str()),
        Some("https://93.184.216.34/hook")
    );
    let req = atest::TestRequest::get()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {READER}")))
        .to_request();
    let b: Value = atest::call_and_read_body_json(&app, req).await;
    assert_eq!(b["delivery_webhook_url"], "https://93.184.216.34/hook");
    assert_eq!(b["outbox"]["pending"], 0);
    assert!(!b.to_string().contains(SECRET));
    let req = atest::TestRequest::delete()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {READER}")))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 403);
    let req = atest::TestRequest::delete()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {OPERATOR}")))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    let a = stores
        .accounts
        .get_account(w.account.id)
        .await
        .unwrap()
        .unwrap();
    assert!(a.delivery_webhook.is_none());
}

async fn internal_urls_are_refused_at_send_time(stores: Stores) {
    let rx = Receiver::start(SECRET).await.unwrap();
    // http allowed (the receiver is plain http), internal targets not.
    let mut cfg = config();
    cfg.customer_webhooks.allowed_cidrs = vec![];
    let secrets = secrets();
    let td = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores, 2, td.now()).await;
    let app = app!(td, secrets);
    // Stored directly, as if saved before the rule or by another path.
    for (i, url) in [rx.url("/h"), format!("http://localhost:{}/h", rx.port)]
        .iter()
        .enumerate()
    {
        set_hook(&stores, w.account.id, url).await;
        let m = w.records[i].id;
        report!(app, secrets, m, DELIVERED);
        let st = stores.clone();
        assert!(
            wait_until(Duration::from_secs(10), || {
                let st = st.clone();
                async move {
                    entry(&st, m, DeliveryState::Delivered)
                        .await
                        .is_some_and(|e| e.status == OutboxStatus::Refused)
                }
            })
            .await,
            "{url} refused at send time"
        );
        let e = entry(&stores, m, DeliveryState::Delivered).await.unwrap();
        assert!(
            e.last_error.as_deref().unwrap_or("").contains("loopback"),
            "{e:?}"
        );
    }
    assert!(rx.received().is_empty(), "no request reached the receiver");
    assert_eq!(td.daemon.metrics.webhook_refused.get(), 2);
}

// ------------------------------------------------------------ restart

/// Entries pending when a daemon stops are posted by the next one: the
/// outbox is in MongoDB, not in the stopped daemon.
#[actix_rt::test]
async fn pending_entries_survive_a_restart() {
    let Some(uri) = mongo_uri() else { return };
    let db = unique_name("wh_restart");
    let m1 = connect_mongo(&uri, &db).await;
    let stores1 = Stores::from_backend(Arc::new(m1.clone()), "mongodb");
    let rx = Receiver::start(SECRET).await.unwrap();
    rx.fail_next(u32::MAX);
    let secrets = secrets();
    let td = start_daemon(
        config(),
        stores1.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let w = world(&stores1, 3, td.now()).await;
    set_hook(&stores1, w.account.id, &rx.url("/h")).await;
    let app = app!(td, secrets);
    for r in &w.records {
        report!(app, secrets, r.id, DELIVERED);
    }
    let rx_ref = &rx;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            rx_ref.received().len() >= 3
        })
        .await
    );
    // Stop the first daemon while its entries wait for their retry.
    td.daemon.shutdown(Duration::from_secs(2)).await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rx.received().len();
    td.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.received().len(),
        before,
        "the stopped daemon posts nothing"
    );
    for r in &w.records {
        let e = entry(&stores1, r.id, DeliveryState::Delivered)
            .await
            .unwrap();
        assert_eq!(e.status, OutboxStatus::Pending);
    }
    // A new daemon on a new connection to the same database.
    rx.fail_next(0);
    let m2 = connect_mongo(&uri, &db).await;
    let stores2 = Stores::from_backend(Arc::new(m2.clone()), "mongodb");
    let clock = trackly::clock::ManualClock::starting_now();
    clock.advance(Duration::from_secs(60));
    let td2 = start_daemon_with_clock(
        config(),
        stores2.clone(),
        local_permits(),
        FakeSettings::default(),
        clock,
    );
    assert!(oks(&rx, 3, 15).await, "the new daemon delivered them");
    let st = stores2.clone();
    let ids: Vec<MessageId> = w.records.iter().map(|r| r.id).collect();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let st = st.clone();
            let ids = ids.clone();
            async move {
                for id in ids {
                    if !entry(&st, id, DeliveryState::Delivered)
                        .await
                        .is_some_and(|e| e.status == OutboxStatus::Delivered)
                    {
                        return false;
                    }
                }
                true
            }
        })
        .await
    );
    assert_eq!(td2.daemon.metrics.webhook_delivered.get(), 3);
    let _ = m2.drop_database().await;
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
    a_report_becomes_one_signed_post_of_the_documented_payload,
    failures_are_retried_with_backoff_until_delivered,
    an_entry_failing_past_the_horizon_is_given_up,
    a_messages_states_are_posted_in_order,
    internal_urls_are_refused_by_the_admin_api,
    internal_urls_are_refused_at_send_time,
);
