//! Contacts: one phone number of an account, its subscriptions and state.

use super::{AccountId, ContactId, E164, SendingListId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(rename = "_id")]
    pub id: ContactId,
    pub account: AccountId,
    pub phone: E164,
    /// IANA time zone name (`America/New_York`), for the TCPA window.
    pub time_zone: String,
    /// Per-list subscription state. A contact with no entry for a list is not
    /// on that list.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Blocked by the platform or the account: never messaged.
    #[serde(default)]
    pub blocked: bool,
    /// Currently in an active welcome journey.
    #[serde(default)]
    pub in_workflow: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
    /// Last campaign send per list (cooldown).
    #[serde(default)]
    pub last_sent: Vec<LastSent>,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub list: SendingListId,
    pub subscribed: bool,
    /// When it last changed (opt-in or STOP).
    #[serde(with = "super::dt")]
    pub changed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastSent {
    pub list: SendingListId,
    #[serde(with = "super::dt")]
    pub at: Timestamp,
}

impl Contact {
    /// Whether a message on `list` may go to this contact right now, as far as
    /// its block state goes (the re-check right before sending).
    pub fn state_on(&self, list: SendingListId) -> ContactState {
        if self.blocked {
            return ContactState::Blocked;
        }
        match self.subscriptions.iter().find(|s| s.list == list) {
            Some(s) if s.subscribed => ContactState::Sendable,
            Some(_) => ContactState::Unsubscribed,
            None => ContactState::NotOnList,
        }
    }
}

/// The answer to "may this contact be messaged on this list now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    Sendable,
    Unsubscribed,
    Blocked,
    NotOnList,
    /// The contact record no longer exists.
    Missing,
}

impl ContactState {
    pub fn describe(self) -> &'static str {
        match self {
            ContactState::Sendable => "sendable",
            ContactState::Unsubscribed => "contact unsubscribed from the list",
            ContactState::Blocked => "contact is blocked",
            ContactState::NotOnList => "contact is not on the list",
            ContactState::Missing => "contact no longer exists",
        }
    }
}
