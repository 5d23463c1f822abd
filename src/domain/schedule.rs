//! Schedules (campaigns) and their runs. A run is keyed by
//! `(schedule, occurrence)` with a unique index, which is what makes a
//! trigger happen exactly once across daemons.

use super::{
    AccountId, AudienceId, ContactId, CreativeId, Money, ScheduleId, ScheduleRunId, SendingListId,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(rename = "_id")]
    pub id: ScheduleId,
    pub account: AccountId,
    pub name: String,
    pub sending_list: SendingListId,
    pub audiences: Vec<AudienceId>,
    pub creative: CreativeId,
    pub kind: ScheduleKind,
    /// Skip contacts in an active welcome journey.
    #[serde(default)]
    pub exclude_in_workflow: bool,
    /// Contacts outside their TCPA window are queued for the start of their
    /// own next window instead of being skipped (and a message that waits in
    /// the queue past its window is deferred again instead of dropped).
    #[serde(default)]
    pub defer_outside_window: bool,
    #[serde(default)]
    pub variant_selection: VariantSelection,
    #[serde(default)]
    pub status: ScheduleStatus,
    /// The next occurrence not yet triggered (null when none is left).
    #[serde(with = "super::dt_opt", default)]
    pub next_run_at: Option<Timestamp>,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScheduleKind {
    Once {
        #[serde(with = "super::dt")]
        at: Timestamp,
    },
    Recurring {
        /// Cron expression, evaluated in `time_zone`.
        cron: String,
        time_zone: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VariantSelection {
    #[default]
    Weighted,
    /// Thompson sampling on click-through.
    Thompson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    #[default]
    Active,
    /// Does not trigger until resumed.
    Paused,
    /// Never triggers again.
    Cancelled,
    /// No occurrence left (a one-off schedule that ran).
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    #[serde(rename = "_id")]
    pub id: ScheduleRunId,
    pub schedule: ScheduleId,
    pub account: AccountId,
    pub sending_list: SendingListId,
    pub creative: CreativeId,
    /// The occurrence this run executes (unique with `schedule`).
    #[serde(with = "super::dt")]
    pub occurrence: Timestamp,
    /// The daemon instance that won the trigger.
    pub triggered_by: String,
    /// The instance evaluating it now. When its lease lapses, another
    /// daemon takes the run over and goes on from `cursor`.
    pub owner: String,
    pub status: RunStatus,
    /// Why the run failed or was missed.
    #[serde(default)]
    pub reason: Option<String>,
    /// The last contact evaluated, in `_id` order (the checkpoint: every
    /// contact up to it has its message queued or its skip counted).
    #[serde(default)]
    pub cursor: Option<ContactId>,
    /// Messages numbered so far (message ids are made from it).
    #[serde(default)]
    pub seq: u64,
    /// Contacts evaluated: the union of the audiences, each contact once.
    #[serde(default)]
    pub audience: u64,
    /// Contacts that passed every filter.
    #[serde(default)]
    pub eligible: u64,
    /// Messages queued.
    #[serde(default)]
    pub queued: u64,
    /// Contacts skipped at audience evaluation, by reason
    /// (`rules::eligibility::SkipReason::as_str`).
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
    /// Messages and segments queued per variant key.
    #[serde(default)]
    pub variants: BTreeMap<String, VariantCount>,
    /// What the queued messages will cost at the account's price.
    #[serde(default)]
    pub cost: Money,
    #[serde(with = "super::dt")]
    pub started_at: Timestamp,
    #[serde(with = "super::dt_opt", default)]
    pub finished_at: Option<Timestamp>,
    /// What became of the run's messages, counted as they move (the
    /// RunStats actor adds each second's counts; clicks are counted by the
    /// store with the first human click of a message).
    #[serde(default)]
    pub stats: RunCounts,
}

/// Counters of a run's messages after queuing. Statistics, not guarantees:
/// the attempt records and dead letters are the truth, and a crash may leave
/// these short by what its last second counted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunCounts {
    /// Taken by the provider.
    #[serde(default)]
    pub sent: u64,
    /// Failed (never sent, or refused by the provider), by reason code.
    #[serde(default)]
    pub failed: BTreeMap<String, u64>,
    /// Delivery reports: delivered to the handset, or not.
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub undelivered: u64,
    /// Messages with at least one human (not bot or preview) click.
    #[serde(default)]
    pub clicked: u64,
    /// Messages with at least one click of any kind (bots and link
    /// previews included): the click rate of accounts that do not filter
    /// bots.
    #[serde(default)]
    pub clicked_any: u64,
    /// When the first and the last counted message was taken (send rate).
    /// Absent rather than null until set: MongoDB's `$min` keeps a null.
    #[serde(
        with = "super::dt_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub first_sent_at: Option<Timestamp>,
    #[serde(
        with = "super::dt_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_sent_at: Option<Timestamp>,
}

impl RunCounts {
    pub fn is_empty(&self) -> bool {
        *self == RunCounts::default()
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// `n` messages taken at `at`.
    pub fn add_sent(&mut self, n: u64, at: Timestamp) {
        if n == 0 {
            return;
        }
        self.sent += n;
        self.first_sent_at = Some(self.first_sent_at.map_or(at, |t| t.min(at)));
        self.last_sent_at = Some(self.last_sent_at.map_or(at, |t| t.max(at)));
    }

    pub fn add_failed(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.failed.entry(reason.to_string()).or_insert(0) += n;
        }
    }

    /// Adds `other` (the store's `$inc`/`$min`/`$max`, in memory).
    pub fn merge(&mut self, other: &RunCounts) {
        self.sent += other.sent;
        for (k, v) in &other.failed {
            *self.failed.entry(k.clone()).or_insert(0) += v;
        }
        self.delivered += other.delivered;
        self.undelivered += other.undelivered;
        self.clicked += other.clicked;
        self.clicked_any += other.clicked_any;
        self.first_sent_at = match (self.first_sent_at, other.first_sent_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_sent_at = match (self.last_sent_at, other.last_sent_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The documentation's four campaign metrics; the click rate leaves bot
    /// and preview clicks out when the account filters bots.
    pub fn rates(&self, filter_bots: bool) -> RunRates {
        let pct = |n: u64, d: u64| (d > 0).then(|| 100.0 * n as f64 / d as f64);
        let span = match (self.first_sent_at, self.last_sent_at) {
            (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        };
        RunRates {
            // Over the time between the first and the last message taken (a
            // single instant counts as one second).
            send_rate: (self.sent > 0).then(|| self.sent as f64 / span.max(1.0)),
            delivery_rate: pct(self.delivered, self.sent),
            failure_rate: pct(self.failed_total(), self.sent + self.failed_total()),
            click_rate: pct(
                if filter_bots {
                    self.clicked
                } else {
                    self.clicked_any
                },
                self.sent,
            ),
        }
    }
}

/// Send rate (messages per second), and delivery, failure and click rates
/// (percent): delivered of sent, failed of all attempted or refused, and
/// messages clicked by a person of sent. `None` until there is a base.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunRates {
    pub send_rate: Option<f64>,
    pub delivery_rate: Option<f64>,
    pub failure_rate: Option<f64>,
    pub click_rate: Option<f64>,
}

/// Per-variant totals of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VariantCount {
    pub messages: u64,
    pub segments: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The audience is being evaluated and messages queued.
    Evaluating,
    /// Every eligible contact's message is queued.
    Queued,
    /// Validation failed (see `reason`); nothing was queued.
    Failed,
    /// The occurrence fell due while no daemon could trigger it, and more
    /// than the trigger grace has passed.
    Missed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Evaluating => "evaluating",
            RunStatus::Queued => "queued",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
        }
    }
}

/// How a variant has done so far (Thompson sampling's evidence): messages
/// queued with it, and of those, messages with at least one human click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantStats {
    pub creative: CreativeId,
    pub variant: String,
    pub sends: u64,
    pub clicked: u64,
}
