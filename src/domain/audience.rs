//! Audiences: saved, typed filters over an account's contacts. Filters are
//! typed fields, never raw query documents, so nothing an operator sends can
//! become a MongoDB operator.

use super::{AccountId, AudienceId, Contact, SendingListId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    #[serde(rename = "_id")]
    pub id: AudienceId,
    pub account: AccountId,
    pub name: String,
    pub filter: AudienceFilter,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceFilter {
    /// Contacts on this list (subscribed or not: audience evaluation skips
    /// and counts the unsubscribed).
    pub list: Option<SendingListId>,
    /// Contacts with at least one of these tags (empty: no constraint).
    #[serde(default)]
    pub tags_any: Vec<String>,
    /// Contacts with none of these tags.
    #[serde(default)]
    pub tags_none: Vec<String>,
    /// Custom fields that must equal these values exactly.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl AudienceFilter {
    /// Whether `contact` is in this audience (the same rule the MongoDB
    /// query expresses).
    pub fn matches(&self, contact: &Contact) -> bool {
        if let Some(list) = self.list
            && !contact.subscriptions.iter().any(|s| s.list == list)
        {
            return false;
        }
        if !self.tags_any.is_empty() && !contact.tags.iter().any(|t| self.tags_any.contains(t)) {
            return false;
        }
        if contact.tags.iter().any(|t| self.tags_none.contains(t)) {
            return false;
        }
        self.fields
            .iter()
            .all(|(k, v)| contact.custom_fields.get(k) == Some(v))
    }

    /// Field names must be plain names: they become document paths in the
    /// MongoDB query, so a `$` or `.` could turn data into an operator.
    pub fn validate(&self) -> Result<(), String> {
        for k in self.fields.keys() {
            if !is_plain_name(k) {
                return Err(format!(
                    "audience field {k:?}: a field name is 1 to 64 letters, digits, '_' or '-'"
                ));
            }
        }
        Ok(())
    }
}

/// 1 to 64 ASCII letters, digits, `_` or `-`: safe as a document key.
pub fn is_plain_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
