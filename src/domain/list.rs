//! Sending lists: which provider, from which numbers, how fast, and the rules
//! every message on the list obeys.

use super::{AccountId, SendingListId, Timestamp};
use serde::{Deserialize, Serialize};

/// The default rate limit of a list, from the product documentation.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 17_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendingList {
    #[serde(rename = "_id")]
    pub id: SendingListId,
    pub account: AccountId,
    pub name: String,
    pub provider: ProviderSettings,
    /// Sender numbers (or alphanumeric ids); messages rotate through them.
    pub from_numbers: Vec<String>,
    /// Messages per minute across all daemons together.
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// Minimum time between two campaign messages to one contact on this
    /// list, in seconds (enforced at audience evaluation).
    #[serde(default)]
    pub cooldown_secs: u64,
    /// Words that must not appear in a message (case-insensitive, whole words).
    #[serde(default)]
    pub blocked_words: Vec<String>,
    #[serde(default)]
    pub tcpa_window: TcpaWindow,
    /// The zone of contacts whose zone is neither stored nor known from their
    /// number (an IANA name); unset: `scheduler.default_time_zone`.
    #[serde(default)]
    pub default_time_zone: Option<String>,
    /// The answer to an inbound HELP or INFO (who sends, how to stop); none:
    /// such messages are counted and not answered.
    #[serde(default)]
    pub help_reply: Option<String>,
    #[serde(default)]
    pub status: ListStatus,
    /// Discord webhook for this list's alerts, before the account's (the
    /// URL is a credential: never shown by the admin API).
    #[serde(default)]
    pub discord_webhook_url: Option<crate::telemetry::Secret>,
    #[serde(with = "super::dt")]
    pub created_at: Timestamp,
}

fn default_rate() -> u32 {
    DEFAULT_RATE_PER_MINUTE
}

/// Which provider a list sends through, with its per-list settings. Secrets
/// are not stored here: `credentials` names a credential set that the daemon
/// reads from its environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderSettings {
    Infobip {
        #[serde(default = "default_credentials")]
        credentials: String,
    },
    Twilio {
        #[serde(default = "default_credentials")]
        credentials: String,
        /// Send through a Messaging Service instead of a `From` number.
        #[serde(default)]
        messaging_service_sid: Option<String>,
    },
    Cm {
        #[serde(default = "default_credentials")]
        credentials: String,
    },
    /// The in-process fake provider (demo, tests, benchmarks). Refused by a
    /// daemon whose config does not enable it.
    Fake,
}

fn default_credentials() -> String {
    "default".to_string()
}

impl ProviderSettings {
    /// The provider key a list needs, as daemons' leases list what they can
    /// send through (`kind:credentials`, or `fake`).
    pub fn key(&self) -> String {
        match self {
            ProviderSettings::Fake => "fake".into(),
            ProviderSettings::Infobip { credentials } => format!("infobip:{credentials}"),
            ProviderSettings::Twilio { credentials, .. } => format!("twilio:{credentials}"),
            ProviderSettings::Cm { credentials } => format!("cm:{credentials}"),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderSettings::Infobip { .. } => ProviderKind::Infobip,
            ProviderSettings::Twilio { .. } => ProviderKind::Twilio,
            ProviderSettings::Cm { .. } => ProviderKind::Cm,
            ProviderSettings::Fake => ProviderKind::Fake,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Infobip,
    Twilio,
    Cm,
    Fake,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Infobip => "infobip",
            ProviderKind::Twilio => "twilio",
            ProviderKind::Cm => "cm",
            ProviderKind::Fake => "fake",
        }
    }
}

/// Local-time window in which a contact may be messaged (TCPA), as minutes
/// after local midnight: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpaWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl Default for TcpaWindow {
    fn default() -> Self {
        TcpaWindow {
            start_minute: 8 * 60,
            end_minute: 21 * 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListStatus {
    #[default]
    Active,
    /// Nothing is sent; queued messages wait (and may go stale).
    Paused,
}
