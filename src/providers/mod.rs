//! The provider port: how a worker hands messages to an SMS provider and
//! what it gets back. Adapters classify every answer into one of four
//! outcomes, which decide what happens to the message (see
//! [`SendResult`]).

pub mod fake;

use crate::domain::{E164, MessageId, ProviderKind, ProviderSettings, SendingListId};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// One message as a provider sees it.
#[derive(Debug, Clone)]
pub struct OutboundSms {
    /// Our id; adapters send it as the provider-side reference so delivery
    /// reports map back to it.
    pub id: MessageId,
    pub list: SendingListId,
    pub from: String,
    pub to: E164,
    pub body: String,
}

/// The provider's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Taken by the provider.
    Accepted { provider_message_id: String },
    /// Refused for good: dead letter PROVIDER_ERROR with the provider's code.
    /// `unsubscribed`: the provider says the recipient opted out (Twilio
    /// 21610), so the contact is unsubscribed from the list too.
    Rejected {
        code: String,
        text: String,
        unsubscribed: bool,
    },
    /// Not taken, and provably nothing was sent (HTTP 429, 5xx, connection
    /// refused): retried with backoff while the message is fresh.
    /// `throttled` also slows the list down.
    Transient {
        code: String,
        text: String,
        throttled: bool,
    },
    /// The request went out and no answer came back: in doubt. Never retried
    /// (guarantee 1): NO_RESPONSE.
    NoResponse { text: String },
}

#[async_trait]
pub trait SmsProvider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    /// Messages per request for batch APIs, or the in-flight bound for
    /// per-message APIs. The worker hands over at most this many at a time.
    fn max_batch(&self) -> usize;
    /// Send `msgs`; the answer has one entry per message, in order.
    async fn send(&self, msgs: &[OutboundSms]) -> Vec<SendResult>;
}

pub type SharedProvider = Arc<dyn SmsProvider>;

/// The providers this daemon can send through.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    fake: Option<SharedProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderUnavailable {
    #[error("provider {0} is not configured on this daemon")]
    NotConfigured(&'static str),
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_fake(mut self, fake: SharedProvider) -> Self {
        self.fake = Some(fake);
        self
    }

    /// The provider for a list's settings.
    pub fn for_settings(
        &self,
        s: &ProviderSettings,
    ) -> Result<SharedProvider, ProviderUnavailable> {
        match s {
            ProviderSettings::Fake => self
                .fake
                .clone()
                .ok_or(ProviderUnavailable::NotConfigured("fake")),
            other => Err(ProviderUnavailable::NotConfigured(other.kind().as_str())),
        }
    }

    /// The longest timeout of any configured provider.
    pub fn max_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}
