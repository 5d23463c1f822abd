//! The dashboard (`/dashboard`): its assets and their headers, and the page
//! in a real browser. A daemon with its HTTP server sends the demo's
//! campaign through the Twilio adapter to the mock provider over HTTP
//! (delivery reports signed and posted back), slowly enough to watch;
//! `tests/browser/dashboard.mjs` drives Debian's chromium (headless,
//! playwright-core) through it: the numbers change and reach their final
//! values, pause stops the sent count and resume restarts it, the layout
//! holds at 1280 px and 390 px, and a read-only token sees no buttons. What
//! the page showed at the end is compared with the store. Screenshots go
//! to `target/artifacts/dashboard/` (`TRACKLY_UPDATE_SCREENSHOTS=1` also
//! copies them to `docs/screenshots/`).
//!
//! Needs node (18+), chromium (`/usr/bin/chromium` or `$CHROMIUM`) and
//! `npm ci` in `tests/browser` (run here when missing); `scripts/test`
//! installs them. Missing, the test fails, unless
//! `TRACKLY_SKIP_SERVICES=1` asks on purpose to skip it (never under
//! `CI=true`).

mod common;

use actix_web::test as atest;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use trackly::clock::{Clock, SystemClock};
use trackly::domain::*;
use trackly::messages::LookNow;
use trackly::providers::fake::FakeSettings;
use trackly::store::Stores;
use trackly::telemetry::Secret;
use trackly_devkit::demo::{DemoOptions, demo_config, expected_skips, seed_demo};
use trackly_devkit::harness::{HttpDaemon, mock_secrets, settings_for};
use trackly_devkit::mock::MockConfig;
use trackly_devkit::seed;

const OPERATOR: &str = "dash-op-token-0123456789";
const READER: &str = "dash-ro-token-0123456789";

fn header(res: &actix_web::dev::ServiceResponse, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[actix_rt::test]
async fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let t = start_daemon(
        test_config(),
        Stores::memory(),
        local_permits(),
        FakeSettings::default(),
    );
    let app = atest::init_service(
        actix_web::App::new().configure(trackly::http::configure(
            t.daemon
                .http_state(Arc::new(Default::default()), "https://trackly.example"),
        )),
    )
    .await;
    let get = |uri: &str| atest::TestRequest::get().uri(uri).to_request();
    let res = atest::call_service(&app, get("/dashboard")).await;
    assert_eq!(res.status().as_u16(), 308);
    assert_eq!(header(&res, "location"), "/dashboard/");
    for (uri, kind, needle) in [
        ("/dashboard/", "text/html", "signin-form"),
        ("/dashboard/app.js", "text/javascript", "/api/v1"),
        ("/dashboard/app.css", "text/css", "@media"),
    ] {
        let res = atest::call_service(&app, get(uri)).await;
        assert_eq!(res.status().as_u16(), 200, "{uri}");
        assert!(header(&res, "content-type").starts_with(kind), "{uri}");
        let csp = header(&res, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{uri}: {csp}"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let body = atest::read_body(res).await;
        assert!(
            String::from_utf8_lossy(&body).contains(needle),
            "{uri} lacks {needle}"
        );
    }
    // The page holds no data: without a token the API it calls answers 401.
    let res = atest::call_service(&app, get("/api/v1/schedules")).await;
    assert_eq!(res.status().as_u16(), 401);
}

/// node, chromium and playwright-core, or None (skipped on purpose).
fn browser_tools(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let missing = |what: String| -> Option<(PathBuf, PathBuf)> {
        assert!(
            !services_required(),
            "{what}: the browser test needs node, chromium and `npm ci` in tests/browser. Run the tests with scripts/test, which installs them (or set TRACKLY_SKIP_SERVICES=1 to skip on purpose)"
        );
        eprintln!("skipping on purpose (TRACKLY_SKIP_SERVICES=1): {what}");
        None
    };
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    if !chromium.exists() {
        return missing(format!("{} not found", chromium.display()));
    }
    let node = PathBuf::from("node");
    if Command::new(&node).arg("--version").output().is_err() {
        return missing("node not found".into());
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return missing("`npm ci` in tests/browser failed".into());
        }
    }
    Some((node, chromium))
}

#[actix_rt::test]
async fn a_campaign_watched_paused_and_resumed_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let Some((node, chromium)) = browser_tools(&dir) else {
        return;
    };
    let artifacts = std::env::var("TRACKLY_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap_or(Path::new("target"))
                .join("artifacts")
        })
        .join("dashboard");
    let _ = std::fs::remove_dir_all(&artifacts);

    // The demo's campaign over 300 contacts at 10 a second: about 30 s of
    // sending. Four numbers the provider refuses (error 21211).
    let o = DemoOptions {
        contacts: 300,
        rate_per_minute: 600,
        quiet: true,
        ..Default::default()
    };
    let stores = Stores::memory();
    let now = SystemClock.now();
    let schedule = seed_demo(&stores, &o, settings_for(ProviderKind::Twilio), now)
        .await
        .unwrap();
    let rejected: Vec<String> = [1, 2, 3, 4]
        .iter()
        .map(|i| seed::phone(*i).as_str().to_string())
        .collect();
    let mut secrets = mock_secrets();
    secrets.admin_token = Some(Secret::new(OPERATOR));
    secrets.readonly_token = Some(Secret::new(READER));
    let mut cfg = demo_config(&o);
    cfg.daemon.heartbeat_interval = trackly::config::Dur::secs(1);
    let h = HttpDaemon::start(
        cfg,
        stores.clone(),
        local_permits(),
        Arc::new(SystemClock),
        Some(secrets),
        Some(MockConfig {
            latency: Duration::from_millis(5),
            report_delay: Duration::from_millis(200),
            delivered_ratio: 1.0,
            failed_ratio: 0.0,
            reject_numbers: rejected.iter().cloned().collect(),
            ..Default::default()
        }),
    )
    .unwrap();
    stores
        .schedules
        .set_schedule_status(schedule.id, ScheduleStatus::Active, Some(now))
        .await
        .unwrap();
    if let Some(s) = &h.daemon.scheduler {
        s.do_send(LookNow);
    }

    let script = dir.join("dashboard.mjs");
    let mut cmd = Command::new(&node);
    cmd.arg(&script)
        .current_dir(&dir)
        .env("DASH_URL", &h.public_url)
        .env("DASH_OPERATOR_TOKEN", OPERATOR)
        .env("DASH_READER_TOKEN", READER)
        .env("DASH_CAMPAIGN_NAME", &schedule.name)
        .env("DASH_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium);
    // Off the actor thread: the daemon the browser talks to runs on it.
    let out = actix_rt::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- browser ---\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshot in {}): {stderr}",
        artifacts.display()
    );
    let last: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .expect("a final line");
    let shown = &last["final"];

    // What the page showed at the end is the store's run.
    let run = stores
        .schedules
        .runs_of(schedule.id, 1)
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("a run");
    let n = |k: &str| shown[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        (n("queued"), n("sent"), n("failed"), n("delivered")),
        (
            run.queued,
            run.stats.sent,
            run.stats.failed_total(),
            run.stats.delivered
        ),
        "{shown}"
    );
    assert_eq!(run.stats.failed_total(), rejected.len() as u64, "{run:?}");
    assert_eq!(run.stats.sent, run.queued - rejected.len() as u64);
    let failures = shown["failures"].as_str().unwrap_or_default();
    assert!(
        failures.contains("PROVIDER_ERROR") && failures.contains("21211"),
        "failures by reason with the provider's code: {failures}"
    );
    let skipped = shown["skipped"].as_str().unwrap_or_default();
    for (reason, count) in expected_skips(o.contacts) {
        let line = format!("{}\t{count}", reason.replace('_', " "));
        assert!(skipped.contains(&line), "skipped lacks {line:?}: {skipped}");
    }
    for shot in [
        "campaign.png",
        "queue.png",
        "daemons.png",
        "campaign-phone.png",
    ] {
        let p = artifacts.join(shot);
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 10_000),
            "{} missing",
            p.display()
        );
    }
    if std::env::var("TRACKLY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for shot in ["campaign.png", "queue.png"] {
            std::fs::copy(artifacts.join(shot), docs.join(format!("dashboard-{shot}"))).unwrap();
        }
    }
    h.stop().await;
}
