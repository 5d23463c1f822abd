//! Customer webhooks: the WebhookSender's protocol.

use actix::Message;

/// Anyone → WebhookSender: look for due outbox entries now (a hint; the
/// sender also looks every `customer_webhooks.poll_interval`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PollWebhooks;

/// Shutdown (and tests) → WebhookSender: claim nothing more; a round in
/// flight finishes, and the sender stops. Entries it did not post stay in
/// the outbox for any daemon.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopWebhooks;
