//! Audiences: saved, typed filters over an account's contacts. Filters are
//! typed fields, never raw query documents, so nothing an operator sends can
//! become a MongoDB operator.

use super::{AccountId, AudienceId, SendingListId, Timestamp};
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
    /// Contacts subscribed to this list.
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
