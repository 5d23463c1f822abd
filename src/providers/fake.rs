//! An in-process provider for the demo, tests and benchmarks: configurable
//! latency and failures, and a record of everything it accepted so tests can
//! count duplicates and measure send times. Lookups answer from that record
//! (messages answered in doubt but taken included), or fail on demand.

use super::{LookupAnswer, LookupError, LookupQuery, OutboundSms, SendResult, SmsProvider};
use crate::config::FakeProviderConfig;
use crate::domain::{MessageId, ProviderKind};
use async_trait::async_trait;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Knobs; see `[providers.fake]` in config.toml.
#[derive(Debug, Clone)]
pub struct FakeSettings {
    pub latency: Duration,
    pub reject_rate: f64,
    pub transient_rate: f64,
    pub throttle_rate: f64,
    pub timeout_rate: f64,
    pub batch_size: usize,
    pub record_file: Option<std::path::PathBuf>,
    pub seed: u64,
    /// Answer in-doubt lookups from what this instance took. Off for a
    /// daemon configured with the fake (`providers.fake`): another process's
    /// fake would have no record of what this one took, and "not taken" would
    /// send it twice. In-process tests turn it on.
    pub lookups: bool,
}

impl Default for FakeSettings {
    fn default() -> Self {
        FakeSettings {
            latency: Duration::ZERO,
            reject_rate: 0.0,
            transient_rate: 0.0,
            throttle_rate: 0.0,
            timeout_rate: 0.0,
            batch_size: 500,
            record_file: None,
            seed: 7,
            lookups: true,
        }
    }
}

impl From<&FakeProviderConfig> for FakeSettings {
    fn from(c: &FakeProviderConfig) -> Self {
        FakeSettings {
            latency: c.latency.get(),
            reject_rate: c.reject_rate,
            transient_rate: c.transient_rate,
            throttle_rate: c.throttle_rate,
            timeout_rate: c.timeout_rate,
            batch_size: c.batch_size,
            record_file: (!c.record_file.is_empty()).then(|| c.record_file.clone().into()),
            seed: std::process::id() as u64,
            lookups: false,
        }
    }
}

/// Scripted answers for specific numbers (tests).
#[derive(Debug, Clone)]
pub enum Scripted {
    Reject {
        code: String,
        unsubscribed: bool,
    },
    Transient {
        throttled: bool,
    },
    /// Taken, but answered ambiguously (in doubt): recorded as accepted at
    /// the fake, as a provider that timed out after taking it would.
    InDoubt,
    /// Answered ambiguously without being taken (the request was lost on
    /// its way): in doubt, and the fake has no record of it.
    LostInDoubt,
    /// Panic inside the provider call (crash tests).
    Panic,
}

struct Inner {
    rng: rand::rngs::StdRng,
    accepted: HashMap<MessageId, u32>,
    /// (time since start, id) of each accepted message.
    received: Vec<(Duration, MessageId)>,
    calls: u64,
    scripted: HashMap<String, Scripted>,
    /// Lookups fail (as a provider answering 503 would).
    lookup_fail: bool,
    lookup_calls: u64,
    lookup_queries: u64,
}

pub struct FakeProvider {
    settings: FakeSettings,
    start: Instant,
    inner: Mutex<Inner>,
}

impl FakeProvider {
    pub fn new(settings: FakeSettings) -> Self {
        let rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
        FakeProvider {
            settings,
            start: Instant::now(),
            inner: Mutex::new(Inner {
                rng,
                accepted: HashMap::new(),
                received: Vec::new(),
                calls: 0,
                scripted: HashMap::new(),
                lookup_fail: false,
                lookup_calls: 0,
                lookup_queries: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answer `to` (an E.164 string) this way from now on.
    pub fn script(&self, to: &str, answer: Scripted) {
        self.lock().scripted.insert(to.to_string(), answer);
    }

    pub fn unscript(&self, to: &str) {
        self.lock().scripted.remove(to);
    }

    /// How often each message id was accepted.
    pub fn accepted(&self) -> HashMap<MessageId, u32> {
        self.lock().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.lock().accepted.len()
    }

    /// Ids accepted more than once (must be empty).
    pub fn duplicates(&self) -> Vec<MessageId> {
        self.lock()
            .accepted
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Receive times of accepted messages, since the provider was created.
    pub fn receive_times(&self) -> Vec<Duration> {
        self.lock().received.iter().map(|(t, _)| *t).collect()
    }

    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Make lookups fail (`true`) or answer again (`false`).
    pub fn set_lookup_fail(&self, fail: bool) {
        self.lock().lookup_fail = fail;
    }

    /// Lookup calls so far, and the queries they carried.
    pub fn lookups(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.lookup_calls, inner.lookup_queries)
    }
}

/// Count `m` as received by the fake (and in the record file).
fn take(inner: &mut Inner, lines: &mut String, s: &FakeSettings, now: Duration, m: &OutboundSms) {
    *inner.accepted.entry(m.id).or_insert(0) += 1;
    inner.received.push((now, m.id));
    if s.record_file.is_some() {
        lines.push_str(&m.id.to_hex());
        lines.push('\n');
    }
}

#[async_trait]
impl SmsProvider for FakeProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fake
    }

    fn max_batch(&self) -> usize {
        self.settings.batch_size
    }

    async fn send(&self, msgs: &[OutboundSms]) -> Vec<SendResult> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        let mut lines = String::new();
        let results = {
            let mut inner = self.lock();
            inner.calls += 1;
            let s = &self.settings;
            let roll: f64 = inner.rng.random();
            // Whole-call failures first, as a real HTTP call fails as a whole.
            let call_failure = if roll < s.throttle_rate {
                Some(SendResult::Transient {
                    code: "429".into(),
                    text: "Too Many Requests".into(),
                    throttled: true,
                })
            } else if roll < s.throttle_rate + s.transient_rate {
                // Refused before anything was written: provably not sent.
                Some(SendResult::Transient {
                    code: "CONNECT".into(),
                    text: "could not connect: connection refused".into(),
                    throttled: false,
                })
            } else {
                None
            };
            // The request went out, the fake took it, and the answer got
            // lost: in doubt (and counted as received, so a resend would
            // show up as a duplicate).
            let timed_out = call_failure.is_none()
                && roll < s.throttle_rate + s.transient_rate + s.timeout_rate;
            if let Some(f) = call_failure {
                vec![f; msgs.len()]
            } else {
                let now = self.start.elapsed();
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    let scripted = inner.scripted.get(m.to.as_str()).cloned();
                    let r = match scripted {
                        Some(Scripted::Panic) => panic!("fake provider: scripted panic"),
                        Some(Scripted::Reject { code, unsubscribed }) => SendResult::Rejected {
                            code,
                            text: "rejected by script".into(),
                            unsubscribed,
                        },
                        Some(Scripted::Transient { throttled }) => SendResult::Transient {
                            code: if throttled { "429" } else { "CONNECT" }.into(),
                            text: "scripted transient error".into(),
                            throttled,
                        },
                        Some(Scripted::InDoubt) => {
                            take(&mut inner, &mut lines, s, now, m);
                            SendResult::InDoubt {
                                code: Some("HTTP 502".into()),
                                text: "scripted ambiguous answer".into(),
                            }
                        }
                        Some(Scripted::LostInDoubt) => SendResult::InDoubt {
                            code: Some("TIMEOUT".into()),
                            text: "scripted lost request".into(),
                        },
                        None if inner.rng.random::<f64>() < s.reject_rate => SendResult::Rejected {
                            code: "FAKE_REJECTED".into(),
                            text: "destination rejected".into(),
                            unsubscribed: false,
                        },
                        None => SendResult::Accepted {
                            provider_message_id: format!("fake-{}", m.id),
                        },
                    };
                    let r = match r {
                        SendResult::Accepted { .. } if timed_out => {
                            take(&mut inner, &mut lines, s, now, m);
                            SendResult::InDoubt {
                                code: Some("TIMEOUT".into()),
                                text: "timed out waiting for the provider".into(),
                            }
                        }
                        SendResult::Accepted { .. } => {
                            take(&mut inner, &mut lines, s, now, m);
                            r
                        }
                        r => r,
                    };
                    out.push(r);
                }
                out
            }
        };
        if let (Some(path), false) = (&self.settings.record_file, lines.is_empty()) {
            // Append before answering, so a crash after "accepted" still
            // leaves the record (the page cache survives SIGKILL).
            let path = path.clone();
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                f.write_all(lines.as_bytes())
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::error!("fake provider: could not append to its record file");
            }
        }
        results
    }

    fn can_look_up(&self) -> bool {
        self.settings.lookups
    }

    /// Taken for every message the fake recorded as received (accepted, or
    /// taken and answered in doubt: `Scripted::InDoubt`, `timeout_rate`),
    /// not taken otherwise; or an error while lookups are set to fail.
    async fn lookup(&self, queries: &[LookupQuery]) -> Result<Vec<LookupAnswer>, LookupError> {
        let mut inner = self.lock();
        inner.lookup_calls += 1;
        inner.lookup_queries += queries.len() as u64;
        if inner.lookup_fail {
            return Err(LookupError::Failed("HTTP 503".into()));
        }
        Ok(queries
            .iter()
            .map(|q| match inner.accepted.contains_key(&q.id) {
                true => LookupAnswer::Taken {
                    provider_message_id: Some(format!("fake-{}", q.id)),
                    delivery: None,
                    error_code: None,
                },
                false => LookupAnswer::NotTaken,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{E164, SendingListId};

    fn sms(i: u64) -> OutboundSms {
        OutboundSms {
            id: MessageId::new(),
            list: SendingListId::new(),
            from: "+15550000001".into(),
            to: E164::parse(&format!("+1200000{i:04}")).unwrap(),
            body: "hi".into(),
            messaging_service_sid: None,
        }
    }

    #[tokio::test]
    async fn accepts_and_records() {
        let p = FakeProvider::new(FakeSettings::default());
        let msgs: Vec<OutboundSms> = (0..5).map(sms).collect();
        let r = p.send(&msgs).await;
        assert!(r.iter().all(|r| matches!(r, SendResult::Accepted { .. })));
        assert_eq!(p.accepted_count(), 5);
        p.send(&msgs[..1]).await;
        assert_eq!(p.duplicates(), vec![msgs[0].id]);
    }

    #[tokio::test]
    async fn failure_rates_apply() {
        let p = FakeProvider::new(FakeSettings {
            reject_rate: 1.0,
            ..Default::default()
        });
        let r = p.send(&[sms(1)]).await;
        assert!(matches!(r[0], SendResult::Rejected { .. }));
        let p = FakeProvider::new(FakeSettings {
            throttle_rate: 1.0,
            ..Default::default()
        });
        let r = p.send(&[sms(1), sms(2)]).await;
        assert!(r.iter().all(|r| matches!(
            r,
            SendResult::Transient {
                throttled: true,
                ..
            }
        )));
        assert_eq!(p.accepted_count(), 0);
    }

    #[tokio::test]
    async fn scripted_numbers() {
        let p = FakeProvider::new(FakeSettings::default());
        let m = sms(3);
        p.script(
            m.to.as_str(),
            Scripted::Reject {
                code: "21610".into(),
                unsubscribed: true,
            },
        );
        let r = p.send(&[m, sms(4)]).await;
        assert!(
            matches!(&r[0], SendResult::Rejected { code, unsubscribed: true, .. } if code == "21610")
        );
        assert!(matches!(r[1], SendResult::Accepted { .. }));
    }

    fn query(m: &OutboundSms) -> LookupQuery {
        LookupQuery {
            id: m.id,
            from: m.from.clone(),
            to: m.to.clone(),
            body: m.body.clone(),
            attempted_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn lookups_answer_from_what_was_taken_or_fail_on_demand() {
        let p = FakeProvider::new(FakeSettings::default());
        let (ok, doubt, refused, never) = (sms(1), sms(2), sms(3), sms(4));
        p.script(doubt.to.as_str(), Scripted::InDoubt);
        p.script(
            refused.to.as_str(),
            Scripted::Reject {
                code: "X".into(),
                unsubscribed: false,
            },
        );
        let r = p.send(&[ok.clone(), doubt.clone(), refused.clone()]).await;
        assert!(matches!(r[1], SendResult::InDoubt { .. }));
        let qs: Vec<LookupQuery> = [&ok, &doubt, &refused, &never]
            .into_iter()
            .map(query)
            .collect();
        let a = p.lookup(&qs).await.unwrap();
        assert!(matches!(a[0], LookupAnswer::Taken { .. }));
        assert!(matches!(a[1], LookupAnswer::Taken { .. }));
        assert_eq!(a[2], LookupAnswer::NotTaken);
        assert_eq!(a[3], LookupAnswer::NotTaken);
        p.set_lookup_fail(true);
        assert!(matches!(p.lookup(&qs).await, Err(LookupError::Failed(_))));
        assert_eq!(p.lookups(), (2, 8));
    }
}
