//! `trackly serve` and `trackly check-config` as processes: readiness
//! against the real services, MongoDB going away and coming back (through a
//! proxy, so the shared test server stays up), retries at start, bad
//! configuration, `/metrics`, and a clean exit on SIGTERM.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trackly"))
}

async fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(serde_json::Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_mongodb_while_it_is_down_and_recovers() {
    let Some(svc) = services("serve_readyz") else {
        return;
    };
    // MongoDB is "down" when the daemon starts: it must retry, not exit.
    let proxy = Proxy::start(&host_port(&svc.mongo_uri), false).await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{}.log", unique_name("serve")));
    let child = bin()
        .arg("serve")
        .env(
            "TRACKLY_MONGO__URI",
            format!("mongodb://127.0.0.1:{}/?directConnection=true", proxy.port),
        )
        .env("TRACKLY_MONGO__DATABASE", &svc.db)
        .env("TRACKLY_MONGO__SERVER_SELECTION_TIMEOUT", "1s")
        .env("TRACKLY_REDIS__URL", &svc.redis_url)
        .env("TRACKLY_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("TRACKLY_LOG__FILTER", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let base = format!("http://127.0.0.1:{port}");
    let logged_retry = wait_until(Duration::from_secs(20), || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("unreachable at start; retrying")
        }
    })
    .await;
    assert!(logged_retry, "no retry log line");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the daemon must keep retrying"
    );
    proxy.up();
    let ready = wait_until(Duration::from_secs(30), || {
        let base = base.clone();
        async move { matches!(get(&format!("{base}/readyz")).await, Some((200, _))) }
    })
    .await;
    assert!(ready, "not ready once MongoDB answered");
    let (status, body) = get(&format!("{base}/readyz")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["mongodb"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);

    // /metrics: Prometheus' text format, counting this daemon's real work
    // (it has talked to MongoDB and Redis by now).
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        text.contains("# TYPE trackly_messages_sent_total counter"),
        "{text}"
    );
    assert!(value("trackly_mongodb_commands_total{") > 0.0, "{text}");
    assert!(value("trackly_redis_calls_total{") > 0.0, "{text}");

    // MongoDB goes away: 503 naming it; the process stays up.
    proxy.down();
    let (status, body) = get(&format!("{base}/readyz")).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["mongodb"]), "{body}");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);

    // And comes back.
    proxy.up();
    let ready = wait_until(Duration::from_secs(30), || {
        let base = base.clone();
        async move { matches!(get(&format!("{base}/readyz")).await, Some((200, _))) }
    })
    .await;
    assert!(ready, "not ready again after MongoDB returned");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "SIGTERM should exit 0: {status:?}");
    let mut out = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("stopped"), "{out}");
    assert!(
        !out.contains(&svc.mongo_uri),
        "connection strings are masked in logs"
    );
    let _ = std::fs::remove_file(&log);
    let m = connect_mongo(&svc.mongo_uri, &svc.db).await;
    let _ = m.drop_database().await;
}

#[test]
fn a_malformed_config_lists_every_error_and_exits_non_zero() {
    let dir = std::env::temp_dir().join(unique_name("badcfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[coordinator]\nmax_batch = \"many\"\npoll = \"1s\"\n[worker]\nstale_after = \"soon\"\n[supervisor]\nworkers = 0\n",
    )
    .unwrap();
    for args in [
        vec!["check-config", bad.to_str().unwrap()],
        vec!["serve", "--config", bad.to_str().unwrap()],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for key in [
            "coordinator.max_batch",
            "coordinator.poll",
            "worker.stale_after",
        ] {
            assert!(err.contains(key), "{args:?}: {key} missing in:\n{err}");
        }
    }
    // A bad value from the environment is reported the same way.
    let out = bin()
        .args(["check-config", "config.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TRACKLY_SUPERVISOR__WORKERS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRACKLY_SUPERVISOR__WORKERS"));
    // The shipped file is valid.
    let out = bin()
        .args(["check-config", "config.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
