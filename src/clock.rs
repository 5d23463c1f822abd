//! Time as a dependency. Everything that decides by time (staleness, due
//! messages, claim age, billing TTL, in-doubt windows) asks a [`Clock`], so
//! tests can move time by hand.

use crate::domain::Timestamp;
use chrono::{TimeZone, Utc};
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync + 'static {
    /// Now, truncated to milliseconds (MongoDB's precision).
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        truncate_ms(Utc::now())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(Mutex::new(truncate_ms(start))))
    }
    /// Starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
    }
    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = truncate_ms(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn truncate_ms(t: Timestamp) -> Timestamp {
    Utc.timestamp_millis_opt(t.timestamp_millis())
        .single()
        .unwrap_or(t)
}

/// `chrono` duration from `std`, saturating.
pub fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
