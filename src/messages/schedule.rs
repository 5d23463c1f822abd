//! The Scheduler's protocol.

use crate::campaign::explain::Explain;
use crate::campaign::plan::PlanError;
use crate::domain::ScheduleId;
use crate::store::StoreError;
use actix::prelude::*;

/// Bus, admin, tests → Scheduler: look for due schedules and for runs whose
/// daemon stopped now, instead of at the next timer. Answers once the look
/// is done (what it started may still be running): how many runs it
/// started or resumed.
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "LookReport")]
pub struct LookNow;

/// What one look did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookReport {
    /// Runs this daemon won the trigger of and started.
    pub started: u64,
    /// Runs of stopped daemons (or its own, stalled) resumed here.
    pub resumed: u64,
    /// Occurrences recorded missed (later than `scheduler.missed_grace`).
    pub missed: u64,
    /// Runs that failed validation.
    pub failed: u64,
    /// The store failed; the next look tries again.
    pub error: Option<String>,
    /// The look read the runs left evaluating (it skips that read when it
    /// started a run and another look read them within
    /// `scheduler.max_idle`).
    pub stalled_checked: bool,
}

/// Admin, demo → Scheduler: the dry run of a schedule now (nothing is
/// queued).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Explain, ExplainError>")]
pub struct ExplainSchedule {
    pub schedule: ScheduleId,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExplainError {
    #[error("no such schedule: {0}")]
    UnknownSchedule(ScheduleId),
    /// The campaign would fail validation: the run's reason.
    #[error("{0}")]
    Invalid(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
