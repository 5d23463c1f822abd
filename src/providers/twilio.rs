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
//!
//! Lookups of in-doubt messages: Twilio keeps no reference of ours on a
//! message, so a lookup lists the Messages sent to the query's number (from
//! its sender, when not a Messaging Service), `GET .../Messages.json?To=..
//! &From=..&PageSize=1000`, and matches on body and time ([`matches`]).
//! What the stored documents say (Twilio's Message resource reference,
//! twilio-python's `MessageList.page`): the filters are `To`, `From`,
//! `DateSent`/`DateSent<`/`DateSent>` (GMT dates, on `date_sent`),
//! `PageSize` (default 50, at most 1000) and `PageToken`; results are sorted
//! by `DateSent`, most recent first; `next_page_uri` is null on the last page.
//!
//! Decision: no `DateSent` filter. `date_sent` is empty until Twilio hands a
//! message to the carrier, so a message still queued at Twilio (the very
//! one we are asking about) would fall outside any `DateSent` filter and
//! read as "not taken"; where such messages sort is not documented either.
//! So every page is read (up to [`LOOKUP_MAX_PAGES`], then the lookup
//! fails rather than answer on part of the list) and the time window is
//! applied to `date_created`, which every message has.

use super::http::{self, Exchange};
use super::{
    LookupAnswer, LookupError, LookupQuery, MalformedReport, OutboundSms, Report, SendResult,
    SmsProvider, our_id,
};
use crate::config::{TwilioConfig, TwilioCredentials};
use crate::domain::{DeliveryState, ProviderKind, Timestamp};
use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;

/// Twilio's code for "the recipient replied STOP".
pub const UNSUBSCRIBED: i64 = 21610;

/// How much earlier than our attempt Twilio's `date_created` may be (the
/// two clocks differ).
pub const LOOKUP_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Pages of 1,000 messages read per query before the lookup gives up.
pub const LOOKUP_MAX_PAGES: usize = 5;

/// List requests in flight per lookup call.
pub const LOOKUP_CONCURRENCY: usize = 8;

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

    /// Every message to `q.to` (from `q.from`, when set) that Twilio lists,
    /// matched against the query; pages followed to the end, at most
    /// [`LOOKUP_MAX_PAGES`].
    async fn lookup_one(&self, q: &LookupQuery) -> Result<LookupAnswer, LookupError> {
        let mut url = self.url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("To", q.to.as_str());
            if !q.from.is_empty() {
                pairs.append_pair("From", &q.from);
            }
            pairs.append_pair("PageSize", "1000");
        }
        let mut found: Vec<ListedMessage> = Vec::new();
        for _ in 0..LOOKUP_MAX_PAGES {
            let req = self
                .client
                .get(url.clone())
                .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            let body = http::lookup_body(http::exchange(req).await)?;
            let page: MessagePage = serde_json::from_slice(&body).map_err(|e| {
                LookupError::Failed(format!(
                    "Twilio message list could not be read ({:?} at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            })?;
            for m in page.messages {
                if matches(q, &m).map_err(LookupError::Failed)? {
                    found.push(m);
                }
            }
            match page.next_page_uri.as_deref().filter(|u| !u.is_empty()) {
                None => return Ok(answer_of(found)),
                Some(next) => url = self.next_page(next)?,
            }
        }
        Err(LookupError::Failed(format!(
            "more than {LOOKUP_MAX_PAGES} pages of messages to one number"
        )))
    }

    /// `next_page_uri` (relative to the API) as a URL on the same origin:
    /// our credentials go nowhere else.
    fn next_page(&self, next: &str) -> Result<reqwest::Url, LookupError> {
        let url = self
            .url
            .join(next)
            .map_err(|_| LookupError::Failed("next_page_uri is not a URL".into()))?;
        if url.origin() != self.url.origin() {
            return Err(LookupError::Failed(
                "next_page_uri points to another host".into(),
            ));
        }
        Ok(url)
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

    fn can_look_up(&self) -> bool {
        true
    }

    fn lookup_batch(&self) -> usize {
        // One list request (or a few pages) per query, LOOKUP_CONCURRENCY
        // at a time.
        100
    }

    /// One list per query (see the module's notes): taken when a message
    /// matches ([`matches`]; several matches are still taken), not taken
    /// when none does. Any failed request, unreadable page or list longer
    /// than [`LOOKUP_MAX_PAGES`] fails the whole call.
    async fn lookup(&self, queries: &[LookupQuery]) -> Result<Vec<LookupAnswer>, LookupError> {
        let requests: Vec<_> = queries.iter().map(|q| self.lookup_one(q)).collect();
        let answers: Result<Vec<LookupAnswer>, LookupError> = futures::stream::iter(requests)
            .buffered(LOOKUP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        match &answers {
            Ok(a) => {
                let taken = a
                    .iter()
                    .filter(|a| matches!(a, LookupAnswer::Taken { .. }))
                    .count();
                tracing::debug!(
                    provider = "twilio",
                    queries = queries.len(),
                    taken,
                    "lookup answered"
                );
            }
            Err(e) => {
                tracing::warn!(provider = "twilio", queries = queries.len(), error = %e, "lookup failed");
            }
        }
        answers
    }
}

// ------------------------------------------------------------------ lookups

/// One page of `GET .../Messages.json`.
#[derive(Debug, Deserialize)]
struct MessagePage {
    messages: Vec<ListedMessage>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// A Message resource as the list shows it (the fields a lookup reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedMessage {
    pub sid: String,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// RFC 2822, e.g. `Tue, 03 Nov 2026 12:00:00 +0000`.
    #[serde(default)]
    pub date_created: Option<String>,
    /// `outbound-api`, `inbound`, ...
    #[serde(default)]
    pub direction: Option<String>,
    /// A number in Twilio's documents; a string accepted too.
    #[serde(default)]
    pub error_code: Option<serde_json::Value>,
}

impl ListedMessage {
    fn created(&self) -> Option<Timestamp> {
        self.date_created
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc))
    }
}

/// Whether a listed message is the query's attempt: outbound, to the same
/// number, from the same sender (unless a Messaging Service sent it, which
/// picks the number), the same body exactly, and created no earlier than
/// the attempt minus [`LOOKUP_SKEW`]. A message that matches on all else
/// but whose `date_created` does not read is an error (never guessed).
pub fn matches(q: &LookupQuery, m: &ListedMessage) -> Result<bool, String> {
    if m.direction
        .as_deref()
        .is_some_and(|d| !d.starts_with("outbound"))
    {
        return Ok(false);
    }
    if m.to.as_deref() != Some(q.to.as_str()) || m.body.as_deref() != Some(q.body.as_str()) {
        return Ok(false);
    }
    if !q.from.is_empty() && m.from.as_deref() != Some(q.from.as_str()) {
        return Ok(false);
    }
    match m.created() {
        Some(created) => Ok(created >= q.attempted_at - LOOKUP_SKEW),
        None => Err("a matching message has no readable date_created".into()),
    }
}

/// The answer from the messages that matched: none is not taken; one or
/// more is taken, reported as the earliest (an ambiguous match counts as
/// taken: resending could only duplicate).
pub fn answer_of(mut found: Vec<ListedMessage>) -> LookupAnswer {
    found.sort_by(|a, b| (a.created(), &a.sid).cmp(&(b.created(), &b.sid)));
    match found.into_iter().next() {
        None => LookupAnswer::NotTaken,
        Some(m) => {
            let state = m.status.as_deref().and_then(state_of);
            let delivery = state.filter(|s| s.is_final());
            let error_code = match &m.error_code {
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            }
            .filter(|_| delivery.is_some_and(|d| d != DeliveryState::Delivered));
            LookupAnswer::Taken {
                provider_message_id: Some(m.sid),
                delivery,
                error_code,
            }
        }
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
    use crate::domain::{E164, MessageId};

    fn query(from: &str, at: &str) -> LookupQuery {
        LookupQuery {
            id: MessageId::new(),
            from: from.into(),
            to: E164::parse("+41793026727").unwrap(),
            body: "Your code is 1234".into(),
            attempted_at: chrono::DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&chrono::Utc),
        }
    }

    fn listed(sid: &str, from: &str, body: &str, created: &str, status: &str) -> ListedMessage {
        ListedMessage {
            sid: sid.into(),
            to: Some("+41793026727".into()),
            from: Some(from.into()),
            body: Some(body.into()),
            status: Some(status.into()),
            date_created: Some(created.into()),
            direction: Some("outbound-api".into()),
            error_code: None,
        }
    }

    #[test]
    fn a_lookup_matches_number_sender_body_and_time() {
        let q = query("+15550000001", "2026-11-03T12:00:00Z");
        let m = |body: &str, created: &str| listed("SM1", "+15550000001", body, created, "queued");
        // Same body, created at the attempt, or a little before it (skew).
        assert_eq!(
            matches(
                &q,
                &m("Your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000")
            ),
            Ok(true)
        );
        assert_eq!(
            matches(
                &q,
                &m("Your code is 1234", "Tue, 03 Nov 2026 11:55:00 +0000")
            ),
            Ok(true)
        );
        assert_eq!(
            matches(
                &q,
                &m("Your code is 1234", "Tue, 03 Nov 2026 13:00:00 +0100")
            ),
            Ok(true)
        );
        // Older than the skew allowance: an earlier message with that text.
        assert_eq!(
            matches(
                &q,
                &m("Your code is 1234", "Tue, 03 Nov 2026 11:54:59 +0000")
            ),
            Ok(false)
        );
        // Another body (exact comparison).
        assert_eq!(
            matches(
                &q,
                &m("Your code is 1235", "Tue, 03 Nov 2026 12:00:01 +0000")
            ),
            Ok(false)
        );
        assert_eq!(
            matches(
                &q,
                &m("your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000")
            ),
            Ok(false)
        );
        // Another sender, another number, an inbound message.
        let mut other = m("Your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000");
        other.from = Some("+15550000002".into());
        assert_eq!(matches(&q, &other), Ok(false));
        let mut other = m("Your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000");
        other.to = Some("+41793026728".into());
        assert_eq!(matches(&q, &other), Ok(false));
        let mut other = m("Your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000");
        other.direction = Some("inbound".into());
        assert_eq!(matches(&q, &other), Ok(false));
        // A Messaging Service chose the sender: any sender matches.
        let q_ms = query("", "2026-11-03T12:00:00Z");
        let mut pooled = m("Your code is 1234", "Tue, 03 Nov 2026 12:00:01 +0000");
        pooled.from = Some("+15559999999".into());
        assert_eq!(matches(&q_ms, &pooled), Ok(true));
        // A match whose time does not read is an error, never a guess.
        assert!(matches(&q, &m("Your code is 1234", "yesterday")).is_err());
        let mut undated = m("Your code is 1234", "");
        undated.date_created = None;
        assert!(matches(&q, &undated).is_err());
        // ... but a non-match with a bad date is just a non-match.
        assert_eq!(matches(&q, &m("other", "yesterday")), Ok(false));
    }

    #[test]
    fn answers_take_the_earliest_match_and_map_the_status() {
        assert_eq!(answer_of(vec![]), LookupAnswer::NotTaken);
        let a = listed(
            "SMb",
            "+1",
            "x",
            "Tue, 03 Nov 2026 12:00:02 +0000",
            "delivered",
        );
        let b = listed("SMa", "+1", "x", "Tue, 03 Nov 2026 12:00:01 +0000", "sent");
        assert_eq!(
            answer_of(vec![a.clone(), b]),
            LookupAnswer::Taken {
                provider_message_id: Some("SMa".into()),
                delivery: None,
                error_code: None
            }
        );
        assert_eq!(
            answer_of(vec![a]),
            LookupAnswer::Taken {
                provider_message_id: Some("SMb".into()),
                delivery: Some(DeliveryState::Delivered),
                error_code: None
            }
        );
        let mut u = listed(
            "SMc",
            "+1",
            "x",
            "Tue, 03 Nov 2026 12:00:02 +0000",
            "undelivered",
        );
        u.error_code = Some(serde_json::json!(30003));
        assert_eq!(
            answer_of(vec![u]),
            LookupAnswer::Taken {
                provider_message_id: Some("SMc".into()),
                delivery: Some(DeliveryState::Undelivered),
                error_code: Some("30003".into())
            }
        );
        for (status, d) in [
            ("failed", Some(DeliveryState::Failed)),
            ("queued", None),
            ("accepted", None),
            ("sending", None),
            ("something-new", None),
        ] {
            let m = listed("SMd", "+1", "x", "Tue, 03 Nov 2026 12:00:02 +0000", status);
            assert!(
                matches!(answer_of(vec![m]), LookupAnswer::Taken { delivery, .. } if delivery == d),
                "{status}"
            );
        }
    }

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
