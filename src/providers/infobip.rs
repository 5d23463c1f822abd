//! Infobip: `POST /sms/2/text/advanced` (many messages per request,
//! `Authorization: App <key>`), and its JSON delivery reports.
//!
//! Decisions on points the reference marks unconfirmed:
//! - Destinations are sent as international digits without `+` (Infobip's
//!   own examples); `+` is not relied upon.
//! - We set `messageId` to our own id and also pass it as `callbackData`, so
//!   reports map back whether or not the send response was recorded yet.
//! - Both error body shapes are read (`requestError.serviceException` and
//!   `errorCode`/`description`); a 429 is throttling with either shape.
//! - Status group 3 is delivered only for `DELIVERED_TO_HANDSET` (id 5);
//!   `DELIVERED_TO_OPERATOR` (id 2) is intermediate (Infobip's status-code
//!   page lists it so): pending.
//! - 401/403 mean our credentials are wrong, not the message: the request
//!   was refused before anything was processed (RFC 9110 §15.5.2, §15.5.4;
//!   Infobip's error page lists them as request-level authentication and
//!   authorization failures), so transient: the message waits, retried with
//!   backoff until it goes stale, not a dead letter per message.
//! - 429: Infobip's "Rate limits and throttling" page says requests over the
//!   limit are rejected with 429 ("Too many requests sent"): not processed,
//!   retried. Other 4xx: "resending the same request will fail the same
//!   way" (Infobip's API fundamentals): permanent.
//! - 5xx: Infobip documents them only as "may be transient", never as "not
//!   processed": one 5xx for a request of 500 messages may follow sending
//!   some or all of them. In doubt, never resent.

use super::batch::{BatchProvider, BatchWire};
use super::http::{self, Exchange};
use super::{MalformedReport, OutboundSms, Report, SendResult, our_id};
use crate::config::InfobipConfig;
use crate::domain::{DeliveryState, ProviderKind};
use crate::telemetry::Secret;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Infobip's adapter: the shared batch plumbing with Infobip's wire format.
pub type Infobip = BatchProvider<InfobipWire>;

/// Infobip's wire format: where, how authenticated, and where reports go.
pub struct InfobipWire {
    url: String,
    key: Secret,
    notify_url: Option<String>,
}

impl Infobip {
    pub fn new(
        cfg: &InfobipConfig,
        key: Secret,
        notify_url: Option<String>,
    ) -> Result<Self, super::ProviderSetupError> {
        let wire = InfobipWire {
            url: format!("{}/sms/2/text/advanced", cfg.base_url),
            key,
            notify_url,
        };
        BatchProvider::with_wire(wire, cfg.timeout.get(), cfg.batch_size, cfg.concurrency)
    }
}

impl BatchWire for InfobipWire {
    const KIND: ProviderKind = ProviderKind::Infobip;

    fn request(&self, client: &reqwest::Client, msgs: &[OutboundSms]) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header("Authorization", format!("App {}", self.key.expose()))
            .header("Accept", "application/json")
            .json(&request_body(msgs, self.notify_url.as_deref()))
    }

    fn classify(msgs: &[OutboundSms], ex: Exchange) -> Vec<SendResult> {
        classify(msgs, ex)
    }
}

// ------------------------------------------------------------- wire types

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SendRequest {
    pub messages: Vec<RequestMessage>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMessage {
    pub from: String,
    pub destinations: Vec<Destination>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub callback_data: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub to: String,
    #[serde(default)]
    pub message_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub group_id: i64,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    #[serde(default)]
    pub bulk_id: Option<String>,
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    pub status: Status,
    #[serde(default)]
    pub sms_count: Option<u32>,
}

pub fn request_body(msgs: &[OutboundSms], notify_url: Option<&str>) -> SendRequest {
    SendRequest {
        messages: msgs
            .iter()
            .map(|m| RequestMessage {
                from: m.from.clone(),
                destinations: vec![Destination {
                    to: m.to.digits().to_string(),
                    message_id: Some(m.id.to_hex()),
                }],
                text: m.body.clone(),
                notify_url: notify_url.map(String::from),
                notify_content_type: notify_url.map(|_| "application/json".into()),
                callback_data: Some(m.id.to_hex()),
            })
            .collect(),
    }
}

/// `(code, text)` from either error body shape.
pub fn error_of(body: &[u8], status: u16) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let legacy = &v["requestError"]["serviceException"];
    if let Some(id) = legacy["messageId"].as_str() {
        return (
            id.to_string(),
            legacy["text"].as_str().unwrap_or("").to_string(),
        );
    }
    if let Some(code) = v["errorCode"].as_str() {
        return (
            code.to_string(),
            v["description"].as_str().unwrap_or("").to_string(),
        );
    }
    (format!("E{status}"), format!("HTTP {status}"))
}

/// A send-time status that means "refused": groups UNDELIVERABLE (2) and
/// REJECTED (5).
fn refused(s: &Status) -> bool {
    matches!(s.group_id, 2 | 5)
}

/// The outcome of one request for each of its messages, in order.
pub fn classify(msgs: &[OutboundSms], ex: Exchange) -> Vec<SendResult> {
    let all = |r: SendResult| vec![r; msgs.len()];
    match ex {
        Exchange::NotSent(e) => all(SendResult::Transient {
            code: "CONNECT".into(),
            text: e,
            throttled: false,
        }),
        Exchange::NoAnswer(e) => all(http::no_answer(e)),
        Exchange::Answered { status, body } if (200..300).contains(&status) => {
            let Ok(resp) = serde_json::from_slice::<SendResponse>(&body) else {
                return all(http::in_doubt(
                    format!("HTTP {status}"),
                    "answer body could not be read",
                ));
            };
            let by_id: HashMap<String, &SentMessage> = resp
                .messages
                .iter()
                .filter_map(|m| m.message_id.clone().map(|id| (id, m)))
                .collect();
            msgs.iter()
                .map(|m| match by_id.get(&m.id.to_hex()) {
                    Some(sent) if refused(&sent.status) => SendResult::Rejected {
                        code: sent.status.name.clone(),
                        text: sent.status.description.clone().unwrap_or_default(),
                        unsubscribed: false,
                    },
                    Some(sent) => SendResult::Accepted {
                        provider_message_id: sent
                            .message_id
                            .clone()
                            .unwrap_or_else(|| m.id.to_hex()),
                    },
                    // Answered, but not about this message: in doubt.
                    None => http::in_doubt(
                        format!("HTTP {status}"),
                        "the provider's answer did not mention this message",
                    ),
                })
                .collect()
        }
        Exchange::Answered { status, body } => {
            let (code, text) = error_of(&body, status);
            match status {
                429 => all(SendResult::Transient {
                    code,
                    text,
                    throttled: true,
                }),
                401 | 403 => all(SendResult::Transient {
                    code,
                    text,
                    throttled: false,
                }),
                400..=499 => all(SendResult::Rejected {
                    code,
                    text,
                    unsubscribed: false,
                }),
                // 5xx and anything unexpected: in doubt (see the top).
                _ => all(http::in_doubt(format!("HTTP {status} {code}"), text)),
            }
        }
    }
}

// -------------------------------------------------------- delivery reports

#[derive(Debug, Deserialize)]
struct ReportBatch {
    results: Vec<ReportEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportEntry {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    callback_data: Option<String>,
    status: Status,
    #[serde(default)]
    error: Option<ReportError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportError {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    group_id: Option<i64>,
}

/// The engine's state for an Infobip status.
pub fn state_of(s: &Status) -> DeliveryState {
    match s.group_id {
        0 | 1 => DeliveryState::Pending,
        3 if s.id == 5 || s.name.eq_ignore_ascii_case("DELIVERED_TO_HANDSET") => {
            DeliveryState::Delivered
        }
        3 => DeliveryState::Pending,
        2 => DeliveryState::Undelivered,
        4 => DeliveryState::Expired,
        5 => DeliveryState::Rejected,
        _ => DeliveryState::Pending,
    }
}

/// Parse a `{"results": [...]}` report batch.
pub fn parse_reports(body: &[u8]) -> Result<Vec<Report>, MalformedReport> {
    let batch: ReportBatch = serde_json::from_slice(body)
        .map_err(|e| MalformedReport(format!("Infobip report: {e}")))?;
    Ok(batch
        .results
        .into_iter()
        .map(|r| {
            let id = r
                .message_id
                .as_deref()
                .and_then(our_id)
                .or_else(|| r.callback_data.as_deref().and_then(our_id));
            let state = state_of(&r.status);
            let error_code = match (
                &r.error,
                state.is_final() && state != DeliveryState::Delivered,
            ) {
                (Some(e), true) if e.group_id != Some(0) => {
                    e.name.clone().or_else(|| e.id.map(|i| i.to_string()))
                }
                (_, true) => Some(r.status.name.clone()),
                _ => None,
            };
            Report {
                id,
                state,
                error_code,
            }
        })
        .collect())
}
