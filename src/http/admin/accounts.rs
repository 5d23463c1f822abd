//! Accounts: create, read, top up.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | POST | `/api/v1/accounts` `{"name", "price_per_segment_micros", "opening_balance_micros"?}` | operator |
//! | GET | `/api/v1/accounts/{id}` | read-only |
//! | POST | `/api/v1/accounts/{id}/top-up` `{"amount_micros"}` | operator |
//! | PUT | `/api/v1/accounts/{id}/delivery-webhook` `{"url", "secret"}` | operator |
//! | DELETE | `/api/v1/accounts/{id}/delivery-webhook` | operator |
//! | GET | `/api/v1/accounts/{id}/delivery-webhook` (URL and outbox counts) | read-only |
//! | PUT | `/api/v1/accounts/{id}/discord-webhook` `{"url"}` | operator |
//! | DELETE | `/api/v1/accounts/{id}/discord-webhook` | operator |
//!
//! A delivery or Discord webhook URL is saved only if it passes the SSRF rule
//! (`net::outbound_url`: https, every resolved address public); otherwise
//! 422 naming `url`, and nothing changes. The rule is applied again before
//! every request.
//!
//! Money is in micros (1,000,000 = one unit of the account's currency).

use super::doc::{BadRequest, Invalid, NotFound, Operator, Reader};
use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::domain::{Account, AccountId, CustomerWebhook, Money};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::telemetry::Secret;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// The most one segment may cost, and one top-up may add (micros).
const MAX_PRICE_MICROS: i64 = 1_000_000_000;
const MAX_AMOUNT_MICROS: i64 = 1_000_000_000_000_000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(get_account)
        .service(top_up)
        .service(set_webhook)
        .service(clear_webhook)
        .service(get_webhook)
        .service(set_discord)
        .service(clear_discord);
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
    /// Echoed as `filterBots` in delivery webhooks.
    #[serde(default)]
    filter_bots: bool,
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
    filter_bots: bool,
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
            filter_bots: a.filter_bots,
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
        filter_bots: n.filter_bots,
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

/// Shortest and longest webhook secret (characters).
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=256;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    /// https; its host must resolve to public addresses only.
    url: String,
    /// 16 to 256 characters: the HMAC-SHA256 key of `X-Trackly-Signature`.
    secret: String,
}

/// An account's delivery webhook as the API shows it (never the secret).
#[derive(Serialize, ToSchema)]
struct WebhookView {
    account: String,
    delivery_webhook_url: Option<String>,
    /// Outbox entries by status (`pending`, `delivered`, `given_up`,
    /// `refused`); only on GET.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<std::collections::BTreeMap<String, u64>>,
}

/// A customer URL checked by the SSRF rule, or 422 naming `field`.
pub(super) async fn vetted_url(
    state: &AppState,
    field: &'static str,
    raw: &str,
) -> Result<String, ApiError> {
    if raw.len() > 2048 {
        return Err(ApiError::InvalidField {
            field,
            message: "at most 2048 characters".into(),
        });
    }
    state
        .outbound
        .vet(raw)
        .await
        .map(|v| v.url.to_string())
        .map_err(|refusal| ApiError::InvalidField {
            field,
            message: refusal.to_string(),
        })
}

/// Set the account's delivery webhook (checked by the SSRF rule when saved
/// and again before each request).
#[utoipa::path(
    tag = "accounts",
    operation_id = "set_delivery_webhook",
    params(("id" = String, Path, description = "the account's hex id")),
    request_body = WebhookBody,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored", body = WebhookView),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[put("/accounts/{id}/delivery-webhook")]
async fn set_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: AccountId = parse_id("account id", &id)?;
    let b: WebhookBody = parse_body(&body)?;
    let chars = b.secret.chars().count();
    if !SECRET_CHARS.contains(&chars) || b.secret.trim() != b.secret {
        return Err(ApiError::InvalidField {
            field: "secret",
            message: format!(
                "{} to {} characters, without leading or trailing spaces",
                SECRET_CHARS.start(),
                SECRET_CHARS.end()
            ),
        });
    }
    let url = vetted_url(&state, "url", &b.url).await?;
    let hook = CustomerWebhook {
        url: url.clone(),
        secret: Secret::new(b.secret),
    };
    let found = state
        .stores
        .accounts
        .set_delivery_webhook(id, Some(hook))
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such account: {id}")));
    }
    tracing::info!(account = %id, host = %crate::telemetry::mask_url(&url), "delivery webhook set by an operator");
    Ok(HttpResponse::Ok().json(WebhookView {
        account: id.to_hex(),
        delivery_webhook_url: Some(url),
        outbox: None,
    }))
}

/// Remove the account's delivery webhook.
#[utoipa::path(
    tag = "accounts",
    operation_id = "clear_delivery_webhook",
    params(("id" = String, Path, description = "the account's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "removed", body = WebhookView),
        Operator, BadRequest, NotFound,
    )
)]
#[delete("/accounts/{id}/delivery-webhook")]
async fn clear_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: AccountId = parse_id("account id", &id)?;
    let found = state
        .stores
        .accounts
        .set_delivery_webhook(id, None)
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such account: {id}")));
    }
    tracing::info!(account = %id, "delivery webhook cleared by an operator");
    Ok(HttpResponse::Ok().json(WebhookView {
        account: id.to_hex(),
        delivery_webhook_url: None,
        outbox: None,
    }))
}

/// The account's delivery webhook URL and its outbox entries by status.
#[utoipa::path(
    tag = "accounts",
    operation_id = "get_delivery_webhook",
    params(("id" = String, Path, description = "the account's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the URL (never the secret) and outbox counts", body = WebhookView),
        Reader, BadRequest, NotFound,
    )
)]
#[get("/accounts/{id}/delivery-webhook")]
async fn get_webhook(
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
    let counts = state
        .stores
        .outbox
        .outbox_counts(Some(id))
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(WebhookView {
        account: id.to_hex(),
        delivery_webhook_url: a.delivery_webhook.as_ref().map(|w| w.url.clone()),
        outbox: Some(
            counts
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
        ),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DiscordBody {
    /// The account's Discord webhook (https; its host must resolve to public
    /// addresses only). A credential: never shown again.
    url: String,
}

/// Whether the account has a Discord webhook (the URL is never shown).
#[derive(Serialize, ToSchema)]
struct DiscordView {
    account: String,
    discord_webhook_set: bool,
}

/// Set the account's Discord webhook for its alerts (the outbound URL rule
/// when saved and before each alert).
#[utoipa::path(
    tag = "accounts",
    operation_id = "set_discord_webhook",
    params(("id" = String, Path, description = "the account's hex id")),
    request_body = DiscordBody,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored", body = DiscordView),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[put("/accounts/{id}/discord-webhook")]
async fn set_discord(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: AccountId = parse_id("account id", &id)?;
    let b: DiscordBody = parse_body(&body)?;
    let url = vetted_url(&state, "url", &b.url).await?;
    let found = state
        .stores
        .accounts
        .set_discord_webhook(id, Some(Secret::new(url)))
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such account: {id}")));
    }
    tracing::info!(account = %id, "Discord webhook set by an operator");
    Ok(HttpResponse::Ok().json(DiscordView {
        account: id.to_hex(),
        discord_webhook_set: true,
    }))
}

/// Remove the account's Discord webhook.
#[utoipa::path(
    tag = "accounts",
    operation_id = "clear_discord_webhook",
    params(("id" = String, Path, description = "the account's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "removed", body = DiscordView),
        Operator, BadRequest, NotFound,
    )
)]
#[delete("/accounts/{id}/discord-webhook")]
async fn clear_discord(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: AccountId = parse_id("account id", &id)?;
    let found = state
        .stores
        .accounts
        .set_discord_webhook(id, None)
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such account: {id}")));
    }
    tracing::info!(account = %id, "Discord webhook cleared by an operator");
    Ok(HttpResponse::Ok().json(DiscordView {
        account: id.to_hex(),
        discord_webhook_set: false,
    }))
}
