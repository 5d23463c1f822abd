//! Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json`, its signed
//! status callbacks, and `GET` on the same path (the Messages list)
//! answered from what was taken.

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
    if let Some(resp) = refused(&state, &cfg, &sid, &req) {
        return resp;
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
    let plan = match (&callback, &cfg.twilio_auth_token) {
        (Some(_), Some(_)) => state.report_plan(&cfg),
        _ => vec![],
    };
    state.keep(TakenMessage {
        via: Via::Twilio,
        provider_id: msg_sid.clone(),
        from: from.clone(),
        to: to.clone(),
        body: params.get("Body").cloned().unwrap_or_default(),
        at: chrono::Utc::now(),
        plan: MockState::timed_plan(&cfg, &plan),
    });
    if let (Some(url), Some(_)) = (&callback, &cfg.twilio_auth_token) {
        for (i, outcome) in plan.into_iter().enumerate() {
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

/// The 401 for a request without basic auth for the configured account,
/// when the mock requires one.
fn refused(
    state: &MockState,
    cfg: &MockConfig,
    sid: &str,
    req: &HttpRequest,
) -> Option<HttpResponse> {
    if let (Some(expected_sid), Some(token)) = (&cfg.twilio_account_sid, &cfg.twilio_auth_token) {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{expected_sid}:{token}"))
        );
        let ok = sid == expected_sid
            && req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str());
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Some(
                HttpResponse::Unauthorized().json(json!({"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})),
            );
        }
    }
    None
}

/// Twilio's date format (RFC 2822, two-digit day).
fn twilio_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// `GET .../Messages.json`: `To`, `From`, `DateSent`/`DateSent<`/`DateSent>`
/// (on `date_sent`, which is null while a message is queued, so a queued
/// message never passes a `DateSent` filter), `PageSize` (default 50, at
/// most 1000), `PageToken`; newest first, `next_page_uri` while more remain.
pub(crate) async fn twilio_list(
    state: web::Data<MockState>,
    sid: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let cfg = state.config();
    if let Some(resp) = refused(&state, &cfg, &sid, &req) {
        return resp;
    }
    if state.lookup_request(&cfg).is_err() {
        return HttpResponse::ServiceUnavailable().json(json!({"code": 20503,
            "message": "Service Unavailable", "more_info": "https://www.twilio.com/docs/errors/20503",
            "status": 503}));
    }
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let q: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let page_size = match q.get("PageSize").map(|v| v.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return HttpResponse::BadRequest().json(json!({"code": 20001,
                "message": "Invalid PageSize", "more_info": "https://www.twilio.com/docs/errors/20001",
                "status": 400}));
        }
    };
    let offset: usize = q
        .get("PageToken")
        .and_then(|t| t.strip_prefix("PT"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let day = |k: &str| {
        q.get(k).and_then(|d| {
            chrono::NaiveDate::parse_from_str(d.get(..10).unwrap_or(d), "%Y-%m-%d").ok()
        })
    };
    let (on, after, before) = (day("DateSent"), day("DateSent>"), day("DateSent<"));
    let all = state.taken(Via::Twilio, |m| {
        let sent = m.current().map(|_| m.at.date_naive());
        q.get("To").is_none_or(|t| *t == m.to)
            && q.get("From").is_none_or(|f| *f == m.from)
            && on.is_none_or(|d| sent == Some(d))
            && after.is_none_or(|d| sent.is_some_and(|s| s >= d))
            && before.is_none_or(|d| sent.is_some_and(|s| s <= d))
    });
    let page_no = offset / page_size.max(1);
    let base = format!("/2010-04-01/Accounts/{}/Messages.json", sid.as_str());
    let uri_at = |offset: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for k in ["To", "From", "DateSent", "DateSent>", "DateSent<"] {
            if let Some(v) = q.get(k) {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("PageSize", &page_size.to_string());
        ser.append_pair("Page", &(offset / page_size.max(1)).to_string());
        ser.append_pair("PageToken", &format!("PT{offset}"));
        format!("{base}?{}", ser.finish())
    };
    let messages: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|m| {
            let (status, code) = match m.current() {
                None => ("queued", None),
                Some(Outcome::Intermediate) => ("sent", None),
                Some(Outcome::Delivered) => ("delivered", None),
                Some(Outcome::Failed) => ("undelivered", Some(30003)),
            };
            let date = twilio_date(m.at);
            json!({"sid": m.provider_id, "account_sid": sid.as_str(), "messaging_service_sid": null,
                "from": m.from, "to": m.to, "body": m.body, "status": status,
                "direction": "outbound-api", "api_version": "2010-04-01", "num_segments": "1",
                "num_media": "0", "price": null, "price_unit": "USD", "error_code": code,
                "error_message": null, "date_created": date,
                "date_sent": m.current().map(|_| date.clone()), "date_updated": date,
                "uri": format!("/2010-04-01/Accounts/{}/Messages/{}.json", sid.as_str(), m.provider_id)})
        })
        .collect();
    let next = (offset + page_size < all.len()).then(|| uri_at(offset + page_size));
    let end = (offset + messages.len()).saturating_sub(1);
    HttpResponse::Ok().json(json!({
        "messages": messages, "page": page_no, "page_size": page_size, "start": offset,
        "end": end, "uri": uri_at(offset), "first_page_uri": uri_at(0),
        "next_page_uri": next,
        "previous_page_uri": (offset > 0).then(|| uri_at(offset.saturating_sub(page_size))),
    }))
}
