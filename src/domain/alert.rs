//! Alert windows: what the daemons counted for one alert (a list's failures
//! in one window, an account found billing-blocked, a list no daemon can
//! serve, a run that failed validation), shared through the store so that
//! exactly one daemon sends it (the Alerts actor, `src/actors/alerts.rs`).

use super::{AccountId, SendingListId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an alert window is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One list's outcomes in one window: failures by reason and provider
    /// code, sends, transient and in-doubt answers. Gives the failure,
    /// spam, outage and error-rate alerts.
    List,
    /// An account could not pay for messages.
    BillingBlocked,
    /// A list with due messages that no live daemon can send.
    Unservable,
    /// A schedule run that failed validation (nothing queued).
    RunFailed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::List => "list",
            AlertKind::BillingBlocked => "billing_blocked",
            AlertKind::Unservable => "unservable",
            AlertKind::RunFailed => "run_failed",
        }
    }
}

/// Counter names inside [`AlertWindow::counts`].
pub mod counter {
    /// Messages the provider took.
    pub const SENT: &str = "sent";
    /// Answers that provably sent nothing (retried).
    pub const TRANSIENT: &str = "transient";
    /// Ambiguous answers (NO_RESPONSE).
    pub const IN_DOUBT: &str = "in_doubt";
    /// Messages waiting for money (billing-blocked windows).
    pub const BLOCKED: &str = "blocked";
    /// Prefix of dead letters by reason (`r:PROVIDER_ERROR`).
    pub const REASON: &str = "r:";
    /// Prefix of provider codes of failures and failed delivery reports
    /// (`c:30007`).
    pub const CODE: &str = "c:";
    /// Prefix of failed delivery reports by state (`d:undelivered`).
    pub const REPORT: &str = "d:";
}

/// One alert's shared counts. `_id` names the alert and its window
/// (`list:<list>:<window start ms>`, `billing:<account>:<bucket>`,
/// `unservable:<list>:<bucket>`, `run:<run>`), so every daemon adds to the
/// same document; the first daemon to claim it once it closed sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertWindow {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: AlertKind,
    #[serde(default)]
    pub account: Option<AccountId>,
    #[serde(default)]
    pub list: Option<SendingListId>,
    #[serde(with = "super::dt")]
    pub window_start: Timestamp,
    /// Claimable from then on (the window's end plus the grace in which
    /// other daemons add their counts).
    #[serde(with = "super::dt")]
    pub closes_at: Timestamp,
    #[serde(default)]
    pub counts: BTreeMap<String, i64>,
    /// Free text for one-off alerts (a run's validation error). Never a
    /// phone number or a message body.
    #[serde(default)]
    pub detail: Option<String>,
    /// The instance that claimed it (and sent it); `None` while open.
    #[serde(default)]
    pub claimed_by: Option<String>,
}

impl AlertWindow {
    pub fn count(&self, name: &str) -> i64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Counters whose name starts with `prefix`, without the prefix.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        self.counts
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|k| (k, *v)))
    }

    /// Add `n` to `name`.
    pub fn add(&mut self, name: impl Into<String>, n: i64) {
        if n != 0 {
            *self.counts.entry(name.into()).or_insert(0) += n;
        }
    }

    /// Add another contribution's counts.
    pub fn merge(&mut self, other: &AlertWindow) {
        for (k, v) in &other.counts {
            self.add(k.clone(), *v);
        }
        if self.detail.is_none() {
            self.detail.clone_from(&other.detail);
        }
    }
}

/// A counter name safe as a MongoDB field name (no `.`, no leading `$`,
/// bounded length): provider codes are provider input.
pub fn counter_name(prefix: &str, raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '.' || c == '$' { '_' } else { c })
        .take(64)
        .collect();
    if s.trim().is_empty() {
        s = "unknown".into();
    }
    format!("{prefix}{s}")
}
