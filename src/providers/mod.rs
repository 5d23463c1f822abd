//! The provider port: how a worker hands messages to an SMS provider and
//! what it gets back. Adapters classify every answer into one of four
//! outcomes, which decide what happens to the message (see
//! [`SendResult`]).

pub mod batch;
pub mod cm;
pub mod fake;
pub mod http;
pub mod infobip;
pub mod twilio;

use crate::domain::{
    DeliveryState, E164, MessageId, ProviderKind, ProviderSettings, SendingListId, Timestamp,
};
use async_trait::async_trait;
use std::sync::Arc;

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
    /// Twilio: send through this Messaging Service instead of `from`.
    pub messaging_service_sid: Option<String>,
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
    /// Provably not taken: the request was never written (could not
    /// connect), or the provider answered in a way it documents as "nothing
    /// was processed" (429; each adapter names its documents). Retried with
    /// backoff while the message is fresh. `throttled` also slows the list.
    Transient {
        code: String,
        text: String,
        throttled: bool,
    },
    /// Ambiguous: the request went out and the answer does not prove what
    /// happened (a timeout, a 5xx, a 2xx that cannot be read, an answer that
    /// does not mention the message). The provider may have taken it: never
    /// resent automatically (guarantee 1), recorded NO_RESPONSE. `code` is
    /// what the wire showed (`HTTP 502`, `TIMEOUT`), when anything.
    InDoubt { code: Option<String>, text: String },
}

/// An in-doubt message to look up at its provider (issue: resolving
/// in-doubt messages by asking the provider).
#[derive(Debug, Clone)]
pub struct LookupQuery {
    /// Our id (Infobip: the `messageId` we set on the destination).
    pub id: MessageId,
    /// The sender the attempt used (Twilio: `From`; empty when a Messaging
    /// Service sent it).
    pub from: String,
    pub to: E164,
    /// The text that was sent (Twilio matches on it: it has no client
    /// reference).
    pub body: String,
    /// When the attempt was made: a provider record of it is not older
    /// (allow for clock skew).
    pub attempted_at: Timestamp,
}

/// What the provider's records say of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    /// The provider has it (for Twilio: a match on number, body and time;
    /// an ambiguous match counts as taken).
    Taken {
        provider_message_id: Option<String>,
        /// Its delivery state, when the provider already knows it.
        delivery: Option<DeliveryState>,
        /// The provider's error code for an undelivered message.
        error_code: Option<String>,
    },
    /// The provider has no record of it: it was not taken.
    NotTaken,
}

/// A lookup that did not answer. The messages stay in doubt; the lookup is
/// tried again later (never guessed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("this provider has no message lookup")]
    Unsupported,
    #[error("lookup failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait SmsProvider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    /// Messages per request for batch APIs, or the in-flight bound for
    /// per-message APIs. The worker hands over at most this many at a time.
    fn max_batch(&self) -> usize;
    /// Send `msgs`; the answer has one entry per message, in order.
    async fn send(&self, msgs: &[OutboundSms]) -> Vec<SendResult>;
    /// Whether [`SmsProvider::lookup`] can answer (Infobip and Twilio can,
    /// CM cannot).
    fn can_look_up(&self) -> bool {
        false
    }
    /// Most queries per [`SmsProvider::lookup`] call.
    fn lookup_batch(&self) -> usize {
        100
    }
    /// The oldest attempt a lookup can answer for (the provider keeps its
    /// records this long); `None`: no limit known.
    fn lookup_horizon(&self) -> Option<chrono::TimeDelta> {
        None
    }
    /// Ask the provider's records about in-doubt messages: one answer per
    /// query, in order, or an error for the whole call.
    async fn lookup(&self, queries: &[LookupQuery]) -> Result<Vec<LookupAnswer>, LookupError> {
        let _ = queries;
        Err(LookupError::Unsupported)
    }
}

pub type SharedProvider = Arc<dyn SmsProvider>;

/// The providers this daemon can send through, by kind and credential set.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    adapters: std::collections::HashMap<(ProviderKind, String), SharedProvider>,
    fake: Option<SharedProvider>,
}

/// An adapter that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{key} is not a valid URL: {source}")]
    BaseUrl {
        key: &'static str,
        #[source]
        source: url::ParseError,
    },
    #[error("the {provider} credentials are not valid header text")]
    Credentials { provider: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderUnavailable {
    #[error("provider {kind} with credentials {credentials:?} is not configured on this daemon")]
    NotConfigured {
        kind: &'static str,
        credentials: String,
    },
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_fake(mut self, fake: SharedProvider) -> Self {
        self.fake = Some(fake);
        self
    }

    /// Register an adapter for `kind` under a credential set name.
    pub fn with(mut self, kind: ProviderKind, credentials: &str, adapter: SharedProvider) -> Self {
        self.adapters
            .insert((kind, credentials.to_string()), adapter);
        self
    }

    /// Build every adapter the configuration and the environment's
    /// credentials allow, with reports addressed to `public_url`.
    pub fn from_config(
        cfg: &crate::config::Config,
        secrets: &crate::config::Secrets,
    ) -> Result<Self, ProviderSetupError> {
        let mut reg = ProviderRegistry::new();
        let public = cfg.http.public_url.trim_end_matches('/');
        let token = secrets
            .webhook_token
            .as_ref()
            .map(|t| t.expose().to_string());
        for (name, key) in &secrets.infobip {
            let notify = token
                .as_ref()
                .map(|t| format!("{public}/webhooks/infobip/{t}"));
            let a = infobip::Infobip::new(&cfg.providers.infobip, key.clone(), notify)?;
            reg = reg.with(ProviderKind::Infobip, name, Arc::new(a));
        }
        for (name, creds) in &secrets.twilio {
            let callback = format!("{public}/webhooks/twilio/{name}");
            let a = twilio::Twilio::new(&cfg.providers.twilio, creds.clone(), Some(callback))?;
            reg = reg.with(ProviderKind::Twilio, name, Arc::new(a));
        }
        for (name, tok) in &secrets.cm {
            let a = cm::Cm::new(&cfg.providers.cm, tok.clone())?;
            reg = reg.with(ProviderKind::Cm, name, Arc::new(a));
        }
        if cfg.providers.fake.enabled {
            reg = reg.with_fake(Arc::new(fake::FakeProvider::new(fake::FakeSettings::from(
                &cfg.providers.fake,
            ))));
        }
        Ok(reg)
    }

    /// The provider for a list's settings.
    pub fn for_settings(
        &self,
        s: &ProviderSettings,
    ) -> Result<SharedProvider, ProviderUnavailable> {
        let (kind, creds) = match s {
            ProviderSettings::Fake => {
                return self.fake.clone().ok_or(ProviderUnavailable::NotConfigured {
                    kind: "fake",
                    credentials: String::new(),
                });
            }
            ProviderSettings::Infobip { credentials } => (ProviderKind::Infobip, credentials),
            ProviderSettings::Twilio { credentials, .. } => (ProviderKind::Twilio, credentials),
            ProviderSettings::Cm { credentials } => (ProviderKind::Cm, credentials),
        };
        self.adapters
            .get(&(kind, creds.clone()))
            .cloned()
            .ok_or_else(|| ProviderUnavailable::NotConfigured {
                kind: kind.as_str(),
                credentials: creds.clone(),
            })
    }

    /// Which providers are configured (for the start-up log).
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .adapters
            .keys()
            .map(|(k, c)| format!("{}:{c}", k.as_str()))
            .collect();
        if self.fake.is_some() {
            v.push("fake".into());
        }
        v.sort();
        v
    }
}

/// One delivery report, parsed from a provider's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Our message id, when the report carries one we issued; `None` for a
    /// reference we do not recognise (counted as unknown, answered 200).
    pub id: Option<MessageId>,
    pub state: crate::domain::DeliveryState,
    /// The provider's error code for failed deliveries.
    pub error_code: Option<String>,
}

/// A report payload that does not parse: answered 400, nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed delivery report: {0}")]
pub struct MalformedReport(pub String);

/// Our id from a provider-side reference (we send our 24-hex id).
pub fn our_id(reference: &str) -> Option<MessageId> {
    reference.trim().parse().ok()
}
