//! Tracked short links and their clicks.

use super::{
    AccountId, ClickId, CreativeId, LinkId, MessageId, ScheduleId, ScheduleRunId, Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageShortLink {
    #[serde(rename = "_id")]
    pub id: LinkId,
    /// The short code in the URL (unique).
    pub code: String,
    pub account: AccountId,
    #[serde(default)]
    pub message: Option<MessageId>,
    #[serde(default)]
    pub schedule: Option<ScheduleId>,
    /// The run and the creative variant the message came from (clicks feed
    /// the variant's statistics).
    #[serde(default)]
    pub run: Option<ScheduleRunId>,
    #[serde(default)]
    pub creative: Option<CreativeId>,
    #[serde(default)]
    pub variant: Option<String>,
    pub destination_url: String,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkClick {
    #[serde(rename = "_id")]
    pub id: ClickId,
    pub link: LinkId,
    #[serde(default)]
    pub message: Option<MessageId>,
    #[serde(with = "super::dt")]
    pub clicked_at: Timestamp,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// A keyed hash of the client's address (never the address itself):
    /// repeat clicks from one place can be told apart without keeping it.
    #[serde(default)]
    pub ip_hash: Option<String>,
    /// Classified as a link-preview bot or crawler.
    pub is_bot: bool,
}
