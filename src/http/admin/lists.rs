//! Sending lists: read one with its queue depth; pause, resume and change
//! its rate on every daemon (stored, then broadcast); the queue depth of
//! every list.
//!
//! A new list: `{"account", "name", "provider": {"kind": "infobip" |
//! "twilio" | "cm" | "fake", "credentials"?}, "from_numbers": ["+1…"],
//! "rate_limit_per_minute"? (17,000), "cooldown_secs"? (0),
//! "blocked_words"? ([]), "window"? ({"start": "08:00", "end": "21:00"}),
//! "default_time_zone"? (IANA), "help_reply"? (the answer to HELP and INFO)}`.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | POST | `/api/v1/lists` (below) | operator |
//! | GET | `/api/v1/lists/{id}` | read-only |
//! | POST | `/api/v1/lists/{id}/pause` | operator |
//! | POST | `/api/v1/lists/{id}/resume` | operator |
//! | PUT | `/api/v1/lists/{id}/rate` `{"per_minute": n}` | operator |
//! | POST | `/api/v1/lists/{id}/drain?wait=30` | operator |
//! | PUT | `/api/v1/lists/{id}/discord-webhook` `{"url"}` | operator |
//! | DELETE | `/api/v1/lists/{id}/discord-webhook` | operator |
//! | GET | `/api/v1/queue` | read-only |
//! | GET | `/api/v1/lists` | read-only |
//!
//! `GET /api/v1/lists` is the queue view (the dashboard's, `trackly ctl
//! lists`): per list its queue depth, messages claimed, rate limit, current
//! rate (the live daemons' leases summed), paused or not, which daemons
//! serve it, and its in-doubt messages by what became of them.

use super::doc::{BadRequest, Invalid, NotFound, Operator, Reader};
use super::{Role, authorize, parse_body, parse_id, store_error, to_json};
use crate::domain::list::DEFAULT_RATE_PER_MINUTE;
use crate::domain::{
    AccountId, ListStatus, ProviderSettings, SendingList, SendingListId, TcpaWindow,
};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::messages::{ControlError, ListCommand, ListControl};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// The highest rate a list may be given (messages per minute).
pub const MAX_RATE_PER_MINUTE: u32 = 6_000_000;

/// Characters in a list's HELP reply (ten segments of GSM-7).
const MAX_HELP_REPLY: usize = 1530;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_list)
        .service(get_list)
        .service(pause)
        .service(resume)
        .service(set_rate)
        .service(drain)
        .service(queue)
        .service(overview)
        .service(set_discord)
        .service(clear_discord);
}

/// Lists shown by the queue view, newest first.
const LISTS_SHOWN: usize = 200;

/// In-doubt (NO_RESPONSE) messages of one list by what became of them.
#[derive(Serialize, ToSchema)]
struct InDoubt {
    /// Waiting: for a delivery report, the provider's records (the
    /// Resolver) or an operator.
    waiting: u64,
    /// Taken by the provider (a report or the provider's records said so).
    taken: u64,
    /// Queued again (the provider had no record, or an operator resent it).
    resent: u64,
}

/// One sending list in the queue view.
#[derive(Serialize, ToSchema)]
struct ListView {
    id: String,
    account: String,
    name: String,
    /// `infobip`, `twilio`, `cm` or `fake`.
    provider: &'static str,
    /// Paused by an operator (or a rate of 0): nothing is sent.
    paused: bool,
    rate_limit_per_minute: u32,
    /// Messages sent per minute by every live daemon together, as their
    /// leases last reported (each over the interval before its heartbeat).
    current_rate_per_minute: u64,
    /// Messages waiting in the queue, and of those claimed by a daemon now.
    queue_depth: u64,
    claimed: u64,
    /// Live daemons serving it now (daemon ids; a daemon serves a list
    /// while it has work for it).
    served_by: Vec<String>,
    /// Live daemons that have its provider's credentials (could serve it).
    able: Vec<String>,
    in_doubt: InDoubt,
}

#[derive(Serialize, ToSchema)]
struct ListOverview {
    /// Newest first, at most 200.
    lists: Vec<ListView>,
}

/// Every sending list with its queue: depth, rate limit, current rate, paused or not, serving daemons, in-doubt messages.
#[utoipa::path(
    tag = "lists",
    operation_id = "list_lists",
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the queue view, per list", body = ListOverview),
        Reader,
    )
)]
#[get("/lists")]
async fn overview(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let lists = state
        .stores
        .lists
        .lists(LISTS_SHOWN)
        .await
        .map_err(store_error)?;
    let (now, leases) = super::daemons::leases(&state).await?;
    let live: Vec<_> = leases.into_iter().filter(|l| l.live_at(now)).collect();
    let depth = state
        .stores
        .queue
        .depth_by_list()
        .await
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(lists.len());
    for l in lists {
        let hex = l.id.to_hex();
        let count = |open_only: bool, settled_as_sent: Option<bool>| {
            let f = crate::store::FailedFilter {
                reason: Some(crate::domain::FailureReason::NoResponse),
                list: Some(l.id),
                open_only,
                settled_as_sent,
                ..Default::default()
            };
            let store = state.stores.dead_letters.clone();
            async move { store.count_failed(&f).await.map_err(store_error) }
        };
        let in_doubt = InDoubt {
            waiting: count(true, None).await?,
            taken: count(false, Some(true)).await?,
            resent: count(false, Some(false)).await?,
        };
        let queue_depth = depth.get(&l.id).copied().unwrap_or(0);
        let claimed = if queue_depth > 0 {
            state
                .stores
                .queue
                .list_claimed(l.id)
                .await
                .map_err(store_error)?
        } else {
            0
        };
        let mut served_by: Vec<String> = live
            .iter()
            .filter(|d| d.lists.contains(&l.id))
            .map(|d| d.daemon_id.clone())
            .collect();
        served_by.sort();
        served_by.dedup();
        let key = l.provider.key();
        let mut able: Vec<String> = live
            .iter()
            .filter(|d| d.providers.contains(&key))
            .map(|d| d.daemon_id.clone())
            .collect();
        able.sort();
        able.dedup();
        out.push(ListView {
            current_rate_per_minute: live
                .iter()
                .filter_map(|d| d.sent_per_minute.get(&hex))
                .sum(),
            id: hex,
            account: l.account.to_hex(),
            name: l.name,
            provider: l.provider.kind().as_str(),
            paused: l.status == ListStatus::Paused || l.rate_limit_per_minute == 0,
            rate_limit_per_minute: l.rate_limit_per_minute,
            queue_depth,
            claimed,
            served_by,
            able,
            in_doubt,
        });
    }
    Ok(HttpResponse::Ok().json(ListOverview { lists: out }))
}

/// The list and its queue depth.
#[utoipa::path(
    tag = "lists",
    operation_id = "get_list",
    params(("id" = String, Path, description = "the list's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the stored list (`_id`, `account`, `name`, `provider`, `from_numbers`, `rate_limit_per_minute`, `cooldown_secs`, `blocked_words`, `tcpa_window`, `default_time_zone`, `help_reply`, `status`, `created_at`), `discord_webhook_set` and `queue_depth`", body = Object),
        Reader, BadRequest, NotFound,
    )
)]
#[get("/lists/{id}")]
async fn get_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let id: SendingListId = parse_id("list id", &id)?;
    let list = state
        .stores
        .lists
        .get_list(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no such sending list: {id}")))?;
    let depth = state
        .stores
        .queue
        .list_depth(id)
        .await
        .map_err(store_error)?;
    let discord_webhook_set = list.discord_webhook_url.is_some();
    let mut body = to_json(&list)?;
    // The Discord URL is a credential: only whether one is set.
    if let Some(o) = body.as_object_mut() {
        o.remove("discord_webhook_url");
    }
    body["discord_webhook_set"] = json!(discord_webhook_set);
    body["queue_depth"] = json!(depth);
    Ok(HttpResponse::Ok().json(body))
}

/// Pause the list: stored, then broadcast; every daemon stops sending within a second or two.
#[utoipa::path(
    tag = "lists",
    operation_id = "pause_list",
    params(("id" = String, Path, description = "the list's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "applied", body = Applied),
        Operator, BadRequest, NotFound,
    )
)]
#[post("/lists/{id}/pause")]
async fn pause(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&state, &req, &id, ListCommand::Pause).await
}

/// How long a drain waits at most, and by default (seconds).
const MAX_DRAIN_WAIT: u64 = 120;
const DEFAULT_DRAIN_WAIT: u64 = 30;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct DrainQuery {
    /// Seconds to wait for the daemons' batches to finish (30; at most 120).
    #[serde(default)]
    wait: Option<u64>,
}

/// What a drain found.
#[derive(Serialize, ToSchema)]
struct Drained {
    list: String,
    /// No daemon holds a claim on the list any more.
    drained: bool,
    /// Messages still claimed by some daemon (0 when drained).
    claimed: u64,
    /// Messages waiting in the queue (they stay there until a resume).
    queued: u64,
}

/// Drain the list on every daemon: it is paused (stored, then broadcast, so
/// no daemon claims more of it); chunks already permitted finish and the
/// rest of each batch goes back to the queue. Answers once no daemon holds a
/// claim on the list, or when `wait` runs out (`drained: false`). Resume
/// sends again.
#[utoipa::path(
    tag = "lists",
    operation_id = "drain_list",
    params(("id" = String, Path, description = "the list's hex id"), DrainQuery),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "paused everywhere; whether every daemon let go of it", body = Drained),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[post("/lists/{id}/drain")]
async fn drain(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let q: DrainQuery = web::Query::<DrainQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let wait = q.wait.unwrap_or(DEFAULT_DRAIN_WAIT);
    if wait > MAX_DRAIN_WAIT {
        return Err(ApiError::InvalidField {
            field: "wait",
            message: format!("at most {MAX_DRAIN_WAIT} seconds"),
        });
    }
    control(&state, &req, &id, ListCommand::Pause).await?;
    let list: SendingListId = parse_id("list id", &id)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    let claimed = loop {
        let claimed = state
            .stores
            .queue
            .list_claimed(list)
            .await
            .map_err(store_error)?;
        if claimed == 0 || std::time::Instant::now() >= deadline {
            break claimed;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let queued = state
        .stores
        .queue
        .list_depth(list)
        .await
        .map_err(store_error)?;
    tracing::info!(list = %list, claimed, queued, "list drained by an operator");
    Ok(HttpResponse::Ok().json(Drained {
        list: list.to_hex(),
        drained: claimed == 0,
        claimed,
        queued,
    }))
}

/// Resume the list: stored, then broadcast.
#[utoipa::path(
    tag = "lists",
    operation_id = "resume_list",
    params(("id" = String, Path, description = "the list's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "applied", body = Applied),
        Operator, BadRequest, NotFound,
    )
)]
#[post("/lists/{id}/resume")]
async fn resume(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&state, &req, &id, ListCommand::Resume).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rate {
    /// Messages per minute on every daemon together, 0 (paused) to 6,000,000.
    per_minute: u32,
}

/// What a list control did.
#[derive(Serialize, ToSchema)]
struct Applied {
    list: String,
    /// `Pause`, `Resume` or `SetRateLimit(n)`.
    applied: String,
}

/// The list's rate on every daemon (0 pauses).
#[utoipa::path(
    tag = "lists",
    operation_id = "set_list_rate",
    params(("id" = String, Path, description = "the list's hex id")),
    request_body = Rate,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "applied", body = Applied),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[put("/lists/{id}/rate")]
async fn set_rate(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let rate: Rate = parse_body(&body)?;
    if rate.per_minute > MAX_RATE_PER_MINUTE {
        return Err(ApiError::InvalidField {
            field: "per_minute",
            message: format!(
                "at most {MAX_RATE_PER_MINUTE} messages per minute, got {}",
                rate.per_minute
            ),
        });
    }
    control(
        &state,
        &req,
        &id,
        ListCommand::SetRateLimit(rate.per_minute),
    )
    .await
}

async fn control(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    command: ListCommand,
) -> Result<HttpResponse, ApiError> {
    authorize(state, req, Role::Operator)?;
    let list: SendingListId = parse_id("list id", id)?;
    match state.control.send(ListControl { list, command }).await {
        Ok(Ok(())) => {
            tracing::info!(list = %list, command = ?command, "list control by an operator");
            Ok(HttpResponse::Ok().json(Applied {
                list: list.to_hex(),
                applied: format!("{command:?}"),
            }))
        }
        Ok(Err(ControlError::UnknownList(l))) => {
            Err(ApiError::NotFound(format!("no such sending list: {l}")))
        }
        Ok(Err(ControlError::ShuttingDown)) | Err(_) => {
            Err(ApiError::Unavailable("this daemon is shutting down"))
        }
        Ok(Err(ControlError::Store(e))) => Err(store_error(e)),
        Ok(Err(ControlError::SupervisorGone(_))) => Err(ApiError::Unavailable(
            "the list's supervisor did not answer",
        )),
    }
}

/// Queue depth per list.
#[derive(Serialize, ToSchema)]
struct QueueDepth {
    /// List id → messages queued.
    lists: BTreeMap<String, u64>,
}

/// Queue depth per list.
#[utoipa::path(
    tag = "lists",
    operation_id = "queue_depth",
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "messages queued per list", body = QueueDepth),
        Reader,
    )
)]
#[get("/queue")]
async fn queue(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let depth = state
        .stores
        .queue
        .depth_by_list()
        .await
        .map_err(store_error)?;
    let lists = depth.into_iter().map(|(l, n)| (l.to_hex(), n)).collect();
    Ok(HttpResponse::Ok().json(QueueDepth { lists }))
}

/// The TCPA window, local times in the contact's zone.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WindowBody {
    /// HH:MM, e.g. 08:00.
    start: String,
    /// HH:MM, e.g. 21:00.
    end: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewList {
    /// The account's hex id.
    account: String,
    name: String,
    provider: ProviderSettings,
    /// +E.164 numbers (validated, stored E.164) or alphanumeric sender ids (up to 11 characters).
    #[serde(default)]
    from_numbers: Vec<String>,
    /// 17,000 by default.
    #[serde(default)]
    rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    cooldown_secs: u64,
    #[serde(default)]
    blocked_words: Vec<String>,
    /// 08:00 to 21:00 by default.
    #[serde(default)]
    window: Option<WindowBody>,
    /// An IANA time zone.
    #[serde(default)]
    default_time_zone: Option<String>,
    /// The answer to an inbound HELP or INFO (at most 1,530 characters).
    #[serde(default)]
    help_reply: Option<String>,
}

fn minute_of(field: &'static str, hhmm: &str) -> Result<u16, ApiError> {
    chrono::NaiveTime::parse_from_str(hhmm.trim(), "%H:%M")
        .map(|t| {
            use chrono::Timelike;
            (t.hour() * 60 + t.minute()) as u16
        })
        .map_err(|_| ApiError::InvalidField {
            field,
            message: format!("a local time HH:MM, got {hhmm:?}"),
        })
}

/// A new sending list.
#[utoipa::path(
    tag = "lists",
    operation_id = "create_list",
    request_body = NewList,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the stored list", body = Object),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/lists")]
async fn create_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let n: NewList = parse_body(&body)?;
    let account: AccountId = parse_id("account", &n.account)?;
    let name = super::accounts::name_field("name", &n.name)?;
    let mut from_numbers = Vec::with_capacity(n.from_numbers.len());
    for raw in &n.from_numbers {
        let raw = raw.trim();
        // A number (valid per libphonenumber, stored E.164), or an
        // alphanumeric sender id (1 to 11 letters, digits or spaces).
        let alphanumeric = !raw.is_empty()
            && raw.chars().count() <= 11
            && raw.chars().any(|c| c.is_ascii_alphabetic())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ');
        if alphanumeric {
            from_numbers.push(raw.to_string());
            continue;
        }
        match crate::rules::phone::e164_of(raw, None) {
            Ok(e) => from_numbers.push(e.as_str().to_string()),
            Err(e) => {
                return Err(ApiError::InvalidField {
                    field: "from_numbers",
                    message: format!(
                        "{e} (a +E.164 number or an alphanumeric sender id of up to 11 characters)"
                    ),
                });
            }
        }
    }
    let rate = n.rate_limit_per_minute.unwrap_or(DEFAULT_RATE_PER_MINUTE);
    if rate > MAX_RATE_PER_MINUTE {
        return Err(ApiError::InvalidField {
            field: "rate_limit_per_minute",
            message: format!("at most {MAX_RATE_PER_MINUTE}"),
        });
    }
    if n.cooldown_secs > 366 * 86_400 {
        return Err(ApiError::InvalidField {
            field: "cooldown_secs",
            message: "at most a year".into(),
        });
    }
    let tcpa_window = match &n.window {
        Some(w) => TcpaWindow {
            start_minute: minute_of("window.start", &w.start)?,
            end_minute: minute_of("window.end", &w.end)?,
        },
        None => TcpaWindow::default(),
    };
    if let Some(z) = &n.default_time_zone
        && z.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(ApiError::InvalidField {
            field: "default_time_zone",
            message: format!("not an IANA time zone: {z:?}"),
        });
    }
    if n.blocked_words
        .iter()
        .any(|w| w.trim().is_empty() || w.len() > 100)
    {
        return Err(ApiError::InvalidField {
            field: "blocked_words",
            message: "each 1 to 100 characters".into(),
        });
    }
    let help_reply = match n.help_reply.as_deref().map(str::trim) {
        Some("") => {
            return Err(ApiError::InvalidField {
                field: "help_reply",
                message: "empty: leave it out for no reply".into(),
            });
        }
        Some(t) if t.chars().count() > MAX_HELP_REPLY => {
            return Err(ApiError::InvalidField {
                field: "help_reply",
                message: format!("at most {MAX_HELP_REPLY} characters"),
            });
        }
        other => other.map(str::to_string),
    };
    if state
        .stores
        .accounts
        .get_account(account)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(ApiError::InvalidField {
            field: "account",
            message: format!("no such account: {account}"),
        });
    }
    let list = SendingList {
        id: SendingListId::new(),
        account,
        name,
        provider: n.provider,
        from_numbers,
        rate_limit_per_minute: rate,
        cooldown_secs: n.cooldown_secs,
        blocked_words: n.blocked_words,
        tcpa_window,
        default_time_zone: n.default_time_zone,
        help_reply,
        status: ListStatus::Active,
        discord_webhook_url: None,
        created_at: state.clock.now(),
    };
    state
        .stores
        .lists
        .insert_list(list.clone())
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(to_json(&list)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ListDiscordBody {
    /// The list's Discord webhook (https; its host must resolve to public
    /// addresses only); its alerts go there instead of the account's. A
    /// credential: never shown again.
    url: String,
}

/// Whether the list has a Discord webhook (the URL is never shown).
#[derive(Serialize, ToSchema)]
struct ListDiscordView {
    list: String,
    discord_webhook_set: bool,
}

/// Set the list's Discord webhook for its alerts (the outbound URL rule
/// when saved and before each alert); without one, the account's is used.
#[utoipa::path(
    tag = "lists",
    operation_id = "set_list_discord_webhook",
    params(("id" = String, Path, description = "the list's hex id")),
    request_body = ListDiscordBody,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored", body = ListDiscordView),
        Operator, BadRequest, NotFound, Invalid,
    )
)]
#[put("/lists/{id}/discord-webhook")]
async fn set_discord(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: SendingListId = parse_id("list id", &id)?;
    let b: ListDiscordBody = parse_body(&body)?;
    let url = super::accounts::vetted_url(&state, "url", &b.url).await?;
    let found = state
        .stores
        .lists
        .set_list_discord_webhook(id, Some(crate::telemetry::Secret::new(url)))
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such sending list: {id}")));
    }
    tracing::info!(list = %id, "list Discord webhook set by an operator");
    Ok(HttpResponse::Ok().json(ListDiscordView {
        list: id.to_hex(),
        discord_webhook_set: true,
    }))
}

/// Remove the list's Discord webhook (its alerts go to the account's).
#[utoipa::path(
    tag = "lists",
    operation_id = "clear_list_discord_webhook",
    params(("id" = String, Path, description = "the list's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "removed", body = ListDiscordView),
        Operator, BadRequest, NotFound,
    )
)]
#[delete("/lists/{id}/discord-webhook")]
async fn clear_discord(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let id: SendingListId = parse_id("list id", &id)?;
    let found = state
        .stores
        .lists
        .set_list_discord_webhook(id, None)
        .await
        .map_err(store_error)?;
    if !found {
        return Err(ApiError::NotFound(format!("no such sending list: {id}")));
    }
    tracing::info!(list = %id, "list Discord webhook cleared by an operator");
    Ok(HttpResponse::Ok().json(ListDiscordView {
        list: id.to_hex(),
        discord_webhook_set: false,
    }))
}
