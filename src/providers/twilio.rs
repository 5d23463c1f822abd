//! Twilio Programmable Messaging: one form-encoded `POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json` per message (basic auth),
//! with bounded concurrency; form-encoded status callbacks signed with
//! `X-Twilio-Signature`.
//!
//! Decisions on points the reference marks unconfirmed:
//! - The status callback URL carries our id (`?m=<id>`), so a callback maps
//!   back even when it arrives before the send response was recorded.
//! - `Retry-After` is not relied upon; 429 (code 20429) is throttling and is
//!   retried with our own backoff.
//! - `partially_delivered` and `canceled` count as failed; `sent` stays
//!   pending (carriers may never confirm); `read` counts as delivered.
//! - 401 (20003) and 404 (20404, wrong account) are our configuration, not
//!   the message: transient, like Infobip's.

use super::http::{self, Exchange};
use super::{MalformedReport, OutboundSms, Report, SendResult, SmsProvider, our_id};
use crate::config::{TwilioConfig, TwilioCredentials};
use crate::domain::{DeliveryState, ProviderKind};
use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;

/// Twilio's code for "the recipient replied STOP".
pub const UNSUBSCRIBED: i64 = 21610;

pub struct Twilio {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `Basic base64(sid:token)`, computed once.
    authorization: reqwest::header::HeaderValue,
    callback_base: Option<String>,
    concurrency: usize,
}

impl Twilio {
    pub fn new(
        cfg: &TwilioConfig,
        creds: TwilioCredentials,
        callback_base: Option<String>,
    ) -> Result<Self, super::ProviderSetupError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            cfg.base_url,
            creds.account_sid.expose()
        );
        let url =
            reqwest::Url::parse(&url).map_err(|source| super::ProviderSetupError::BaseUrl {
                key: "providers.twilio.base_url",
                source,
            })?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            creds.account_sid.expose(),
            creds.auth_token.expose()
        ));
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| super::ProviderSetupError::Credentials { provider: "Twilio" })?;
        authorization.set_sensitive(true);
        Ok(Twilio {
            // Each worker keeps `concurrency` requests in flight; keep enough
            // connections for reuse instead of reconnecting.
            client: http::client(cfg.timeout.get(), cfg.concurrency.max(1) * 8)?,
            url,
            authorization,
            callback_base,
            concurrency: cfg.concurrency.max(1),
        })
    }

    async fn send_one(&self, m: &OutboundSms) -> SendResult {
        let form = form_fields(m, self.callback_base.as_deref());
        let req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        classify(http::exchange(req).await)
    }
}

#[async_trait]
impl SmsProvider for Twilio {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Twilio
    }

    fn max_batch(&self) -> usize {
        // No batch API: one call takes a whole chunk and keeps
        // `concurrency` single requests in flight while working through it.
        1000
    }

    async fn send(&self, msgs: &[OutboundSms]) -> Vec<SendResult> {
        let requests: Vec<_> = msgs.iter().map(|m| self.send_one(m)).collect();
        futures::stream::iter(requests)
            .buffered(self.concurrency)
            .collect()
            .await
    }
}

/// The form of one send request.
pub fn form_fields(m: &OutboundSms, callback_base: Option<&str>) -> Vec<(&'static str, String)> {
    let mut f = vec![("To", m.to.as_str().to_string()), ("Body", m.body.clone())];
    match &m.messaging_service_sid {
        Some(sid) => f.push(("MessagingServiceSid", sid.clone())),
        None => f.push(("From", m.from.clone())),
    }
    if let Some(base) = callback_base {
        f.push(("StatusCallback", format!("{base}?m={}", m.id.to_hex())));
    }
    f
}

#[derive(Debug, Deserialize)]
pub struct MessageResource {
    pub sid: String,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

pub fn classify(ex: Exchange) -> SendResult {
    match ex {
        Exchange::NotSent(e) => SendResult::Transient {
            code: "CONNECT".into(),
            text: e,
            throttled: false,
        },
        Exchange::NoAnswer(e) => http::no_answer(e),
        Exchange::Answered { status, body } if (200..300).contains(&status) => {
            match serde_json::from_slice::<MessageResource>(&body) {
                Ok(r) => SendResult::Accepted {
                    provider_message_id: r.sid,
                },
                Err(_) => http::in_doubt(format!("HTTP {status}"), "answer body could not be read"),
            }
        }
        Exchange::Answered { status, body } => {
            let err: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            let code = err.as_ref().and_then(|e| e.code);
            let text = err
                .and_then(|e| e.message)
                .unwrap_or_else(|| format!("HTTP {status}"));
            let code_s = code.map_or_else(|| status.to_string(), |c| c.to_string());
            match (status, code) {
                // Twilio's error 20429 page: "a 429 is never processed and
                // always safe to retry" after backing off.
                (429, _) | (_, Some(20429)) => SendResult::Transient {
                    code: code_s,
                    text,
                    throttled: true,
                },
                // Authentication (20003) or an unknown account: refused
                // before the message resource was created (RFC 9110
                // §15.5.2-5; Twilio creates the resource only on 201).
                (401 | 403 | 404, _) => SendResult::Transient {
                    code: code_s,
                    text,
                    throttled: false,
                },
                (400..=499, c) => SendResult::Rejected {
                    code: code_s,
                    text,
                    unsubscribed: c == Some(UNSUBSCRIBED),
                },
                // 5xx (Twilio documents no 5xx as "not processed": the
                // message may have been created) and anything unexpected.
                _ => http::in_doubt(format!("HTTP {status} {code_s}"), text),
            }
        }
    }
}

// -------------------------------------------------------- status callbacks

/// The engine's state for a `MessageStatus`, or None for a value that is not
/// an outbound status (ignored, not an error: Twilio adds values over time).
pub fn state_of(status: &str) -> Option<DeliveryState> {
    Some(match status {
        "accepted" | "scheduled" | "queued" | "sending" | "sent" => DeliveryState::Pending,
        "delivered" | "read" => DeliveryState::Delivered,
        "undelivered" => DeliveryState::Undelivered,
        "failed" | "canceled" | "partially_delivered" => DeliveryState::Failed,
        _ => return None,
    })
}

/// Parse a status callback: `params` are the form fields, `our` the `m`
/// query parameter. Returns None for a status that is not tracked.
pub fn parse_callback(
    params: &[(String, String)],
    our: Option<&str>,
) -> Result<Option<Report>, MalformedReport> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let status = get("MessageStatus")
        .or_else(|| get("SmsStatus"))
        .ok_or_else(|| MalformedReport("Twilio callback without MessageStatus".into()))?;
    if get("MessageSid").or_else(|| get("SmsSid")).is_none() {
        return Err(MalformedReport("Twilio callback without MessageSid".into()));
    }
    let Some(state) = state_of(status) else {
        return Ok(None);
    };
    let error_code = get("ErrorCode").filter(|c| !c.is_empty()).map(String::from);
    Ok(Some(Report {
        id: our.and_then(our_id),
        state,
        error_code: if state.is_final() && state != DeliveryState::Delivered {
            error_code.or_else(|| Some(status.to_string()))
        } else {
            None
        },
    }))
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + each parameter
/// name and value, names sorted)).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Check a signature in constant time, against the URL with and without an
/// explicit default port (Twilio is not consistent there).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let mut candidates = vec![url.to_string()];
    if let Ok(mut u) = url::Url::parse(url) {
        match u.port() {
            Some(_) => {
                let _ = u.set_port(None);
                candidates.push(u.to_string());
            }
            None => {
                if let Some(p) = u.port_or_known_default() {
                    let _ = u.set_port(Some(p));
                    candidates.push(u.to_string());
                }
            }
        }
    }
    candidates.iter().any(|c| {
        let expected = signature(auth_token, c, params);
        constant_time_eq(expected.as_bytes(), given.as_bytes())
    })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The published test vector (shared/reference/providers.md §2.6).
    #[test]
    fn signature_matches_the_published_vector() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            "12345",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        // With the default port spelled out, it still verifies.
        assert!(verify(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(
            "12346",
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let mut tampered = params.clone();
        tampered[2].1 = "9999".into();
        assert!(!verify(
            "12345",
            url,
            &tampered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }
}
