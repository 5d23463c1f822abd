//! `devkit mock-provider`: one HTTP server that speaks Infobip, Twilio and
//! CM with their real request and response shapes and error bodies, fails on
//! demand (latency, 429, 5xx, hangs past the client's timeout, per-number
//! permanent rejections, CM partial acceptance), posts delivery reports back
//! in each provider's format (signed, for Twilio), and records every message
//! it accepted so a test can count duplicates at the provider.
//!
//! Routes: `POST /sms/2/text/advanced` (Infobip), `POST
//! /2010-04-01/Accounts/{sid}/Messages.json` (Twilio), `POST /v1.0/message`
//! (CM), `GET /sms/3/logs` (Infobip logs) and `GET
//! /2010-04-01/Accounts/{sid}/Messages.json` (Twilio list): lookups answered
//! from the messages taken, including those taken and then answered 5xx or
//! left hanging; `GET /mock/stats`, `GET /mock/accepted`.
//!
//! Layout: [`state`] (configuration, counters, what was taken, the fate of a
//! request), one file per provider's send route ([`infobip`], [`twilio`],
//! [`cm`]), and [`reports`] (the delivery reports posted back, retried).

pub mod cm;
pub mod infobip;
pub mod reports;
pub mod state;
pub mod twilio;

pub use state::{Counters, MockConfig, MockState, TakenMessage, Via};

use actix_web::{HttpResponse, web};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop the server and its report sender.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let handle = self.handle.clone();
        if let Some(t) = self.thread.take() {
            let _ = std::thread::spawn(move || {
                actix_rt::System::new().block_on(handle.stop(false));
            })
            .join();
            let _ = t.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start a mock on `bind` (use port 0 for a free one) in a thread of its own.
pub fn start(cfg: MockConfig, bind: &str) -> std::io::Result<MockServer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let bind = bind.to_string();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            match build(cfg, &bind, 2) {
                Ok((server, addr, state)) => {
                    let _ = tx.send(Ok((addr, state, server.handle())));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    let (addr, state, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("mock provider thread died"))??;
    Ok(MockServer {
        addr,
        state,
        handle,
        thread: Some(thread),
    })
}

/// Build the server on the current actix system.
pub fn build(
    cfg: MockConfig,
    bind: &str,
    workers: usize,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr, Arc<MockState>)> {
    let (report_tx, report_rx) = mpsc::unbounded_channel();
    let state = Arc::new(MockState::new(cfg, report_tx));
    actix_rt::spawn(reports::report_sender(report_rx, state.clone()));
    let data = web::Data::from(state.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .app_data(web::JsonConfig::default().limit(16 * 1024 * 1024))
            .route(
                "/sms/2/text/advanced",
                web::post().to(infobip::infobip_send),
            )
            .route("/sms/3/logs", web::get().to(infobip::infobip_logs))
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                web::post().to(twilio::twilio_send),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                web::get().to(twilio::twilio_list),
            )
            .route("/v1.0/message", web::post().to(cm::cm_send))
            .route("/mock/stats", web::get().to(stats))
            .route("/mock/accepted", web::get().to(accepted))
    })
    .workers(workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .bind(bind)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("mock provider bound no address"))?;
    Ok((server.run(), addr, state))
}

async fn stats(state: web::Data<MockState>) -> HttpResponse {
    let c = &state.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    HttpResponse::Ok().json(json!({
        "requests": l(&c.requests),
        "accepted": l(&c.accepted),
        "unique_accepted": state.accepted_count(),
        "duplicates": state.duplicates().len(),
        "rejected": l(&c.rejected),
        "throttled": l(&c.throttled),
        "errors": l(&c.errors),
        "hangs": l(&c.hangs),
        "unauthorized": l(&c.unauthorized),
        "reports_sent": l(&c.reports_sent),
        "reports_failed": l(&c.reports_failed),
        "lookups": l(&c.lookups),
        "lookups_failed": l(&c.lookups_failed),
        "lookup_ids": l(&c.lookup_ids),
    }))
}

async fn accepted(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.accepted())
}
