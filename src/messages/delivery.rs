//! Webhook handlers → DeliveryIntake (the HTTP actor).

use crate::store::{DeliveryUpdate, StoreError};
use actix::prelude::*;

/// Apply these parsed, verified delivery reports; answered once durable.
/// `StoreError::Overloaded` when too much already waits (the handler
/// answers 503 and the provider sends it again).
#[derive(Message, Debug)]
#[rtype(result = "Result<IntakeResult, StoreError>")]
pub struct ApplyReports(pub Vec<DeliveryUpdate>);

/// What became of one request's reports (all durable, or an error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeResult {
    /// Reports for messages with no `MessageSent` record.
    pub unknown: u64,
}
