//! The message queue: one `QueuedTextMessage` per contact per campaign run.
//!
//! State machine (see ARCHITECTURE.md):
//! `ready` (claimed_by = null, not_before <= now) → `claimed` (claimed_by =
//! token) → deleted once its outcome is durable; or back to `ready` with a
//! later `not_before` (retry, billing backoff, released claim).

use super::{
    AccountId, ContactId, CreativeId, E164, MessageId, ScheduleId, ScheduleRunId, SendingListId,
    Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedTextMessage {
    /// Time-ordered: the queue is FIFO by id.
    #[serde(rename = "_id")]
    pub id: MessageId,
    pub account: AccountId,
    pub sending_list: SendingListId,
    pub contact: ContactId,
    #[serde(default)]
    pub schedule: Option<ScheduleId>,
    #[serde(default)]
    pub run: Option<ScheduleRunId>,
    #[serde(default)]
    pub creative: Option<CreativeId>,
    /// Variant key of the creative.
    #[serde(default)]
    pub variant: Option<String>,
    pub send_type: SendType,
    pub from: String,
    pub to: E164,
    /// Resolved text (placeholders filled, links shortened).
    pub body: String,
    /// Billed segments of `body`.
    pub segments: u32,
    /// `GSM-7` or `UCS-2`: how `body` is encoded on the air (decides the
    /// segment count).
    #[serde(default)]
    pub encoding: Option<String>,
    /// The contact's IANA time zone the TCPA window was checked in. When set,
    /// the worker checks the list's window again right before sending.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Outside its window at send time: deferred to the next window start
    /// (true) or dead-lettered `QUIET_HOURS` (false).
    #[serde(default)]
    pub defer_outside_window: bool,
    /// When the message should go out; staleness is measured from here.
    #[serde(with = "super::dt")]
    pub send_at: Timestamp,
    /// Not claimable before this (>= `send_at`; later for retries and billing
    /// backoff).
    #[serde(with = "super::dt")]
    pub not_before: Timestamp,
    /// Claim token of the daemon batch holding it, or null when ready.
    #[serde(default)]
    pub claimed_by: Option<String>,
    #[serde(with = "super::dt_opt", default)]
    pub claimed_at: Option<Timestamp>,
    /// The daemon instance holding the claim. Recovery releases a claim only
    /// when this instance's lease has expired: a live daemon's claims are
    /// never taken from it, however slow it is.
    #[serde(default)]
    pub claim_owner: Option<String>,
    /// How many times it has been claimed. More than one means it was handed
    /// out before (retry, backoff, released or stale claim), so the worker
    /// first checks whether it already has an outcome.
    #[serde(default)]
    pub claim_count: u32,
    /// Provider attempts that failed transiently so far.
    #[serde(default)]
    pub attempts: u32,
    /// Set when billing first refused the message; governs its TTL instead of
    /// the staleness rule.
    #[serde(with = "super::dt_opt", default)]
    pub billing_blocked_since: Option<Timestamp>,
    /// Why it was last put back (transient provider error text), for operators.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(with = "super::dt")]
    pub queued_at: Timestamp,
}

impl QueuedTextMessage {
    /// The same message to queue again under a new id (a requeue of its dead
    /// letter): unclaimed, no attempts, due at `send_at` (staleness counts
    /// from there).
    pub fn resend(&self, send_at: Timestamp, now: Timestamp) -> QueuedTextMessage {
        QueuedTextMessage {
            id: MessageId::new(),
            send_at,
            not_before: send_at.max(now),
            claimed_by: None,
            claimed_at: None,
            claim_owner: None,
            claim_count: 0,
            attempts: 0,
            billing_blocked_since: None,
            last_error: None,
            queued_at: now,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendType {
    Campaign,
    Workflow,
    Transactional,
}

impl SendType {
    pub fn as_str(self) -> &'static str {
        match self {
            SendType::Campaign => "campaign",
            SendType::Workflow => "workflow",
            SendType::Transactional => "transactional",
        }
    }
}
