//! End to end over real HTTP on 127.0.0.1: a campaign sent through each
//! provider adapter to the mock provider, whose delivery reports (signed,
//! for Twilio) come back to the daemon's webhooks and set
//! `MessageSent.delivered` for every message. MongoDB and Redis, as in
//! production.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use trackly::clock::{Clock, SystemClock};
use trackly::domain::*;
use trackly::messages::Nudge;
use trackly::store::Stores;
use trackly_devkit::harness::{HttpDaemon, settings_for};
use trackly_devkit::mock::MockConfig;
use trackly_devkit::seed;

async fn campaign_through(kind: ProviderKind, xml_reports: bool) {
    let name = format!("e2e_{}", kind.as_str());
    let Some(svc) = services(&name) else { return };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let permits = redis_permits(&name).await.unwrap();
    let stop_number = seed::phone(3).as_str().to_string();
    let mock = MockConfig {
        report_delay: Duration::from_millis(100),
        delivered_ratio: 0.8,
        failed_ratio: 0.2,
        intermediate: true,
        cm_report_xml: xml_reports,
        stop_numbers: [stop_number].into_iter().collect(),
        ..Default::default()
    };
    let d = HttpDaemon::start(
        test_config(),
        stores.clone(),
        permits,
        Arc::new(SystemClock),
        None,
        Some(mock),
    )
    .unwrap();
    let c = seed::campaign(
        &stores,
        60,
        settings_for(kind),
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    d.daemon.coordinator.do_send(Nudge);
    // Every accepted message gets a final report: delivered or not.
    let st = stores.clone();
    let list = c.list.id;
    let settled = wait_until(Duration::from_secs(60), || {
        let st = st.clone();
        async move {
            let q = st.queue.depth().await.unwrap_or(1);
            let counts = st.sent.delivery_counts(list).await.unwrap_or_default();
            q == 0 && counts.attempted == 60 && counts.unknown == 0
        }
    })
    .await;
    let counts = stores.sent.delivery_counts(list).await.unwrap();
    assert!(settled, "{kind:?}: not settled: {counts:?}");
    // One number replied STOP: rejected (and, for Twilio, unsubscribed).
    assert_eq!(counts.rejected, 1, "{kind:?}: {counts:?}");
    assert_eq!(counts.submitted, 59);
    assert_eq!(counts.delivered + counts.undelivered, 59, "{counts:?}");
    assert!(counts.delivered > 0 && counts.undelivered > 0, "{counts:?}");
    let mock = d.mock.as_ref().unwrap();
    assert!(
        mock.state.duplicates().is_empty(),
        "sent twice at the provider"
    );
    assert_eq!(mock.state.accepted_count(), 59);
    if kind == ProviderKind::Twilio {
        let k = stores
            .contacts
            .get_contact(c.contacts[3].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(k.state_on(c.list.id), ContactState::Unsubscribed);
    }
    // A delivered record carries both the send answer and the report.
    for msg in &c.messages {
        let r = stores.sent.get(msg.id).await.unwrap().unwrap();
        if r.submitted == Some(true) {
            assert!(r.provider_message_id.is_some());
            assert!(r.delivered.is_some());
            assert!(r.delivery_state.is_some_and(|s| s.is_final()));
        }
    }
    d.stop().await;
    let _ = m.drop_database().await;
}

#[actix_rt::test]
async fn a_campaign_through_infobip_gets_every_delivery_report() {
    campaign_through(ProviderKind::Infobip, false).await;
}

#[actix_rt::test]
async fn a_campaign_through_twilio_gets_every_signed_status_callback() {
    campaign_through(ProviderKind::Twilio, false).await;
}

#[actix_rt::test]
async fn a_campaign_through_cm_gets_every_status_report_json() {
    campaign_through(ProviderKind::Cm, false).await;
}

#[actix_rt::test]
async fn a_campaign_through_cm_gets_every_status_report_xml() {
    campaign_through(ProviderKind::Cm, true).await;
}

#[actix_rt::test]
async fn throttling_is_retried_5xx_is_in_doubt_and_nothing_is_sent_twice() {
    let Some(svc) = services("e2e_throttle") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    let permits = redis_permits("e2e_throttle").await.unwrap();
    let mut cfg = test_config();
    cfg.worker.retry_base = trackly::config::Dur::millis(100);
    cfg.worker.retry_max = trackly::config::Dur::millis(400);
    // 429s (retried) and 502s after taking the messages (in doubt).
    let mock = MockConfig {
        throttle_rate: 0.3,
        error_rate: 0.1,
        error_status: 502,
        accept_on_error: true,
        report_delay: Duration::from_millis(50),
        ..Default::default()
    };
    let d = HttpDaemon::start(
        cfg,
        stores.clone(),
        permits,
        Arc::new(SystemClock),
        None,
        Some(mock),
    )
    .unwrap();
    let c = seed::campaign(
        &stores,
        40,
        settings_for(ProviderKind::Infobip),
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    d.daemon.coordinator.do_send(Nudge);
    let st = stores.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let st = st.clone();
            async move { st.queue.depth().await.unwrap_or(1) == 0 }
        })
        .await
    );
    let mock = d.mock.as_ref().unwrap();
    assert!(
        mock.state
            .counters
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert!(mock.state.duplicates().is_empty(), "nothing sent twice");
    assert_eq!(
        mock.state.accepted_count(),
        40,
        "every message reached the provider exactly once"
    );
    // Those answered 502 are in doubt (NO_RESPONSE) or already resolved by
    // their delivery report; all others are sent. None was retried.
    let ids: Vec<MessageId> = c.messages.iter().map(|m| m.id).collect();
    let records = stores.sent.get_many(&ids).await.unwrap();
    assert_eq!(records.len(), 40);
    let doubtful = records
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("NO_RESPONSE"))
        .count() as u64;
    let errors = mock
        .state
        .counters
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    if errors > 0 {
        assert!(doubtful > 0, "a 502 leaves its messages in doubt");
    }
    let f = d
        .daemon
        .rate_limiter
        .send(trackly::messages::EffectiveFraction { list: c.list.id })
        .await
        .unwrap();
    assert!(f < 1.0, "429s lowered the effective rate: {f}");
    d.stop().await;
    let _ = m.drop_database().await;
}
