//! Accounts: create, read, top up.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | POST | `/api/v1/accounts` `{"name", "price_per_segment_micros", "opening_balance_micros"?}` | operator |
//! | GET | `/api/v1/accounts/{id}` | read-only |
//! | POST | `/api/v1/accounts/{id}/top-up` `{"amount_micros"}` | operator |
//!
//! Money is in micros (1,000,000 = one unit of the account's currency).

use super::doc::{BadRequest, Invalid, NotFound, Operator, Reader};
use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::domain::{Account, AccountId, Money};
use crate::http::AppState;
use crate::http::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// The most one segment may cost, and one top-up may add (micros).
const MAX_PRICE_MICROS: i64 = 1_000_000_000;
const MAX_AMOUNT_MICROS: i64 = 1_000_000_000_000_000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create).service(get_account).service(top_up);
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    /// 1 to 200 characters.
    name: String,
    /// 1 to 1,000,000,000.
    price_per_segment_micros: i64,
    /// 0 by default.
    #[serde(default)]
    opening_balance_micros: i64,
}

/// An account as the API shows it: its webhook secrets never leave the
/// daemon (only whether they are set, and the delivery webhook's URL).
#[derive(Serialize, ToSchema)]
struct AccountView {
    id: String,
    name: String,
    balance_micros: i64,
    funded_micros: i64,
    price_per_segment_micros: i64,
    delivery_webhook_url: Option<String>,
    discord_webhook_set: bool,
    /// RFC 3339.
    created_at: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id.to_hex(),
            name: a.name.clone(),
            balance_micros: a.balance.0,
            funded_micros: a.funded.0,
            price_per_segment_micros: a.price_per_segment.0,
            delivery_webhook_url: a.delivery_webhook.as_ref().map(|w| w.url.clone()),
            discord_webhook_set: a.discord_webhook_url.is_some(),
            created_at: a
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

pub(super) fn name_field(field: &'static str, name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 200 {
        return Err(ApiError::InvalidField {
            field,
            message: "1 to 200 characters".into(),
        });
    }
    Ok(n.to_string())
}

/// A new account (money in micros).
#[utoipa::path(
    tag = "accounts",
    operation_id = "create_account",
    request_body = NewAccount,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the account", body = AccountView),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/accounts")]
async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let n: NewAccount = parse_body(&body)?;
    let name = name_field("name", &n.name)?;
    if !(1..=MAX_PRICE_MICROS).contains(&n.price_per_segment_micros) {
        return Err(ApiError::InvalidField {
            field: "price_per_segment_micros",
            message: format!("1 to {MAX_PRICE_MICROS}"),
        });
    }
    if !(0..=MAX_AMOUNT_MICROS).contains(&n.opening_balance_micros) {
        return Err(ApiError::InvalidField {
            field: "opening_balance_micros",
            message: format!("0 to {MAX_AMOUNT_MICROS}"),
        });
    }
    let account = Account {
        id: AccountId::new(),
        name,
        balance: Money::from_micros(n.opening_balance_micros),
        funded: Money::from_micros(n.opening_balance_micros),
        price_per_segment: Money::from_micros(n.price_per_segment_micros),
        delivery_webhook: None,
        discord_webhook_url: None,
        created_at: state.clock.now(),
    };
    state
        .stores
        .accounts
        .insert_account(account.clone())
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(AccountView::from(&account)))
}

/// The account (webhook secrets never shown).
#[utoipa::path(
    tag = "accounts",
    operation_id = "get_account",
    params(("id" = String, Path, description = "the account's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the account", body = AccountView),
        Reader, BadRequest, NotFound,
    )
)]
#[get("/accounts/{id}")]
async fn get_account(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let id: AccountId = parse_id("account id", &id)?;
    let a = state
        .stores
        .accounts
        .get_account(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no such account: {id}")))?;
    Ok(HttpResponse::Ok().json(AccountView::from(&a)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TopUp {
    /// 1 to 10^18.
    amount_micros: i64,
}

#[derive(Serialize, ToSchema)]
struct Balance {
    account: String,
    balance_micros: i64,
}

/// A top-up (counted as funded, so balances reconcile).
#[utoipa::path(
    tag = "accounts",
    operation_id = "top_up_account",
    params(("id" = String, Path, description = "the account's hex id")),
    request_body = TopUp,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "the new balance", body = Balance),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[post("/accounts/{id}/top-up")]
async fn top_up(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: AccountId = parse_id("account id", &id)?;
    let t: TopUp = parse_body(&body)?;
    if !(1..=MAX_AMOUNT_MICROS).contains(&t.amount_micros) {
        return Err(ApiError::InvalidField {
            field: "amount_micros",
            message: format!("1 to {MAX_AMOUNT_MICROS}"),
        });
    }
    if state
        .stores
        .accounts
        .get_account(id)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("no such account: {id}")));
    }
    let balance = state
        .stores
        .accounts
        .top_up(id, Money::from_micros(t.amount_micros))
        .await
        .map_err(store_error)?;
    tracing::info!(account = %id, amount_micros = t.amount_micros, "account topped up by an operator");
    Ok(HttpResponse::Ok().json(Balance {
        account: id.to_hex(),
        balance_micros: balance.0,
    }))
}
