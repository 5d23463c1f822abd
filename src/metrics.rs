//! Counters shared by the actors of one daemon, read by the demo's progress
//! bar, the benchmark, and (later) the Prometheus endpoint. Lock-free except
//! for the latency histogram, whose lock is held for one `record`.

use crate::domain::FailureReason;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub claimed: AtomicU64,
    pub sent: AtomicU64,
    pub requeued: AtomicU64,
    pub already_attempted: AtomicU64,
    pub provider_calls: AtomicU64,
    pub throttled: AtomicU64,
    /// Delivery reports received, applied (changed a record), and for
    /// messages we do not know.
    pub reports_received: AtomicU64,
    pub reports_applied: AtomicU64,
    pub reports_unknown: AtomicU64,
    failed: [AtomicU64; FailureReason::ALL.len()],
    /// Milliseconds from a message being due to its provider call.
    due_to_send_ms: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn idx(r: FailureReason) -> usize {
        FailureReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
    }

    pub fn add_failed(&self, r: FailureReason, n: u64) {
        self.failed[Self::idx(r)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn failed(&self, r: FailureReason) -> u64 {
        self.failed[Self::idx(r)].load(Ordering::Relaxed)
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Messages with a terminal outcome (sent or dead-lettered).
    pub fn done(&self) -> u64 {
        self.sent() + self.failed_total()
    }

    pub fn record_due_to_send(&self, samples_ms: impl IntoIterator<Item = u64>) {
        let mut h = self
            .due_to_send_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if h.is_none() {
            // 3 significant figures, auto-resizing: creation cannot fail for
            // these arguments; if it ever did, latencies are simply not kept.
            *h = hdrhistogram::Histogram::new(3).ok();
        }
        let Some(hist) = h.as_mut() else { return };
        for s in samples_ms {
            let _ = hist.record(s.max(1));
        }
    }

    pub fn due_to_send(&self) -> Option<Percentiles> {
        let h = self
            .due_to_send_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.as_ref().filter(|h| !h.is_empty()).map(|h| Percentiles {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}
