//! In-doubt messages settled by asking the provider (the Resolver): taken
//! ones recorded sent, lost ones refunded and sent again exactly once, old
//! ones STALE; a lookup outage leaves everything in doubt until lookups
//! answer again. Through a whole daemon with the fake provider, on both
//! stores; over HTTP against the mock provider for Infobip and Twilio (and
//! CM, which has no lookup), on MongoDB.

mod common;

use common::*;
use std::time::Duration;
use trackly::clock::{Clock, SystemClock};
use trackly::config::{Config, Dur};
use trackly::domain::*;
use trackly::messages::{Nudge, ResolveNow};
use trackly::providers::fake::{FakeSettings, Scripted};
use trackly::store::{FailedFilter, Stores};
use trackly_devkit::harness::{HttpDaemon, settings_for};
use trackly_devkit::mock::MockConfig;
use trackly_devkit::seed;

fn resolver_config() -> Config {
    let mut cfg = test_config();
    cfg.resolver.interval = Dur::secs(3600);
    cfg.resolver.settle_delay = Dur::millis(0);
    cfg.resolver.retry_base = Dur::millis(50);
    cfg.resolver.retry_max = Dur::millis(100);
    cfg
}

async fn open_in_doubt(stores: &Stores) -> u64 {
    let f = FailedFilter {
        reason: Some(FailureReason::NoResponse),
        open_only: true,
        ..Default::default()
    };
    stores.dead_letters.count_failed(&f).await.unwrap()
}

async fn audit_clean(stores: &Stores) {
    let report = trackly::audit::audit(stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.text());
}

async fn settled_by_the_providers_records(stores: Stores) {
    let now = SystemClock.now();
    let c = seed::campaign(
        &stores,
        10,
        ProviderSettings::Fake,
        60_000,
        Money::from_micros(1_000_000_000),
        now,
    )
    .await
    .unwrap();
    let t = start_daemon_with_clock(
        resolver_config(),
        stores.clone(),
        local_permits(),
        FakeSettings::default(),
        trackly::clock::ManualClock::new(now),
    );
    let phone = |i: usize| c.contacts[i].phone.as_str().to_string();
    t.provider.script(&phone(0), Scripted::InDoubt);
    t.provider.script(&phone(1), Scripted::InDoubt);
    t.provider.script(&phone(2), Scripted::LostInDoubt);
    t.provider.script(&phone(3), Scripted::LostInDoubt);
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(Duration::from_secs(30)).await);
    assert_eq!(open_in_doubt(&stores).await, 4);
    assert_eq!(
        t.provider.accepted_count(),
        8,
        "6 answered, 2 taken in doubt"
    );

    // Lookups fail: nothing changes, nothing is guessed.
    t.provider.set_lookup_fail(true);
    let r = t.daemon.resolver.send(ResolveNow).await.unwrap();
    assert!(r.error.is_some(), "{r:?}");
    assert_eq!((r.taken, r.resent, r.stale), (0, 0, 0));
    assert_eq!(open_in_doubt(&stores).await, 4);
    assert_eq!(stores.queue.depth().await.unwrap(), 0);

    // Lookups answer again (after the retry backoff): the two taken are
    // sent, the two lost are queued again, once.
    t.provider.set_lookup_fail(false);
    t.provider.unscript(&phone(2));
    t.provider.unscript(&phone(3));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = t.daemon.resolver.send(ResolveNow).await.unwrap();
    assert_eq!((r.taken, r.resent, r.stale), (2, 2, 0), "{r:?}");
    assert_eq!(open_in_doubt(&stores).await, 0);
    let again = t.daemon.resolver.send(ResolveNow).await.unwrap();
    assert_eq!((again.taken, again.resent), (0, 0), "settled once");
    for i in 0..2 {
        let m = stores.sent.get(c.messages[i].id).await.unwrap().unwrap();
        assert_eq!(
            (m.submitted, m.resolved_by.as_deref()),
            (Some(true), Some("provider_lookup"))
        );
    }
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(Duration::from_secs(30)).await);
    // Every contact got exactly one message.
    assert_eq!(t.provider.accepted_count(), 10);
    assert!(t.provider.duplicates().is_empty());
    assert_eq!(
        t.daemon.metrics.resolved_by_lookup_count("taken")
            + t.daemon.metrics.resolved_by_lookup_count("resent"),
        4
    );
    assert!(t.daemon.metrics.lookup_failures.get() >= 1);
    audit_clean(&stores).await;
    let report = trackly::audit::audit(&stores, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (
            report.in_doubt.resolved_by_lookup,
            report.in_doubt.not_taken
        ),
        (2, 2)
    );

    // Too old to send when the provider says it never took it: STALE,
    // refunded, nothing queued.
    let late = seed::campaign(
        &stores,
        2,
        ProviderSettings::Fake,
        60_000,
        Money::from_micros(1_000_000_000),
        now,
    )
    .await
    .unwrap();
    for ct in &late.contacts {
        t.provider.script(ct.phone.as_str(), Scripted::LostInDoubt);
    }
    t.daemon.coordinator.do_send(Nudge);
    assert!(t.drained(Duration::from_secs(30)).await);
    assert_eq!(open_in_doubt(&stores).await, 2);
    t.clock.advance(Duration::from_secs(31 * 60));
    let r = t.daemon.resolver.send(ResolveNow).await.unwrap();
    assert_eq!((r.taken, r.resent, r.stale), (0, 0, 2), "{r:?}");
    for m in &late.messages {
        let f = stores.dead_letters.get(m.id).await.unwrap().unwrap();
        assert_eq!(f.reason, FailureReason::Stale);
    }
    assert_eq!(stores.queue.depth().await.unwrap(), 0);
    audit_clean(&stores).await;
}

#[actix_rt::test]
async fn settled_by_the_providers_records_in_memory() {
    settled_by_the_providers_records(Stores::memory()).await;
}

#[actix_rt::test]
async fn settled_by_the_providers_records_on_mongodb() {
    let Some(t) = mongo("resolver_fake").await else {
        return;
    };
    settled_by_the_providers_records(t.stores.clone()).await;
    t.cleanup().await;
}

/// A campaign through the mock over HTTP where a share of requests is
/// taken and answered 5xx and a share is taken but never answered (the
/// client times out); no delivery reports, so only lookups can settle
/// them. The lookups fail at first (an outage): everything stays in doubt.
/// Then they answer: every contact ends with exactly one message at the
/// mock, and the audit is clean. CM has no lookup: its in-doubt messages
/// stay in doubt.
async fn campaign_with_ambiguous_answers(kind: ProviderKind) {
    let name = format!("resolver_{}", kind.as_str());
    let Some(t) = mongo(&name).await else { return };
    let stores = t.stores.clone();
    let mut cfg = resolver_config();
    cfg.resolver.interval = Dur::millis(200);
    cfg.recovery.sweep_interval = Dur::millis(200);
    cfg.providers.infobip.timeout = Dur::millis(500);
    cfg.providers.twilio.timeout = Dur::millis(500);
    cfg.providers.cm.timeout = Dur::millis(500);
    cfg.worker.retry_base = Dur::millis(50);
    let mock = MockConfig {
        reports: false,
        error_rate: 0.15,
        accept_on_error: true,
        hang_rate: 0.15,
        hang: Duration::from_secs(2),
        lookup_fail: true,
        seed: 11,
        ..Default::default()
    };
    let d = HttpDaemon::start(
        cfg,
        stores.clone(),
        local_permits(),
        std::sync::Arc::new(SystemClock),
        None,
        Some(mock),
    )
    .unwrap();
    let n = 60;
    let c = seed::campaign(
        &stores,
        n,
        settings_for(kind),
        1_000_000,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    d.daemon.coordinator.do_send(Nudge);
    let mock = d.mock.as_ref().unwrap();
    // The queue drains; some messages are in doubt and stay so while the
    // lookups fail.
    let st = stores.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let st = st.clone();
            async move { st.queue.depth().await.unwrap_or(1) == 0 }
        })
        .await,
        "{kind:?}: queue not drained"
    );
    let doubtful = open_in_doubt(&stores).await;
    assert!(doubtful > 0, "{kind:?}: the mock left nothing in doubt");
    tokio::time::sleep(Duration::from_secs(1)).await;
    if kind != ProviderKind::Cm {
        assert!(d.daemon.metrics.lookup_failures.get() > 0, "{kind:?}");
    }
    assert!(open_in_doubt(&stores).await >= doubtful.min(1));
    assert!(mock.state.duplicates().is_empty());

    mock.state.set_config(|m| {
        m.lookup_fail = false;
        m.error_rate = 0.0;
        m.hang_rate = 0.0;
    });
    if kind == ProviderKind::Cm {
        // No lookup: in doubt until a report or an operator settles them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(open_in_doubt(&stores).await, doubtful, "CM: still in doubt");
        let report = trackly::audit::audit(&stores, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            report.in_doubt.open_by_provider.get("cm").copied(),
            Some(doubtful)
        );
        d.stop().await;
        t.cleanup().await;
        return;
    }
    let phones: std::collections::HashSet<String> = c
        .contacts
        .iter()
        .map(|ct| ct.phone.as_str().to_string())
        .collect();
    let st = stores.clone();
    let settled = wait_until(Duration::from_secs(60), || {
        let st = st.clone();
        async move { open_in_doubt(&st).await == 0 && st.queue.depth().await.unwrap_or(1) == 0 }
    })
    .await;
    assert!(
        settled,
        "{kind:?}: still in doubt: {}",
        open_in_doubt(&stores).await
    );
    assert!(
        mock.state.duplicates().is_empty(),
        "{kind:?}: sent twice at the mock"
    );
    // Exactly one message per contact at the mock.
    let taken_numbers: std::collections::HashMap<String, u32> = mock.state.accepted_by_number();
    assert_eq!(
        taken_numbers.len() as u64,
        n,
        "{kind:?}: every contact reached"
    );
    assert!(
        taken_numbers.values().all(|&k| k == 1),
        "{kind:?}: a number got two messages"
    );
    assert!(taken_numbers.keys().all(|p| phones.contains(p)));
    audit_clean(&stores).await;
    d.stop().await;
    t.cleanup().await;
}

#[actix_rt::test]
async fn ambiguous_answers_resolved_through_infobip_lookups() {
    campaign_with_ambiguous_answers(ProviderKind::Infobip).await;
}

#[actix_rt::test]
async fn ambiguous_answers_resolved_through_twilio_lookups() {
    campaign_with_ambiguous_answers(ProviderKind::Twilio).await;
}

#[actix_rt::test]
async fn cm_in_doubt_messages_wait_for_a_report() {
    campaign_with_ambiguous_answers(ProviderKind::Cm).await;
}
