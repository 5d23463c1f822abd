//! CM: `POST /v1.0/message` and its JSON or XML status reports.

use super::state::*;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::sync::atomic::Ordering;
use trackly::providers::cm;

// ----------------------------------------------------------------------- CM

pub(crate) async fn cm_send(state: web::Data<MockState>, body: web::Bytes) -> HttpResponse {
    let cfg = state.config();
    let Ok(request) = serde_json::from_slice::<cm::SendRequest>(&body) else {
        return HttpResponse::BadRequest()
            .json(json!({"details": "Invalid JSON request", "errorCode": 202, "messages": []}));
    };
    if let Some(token) = &cfg.cm_product_token
        && &request.messages.authentication.producttoken != token
    {
        state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(
            json!({"details": "No account found for the given authentication",
                "errorCode": 101, "messages": []}),
        );
    }
    let throttle = HttpResponse::TooManyRequests()
        .json(json!({"details": "Too many requests", "errorCode": 999, "messages": []}));
    let error = || {
        HttpResponse::build(error_status(&cfg))
            .json(json!({"details": "Internal server error", "errorCode": 500, "messages": []}))
    };
    let after = match prelude(&state, &cfg, throttle, error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let mut out = Vec::new();
    let mut accepted = 0;
    for m in &request.messages.msg {
        let reference = m.reference.clone().unwrap_or_default();
        for to in &m.to {
            let e164 = to
                .number
                .strip_prefix("00")
                .map(|d| format!("+{d}"))
                .unwrap_or_else(|| to.number.clone());
            if state.message_rejected(&cfg, &e164) || cfg.stop_numbers.contains(&e164) {
                state.counters.rejected.fetch_add(1, Ordering::Relaxed);
                out.push(json!({"to": to.number, "status": "Rejected", "reference": reference, "parts": 0,
                    "messageDetails": format!("Gsm '{}' is not a number.", trackly::telemetry::mask_phone(&to.number)),
                    "messageErrorCode": 303}));
                continue;
            }
            accepted += 1;
            state.record(&reference);
            out.push(
                json!({"to": to.number, "status": "Accepted", "reference": reference, "parts": 1,
                "messageDetails": null, "messageErrorCode": 0}),
            );
            if let Some(url) = &cfg.cm_report_url {
                for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
                    let (code, err) = match outcome {
                        Outcome::Intermediate => (0, ""),
                        Outcome::Delivered => (2, ""),
                        Outcome::Failed => (3, "13"),
                    };
                    let body = if cfg.cm_report_xml {
                        format!(
                            "<?xml version=\"1.0\"?><MESSAGES><MSG RECEIVED=\"{now}\"><TO>{to}</TO><REFERENCE>{reference}</REFERENCE><STATUS><CODE>{code}</CODE><ERRORCODE>{err}</ERRORCODE><ERRORDESCRIPTION></ERRORDESCRIPTION></STATUS></MSG></MESSAGES>",
                            now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S"),
                            to = to.number
                        )
                    } else {
                        json!({"messages": {"msg": {"received": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                            "to": to.number, "reference": reference,
                            "status": {"code": code.to_string(), "errorCode": err, "errorDescription": ""}, "operator": "20416"}}}).to_string()
                    };
                    state.schedule(
                        cfg.report_delay * (i as u32 + 1),
                        Target::Cm {
                            url: url.clone(),
                            body,
                            xml: cfg.cm_report_xml,
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
    let total = out.len();
    if accepted == total {
        HttpResponse::Ok().json(json!({"details": format!("Created {total} message(s)"), "errorCode": 0, "messages": out}))
    } else if accepted == 0 {
        HttpResponse::BadRequest().json(
            json!({"details": "Not all messages were sent", "errorCode": 201, "messages": out}),
        )
    } else {
        HttpResponse::Ok().json(json!({"details": format!("Created {accepted} message(s)"), "errorCode": 201, "messages": out}))
    }
}
