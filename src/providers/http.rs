//! What adapters share: one pooled HTTP client per adapter, and the
//! classification of what happened on the wire. The one rule that keeps
//! guarantee 1: only an error that provably happened before the request
//! left (connection refused, DNS) may be retried; anything after that is in
//! doubt unless the provider answered, and an answer is "not processed"
//! only where the provider documents it so (each adapter's classification
//! names the document). Every 5xx is in doubt: a 500, 502 or 504 does not
//! prove that nothing was taken (a gateway timing out after the request
//! went through is exactly the ambiguous case).

use std::time::Duration;

/// What one HTTP exchange produced.
#[derive(Debug)]
pub enum Exchange {
    /// The provider answered (any status).
    Answered { status: u16, body: bytes::Bytes },
    /// Nothing was sent (could not connect): safe to retry.
    NotSent(String),
    /// The request may have been received and no (complete) answer came back.
    NoAnswer(String),
}

pub fn client(timeout: Duration, max_idle: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("trackly/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub async fn exchange(req: reqwest::RequestBuilder) -> Exchange {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(body) => Exchange::Answered { status, body },
                Err(e) => {
                    Exchange::NoAnswer(format!("HTTP {status}, body not read: {}", short(&e)))
                }
            }
        }
        Err(e) if e.is_connect() => Exchange::NotSent(short(&e)),
        Err(e) if e.is_builder() => Exchange::NotSent(short(&e)),
        Err(e) => Exchange::NoAnswer(short(&e)),
    }
}

/// An error's text without the URL (which may carry credentials or numbers).
fn short(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The in-doubt answer for an exchange that went out and came back without
/// proof of what happened.
pub fn in_doubt(code: impl Into<String>, text: impl Into<String>) -> super::SendResult {
    super::SendResult::InDoubt {
        code: Some(code.into()),
        text: text.into(),
    }
}

/// `TIMEOUT` or `NO_ANSWER` for an exchange that got no complete answer.
pub fn no_answer(text: String) -> super::SendResult {
    let code = if text.starts_with("timed out") {
        "TIMEOUT"
    } else {
        "NO_ANSWER"
    };
    in_doubt(code, text)
}

/// Send `msgs` in requests of up to `batch` messages with at most
/// `concurrency` requests in flight; results come back in message order.
pub async fn in_batches<'a, F, Fut>(
    msgs: &'a [super::OutboundSms],
    batch: usize,
    concurrency: usize,
    send: F,
) -> Vec<super::SendResult>
where
    F: Fn(&'a [super::OutboundSms]) -> Fut,
    Fut: std::future::Future<Output = Vec<super::SendResult>>,
{
    use futures::StreamExt;
    let requests: Vec<Fut> = msgs.chunks(batch.max(1)).map(send).collect();
    futures::stream::iter(requests)
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The body of a lookup's 2xx answer. Anything else (no answer, any other
/// status) fails the whole lookup: the messages stay in doubt.
pub fn lookup_body(ex: Exchange) -> Result<bytes::Bytes, super::LookupError> {
    match ex {
        Exchange::Answered { status, body } if (200..300).contains(&status) => Ok(body),
        Exchange::Answered { status, .. } => {
            Err(super::LookupError::Failed(format!("HTTP {status}")))
        }
        Exchange::NotSent(e) | Exchange::NoAnswer(e) => Err(super::LookupError::Failed(e)),
    }
}
