//! What a campaign is made of: audiences, creatives, schedules.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | POST | `/api/v1/audiences` `{"account", "name", "filter": {"list"?, "tags_any"?, "tags_none"?, "fields"?}}` | operator |
//! | POST | `/api/v1/creatives` `{"account", "name", "variants": [{"key", "body", "weight"}], "track_links"?}` | operator |
//! | GET | `/api/v1/creatives/{id}/preview?contact={id}` | read-only |
//! | POST | `/api/v1/schedules` (below) | operator |
//!
//! A creative is checked when it is saved: variant keys, bodies, every
//! placeholder known (`{{first_name|there}}`; an unknown one is refused
//! with its position), a positive weight somewhere: 422 naming the reason.
//! Its preview renders every variant for one contact of the account: text,
//! encoding, segments, code units, links (example codes, not stored) and
//! the placeholders that contact lacks (the run would skip it).
//!
//! A schedule: `{"account", "name", "sending_list", "audiences": [ids],
//! "creative", "when": {"type": "once", "at": RFC 3339} | {"type":
//! "recurring", "cron": "0 10 * * MON", "time_zone": "America/New_York"},
//! "exclude_in_workflow"?, "defer_outside_window"?, "variant_selection"?
//! ("weighted" | "thompson")}`. Everything it names must exist and belong
//! to the account; the cron expression and zone must parse and have an
//! occurrence. It is stored active and every Scheduler is told.

use super::doc::{BadRequest, Conflict, Invalid, NotFound, Operator, Reader};
use super::{Role, authorize, parse_body, parse_id, store_error, to_json};
use crate::bus::Event;
use crate::campaign::occurrence::Recurrence;
use crate::domain::*;
use crate::http::AppState;
use crate::http::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_audience)
        .service(create_creative)
        .service(preview)
        .service(create_schedule);
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        message: message.into(),
    }
}

async fn account_exists(state: &AppState, id: AccountId) -> Result<(), ApiError> {
    match state
        .stores
        .accounts
        .get_account(id)
        .await
        .map_err(store_error)?
    {
        Some(_) => Ok(()),
        None => Err(invalid("account", format!("no such account: {id}"))),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    #[serde(default)]
    list: Option<String>,
    #[serde(default)]
    tags_any: Vec<String>,
    #[serde(default)]
    tags_none: Vec<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAudience {
    account: String,
    name: String,
    filter: FilterBody,
}

/// A new audience.
#[utoipa::path(
    tag = "campaigns",
    operation_id = "create_audience",
    request_body = NewAudience,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the stored audience", body = Object),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/audiences")]
async fn create_audience(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let n: NewAudience = parse_body(&body)?;
    let account: AccountId = parse_id("account", &n.account)?;
    let name = super::accounts::name_field("name", &n.name)?;
    let list = match &n.filter.list {
        Some(l) => {
            let id: SendingListId = parse_id("filter.list", l)?;
            match state.stores.lists.get_list(id).await.map_err(store_error)? {
                Some(l) if l.account == account => Some(id),
                _ => {
                    return Err(invalid(
                        "filter.list",
                        format!("no such list of this account: {id}"),
                    ));
                }
            }
        }
        None => None,
    };
    let filter = AudienceFilter {
        list,
        tags_any: n.filter.tags_any,
        tags_none: n.filter.tags_none,
        fields: n.filter.fields,
    };
    filter.validate().map_err(|e| invalid("filter", e))?;
    account_exists(&state, account).await?;
    let audience = Audience {
        id: AudienceId::new(),
        account,
        name,
        filter,
        created_at: state.clock.now(),
    };
    state
        .stores
        .contacts
        .insert_audience(audience.clone())
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(to_json(&audience)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VariantBody {
    key: String,
    body: String,
    weight: u32,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCreative {
    account: String,
    name: String,
    variants: Vec<VariantBody>,
    #[serde(default)]
    track_links: bool,
}

/// A new creative, checked when saved (an unknown placeholder is refused with its position).
#[utoipa::path(
    tag = "campaigns",
    operation_id = "create_creative",
    request_body = NewCreative,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the stored creative", body = Object),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/creatives")]
async fn create_creative(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let n: NewCreative = parse_body(&body)?;
    let account: AccountId = parse_id("account", &n.account)?;
    let name = super::accounts::name_field("name", &n.name)?;
    let creative = MessageCreative {
        id: CreativeId::new(),
        account,
        name,
        variants: n
            .variants
            .into_iter()
            .map(|v| Variant {
                key: v.key,
                body: v.body,
                weight: v.weight,
            })
            .collect(),
        track_links: n.track_links,
        created_at: state.clock.now(),
    };
    crate::campaign::plan::check_creative(&creative)
        .map_err(|e| invalid("variants", e.to_string()))?;
    account_exists(&state, account).await?;
    state
        .stores
        .schedules
        .insert_creative(creative.clone())
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(to_json(&creative)?))
}

/// When the schedule runs: once, or on a cron expression in a time zone.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum When {
    Once {
        /// RFC 3339.
        #[schema(value_type = String, format = DateTime)]
        at: chrono::DateTime<chrono::Utc>,
    },
    Recurring {
        /// e.g. `0 10 * * MON`.
        cron: String,
        /// IANA, e.g. America/New_York.
        time_zone: String,
    },
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSchedule {
    account: String,
    name: String,
    sending_list: String,
    audiences: Vec<String>,
    creative: String,
    when: When,
    #[serde(default)]
    exclude_in_workflow: bool,
    #[serde(default)]
    defer_outside_window: bool,
    #[serde(default)]
    variant_selection: VariantSelection,
}

/// A new schedule, active; every Scheduler told at once.
#[utoipa::path(
    tag = "campaigns",
    operation_id = "create_schedule",
    request_body = NewSchedule,
    security(("bearer" = ["operator"])),
    responses(
        (status = 201, description = "the stored schedule", body = Object),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/schedules")]
async fn create_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let n: NewSchedule = parse_body(&body)?;
    let account: AccountId = parse_id("account", &n.account)?;
    let name = super::accounts::name_field("name", &n.name)?;
    let list: SendingListId = parse_id("sending_list", &n.sending_list)?;
    let creative: CreativeId = parse_id("creative", &n.creative)?;
    if n.audiences.is_empty() || n.audiences.len() > 50 {
        return Err(invalid("audiences", "1 to 50 audiences"));
    }
    let mut audiences = vec![];
    for a in &n.audiences {
        let id: AudienceId = parse_id("audiences", a)?;
        match state
            .stores
            .contacts
            .get_audience(id)
            .await
            .map_err(store_error)?
        {
            Some(a) if a.account == account => audiences.push(id),
            _ => {
                return Err(invalid(
                    "audiences",
                    format!("no such audience of this account: {id}"),
                ));
            }
        }
    }
    match state
        .stores
        .lists
        .get_list(list)
        .await
        .map_err(store_error)?
    {
        Some(l) if l.account == account => {}
        _ => {
            return Err(invalid(
                "sending_list",
                format!("no such list of this account: {list}"),
            ));
        }
    }
    match state
        .stores
        .schedules
        .get_creative(creative)
        .await
        .map_err(store_error)?
    {
        Some(c) if c.account == account => {}
        _ => {
            return Err(invalid(
                "creative",
                format!("no such creative of this account: {creative}"),
            ));
        }
    }
    let kind = match n.when {
        When::Once { at } => ScheduleKind::Once { at },
        When::Recurring { cron, time_zone } => ScheduleKind::Recurring { cron, time_zone },
    };
    let now = state.clock.now();
    let recurrence = Recurrence::parse(&kind).map_err(|e| invalid("when", e.to_string()))?;
    let next = match &recurrence {
        Recurrence::Once(at) => Some(*at),
        Recurrence::Cron { .. } => recurrence
            .first_at_or_after(now)
            .map_err(|e| invalid("when", e.to_string()))?,
    };
    let Some(next) = next else {
        return Err(invalid("when", "the expression has no occurrence"));
    };
    account_exists(&state, account).await?;
    let schedule = Schedule {
        id: ScheduleId::new(),
        account,
        name,
        sending_list: list,
        audiences,
        creative,
        kind,
        exclude_in_workflow: n.exclude_in_workflow,
        defer_outside_window: n.defer_outside_window,
        variant_selection: n.variant_selection,
        status: ScheduleStatus::Active,
        next_run_at: Some(next),
        created_at: now,
    };
    state
        .stores
        .schedules
        .insert_schedule(schedule.clone())
        .await
        .map_err(store_error)?;
    if let Err(e) = state.bus.publish(Event::SchedulesChanged).await {
        tracing::warn!(error = %e, "could not announce a new schedule; schedulers will see it at their next look");
    }
    Ok(HttpResponse::Created().json(to_json(&schedule)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    /// The contact's hex id (a contact of the creative's account).
    contact: String,
}

/// Every variant of the creative rendered for one contact: text, encoding, segments, links (example codes), placeholders it lacks.
#[utoipa::path(
    tag = "campaigns",
    operation_id = "preview_creative",
    params(("id" = String, Path, description = "the creative's hex id"), PreviewQuery),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "one preview per variant", body = Object),
        Reader, BadRequest, NotFound, Conflict,
    )
)]
#[get("/creatives/{id}/preview")]
async fn preview(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let creative: CreativeId = parse_id("creative id", &id)?;
    let q = web::Query::<PreviewQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let contact: ContactId = parse_id("contact", &q.contact)?;
    let c = state
        .stores
        .schedules
        .get_creative(creative)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no such creative: {creative}")))?;
    let who = match state
        .stores
        .contacts
        .get_contact(contact)
        .await
        .map_err(store_error)?
    {
        Some(k) if k.account == c.account => k,
        _ => {
            return Err(ApiError::NotFound(format!(
                "no such contact of the creative's account: {contact}"
            )));
        }
    };
    let previews = crate::campaign::explain::preview(&c, &who, &state.link_base)
        .map_err(|e| ApiError::Conflict(format!("the creative does not pass its checks: {e}")))?;
    Ok(HttpResponse::Ok().json(to_json(&previews)?))
}
