//! Sending lists: read one with its queue depth; pause, resume and change
//! its rate on every daemon (stored, then broadcast); the queue depth of
//! every list.
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | GET | `/api/v1/lists/{id}` | read-only |
//! | POST | `/api/v1/lists/{id}/pause` | operator |
//! | POST | `/api/v1/lists/{id}/resume` | operator |
//! | PUT | `/api/v1/lists/{id}/rate` `{"per_minute": n}` | operator |
//! | GET | `/api/v1/queue` | read-only |

use super::{Role, authorize, parse_body, parse_id, store_error, to_json};
use crate::domain::SendingListId;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::messages::{ControlError, ListCommand, ListControl};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

/// The highest rate a list may be given (messages per minute).
pub const MAX_RATE_PER_MINUTE: u32 = 6_000_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/lists/{id}", web::get().to(get_list))
        .route("/lists/{id}/pause", web::post().to(pause))
        .route("/lists/{id}/resume", web::post().to(resume))
        .route("/lists/{id}/rate", web::put().to(set_rate))
        .route("/queue", web::get().to(queue));
}

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
    let mut body = to_json(&list)?;
    body["queue_depth"] = json!(depth);
    Ok(HttpResponse::Ok().json(body))
}

async fn pause(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&state, &req, &id, ListCommand::Pause).await
}

async fn resume(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&state, &req, &id, ListCommand::Resume).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rate {
    per_minute: u32,
}

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
            Ok(HttpResponse::Ok()
                .json(json!({"list": list.to_hex(), "applied": format!("{command:?}")})))
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

async fn queue(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let depth = state
        .stores
        .queue
        .depth_by_list()
        .await
        .map_err(store_error)?;
    let lists: serde_json::Map<String, serde_json::Value> = depth
        .into_iter()
        .map(|(l, n)| (l.to_hex(), json!(n)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "lists": lists })))
}
