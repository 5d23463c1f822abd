//! Tracked short links over HTTP: the redirect, the click recorded behind
//! it (preview fetchers and crawlers flagged and left out of human clicks),
//! unknown and malformed codes; on both stores.

mod common;

use actix_web::test as atest;
use common::*;
use std::sync::Arc;
use std::time::Duration;
use trackly::app::{Daemon, DaemonParts};
use trackly::clock::{Clock, SystemClock};
use trackly::config::Secrets;
use trackly::domain::*;
use trackly::providers::ProviderRegistry;
use trackly::store::Stores;

const PUBLIC: &str = "https://trackly.example";

fn daemon(stores: &Stores) -> Daemon {
    Daemon::start(DaemonParts {
        config: Arc::new(test_config()),
        daemon_id: "links".into(),
        stores: stores.clone(),
        permits: local_permits(),
        providers: ProviderRegistry::new(),
        clock: Arc::new(SystemClock),
        bus: Arc::new(trackly::bus::LocalBus::new()),
        secrets: Arc::new(Secrets::default()),
        metrics: Arc::new(trackly::metrics::Metrics::new()),
    })
}

async fn a_link(stores: &Stores) -> MessageShortLink {
    let now = SystemClock.now();
    let account = trackly_devkit::seed::account(Money(1_000_000), Money(1), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let link = MessageShortLink {
        id: LinkId::new(),
        code: "Ab3dE6gH9k".into(),
        account: account.id,
        message: Some(MessageId::new()),
        schedule: None,
        run: None,
        creative: None,
        variant: None,
        destination_url: "https://shop.example.com/spring?utm_source=sms".into(),
        created_at: now,
    };
    stores.links.insert_links(vec![link.clone()]).await.unwrap();
    link
}

async fn redirects_and_records_clicks(stores: Stores) {
    let link = a_link(&stores).await;
    let d = daemon(&stores);
    let app = atest::init_service(actix_web::App::new().configure(trackly::http::configure(
        d.http_state(Arc::new(Secrets::default()), PUBLIC),
    )))
    .await;

    // A person: 302 to the destination, not cached, the click recorded.
    let req = atest::TestRequest::get()
        .uri("/l/Ab3dE6gH9k")
        .insert_header((
            "User-Agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        ))
        .to_request();
    let res = atest::call_service(&app, req).await;
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers().get("location").unwrap(),
        "https://shop.example.com/spring?utm_source=sms"
    );
    assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
    let m = d.metrics.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = m.clone();
            async move { m.clicks_recorded.get() == 1 }
        })
        .await,
        "the click was not recorded"
    );
    assert_eq!(stores.links.human_clicks(link.id).await.unwrap(), 1);

    // A preview fetcher: redirected too, recorded as a bot, not a human.
    let req = atest::TestRequest::get()
        .uri("/l/Ab3dE6gH9k")
        .insert_header((
            "User-Agent",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        ))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 302);
    // No user agent at all: a script, not a phone's browser.
    let req = atest::TestRequest::get().uri("/l/Ab3dE6gH9k").to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 302);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = m.clone();
            async move { m.clicks_recorded.get() == 3 }
        })
        .await
    );
    assert_eq!(d.metrics.clicks_bot.get(), 2);
    assert_eq!(stores.links.human_clicks(link.id).await.unwrap(), 1);
    assert_eq!(d.metrics.redirects.get(), 3);

    // Unknown and malformed codes: 404 from the error table; nothing
    // recorded.
    for uri in [
        "/l/Zz9yX8wV7u",
        "/l/short",
        "/l/Ab3dE6gH9kX",
        "/l/Ab3dE6gH9%21",
        "/l/%24ne",
    ] {
        let res = atest::call_service(&app, atest::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), 404, "{uri}");
        let body: serde_json::Value = atest::read_body_json(res).await;
        assert_eq!(body["error"], "unknown_link", "{uri}");
    }
    assert_eq!(d.metrics.redirects.get(), 3);
    assert_eq!(d.metrics.clicks_dropped.get(), 0);

    // A phone's browser, but within two seconds of the provider taking the
    // message: a preview fetched on arrival, not a person.
    let now = SystemClock.now();
    let account = stores
        .accounts
        .get_account(link.account)
        .await
        .unwrap()
        .unwrap();
    let list = trackly_devkit::seed::list(account.id, ProviderSettings::Fake, 1_000, now);
    let contact = trackly_devkit::seed::contact(account.id, list.id, 7, now);
    let q = trackly_devkit::seed::queued(&list, &contact, "hi", now);
    stores
        .sent
        .begin_attempts(
            account.id,
            vec![MessageSent::attempt(
                &q,
                ProviderKind::Infobip,
                "t",
                "t",
                Money::ZERO,
                now,
            )],
        )
        .await
        .unwrap();
    stores
        .sent
        .settle(vec![trackly::store::Settlement::Sent {
            id: q.id,
            at: now,
            provider_message_id: None,
            resolved_by: None,
        }])
        .await
        .unwrap();
    let fresh = MessageShortLink {
        id: LinkId::new(),
        code: "Zz9yX8wV7t".into(),
        message: Some(q.id),
        ..link.clone()
    };
    stores
        .links
        .insert_links(vec![fresh.clone()])
        .await
        .unwrap();
    let req = atest::TestRequest::get()
        .uri("/l/Zz9yX8wV7t")
        .insert_header(("User-Agent", "Mozilla/5.0 (iPhone) Mobile Safari"))
        .to_request();
    assert_eq!(atest::call_service(&app, req).await.status(), 302);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = m.clone();
            async move { m.clicks_recorded.get() == 4 }
        })
        .await
    );
    assert_eq!(d.metrics.clicks_bot.get(), 3);
    assert_eq!(stores.links.human_clicks(fresh.id).await.unwrap(), 0);
}

#[actix_rt::test]
async fn redirects_and_records_clicks_in_memory() {
    redirects_and_records_clicks(Stores::memory()).await;
}

#[actix_rt::test]
async fn redirects_and_records_clicks_on_mongodb() {
    let Some(t) = mongo("links").await else {
        return;
    };
    redirects_and_records_clicks(t.stores.clone()).await;
    t.cleanup().await;
}
