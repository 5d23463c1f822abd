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
//!
//! Lookups of in-doubt messages (`GET /sms/3/logs`, see [`InfobipWire`]'s
//! `lookup`): we set each destination's `messageId` to our id, so a message
//! Infobip took is in its logs under our id, and one that is absent was not
//! taken. What the stored documents say (Infobip's "Logs and Status
//! Reports" page, and the official SDKs generated from its OpenAPI
//! document):
//! - logs are kept for **48 hours** only: after that, absence proves
//!   nothing, so a query older than [`LOOKUP_MAX_AGE`] fails the call;
//! - at most 1,000 logs per call, and 50 unless `limit` says otherwise: we
//!   always send `limit=1000`;
//! - `messageId` may carry several values, "maximum length 2048
//!   characters": [`LOOKUP_BATCH`] ids of 24 characters stay under it
//!   (the 1,000 per call would not);
//! - the v3 log names its fields `destination`, `sender`, `content.text`,
//!   `messageCount` (v1 said `to`, `from`, `text`, `smsCount`); we read
//!   only `messageId`, `status` and `error`, which both share.
//!
//! Not documented, so not relied upon: how soon after sending a message
//! shows in the logs. The caller should not look up a message seconds
//! after its attempt.

use super::batch::{BatchProvider, BatchWire};
use super::http::{self, Exchange};
use super::{
    LookupAnswer, LookupError, LookupQuery, MalformedReport, OutboundSms, Report, SendResult,
    our_id,
};
use crate::config::InfobipConfig;
use crate::domain::{DeliveryState, ProviderKind};
use crate::telemetry::Secret;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How long Infobip keeps message logs ("logs for the last 48 hours").
pub const LOG_RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(48);

/// The oldest attempt a lookup answers for: an hour inside the retention,
/// so a log is not dropped between our check and Infobip's answer.
pub const LOOKUP_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(47);

/// Message ids per logs request: `messageId` is documented as at most 2,048
/// characters; 80 ids of 24 hex characters with their separators take 1,999.
pub const LOOKUP_BATCH: usize = 80;

/// Infobip's adapter: the shared batch plumbing with Infobip's wire format.
pub type Infobip = BatchProvider<InfobipWire>;

/// Infobip's wire format: where, how authenticated, and where reports go.
pub struct InfobipWire {
    url: String,
    logs_url: String,
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
            logs_url: format!("{}/sms/3/logs", cfg.base_url),
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

    fn can_look_up(&self) -> bool {
        true
    }

    fn lookup_batch(&self) -> usize {
        LOOKUP_BATCH
    }

    fn lookup_horizon(&self) -> Option<chrono::TimeDelta> {
        Some(LOOKUP_MAX_AGE)
    }

    /// `GET /sms/3/logs?messageId=..&messageId=..&limit=1000`: a message in
    /// the logs was taken, one absent was not. Any failure (no answer, a
    /// status other than 2xx, a body that does not read, an attempt older
    /// than the 48 h retention) fails the whole call: never guessed.
    fn lookup<'a>(
        &'a self,
        client: &'a reqwest::Client,
        queries: &'a [LookupQuery],
    ) -> BoxFuture<'a, Result<Vec<LookupAnswer>, LookupError>> {
        Box::pin(async move {
            let oldest = chrono::Utc::now() - LOOKUP_MAX_AGE;
            if queries.iter().any(|q| q.attempted_at < oldest) {
                tracing::warn!(
                    provider = "infobip",
                    queries = queries.len(),
                    "lookup refused: an attempt is older than the 48 h log retention"
                );
                return Err(LookupError::Failed(
                    "an attempt is older than Infobip's 48 h log retention".into(),
                ));
            }
            let mut out = Vec::with_capacity(queries.len());
            for chunk in queries.chunks(LOOKUP_BATCH) {
                let mut params: Vec<(&str, String)> =
                    chunk.iter().map(|q| ("messageId", q.id.to_hex())).collect();
                params.push(("limit", "1000".into()));
                let req = client
                    .get(&self.logs_url)
                    .header("Authorization", format!("App {}", self.key.expose()))
                    .header("Accept", "application/json")
                    .query(&params);
                let answers = http::lookup_body(http::exchange(req).await)
                    .and_then(|body| answers_from_logs(chunk, &body));
                match answers {
                    Ok(a) => out.extend(a),
                    Err(e) => {
                        tracing::warn!(provider = "infobip", queries = chunk.len(), error = %e, "lookup failed");
                        return Err(e);
                    }
                }
            }
            let taken = out
                .iter()
                .filter(|a| matches!(a, LookupAnswer::Taken { .. }))
                .count();
            tracing::debug!(
                provider = "infobip",
                queries = queries.len(),
                taken,
                "lookup answered"
            );
            Ok(out)
        })
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

/// The error code a report or log carries for a final, undelivered state:
/// the error's name (or id) when it names one, else the status name.
fn error_code_of(
    state: DeliveryState,
    status: &Status,
    error: Option<&ReportError>,
) -> Option<String> {
    match (error, state.is_final() && state != DeliveryState::Delivered) {
        (Some(e), true) if e.group_id != Some(0) => {
            e.name.clone().or_else(|| e.id.map(|i| i.to_string()))
        }
        (_, true) => Some(status.name.clone()),
        _ => None,
    }
}

// ------------------------------------------------------------------ lookups

/// `GET /sms/3/logs`: `{"results": [...]}`.
#[derive(Debug, Deserialize)]
struct LogsResponse {
    #[serde(default)]
    results: Vec<LogEntry>,
}

/// One log. v3 and v1 share `messageId`, `status` and `error`; the other
/// fields (`destination`/`to`, `content.text`/`text`, ...) are not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    error: Option<ReportError>,
}

/// One answer per query from a logs answer: taken when its id is in the
/// logs (with the delivery state the status maps to, as for reports; a
/// pending status is no delivery state yet), not taken when it is absent.
pub fn answers_from_logs(
    queries: &[LookupQuery],
    body: &[u8],
) -> Result<Vec<LookupAnswer>, LookupError> {
    // The parse error's position only: its text may quote the body.
    let logs: LogsResponse = serde_json::from_slice(body).map_err(|e| {
        LookupError::Failed(format!(
            "Infobip logs answer could not be read ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let by_id: HashMap<&str, &LogEntry> = logs
        .results
        .iter()
        .filter_map(|l| l.message_id.as_deref().map(|id| (id, l)))
        .collect();
    Ok(queries
        .iter()
        .map(|q| {
            let hex = q.id.to_hex();
            match by_id.get(hex.as_str()) {
                None => LookupAnswer::NotTaken,
                Some(log) => {
                    let (delivery, error_code) = match &log.status {
                        Some(s) => {
                            let state = state_of(s);
                            (
                                state.is_final().then_some(state),
                                error_code_of(state, s, log.error.as_ref()),
                            )
                        }
                        None => (None, None),
                    };
                    LookupAnswer::Taken {
                        provider_message_id: Some(hex),
                        delivery,
                        error_code,
                    }
                }
            }
        })
        .collect())
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
            let error_code = error_code_of(state, &r.status, r.error.as_ref());
            Report {
                id,
                state,
                error_code,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{E164, MessageId};

    fn query() -> LookupQuery {
        LookupQuery {
            id: MessageId::new(),
            from: "InfoSMS".into(),
            to: E164::parse("+41793026727").unwrap(),
            body: "hi".into(),
            attempted_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn logs_answer_taken_with_the_report_mapping_and_not_taken_when_absent() {
        let (a, b, c, d) = (query(), query(), query(), query());
        // v3 shape (destination, content.text, messageCount) and v1 shape
        // (to, text, smsCount) read alike.
        let body = serde_json::json!({"results": [
            {"messageId": a.id.to_hex(), "destination": "41793026727", "content": {"text": "hi"},
             "messageCount": 1, "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5,
             "name": "DELIVERED_TO_HANDSET"}, "error": {"groupId": 0, "groupName": "OK", "id": 0,
             "name": "NO_ERROR", "permanent": false}},
            {"messageId": b.id.to_hex(), "to": "41793026727", "text": "hi", "smsCount": 1,
             "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"}},
            {"messageId": c.id.to_hex(), "status": {"groupId": 2, "groupName": "UNDELIVERABLE",
             "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"}, "error": {"groupId": 1,
             "groupName": "HANDSET_ERRORS", "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "permanent": true}},
            {"messageId": "someone-elses"}
        ]});
        let answers = answers_from_logs(
            &[a.clone(), b.clone(), c.clone(), d],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            answers,
            vec![
                LookupAnswer::Taken {
                    provider_message_id: Some(a.id.to_hex()),
                    delivery: Some(DeliveryState::Delivered),
                    error_code: None
                },
                LookupAnswer::Taken {
                    provider_message_id: Some(b.id.to_hex()),
                    delivery: None,
                    error_code: None
                },
                LookupAnswer::Taken {
                    provider_message_id: Some(c.id.to_hex()),
                    delivery: Some(DeliveryState::Undelivered),
                    error_code: Some("EC_UNKNOWN_SUBSCRIBER".into())
                },
                LookupAnswer::NotTaken,
            ]
        );
    }

    #[test]
    fn an_unreadable_logs_answer_fails_without_quoting_it() {
        let q = query();
        for body in [&b"<html>"[..], b"{\"results\": \"+41793026727\"}", b""] {
            match answers_from_logs(std::slice::from_ref(&q), body) {
                Err(LookupError::Failed(text)) => assert!(!text.contains("4179"), "{text}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
