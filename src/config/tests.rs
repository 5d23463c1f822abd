//! The configuration's behaviour: defaults, errors at once, overrides.

use super::load::join;
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
    assert_eq!(
        Config::from_sources("", env(&[])).unwrap(),
        Config::default()
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
        [coordinator]
        max_batch = "many"
        polling = "1s"
        [supervisor]
        workers = 6
        [nope]
        x = 1
    "#;
    let text = format!("{text}\n[worker]\nstale_after = \"soon\"\nretry_base = \"later\"\n");
    let errs = Config::from_sources(&text, env(&[("TRACKLY_HTTP__BINDD", "x")])).unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"coordinator.max_batch"), "{errs}");
    assert!(keys.contains(&"coordinator.polling"), "{errs}");
    assert!(keys.contains(&"nope"), "{errs}");
    assert!(keys.contains(&"TRACKLY_HTTP__BINDD"), "{errs}");
    assert!(keys.contains(&"worker.stale_after"), "{errs}");
    assert!(keys.contains(&"worker.retry_base"), "{errs}");
    assert_eq!(errs.0.len(), 6, "{errs}");
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = r#"
        [supervisor]
        workers = 0
        [coordinator]
        max_batch = 0
        [daemon]
        lease_ttl = "1s"
        [http]
        bind = "not-an-address"
    "#;
    let errs = Config::from_sources(text, env(&[])).unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "supervisor.workers",
        "coordinator.max_batch",
        "daemon.lease_ttl",
        "http.bind",
    ] {
        assert!(keys.contains(&k), "{k} missing in {errs}");
    }
}

#[test]
fn timing_is_checked_against_the_configured_providers_only() {
    // Twilio's 10 s timeout needs a lease longer than 2 × 5 s + 10 s;
    // with only the fake (1 s timeout) configured, 15 s is enough.
    let text = r#"
        [daemon]
        lease_ttl = "15s"
        [providers.fake]
        enabled = true
        timeout = "1s"
    "#;
    assert!(Config::from_sources(text, env(&[])).is_ok());
    let errs = Config::from_sources(
        text,
        env(&[
            ("TRACKLY_TWILIO_ACCOUNT_SID", "AC1"),
            ("TRACKLY_TWILIO_AUTH_TOKEN", "t"),
        ]),
    )
    .unwrap_err();
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].key, "daemon.lease_ttl");
    assert!(errs.0[0].message.contains("twilio"), "{errs}");
    // The hard horizon must outlast a lease plus a chunk in flight.
    let errs = Config::from_sources(
        "[recovery]\nin_doubt_horizon = \"20s\"\n[providers.fake]\nenabled = true",
        env(&[]),
    )
    .unwrap_err();
    assert_eq!(errs.0[0].key, "recovery.in_doubt_horizon", "{errs}");
}

#[test]
fn env_overrides_are_typed() {
    let cfg = Config::from_sources(
        "",
        env(&[
            ("TRACKLY_RATE_LIMIT__BACKEND", "local"),
            ("TRACKLY_SUPERVISOR__WORKERS", "3"),
            ("TRACKLY_PROVIDERS__FAKE__ENABLED", "true"),
            ("TRACKLY_PROVIDERS__FAKE__REJECT_RATE", "0.25"),
            ("TRACKLY_DAEMON__ID", "123"),
            ("TRACKLY_ADMIN_TOKEN", "not-an-override"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.rate_limit.backend, RateLimitBackend::Local);
    assert_eq!(cfg.supervisor.workers, 3);
    assert!(cfg.providers.fake.enabled);
    assert_eq!(cfg.providers.fake.reject_rate, 0.25);
    assert_eq!(cfg.daemon.id, "123");
}

#[test]
fn bad_env_values_are_errors() {
    let errs =
        Config::from_sources("", env(&[("TRACKLY_SUPERVISOR__WORKERS", "six")])).unwrap_err();
    assert_eq!(errs.0[0].key, "TRACKLY_SUPERVISOR__WORKERS");
}

#[test]
fn provider_credentials_come_in_named_sets() {
    let s = Secrets::from_vars(env(&[
        ("TRACKLY_INFOBIP_API_KEY", "k1"),
        ("TRACKLY_INFOBIP_API_KEY_EU", "k2"),
        ("TRACKLY_TWILIO_ACCOUNT_SID", "AC1"),
        ("TRACKLY_TWILIO_AUTH_TOKEN", "t1"),
        ("TRACKLY_TWILIO_ACCOUNT_SID_US", "AC2"),
        ("TRACKLY_CM_PRODUCT_TOKEN", ""),
        ("TRACKLY_INFOBIP_API_KEYX", "not-a-set"),
    ]));
    assert_eq!(
        s.infobip.keys().cloned().collect::<Vec<_>>(),
        vec!["default", "eu"]
    );
    assert_eq!(s.infobip["eu"].expose(), "k2");
    // A set needs both its SID and its token.
    assert_eq!(
        s.twilio.keys().cloned().collect::<Vec<_>>(),
        vec!["default"]
    );
    assert!(s.cm.is_empty(), "empty values are ignored");
}

#[test]
fn bad_durations_are_errors() {
    let errs = Config::from_sources("[worker]\nstale_after = \"soon\"", env(&[])).unwrap_err();
    assert!(errs.to_string().contains("invalid duration"), "{errs}");
}

/// The shipped config.toml parses, validates, equals the defaults, and
/// lists every key.
#[test]
fn shipped_config_is_complete_and_valid() {
    let text = include_str!("../../config.toml");
    let cfg = Config::from_sources(text, env(&[])).unwrap();
    assert_eq!(cfg, Config::default(), "config.toml must show the defaults");
    let shipped: toml::Value = toml::from_str(text).unwrap();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    fn missing(d: &toml::Value, s: &toml::Value, path: &str, out: &mut Vec<String>) {
        if let (toml::Value::Table(dt), toml::Value::Table(st)) = (d, s) {
            for (k, v) in dt {
                let p = join(path, k);
                match st.get(k) {
                    None => out.push(p),
                    Some(sv) => missing(v, sv, &p, out),
                }
            }
        }
    }
    let mut out = vec![];
    missing(&defaults, &shipped, "", &mut out);
    assert!(out.is_empty(), "config.toml lacks keys: {out:?}");
}

#[test]
fn customer_webhook_settings_are_checked() {
    let errs = Config::from_sources(
        "[customer_webhooks]\nallowed_cidrs = [\"10.0.0.0/33\", \"x\"]\nclaim_lease = \"10s\"\nretry_base = \"2m\"\nretry_max = \"1m\"\nconcurrency = 0",
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    for key in [
        "customer_webhooks.allowed_cidrs",
        "customer_webhooks.claim_lease",
        "customer_webhooks.retry_max",
        "customer_webhooks.concurrency",
    ] {
        assert!(errs.contains(key), "{key} missing from: {errs}");
    }
    assert!(
        errs.contains("entry 0") && errs.contains("entry 1"),
        "{errs}"
    );
    let ok = Config::from_sources(
        "",
        env(&[(
            "TRACKLY_CUSTOMER_WEBHOOKS__ALLOWED_CIDRS",
            "[\"127.0.0.0/8\"]",
        )]),
    )
    .unwrap();
    assert_eq!(
        ok.customer_webhooks.allowed_cidrs,
        vec!["127.0.0.0/8".to_string()]
    );
    assert!(
        ok.customer_webhooks
            .outbound_policy()
            .check_ip("127.0.0.1".parse().unwrap())
            .is_ok()
    );
}

#[test]
fn alert_settings_are_checked() {
    let errs = Config::from_sources(
        "[alerts]\nwindow = \"500ms\"\nflush_interval = \"5s\"\ngrace = \"1s\"\nerror_rate_threshold = 1.5\nerror_rate_windows = 0\nmin_sample = 0\noutage_threshold = 0\nper_webhook_per_minute = 0\nrequest_timeout = \"2m\"\nmax_retry_after = \"0s\"\ntop_codes = 50\nrepeat_after = \"100ms\"",
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    for key in [
        "alerts.window",
        "alerts.flush_interval",
        "alerts.grace",
        "alerts.error_rate_threshold: must be in (0, 1], got 1.5",
        "alerts.error_rate_windows",
        "alerts.min_sample",
        "alerts.outage_threshold",
        "alerts.per_webhook_per_minute",
        "alerts.request_timeout",
        "alerts.max_retry_after",
        "alerts.top_codes",
        "alerts.repeat_after",
    ] {
        assert!(errs.contains(key), "{key} missing from: {errs}");
    }
    let bad_type = Config::from_sources("[alerts]\nwindow = 60", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(bad_type.contains("alerts.window"), "{bad_type}");
    let ok = Config::from_sources(
        "",
        env(&[
            ("TRACKLY_ALERTS__WINDOW", "5m"),
            ("TRACKLY_ALERTS__ENABLED", "false"),
        ]),
    )
    .unwrap();
    assert_eq!(ok.alerts.window.get(), std::time::Duration::from_secs(300));
    assert!(!ok.alerts.enabled);
}
