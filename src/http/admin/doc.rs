//! What every route's OpenAPI operation shares: the bearer scheme, the
//! error body ([`ErrorBody`], the type the error table answers with) and
//! the error responses, as types a `#[utoipa::path]` lists in its
//! `responses(...)`:
//!
//! - [`Reader`] (401, 503) on every route, [`Operator`] (401, 403, 503) on
//!   an operator route instead;
//! - [`BadRequest`] (400), [`NotFound`] (404), [`Conflict`] (409),
//!   [`Invalid`] (422) where the handler can answer them.
//!
//! The security requirement names the role: `security(("bearer" =
//! ["operator"]))` or `security(("bearer" = ["read-only"]))` (OpenAPI 3.1
//! lets a bearer requirement list role names).

use crate::http::error::ErrorBody;
use std::collections::BTreeMap;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, response::Response};

/// The name of the security scheme the operations refer to.
pub const BEARER: &str = "bearer";

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .into()
}

macro_rules! responses {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => $what:literal),+ $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$(($status.to_string(), error($what))),+])
            }
        }
    )*};
}

responses! {
    /// A read-only route: no or an unknown token; the store or actor did not answer.
    Reader {
        "401" => "`unauthorized`: no bearer token, or an unknown one",
        "503" => "`store_unavailable` or `unavailable`: the store or the actor that does it did not answer; retry",
    }
    /// An operator route: as [`Reader`], and 403 for a read-only token.
    Operator {
        "401" => "`unauthorized`: no bearer token, or an unknown one",
        "403" => "`forbidden`: a read-only token on an operator route",
        "503" => "`store_unavailable` or `unavailable`: the store or the actor that does it did not answer; retry",
    }
    /// A body, query or path id that does not parse.
    BadRequest {
        "400" => "`bad_request`: the body is not the expected JSON (unknown fields, operators such as `{\"$gt\": \"\"}`, wrong types: the path of the first bad field is named), or an id is not a 24-digit hex id; nothing changed",
    }
    /// The resource the path names does not exist.
    NotFound {
        "404" => "`not_found`: no such resource",
    }
    /// The request does not fit the resource's state.
    Conflict {
        "409" => "`conflict`: the request does not fit the resource's state; nothing changed",
    }
    /// A well-formed request with a value that is not allowed.
    Invalid {
        "422" => "`invalid_field`: a value that is not allowed; `field` names it; nothing changed",
    }
}

/// The parts of the document that no handler carries: info, the bearer
/// scheme, the error body.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Trackly Executor admin API",
        description = "JSON under /api/v1 with `Authorization: Bearer <token>`: the operator token may change things, the read-only token only read. Every error answers `{\"error\": code, \"message\", \"field\"?}`. Ids are 24-digit hex strings, times RFC 3339. Generated from the handlers (src/http/admin/)."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme)
)]
pub struct Base;

pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "TRACKLY_ADMIN_TOKEN (role `operator`) or TRACKLY_READONLY_TOKEN (role `read-only`); each operation's requirement names the role it needs"
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(http));
    }
}
