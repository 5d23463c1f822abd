//! The report sender: posts delivery reports when they are due (Infobip in
//! batches of up to 100 per URL, Twilio one signed form per report, CM one
//! per report), and tries a failed POST again later, as providers do.

use super::state::*;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use trackly::providers::twilio;
// ------------------------------------------------------------ report sender

/// Post reports when they are due: Infobip in batches of up to 100 per URL,
/// Twilio one signed form per report, CM one per report.
pub(crate) async fn report_sender(mut rx: mpsc::UnboundedReceiver<Pending>, state: Arc<MockState>) {
    let Ok(client) = trackly::providers::http::client(Duration::from_secs(10), 64) else {
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
