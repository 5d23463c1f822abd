//! Accounts: the businesses that send campaigns, and who pays for them.

use super::{AccountId, Money, Timestamp};
use crate::telemetry::Secret;
use serde::{Deserialize, Serialize};

/// A customer account. Only the Billing actor changes `balance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    #[serde(rename = "_id")]
    pub id: AccountId,
    pub name: String,
    /// Prepaid balance. Debited per SMS segment; never below zero.
    pub balance: Money,
    /// Everything ever paid in (opening balance plus top-ups). With the
    /// attempt records' charges and refunds it reconciles the balance:
    /// `balance = funded - charged + refunded` (`trackly audit` checks it).
    #[serde(default)]
    pub funded: Money,
    /// Price of one SMS segment.
    pub price_per_segment: Money,
    /// Where delivery-status webhooks for this account's messages are posted.
    #[serde(default)]
    pub delivery_webhook: Option<CustomerWebhook>,
    /// Discord webhook for this account's alerts (the URL is a credential).
    #[serde(default)]
    pub discord_webhook_url: Option<Secret>,
    /// Whether this account's link statistics leave out preview fetchers and
    /// crawlers; echoed as `filterBots` in its delivery-status webhooks.
    #[serde(default)]
    pub filter_bots: bool,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

/// A customer's delivery-status endpoint and the secret its payloads are
/// signed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerWebhook {
    pub url: String,
    pub secret: Secret,
}
