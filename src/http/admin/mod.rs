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
//! - `daemons.rs`: every daemon's lease (id, version, lease age, lists
//!   served, readiness, current rate per list).
//! - `mod.rs` also answers `GET /api/v1/whoami`: the caller's role (the
//!   dashboard hides the operator's buttons from a read-only token; the
//!   routes refuse it anyway).
//! - `doc.rs`: what every route's OpenAPI operation shares (bearer scheme,
//!   error body and error responses).
//!
//! ## Routes are registered and documented in one step
//!
//! `GET /api/v1/openapi.json` (no token needed: it holds no data) serves an
//! OpenAPI 3.1 document collected from the routes as they are registered
//! (utoipa-actix-web), so the document cannot miss a route nor name one
//! that is not served. A module's `configure` gets utoipa-actix-web's
//! `ServiceConfig` and registers each handler with `cfg.service(handler)`,
//! which only accepts a handler that carries both an actix route macro and
//! `#[utoipa::path]`; a handler without its documentation does not compile.
//! A new route therefore looks like this (and nothing else is needed):
//!
//! ```ignore
//! /// One line: what it answers.
//! #[utoipa::path(
//!     tag = "runs",
//!     operation_id = "get_run",                      // unique in the document
//!     params(("id" = String, Path, description = "the run's hex id")),
//!     security(("bearer" = ["read-only"])),          // or ["operator"]
//!     responses(
//!         (status = 200, description = "the run", body = RunView),  // or body = Object
//!         Reader, BadRequest, NotFound,              // doc.rs: the error answers it can give
//!     )
//! )]
//! #[get("/runs/{id}")]
//! async fn get_run(...) -> Result<HttpResponse, ApiError> { ... }
//!
//! pub fn configure(cfg: &mut ServiceConfig) {
//!     cfg.service(get_run);
//! }
//! ```
//!
//! with `ToSchema` derived on the request body type (`request_body = T`)
//! and `IntoParams` on a query type (`params(T)`). Never register an admin
//! route with `.route(...)`, `web::resource(...)` or `.map(...)`: those
//! bypass the document, and `tests/openapi.rs` (which finds the routes in
//! these files and asks the router for each) fails.

mod accounts;
mod campaigns;
mod contacts;
mod daemons;
pub mod doc;
mod failed;
mod lists;
mod schedules;

use super::AppState;
use super::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::OnceLock;
use utoipa_actix_web::OpenApiFactory;
use utoipa_actix_web::service_config::ServiceConfig;

/// Every admin route under `/api/v1`, each with its OpenAPI operation.
fn scope() -> utoipa_actix_web::scope::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope("/api/v1")
        .app_data(web::PayloadConfig::new(1024 * 1024))
        .configure(|cfg: &mut ServiceConfig| {
            cfg.service(openapi_json).service(whoami);
        })
        .configure(accounts::configure)
        .configure(lists::configure)
        .configure(contacts::configure)
        .configure(campaigns::configure)
        .configure(failed::configure)
        .configure(schedules::configure)
        .configure(daemons::configure)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(scope());
}

/// The OpenAPI document of the admin API: the operations of the routes
/// [`configure`] registers, with their schemas.
pub fn document() -> utoipa::openapi::OpenApi {
    let routes = scope();
    let mut doc = <doc::Base as utoipa::OpenApi>::openapi();
    doc.paths.merge(routes.paths());
    let mut schemas = vec![];
    routes.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    doc
}

/// The document as served, rendered once.
static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();

/// This document (OpenAPI 3.1). No token needed.
#[utoipa::path(
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "the OpenAPI document of this API", body = Object))
)]
#[get("/openapi.json")]
async fn openapi_json() -> Result<HttpResponse, ApiError> {
    match DOCUMENT.get_or_init(|| document().to_json().map_err(|e| e.to_string())) {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone())),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not render");
            Err(ApiError::Unavailable(
                "the OpenAPI document does not render",
            ))
        }
    }
}

/// Who the caller is.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct WhoAmI {
    /// `operator` (may change things) or `read-only`.
    role: &'static str,
    /// The instance answering (`<daemon id>:<random>`).
    instance: String,
    /// This daemon's version.
    version: &'static str,
}

/// The caller's role, and the daemon answering.
#[utoipa::path(
    tag = "meta",
    operation_id = "whoami",
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the token's role", body = WhoAmI),
        doc::Reader,
    )
)]
#[get("/whoami")]
async fn whoami(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let role = authorize(&state, &req, Role::ReadOnly)?;
    Ok(HttpResponse::Ok().json(WhoAmI {
        role: role.as_str(),
        instance: state.instance.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    ReadOnly,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }
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
