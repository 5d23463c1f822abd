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
    /// The message as it was queued, for requeue and investigation.
    pub original: QueuedTextMessage,
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
}

impl FailureReason {
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Stale,
        FailureReason::BlockedContent,
        FailureReason::ContactBlocked,
        FailureReason::RateLimitTimeout,
        FailureReason::ProviderError,
        FailureReason::NoResponse,
        FailureReason::BillingBlocked,
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
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
