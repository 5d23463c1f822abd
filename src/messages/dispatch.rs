//! Moving work: Coordinator ⇄ ListSupervisor ⇄ Worker. Work flows by pull: a
//! supervisor asks for what one idle worker can handle; nothing is pushed
//! into a mailbox unasked.

use crate::domain::{FailureReason, QueuedTextMessage, SendingListId};
use crate::store::StoreError;
use actix::prelude::*;
use std::collections::BTreeMap;

/// Messages claimed under one token (one claim = one worker's batch).
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub token: String,
    pub messages: Vec<QueuedTextMessage>,
}

/// ListSupervisor → Coordinator: "claim up to `max` ready messages of
/// `list` for one of my idle workers". The Coordinator is the only claimer.
/// An empty batch means nothing is ready (or the daemon is shutting down).
#[derive(Message, Debug)]
#[rtype(result = "Result<ClaimedBatch, StoreError>")]
pub struct RequestWork {
    pub list: SendingListId,
    pub max: usize,
}

/// Coordinator → ListSupervisor: the list has ready messages. A hint: losing
/// one is harmless (the next poll sends another).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct WorkAvailable;

/// Anyone → Coordinator: messages were just queued; poll now instead of at
/// the next interval. Idempotent and losable.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Nudge;

/// ListSupervisor → Coordinator: the supervisor is stopping (idle or
/// drained); forget its address.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SupervisorStopped {
    pub list: SendingListId,
}

/// ListSupervisor → Worker: send this batch. The worker answers once every
/// message of the batch has a durable outcome or is back in the queue.
#[derive(Message, Debug)]
#[rtype(result = "BatchReport")]
pub struct ProcessBatch {
    pub batch: ClaimedBatch,
    pub list: std::sync::Arc<crate::actors::supervisor::ListContext>,
}

/// What a worker did with one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Accepted by the provider.
    pub sent: u64,
    /// Dead-lettered, by reason.
    pub failed: BTreeMap<FailureReason, u64>,
    /// Put back in the queue (retry, billing backoff, released).
    pub requeued: u64,
    /// Already attempted elsewhere: not sent again.
    pub skipped_already_attempted: u64,
    /// The rate limiter could not be reached: the supervisor pauses claiming
    /// until it answers again.
    pub rate_limiter_unavailable: bool,
    /// The store failed mid-batch; unfinished messages stay claimed and are
    /// recovered by the stale-claim sweep.
    pub store_error: Option<String>,
}

impl BatchReport {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}
