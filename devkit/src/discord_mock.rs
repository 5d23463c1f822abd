//! A Discord webhook endpoint for tests and the demo: a minimal HTTP/1.1
//! server on 127.0.0.1 that checks every message against Discord's
//! documented limits (shared/reference/providers.md, section 4: written
//! out here again, independently of the daemon's own fitting), records it,
//! and answers 204, or on demand 429 (with `retry_after` in the body and a
//! `Retry-After` header) or 404 (Unknown Webhook, code 10015).

use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub body: Value,
    /// The status answered.
    pub status: u16,
    pub at: Instant,
    /// Every way the body broke Discord's rules (empty: valid).
    pub violations: Vec<String>,
}

#[derive(Default)]
struct State {
    posted: Mutex<Vec<Posted>>,
    /// Answer the next n requests 429.
    limit_next: AtomicU32,
    /// `retry_after` of those 429s, in milliseconds.
    retry_after_ms: AtomicU32,
    /// Answer every request 404 (the webhook was deleted).
    gone: AtomicBool,
}

pub struct DiscordMock {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DiscordMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DiscordMock {
    /// Start on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start() -> std::io::Result<DiscordMock> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Ok(DiscordMock { port, state, task })
    }

    /// A webhook URL on this mock (`/api/webhooks/<id>/<token>`).
    pub fn url(&self, id: u64, token: &str) -> String {
        format!("http://127.0.0.1:{}/api/webhooks/{id}/{token}", self.port)
    }

    /// Answer the next `n` requests 429 with `retry_after`.
    pub fn rate_limit_next(&self, n: u32, retry_after: Duration) {
        self.state
            .retry_after_ms
            .store(retry_after.as_millis() as u32, Ordering::SeqCst);
        self.state.limit_next.store(n, Ordering::SeqCst);
    }

    /// Answer every request 404 from now on (or again 204).
    pub fn set_gone(&self, gone: bool) {
        self.state.gone.store(gone, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Posted> {
        self.state
            .posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The requests answered 2xx (the messages Discord would show).
    pub fn delivered(&self) -> Vec<Posted> {
        self.requests()
            .into_iter()
            .filter(|p| (200..300).contains(&p.status))
            .collect()
    }

    /// Every violation of Discord's rules seen in any request.
    pub fn violations(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .flat_map(|p| p.violations)
            .collect()
    }
}

/// Discord's length of a text: characters after trimming.
fn len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.trim().chars().count())
}

/// Everything in `body` that Discord would refuse (or that an alert must
/// never carry).
pub fn check(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut bad = |m: String| out.push(m);
    if body.get("allowed_mentions") != Some(&serde_json::json!({"parse": []})) {
        bad("allowed_mentions must be {\"parse\": []}".into());
    }
    if len(&body["content"]) > 2000 {
        bad("content over 2000".into());
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.is_empty() && len(&body["content"]) == 0 {
        bad("an empty message (50006)".into());
    }
    if embeds.len() > 10 {
        bad(format!("{} embeds (at most 10)", embeds.len()));
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let mut limit = |what: &str, v: &Value, max: usize| {
            let n = len(v);
            total += n;
            if n > max {
                bad(format!("embed {i}: {what} is {n} long (at most {max})"));
            }
        };
        limit("title", &e["title"], 256);
        limit("description", &e["description"], 4096);
        limit("footer.text", &e["footer"]["text"], 2048);
        limit("author.name", &e["author"]["name"], 256);
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            bad(format!("embed {i}: {} fields (at most 25)", fields.len()));
        }
        for (j, f) in fields.iter().enumerate() {
            let (n, v) = (len(&f["name"]), len(&f["value"]));
            if n == 0 || v == 0 {
                bad(format!("embed {i} field {j}: empty name or value"));
            }
            if n > 256 {
                bad(format!(
                    "embed {i} field {j}: name is {n} long (at most 256)"
                ));
            }
            if v > 1024 {
                bad(format!(
                    "embed {i} field {j}: value is {v} long (at most 1024)"
                ));
            }
            total += n + v;
        }
    }
    if total > 6000 {
        bad(format!("embeds total {total} characters (at most 6000)"));
    }
    // An alert never carries a phone number: no `+` followed by 8 digits.
    let text = body.to_string();
    let b = text.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'+' && b.len() > i + 8 && b[i + 1..i + 9].iter().all(u8::is_ascii_digit) {
            bad("a phone number in the alert".into());
            break;
        }
    }
    out
}

async fn serve(mut sock: tokio::net::TcpStream, st: Arc<State>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut clen = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                clen = v.trim().parse().unwrap_or(0);
            }
        }
        while buf.len() < head_end + clen {
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let raw = buf[head_end..head_end + clen].to_vec();
        buf.drain(..head_end + clen);
        let (body, mut violations) = match serde_json::from_slice::<Value>(&raw) {
            Ok(v) => {
                let c = check(&v);
                (v, c)
            }
            Err(e) => (Value::Null, vec![format!("not JSON: {e}")]),
        };
        let limited = st
            .limit_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let (status, extra, reply) = if st.gone.load(Ordering::SeqCst) {
            (
                404,
                String::new(),
                r#"{"message": "Unknown Webhook", "code": 10015}"#.to_string(),
            )
        } else if limited {
            let ms = st.retry_after_ms.load(Ordering::SeqCst);
            let secs = f64::from(ms) / 1000.0;
            (
                429,
                format!("retry-after: {}\r\n", (secs.ceil() as u64).max(1)),
                format!(
                    r#"{{"message": "You are being rate limited.", "retry_after": {secs}, "global": false}}"#
                ),
            )
        } else if !violations.is_empty() {
            (
                400,
                String::new(),
                r#"{"code": 50035, "message": "Invalid Form Body"}"#.to_string(),
            )
        } else {
            (204, String::new(), String::new())
        };
        if !path.starts_with("/api/webhooks/") {
            violations.push(format!("not a webhook path: {path}"));
        }
        st.posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Posted {
                path,
                body,
                status,
                at: Instant::now(),
                violations,
            });
        let reason = match status {
            204 => "No Content",
            404 => "Not Found",
            429 => "Too Many Requests",
            _ => "Bad Request",
        };
        let head = if reply.is_empty() {
            format!("HTTP/1.1 {status} {reason}\r\n{extra}content-length: 0\r\n\r\n")
        } else {
            format!(
                "HTTP/1.1 {status} {reason}\r\n{extra}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                reply.len()
            )
        };
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(reply.as_bytes()).await?;
    }
}
