//! Campaign run counters: Worker and DeliveryIntake → RunStats.

use crate::domain::{RunCounts, ScheduleRunId};
use actix::Message;

/// Worker (after a batch's outcomes and dead letters are durable),
/// DeliveryIntake (after reports are durable) → RunStats: add these counts
/// to their runs. Fire and forget: RunStats adds them up in memory and
/// writes each run's sum once per `scheduler.stats_flush_interval`; a crash
/// loses at most what the last interval counted (these are statistics; the
/// attempt records are the truth).
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "()")]
pub struct CountRuns(pub Vec<(ScheduleRunId, RunCounts)>);

/// Shutdown → RunStats: write what is counted now; answers once written (or
/// the write failed, which is logged).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct FlushRunCounts;
