//! The domain model: typed structs as they are stored in MongoDB.
//!
//! Field names are the stored names (snake_case). Timestamps are stored as BSON
//! dates (millisecond precision) so range queries and TTL indexes work; the
//! [`crate::clock`] hands out millisecond-truncated times so that the in-memory
//! store and MongoDB see identical values.

pub mod account;
pub mod alert;
pub mod audience;
pub mod contact;
pub mod creative;
pub mod failed;
pub mod ids;
pub mod lease;
pub mod links;
pub mod list;
pub mod money;
pub mod phone;
pub mod queue;
pub mod schedule;
pub mod sent;
pub mod sms;
pub mod webhook;

pub use account::{Account, CustomerWebhook};
pub use alert::{AlertKind, AlertWindow};
pub use audience::{Audience, AudienceFilter};
pub use contact::{Contact, ContactState, Subscription};
pub use creative::{MessageCreative, Variant};
pub use failed::{FailedMessage, FailureReason, Resolution};
pub use ids::*;
pub use lease::{DaemonLease, LeaseRenewal};
pub use links::{LinkClick, MessageShortLink};
pub use list::{ListStatus, ProviderKind, ProviderSettings, SendingList, TcpaWindow};
pub use money::Money;
pub use phone::E164;
pub use queue::{QueuedTextMessage, SendType};
pub use schedule::{
    RunCounts, RunRates, RunStatus, Schedule, ScheduleKind, ScheduleRun, ScheduleStatus,
    VariantCount, VariantSelection, VariantStats,
};
pub use sent::{DeliveryState, MessageSent};
pub use webhook::{OutboxEntry, OutboxStatus, WebhookPayload};

/// A point in time, UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// `#[serde(with = "crate::domain::dt")]`: a [`Timestamp`] stored as a BSON date.
pub mod dt {
    pub use bson::serde_helpers::chrono_datetime_as_bson_datetime::{deserialize, serialize};
}

/// `#[serde(with = "crate::domain::dt_opt", default)]`: an optional [`Timestamp`]
/// stored as a BSON date or null.
pub mod dt_opt {
    pub use bson::serde_helpers::chrono_datetime_as_bson_datetime_optional::{
        deserialize, serialize,
    };
}
