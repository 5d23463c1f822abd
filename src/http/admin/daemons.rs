//! Daemons: every daemon instance as its lease in the store shows it (the
//! dashboard's daemons view, `trackly ctl daemons`).
//!
//! | method | path | role |
//! | --- | --- | --- |
//! | GET | `/api/v1/daemons` | read-only |
//!
//! Ages are judged on the store's clock, as recovery judges leases. A
//! daemon is `ready` while its lease is live: it renews the lease only while
//! it reaches MongoDB, and it stops claiming and sending by itself once it
//! cannot. Stopped and lapsed instances are shown for an hour after their
//! last heartbeat, then only counted (`older`).

use super::doc::Reader;
use super::{Role, authorize, store_error};
use crate::domain::{DaemonLease, Timestamp};
use crate::http::AppState;
use crate::http::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// Ended instances are listed this long after their last heartbeat.
const ENDED_SHOWN_FOR: chrono::Duration = chrono::Duration::hours(1);

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(daemons);
}

/// The store's time and every lease (the daemons view and the lists view
/// read the same records).
pub(super) async fn leases(state: &AppState) -> Result<(Timestamp, Vec<DaemonLease>), ApiError> {
    let now = state
        .stores
        .leases
        .server_time()
        .await
        .map_err(store_error)?;
    let leases = state.stores.leases.leases().await.map_err(store_error)?;
    Ok((now, leases))
}

/// One daemon instance.
#[derive(Serialize, ToSchema)]
struct DaemonView {
    /// `<daemon id>:<random per start>`.
    instance: String,
    /// The configured daemon id.
    daemon_id: String,
    version: String,
    /// `ready` (lease live), `lapsed` (not renewed within its TTL: it
    /// neither claims nor sends, and recovery takes its work) or `stopped`
    /// (shut down cleanly).
    status: &'static str,
    ready: bool,
    /// Milliseconds since its last heartbeat, on the store's clock.
    lease_age_ms: i64,
    lease_ttl_ms: i64,
    /// RFC 3339.
    started_at: String,
    heartbeat_at: String,
    /// Providers it can send through (`kind:credentials`).
    providers: Vec<String>,
    /// Lists it serves now (hex ids).
    lists: Vec<String>,
    /// Messages it sent per list (hex id) per minute over the interval
    /// before its last heartbeat.
    sent_per_minute: BTreeMap<String, u64>,
    /// The daemon answering this request.
    this: bool,
}

#[derive(Serialize, ToSchema)]
struct DaemonList {
    /// RFC 3339: the store's clock, which the ages are judged on.
    server_time: String,
    /// Live ones first, then by instance id.
    daemons: Vec<DaemonView>,
    /// Ended instances older than an hour, not listed.
    older: u64,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Every daemon's lease: id, version, lease age, lists served, readiness.
#[utoipa::path(
    tag = "daemons",
    operation_id = "list_daemons",
    security(("bearer" = ["read-only"])),
    responses(
        (status = 200, description = "the daemons, live ones first", body = DaemonList),
        Reader,
    )
)]
#[get("/daemons")]
async fn daemons(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::ReadOnly)?;
    let (now, all) = leases(&state).await?;
    let mut older = 0;
    let mut daemons: Vec<DaemonView> = all
        .into_iter()
        .filter_map(|l| {
            let live = l.live_at(now);
            if !live && l.age_at(now) > ENDED_SHOWN_FOR {
                older += 1;
                return None;
            }
            Some(DaemonView {
                this: l.instance == state.instance.id,
                status: if live {
                    "ready"
                } else if l.stopped {
                    "stopped"
                } else {
                    "lapsed"
                },
                ready: live,
                lease_age_ms: l.age_at(now).num_milliseconds(),
                lease_ttl_ms: l.ttl_ms,
                started_at: rfc3339(l.started_at),
                heartbeat_at: rfc3339(l.heartbeat_at),
                lists: l.lists.iter().map(|x| x.to_hex()).collect(),
                instance: l.instance,
                daemon_id: l.daemon_id,
                version: l.version,
                providers: l.providers,
                sent_per_minute: l.sent_per_minute,
            })
        })
        .collect();
    daemons.sort_by(|a, b| b.ready.cmp(&a.ready).then(a.instance.cmp(&b.instance)));
    Ok(HttpResponse::Ok().json(DaemonList {
        server_time: rfc3339(now),
        daemons,
        older,
    }))
}
