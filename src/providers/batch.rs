//! What the batch APIs (Infobip, CM) share: one pooled HTTP client, requests
//! of up to `batch_size` messages with at most `concurrency` in flight, and
//! one result per message in order. A provider adds only its wire format:
//! how one request is built, and how its answer is read ([`BatchWire`]).

use super::http::{self, Exchange};
use super::{
    LookupAnswer, LookupError, LookupQuery, OutboundSms, ProviderSetupError, SendResult,
    SmsProvider,
};
use crate::domain::ProviderKind;
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::time::Duration;

/// One batch API's wire format.
pub trait BatchWire: Send + Sync + 'static {
    const KIND: ProviderKind;
    /// The request for up to `batch_size` messages.
    fn request(&self, client: &reqwest::Client, msgs: &[OutboundSms]) -> reqwest::RequestBuilder;
    /// The result for each message of a request, in order.
    fn classify(msgs: &[OutboundSms], ex: Exchange) -> Vec<SendResult>;
    /// Whether [`BatchWire::lookup`] can answer (see [`SmsProvider::can_look_up`]).
    fn can_look_up(&self) -> bool {
        false
    }
    /// The oldest attempt a lookup answers for (see
    /// [`SmsProvider::lookup_horizon`]).
    fn lookup_horizon(&self) -> Option<chrono::TimeDelta> {
        None
    }
    /// Most queries per lookup (see [`SmsProvider::lookup_batch`]).
    fn lookup_batch(&self) -> usize {
        100
    }
    /// Ask the provider's records about in-doubt messages (see
    /// [`SmsProvider::lookup`]); unsupported unless the wire says otherwise.
    fn lookup<'a>(
        &'a self,
        client: &'a reqwest::Client,
        queries: &'a [LookupQuery],
    ) -> BoxFuture<'a, Result<Vec<LookupAnswer>, LookupError>> {
        let _ = (client, queries);
        Box::pin(async { Err(LookupError::Unsupported) })
    }
}

/// A batch API adapter.
pub struct BatchProvider<W> {
    client: reqwest::Client,
    wire: W,
    batch_size: usize,
    concurrency: usize,
}

impl<W: BatchWire> BatchProvider<W> {
    pub fn with_wire(
        wire: W,
        timeout: Duration,
        batch_size: usize,
        concurrency: usize,
    ) -> Result<Self, ProviderSetupError> {
        Ok(BatchProvider {
            // Two idle connections per request in flight: enough for reuse.
            client: http::client(timeout, concurrency.max(1) * 2)?,
            wire,
            batch_size: batch_size.max(1),
            concurrency: concurrency.max(1),
        })
    }
}

#[async_trait]
impl<W: BatchWire> SmsProvider for BatchProvider<W> {
    fn kind(&self) -> ProviderKind {
        W::KIND
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    async fn send(&self, msgs: &[OutboundSms]) -> Vec<SendResult> {
        http::in_batches(msgs, self.batch_size, self.concurrency, |c| async move {
            let req = self.wire.request(&self.client, c);
            W::classify(c, http::exchange(req).await)
        })
        .await
    }

    fn can_look_up(&self) -> bool {
        self.wire.can_look_up()
    }

    fn lookup_batch(&self) -> usize {
        self.wire.lookup_batch()
    }

    fn lookup_horizon(&self) -> Option<chrono::TimeDelta> {
        self.wire.lookup_horizon()
    }

    async fn lookup(&self, queries: &[LookupQuery]) -> Result<Vec<LookupAnswer>, LookupError> {
        self.wire.lookup(&self.client, queries).await
    }
}
