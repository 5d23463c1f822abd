//! `/metrics`: the Prometheus registry in its text format.
//! `/healthz`: the process is up. `/readyz`: the store and the rate limiter
//! answer; otherwise 503 naming what fails. Its detail also says whether this
//! instance holds its lease, and names the lists with due messages that no
//! live daemon can serve (their provider's credentials are missing on every
//! daemon): the daemon is ready, but those messages wait for an operator.

use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.encode())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    const LIMIT: Duration = Duration::from_secs(3);
    let store = tokio::time::timeout(LIMIT, state.stores.health.ping());
    let permits = tokio::time::timeout(LIMIT, state.permits.ping());
    let (store, permits) = futures::join!(store, permits);
    let store = match store {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3s".to_string()),
    };
    let permits = match permits {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3s".to_string()),
    };
    let store_name = state.stores.backend;
    let permits_name = state.permits.name();
    let mut failing = vec![];
    let mut checks = serde_json::Map::new();
    for (name, res) in [(store_name, &store), (permits_name, &permits)] {
        match res {
            Ok(()) => {
                checks.insert(name.into(), json!("ok"));
            }
            Err(e) => {
                failing.push(name);
                checks.insert(name.into(), json!(e));
            }
        }
    }
    let unservable = state
        .unservable
        .read()
        .map(|v| v.clone())
        .unwrap_or_default();
    let detail = json!({
        "instance": state.instance.id,
        "lease": if state.instance.lease_valid() { "held" } else { "not renewed" },
        "unservable_lists": unservable,
    });
    if failing.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks, "detail": detail}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "failing": failing,
            "checks": checks,
            "detail": detail,
        }))
    }
}
