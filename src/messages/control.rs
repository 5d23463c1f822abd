//! Operator control of lists and of the daemon.

use crate::domain::SendingListId;
use actix::prelude::*;
use std::time::Duration;

/// A control command for a list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListCommand {
    /// Stop sending on every daemon: stored, then broadcast. Chunks already
    /// permitted finish; the rest of each batch goes back to the queue.
    Pause,
    Resume,
    /// Change the list's rate (messages per minute) on every daemon; 0 is a
    /// pause.
    SetRateLimit(u32),
    /// This daemon only: stop claiming and answer once no batch is in flight.
    Drain,
}

/// Admin → Coordinator. Pause, resume and rate changes are stored (the
/// store is the truth) and then broadcast, so every daemon's supervisor
/// reloads the list within a second or two. Answers whether the list exists.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), ControlError>")]
pub struct ListControl {
    pub list: SendingListId,
    pub command: ListCommand,
}

/// Coordinator → ListSupervisor: stop claiming, answer once no batch is in
/// flight.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Drain;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("no such sending list: {0}")]
    UnknownList(SendingListId),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the list's supervisor did not answer: {0}")]
    SupervisorGone(#[source] actix::MailboxError),
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

/// Test and operator hook: run the recovery sweep now (Recovery). Answers
/// what it did.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "SweepReport")]
pub struct SweepNow;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Instances whose lease had expired and that still held work.
    pub dead_owners: Vec<String>,
    /// Claims of dead instances released for any daemon to take.
    pub released_claims: u64,
    /// Unanswered attempts recorded as in doubt (NO_RESPONSE).
    pub no_response: u64,
    /// Unanswered attempts a delivery report had already proved sent.
    pub resolved_sent: u64,
    /// The sweep could not finish (store error); it runs again next time.
    pub error: Option<String>,
}

/// Lease → store, on shutdown: mark this instance's lease stopped (after its
/// claims were released), so recovery elsewhere need not wait for expiry.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopLease;
