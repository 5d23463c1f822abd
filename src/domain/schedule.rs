//! Schedules (campaigns) and their runs. A run is keyed by
//! `(schedule, occurrence)` with a unique index, which is what makes a
//! trigger happen exactly once across daemons.

use super::{
    AccountId, AudienceId, CreativeId, ScheduleId, ScheduleRunId, SendingListId, Timestamp,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantSelection {
    #[default]
    Weighted,
    /// Thompson sampling on click-through.
    Thompson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    #[default]
    Active,
    Paused,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    #[serde(rename = "_id")]
    pub id: ScheduleRunId,
    pub schedule: ScheduleId,
    /// The occurrence this run executes (unique with `schedule`).
    #[serde(with = "super::dt")]
    pub occurrence: Timestamp,
    /// The daemon that won the trigger.
    pub triggered_by: String,
    pub status: RunStatus,
    #[serde(default)]
    pub queued: u64,
    /// Contacts skipped at audience evaluation, by reason.
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
    #[serde(with = "super::dt")]
    pub started_at: Timestamp,
    #[serde(with = "super::dt_opt", default)]
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Evaluating,
    Queued,
    Failed,
}
