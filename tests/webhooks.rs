//! Delivery-report webhooks over HTTP: valid, unknown, malformed and forged
//! reports, order safety, and report storms written in a few bulk writes.

mod common;

use actix_web::test as atest;
use common::*;
use std::sync::Arc;
use trackly::app::{Daemon, DaemonParts};
use trackly::clock::{Clock, SystemClock};
use trackly::config::Secrets;
use trackly::domain::*;
use trackly::providers::ProviderRegistry;
use trackly::providers::twilio;
use trackly::store::{Settlement, Stores};

struct Setup {
    daemon: Daemon,
    secrets: Arc<Secrets>,
    stores: Stores,
    ids: Vec<MessageId>,
}

const PUBLIC: &str = "https://trackly.example";

/// A daemon and `n` attempt records (submitted = null, as right after the
/// attempt insert and before the provider answered).
async fn setup(stores: Stores, n: usize) -> Setup {
    let secrets = Arc::new(trackly_devkit::harness::mock_secrets());
    let daemon = Daemon::start(DaemonParts {
        config: Arc::new(test_config()),
        daemon_id: "webhooks".into(),
        stores: stores.clone(),
        permits: local_permits(),
        providers: ProviderRegistry::new(),
        clock: Arc::new(SystemClock),
        bus: Arc::new(trackly::bus::LocalBus::new()),
        secrets: Arc::new(Secrets::default()),
        metrics: Arc::new(trackly::metrics::Metrics::new()),
    });
    let now = SystemClock.now();
    let acc = trackly_devkit::seed::account(Money(1_000_000), Money(1), now);
    stores.accounts.insert_account(acc.clone()).await.unwrap();
    let list = trackly_devkit::seed::list(acc.id, ProviderSettings::Fake, 1000, now);
    let mut ids = vec![];
    let mut recs = vec![];
    for i in 0..n {
        let c = trackly_devkit::seed::contact(acc.id, list.id, i as u64, now);
        let q = trackly_devkit::seed::queued(&list, &c, "hi", now);
        ids.push(q.id);
        recs.push(MessageSent::attempt(
            &q,
            ProviderKind::Infobip,
            "t",
            "t",
            Money::ZERO,
            now,
        ));
    }
    for chunk in recs.chunks(1000) {
        stores
            .sent
            .begin_attempts(acc.id, chunk.to_vec())
            .await
            .unwrap();
    }
    Setup {
        daemon,
        secrets,
        stores,
        ids,
    }
}

macro_rules! app {
    ($s:expr) => {
        atest::init_service(actix_web::App::new().configure(trackly::http::configure(
            $s.daemon.http_state($s.secrets.clone(), PUBLIC),
        )))
        .await
    };
}

fn token(s: &Setup) -> String {
    s.secrets
        .webhook_token
        .as_ref()
        .unwrap()
        .expose()
        .to_string()
}

fn infobip_body(entries: &[(MessageId, i64, i64, &str)]) -> String {
    let results: Vec<serde_json::Value> = entries
        .iter()
        .map(|(id, group, sid, name)| {
            serde_json::json!({"messageId": id.to_hex(), "to": "41793026727",
                "status": {"groupId": group, "groupName": "X", "id": sid, "name": name}})
        })
        .collect();
    serde_json::json!({"results": results}).to_string()
}

#[actix_rt::test]
async fn infobip_reports_update_delivered_and_unknown_ids_are_counted() {
    let s = setup(Stores::memory(), 3).await;
    let app = app!(s);
    let unknown = MessageId::new();
    let body = infobip_body(&[
        (s.ids[0], 3, 5, "DELIVERED_TO_HANDSET"),
        (s.ids[1], 2, 9, "UNDELIVERABLE_NOT_DELIVERED"),
        (s.ids[2], 1, 26, "PENDING_ACCEPTED"),
        (unknown, 3, 5, "DELIVERED_TO_HANDSET"),
    ]);
    let req = atest::TestRequest::post()
        .uri(&format!("/webhooks/infobip/{}", token(&s)))
        .insert_header(("content-type", "application/json"))
        .set_payload(body)
        .to_request();
    let resp: serde_json::Value = atest::call_and_read_body_json(&app, req).await;
    assert_eq!(resp["received"], 4);
    assert_eq!(resp["unknown"], 1);
    let d = |i: usize| {
        let st = s.stores.clone();
        let id = s.ids[i];
        async move { st.sent.get(id).await.unwrap().unwrap() }
    };
    assert_eq!(d(0).await.delivered, Some(true));
    let r1 = d(1).await;
    assert_eq!(
        (r1.delivered, r1.delivery_error_code.as_deref()),
        (Some(false), Some("UNDELIVERABLE_NOT_DELIVERED"))
    );
    assert_eq!(
        (d(2).await.delivered, d(2).await.delivery_state),
        (None, Some(DeliveryState::Pending))
    );
    assert_eq!(s.daemon.metrics.reports_unknown.get(), 1);

    // A late intermediate report after the final one changes nothing.
    let late = infobip_body(&[(s.ids[0], 1, 26, "PENDING_ACCEPTED")]);
    let req = atest::TestRequest::post()
        .uri(&format!("/webhooks/infobip/{}", token(&s)))
        .set_payload(late)
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    assert_eq!(d(0).await.delivered, Some(true));
    // The report came before the send answer: the answer still lands.
    s.stores
        .sent
        .settle(vec![Settlement::Sent {
            id: s.ids[0],
            at: SystemClock.now(),
            provider_message_id: Some(s.ids[0].to_hex()),
            resolved_by: None,
        }])
        .await
        .unwrap();
    let r0 = d(0).await;
    assert_eq!((r0.submitted, r0.delivered), (Some(true), Some(true)));
}

#[actix_rt::test]
async fn malformed_and_forged_reports_change_nothing() {
    let s = setup(Stores::memory(), 1).await;
    let app = app!(s);
    let before = s.stores.sent.get(s.ids[0]).await.unwrap();
    let good = infobip_body(&[(s.ids[0], 3, 5, "DELIVERED_TO_HANDSET")]);
    // Wrong path token.
    let req = atest::TestRequest::post()
        .uri("/webhooks/infobip/guess")
        .set_payload(good.clone())
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 403);
    let req = atest::TestRequest::post()
        .uri("/webhooks/cm/guess")
        .set_payload("{}")
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 403);
    // Malformed bodies: the whole request is refused, even the valid part.
    let half = format!(
        "{{\"results\":[{},{{\"messageId\":\"x\"}}]}}",
        serde_json::json!({"messageId": s.ids[0].to_hex(), "status": {"groupId": 3, "id": 5, "name": "DELIVERED_TO_HANDSET"}})
    );
    for body in ["{", "[]", "{\"results\": 5}", half.as_str()] {
        let req = atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{}", token(&s)))
            .set_payload(body.to_string())
            .to_request();
        let resp = atest::call_service(&app, req).await;
        assert_eq!(resp.status(), 400, "{body}");
    }
    for body in ["{\"messages\":{}}", "<MESSAGES><MSG>"] {
        let req = atest::TestRequest::post()
            .uri(&format!("/webhooks/cm/{}", token(&s)))
            .set_payload(body.to_string())
            .to_request();
        assert_eq!(atest::call_service(&app, req).await.status(), 400, "{body}");
    }
    // Twilio: forged, missing and unknown-credential signatures.
    let path = format!("/webhooks/twilio/default?m={}", s.ids[0].to_hex());
    let params = vec![
        ("MessageSid".to_string(), "SM1".to_string()),
        ("MessageStatus".to_string(), "delivered".to_string()),
    ];
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let forged = twilio::signature("not-the-token", &format!("{PUBLIC}{path}"), &params);
    for (uri, sig) in [(path.as_str(), Some(forged)), (path.as_str(), None)] {
        let mut req = atest::TestRequest::post()
            .uri(uri)
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload(form.clone());
        if let Some(sig) = sig {
            req = req.insert_header(("x-twilio-signature", sig));
        }
        assert_eq!(
            atest::call_service(&app, req.to_request()).await.status(),
            403
        );
    }
    let token = s.secrets.twilio["default"].auth_token.expose().to_string();
    let other = "/webhooks/twilio/nosuchset";
    let sig = twilio::signature(&token, &format!("{PUBLIC}{other}"), &params);
    let req = atest::TestRequest::post()
        .uri(other)
        .insert_header(("x-twilio-signature", sig))
        .set_payload(form.clone())
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 403);
    assert_eq!(
        s.stores.sent.get(s.ids[0]).await.unwrap(),
        before,
        "nothing changed"
    );

    // The genuine callback is accepted, signed over our public URL.
    let sig = twilio::signature(&token, &format!("{PUBLIC}{path}"), &params);
    let req = atest::TestRequest::post()
        .uri(&path)
        .insert_header(("x-twilio-signature", sig))
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(form)
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 200);
    assert_eq!(
        s.stores
            .sent
            .get(s.ids[0])
            .await
            .unwrap()
            .unwrap()
            .delivered,
        Some(true)
    );
}

#[actix_rt::test]
async fn cm_reports_in_json_and_xml() {
    let s = setup(Stores::memory(), 2).await;
    let app = app!(s);
    let json = format!(
        "{{\"messages\":{{\"msg\":{{\"reference\":\"{}\",\"status\":{{\"code\":\"2\"}}}}}}}}",
        s.ids[0].to_hex()
    );
    let xml = format!(
        "<MESSAGES><MSG><REFERENCE>{}</REFERENCE><STATUS><CODE>3</CODE><ERRORCODE>13</ERRORCODE></STATUS></MSG></MESSAGES>",
        s.ids[1].to_hex()
    );
    for (body, ctype) in [(json, "application/json"), (xml, "application/xml")] {
        let req = atest::TestRequest::post()
            .uri(&format!("/webhooks/cm/{}", token(&s)))
            .insert_header(("content-type", ctype))
            .set_payload(body)
            .to_request();
        assert_eq!(atest::call_service(&app, req).await.status(), 200);
    }
    assert_eq!(
        s.stores
            .sent
            .get(s.ids[0])
            .await
            .unwrap()
            .unwrap()
            .delivered,
        Some(true)
    );
    let r = s.stores.sent.get(s.ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (r.delivered, r.delivery_error_code.as_deref()),
        (Some(false), Some("13"))
    );
}

#[actix_rt::test]
async fn a_report_storm_becomes_a_few_bulk_writes() {
    let Some(svc) = services("report_storm") else {
        return;
    };
    let metrics = Arc::new(trackly::metrics::Metrics::new());
    let m = trackly::store::mongo::MongoStore::connect(
        &svc.mongo_uri,
        &svc.db,
        std::time::Duration::from_secs(10),
        Some(metrics.clone()),
    )
    .await
    .expect("MongoDB client");
    m.ensure_indexes().await.expect("indexes");
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let s = setup(stores, 2000).await;
    let app = std::rc::Rc::new(app!(s));
    let updates_before = metrics
        .mongo_by_command()
        .get("update")
        .copied()
        .unwrap_or(0);
    // 20 posts of 100 reports, all at once.
    let posts: Vec<_> = s
        .ids
        .chunks(100)
        .map(|chunk| {
            let entries: Vec<(MessageId, i64, i64, &str)> = chunk
                .iter()
                .map(|id| (*id, 3, 5, "DELIVERED_TO_HANDSET"))
                .collect();
            let req = atest::TestRequest::post()
                .uri(&format!("/webhooks/infobip/{}", token(&s)))
                .set_payload(infobip_body(&entries))
                .to_request();
            let app = app.clone();
            async move { atest::call_service(&*app, req).await.status().as_u16() }
        })
        .collect();
    let statuses = futures::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let updates = metrics
        .mongo_by_command()
        .get("update")
        .copied()
        .unwrap_or(0)
        - updates_before;
    assert!(
        updates < 20,
        "20 posts should coalesce into fewer bulk writes, took {updates}"
    );
    let counts = s.stores.sent.get_many(&s.ids).await.unwrap();
    assert_eq!(
        counts.iter().filter(|r| r.delivered == Some(true)).count(),
        2000
    );
    let _ = m.drop_database().await;
}
