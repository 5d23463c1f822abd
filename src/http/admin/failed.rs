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

use super::doc::{BadRequest, Invalid, Operator, Reader};
use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::bus::Event;
use crate::domain::*;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::store::FailedFilter;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

/// Dead letters per list or requeue request.
pub const MAX_ITEMS: usize = 500;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_failed).service(requeue);
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A failure reason (any case), e.g. `NO_RESPONSE`.
    reason: Option<String>,
    /// A sending list's hex id.
    list: Option<String>,
    /// A schedule's hex id.
    schedule: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    /// RFC 3339.
    until: Option<String>,
    /// 1 to 500 (500 by default).
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

/// A failed message as listed: never its body or number.
#[derive(Serialize, ToSchema)]
struct FailedItem {
    id: String,
    account: String,
    sending_list: String,
    reason: &'static str,
    detail: String,
    provider_code: Option<String>,
    /// RFC 3339.
    failed_at: String,
    contact: Option<String>,
    schedule: Option<String>,
    run: Option<String>,
    variant: Option<String>,
    /// The new message's id, once requeued.
    requeued_as: Option<String>,
    /// `delivery_report`, `provider_lookup` or `operator`, once resolved.
    resolved_by: Option<String>,
}

fn item(f: &FailedMessage) -> FailedItem {
    let o = f.original.as_ref();
    FailedItem {
        id: f.id.to_hex(),
        account: f.account.to_hex(),
        sending_list: f.sending_list.to_hex(),
        reason: f.reason.as_str(),
        detail: f.detail.clone(),
        provider_code: f.provider_code.clone(),
        failed_at: f
            .failed_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        contact: o.map(|o| o.contact.to_hex()),
        schedule: o.and_then(|o| o.schedule).map(|s| s.to_hex()),
        run: o.and_then(|o| o.run).map(|r| r.to_hex()),
        variant: o.and_then(|o| o.variant.clone()),
        requeued_as: f.requeued.as_ref().map(|r| r.message.to_hex()),
        resolved_by: f.resolved.as_ref().map(|r| r.by.clone()),
    }
}

#[derive(Serialize, ToSchema)]
struct FailedList {
    failed: Vec<FailedItem>,
    /// NO_RESPONSE: the provider may have delivered them.
    in_doubt: Vec<FailedItem>,
    /// Every in-doubt message (within the list, schedule and time filters),
    /// by what became of it.
    in_doubt_summary: InDoubtSummary,
}

#[derive(Serialize, ToSchema)]
struct InDoubtSummary {
    /// Still in doubt: waiting for a report, the provider's records, or an
    /// operator.
    open: u64,
    /// Resolved as sent by a delivery report or the provider's records.
    resolved_as_sent: u64,
    /// Queued again: by the Resolver (the provider had no record) or by an
    /// operator (`include_in_doubt`).
    requeued: u64,
    /// The open ones by their list's provider: Infobip's and Twilio's wait
    /// for the Resolver; CM has no lookup, so its wait for a delivery report
    /// or an operator (counted over the newest 10,000).
    open_by_provider: std::collections::BTreeMap<String, u64>,
}

/// Failed messages, newest first (at most 500), in-doubt ones apart.
#[utoipa::path(
    tag = "failed",
    operation_id = "list_failed",
    params(ListQuery),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "failed and in-doubt messages", body = FailedList),
        Reader, BadRequest, Invalid,
    )
)]
#[get("/failed")]
async fn list_failed(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
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
        settled_as_sent: None,
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
    let count = |open_only: bool, settled_as_sent: Option<bool>| {
        let f = FailedFilter {
            reason: Some(FailureReason::NoResponse),
            open_only,
            settled_as_sent,
            ..filter.clone()
        };
        let store = state.stores.dead_letters.clone();
        async move { store.count_failed(&f).await }
    };
    let open_letters = state
        .stores
        .dead_letters
        .list_failed(
            &FailedFilter {
                reason: Some(FailureReason::NoResponse),
                open_only: true,
                ..filter.clone()
            },
            10_000,
        )
        .await
        .map_err(store_error)?;
    let mut per_list: std::collections::BTreeMap<SendingListId, u64> = Default::default();
    for f in &open_letters {
        *per_list.entry(f.sending_list).or_insert(0) += 1;
    }
    let mut open_by_provider: std::collections::BTreeMap<String, u64> = Default::default();
    for (list, n) in per_list {
        let kind = match state
            .stores
            .lists
            .get_list(list)
            .await
            .map_err(store_error)?
        {
            Some(l) => l.provider.kind().as_str().to_string(),
            None => "deleted list".to_string(),
        };
        *open_by_provider.entry(kind).or_insert(0) += n;
    }
    let in_doubt_summary = InDoubtSummary {
        open_by_provider,
        open: count(true, None).await.map_err(store_error)?,
        resolved_as_sent: count(false, Some(true)).await.map_err(store_error)?,
        requeued: count(false, Some(false)).await.map_err(store_error)?,
    };
    Ok(HttpResponse::Ok().json(FailedList {
        failed: failed.into_iter().map(item).collect(),
        in_doubt: in_doubt.into_iter().map(item).collect(),
        in_doubt_summary,
    }))
}

/// Either `ids`, or `reason` (with `list`, `schedule`, `limit`).
#[derive(Deserialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
struct RequeuedOne {
    /// The dead letter's id.
    failed: String,
    /// The new message's id.
    message: String,
}

#[derive(Serialize, ToSchema)]
struct SkippedOne {
    id: String,
    why: &'static str,
}

#[derive(Serialize, ToSchema)]
struct RequeueReport {
    requeued: Vec<RequeuedOne>,
    skipped: Vec<SkippedOne>,
}

/// "Resend to failed only": each dead letter queued again once, as a new message that passes every check again.
#[utoipa::path(
    tag = "failed",
    operation_id = "requeue_failed",
    request_body = Requeue,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "what was requeued, and what was skipped and why", body = RequeueReport),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/failed/requeue")]
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
            skipped.push(SkippedOne {
                id: f.id.to_hex(),
                why,
            });
            continue;
        }
        let Some(m) = f.original.as_ref().map(|o| o.resend(now, now)) else {
            continue;
        };
        let new_id = m.id;
        let list = m.sending_list;
        match state.stores.dead_letters.requeue(f.id, m, now).await {
            Ok(true) => {
                lists.insert(list);
                done.push(RequeuedOne {
                    failed: f.id.to_hex(),
                    message: new_id.to_hex(),
                });
            }
            Ok(false) => skipped.push(SkippedOne {
                id: f.id.to_hex(),
                why: "requeued before",
            }),
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
                due: None,
                lists: lists.into_iter().collect(),
            })
            .await
        {
            tracing::warn!(error = %e, "could not announce requeued messages; coordinators will find them at their next poll");
        }
    }
    Ok(HttpResponse::Ok().json(RequeueReport {
        requeued: done,
        skipped,
    }))
}
