//! Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json` and its signed
//! status callbacks.

use super::state::*;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

// ------------------------------------------------------------------- Twilio

pub(crate) async fn twilio_send(
    state: web::Data<MockState>,
    sid: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let cfg = state.config();
    if let (Some(expected_sid), Some(token)) = (&cfg.twilio_account_sid, &cfg.twilio_auth_token) {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{expected_sid}:{token}"))
        );
        let ok = sid.as_str() == expected_sid
            && req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str());
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::Unauthorized()
                .json(json!({"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}));
        }
    }
    let throttle = || {
        HttpResponse::TooManyRequests().json(json!({"code": 20429, "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}))
    };
    let error = || {
        let status = error_status(&cfg);
        HttpResponse::build(status).json(json!({"code": 20500, "message": "Internal Server Error",
        "more_info": "https://www.twilio.com/docs/errors/20500", "status": status.as_u16()}))
    };
    let mut after = match prelude(&state, &cfg, throttle(), error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(to) = params.get("To").cloned() else {
        return HttpResponse::BadRequest().json(
            json!({"code": 21604, "message": "A 'To' phone number is required.",
            "more_info": "https://www.twilio.com/docs/errors/21604", "status": 400}),
        );
    };
    if state.throttle_once(&cfg, &to) {
        state.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return throttle();
    }
    if cfg.error_numbers.contains(&to) {
        state.counters.errors.fetch_add(1, Ordering::Relaxed);
        after = After::ErrorAfterAccept;
    }
    if cfg.stop_numbers.contains(&to) {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(
            json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}),
        );
    }
    if state.message_rejected(&cfg, &to) {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(json!({"code": 21211, "message": format!("Invalid 'To' Phone Number: {}", trackly::telemetry::mask_phone(&to)),
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}));
    }
    let msg_sid = format!("SM{}", &trackly::domain::MessageId::new().to_hex()[..24]);
    let callback = params.get("StatusCallback").cloned();
    let ours = callback
        .as_deref()
        .and_then(|c| url::Url::parse(c).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "m")
                .map(|(_, v)| v.into_owned())
        });
    state.record(ours.as_deref().unwrap_or(&msg_sid));
    let from = params.get("From").cloned().unwrap_or_default();
    if let (Some(url), Some(_)) = (&callback, &cfg.twilio_auth_token) {
        for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
            let (status, code) = match outcome {
                Outcome::Intermediate => ("sent", None),
                Outcome::Delivered => ("delivered", None),
                Outcome::Failed => ("undelivered", Some("30003")),
            };
            let mut p = vec![
                ("MessageSid", msg_sid.clone()),
                ("SmsSid", msg_sid.clone()),
                ("MessageStatus", status.to_string()),
                ("SmsStatus", status.to_string()),
                ("AccountSid", sid.to_string()),
                ("From", from.clone()),
                ("To", to.clone()),
                ("ApiVersion", "2010-04-01".to_string()),
            ];
            if let Some(c) = code {
                p.push(("ErrorCode", c.to_string()));
            }
            let params = p.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            state.schedule(
                cfg.report_delay * (i as u32 + 1),
                Target::Twilio {
                    url: url.clone(),
                    params,
                },
            );
        }
    }
    match after {
        After::Hang => tokio::time::sleep(cfg.hang).await,
        After::ErrorAfterAccept => return error(),
        After::Answer => {}
    }
    let now = chrono::Utc::now().to_rfc2822();
    HttpResponse::Created().json(json!({
        "sid": msg_sid, "account_sid": sid.as_str(), "messaging_service_sid": params.get("MessagingServiceSid"),
        "from": from, "to": to, "body": params.get("Body"), "status": "queued", "direction": "outbound-api",
        "api_version": "2010-04-01", "num_segments": "1", "num_media": "0", "price": null, "price_unit": "USD",
        "error_code": null, "error_message": null, "date_created": now, "date_updated": now, "date_sent": null,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{msg_sid}.json", sid.as_str())}))
}
