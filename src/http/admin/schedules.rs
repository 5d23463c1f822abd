//! Schedules: read one with its latest runs; explain (the dry run, nothing
//! queued); pause, resume, cancel; trigger now. Status changes are stored,
//! then announced on the bus (`SchedulesChanged`) so every daemon's
//! Scheduler looks at once.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | GET | `/api/v1/schedules` | read-only |
//! | GET | `/api/v1/schedules/{id}` | read-only |
//! | POST | `/api/v1/schedules/{id}/explain` | read-only |
//! | POST | `/api/v1/schedules/{id}/pause` | operator |
//! | POST | `/api/v1/schedules/{id}/resume` | operator |
//! | POST | `/api/v1/schedules/{id}/cancel` | operator |
//! | POST | `/api/v1/schedules/{id}/trigger` | operator |
//! | GET | `/api/v1/runs/{id}` | read-only |
//!
//! A run shows what its evaluation counted (audience, eligible, queued,
//! skipped by reason, per variant, cost) and what became of its messages
//! since (`stats`: sent, failed by reason, delivered, undelivered, clicked,
//! counted as messages move, never by scanning), with the documentation's
//! four metrics in `rates`: send rate (msg/s), delivery, failure and click
//! rate (%).
//!
//! The list (`GET /api/v1/schedules`, newest first, at most 200; the
//! dashboard's schedules view, `trackly ctl schedules`) shows each
//! schedule's status, next run, and its latest run with its audience size
//! and progress (`done` = sent + failed, of `queued`).
//!
//! Trigger now makes the schedule due now (a recurring schedule's next
//! occurrence is brought forward to now; after it runs, the schedule goes
//! on with its cron expression). Resume and trigger refuse a cancelled or
//! finished schedule (409).

use super::doc::{BadRequest, Conflict, NotFound, Operator, Reader};
use super::{Role, authorize, parse_id, store_error, to_json};
use crate::bus::Event;
use crate::domain::{AccountId, Schedule, ScheduleId, ScheduleRun, ScheduleRunId, ScheduleStatus};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::messages::{ExplainError, ExplainSchedule, LookNow};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// Runs shown with a schedule, newest first.
const RUNS_SHOWN: usize = 20;

/// Schedules listed, newest first.
const SCHEDULES_SHOWN: usize = 200;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_schedules)
        .service(get_schedule)
        .service(explain)
        .service(pause)
        .service(resume)
        .service(cancel)
        .service(trigger)
        .service(get_run);
}

/// A run as the API shows it: the stored run and its four rates (the click
/// rate without bot and preview clicks when the account filters bots).
fn run_json(run: &ScheduleRun, filter_bots: bool) -> Result<serde_json::Value, ApiError> {
    let mut v = to_json(run)?;
    v["rates"] = to_json(&run.stats.rates(filter_bots))?;
    v["progress"] = to_json(&progress(run))?;
    Ok(v)
}

/// Whether `account` leaves bot clicks out of its click rate.
async fn filters_bots(state: &AppState, account: AccountId) -> Result<bool, ApiError> {
    Ok(state
        .stores
        .accounts
        .get_account(account)
        .await
        .map_err(store_error)?
        .is_some_and(|a| a.filter_bots))
}

/// One campaign run: what its evaluation counted and what became of its
/// messages.
#[utoipa::path(
    tag = "schedules",
    operation_id = "get_run",
    params(("id" = String, Path, description = "the run's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the stored run (`schedule`, `occurrence`, `status`, `reason`, `audience`, `eligible`, `queued`, `skipped` by reason, `variants`, `cost`, `started_at`, `finished_at`) with `stats` (`sent`, `failed` by reason, `delivered`, `undelivered`, `clicked`, `first_sent_at`, `last_sent_at`) and `rates` (`send_rate` msg/s, `delivery_rate`, `failure_rate`, `click_rate` in %; null until there is a base) and `progress` (`queued`, `done` = sent + failed, `percent`)", body = Object),
        Reader, BadRequest, NotFound,
    )
)]
#[get("/runs/{id}")]
async fn get_run(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let id: ScheduleRunId = parse_id("run id", &id)?;
    let run = state
        .stores
        .schedules
        .get_run(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no such run: {id}")))?;
    let filter_bots = filters_bots(&state, run.account).await?;
    Ok(HttpResponse::Ok().json(run_json(&run, filter_bots)?))
}

/// How far a run's messages have got.
#[derive(Serialize, ToSchema)]
struct Progress {
    /// Messages queued by the run.
    queued: u64,
    /// Of those, sent or failed.
    done: u64,
    /// `done` of `queued` in % (null until something is queued).
    percent: Option<f64>,
}

fn progress(run: &ScheduleRun) -> Progress {
    let done = run.stats.sent + run.stats.failed_total();
    Progress {
        queued: run.queued,
        done,
        percent: (run.queued > 0).then(|| (100.0 * done as f64 / run.queued as f64).min(100.0)),
    }
}

/// One schedule in the list.
#[derive(Serialize, ToSchema)]
struct ScheduleSummary {
    id: String,
    account: String,
    name: String,
    sending_list: String,
    status: ScheduleStatus,
    /// `once` or `recurring`.
    kind: &'static str,
    /// The cron expression and its time zone, for a recurring schedule.
    cron: Option<String>,
    /// RFC 3339; null when it will not run again.
    next_run_at: Option<String>,
    /// Contacts in the audiences when the latest run evaluated them (null
    /// before a first run: `POST /api/v1/schedules/{id}/explain` counts them).
    audience: Option<u64>,
    /// The latest run's progress.
    progress: Option<Progress>,
    /// The latest run, as `GET /api/v1/runs/{id}` shows it.
    #[schema(value_type = Object)]
    latest_run: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
struct ScheduleList {
    /// Newest first, at most 200.
    schedules: Vec<ScheduleSummary>,
}

/// Every schedule with its status, next run, audience size and the latest run's progress.
#[utoipa::path(
    tag = "schedules",
    operation_id = "list_schedules",
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the schedules, newest first", body = ScheduleList),
        Reader,
    )
)]
#[get("/schedules")]
async fn list_schedules(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let all = state
        .stores
        .schedules
        .schedules(SCHEDULES_SHOWN)
        .await
        .map_err(store_error)?;
    let mut bots = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(all.len());
    for s in all {
        let latest = state
            .stores
            .schedules
            .runs_of(s.id, 1)
            .await
            .map_err(store_error)?
            .into_iter()
            .next();
        let latest_run = match &latest {
            Some(r) => {
                let filter_bots = match bots.get(&s.account) {
                    Some(f) => *f,
                    None => {
                        let f = filters_bots(&state, s.account).await?;
                        bots.insert(s.account, f);
                        f
                    }
                };
                Some(run_json(r, filter_bots)?)
            }
            None => None,
        };
        let (kind, cron) = match &s.kind {
            crate::domain::ScheduleKind::Once { .. } => ("once", None),
            crate::domain::ScheduleKind::Recurring { cron, time_zone } => {
                ("recurring", Some(format!("{cron} ({time_zone})")))
            }
        };
        out.push(ScheduleSummary {
            id: s.id.to_hex(),
            account: s.account.to_hex(),
            name: s.name,
            sending_list: s.sending_list.to_hex(),
            status: s.status,
            kind,
            cron,
            next_run_at: s
                .next_run_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            audience: latest.as_ref().map(|r| r.audience),
            progress: latest.as_ref().map(progress),
            latest_run,
        });
    }
    Ok(HttpResponse::Ok().json(ScheduleList { schedules: out }))
}

/// A schedule's status after a change.
#[derive(Serialize, ToSchema)]
struct StatusChange {
    schedule: String,
    status: ScheduleStatus,
    /// RFC 3339; absent when it will not run again.
    next_run_at: Option<String>,
}

async fn load(state: &AppState, raw: &str) -> Result<Schedule, ApiError> {
    let id: ScheduleId = parse_id("schedule id", raw)?;
    state
        .stores
        .schedules
        .get_schedule(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no such schedule: {id}")))
}

/// The schedule and its latest runs (counters, skipped by reason).
#[utoipa::path(
    tag = "schedules",
    operation_id = "get_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the stored schedule with `runs` (newest first, at most 20; each as `GET /api/v1/runs/{id}` shows it)", body = Object),
        Reader, BadRequest, NotFound,
    )
)]
#[get("/schedules/{id}")]
async fn get_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let s = load(&state, &id).await?;
    let runs = state
        .stores
        .schedules
        .runs_of(s.id, RUNS_SHOWN)
        .await
        .map_err(store_error)?;
    let mut body = to_json(&s)?;
    let filter_bots = filters_bots(&state, s.account).await?;
    body["runs"] = serde_json::Value::Array(
        runs.iter()
            .map(|r| run_json(r, filter_bots))
            .collect::<Result<_, _>>()?,
    );
    Ok(HttpResponse::Ok().json(body))
}

/// The dry run of the schedule now, writing nothing.
#[utoipa::path(
    tag = "schedules",
    operation_id = "explain_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "audiences, unique contacts, eligible, skips by reason, segments and cost per variant, send time; 409 when the campaign would fail validation, 503 when this daemon has no scheduler", body = Object),
        Reader, BadRequest, NotFound, Conflict,
    )
)]
#[post("/schedules/{id}/explain")]
async fn explain(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let schedule: ScheduleId = parse_id("schedule id", &id)?;
    let Some(explain) = &state.explain else {
        return Err(ApiError::Unavailable(
            "the scheduler is disabled on this daemon",
        ));
    };
    match explain.send(ExplainSchedule { schedule }).await {
        Ok(Ok(e)) => Ok(HttpResponse::Ok().json(to_json(&e)?)),
        Ok(Err(ExplainError::UnknownSchedule(s))) => {
            Err(ApiError::NotFound(format!("no such schedule: {s}")))
        }
        Ok(Err(ExplainError::Invalid(e))) => Err(ApiError::Conflict(format!(
            "the campaign would fail validation: {e}"
        ))),
        Ok(Err(ExplainError::Store(e))) => Err(store_error(e)),
        Err(_) => Err(ApiError::Unavailable("the scheduler did not answer")),
    }
}

/// Pause the schedule; every Scheduler told.
#[utoipa::path(
    tag = "schedules",
    operation_id = "pause_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored; 409 when the schedule is cancelled or done", body = StatusChange),
        Operator, BadRequest, NotFound, Conflict,
    )
)]
#[post("/schedules/{id}/pause")]
async fn pause(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &req, &id, ScheduleStatus::Paused, false).await
}

/// Resume the schedule; every Scheduler told.
#[utoipa::path(
    tag = "schedules",
    operation_id = "resume_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored; 409 when the schedule is cancelled or done", body = StatusChange),
        Operator, BadRequest, NotFound, Conflict,
    )
)]
#[post("/schedules/{id}/resume")]
async fn resume(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &req, &id, ScheduleStatus::Active, false).await
}

/// Cancel the schedule; every Scheduler told.
#[utoipa::path(
    tag = "schedules",
    operation_id = "cancel_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "stored", body = StatusChange),
        Operator, BadRequest, NotFound,
    )
)]
#[post("/schedules/{id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &req, &id, ScheduleStatus::Cancelled, false).await
}

/// Make the schedule due now (a recurring one goes on with its cron afterwards).
#[utoipa::path(
    tag = "schedules",
    operation_id = "trigger_schedule",
    params(("id" = String, Path, description = "the schedule's hex id")),
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "due now; 409 when the schedule is cancelled or done", body = StatusChange),
        Operator, BadRequest, NotFound, Conflict,
    )
)]
#[post("/schedules/{id}/trigger")]
async fn trigger(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, &req, &id, ScheduleStatus::Active, true).await
}

async fn set_status(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    to: ScheduleStatus,
    now: bool,
) -> Result<HttpResponse, ApiError> {
    authorize(state, req, Role::Operator)?;
    let s = load(state, id).await?;
    let ended = matches!(s.status, ScheduleStatus::Cancelled | ScheduleStatus::Done);
    if ended && to != ScheduleStatus::Cancelled {
        return Err(ApiError::Conflict(format!(
            "schedule {} is {:?}: it cannot run again",
            s.id, s.status
        )));
    }
    let next = if now {
        Some(state.clock.now())
    } else {
        s.next_run_at
    };
    state
        .stores
        .schedules
        .set_schedule_status(s.id, to, next)
        .await
        .map_err(store_error)?;
    // Every daemon's Scheduler looks at once (a hint; they look anyway).
    if let Err(e) = state.bus.publish(Event::SchedulesChanged).await {
        tracing::warn!(error = %e, "could not announce a schedule change; schedulers will see it at their next look");
    }
    if now && let Some(look) = &state.look {
        let _ = look.try_send(LookNow);
    }
    tracing::info!(schedule = %s.id, status = ?to, now, "schedule changed by an operator");
    Ok(HttpResponse::Ok().json(StatusChange {
        schedule: s.id.to_hex(),
        status: to,
        next_run_at: next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    }))
}
