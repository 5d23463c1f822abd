//! The one table of HTTP errors: every handler answers a failure from here,
//! so a code always means the same thing, with the same status, wherever it
//! comes from. The body is `{"error": "<code>", "message": "<text>"}`, and
//! `"field": "<path>"` when one field of a request body is at fault.
//!
//! | code | status | when |
//! | --- | --- | --- |
//! | `malformed_report` | 400 | a delivery report or inbound message that does not parse (nothing changes) |
//! | `bad_request` | 400 | an admin request body that is not the expected JSON, or a path id that is not an id (nothing changes) |
//! | `unauthorized` | 401 | an admin request without a known bearer token |
//! | `forbidden` | 403 | a wrong webhook token, an unknown credential set, a missing or wrong signature; a read-only token on an operator route |
//! | `unknown_link` | 404 | no short link has this code (or it cannot be one) |
//! | `not_found` | 404 | no such list, schedule, … |
//! | `conflict` | 409 | the request does not fit the resource's state (resuming a cancelled schedule) |
//! | `invalid_field` | 422 | a well-formed admin body with a value that is not allowed (the field is named), e.g. a webhook URL the SSRF rule refuses |
//! | `overloaded` | 503 | too many reports wait to be written; the provider retries |
//! | `store_unavailable` | 503 | the store did not answer (a report write, a link lookup, an admin read); retry |
//! | `unavailable` | 503 | the actor that does it is gone or disabled on this daemon (shutting down; no scheduler); retry elsewhere |

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The body of every error answer (the admin API's OpenAPI document shows
/// this type, so the two cannot differ).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The stable code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `invalid_field`, `store_unavailable`,
    /// `unavailable`, `malformed_report`, `unknown_link`, `overloaded`.
    #[schema(example = "invalid_field")]
    pub error: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault (`invalid_field` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedReport(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("a bearer token is needed (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such link")]
    UnknownLink,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("too many reports waiting; retry later")]
    Overloaded,
    #[error("the store did not answer; retry")]
    StoreUnavailable,
    #[error("{0}; retry")]
    Unavailable(&'static str),
}

impl ApiError {
    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedReport(_) => "malformed_report",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownLink => "unknown_link",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Overloaded => "overloaded",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedReport(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownLink | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded | ApiError::StoreUnavailable | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            field: match self {
                ApiError::InvalidField { field, .. } => Some(field),
                _ => None,
            },
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(body)
    }
}

impl From<crate::providers::MalformedReport> for ApiError {
    fn from(e: crate::providers::MalformedReport) -> Self {
        ApiError::MalformedReport(e.0)
    }
}
