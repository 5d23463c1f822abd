//! CM.com Business Messaging: `POST /v1.0/message` (JSON, many `msg`
//! entries per request, product token in the body as the SDKs send it), and
//! status reports in JSON or XML.
//!
//! Decisions on points the reference marks unconfirmed:
//! - Numbers go as `00` + international digits (CM's examples).
//! - `reference` is our 24-hex id (CM allows 1-32 alphanumerics) and serves
//!   as the provider message id: reports carry it back.
//! - Partial acceptance (`errorCode` 201) is read message by message, on a
//!   200 or a 400; an entry missing from the answer is in doubt.
//! - Account-level failures (101 authentication, 102 balance, 103 token)
//!   are transient: the messages wait for an operator, they are not each
//!   dead-lettered. Other request-level codes (202, 203, ...) reject the
//!   request's messages.
//! - A 429 (undocumented for CM) is treated as throttling, like the others.
//! - Reports: `msg` may be an object or an array; `code` a string or a
//!   number; codes 0 accepted (pending), 1 rejected, 2 delivered, 3 failed,
//!   4 read (delivered).

use super::batch::{BatchProvider, BatchWire};
use super::http::{self, Exchange};
use super::{MalformedReport, OutboundSms, Report, SendResult, our_id};
use crate::config::CmConfig;
use crate::domain::{DeliveryState, ProviderKind};
use crate::telemetry::Secret;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// CM's adapter: the shared batch plumbing with CM's wire format.
pub type Cm = BatchProvider<CmWire>;

/// CM's wire format: where, and the product token carried in the body.
pub struct CmWire {
    url: String,
    token: Secret,
}

impl Cm {
    pub fn new(cfg: &CmConfig, token: Secret) -> Result<Self, super::ProviderSetupError> {
        let wire = CmWire {
            url: format!("{}/v1.0/message", cfg.base_url),
            token,
        };
        BatchProvider::with_wire(wire, cfg.timeout.get(), cfg.batch_size, cfg.concurrency)
    }
}

impl BatchWire for CmWire {
    const KIND: ProviderKind = ProviderKind::Cm;

    fn request(&self, client: &reqwest::Client, msgs: &[OutboundSms]) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header("Accept", "application/json")
            .json(&request_body(msgs, self.token.expose()))
    }

    fn classify(msgs: &[OutboundSms], ex: Exchange) -> Vec<SendResult> {
        classify(msgs, ex)
    }
}

// ------------------------------------------------------------- wire types

#[derive(Debug, Serialize, Deserialize)]
pub struct SendRequest {
    pub messages: RequestMessages,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RequestMessages {
    pub authentication: Authentication,
    pub msg: Vec<Msg>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Authentication {
    pub producttoken: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Msg {
    pub from: String,
    pub to: Vec<Number>,
    pub body: Body,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub minimum_number_of_message_parts: Option<u32>,
    #[serde(default)]
    pub maximum_number_of_message_parts: Option<u32>,
    #[serde(default)]
    pub allowed_channels: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Number {
    pub number: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Body {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub content: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    #[serde(default)]
    pub details: String,
    pub error_code: i64,
    #[serde(default)]
    pub messages: Vec<ResponseMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMessage {
    #[serde(default)]
    pub to: Option<String>,
    pub status: String,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub parts: Option<u32>,
    #[serde(default)]
    pub message_details: Option<String>,
    #[serde(default)]
    pub message_error_code: i64,
}

pub fn request_body(msgs: &[OutboundSms], token: &str) -> SendRequest {
    SendRequest {
        messages: RequestMessages {
            authentication: Authentication {
                producttoken: token.to_string(),
            },
            msg: msgs
                .iter()
                .map(|m| Msg {
                    from: m.from.clone(),
                    to: vec![Number {
                        number: m.to.with_00(),
                    }],
                    body: Body {
                        kind: Some("auto".into()),
                        content: m.body.clone(),
                    },
                    reference: Some(m.id.to_hex()),
                    minimum_number_of_message_parts: Some(1),
                    maximum_number_of_message_parts: Some(8),
                    allowed_channels: Some(vec!["SMS".into()]),
                })
                .collect(),
        },
    }
}

/// Request-level codes that are about the account, not the messages: CM's
/// `TextClientStatusCode` (101 authentication failed, 102 balance
/// insufficient, 103 product token incorrect) comes back with an empty
/// `messages` list, CM's way of saying that no message of the request was
/// created. Not processed: retried.
fn account_problem(code: i64) -> bool {
    matches!(code, 101..=103)
}

pub fn classify(msgs: &[OutboundSms], ex: Exchange) -> Vec<SendResult> {
    let all = |r: SendResult| vec![r; msgs.len()];
    match ex {
        Exchange::NotSent(e) => all(SendResult::Transient {
            code: "CONNECT".into(),
            text: e,
            throttled: false,
        }),
        Exchange::NoAnswer(e) => all(http::no_answer(e)),
        // A 429 is a refusal to take the request at all (RFC 6585 §4); CM
        // documents no throttling answer of its own (providers.md §3.3).
        Exchange::Answered { status: 429, .. } => all(SendResult::Transient {
            code: "429".into(),
            text: "Too Many Requests".into(),
            throttled: true,
        }),
        // CM documents 5xx only as "internal server error": it may have
        // created some of the request's messages. In doubt, never resent.
        Exchange::Answered { status, body } if (500..600).contains(&status) => {
            let details = serde_json::from_slice::<SendResponse>(&body)
                .map(|r| r.details)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            all(http::in_doubt(format!("HTTP {status}"), details))
        }
        Exchange::Answered { status, body } => {
            let Ok(resp) = serde_json::from_slice::<SendResponse>(&body) else {
                return if (200..300).contains(&status) {
                    all(http::in_doubt(
                        format!("HTTP {status}"),
                        "answer body could not be read",
                    ))
                } else {
                    all(SendResult::Rejected {
                        code: status.to_string(),
                        text: format!("HTTP {status}"),
                        unsubscribed: false,
                    })
                };
            };
            if resp.error_code == 0 && (200..300).contains(&status) {
                return msgs
                    .iter()
                    .map(|m| SendResult::Accepted {
                        provider_message_id: m.id.to_hex(),
                    })
                    .collect();
            }
            if account_problem(resp.error_code) {
                return all(SendResult::Transient {
                    code: resp.error_code.to_string(),
                    text: resp.details,
                    throttled: false,
                });
            }
            if resp.error_code != 201 {
                return all(SendResult::Rejected {
                    code: resp.error_code.to_string(),
                    text: resp.details,
                    unsubscribed: false,
                });
            }
            // 201: some accepted, some rejected, message by message.
            let by_ref: HashMap<&str, &ResponseMessage> = resp
                .messages
                .iter()
                .filter_map(|r| r.reference.as_deref().map(|k| (k, r)))
                .collect();
            msgs.iter()
                .map(|m| match by_ref.get(m.id.to_hex().as_str()) {
                    Some(r) if r.status.eq_ignore_ascii_case("Accepted") => SendResult::Accepted {
                        provider_message_id: m.id.to_hex(),
                    },
                    Some(r) => SendResult::Rejected {
                        code: r.message_error_code.to_string(),
                        text: r.message_details.clone().unwrap_or_default(),
                        unsubscribed: false,
                    },
                    None => http::in_doubt(
                        format!("HTTP {status}"),
                        "the provider's answer did not mention this message",
                    ),
                })
                .collect()
        }
    }
}

// -------------------------------------------------------- status reports

/// The engine's state for a CM status code.
pub fn state_of(code: i64) -> Option<DeliveryState> {
    Some(match code {
        0 => DeliveryState::Pending,
        1 => DeliveryState::Rejected,
        2 | 4 => DeliveryState::Delivered,
        3 => DeliveryState::Failed,
        _ => return None,
    })
}

fn num(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn report(
    reference: Option<&str>,
    code: Option<i64>,
    error: Option<String>,
) -> Result<Report, MalformedReport> {
    let code = code.ok_or_else(|| MalformedReport("CM report without a status code".into()))?;
    let state = state_of(code)
        .ok_or_else(|| MalformedReport(format!("CM status code {code} is not known")))?;
    Ok(Report {
        id: reference.and_then(our_id),
        state,
        error_code: if state.is_final() && state != DeliveryState::Delivered {
            error.or_else(|| Some(format!("CM_STATUS_{code}")))
        } else {
            None
        },
    })
}

/// Parse a JSON report: `{"messages":{"msg": {...} | [...]}}`.
pub fn parse_json_reports(body: &[u8]) -> Result<Vec<Report>, MalformedReport> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| MalformedReport(format!("CM report: {e}")))?;
    let msg = &v["messages"]["msg"];
    let entries: Vec<&serde_json::Value> = match msg {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(_) => vec![msg],
        _ => return Err(MalformedReport("CM report without messages.msg".into())),
    };
    entries
        .into_iter()
        .map(|e| {
            report(
                e["reference"].as_str(),
                num(&e["status"]["code"]),
                text(&e["status"]["errorCode"]),
            )
        })
        .collect()
}

/// Parse an XML report: `<MESSAGES><MSG><REFERENCE/><STATUS><CODE/>...`.
pub fn parse_xml_reports(body: &[u8]) -> Result<Vec<Report>, MalformedReport> {
    use quick_xml::events::Event;
    let text_body = std::str::from_utf8(body)
        .map_err(|_| MalformedReport("CM XML report is not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text_body);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut seen_root = false;
    let (mut reference, mut code, mut error): (Option<String>, Option<String>, Option<String>) =
        (None, None, None);
    loop {
        match reader.read_event() {
            Err(e) => return Err(MalformedReport(format!("CM XML report: {e}"))),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).to_ascii_uppercase();
                if path.is_empty() {
                    if name != "MESSAGES" {
                        return Err(MalformedReport(format!(
                            "CM XML report: root <{name}>, expected <MESSAGES>"
                        )));
                    }
                    seen_root = true;
                }
                if name == "MSG" {
                    reference = None;
                    code = None;
                    error = None;
                }
                path.push(name);
            }
            Ok(Event::End(_)) => {
                if path.last().map(String::as_str) == Some("MSG") {
                    let c = code.as_deref().and_then(|c| c.trim().parse::<i64>().ok());
                    out.push(report(reference.as_deref(), c, error.clone())?);
                }
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let value = t
                    .unescape()
                    .map_err(|e| MalformedReport(format!("CM XML report: {e}")))?
                    .to_string();
                let tail: Vec<&str> = path.iter().rev().take(2).map(String::as_str).collect();
                match tail.as_slice() {
                    ["REFERENCE", "MSG"] => reference = Some(value),
                    ["CODE", "STATUS"] => code = Some(value),
                    ["ERRORCODE", "STATUS"] if !value.is_empty() => error = Some(value),
                    _ => {}
                }
            }
            Ok(_) => {}
        }
    }
    if !seen_root || !path.is_empty() {
        return Err(MalformedReport("CM XML report is incomplete".into()));
    }
    Ok(out)
}
