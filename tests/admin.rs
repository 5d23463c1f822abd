//! The admin API over HTTP: bearer tokens and roles; lists (read, pause,
//! resume, rate) and the queue; schedules (read, explain, pause, resume,
//! cancel, trigger now); precise errors that change nothing, including
//! query-operator injection in bodies. On both stores.

mod common;

use actix_web::test as atest;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use trackly::config::Secrets;
use trackly::domain::*;
use trackly::providers::fake::FakeSettings;
use trackly::store::Stores;
use trackly::telemetry::Secret;
use trackly_devkit::seed;

const OPERATOR: &str = "op-token-0123456789";
const READER: &str = "ro-token-0123456789";

fn secrets() -> Arc<Secrets> {
    Arc::new(Secrets {
        admin_token: Some(Secret::new(OPERATOR)),
        readonly_token: Some(Secret::new(READER)),
        ..Default::default()
    })
}

async fn admin_api(stores: Stores) {
    let now = chrono::Utc::now();
    let account = seed::account(Money(1_000_000_000), Money(10), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let mut list = seed::list(account.id, ProviderSettings::Fake, 60_000, now);
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..20)
        .map(|i| seed::contact(account.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let audience = seed::audience(account.id, "all", AudienceFilter::default(), now);
    stores
        .contacts
        .insert_audience(audience.clone())
        .await
        .unwrap();
    let creative = seed::creative(
        account.id,
        &[("A", "Hi {{first_name|there}}", 1)],
        false,
        now,
    );
    stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .unwrap();
    // Due tomorrow: nothing runs until an operator triggers it.
    let later = now + chrono::Duration::days(1);
    let schedule = seed::schedule(
        &list,
        vec![audience.id],
        creative.id,
        ScheduleKind::Once { at: later },
        Some(later),
        now,
    );
    stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .unwrap();

    let t = start_daemon_with_clock(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets(), "https://trackly.example"),
    )))
    .await;
    macro_rules! call {
        ($method:ident, $uri:expr, $token:expr) => {
            call!($method, $uri, $token, None::<&str>)
        };
        ($method:ident, $uri:expr, $token:expr, $body:expr) => {{
            let mut r = atest::TestRequest::$method().uri(&$uri);
            if let Some(tok) = $token {
                r = r.insert_header(("authorization", format!("Bearer {tok}")));
            }
            if let Some(b) = $body {
                r = r
                    .insert_header(("content-type", "application/json"))
                    .set_payload(b.to_string());
            }
            let res = atest::call_service(&app, r.to_request()).await;
            let status = res.status().as_u16();
            let bytes = atest::read_body(res).await;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, v)
        }};
    }
    let l = format!("/api/v1/lists/{}", list.id.to_hex());

    // Authentication and roles.
    let (s, v) = call!(get, l, None::<&str>);
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let (s, _) = call!(get, l, Some("not-a-token"));
    assert_eq!(s, 401);
    let (s, v) = call!(post, format!("{l}/pause"), Some(READER));
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        list.status
    );

    // Reading a list: plain ids, the queue depth.
    let (s, v) = call!(get, l, Some(READER));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["_id"], json!(list.id.to_hex()));
    assert_eq!(v["queue_depth"], json!(0));
    let (s, v) = call!(get, "/api/v1/lists/zzz", Some(READER));
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")));
    let (s, v) = call!(
        get,
        format!("/api/v1/lists/{}", SendingListId::new().to_hex()),
        Some(READER)
    );
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));

    // Bad rate bodies: precise errors, nothing changed.
    for bad in [
        json!({"per_minute": "fast"}),
        json!({"per_minute": {"$gt": ""}}),
        json!({"per_minute": 5, "$where": "1"}),
        json!({"per_minute": -1}),
        json!({}),
    ] {
        let (s, v) = call!(put, format!("{l}/rate"), Some(OPERATOR), Some(&bad));
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
    }
    let (s, v) = call!(put, format!("{l}/rate"), Some(OPERATOR), Some(&"not json"));
    assert_eq!(s, 400, "{v}");
    let (s, v) = call!(
        put,
        format!("{l}/rate"),
        Some(OPERATOR),
        Some(&json!({"per_minute": 7_000_000}))
    );
    assert_eq!(
        (s, v["error"].as_str(), v["field"].as_str()),
        (422, Some("invalid_field"), Some("per_minute"))
    );
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .rate_limit_per_minute,
        list.rate_limit_per_minute
    );

    // Pause, rate, resume: stored.
    let (s, v) = call!(post, format!("{l}/pause"), Some(OPERATOR));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ListStatus::Paused
    );
    let (s, _) = call!(
        put,
        format!("{l}/rate"),
        Some(OPERATOR),
        Some(&json!({"per_minute": 1234}))
    );
    assert_eq!(s, 200);
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .rate_limit_per_minute,
        1234
    );
    let (s, _) = call!(post, format!("{l}/resume"), Some(OPERATOR));
    assert_eq!(s, 200);
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ListStatus::Active
    );

    // Schedules: read, explain (nothing queued), pause, trigger now.
    let sp = format!("/api/v1/schedules/{}", schedule.id.to_hex());
    let (s, v) = call!(get, sp, Some(READER));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], json!("active"));
    assert_eq!(v["runs"], json!([]));
    let (s, v) = call!(post, format!("{sp}/explain"), Some(READER));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["unique_contacts"].as_u64(), v["eligible"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(v["schedule"], json!(schedule.id.to_hex()));
    assert_eq!(stores.queue.depth().await.unwrap(), 0);
    let (s, _) = call!(post, format!("{sp}/pause"), Some(OPERATOR));
    assert_eq!(s, 200);
    assert_eq!(
        stores
            .schedules
            .get_schedule(schedule.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ScheduleStatus::Paused
    );
    let (s, v) = call!(post, format!("{sp}/trigger"), Some(OPERATOR));
    assert_eq!(s, 200, "{v}");
    let st = stores.schedules.clone();
    let id = schedule.id;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st = st.clone();
            async move {
                st.runs_of(id, 1)
                    .await
                    .ok()
                    .and_then(|r| r.first().map(|r| r.status == RunStatus::Queued))
                    .unwrap_or(false)
            }
        })
        .await,
        "the triggered run did not queue"
    );
    // The dashboard's views. Schedules: status, next run, audience size,
    // the latest run's progress.
    let (s, v) = call!(get, "/api/v1/schedules", Some(READER));
    assert_eq!(s, 200, "{v}");
    let mine = v["schedules"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == json!(schedule.id.to_hex())))
        .cloned()
        .unwrap_or_else(|| panic!("schedule not listed: {v}"));
    assert_eq!(
        (
            mine["kind"].as_str(),
            mine["audience"].as_u64(),
            mine["progress"]["queued"].as_u64(),
            mine["latest_run"]["status"].as_str(),
            mine["sending_list"].as_str(),
        ),
        (
            Some("once"),
            Some(20),
            Some(20),
            Some("queued"),
            Some(list.id.to_hex().as_str())
        ),
        "{mine}"
    );
    // The queue view: the list, its stored rate, not paused, who can serve it.
    let (s, v) = call!(get, "/api/v1/lists", Some(READER));
    assert_eq!(s, 200, "{v}");
    let lv = v["lists"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == json!(list.id.to_hex())))
        .cloned()
        .unwrap_or_else(|| panic!("list not in the queue view: {v}"));
    assert_eq!(
        (
            lv["rate_limit_per_minute"].as_u64(),
            lv["paused"].as_bool(),
            lv["provider"].as_str(),
            lv["in_doubt"]["waiting"].as_u64(),
        ),
        (Some(1234), Some(false), Some("fake"), Some(0)),
        "{lv}"
    );
    // The daemons view: this daemon's lease, ready.
    let instance = t.daemon.instance.id.clone();
    let mut found = Value::Null;
    for _ in 0..100 {
        let (s, v) = call!(get, "/api/v1/daemons", Some(READER));
        assert_eq!(s, 200, "{v}");
        if let Some(d) = v["daemons"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["instance"] == json!(instance)))
        {
            found = d.clone();
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            found["status"].as_str(),
            found["ready"].as_bool(),
            found["this"].as_bool(),
            found["version"].as_str(),
        ),
        (
            Some("ready"),
            Some(true),
            Some(true),
            Some(env!("CARGO_PKG_VERSION"))
        ),
        "{found}"
    );
    assert!(found["lease_age_ms"].as_i64().is_some(), "{found}");
    // Who am I: the role the dashboard shows buttons for.
    let (s, v) = call!(get, "/api/v1/whoami", Some(READER));
    assert_eq!((s, v["role"].as_str()), (200, Some("read-only")), "{v}");
    let (s, v) = call!(get, "/api/v1/whoami", Some(OPERATOR));
    assert_eq!((s, v["role"].as_str()), (200, Some("operator")), "{v}");
    let (s, _) = call!(get, "/api/v1/whoami", None::<&str>);
    assert_eq!(s, 401);
    let (s, v) = call!(get, "/api/v1/queue", Some(READER));
    assert_eq!(s, 200);
    assert!(v["lists"].is_object(), "{v}");
    // Done now: it cannot be resumed; cancel is allowed.
    let (s, v) = call!(post, format!("{sp}/resume"), Some(OPERATOR));
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")), "{v}");
    let (s, _) = call!(post, format!("{sp}/cancel"), Some(OPERATOR));
    assert_eq!(s, 200);
    let (s, v) = call!(
        post,
        format!("/api/v1/schedules/{}/explain", ScheduleId::new().to_hex()),
        Some(READER)
    );
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    assert!(t.drained(Duration::from_secs(30)).await);
}

#[actix_rt::test]
async fn admin_api_in_memory() {
    admin_api(Stores::memory()).await;
}

#[actix_rt::test]
async fn admin_api_on_mongodb() {
    let Some(t) = mongo("admin").await else {
        return;
    };
    admin_api(t.stores.clone()).await;
    t.cleanup().await;
}

/// A campaign built through the API alone: account, list, contacts (bad
/// rows refused one by one), audience, creative (an unknown placeholder
/// refused when saved), schedule; the Scheduler runs it and the messages
/// go out.
async fn a_campaign_through_the_api(stores: Stores) {
    let now = chrono::Utc::now();
    let t = start_daemon_with_clock(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets(), "https://trackly.example"),
    )))
    .await;
    macro_rules! post {
        ($uri:expr, $body:expr) => {{
            let r = atest::TestRequest::post()
                .uri($uri)
                .insert_header(("authorization", format!("Bearer {OPERATOR}")))
                .set_json($body)
                .to_request();
            let res = atest::call_service(&app, r).await;
            let status = res.status().as_u16();
            let v: Value = atest::read_body_json(res).await;
            (status, v)
        }};
    }
    let (s, acc) = post!(
        "/api/v1/accounts",
        json!({"name": "Acme", "price_per_segment_micros": 7500, "opening_balance_micros": 100_000_000})
    );
    assert_eq!(s, 201, "{acc}");
    let account = acc["id"].as_str().unwrap().to_string();
    let (s, v) = post!(
        "/api/v1/accounts",
        json!({"name": "", "price_per_segment_micros": 0})
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("name")), "{v}");

    let w = seed::window_open_around(now, "America/New_York");
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let (s, list) = post!(
        "/api/v1/lists",
        json!({"account": account, "name": "Main", "provider": {"kind": "fake"},
               "from_numbers": ["+12125550100"], "rate_limit_per_minute": 60000,
               "window": {"start": hm(w.start_minute), "end": hm(w.end_minute)}})
    );
    assert_eq!(s, 201, "{list}");
    let list_id = list["_id"].as_str().unwrap().to_string();
    let (s, v) = post!(
        "/api/v1/lists",
        json!({"account": account, "name": "Bad", "provider": {"kind": "fake"}, "from_numbers": ["+1200"]})
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("from_numbers")), "{v}");
    let (s, v) = post!(
        "/api/v1/lists",
        json!({"account": account, "name": "Bad", "provider": {"kind": "fake"}, "from_numbers": ["+12125550100"], "help_reply": "  "})
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("help_reply")), "{v}");

    let mut rows: Vec<Value> = (0..30)
        .map(|i| json!({"phone": format!("(212) 200-{:04}", 1000 + i), "first_name": format!("Ann{i}"), "tags": ["vip"]}))
        .collect();
    rows.push(json!({"phone": "+1 200 555 0000"}));
    rows.push(json!({"phone": "(212) 200-1000"}));
    rows.push(json!({"phone": "(212) 200-9999", "time_zone": "Mars/Olympus"}));
    let (s, v) = post!(
        "/api/v1/contacts/import",
        json!({"account": account, "list": list_id, "default_region": "US", "contacts": rows})
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["imported"], json!(30), "{v}");
    let errors = v["errors"].as_array().unwrap();
    let rows_fields: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows_fields,
        vec![(30, "phone"), (31, "phone"), (32, "time_zone")]
    );
    // Importing again: every row already a contact.
    let (_, v) = post!(
        "/api/v1/contacts/import",
        json!({"account": account, "list": list_id, "contacts": [{"phone": "+12122001000"}]})
    );
    assert_eq!(v["imported"], json!(0), "{v}");

    let (s, aud) = post!(
        "/api/v1/audiences",
        json!({"account": account, "name": "VIP", "filter": {"list": list_id, "tags_any": ["vip"]}})
    );
    assert_eq!(s, 201, "{aud}");
    let (s, v) = post!(
        "/api/v1/creatives",
        json!({"account": account, "name": "Bad", "variants": [{"key": "A", "body": "Hi {{frist_name}}", "weight": 1}]})
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("variants")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("frist_name"), "{v}");
    let (s, cr) = post!(
        "/api/v1/creatives",
        json!({"account": account, "name": "Sale", "track_links": true, "variants": [
            {"key": "A", "body": "Hi {{first_name|there}}: https://shop.example.com/a", "weight": 1},
            {"key": "B", "body": "{{first_name|Friend}}, sale today https://shop.example.com/b", "weight": 1}]})
    );
    assert_eq!(s, 201, "{cr}");
    // The preview: every variant for one contact, links as they would be.
    let acc_id: AccountId = account.parse().unwrap();
    let ann = stores
        .contacts
        .find_by_phone(acc_id, &E164::parse("+12122001000").unwrap())
        .await
        .unwrap()
        .expect("imported, stored E.164");
    let r = atest::TestRequest::get()
        .uri(&format!(
            "/api/v1/creatives/{}/preview?contact={}",
            cr["_id"].as_str().unwrap(),
            ann.id.to_hex()
        ))
        .insert_header(("authorization", format!("Bearer {READER}")))
        .to_request();
    let res = atest::call_service(&app, r).await;
    assert_eq!(res.status(), 200);
    let p: Value = atest::read_body_json(res).await;
    assert_eq!(p.as_array().map(|a| a.len()), Some(2), "{p}");
    assert!(
        p[0]["text"].as_str().unwrap().starts_with("Hi Ann0: "),
        "{p}"
    );
    assert_eq!(
        p[0]["links"][0]["destination"],
        json!("https://shop.example.com/a")
    );
    assert_eq!(
        (p[0]["encoding"].as_str(), p[0]["segments"].as_u64()),
        (Some("GSM-7"), Some(1))
    );
    let (s, v) = post!(
        "/api/v1/schedules",
        json!({"account": account, "name": "Bad", "sending_list": list_id, "audiences": [aud["_id"]],
               "creative": cr["_id"], "when": {"type": "recurring", "cron": "61 * * * *", "time_zone": "America/New_York"}})
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("when")), "{v}");
    let (s, sch) = post!(
        "/api/v1/schedules",
        json!({"account": account, "name": "Spring sale", "sending_list": list_id, "audiences": [aud["_id"]],
               "creative": cr["_id"], "when": {"type": "once", "at": now.to_rfc3339()}})
    );
    assert_eq!(s, 201, "{sch}");
    let schedule: ScheduleId = sch["_id"].as_str().unwrap().parse().unwrap();
    let _ = t
        .daemon
        .scheduler
        .clone()
        .unwrap()
        .send(trackly::messages::LookNow)
        .await;
    let st = stores.schedules.clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st = st.clone();
            async move {
                st.runs_of(schedule, 1)
                    .await
                    .ok()
                    .and_then(|r| {
                        r.first()
                            .map(|r| r.status == RunStatus::Queued && r.queued == 30)
                    })
                    .unwrap_or(false)
            }
        })
        .await,
        "the run did not queue 30 messages"
    );
    assert!(t.drained(Duration::from_secs(30)).await);
    assert_eq!(t.provider.accepted_count(), 30);

    // The run's stats, counted as the messages moved: 30 sent; then 25
    // delivered and 5 not, through the delivery intake.
    let run = stores.schedules.runs_of(schedule, 1).await.unwrap()[0].id;
    let run_stats = || {
        let st = stores.schedules.clone();
        async move { st.get_run(run).await.unwrap().unwrap().stats }
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            run_stats().await.sent == 30
        })
        .await,
        "run stats: {:?}",
        run_stats().await
    );
    let mut ids: Vec<MessageId> = stores
        .sent
        .scan()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    let updates: Vec<trackly::store::DeliveryUpdate> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| trackly::store::DeliveryUpdate {
            id: *id,
            state: if i < 25 {
                DeliveryState::Delivered
            } else {
                DeliveryState::Undelivered
            },
            error_code: None,
            at: now,
        })
        .collect();
    // Twice: a provider's resent reports change nothing and count nothing.
    for _ in 0..2 {
        t.daemon
            .intake
            .send(trackly::messages::ApplyReports(updates.clone()))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let s = run_stats().await;
            (s.delivered, s.undelivered) == (25, 5)
        })
        .await,
        "run stats: {:?}",
        run_stats().await
    );
    let r = atest::TestRequest::get()
        .uri(&format!("/api/v1/runs/{}", run.to_hex()))
        .insert_header(("authorization", format!("Bearer {READER}")))
        .to_request();
    let res = atest::call_service(&app, r).await;
    assert_eq!(res.status(), 200);
    let v: Value = atest::read_body_json(res).await;
    assert_eq!(
        (
            v["queued"].as_u64(),
            v["stats"]["sent"].as_u64(),
            v["stats"]["delivered"].as_u64(),
            v["stats"]["undelivered"].as_u64(),
            v["stats"]["clicked"].as_u64(),
        ),
        (Some(30), Some(30), Some(25), Some(5), Some(0)),
        "{v}"
    );
    let rate = |k: &str| v["rates"][k].as_f64();
    assert!(
        (rate("delivery_rate").unwrap() - 100.0 * 25.0 / 30.0).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(
        (rate("failure_rate"), rate("click_rate")),
        (Some(0.0), Some(0.0)),
        "{v}"
    );
    assert!(rate("send_rate").unwrap() > 0.0, "{v}");
    assert_eq!(
        t.daemon.metrics.delivered.get() + t.daemon.metrics.undelivered.get(),
        30
    );
}

#[actix_rt::test]
async fn a_campaign_through_the_api_in_memory() {
    a_campaign_through_the_api(Stores::memory()).await;
}

#[actix_rt::test]
async fn a_campaign_through_the_api_on_mongodb() {
    let Some(t) = mongo("admin_campaign").await else {
        return;
    };
    a_campaign_through_the_api(t.stores.clone()).await;
    t.cleanup().await;
}

/// Failed messages: listed (in-doubt apart), requeued by reason or by id
/// as new messages that go out, each at most once; in-doubt ones only with
/// the flag.
async fn failed_messages_are_listed_and_requeued_once(stores: Stores) {
    let now = chrono::Utc::now();
    let account = seed::account(Money(1_000_000_000), Money(10), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let mut list = seed::list(account.id, ProviderSettings::Fake, 60_000, now);
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..4)
        .map(|i| seed::contact(account.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let earlier = now - chrono::Duration::hours(2);
    let msgs: Vec<QueuedTextMessage> = contacts
        .iter()
        .map(|c| seed::queued(&list, c, "Spring sale", earlier))
        .collect();
    let reasons = [
        FailureReason::ProviderError,
        FailureReason::ProviderError,
        FailureReason::Stale,
        FailureReason::NoResponse,
    ];
    let letters: Vec<FailedMessage> = msgs
        .iter()
        .zip(reasons)
        .map(|(m, r)| trackly::actors::outcome::failure(m, r, "test".into(), None, earlier))
        .collect();
    stores.dead_letters.record(letters).await.unwrap();

    let t = start_daemon(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets(), "https://trackly.example"),
    )))
    .await;
    macro_rules! call {
        ($req:expr, $token:expr) => {{
            let r = $req
                .insert_header(("authorization", format!("Bearer {}", $token)))
                .to_request();
            let res = atest::call_service(&app, r).await;
            let status = res.status().as_u16();
            let v: Value = atest::read_body_json(res).await;
            (status, v)
        }};
    }
    let (s, v) = call!(atest::TestRequest::get().uri("/api/v1/failed"), READER);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["failed"].as_array().unwrap().len(), 3);
    assert_eq!(v["in_doubt"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            v["in_doubt_summary"]["open"].as_u64(),
            v["in_doubt_summary"]["resolved_as_sent"].as_u64(),
            v["in_doubt_summary"]["requeued"].as_u64(),
            v["in_doubt_summary"]["open_by_provider"]["fake"].as_u64(),
        ),
        (Some(1), Some(0), Some(0), Some(1)),
        "{v}"
    );
    assert!(
        !v.to_string().contains("Spring sale"),
        "bodies are not shown"
    );
    let (s, v) = call!(
        atest::TestRequest::get().uri("/api/v1/failed?reason=provider_error&limit=10"),
        READER
    );
    assert_eq!(s, 200);
    assert_eq!(v["failed"].as_array().unwrap().len(), 2);
    let (s, v) = call!(
        atest::TestRequest::get().uri("/api/v1/failed?reason=OOPS"),
        READER
    );
    assert_eq!((s, v["field"].as_str()), (422, Some("reason")));
    let (s, _) = call!(
        atest::TestRequest::get().uri("/api/v1/failed?limit=0"),
        READER
    );
    assert_eq!(s, 422);
    let (s, _) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(json!({"reason": "PROVIDER_ERROR"})),
        READER
    );
    assert_eq!(s, 403);

    // By reason: the two provider errors, as new messages that go out.
    let (s, v) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(json!({"reason": "PROVIDER_ERROR", "list": list.id.to_hex()})),
        OPERATOR
    );
    assert_eq!(s, 200, "{v}");
    let new_ids: Vec<MessageId> = v["requeued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(new_ids.len(), 2);
    assert!(t.drained(Duration::from_secs(30)).await);
    for id in &new_ids {
        assert!(
            t.provider.accepted().contains_key(id),
            "requeued message not sent"
        );
    }
    // Again: nothing (each at most once).
    let (_, v) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(json!({"ids": [msgs[0].id.to_hex()]})),
        OPERATOR
    );
    assert_eq!(v["requeued"], json!([]));
    assert_eq!(v["skipped"][0]["why"], json!("requeued before"));
    // In doubt: only with the flag.
    let body = json!({"ids": [msgs[3].id.to_hex()]});
    let (_, v) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(&body),
        OPERATOR
    );
    assert_eq!(v["requeued"], json!([]), "{v}");
    let mut flagged = body.clone();
    flagged["include_in_doubt"] = json!(true);
    let (_, v) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(&flagged),
        OPERATOR
    );
    assert_eq!(v["requeued"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = call!(atest::TestRequest::get().uri("/api/v1/failed"), READER);
    assert_eq!(
        (
            v["in_doubt_summary"]["open"].as_u64(),
            v["in_doubt_summary"]["requeued"].as_u64()
        ),
        (Some(0), Some(1)),
        "{v}"
    );
    // Neither ids nor reason: 422; both bad: nothing changed.
    let (s, _) = call!(
        atest::TestRequest::post()
            .uri("/api/v1/failed/requeue")
            .set_json(json!({})),
        OPERATOR
    );
    assert_eq!(s, 422);
    assert!(t.drained(Duration::from_secs(30)).await);
    assert_eq!(t.provider.accepted_count(), 3);
    assert!(t.provider.duplicates().is_empty());
}

#[actix_rt::test]
async fn failed_messages_are_listed_and_requeued_once_in_memory() {
    failed_messages_are_listed_and_requeued_once(Stores::memory()).await;
}

#[actix_rt::test]
async fn failed_messages_are_listed_and_requeued_once_on_mongodb() {
    let Some(t) = mongo("admin_failed").await else {
        return;
    };
    failed_messages_are_listed_and_requeued_once(t.stores.clone()).await;
    t.cleanup().await;
}

/// Contacts imported from CSV: good rows stored E.164 with their fields,
/// each bad row refused on its own (invalid number, unknown zone, twice in
/// the file, already a contact, malformed); a header without `phone`, a
/// `$` or `.` column and a read-only token refused whole, nothing stored.
async fn csv_import(stores: Stores) {
    let now = chrono::Utc::now();
    let account = seed::account(Money(1_000_000_000), Money(10), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 60_000, now);
    stores.lists.insert_list(list.clone()).await.unwrap();
    let t = start_daemon_with_clock(
        test_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets(), "https://trackly.example"),
    )))
    .await;
    macro_rules! post {
        ($uri:expr, $token:expr, $ctype:expr, $body:expr) => {{
            let r = atest::TestRequest::post()
                .uri(&$uri)
                .insert_header(("authorization", format!("Bearer {}", $token)))
                .insert_header(("content-type", $ctype))
                .set_payload($body)
                .to_request();
            let res = atest::call_service(&app, r).await;
            let status = res.status().as_u16();
            let bytes = atest::read_body(res).await;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, v)
        }};
    }
    let uri = format!(
        "/api/v1/contacts/import?account={}&list={}&default_region=US",
        account.id.to_hex(),
        list.id.to_hex()
    );
    let phone = |s: &str| E164::parse(s).unwrap();
    let stored = |p: &'static str| {
        let stores = stores.clone();
        async move {
            stores
                .contacts
                .find_by_phone(account.id, &phone(p))
                .await
                .unwrap()
        }
    };

    // One contact already there.
    let (s, v) = post!(uri, OPERATOR, "text/csv", "phone\n(212) 200-1009\n");
    assert_eq!((s, v["imported"].as_u64()), (200, Some(1)), "{v}");

    let mut csv = b"phone,time_zone,first_name,last_name,tags,zip\n\
        (212) 200-1000,America/New_York,Ann,Lee,vip; new,10001\n\
        +1 200 555 0000,,Bob,,,\n\
        (212) 200-1001,Mars/Olympus,Cy,,,\n\
        +12122001000,,Dup,,,\n\
        (212) 200-1002,Europe/Paris\n\
        \"(212) 200-1003\",,\"Smith, Jo\",,vip,\n\
        (212) 200-1004,,Eve,,,"
        .to_vec();
    csv.extend_from_slice(b"\xff\xfe\n(212) 200-1009,,Again,,,\n");
    let (s, v) = post!(uri, OPERATOR, "text/csv; charset=utf-8", csv);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["imported"], json!(2), "{v}");
    let errors: Vec<(u64, &str)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (1, "phone"),
            (2, "time_zone"),
            (3, "phone"),
            (4, "csv"),
            (6, "csv"),
            (7, "phone")
        ],
        "{v}"
    );
    let msg = |i: usize| v["errors"][i]["error"].as_str().unwrap().to_string();
    assert!(msg(2).contains("earlier in this import"), "{v}");
    assert!(
        msg(3).contains("line 6") && msg(3).contains("2 fields"),
        "{v}"
    );
    assert!(msg(4).contains("UTF-8"), "{v}");
    assert!(msg(5).contains("already a contact"), "{v}");

    let ann = stored("+12122001000").await.expect("Ann stored E.164");
    assert_eq!(ann.time_zone, "America/New_York");
    assert_eq!(ann.tags, vec!["vip".to_string(), "new".to_string()]);
    assert_eq!(
        ann.custom_fields,
        [
            ("first_name", "Ann"),
            ("last_name", "Lee"),
            ("zip", "10001")
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    assert!(
        ann.subscriptions
            .iter()
            .any(|s| s.list == list.id && s.subscribed)
    );
    let jo = stored("+12122001003").await.expect("Jo stored E.164");
    assert_eq!(jo.custom_fields.get("first_name").unwrap(), "Smith, Jo");
    assert!(
        !jo.custom_fields.contains_key("zip"),
        "an empty cell sets nothing"
    );
    assert_eq!(jo.time_zone, "");
    for p in ["+12122001001", "+12122001002", "+12122001004"] {
        assert!(stored(p).await.is_none(), "{p} refused, not stored");
    }

    // Refused whole: no phone column, a `$` or `.` column, bad parameters,
    // a read-only token. Nothing stored.
    let (s, v) = post!(
        uri,
        OPERATOR,
        "text/csv",
        "mobile,first_name\n(212) 200-1005,X\n"
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("phone"), "{v}");
    for header in ["phone,$where", "phone,a.b", "phone,$gt"] {
        let (s, v) = post!(
            uri,
            OPERATOR,
            "text/csv",
            format!("{header}\n(212) 200-1005,1\n")
        );
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{header}: {v}"
        );
    }
    let (s, v) = post!(
        "/api/v1/contacts/import",
        OPERATOR,
        "application/json",
        json!({"account": account.id.to_hex(), "list": list.id.to_hex(),
               "contacts": [{"phone": "(212) 200-1005", "fields": {"$where": "1"}}]})
        .to_string()
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    let (s, v) = post!(
        format!("/api/v1/contacts/import?list={}", list.id.to_hex()),
        OPERATOR,
        "text/csv",
        "phone\n(212) 200-1005\n"
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("account"), "{v}");
    let (s, v) = post!(
        format!("{uri}X"),
        OPERATOR,
        "text/csv",
        "phone\n(212) 200-1005\n"
    );
    assert_eq!(
        (s, v["field"].as_str()),
        (422, Some("default_region")),
        "{v}"
    );
    let many: String = std::iter::once("phone\n".to_string())
        .chain((0..10_001).map(|i| format!("+1212300{i:04}\n")))
        .collect();
    let (s, v) = post!(uri, OPERATOR, "text/csv", many);
    assert_eq!((s, v["field"].as_str()), (422, Some("body")), "{v}");
    assert!(stored("+12123000000").await.is_none());
    let (s, v) = post!(uri, READER, "text/csv", "phone\n(212) 200-1005\n");
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(stored("+12122001005").await.is_none());
    assert!(t.drained(Duration::from_secs(30)).await);
}

#[actix_rt::test]
async fn csv_import_in_memory() {
    csv_import(Stores::memory()).await;
}

#[actix_rt::test]
async fn csv_import_on_mongodb() {
    let Some(t) = mongo("admin_csv").await else {
        return;
    };
    csv_import(t.stores.clone()).await;
    t.cleanup().await;
}
