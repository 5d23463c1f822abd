//! `trackly mock-provider`: one HTTP server that speaks Infobip, Twilio and
//! CM with their real request and response shapes and error bodies, fails on
//! demand (latency, 429, 5xx, hangs past the client's timeout, per-number
//! permanent rejections, CM partial acceptance), posts delivery reports back
//! in each provider's format (signed, for Twilio), and records every message
//! it accepted so a test can count duplicates at the provider.
//!
//! Routes: `POST /sms/2/text/advanced` (Infobip), `POST
//! /2010-04-01/Accounts/{sid}/Messages.json` (Twilio), `POST /v1.0/message`
//! (CM), `GET /mock/stats`, `GET /mock/accepted`.

use crate::providers::{cm, infobip, twilio};
use actix_web::{HttpRequest, HttpResponse, web};
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How the mock behaves. Rates are fractions in [0, 1].
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub latency: Duration,
    /// Requests answered 429.
    pub throttle_rate: f64,
    /// Requests answered 5xx (`error_status`).
    pub error_rate: f64,
    /// The 5xx status of an error answer.
    pub error_status: u16,
    /// Take the request's messages (record them as accepted, schedule their
    /// reports) and then answer 5xx: the ambiguous case a client must treat
    /// as in doubt.
    pub accept_on_error: bool,
    /// Twilio: numbers whose messages are taken and then answered 5xx.
    pub error_numbers: HashSet<String>,
    /// Twilio: numbers answered 429 the first time, taken afterwards.
    pub throttle_once_numbers: HashSet<String>,
    /// A report POST that fails is tried again this many times (backoff
    /// from 200 ms, doubling), as providers retry their webhooks.
    pub report_retries: u32,
    /// Requests taken (recorded as accepted) but answered only after `hang`.
    pub hang_rate: f64,
    pub hang: Duration,
    /// Messages rejected permanently at random.
    pub reject_rate: f64,
    /// E.164 numbers always rejected permanently.
    pub reject_numbers: HashSet<String>,
    /// E.164 numbers that replied STOP (Twilio 21610; a plain rejection elsewhere).
    pub stop_numbers: HashSet<String>,
    /// Post delivery reports at all.
    pub reports: bool,
    pub report_delay: Duration,
    /// Share of accepted messages reported delivered, and failed; the rest
    /// get no final report (delivery stays unknown).
    pub delivered_ratio: f64,
    pub failed_ratio: f64,
    /// Send an intermediate report before the final one.
    pub intermediate: bool,
    /// Twilio: check basic auth with these, sign callbacks with the token.
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    /// Infobip: require `Authorization: App <key>` when set.
    pub infobip_api_key: Option<String>,
    /// CM: require this product token when set.
    pub cm_product_token: Option<String>,
    /// CM reports go here (CM's reports are configured per account, not per
    /// request).
    pub cm_report_url: Option<String>,
    /// CM reports as XML instead of JSON.
    pub cm_report_xml: bool,
    pub seed: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            latency: Duration::ZERO,
            throttle_rate: 0.0,
            error_rate: 0.0,
            error_status: 500,
            accept_on_error: false,
            error_numbers: HashSet::new(),
            throttle_once_numbers: HashSet::new(),
            report_retries: 5,
            hang_rate: 0.0,
            hang: Duration::from_secs(30),
            reject_rate: 0.0,
            reject_numbers: HashSet::new(),
            stop_numbers: HashSet::new(),
            reports: true,
            report_delay: Duration::from_millis(200),
            delivered_ratio: 0.95,
            failed_ratio: 0.05,
            intermediate: false,
            twilio_account_sid: None,
            twilio_auth_token: None,
            infobip_api_key: None,
            cm_product_token: None,
            cm_report_url: None,
            cm_report_xml: false,
            seed: 11,
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub hangs: AtomicU64,
    pub unauthorized: AtomicU64,
    pub reports_sent: AtomicU64,
    pub reports_failed: AtomicU64,
}

/// What a report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Intermediate,
    Delivered,
    Failed,
}

#[derive(Debug, Clone)]
enum Target {
    Infobip {
        url: String,
        entry: serde_json::Value,
    },
    Twilio {
        url: String,
        params: Vec<(String, String)>,
    },
    Cm {
        url: String,
        body: String,
        xml: bool,
    },
}

struct Pending {
    due: Instant,
    target: Target,
    /// Failed POSTs of this report so far.
    tries: u32,
}

pub struct MockState {
    config: RwLock<MockConfig>,
    rng: Mutex<rand::rngs::StdRng>,
    accepted: Mutex<HashMap<String, u32>>,
    /// `throttle_once_numbers` already throttled.
    throttled_once: Mutex<HashSet<String>>,
    pub counters: Counters,
    reports: mpsc::UnboundedSender<Pending>,
}

impl MockState {
    pub fn config(&self) -> MockConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Change the behaviour while running.
    pub fn set_config(&self, f: impl FnOnce(&mut MockConfig)) {
        f(&mut self.config.write().unwrap_or_else(|e| e.into_inner()));
    }

    fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random()
    }

    fn record(&self, id: &str) {
        *self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert(0) += 1;
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Times each reference was accepted.
    pub fn accepted(&self) -> HashMap<String, u32> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn duplicates(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The whole-request failure to simulate, if any: (status, hang).
    fn request_fate(&self, cfg: &MockConfig) -> Fate {
        let r = self.roll();
        if r < cfg.throttle_rate {
            Fate::Throttle
        } else if r < cfg.throttle_rate + cfg.error_rate {
            Fate::Error
        } else if r < cfg.throttle_rate + cfg.error_rate + cfg.hang_rate {
            Fate::Hang
        } else {
            Fate::Normal
        }
    }

    fn message_rejected(&self, cfg: &MockConfig, e164: &str) -> bool {
        cfg.reject_numbers.contains(e164) || self.roll() < cfg.reject_rate
    }

    /// The report outcomes to post for one accepted message.
    fn report_plan(&self, cfg: &MockConfig) -> Vec<Outcome> {
        if !cfg.reports {
            return vec![];
        }
        let mut v = vec![];
        if cfg.intermediate {
            v.push(Outcome::Intermediate);
        }
        let r = self.roll();
        if r < cfg.delivered_ratio {
            v.push(Outcome::Delivered);
        } else if r < cfg.delivered_ratio + cfg.failed_ratio {
            v.push(Outcome::Failed);
        }
        v
    }

    fn schedule(&self, delay: Duration, target: Target) {
        self.schedule_try(delay, target, 0);
    }

    fn schedule_try(&self, delay: Duration, target: Target, tries: u32) {
        let _ = self.reports.send(Pending {
            due: Instant::now() + delay,
            target,
            tries,
        });
    }

    /// Whether `to` is answered 429 now (the first time only).
    fn throttle_once(&self, cfg: &MockConfig, to: &str) -> bool {
        cfg.throttle_once_numbers.contains(to)
            && self
                .throttled_once
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(to.to_string())
    }
}

enum Fate {
    Normal,
    Throttle,
    Error,
    Hang,
}

/// How a request that got past the prelude ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Answer normally.
    Answer,
    /// Answer only after `hang` (the client times out).
    Hang,
    /// Take the messages, then answer 5xx.
    ErrorAfterAccept,
}

/// A running mock on its own thread.
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
    let state = Arc::new(MockState {
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(cfg.seed)),
        config: RwLock::new(cfg),
        accepted: Mutex::new(HashMap::new()),
        throttled_once: Mutex::new(HashSet::new()),
        counters: Counters::default(),
        reports: report_tx,
    });
    actix_rt::spawn(report_sender(report_rx, state.clone()));
    let data = web::Data::from(state.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .app_data(web::JsonConfig::default().limit(16 * 1024 * 1024))
            .route("/sms/2/text/advanced", web::post().to(infobip_send))
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                web::post().to(twilio_send),
            )
            .route("/v1.0/message", web::post().to(cm_send))
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
    }))
}

async fn accepted(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.accepted())
}

/// Latency, then the request's fate. `Err(response)` ends the request now.
async fn prelude(
    state: &MockState,
    cfg: &MockConfig,
    throttle: HttpResponse,
    error: HttpResponse,
) -> Result<After, HttpResponse> {
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    match state.request_fate(cfg) {
        Fate::Throttle => {
            state.counters.throttled.fetch_add(1, Ordering::Relaxed);
            Err(throttle)
        }
        Fate::Error => {
            state.counters.errors.fetch_add(1, Ordering::Relaxed);
            if cfg.accept_on_error {
                Ok(After::ErrorAfterAccept)
            } else {
                Err(error)
            }
        }
        Fate::Hang => {
            state.counters.hangs.fetch_add(1, Ordering::Relaxed);
            Ok(After::Hang)
        }
        Fate::Normal => Ok(After::Answer),
    }
}

/// The status of an error answer (a 5xx).
fn error_status(cfg: &MockConfig) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(cfg.error_status)
        .ok()
        .filter(|s| s.is_server_error())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
}

// ------------------------------------------------------------------ Infobip

async fn infobip_send(
    state: web::Data<MockState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let cfg = state.config();
    if let Some(key) = &cfg.infobip_api_key {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("App {key}"));
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::Unauthorized()
                .json(json!({"requestError": {"serviceException": {
                "messageId": "UNAUTHORIZED", "text": "Invalid login details"}}}));
        }
    }
    let throttle = HttpResponse::TooManyRequests().json(json!({
        "errorCode": "E429", "description": "Too many requests sent.",
        "action": "Check request rate limit specified in the API endpoint documentation resource.",
        "violations": [], "resources": [{"name": "Throttling handling errors",
        "url": "/docs/developer-resources/api-fundamentals/rate-limits-and-throttling"}]}));
    let error = || {
        HttpResponse::build(error_status(&cfg)).json(json!({"requestError": {"serviceException": {
        "messageId": "GENERAL_ERROR", "text": "Something went wrong. Please contact support."}}}))
    };
    let after = match prelude(&state, &cfg, throttle, error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let Ok(request) = serde_json::from_slice::<infobip::SendRequest>(&body) else {
        return HttpResponse::BadRequest().json(json!({"requestError": {"serviceException": {
            "messageId": "BAD_REQUEST", "text": "Bad request", "validationErrors": {"messages": ["invalid request body"]}}}}));
    };
    let mut out = Vec::new();
    for m in &request.messages {
        for d in &m.destinations {
            let e164 = format!("+{}", d.to);
            let id = d
                .message_id
                .clone()
                .unwrap_or_else(|| crate::domain::MessageId::new().to_hex());
            if state.message_rejected(&cfg, &e164) || cfg.stop_numbers.contains(&e164) {
                state.counters.rejected.fetch_add(1, Ordering::Relaxed);
                out.push(json!({"to": d.to, "messageId": id, "status": {"groupId": 5, "groupName": "REJECTED",
                    "id": 14, "name": "REJECTED_DESTINATION", "description": "Destination rejected"}}));
                continue;
            }
            state.record(&id);
            out.push(json!({"to": d.to, "messageId": id, "smsCount": 1, "status": {"groupId": 1, "groupName": "PENDING",
                "id": 26, "name": "PENDING_ACCEPTED", "description": "Message sent to next instance"}}));
            if let Some(url) = &m.notify_url {
                for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
                    let entry = infobip_report(&id, &d.to, m.callback_data.as_deref(), outcome);
                    state.schedule(
                        cfg.report_delay * (i as u32 + 1),
                        Target::Infobip {
                            url: url.clone(),
                            entry,
                        },
                    );
                }
            }
        }
    }
    match after {
        After::Hang => tokio::time::sleep(cfg.hang).await,
        After::ErrorAfterAccept => return error(),
        After::Answer => {}
    }
    HttpResponse::Ok().json(json!({"bulkId": format!("BULK-{}", crate::domain::MessageId::new().to_hex()), "messages": out}))
}

fn infobip_report(id: &str, to: &str, callback: Option<&str>, o: Outcome) -> serde_json::Value {
    let (status, error) = match o {
        Outcome::Intermediate => (
            json!({"groupId": 3, "groupName": "DELIVERED", "id": 2, "name": "DELIVERED_TO_OPERATOR", "description": "Message delivered to operator"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
        ),
        Outcome::Delivered => (
            json!({"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"}),
            json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}),
        ),
        Outcome::Failed => (
            json!({"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED", "description": "Message sent not delivered"}),
            json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "description": "Unknown subscriber", "permanent": true}),
        ),
    };
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    json!({"bulkId": "BULK-1", "messageId": id, "to": to, "sentAt": now, "doneAt": now, "smsCount": 1,
        "mccMnc": "22801", "callbackData": callback, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": status, "error": error})
}

// ------------------------------------------------------------------- Twilio

async fn twilio_send(
    state: web::Data<MockState>,
    sid: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let cfg = state.config();
    if let (Some(expected_sid), Some(token)) = (&cfg.twilio_account_sid, &cfg.twilio_auth_token) {
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{expected_sid}:{token}"))
        );
        let ok = sid.as_str() == expected_sid
            && req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str());
        if !ok {
            state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::Unauthorized()
                .json(json!({"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}));
        }
    }
    let throttle = || {
        HttpResponse::TooManyRequests().json(json!({"code": 20429, "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}))
    };
    let error = || {
        let status = error_status(&cfg);
        HttpResponse::build(status).json(json!({"code": 20500, "message": "Internal Server Error",
        "more_info": "https://www.twilio.com/docs/errors/20500", "status": status.as_u16()}))
    };
    let mut after = match prelude(&state, &cfg, throttle(), error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(to) = params.get("To").cloned() else {
        return HttpResponse::BadRequest().json(
            json!({"code": 21604, "message": "A 'To' phone number is required.",
            "more_info": "https://www.twilio.com/docs/errors/21604", "status": 400}),
        );
    };
    if state.throttle_once(&cfg, &to) {
        state.counters.throttled.fetch_add(1, Ordering::Relaxed);
        return throttle();
    }
    if cfg.error_numbers.contains(&to) {
        state.counters.errors.fetch_add(1, Ordering::Relaxed);
        after = After::ErrorAfterAccept;
    }
    if cfg.stop_numbers.contains(&to) {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(
            json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}),
        );
    }
    if state.message_rejected(&cfg, &to) {
        state.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(json!({"code": 21211, "message": format!("Invalid 'To' Phone Number: {}", crate::telemetry::mask_phone(&to)),
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}));
    }
    let msg_sid = format!("SM{}", &crate::domain::MessageId::new().to_hex()[..24]);
    let callback = params.get("StatusCallback").cloned();
    let ours = callback
        .as_deref()
        .and_then(|c| url::Url::parse(c).ok())
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "m")
                .map(|(_, v)| v.into_owned())
        });
    state.record(ours.as_deref().unwrap_or(&msg_sid));
    let from = params.get("From").cloned().unwrap_or_default();
    if let (Some(url), Some(_)) = (&callback, &cfg.twilio_auth_token) {
        for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
            let (status, code) = match outcome {
                Outcome::Intermediate => ("sent", None),
                Outcome::Delivered => ("delivered", None),
                Outcome::Failed => ("undelivered", Some("30003")),
            };
            let mut p = vec![
                ("MessageSid", msg_sid.clone()),
                ("SmsSid", msg_sid.clone()),
                ("MessageStatus", status.to_string()),
                ("SmsStatus", status.to_string()),
                ("AccountSid", sid.to_string()),
                ("From", from.clone()),
                ("To", to.clone()),
                ("ApiVersion", "2010-04-01".to_string()),
            ];
            if let Some(c) = code {
                p.push(("ErrorCode", c.to_string()));
            }
            let params = p.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            state.schedule(
                cfg.report_delay * (i as u32 + 1),
                Target::Twilio {
                    url: url.clone(),
                    params,
                },
            );
        }
    }
    match after {
        After::Hang => tokio::time::sleep(cfg.hang).await,
        After::ErrorAfterAccept => return error(),
        After::Answer => {}
    }
    let now = chrono::Utc::now().to_rfc2822();
    HttpResponse::Created().json(json!({
        "sid": msg_sid, "account_sid": sid.as_str(), "messaging_service_sid": params.get("MessagingServiceSid"),
        "from": from, "to": to, "body": params.get("Body"), "status": "queued", "direction": "outbound-api",
        "api_version": "2010-04-01", "num_segments": "1", "num_media": "0", "price": null, "price_unit": "USD",
        "error_code": null, "error_message": null, "date_created": now, "date_updated": now, "date_sent": null,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{msg_sid}.json", sid.as_str())}))
}

// ----------------------------------------------------------------------- CM

async fn cm_send(state: web::Data<MockState>, body: web::Bytes) -> HttpResponse {
    let cfg = state.config();
    let Ok(request) = serde_json::from_slice::<cm::SendRequest>(&body) else {
        return HttpResponse::BadRequest()
            .json(json!({"details": "Invalid JSON request", "errorCode": 202, "messages": []}));
    };
    if let Some(token) = &cfg.cm_product_token
        && &request.messages.authentication.producttoken != token
    {
        state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().json(
            json!({"details": "No account found for the given authentication",
                "errorCode": 101, "messages": []}),
        );
    }
    let throttle = HttpResponse::TooManyRequests()
        .json(json!({"details": "Too many requests", "errorCode": 999, "messages": []}));
    let error = || {
        HttpResponse::build(error_status(&cfg))
            .json(json!({"details": "Internal server error", "errorCode": 500, "messages": []}))
    };
    let after = match prelude(&state, &cfg, throttle, error()).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let mut out = Vec::new();
    let mut accepted = 0;
    for m in &request.messages.msg {
        let reference = m.reference.clone().unwrap_or_default();
        for to in &m.to {
            let e164 = to
                .number
                .strip_prefix("00")
                .map(|d| format!("+{d}"))
                .unwrap_or_else(|| to.number.clone());
            if state.message_rejected(&cfg, &e164) || cfg.stop_numbers.contains(&e164) {
                state.counters.rejected.fetch_add(1, Ordering::Relaxed);
                out.push(json!({"to": to.number, "status": "Rejected", "reference": reference, "parts": 0,
                    "messageDetails": format!("Gsm '{}' is not a number.", crate::telemetry::mask_phone(&to.number)),
                    "messageErrorCode": 303}));
                continue;
            }
            accepted += 1;
            state.record(&reference);
            out.push(
                json!({"to": to.number, "status": "Accepted", "reference": reference, "parts": 1,
                "messageDetails": null, "messageErrorCode": 0}),
            );
            if let Some(url) = &cfg.cm_report_url {
                for (i, outcome) in state.report_plan(&cfg).into_iter().enumerate() {
                    let (code, err) = match outcome {
                        Outcome::Intermediate => (0, ""),
                        Outcome::Delivered => (2, ""),
                        Outcome::Failed => (3, "13"),
                    };
                    let body = if cfg.cm_report_xml {
                        format!(
                            "<?xml version=\"1.0\"?><MESSAGES><MSG RECEIVED=\"{now}\"><TO>{to}</TO><REFERENCE>{reference}</REFERENCE><STATUS><CODE>{code}</CODE><ERRORCODE>{err}</ERRORCODE><ERRORDESCRIPTION></ERRORDESCRIPTION></STATUS></MSG></MESSAGES>",
                            now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S"),
                            to = to.number
                        )
                    } else {
                        json!({"messages": {"msg": {"received": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                            "to": to.number, "reference": reference,
                            "status": {"code": code.to_string(), "errorCode": err, "errorDescription": ""}, "operator": "20416"}}}).to_string()
                    };
                    state.schedule(
                        cfg.report_delay * (i as u32 + 1),
                        Target::Cm {
                            url: url.clone(),
                            body,
                            xml: cfg.cm_report_xml,
                        },
                    );
                }
            }
        }
    }
    match after {
        After::Hang => tokio::time::sleep(cfg.hang).await,
        After::ErrorAfterAccept => return error(),
        After::Answer => {}
    }
    let total = out.len();
    if accepted == total {
        HttpResponse::Ok().json(json!({"details": format!("Created {total} message(s)"), "errorCode": 0, "messages": out}))
    } else if accepted == 0 {
        HttpResponse::BadRequest().json(
            json!({"details": "Not all messages were sent", "errorCode": 201, "messages": out}),
        )
    } else {
        HttpResponse::Ok().json(json!({"details": format!("Created {accepted} message(s)"), "errorCode": 201, "messages": out}))
    }
}

// ------------------------------------------------------------ report sender

/// Post reports when they are due: Infobip in batches of up to 100 per URL,
/// Twilio one signed form per report, CM one per report.
async fn report_sender(mut rx: mpsc::UnboundedReceiver<Pending>, state: Arc<MockState>) {
    let Ok(client) = crate::providers::http::client(Duration::from_secs(10), 64) else {
        tracing::error!("mock provider: cannot build its HTTP client; no reports will be sent");
        return;
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    loop {
        // Wait for work, or for the head of the queue to come due.
        let next = queue.front().map(|p| p.due);
        let got = match (next, open) {
            (Some(due), true) => tokio::select! {
                m = rx.recv() => {
                    open = m.is_some();
                    m
                }
                _ = tokio::time::sleep_until(due) => None,
            },
            (Some(due), false) => {
                tokio::time::sleep_until(due).await;
                None
            }
            (None, true) => match rx.recv().await {
                Some(m) => Some(m),
                None => return,
            },
            (None, false) => return,
        };
        if let Some(p) = got {
            queue.push_back(p);
            while let Ok(p) = rx.try_recv() {
                queue.push_back(p);
            }
        }
        let now = Instant::now();
        let mut due = Vec::new();
        // Retries come back later than new reports: keep the queue by due time.
        queue.make_contiguous().sort_by_key(|p| p.due);
        while queue.front().is_some_and(|p| p.due <= now) {
            if let Some(p) = queue.pop_front() {
                due.push((p.target, p.tries));
            }
        }
        if due.is_empty() {
            continue;
        }
        let mut infobip: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        let mut sends = Vec::new();
        for (t, tries) in due {
            match t {
                // A retried Infobip batch is already a `{"results": [...]}`.
                Target::Infobip { url, entry } if tries == 0 => {
                    infobip.entry(url).or_default().push(entry)
                }
                other => sends.push((other, tries)),
            }
        }
        for (url, entries) in infobip {
            for chunk in entries.chunks(100) {
                sends.push((
                    Target::Infobip {
                        url: url.clone(),
                        entry: json!({"results": chunk}),
                    },
                    0,
                ));
            }
        }
        let cfg = state.config();
        let token = cfg.twilio_auth_token.clone();
        let retries = cfg.report_retries;
        for (t, tries) in sends {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let state = state.clone();
            let token = token.clone();
            let again = t.clone();
            actix_rt::spawn(async move {
                let (req, n) = match t {
                    Target::Infobip { url, entry } => {
                        let n = entry["results"].as_array().map_or(1, |a| a.len()) as u64;
                        (client.post(url).json(&entry), n)
                    }
                    Target::Twilio { url, params } => {
                        let sig = twilio::signature(token.as_deref().unwrap_or(""), &url, &params);
                        let body: String = url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(&params)
                            .finish();
                        (
                            client
                                .post(url)
                                .header("X-Twilio-Signature", sig)
                                .header("Content-Type", "application/x-www-form-urlencoded")
                                .body(body),
                            1,
                        )
                    }
                    Target::Cm { url, body, xml } => (
                        client
                            .post(url)
                            .header(
                                "Content-Type",
                                if xml {
                                    "application/xml"
                                } else {
                                    "application/json"
                                },
                            )
                            .body(body),
                        1,
                    ),
                };
                let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                if ok {
                    state.counters.reports_sent.fetch_add(n, Ordering::Relaxed);
                } else if tries < retries {
                    // As providers do: try the webhook again later.
                    let delay = Duration::from_millis(200) * 2u32.saturating_pow(tries);
                    state.schedule_try(delay, again, tries + 1);
                } else {
                    state
                        .counters
                        .reports_failed
                        .fetch_add(n, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    }
}
