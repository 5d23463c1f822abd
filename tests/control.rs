//! Control through the admin API, seen where it matters: two `trackly
//! serve` processes send one list through the mock provider (Twilio over
//! HTTP); a rate change made through one daemon's `PUT
//! /api/v1/lists/{id}/rate` is stored, broadcast, and the mock then sees
//! both daemons sending at the new rate; a drain through the other daemon
//! stops both, and a resume starts them again. On MongoDB and Redis.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trackly::clock::{Clock, SystemClock};
use trackly::domain::*;
use trackly::store::Stores;
use trackly_devkit::mock::MockConfig;
use trackly_devkit::seed;

const SID: &str = "ACcontrol0000000000000000000000000";
const TOKEN: &str = "control-auth-token";
const ADMIN: &str = "control-admin-token-0123456789";

fn spawn(
    svc: &Services,
    prefix: &str,
    name: &str,
    port: u16,
    mock_url: &str,
    dir: &std::path::Path,
) -> Guard {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_trackly"))
        .arg("serve")
        .env("TRACKLY_DAEMON__ID", name)
        .env("TRACKLY_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env(
            "TRACKLY_HTTP__PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("TRACKLY_LOG__FILTER", "warn")
        .env("TRACKLY_MONGO__URI", &svc.mongo_uri)
        .env("TRACKLY_MONGO__DATABASE", &svc.db)
        .env("TRACKLY_REDIS__URL", &svc.redis_url)
        .env("TRACKLY_REDIS__KEY_PREFIX", prefix)
        .env("TRACKLY_TWILIO_ACCOUNT_SID", SID)
        .env("TRACKLY_TWILIO_AUTH_TOKEN", TOKEN)
        .env("TRACKLY_PROVIDERS__TWILIO__BASE_URL", mock_url)
        .env("TRACKLY_ADMIN_TOKEN", ADMIN)
        .env("TRACKLY_COORDINATOR__POLL_INTERVAL", "100ms")
        .env("TRACKLY_COORDINATOR__MAX_POLL_INTERVAL", "300ms")
        // List changes reach the other daemon by the bus, not by this.
        .env("TRACKLY_SUPERVISOR__LIST_REFRESH", "5m")
        .env_remove("TRACKLY_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn trackly serve");
    Guard(child)
}

/// Messages the mock took during `over`.
async fn taken_during(mock: &trackly_devkit::mock::MockServer, over: Duration) -> usize {
    let before = mock.state.accepted_count();
    tokio::time::sleep(over).await;
    mock.state.accepted_count() - before
}

/// A daemon's `messages_sent_total` from its `/metrics`.
async fn sent_by(http: &reqwest::Client, port: u16) -> u64 {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("trackly_messages_sent_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_change_through_the_api_is_seen_at_the_mock_from_both_daemons() {
    let Some(svc) = services("rate_through_api") else {
        return;
    };
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let stores = Stores::from_backend(Arc::new(m.clone()), "mongodb");
    // 120 a minute (2 a second): 400 messages would take 200 s.
    let c = seed::campaign(
        &stores,
        400,
        trackly_devkit::harness::settings_for(ProviderKind::Twilio),
        120,
        Money::from_micros(1_000_000_000),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let mock = trackly_devkit::mock::start(
        MockConfig {
            twilio_account_sid: Some(SID.into()),
            twilio_auth_token: Some(TOKEN.into()),
            latency: Duration::from_millis(5),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let prefix = unique_name("rate_through_api");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let _a = spawn(&svc, &prefix, "daemon-a", pa, &mock.url(), &dir);
    let _b = spawn(&svc, &prefix, "daemon-b", pb, &mock.url(), &dir);
    let http = reqwest::Client::new();
    let logs = || {
        ["daemon-a", "daemon-b"]
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };

    // Both daemons up and sending at the list's rate.
    let started = Instant::now();
    while mock.state.accepted_count() < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sending never started\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow = taken_during(&mock, Duration::from_secs(5)).await;
    // 2 a second for 5 s is 10; the bucket's burst allows a few more.
    assert!(slow <= 20, "{slow} taken in 5 s at 2 a second");

    // Through daemon a's API: a bad body changes nothing; then 1,200 a
    // minute (20 a second: the rest takes some 20 s, long enough for both
    // daemons to share it).
    let url = format!(
        "http://127.0.0.1:{pa}/api/v1/lists/{}/rate",
        c.list.id.to_hex()
    );
    let res = http
        .put(&url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"per_minute": {"$gt": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let b_before = sent_by(&http, pb).await;
    let res = http
        .put(&url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"per_minute": 1_200}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    // Daemon b's API shows the stored rate.
    let v: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{pb}/api/v1/lists/{}",
            c.list.id.to_hex()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rate_limit_per_minute"], serde_json::json!(1_200), "{v}");

    // The mock sees the new rate: 20 a second for 5 s is 100 (50 would be
    // impossible at the old rate), never much more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fast = taken_during(&mock, Duration::from_secs(5)).await;
    assert!(
        (50..=140).contains(&fast),
        "{fast} taken in 5 s at 20 a second"
    );
    // Drained through daemon b: paused everywhere, answered once no daemon
    // holds a claim on the list; the mock then sees nothing more.
    let v: serde_json::Value = http
        .post(format!(
            "http://127.0.0.1:{pb}/api/v1/lists/{}/drain?wait=20",
            c.list.id.to_hex()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["drained"].as_bool(), v["claimed"].as_u64()),
        (Some(true), Some(0)),
        "{v}"
    );
    assert!(v["queued"].as_u64().unwrap_or(0) > 0, "{v}");
    let quiet = taken_during(&mock, Duration::from_secs(2)).await;
    assert_eq!(quiet, 0, "{quiet} taken after the drain answered");
    let res = http
        .post(format!(
            "http://127.0.0.1:{pa}/api/v1/lists/{}/resume",
            c.list.id.to_hex()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // The rest goes out within 40 s (at the old rate it would take more
    // than two and a half minutes).
    let changed = Instant::now();
    while mock.state.accepted_count() < 400 {
        assert!(
            changed.elapsed() < Duration::from_secs(40),
            "{} of 400 taken 40 s after the rate change\n{}",
            mock.state.accepted_count(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Daemon b, which was not asked, sent at the new rate too.
    let b_after = sent_by(&http, pb).await;
    eprintln!(
        "taken at 2/s: {slow} in 5 s; at 20/s: {fast} in 5 s; daemon b sent {} after the change",
        b_after - b_before
    );
    assert!(
        b_after > b_before + 40,
        "daemon b sent {} after the change",
        b_after - b_before
    );
    assert!(mock.state.duplicates().is_empty());
    let _ = m.drop_database().await;
}
