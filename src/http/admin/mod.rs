//! The admin API under `/api/v1` (JSON). Handlers stay thin: they check the
//! caller's role, validate, then hand the work to an actor or a store.
//!
//! Authentication: `Authorization: Bearer <token>`, compared in constant
//! time with `TRACKLY_ADMIN_TOKEN` (role operator: may change things) and
//! `TRACKLY_READONLY_TOKEN` (role read-only). No token or an unknown one:
//! 401; a read-only token on an operator route: 403. With neither secret
//! set the API answers 401 to everything. Every failure comes from the one
//! error table ([`super::error`]).
//!
//! Ids in responses are plain hex strings, times RFC 3339 (UTC).
//!
//! - `accounts.rs`: create, read (secrets never shown), top up; the
//!   delivery webhook (set under the SSRF rule, cleared, outbox status).
//! - `lists.rs`: create; a list and its queue depth; pause, resume, rate
//!   (stored, then broadcast to every daemon); the queue depth of every
//!   list.
//! - `contacts.rs`: bulk import with an error per refused row.
//! - `campaigns.rs`: audiences, creatives (checked when saved), schedules.
//! - `failed.rs`: failed messages listed (in-doubt apart) and requeued.
//! - `schedules.rs`: a schedule and its runs; explain (the dry run); pause,
//!   resume, cancel; trigger now.

mod accounts;
mod campaigns;
mod contacts;
mod failed;
mod lists;
mod schedules;

use super::AppState;
use super::error::ApiError;
use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .configure(accounts::configure)
            .configure(lists::configure)
            .configure(contacts::configure)
            .configure(campaigns::configure)
            .configure(failed::configure)
            .configure(schedules::configure),
    );
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    ReadOnly,
    Operator,
}

/// The caller's role, which must be at least `needed`.
pub fn authorize(state: &AppState, req: &HttpRequest, needed: Role) -> Result<Role, ApiError> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let eq = |s: &Option<crate::telemetry::Secret>| {
        s.as_ref().is_some_and(|t| {
            crate::providers::twilio::constant_time_eq(t.expose().as_bytes(), given.as_bytes())
        })
    };
    let role = if eq(&state.secrets.admin_token) {
        Role::Operator
    } else if eq(&state.secrets.readonly_token) {
        Role::ReadOnly
    } else {
        return Err(ApiError::Unauthorized);
    };
    if role < needed {
        return Err(ApiError::Forbidden("this token may only read"));
    }
    Ok(role)
}

/// A path id, or 400 naming what it should have been.
pub fn parse_id<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("{what} must be a 24-digit hex id, got {raw:?}")))
}

/// A JSON body of type `T`: 400 with the path of the first field that does
/// not fit (unknown fields, wrong types, operators such as `{"$gt": ""}`
/// where a value belongs).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::BadRequest(format!("invalid body at {path}: {}", e.inner()))
    })
}

/// Ids and times as plain strings: the stored model serializes BSON object
/// ids as `{"$oid": "…"}` and dates as `{"$date": {"$numberLong": "…"}}`;
/// the API shows the hex id and an RFC 3339 time.
pub fn plain_json(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            if m.len() == 1 {
                if let Some(Value::String(s)) = m.get("$oid") {
                    return Value::String(s.clone());
                }
                if let Some(d) = m.get("$date") {
                    let ms = match d {
                        Value::Object(n) => n
                            .get("$numberLong")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<i64>().ok()),
                        Value::Number(n) => n.as_i64(),
                        _ => None,
                    };
                    if let Some(t) = ms.and_then(chrono::DateTime::from_timestamp_millis) {
                        return Value::String(
                            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        );
                    }
                    if let Value::String(s) = d {
                        return Value::String(s.clone());
                    }
                }
            }
            Value::Object(m.into_iter().map(|(k, v)| (k, plain_json(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(plain_json).collect()),
        other => other,
    }
}

/// A serializable value as the API's JSON.
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v)
        .map(plain_json)
        .map_err(|e| ApiError::BadRequest(format!("cannot render the answer: {e}")))
}

/// A store error as the API answers it.
pub fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::warn!(error = %e, "admin request: store error");
    ApiError::StoreUnavailable
}
