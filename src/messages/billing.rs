//! Worker / Recovery → Billing. Billing is the ledger: every balance change
//! goes through it, together with the attempt records and outcomes that
//! justify it, in one store transaction each.

use crate::domain::{AccountId, MessageSent};
use crate::store::{AttemptsBegun, Settled, Settlement, StoreError};
use actix::prelude::*;

/// Charge for these attempts and record them, atomically: the longest
/// prefix the balance covers is debited (segments × the account's price per
/// segment, which Billing fills into each record's `cost`) and its attempt
/// records inserted; records that already exist are never charged (someone
/// attempted those before: never send them).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<AttemptsBegun, StoreError>")]
pub struct Charge {
    pub account: AccountId,
    /// Attempt records in sending order (`submitted = null`).
    pub attempts: Vec<MessageSent>,
}

/// Record answers for attempted messages of `account`: each failure's
/// outcome, dead letter and refund are durable together (see
/// [`Settlement`]). Answered once durable.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Settled, StoreError>")]
pub struct Settle {
    pub account: AccountId,
    pub items: Vec<Settlement>,
}
