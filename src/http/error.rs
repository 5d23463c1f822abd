//! The one table of HTTP errors: every handler answers a failure from here,
//! so a code always means the same thing, with the same status, wherever it
//! comes from. The body is `{"error": "<code>", "message": "<text>"}`.
//!
//! | code | status | when |
//! | --- | --- | --- |
//! | `malformed_report` | 400 | a delivery report that does not parse (nothing changes) |
//! | `forbidden` | 403 | a wrong webhook token, an unknown credential set, a missing or wrong signature |
//! | `unknown_link` | 404 | no short link has this code (or it cannot be one) |
//! | `overloaded` | 503 | too many reports wait to be written; the provider retries |
//! | `store_unavailable` | 503 | the store did not answer (a report write, a link lookup); retry |
//! | `unavailable` | 503 | the actor that writes is gone (shutting down) |

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedReport(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such link")]
    UnknownLink,
    #[error("too many reports waiting; retry later")]
    Overloaded,
    #[error("the store did not answer; retry")]
    StoreUnavailable,
    #[error("reports not stored; retry")]
    Unavailable,
}

impl ApiError {
    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedReport(_) => "malformed_report",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownLink => "unknown_link",
            ApiError::Overloaded => "overloaded",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Unavailable => "unavailable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedReport(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownLink => StatusCode::NOT_FOUND,
            ApiError::Overloaded | ApiError::StoreUnavailable | ApiError::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(json!({"error": self.code(), "message": self.to_string()}))
    }
}

impl From<crate::providers::MalformedReport> for ApiError {
    fn from(e: crate::providers::MalformedReport) -> Self {
        ApiError::MalformedReport(e.0)
    }
}
