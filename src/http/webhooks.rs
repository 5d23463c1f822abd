//! Delivery-report webhooks, one route per provider:
//!
//! - `POST /webhooks/infobip/{token}`: JSON `{"results": [...]}`;
//! - `POST /webhooks/twilio/{credentials}?m=<id>`: form-encoded status
//!   callback, `X-Twilio-Signature` verified with that credential set's auth
//!   token against the public URL;
//! - `POST /webhooks/cm/{token}`: JSON or XML.
//!
//! Infobip and CM do not sign plain reports, so their URLs carry a secret
//! (`TRACKLY_WEBHOOK_TOKEN`), compared in constant time.
//!
//! Every request is parsed whole before anything is applied: a malformed
//! payload gets 400 and a forged one 403, and neither changes a record.
//! Reports for unknown messages are counted and logged and answered 200
//! (so the provider stops retrying). The answer comes once the reports are
//! durable.

use super::AppState;
use super::error::ApiError;
use crate::messages::ApplyReports;
use crate::providers::{Report, cm, infobip, twilio};
use crate::store::DeliveryUpdate;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/webhooks")
            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
            .route("/infobip/{token}", web::post().to(infobip_reports))
            .route("/twilio/{credentials}", web::post().to(twilio_callback))
            .route("/cm/{token}", web::post().to(cm_reports)),
    );
}

pub(super) fn token_ok(state: &AppState, given: &str) -> bool {
    match &state.secrets.webhook_token {
        Some(t) => twilio::constant_time_eq(t.expose().as_bytes(), given.as_bytes()),
        None => false,
    }
}

/// Apply parsed reports; reports without one of our ids count as unknown.
async fn apply(
    state: &AppState,
    provider: &'static str,
    reports: Vec<Report>,
) -> Result<HttpResponse, ApiError> {
    let received = reports.len();
    let now = state.clock.now();
    let mut not_ours = 0u64;
    let updates: Vec<DeliveryUpdate> = reports
        .into_iter()
        .filter_map(|r| match r.id {
            Some(id) => Some(DeliveryUpdate {
                id,
                state: r.state,
                error_code: r.error_code,
                at: now,
            }),
            None => {
                not_ours += 1;
                None
            }
        })
        .collect();
    if not_ours > 0 {
        state.metrics.reports_unknown.inc_by(not_ours);
        tracing::warn!(
            provider,
            count = not_ours,
            "delivery reports with a reference that is not ours"
        );
    }
    match state.intake.send(ApplyReports(updates)).await {
        Ok(Ok(r)) => {
            Ok(HttpResponse::Ok()
                .json(json!({"received": received, "unknown": r.unknown + not_ours})))
        }
        Ok(Err(crate::store::StoreError::Overloaded(e))) => {
            tracing::warn!(provider, error = %e, "delivery reports refused: too many wait to be written");
            Err(ApiError::Overloaded)
        }
        Ok(Err(e)) => {
            tracing::error!(provider, error = %e, "delivery reports not stored");
            Err(ApiError::StoreUnavailable)
        }
        Err(e) => {
            tracing::error!(provider, error = %e, "delivery intake unreachable");
            Err(ApiError::Unavailable(
                "the delivery intake is gone (shutting down)",
            ))
        }
    }
}

async fn infobip_reports(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !token_ok(&state, &token) {
        return Err(ApiError::Forbidden("bad webhook token"));
    }
    let reports = infobip::parse_reports(&body)?;
    apply(&state, "infobip", reports).await
}

async fn cm_reports(
    state: web::Data<AppState>,
    token: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !token_ok(&state, &token) {
        return Err(ApiError::Forbidden("bad webhook token"));
    }
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let xml =
        ctype.contains("xml") || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let reports = if xml {
        cm::parse_xml_reports(&body)
    } else {
        cm::parse_json_reports(&body)
    }?;
    apply(&state, "cm", reports).await
}

/// The form parameters of a Twilio request, once its `X-Twilio-Signature`
/// matches the credential set's auth token and the URL Twilio requested.
pub(super) fn twilio_verified(
    state: &AppState,
    credentials: &str,
    req: &HttpRequest,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(creds) = state.secrets.twilio.get(credentials) else {
        return Err(ApiError::Forbidden("unknown credential set"));
    };
    let Some(given) = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::Forbidden("missing X-Twilio-Signature"));
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    // The URL Twilio requested: our public base, this path, this query.
    let url = format!(
        "{}{}",
        state.public_url.trim_end_matches('/'),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    if !twilio::verify(creds.auth_token.expose(), &url, &params, given) {
        return Err(ApiError::Forbidden("X-Twilio-Signature does not match"));
    }
    Ok(params)
}

async fn twilio_callback(
    state: web::Data<AppState>,
    credentials: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let params = twilio_verified(&state, &credentials, &req, &body)?;
    let ours = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "m")
            .map(|(_, v)| v.into_owned())
    });
    match twilio::parse_callback(&params, ours.as_deref())? {
        Some(report) => apply(&state, "twilio", vec![report]).await,
        None => Ok(HttpResponse::Ok().json(json!({"received": 1, "ignored": 1}))),
    }
}
