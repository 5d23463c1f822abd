//! Daemon leases: each running daemon instance renews a lease in MongoDB
//! every `daemon.heartbeat_interval`. The lease is what tells a live daemon
//! from a dead one, so that recovery takes work away only from the dead:
//! claims are released, and unanswered attempts judged in doubt, only when
//! their owner's lease has expired.
//!
//! Expiry is judged on one clock, the database's: `heartbeat_at` is written
//! by the server (`$currentDate`) and compared with the server's own time
//! (`hello.localTime`), never with a daemon's wall clock.

use super::{SendingListId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One daemon instance (`<daemon id>:<random per start>`) and its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonLease {
    /// The instance id: the daemon id plus a random part chosen at start,
    /// so a daemon restarted under the same id is a new instance whose
    /// claim tokens never collide with its predecessor's.
    #[serde(rename = "_id")]
    pub instance: String,
    /// The configured daemon id (`daemon.id`, or hostname-pid).
    pub daemon_id: String,
    pub version: String,
    #[serde(with = "super::dt")]
    pub started_at: Timestamp,
    /// The database's time at the last renewal.
    #[serde(with = "super::dt")]
    pub heartbeat_at: Timestamp,
    /// The lease lapses this long after `heartbeat_at` without a renewal.
    pub ttl_ms: i64,
    /// Set on a clean shutdown, after the daemon released its claims: the
    /// lease counts as expired at once.
    #[serde(default)]
    pub stopped: bool,
    /// Providers this daemon can send through (`kind:credentials`).
    #[serde(default)]
    pub providers: Vec<String>,
    /// Lists it is serving now.
    #[serde(default)]
    pub lists: Vec<SendingListId>,
    /// Messages this daemon sent per list (hex id) per minute, measured
    /// over the interval before its last renewal (the dashboard's current
    /// rate: the live daemons' figures summed).
    #[serde(default)]
    pub sent_per_minute: BTreeMap<String, u64>,
}

impl DaemonLease {
    /// Whether the lease still holds at the database time `server_now`.
    pub fn live_at(&self, server_now: Timestamp) -> bool {
        !self.stopped
            && self.heartbeat_at + chrono::Duration::milliseconds(self.ttl_ms) >= server_now
    }

    /// The instance's age of its last heartbeat at `server_now`.
    pub fn age_at(&self, server_now: Timestamp) -> chrono::Duration {
        server_now - self.heartbeat_at
    }
}

/// What a daemon writes at each renewal (the server adds `heartbeat_at`).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRenewal {
    pub instance: String,
    pub daemon_id: String,
    pub version: String,
    pub started_at: Timestamp,
    pub ttl_ms: i64,
    pub providers: Vec<String>,
    pub lists: Vec<SendingListId>,
    /// See [`DaemonLease::sent_per_minute`].
    pub sent_per_minute: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn a_lease_lapses_after_its_ttl_or_at_once_when_stopped() {
        let t = Utc::now();
        let mut l = DaemonLease {
            instance: "d:1".into(),
            daemon_id: "d".into(),
            version: "0".into(),
            started_at: t,
            heartbeat_at: t,
            ttl_ms: 30_000,
            stopped: false,
            providers: vec![],
            lists: vec![],
            sent_per_minute: BTreeMap::new(),
        };
        assert!(l.live_at(t + Duration::seconds(30)));
        assert!(!l.live_at(t + Duration::milliseconds(30_001)));
        l.stopped = true;
        assert!(!l.live_at(t));
    }
}
