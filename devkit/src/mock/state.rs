//! The mock's configuration, counters and shared state: what it took, the
//! fate of each request, and the queue of reports to post.

use actix_web::HttpResponse;
use rand::{RngExt, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
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
    /// Lookups (`GET /sms/3/logs`, `GET .../Messages.json`) answer 503.
    /// Messages taken while answering 5xx (`error_rate` with
    /// `accept_on_error`, `error_numbers`) or while hanging (`hang_rate`)
    /// are in the lookups like any other: that is what they are for.
    pub lookup_fail: bool,
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
            lookup_fail: false,
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
    /// Lookup requests (Infobip logs, Twilio lists), and those answered 503.
    pub lookups: AtomicU64,
    pub lookups_failed: AtomicU64,
    /// Message ids asked about in Infobip logs requests.
    pub lookup_ids: AtomicU64,
}

/// The provider a message was taken by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Infobip,
    Twilio,
}

/// A message the mock took, as its lookups show it.
#[derive(Debug, Clone)]
pub struct TakenMessage {
    pub via: Via,
    /// Infobip: the `messageId` (ours); Twilio: the `SM...` sid.
    pub provider_id: String,
    pub from: String,
    /// E.164 with `+`.
    pub to: String,
    pub body: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The report outcomes planned for it, with when each becomes current.
    pub(crate) plan: Vec<(chrono::DateTime<chrono::Utc>, Outcome)>,
}

impl TakenMessage {
    /// The outcome current now: the last planned one that is due, if any.
    pub(crate) fn current(&self) -> Option<Outcome> {
        let now = chrono::Utc::now();
        self.plan
            .iter()
            .rev()
            .find(|(due, _)| *due <= now)
            .map(|(_, o)| *o)
    }
}

/// What a report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Intermediate,
    Delivered,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
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

pub(crate) struct Pending {
    pub(crate) due: Instant,
    pub(crate) target: Target,
    /// Failed POSTs of this report so far.
    pub(crate) tries: u32,
}

pub struct MockState {
    config: RwLock<MockConfig>,
    rng: Mutex<rand::rngs::StdRng>,
    accepted: Mutex<HashMap<String, u32>>,
    /// What lookups answer from, oldest first.
    taken: Mutex<Vec<TakenMessage>>,
    /// `throttle_once_numbers` already throttled.
    throttled_once: Mutex<HashSet<String>>,
    pub counters: Counters,
    reports: mpsc::UnboundedSender<Pending>,
}

impl MockState {
    /// A fresh state whose reports go to `reports`.
    pub(crate) fn new(cfg: MockConfig, reports: mpsc::UnboundedSender<Pending>) -> Self {
        MockState {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(cfg.seed)),
            config: RwLock::new(cfg),
            accepted: Mutex::new(HashMap::new()),
            taken: Mutex::new(Vec::new()),
            throttled_once: Mutex::new(HashSet::new()),
            counters: Counters::default(),
            reports,
        }
    }

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

    pub(crate) fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random()
    }

    pub(crate) fn record(&self, id: &str) {
        *self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert(0) += 1;
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Keep a taken message for lookups.
    pub(crate) fn keep(&self, m: TakenMessage) {
        self.taken.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    /// The taken messages of `via` that `keep` selects, newest first.
    pub fn taken(&self, via: Via, keep: impl Fn(&TakenMessage) -> bool) -> Vec<TakenMessage> {
        let all = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .rev()
            .filter(|m| m.via == via && keep(m))
            .cloned()
            .collect()
    }

    /// Count a lookup request; `Err` with the 503 to answer when lookups
    /// are set to fail.
    pub(crate) fn lookup_request(&self, cfg: &MockConfig) -> Result<(), ()> {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        if cfg.lookup_fail {
            self.counters.lookups_failed.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        Ok(())
    }

    /// Times each reference was accepted.
    pub fn accepted(&self) -> HashMap<String, u32> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Messages taken per recipient number (E.164 with `+`).
    pub fn accepted_by_number(&self) -> HashMap<String, u32> {
        let mut out = HashMap::new();
        for t in self.taken.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            *out.entry(t.to.clone()).or_insert(0) += 1;
        }
        out
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
    pub(crate) fn request_fate(&self, cfg: &MockConfig) -> Fate {
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

    pub(crate) fn message_rejected(&self, cfg: &MockConfig, e164: &str) -> bool {
        cfg.reject_numbers.contains(e164) || self.roll() < cfg.reject_rate
    }

    /// When each planned outcome becomes current (as its report is posted).
    pub(crate) fn timed_plan(
        cfg: &MockConfig,
        plan: &[Outcome],
    ) -> Vec<(chrono::DateTime<chrono::Utc>, Outcome)> {
        let now = chrono::Utc::now();
        plan.iter()
            .enumerate()
            .map(|(i, o)| {
                let delay = chrono::TimeDelta::from_std(cfg.report_delay * (i as u32 + 1))
                    .unwrap_or(chrono::TimeDelta::MAX);
                (now.checked_add_signed(delay).unwrap_or(now), *o)
            })
            .collect()
    }

    /// The report outcomes to post for one accepted message.
    pub(crate) fn report_plan(&self, cfg: &MockConfig) -> Vec<Outcome> {
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

    pub(crate) fn schedule(&self, delay: Duration, target: Target) {
        self.schedule_try(delay, target, 0);
    }

    pub(crate) fn schedule_try(&self, delay: Duration, target: Target, tries: u32) {
        let _ = self.reports.send(Pending {
            due: Instant::now() + delay,
            target,
            tries,
        });
    }

    /// Whether `to` is answered 429 now (the first time only).
    pub(crate) fn throttle_once(&self, cfg: &MockConfig, to: &str) -> bool {
        cfg.throttle_once_numbers.contains(to)
            && self
                .throttled_once
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(to.to_string())
    }
}

pub(crate) enum Fate {
    Normal,
    Throttle,
    Error,
    Hang,
}

/// How a request that got past the prelude ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Answer normally.
    Answer,
    /// Answer only after `hang` (the client times out).
    Hang,
    /// Take the messages, then answer 5xx.
    ErrorAfterAccept,
}

/// A running mock on its own thread.
pub(crate) async fn prelude(
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
pub(crate) fn error_status(cfg: &MockConfig) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(cfg.error_status)
        .ok()
        .filter(|s| s.is_server_error())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
}
