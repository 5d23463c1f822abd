//! The customer-webhook outbox: one entry per (message, delivery state) to
//! post to the account's delivery-status webhook. Written by DeliveryIntake
//! before it answers the provider, posted by the WebhookSender.

use super::{AccountId, DeliveryState, MessageId, Timestamp};
use serde::{Deserialize, Serialize};

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting to be posted (or for its next try).
    Pending,
    /// The customer answered 2xx.
    Delivered,
    /// Tried until `customer_webhooks.give_up_after` (or the account has no
    /// webhook any more): not posted again.
    GivenUp,
    /// The URL broke the SSRF rule at send time: never posted.
    Refused,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::GivenUp => "given_up",
            OutboxStatus::Refused => "refused",
        }
    }
    pub const ALL: [OutboxStatus; 4] = [
        OutboxStatus::Pending,
        OutboxStatus::Delivered,
        OutboxStatus::GivenUp,
        OutboxStatus::Refused,
    ];
}

/// One webhook to post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// `<message id>:<state>`: unique per message and delivery state, so a
    /// report written twice (the provider resent it) makes one entry.
    #[serde(rename = "_id")]
    pub id: String,
    pub message: MessageId,
    pub account: AccountId,
    pub state: DeliveryState,
    /// Order within the message: 0 for an intermediate state, 1 for a final
    /// one. An entry is not posted while an entry of the same message with a
    /// lower rank is still pending.
    pub rank: u8,
    /// The JSON body, exactly as posted (and signed) on every try.
    pub body: String,
    pub status: OutboxStatus,
    /// Tries made so far.
    #[serde(default)]
    pub attempts: u32,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
    /// Not posted before this.
    #[serde(with = "super::dt")]
    pub next_attempt_at: Timestamp,
    /// The claim: a batch token of the daemon posting it, valid until
    /// `lease_until`; after that any daemon may claim it again.
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(with = "super::dt_opt", default)]
    pub lease_until: Option<Timestamp>,
    /// The last try's failure (a status code or an error kind; never the
    /// URL or the body).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(with = "super::dt_opt", default)]
    pub finished_at: Option<Timestamp>,
}

impl OutboxEntry {
    pub fn key(message: MessageId, state: DeliveryState) -> String {
        format!("{}:{}", message.to_hex(), state.as_str())
    }
    pub fn rank_of(state: DeliveryState) -> u8 {
        u8::from(state.is_final())
    }
    /// The key of the entry that must be posted (or given up) before this
    /// one: a final state waits for the message's intermediate one.
    pub fn earlier_key(&self) -> Option<String> {
        (self.rank > 0).then(|| Self::key(self.message, DeliveryState::Pending))
    }
}

/// The documented delivery-status payload (message-execution.txt, "Delivery
/// Webhooks"), field for field, camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookPayload {
    pub id: String,
    pub account: String,
    pub sending_list: String,
    pub message_creative: Option<String>,
    pub from_number: String,
    pub to_number: String,
    pub delivered: Option<bool>,
    pub send_type: String,
    pub filter_bots: bool,
    pub length: u32,
    /// When the delivery state was recorded, RFC 3339 UTC to the second.
    pub timestamp: String,
}

impl WebhookPayload {
    /// The payload for `record` as it now stands, for its account.
    pub fn of(record: &super::MessageSent, account: &super::Account) -> WebhookPayload {
        let at = record.delivery_updated_at.unwrap_or(record.attempted_at);
        WebhookPayload {
            id: record.id.to_hex(),
            account: record.account.to_hex(),
            sending_list: record.sending_list.to_hex(),
            message_creative: record.creative.map(|c| c.to_hex()),
            from_number: record.from.clone(),
            to_number: record.to.as_str().to_string(),
            delivered: record.delivered,
            send_type: record.send_type.as_str().to_string(),
            filter_bots: account.filter_bots,
            length: record.length,
            timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn to_body(&self) -> String {
        // A struct of strings, numbers and booleans always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The wait after the `attempts`-th failed try: `base × 2^(attempts − 1)`
/// capped at `max`, with "equal jitter" (half fixed, half spread by a hash
/// of the entry and the try, so daemons agree and tests can predict it).
pub fn backoff(
    base: std::time::Duration,
    max: std::time::Duration,
    attempts: u32,
    key: &str,
) -> std::time::Duration {
    use std::hash::{Hash, Hasher};
    let exp = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let half = full / 2;
    let mut h = siphasher::sip::SipHasher24::new_with_keys(0x7765_6268_6f6f_6b73, attempts as u64);
    key.hash(&mut h);
    let frac = (h.finish() % 1_000_000) as f64 / 1_000_000.0;
    half + half.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        for n in 1..=12u32 {
            let full = (base * 2u32.pow(n - 1)).min(max);
            let d = backoff(base, max, n, "m:delivered");
            assert!(d >= full / 2 && d <= full, "try {n}: {d:?} vs {full:?}");
        }
        assert_eq!(
            backoff(base, max, 3, "x"),
            backoff(base, max, 3, "x"),
            "deterministic"
        );
        assert!(backoff(base, max, 1000, "x") <= max);
    }
}
