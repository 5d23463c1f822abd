//! Infobip: `POST /sms/2/text/advanced`, its JSON delivery reports, and
//! `GET /sms/3/logs` (the v3 log shape) answered from what was taken.

use super::state::*;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::sync::atomic::Ordering;
use trackly::providers::infobip;

// ------------------------------------------------------------------ Infobip

pub(crate) async fn infobip_send(
    state: web::Data<MockState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let cfg = state.config();
    if let Some(resp) = refused(&state, &cfg, &req) {
        return resp;
    }
    let throttle = HttpResponse::TooManyRequests().json(json!({
        "errorCode": "E429", "description": "Too many requests sent.",
        "action": "Check request rate limit specified in the API endpoint documentation resource.",
        "violations": [], "resources": [{"name": "Throttling handling errors",
        "url": "/docs/developer-resources/api-fundamentals/rate-limits-and-throttling"}]}));
    let error = || {
        HttpResponse::build(error_status(&cfg)).json(json!({"requestError": {"serviceException": {
        "messageId": "GENERAL_ERROR", "text": "Something went wrong. Please contact support."}}}))
    };
    let after = match prelude(&state, &cfg, throttle, error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Ok(request) = serde_json::from_slice::<infobip::SendRequest>(&body) else {
        return HttpResponse::BadRequest().json(json!({"requestError": {"serviceException": {
            "messageId": "BAD_REQUEST", "text": "Bad request", "validationErrors": {"messages": ["invalid request body"]}}}}));
    };
    let mut out = Vec::new();
    for m in &request.messages {
        for d in &m.destinations {
            let e164 = format!("+{}", d.to);
            let id = d
                .message_id
                .clone()
                .unwrap_or_else(|| trackly::domain::MessageId::new().to_hex());
            if state.message_rejected(&cfg, &e164) || cfg.stop_numbers.contains(&e164) {
                state.counters.rejected.fetch_add(1, Ordering::Relaxed);
                out.push(json!({"to": d.to, "messageId": id, "status": {"groupId": 5, "groupName": "REJECTED",
                    "id": 14, "name": "REJECTED_DESTINATION", "description": "Destination rejected"}}));
                continue;
            }
            state.record(&id);
            let plan = match &m.notify_url {
                Some(_) => state.report_plan(&cfg),
                None => vec![],
            };
            state.keep(TakenMessage {
                via: Via::Infobip,
                provider_id: id.clone(),
                from: m.from.clone(),
                to: e164.clone(),
                body: m.text.clone(),
                at: chrono::Utc::now(),
                plan: MockState::timed_plan(&cfg, &plan),
            });
            out.push(json!({"to": d.to, "messageId": id, "smsCount": 1, "status": {"groupId": 1, "groupName": "PENDING",
                "id": 26, "name": "PENDING_ACCEPTED", "description": "Message sent to next instance"}}));
            if let Some(url) = &m.notify_url {
                for (i, outcome) in plan.into_iter().enumerate() {
                    let entry = infobip_report(&id, &d.to, m.callback_data.as_deref(), outcome);
                    state.schedule(
                        cfg.report_delay * (i as u32 + 1),
                        Target::Infobip {
                            url: url.clone(),
                            entry,
                        },
                    );
                }
            }
        }
    }
    match after {
        After::Hang => tokio::time::sleep(cfg.hang).await,
        After::ErrorAfterAccept => return error(),
        After::Answer => {}
    }
    HttpResponse::Ok().json(json!({"bulkId": format!("BULK-{}", trackly::domain::MessageId::new().to_hex()), "messages": out}))
}

/// The 401 for a request without `Authorization: App <key>`, when the
/// mock requires a key.
fn refused(state: &MockState, cfg: &MockConfig, req: &HttpRequest) -> Option<HttpResponse> {
    if let Some(key) = &cfg.infobip_api_key {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("App {key}"));
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Some(
                HttpResponse::Unauthorized().json(json!({"requestError": {"serviceException": {
                "messageId": "UNAUTHORIZED", "text": "Invalid login details"}}})),
            );
        }
    }
    None
}

fn bad_request(text: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"errorCode": "E400", "description": "Bad request",
        "action": "Check the syntax, violations and adjust the request.",
        "violations": [{"property": "query", "violation": text}], "resources": []}))
}

/// `GET /sms/3/logs`: `messageId` (repeated, or comma-separated; at most
/// 2,048 characters), `limit` (default 50, at most 1,000); newest first.
pub(crate) async fn infobip_logs(state: web::Data<MockState>, req: HttpRequest) -> HttpResponse {
    let cfg = state.config();
    if let Some(resp) = refused(&state, &cfg, &req) {
        return resp;
    }
    if state.lookup_request(&cfg).is_err() {
        return HttpResponse::ServiceUnavailable().json(json!({"errorCode": "E503",
            "description": "Service unavailable", "action": "Try again later.",
            "violations": [], "resources": []}));
    }
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let mut ids: Vec<String> = Vec::new();
    let mut limit = 50usize;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "messageId" => ids.extend(v.split(',').filter(|s| !s.is_empty()).map(String::from)),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => limit = n,
                _ => return bad_request("limit must be between 1 and 1000"),
            },
            _ => {}
        }
    }
    if ids.join(",").len() > 2048 {
        return bad_request("messageId: maximum length is 2048 characters");
    }
    state
        .counters
        .lookup_ids
        .fetch_add(ids.len() as u64, Ordering::Relaxed);
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let results: Vec<serde_json::Value> = state
        .taken(Via::Infobip, |m| {
            wanted.is_empty() || wanted.contains(m.provider_id.as_str())
        })
        .into_iter()
        .take(limit)
        .map(|m| {
            let outcome = m.current();
            let (status, error) = match outcome {
                Some(o) => status_of(o),
                None => (
                    json!({"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED", "description": "Message sent to next instance"}),
                    json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
                ),
            };
            let sent = m.at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
            json!({"messageId": m.provider_id, "destination": m.to.trim_start_matches('+'),
                "sender": m.from, "bulkId": "BULK-1", "sentAt": sent,
                "doneAt": outcome.map(|_| sent.clone()), "messageCount": 1,
                "price": {"pricePerMessage": 0.01, "currency": "EUR"}, "status": status,
                "error": error, "content": {"text": m.body}, "mccMnc": "22801"})
        })
        .collect();
    HttpResponse::Ok().json(json!({"results": results}))
}

/// The status and error objects for an outcome.
fn status_of(o: Outcome) -> (serde_json::Value, serde_json::Value) {
    match o {
        Outcome::Intermediate => (
            json!({"groupId": 3, "groupName": "DELIVERED", "id": 2, "name": "DELIVERED_TO_OPERATOR", "description": "Message delivered to operator"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
        ),
        Outcome::Delivered => (
            json!({"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
        ),
        Outcome::Failed => (
            json!({"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED", "description": "Message sent not delivered"}),
            json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "description": "Unknown subscriber", "permanent": true}),
        ),
    }
}

fn infobip_report(id: &str, to: &str, callback: Option<&str>, o: Outcome) -> serde_json::Value {
    let (status, error) = status_of(o);
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    json!({"bulkId": "BULK-1", "messageId": id, "to": to, "sentAt": now, "doneAt": now, "smsCount": 1,
        "mccMnc": "22801", "callbackData": callback, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": status, "error": error})
}
