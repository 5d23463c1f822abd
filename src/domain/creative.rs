//! Message creatives: the text of a campaign, in weighted variants.

use super::{AccountId, CreativeId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageCreative {
    #[serde(rename = "_id")]
    pub id: CreativeId,
    pub account: AccountId,
    pub name: String,
    /// At least one. Weights are relative (they need not sum to 100).
    pub variants: Vec<Variant>,
    /// Replace URLs with tracked short links at queue time.
    #[serde(default)]
    pub track_links: bool,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Stable key ("A", "B", ...), recorded on each message for stats.
    pub key: String,
    /// Body with `{{placeholders}}` (`{{first_name|there}}` has a default).
    pub body: String,
    pub weight: u32,
}
