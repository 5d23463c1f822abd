//! Failed messages: list them, and requeue ("resend to failed only").
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | GET | `/api/v1/failed?reason=&list=&schedule=&since=&until=&limit=` | read-only |
//! | POST | `/api/v1/failed/requeue` (below) | operator |
//!
//! The list answers `{"failed": [...], "in_doubt": [...]}`: NO_RESPONSE
//! dead letters apart, since the provider may have delivered them. Items
//! show ids, reason, detail, the provider's code, when, and whether the
//! message was requeued or resolved; never the body or the number.
//!
//! Requeue: `{"ids": [...]}` or `{"reason", "list"?, "schedule"?,
//! "limit"?}` (every open dead letter of that reason, newest first, at
//! most `limit`, 500 by default and at most), with `"include_in_doubt":
//! true` needed for NO_RESPONSE ones. Each is queued again as a new
//! message with the original's content and a fresh send time (so a fresh
//! staleness clock); it goes through every check again (STOP, blocked
//! words, window, balance). A dead letter is requeued at most once;
//! resolved ones (proved sent), undecodable ones (MALFORMED) and in-doubt
//! ones without the flag are skipped with the reason. Every daemon is told
//! that the lists have work.

use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::bus::Event;
use crate::domain::*;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::store::FailedFilter;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Dead letters per list or requeue request.
pub const MAX_ITEMS: usize = 500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/failed", web::get().to(list))
        .route("/failed/requeue", web::post().to(requeue));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    reason: Option<String>,
    list: Option<String>,
    schedule: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

fn reason(raw: &str) -> Result<FailureReason, ApiError> {
    FailureReason::ALL
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(raw.trim()))
        .ok_or_else(|| ApiError::InvalidField {
            field: "reason",
            message: format!("not a failure reason: {raw:?}"),
        })
}

fn time(field: &'static str, raw: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::InvalidField {
            field,
            message: format!("an RFC 3339 time, got {raw:?}"),
        })
}

fn limit(raw: Option<usize>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(MAX_ITEMS),
        Some(n) if (1..=MAX_ITEMS).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::InvalidField {
            field: "limit",
            message: format!("1 to {MAX_ITEMS}, got {n}"),
        }),
    }
}

fn item(f: &FailedMessage) -> Value {
    let o = f.original.as_ref();
    json!({
        "id": f.id.to_hex(),
        "account": f.account.to_hex(),
        "sending_list": f.sending_list.to_hex(),
        "reason": f.reason.as_str(),
        "detail": f.detail,
        "provider_code": f.provider_code,
        "failed_at": f.failed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "contact": o.map(|o| o.contact.to_hex()),
        "schedule": o.and_then(|o| o.schedule).map(|s| s.to_hex()),
        "run": o.and_then(|o| o.run).map(|r| r.to_hex()),
        "variant": o.and_then(|o| o.variant.clone()),
        "requeued_as": f.requeued.as_ref().map(|r| r.message.to_hex()),
        "resolved_by": f.resolved.as_ref().map(|r| r.by.clone()),
    })
}

async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let q: ListQuery = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let filter = FailedFilter {
        reason: q.reason.as_deref().map(reason).transpose()?,
        list: q.list.as_deref().map(|l| parse_id("list", l)).transpose()?,
        schedule: q
            .schedule
            .as_deref()
            .map(|s| parse_id("schedule", s))
            .transpose()?,
        since: q.since.as_deref().map(|t| time("since", t)).transpose()?,
        until: q.until.as_deref().map(|t| time("until", t)).transpose()?,
        open_only: false,
    };
    let found = state
        .stores
        .dead_letters
        .list_failed(&filter, limit(q.limit)?)
        .await
        .map_err(store_error)?;
    let (in_doubt, failed): (Vec<_>, Vec<_>) = found
        .iter()
        .partition(|f| f.reason == FailureReason::NoResponse);
    Ok(HttpResponse::Ok().json(json!({
        "failed": failed.into_iter().map(item).collect::<Vec<_>>(),
        "in_doubt": in_doubt.into_iter().map(item).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requeue {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    list: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    include_in_doubt: bool,
}

async fn requeue(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let r: Requeue = parse_body(&body)?;
    let candidates = match (r.ids.is_empty(), &r.reason) {
        (false, None) => {
            if r.ids.len() > MAX_ITEMS {
                return Err(ApiError::InvalidField {
                    field: "ids",
                    message: format!("at most {MAX_ITEMS} per request"),
                });
            }
            let ids: Vec<MessageId> = r
                .ids
                .iter()
                .map(|i| parse_id("ids", i))
                .collect::<Result<_, _>>()?;
            state
                .stores
                .dead_letters
                .get_many(&ids)
                .await
                .map_err(store_error)?
        }
        (true, Some(reason_raw)) => {
            let filter = FailedFilter {
                reason: Some(reason(reason_raw)?),
                list: r.list.as_deref().map(|l| parse_id("list", l)).transpose()?,
                schedule: r
                    .schedule
                    .as_deref()
                    .map(|s| parse_id("schedule", s))
                    .transpose()?,
                open_only: true,
                ..Default::default()
            };
            state
                .stores
                .dead_letters
                .list_failed(&filter, limit(r.limit)?)
                .await
                .map_err(store_error)?
        }
        _ => {
            return Err(ApiError::InvalidField {
                field: "ids",
                message:
                    "give either \"ids\" or \"reason\" (with \"list\", \"schedule\", \"limit\")"
                        .into(),
            });
        }
    };
    let now = state.clock.now();
    let mut done = vec![];
    let mut skipped = vec![];
    let mut lists = BTreeSet::new();
    for f in candidates {
        let why = if f.resolved.is_some() {
            Some("resolved: the provider took it")
        } else if f.requeued.is_some() {
            Some("requeued before")
        } else if f.reason == FailureReason::NoResponse && !r.include_in_doubt {
            Some("in doubt (may have been delivered): needs include_in_doubt")
        } else if f.original.is_none() {
            Some("no original message (undecodable)")
        } else {
            None
        };
        if let Some(why) = why {
            skipped.push(json!({"id": f.id.to_hex(), "why": why}));
            continue;
        }
        let Some(mut m) = f.original.clone() else {
            continue;
        };
        m.id = MessageId::new();
        m.send_at = now;
        m.not_before = now;
        m.claimed_by = None;
        m.claimed_at = None;
        m.claim_owner = None;
        m.claim_count = 0;
        m.attempts = 0;
        m.billing_blocked_since = None;
        m.last_error = None;
        m.queued_at = now;
        let new_id = m.id;
        let list = m.sending_list;
        match state.stores.dead_letters.requeue(f.id, m, now).await {
            Ok(true) => {
                lists.insert(list);
                done.push(json!({"failed": f.id.to_hex(), "message": new_id.to_hex()}));
            }
            Ok(false) => skipped.push(json!({"id": f.id.to_hex(), "why": "requeued before"})),
            Err(e) => {
                // What is done stays done; the operator repeats the call.
                tracing::warn!(error = %e, done = done.len(), "requeue stopped by a store error");
                return Err(ApiError::StoreUnavailable);
            }
        }
    }
    if !lists.is_empty() {
        tracing::info!(count = done.len(), "dead letters requeued by an operator");
        if let Err(e) = state
            .bus
            .publish(Event::Queued {
                lists: lists.into_iter().collect(),
            })
            .await
        {
            tracing::warn!(error = %e, "could not announce requeued messages; coordinators will find them at their next poll");
        }
    }
    Ok(HttpResponse::Ok().json(json!({"requeued": done, "skipped": skipped})))
}
