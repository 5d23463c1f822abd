//! Operator control of lists and of the daemon.

use crate::domain::SendingListId;
use actix::prelude::*;
use std::time::Duration;

/// A control command for one list's supervisor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListCommand {
    /// Stop claiming; batches in flight finish.
    Pause,
    Resume,
    /// Change the list's rate (messages per minute) right away.
    SetRateLimit(u32),
    /// Stop claiming and answer once no batch is in flight.
    Drain,
}

/// Admin → Coordinator → ListSupervisor. Starts the supervisor if the list
/// has none yet. Answers whether the list exists.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), ControlError>")]
pub struct ListControl {
    pub list: SendingListId,
    pub command: ListCommand,
}

/// Coordinator → ListSupervisor.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Control(pub ListCommand);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such sending list: {0}")]
    UnknownList(SendingListId),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("store error: {0}")]
    Store(String),
}

/// Signal handler → Coordinator: stop claiming, let in-flight sends finish
/// within `grace`, release unstarted claims. Answers when done.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ShutdownReport")]
pub struct Shutdown {
    pub grace: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Lists whose batches all finished within the grace period.
    pub drained: usize,
    /// Lists still busy when the grace period ran out.
    pub timed_out: usize,
}

/// Coordinator → ListSupervisor during shutdown: stop, finish within the
/// grace period. Answers `true` when every batch finished.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct Stop {
    pub grace: Duration,
}

/// Operator query: the lists that have a running supervisor (Coordinator).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<SendingListId>")]
pub struct ActiveLists;

/// Test and operator hook: run the poll now (Coordinator).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct PollNow;

/// Test and operator hook: run the stale-claim / in-doubt sweep now
/// (Coordinator). Answers what it did.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "SweepReport")]
pub struct SweepNow;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub released_claims: u64,
    pub no_response: u64,
}
