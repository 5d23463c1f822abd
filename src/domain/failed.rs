//! `FailedMessage`: the dead-letter record. `_id` is the queued message's id,
//! so a message is dead-lettered at most once.

use super::{AccountId, MessageId, QueuedTextMessage, SendingListId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedMessage {
    #[serde(rename = "_id")]
    pub id: MessageId,
    pub account: AccountId,
    pub sending_list: SendingListId,
    pub reason: FailureReason,
    /// Human-readable detail for operators (never the body or the number).
    pub detail: String,
    /// The provider's own error code and text, when a provider answered.
    #[serde(default)]
    pub provider_code: Option<String>,
    #[serde(default)]
    pub provider_text: Option<String>,
    #[serde(with = "super::dt")]
    pub failed_at: Timestamp,
    /// The message as it was queued, for requeue and investigation. `None`
    /// only for a quarantined queue document that could not be decoded
    /// (reason `MALFORMED`; its content is in `raw`).
    #[serde(default)]
    pub original: Option<QueuedTextMessage>,
    /// A quarantined document's stored content, as relaxed extended JSON.
    #[serde(default)]
    pub raw: Option<String>,
    /// Set when later evidence settled what the failure left open: an in-doubt
    /// (NO_RESPONSE) message that a delivery report showed the provider took.
    /// A resolved dead letter is no longer a terminal state; its
    /// `MessageSent` (submitted = true) is.
    #[serde(default)]
    pub resolved: Option<Resolution>,
    /// Set when an operator requeued the message (`resend to failed`): the
    /// new message carries the original's content under a new id. A dead
    /// letter is requeued at most once.
    #[serde(default)]
    pub requeued: Option<Requeued>,
}

/// A dead letter's requeue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requeued {
    /// The new message's id.
    pub message: MessageId,
    #[serde(with = "super::dt")]
    pub at: Timestamp,
}

/// How a dead letter was settled after the fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    #[serde(with = "super::dt")]
    pub at: Timestamp,
    /// `delivery_report`, `provider_lookup` or `operator`.
    pub by: String,
}

/// The account id recorded on a dead letter whose account is unknown (a
/// quarantined document without a readable account).
pub fn unknown_account() -> super::AccountId {
    super::AccountId(bson::oid::ObjectId::from_bytes([0; 12]))
}

/// Why a message was dead-lettered. Each is a different operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// Older than the stale threshold when its turn came.
    Stale,
    /// Contains one of the list's blocked words.
    BlockedContent,
    /// Contact unsubscribed, blocked, removed, or not on the list.
    ContactBlocked,
    /// No rate-limit permit within the permit window.
    RateLimitTimeout,
    /// The provider rejected it (permanent error, or retries ran out).
    ProviderError,
    /// The request went out and no answer came back: in doubt, never resent.
    NoResponse,
    /// The account could not pay for the billing TTL.
    BillingBlocked,
    /// The message's sending list no longer exists: nobody can send it.
    ListDeleted,
    /// The queued document could not be decoded; quarantined with its raw
    /// content so its list is not blocked behind it.
    Malformed,
    /// Its turn came outside the contact's TCPA window (it waited in the
    /// queue past the window's end) and its schedule does not defer.
    QuietHours,
}

impl FailureReason {
    pub const ALL: [FailureReason; 10] = [
        FailureReason::Stale,
        FailureReason::BlockedContent,
        FailureReason::ContactBlocked,
        FailureReason::RateLimitTimeout,
        FailureReason::ProviderError,
        FailureReason::NoResponse,
        FailureReason::BillingBlocked,
        FailureReason::ListDeleted,
        FailureReason::Malformed,
        FailureReason::QuietHours,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Stale => "STALE",
            FailureReason::BlockedContent => "BLOCKED_CONTENT",
            FailureReason::ContactBlocked => "CONTACT_BLOCKED",
            FailureReason::RateLimitTimeout => "RATE_LIMIT_TIMEOUT",
            FailureReason::ProviderError => "PROVIDER_ERROR",
            FailureReason::NoResponse => "NO_RESPONSE",
            FailureReason::BillingBlocked => "BILLING_BLOCKED",
            FailureReason::ListDeleted => "LIST_DELETED",
            FailureReason::Malformed => "MALFORMED",
            FailureReason::QuietHours => "QUIET_HOURS",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
