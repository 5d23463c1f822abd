//! The HTTP surface. [`configure`] mounts every route; `trackly serve` and
//! the tests build their `App` from it.

pub mod health;

use crate::ratelimit::PermitBackend;
use crate::store::Stores;
use actix_web::web;
use std::sync::Arc;

/// What handlers can reach.
#[derive(Clone)]
pub struct AppState {
    pub stores: Stores,
    pub permits: Arc<dyn PermitBackend>,
}

pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .configure(health::configure);
    }
}
