//! The dashboard at `/dashboard`: static assets (HTML, CSS, JavaScript,
//! embedded in the binary) for a page that is a client of the admin API
//! and nothing else. It signs in with an admin token (kept in the tab's
//! `sessionStorage`), calls `/api/v1` with it, and shows what `trackly
//! ctl` shows: schedules (`GET /api/v1/schedules`), a campaign's live
//! stats (`GET /api/v1/runs/{id}` once a second, `GET /api/v1/failed`,
//! `POST /api/v1/schedules/{id}/explain`), the queue view (`GET
//! /api/v1/lists`) and the daemons (`GET /api/v1/daemons`). The operator's
//! buttons call the same routes as `trackly ctl`; a read-only token
//! (`GET /api/v1/whoami`) sees none, and the routes refuse it anyway.
//!
//! No data reaches the page any other way: these routes serve only the
//! fixed assets, hold no data and need no token. Every answer carries a
//! strict Content-Security-Policy (scripts and styles from this origin
//! only, no inline code), and the page writes API values as text, never
//! as HTML.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn to_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/dashboard/"))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(to_slash))
        .route("/dashboard/", web::get().to(index))
        .route("/dashboard/app.js", web::get().to(app_js))
        .route("/dashboard/app.css", web::get().to(app_css));
}
