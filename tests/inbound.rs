//! Inbound messages over HTTP: STOP in each provider's inbound format
//! (Infobip, Twilio, CM)
//! unsubscribes the contact from the lists sending from that number, and
//! the executor's re-check right before the provider call then refuses a
//! message already queued for it; START subscribes again; other texts,
//! forged and malformed requests change nothing; HELP queues the list's
//! reply, which is sent. On both stores.

mod common;

use actix_web::test as atest;
use common::*;
use std::sync::Arc;
use std::time::Duration;
use trackly::clock::{Clock, SystemClock};
use trackly::domain::*;
use trackly::providers::fake::FakeSettings;
use trackly::providers::twilio;
use trackly::store::Stores;
use trackly_devkit::seed;

const PUBLIC: &str = "https://trackly.example";
const OUR_NUMBER: &str = "+12125550100";

async fn state_of(stores: &Stores, list: SendingListId, c: ContactId) -> ContactState {
    stores.contacts.contact_states(list, &[c]).await.unwrap()[&c]
}

async fn inbound_keywords(stores: Stores) {
    let now = SystemClock.now();
    let account = seed::account(Money(1_000_000_000), Money(10), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let mut list = seed::list(account.id, ProviderSettings::Fake, 60_000, now);
    list.from_numbers = vec![OUR_NUMBER.into()];
    list.tcpa_window = seed::window_open_around(now, "America/New_York");
    list.help_reply = Some("Acme alerts: reply STOP to end, msg&data rates may apply".into());
    stores.lists.insert_list(list.clone()).await.unwrap();
    let contacts: Vec<Contact> = (0..3)
        .map(|i| seed::contact(account.id, list.id, i, now))
        .collect();
    stores
        .contacts
        .insert_contacts(contacts.clone())
        .await
        .unwrap();
    let (ann, bo, cy) = (&contacts[0], &contacts[1], &contacts[2]);

    let secrets = Arc::new(trackly_devkit::harness::mock_secrets());
    let token = secrets.webhook_token.as_ref().unwrap().expose().to_string();
    let mut cfg = test_config();
    cfg.coordinator.poll_interval = trackly::config::Dur::millis(20);
    let t = start_daemon(
        cfg,
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
    );
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        t.daemon.http_state(secrets.clone(), PUBLIC),
    )))
    .await;
    let infobip = |from: &str, text: &str| {
        serde_json::json!({"results": [{
            "messageId": "817790313235066447", "from": from.trim_start_matches('+'),
            "to": OUR_NUMBER.trim_start_matches('+'), "text": text, "cleanText": "",
            "keyword": "", "receivedAt": "2026-12-01T09:00:00.000+0000", "smsCount": 1
        }], "messageCount": 1, "pendingMessageCount": 0})
    };

    // Infobip: "Stop!" from Ann unsubscribes her.
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{token}/inbound"))
            .set_json(infobip(ann.phone.as_str(), "Stop!"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = atest::read_body_json(res).await;
    assert_eq!(body["unsubscribed"], 1, "{body}");
    assert_eq!(
        state_of(&stores, list.id, ann.id).await,
        ContactState::Unsubscribed
    );

    // Not the whole message: nothing changes.
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{token}/inbound"))
            .set_json(infobip(bo.phone.as_str(), "stop by the store later"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state_of(&stores, list.id, bo.id).await,
        ContactState::Sendable
    );

    // A wrong token, a malformed body: 403 and 400, nothing changes.
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri("/webhooks/infobip/not-the-token/inbound")
            .set_json(infobip(bo.phone.as_str(), "STOP"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{token}/inbound"))
            .set_payload("{\"results\": [{\"text\": \"STOP\"}]}")
            .insert_header(("content-type", "application/json"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        state_of(&stores, list.id, bo.id).await,
        ContactState::Sendable
    );

    // Twilio, signed: "stop texting me" from Bo; forged: refused.
    let path = "/webhooks/twilio/default/inbound";
    let params = vec![
        (
            "AccountSid".to_string(),
            "AC00000000000000000000000000000001".to_string(),
        ),
        ("Body".to_string(), "stop texting me".to_string()),
        ("From".to_string(), bo.phone.as_str().to_string()),
        (
            "MessageSid".to_string(),
            "SM00000000000000000000000000000001".to_string(),
        ),
        ("To".to_string(), OUR_NUMBER.to_string()),
    ];
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let forged = twilio::signature("not-the-token", &format!("{PUBLIC}{path}"), &params);
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .insert_header(("x-twilio-signature", forged))
            .set_payload(form.clone())
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        state_of(&stores, list.id, bo.id).await,
        ContactState::Sendable
    );
    let sig = twilio::signature(
        "mock-twilio-auth-token",
        &format!("{PUBLIC}{path}"),
        &params,
    );
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .insert_header(("x-twilio-signature", sig))
            .set_payload(form)
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state_of(&stores, list.id, bo.id).await,
        ContactState::Unsubscribed
    );

    // The executor's re-check: messages already queued for Ann and Bo are
    // refused right before the provider call (CONTACT_BLOCKED); Cy's goes.
    let queued: Vec<QueuedTextMessage> = contacts
        .iter()
        .map(|c| seed::queued(&list, c, "Spring sale today", now))
        .collect();
    stores.queue.enqueue(queued.clone()).await.unwrap();
    t.daemon.coordinator.do_send(trackly::messages::Nudge);
    assert!(
        t.drained(Duration::from_secs(30)).await,
        "queue not drained"
    );
    assert_eq!(t.provider.accepted_count(), 1);
    assert!(t.provider.accepted().contains_key(&queued[2].id));
    for m in &queued[..2] {
        let f = stores
            .dead_letters
            .get(m.id)
            .await
            .unwrap()
            .expect("dead letter");
        assert_eq!(f.reason, FailureReason::ContactBlocked);
    }

    // START from Ann subscribes her again.
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/infobip/{token}/inbound"))
            .set_json(infobip(ann.phone.as_str(), " START "))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state_of(&stores, list.id, ann.id).await,
        ContactState::Sendable
    );
    assert_eq!(t.daemon.metrics.inbound_unsubscribes.get(), 2);
    assert_eq!(t.daemon.metrics.inbound_resubscribes.get(), 1);

    // CM: HELP from Cy queues the list's reply, sent from our number to
    // Cy; then "STOP" unsubscribes Cy. A wrong token changes nothing.
    let cm = |from: &str, text: &str| {
        serde_json::json!({
            "reference": "a1b2", "from": {"number": from, "name": "Cy"},
            "to": {"number": OUR_NUMBER}, "message": {"text": text},
            "groupings": ["", "", ""], "timeUtc": "2026-12-01T09:00:00", "channel": "SMS"
        })
    };
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri("/webhooks/cm/not-the-token/inbound")
            .set_json(cm(cy.phone.as_str(), "STOP"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/cm/{token}/inbound"))
            .set_json(cm(cy.phone.as_str(), " help "))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = atest::read_body_json(res).await;
    assert_eq!(
        (body["help"].as_u64(), body["replies_queued"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    t.daemon.coordinator.do_send(trackly::messages::Nudge);
    assert!(t.drained(Duration::from_secs(30)).await, "reply not sent");
    assert_eq!(t.provider.accepted_count(), 2);
    let reply = stores
        .sent
        .scan()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .find(|id| *id != queued[2].id && t.provider.accepted().contains_key(id))
        .expect("the HELP reply was sent");
    let r = stores.sent.get(reply).await.unwrap().unwrap();
    assert_eq!(
        (r.to.as_str(), r.from.as_str(), r.send_type, r.contact),
        (
            cy.phone.as_str(),
            OUR_NUMBER,
            SendType::Transactional,
            cy.id
        )
    );
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/cm/{token}/inbound"))
            .set_json(cm(cy.phone.as_str(), "STOP"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state_of(&stores, list.id, cy.id).await,
        ContactState::Unsubscribed
    );
    // A malformed CM body: 400, nothing changes.
    let res = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri(&format!("/webhooks/cm/{token}/inbound"))
            .set_json(serde_json::json!({"from": "x"}))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[actix_rt::test]
async fn inbound_keywords_in_memory() {
    inbound_keywords(Stores::memory()).await;
}

#[actix_rt::test]
async fn inbound_keywords_on_mongodb() {
    let Some(t) = mongo("inbound").await else {
        return;
    };
    inbound_keywords(t.stores.clone()).await;
    t.cleanup().await;
}
