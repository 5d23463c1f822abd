//! The HTTP surface. [`configure`] mounts every route; `trackly serve`, the
//! demo and the tests build their `App` from it.

pub mod admin;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod inbound;
pub mod links;
pub mod webhooks;

use crate::actors::recovery::UnservableLists;
use crate::bus::SharedBus;
use crate::clock::SharedClock;
use crate::config::Secrets;
use crate::instance::Instance;
use crate::messages::{ApplyReports, ExplainSchedule, ListControl, LookNow, RecordClicks};
use crate::metrics::Metrics;
use crate::ratelimit::PermitBackend;
use crate::store::Stores;
use actix::Recipient;
use actix_web::web;
use std::sync::Arc;

/// What handlers can reach.
#[derive(Clone)]
pub struct AppState {
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
    /// The HTTP actor that writes delivery reports.
    pub intake: Recipient<ApplyReports>,
    /// The actor that records link clicks.
    pub clicks: Recipient<RecordClicks>,
    /// Operators' list control (the Coordinator).
    pub control: Recipient<ListControl>,
    /// The Scheduler's explain and look (absent when `scheduler.enabled` is
    /// false on this daemon).
    pub explain: Option<Recipient<ExplainSchedule>>,
    pub look: Option<Recipient<LookNow>>,
    pub bus: SharedBus,
    /// Base URL of short links (creative previews).
    pub link_base: String,
    pub secrets: Arc<Secrets>,
    /// This daemon's public base URL (Twilio signs the URL it called).
    pub public_url: String,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub instance: Arc<Instance>,
    pub unservable: UnservableLists,
    /// The SSRF rule customer URLs are saved under.
    pub outbound: Arc<crate::net::outbound_url::OutboundPolicy>,
}

pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .configure(health::configure)
            .configure(admin::configure)
            .configure(dashboard::configure)
            .configure(inbound::configure)
            .configure(webhooks::configure)
            .configure(links::configure);
    }
}
