//! `MessageSent`: the attempt record, inserted *before* the provider call with
//! `_id` = the queued message's id, so a second attempt anywhere collides on
//! the unique `_id` and is never sent (guarantee 1).
//!
//! `submitted`: null = not yet processed (or in doubt), true = accepted by the
//! provider, false = rejected / failed to send.
//! `delivered`: null = unknown, true = delivered to handset, false = failed.

use super::{
    AccountId, ContactId, CreativeId, E164, MessageId, Money, ProviderKind, ScheduleId,
    ScheduleRunId, SendType, SendingListId, Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSent {
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
    #[serde(default)]
    pub variant: Option<String>,
    pub send_type: SendType,
    pub from: String,
    pub to: E164,
    /// Characters in the body (the body itself is not kept here).
    pub length: u32,
    pub segments: u32,
    /// What was debited for it.
    pub cost: Money,
    pub provider: ProviderKind,
    /// Claim token of the attempt.
    pub attempt_token: String,
    /// The daemon instance that made the attempt (its lease decides whether
    /// an unanswered attempt is still in flight or in doubt).
    #[serde(default)]
    pub owner: String,
    /// The charge (`cost`) was given back: written in the same transaction
    /// as the outcome that refunds it, so a refund happens at most once.
    #[serde(default)]
    pub refunded: bool,
    #[serde(with = "super::dt")]
    pub attempted_at: Timestamp,
    pub submitted: Option<bool>,
    #[serde(with = "super::dt_opt", default)]
    pub submitted_at: Option<Timestamp>,
    #[serde(default)]
    pub provider_message_id: Option<String>,
    /// Provider error code when `submitted == false` (or `NO_RESPONSE`).
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_text: Option<String>,
    pub delivered: Option<bool>,
    /// Last normalised delivery state reported.
    #[serde(default)]
    pub delivery_state: Option<DeliveryState>,
    #[serde(with = "super::dt_opt", default)]
    pub delivery_updated_at: Option<Timestamp>,
    #[serde(default)]
    pub delivery_error_code: Option<String>,
    /// An in-doubt outcome (NO_RESPONSE) later settled by evidence that the
    /// provider took the message: `delivery_report` or `provider_lookup`.
    #[serde(default)]
    pub resolved_by: Option<String>,
}

impl MessageSent {
    /// The attempt record for `m`, written before the provider call:
    /// `submitted` and `delivered` are still unknown.
    pub fn attempt(
        m: &super::QueuedTextMessage,
        provider: ProviderKind,
        attempt_token: &str,
        owner: &str,
        cost: Money,
        at: Timestamp,
    ) -> MessageSent {
        MessageSent {
            id: m.id,
            account: m.account,
            sending_list: m.sending_list,
            contact: m.contact,
            schedule: m.schedule,
            run: m.run,
            creative: m.creative,
            variant: m.variant.clone(),
            send_type: m.send_type,
            from: m.from.clone(),
            to: m.to.clone(),
            length: m.body.chars().count() as u32,
            segments: m.segments,
            cost,
            provider,
            attempt_token: attempt_token.to_string(),
            owner: owner.to_string(),
            refunded: false,
            attempted_at: at,
            submitted: None,
            submitted_at: None,
            provider_message_id: None,
            error_code: None,
            error_text: None,
            delivered: None,
            delivery_state: None,
            delivery_updated_at: None,
            delivery_error_code: None,
            resolved_by: None,
        }
    }

    /// Recorded as in doubt (the request may have reached the provider).
    pub fn in_doubt(&self) -> bool {
        self.submitted == Some(false) && self.error_code.as_deref() == Some(NO_RESPONSE)
    }
}

/// `error_code` of an attempt recorded in doubt.
pub const NO_RESPONSE: &str = "NO_RESPONSE";

/// `error_code` of an in-doubt attempt its provider's records show it never
/// took (its charge given back).
pub const NOT_TAKEN: &str = "NOT_TAKEN";

/// Normalised delivery state of a report. `Pending` is intermediate; the rest
/// are final and never replaced by a later intermediate report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Undelivered,
    Failed,
    Expired,
    Rejected,
}

impl DeliveryState {
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Pending)
    }
    /// The tristate `delivered` value this state implies.
    pub fn delivered(self) -> Option<bool> {
        match self {
            DeliveryState::Pending => None,
            DeliveryState::Delivered => Some(true),
            _ => Some(false),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Undelivered => "undelivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Expired => "expired",
            DeliveryState::Rejected => "rejected",
        }
    }
}
