//! A customer's webhook receiver, for tests and the benchmark: a minimal
//! HTTP/1.1 server on 127.0.0.1 (keep-alive, `Content-Length` bodies) that
//! checks `X-Trackly-Signature` with the account's secret, records every
//! request, and answers 200, or 500 while told to fail.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// `X-Trackly-Delivery` (the outbox entry id).
    pub delivery: String,
    pub signature: String,
    /// The signature verified against the body, within five minutes.
    pub signature_ok: bool,
    pub body: String,
    /// The status answered.
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
pub struct ReceiverState {
    secret: String,
    received: Mutex<Vec<Received>>,
    fail_next: AtomicU32,
    /// Requests answered 2xx.
    pub ok: AtomicU64,
    /// Requests whose signature did not verify.
    pub bad_signatures: AtomicU64,
    /// Record bodies (off for the benchmark's long runs).
    keep: bool,
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Start on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start(secret: &str) -> std::io::Result<Receiver> {
        Self::start_with(secret, true).await
    }

    /// `keep = false`: count requests without keeping them.
    pub async fn start_with(secret: &str, keep: bool) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(ReceiverState {
            secret: secret.to_string(),
            keep,
            ..Default::default()
        });
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
        Ok(Receiver { port, state, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer the next `n` requests 500.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn ok_count(&self) -> u64 {
        self.state.ok.load(Ordering::SeqCst)
    }
}

async fn serve(mut sock: tokio::net::TcpStream, st: Arc<ReceiverState>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // Headers.
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
        let request_line = lines.next().unwrap_or("");
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        let mut signature = String::new();
        let mut delivery = String::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                match k.as_str() {
                    "content-length" => len = v.parse().unwrap_or(0),
                    "x-trackly-signature" => signature = v.to_string(),
                    "x-trackly-delivery" => delivery = v.to_string(),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 8192];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let now = chrono::Utc::now().timestamp();
        let signature_ok =
            trackly::net::signature::verify(&st.secret, &signature, &body, now, 300).is_ok();
        if !signature_ok {
            st.bad_signatures.fetch_add(1, Ordering::SeqCst);
        }
        let fail = st
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if fail { 500 } else { 200 };
        if !fail {
            st.ok.fetch_add(1, Ordering::SeqCst);
        }
        if st.keep {
            st.received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Received {
                    path,
                    delivery,
                    signature,
                    signature_ok,
                    body: String::from_utf8_lossy(&body).to_string(),
                    status,
                    at: Instant::now(),
                });
        }
        let reason = if fail { "Internal Server Error" } else { "OK" };
        sock.write_all(
            format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
        )
        .await?;
    }
}
