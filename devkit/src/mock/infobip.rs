//! Infobip: `POST /sms/2/text/advanced` and its JSON delivery reports.

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
    if let Some(key) = &cfg.infobip_api_key {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("App {key}"));
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::Unauthorized()
                .json(json!({"requestError": {"serviceException": {
                "messageId": "UNAUTHORIZED", "text": "Invalid login details"}}}));
        }
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
            out.push(json!({"to": d.to, "messageId": id, "smsCount": 1, "status": {"groupId": 1, "groupName": "PENDING",
                "id": 26, "name": "PENDING_ACCEPTED", "description": "Message sent to next instance"}}));
            if let Some(url) = &m.notify_url {
                for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
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

fn infobip_report(id: &str, to: &str, callback: Option<&str>, o: Outcome) -> serde_json::Value {
    let (status, error) = match o {
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
    };
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    json!({"bulkId": "BULK-1", "messageId": id, "to": to, "sentAt": now, "doneAt": now, "smsCount": 1,
        "mccMnc": "22801", "callbackData": callback, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": status, "error": error})
}
