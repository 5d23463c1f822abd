//! `trackly ctl` as a command against a daemon serving HTTP: list control
//! reaches the store, reads print JSON, a CSV file of contacts is
//! imported, refusals exit 1 with the API's error, an unreachable daemon
//! (or an unreadable file) exits 2.

mod common;

use common::*;
use std::process::Command;
use std::sync::Arc;
use trackly::clock::SystemClock;
use trackly::domain::*;
use trackly::store::Stores;
use trackly::telemetry::Secret;
use trackly_devkit::seed;

fn ctl(
    url: String,
    token: &'static str,
    args: Vec<String>,
) -> tokio::task::JoinHandle<(i32, String, String)> {
    // Off the actor thread: the daemon answering lives on this system.
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_trackly"))
            .arg("ctl")
            .args(["--url", &url, "--token", token])
            .args(&args)
            .env_remove("TRACKLY_API_URL")
            .env_remove("TRACKLY_ADMIN_TOKEN")
            .output()
            .expect("trackly runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

#[actix_rt::test]
async fn ctl_pauses_rates_and_reads_through_the_api() {
    let stores = Stores::memory();
    let now = chrono::Utc::now();
    let account = seed::account(Money(1_000), Money(1), now);
    stores
        .accounts
        .insert_account(account.clone())
        .await
        .unwrap();
    let list = seed::list(account.id, ProviderSettings::Fake, 1_000, now);
    stores.lists.insert_list(list.clone()).await.unwrap();
    let mut secrets = trackly_devkit::harness::mock_secrets();
    secrets.admin_token = Some(Secret::new("ctl-op-token"));
    secrets.readonly_token = Some(Secret::new("ctl-ro-token"));
    let h = trackly_devkit::harness::HttpDaemon::start(
        test_config(),
        stores.clone(),
        local_permits(),
        Arc::new(SystemClock),
        Some(secrets),
        None,
    )
    .unwrap();
    let url = h.public_url.clone();
    let id = list.id.to_hex();

    let (code, out, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec!["pause".into(), id.clone()],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Pause"), "{out}");
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

    let (code, _, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec!["rate".into(), id.clone(), "2400".into()],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        stores
            .lists
            .get_list(list.id)
            .await
            .unwrap()
            .unwrap()
            .rate_limit_per_minute,
        2400
    );

    // Drain: nothing is claimed here, so it answers drained at once.
    let (code, out, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec!["drain".into(), id.clone()],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["drained"].as_bool(), v["claimed"].as_u64()),
        (Some(true), Some(0)),
        "{v}"
    );

    let (code, out, _) = ctl(url.clone(), "ctl-ro-token", vec!["list".into(), id.clone()])
        .await
        .unwrap();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rate_limit_per_minute"], 2400);

    // A read-only token may not resume: exit 1 with the API's error.
    let (code, _, err) = ctl(
        url.clone(),
        "ctl-ro-token",
        vec!["resume".into(), id.clone()],
    )
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("403 forbidden"), "{err}");
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

    let (code, _, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec!["resume".into(), "not-an-id".into()],
    )
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("400 bad_request"), "{err}");

    // Contacts from a CSV file: imported, and a bad row answered.
    let file = std::env::temp_dir().join(format!("trackly-ctl-{}.csv", list.id.to_hex()));
    std::fs::write(&file, "phone,first_name\n(212) 200-3000,Ann\n12,Bob\n").unwrap();
    let (code, out, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec![
            "import".into(),
            file.display().to_string(),
            "--account".into(),
            account.id.to_hex(),
            "--list".into(),
            id.clone(),
        ],
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], 1, "{v}");
    assert_eq!(v["errors"][0]["row"], 1, "{v}");
    let ann = stores
        .contacts
        .find_by_phone(account.id, &E164::parse("+12122003000").unwrap())
        .await
        .unwrap()
        .expect("imported");
    assert_eq!(ann.custom_fields["first_name"], "Ann");
    let (code, _, err) = ctl(
        url.clone(),
        "ctl-op-token",
        vec![
            "import".into(),
            "/nonexistent/contacts.csv".into(),
            "--account".into(),
            account.id.to_hex(),
            "--list".into(),
            id.clone(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read"), "{err}");

    // Failed messages: listed, then requeued by reason ("resend to failed
    // only"), each once.
    let contact = seed::contact(account.id, list.id, 7, now);
    stores
        .contacts
        .insert_contacts(vec![contact.clone()])
        .await
        .unwrap();
    let m = seed::queued(&list, &contact, "Spring sale", now);
    stores
        .dead_letters
        .record(vec![trackly::actors::outcome::failure(
            &m,
            FailureReason::Stale,
            "too old".into(),
            None,
            now,
        )])
        .await
        .unwrap();
    let (code, out, err) = ctl(
        url.clone(),
        "ctl-ro-token",
        vec!["failed".into(), "--reason".into(), "STALE".into()],
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"][0]["id"], m.id.to_hex(), "{v}");
    let depth = stores.queue.depth().await.unwrap();
    for expected in [1, 0] {
        let (code, out, err) = ctl(
            url.clone(),
            "ctl-op-token",
            vec!["requeue".into(), "--reason".into(), "STALE".into()],
        )
        .await
        .unwrap();
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["requeued"].as_array().map(|a| a.len()),
            Some(expected),
            "{v}"
        );
    }
    assert_eq!(stores.queue.depth().await.unwrap(), depth + 1);

    // The dashboard's views, as JSON (a read-only token suffices).
    for (cmd, key) in [
        ("lists", "lists"),
        ("schedules", "schedules"),
        ("daemons", "daemons"),
        ("whoami", "role"),
    ] {
        let (code, out, err) = ctl(url.clone(), "ctl-ro-token", vec![cmd.into()])
            .await
            .unwrap();
        assert_eq!(code, 0, "{cmd}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect(cmd);
        assert!(!v[key].is_null(), "{cmd}: {v}");
        if cmd == "lists" {
            assert!(
                v["lists"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|l| l["id"] == serde_json::json!(id))),
                "{v}"
            );
        }
        if cmd == "whoami" {
            assert_eq!(v["role"], "read-only", "{v}");
        }
    }
    h.stop().await;
    let port = free_port();
    let (code, _, err) = ctl(
        format!("http://127.0.0.1:{port}"),
        "ctl-op-token",
        vec!["queue".into()],
    )
    .await
    .unwrap();
    assert_eq!(code, 2, "{err}");
}
