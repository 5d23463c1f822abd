//! Worker → Billing. Billing is the only writer of balances.

use crate::domain::{AccountId, MessageId, Money};
use crate::store::StoreError;
use actix::prelude::*;

/// Pay for these messages (segments each) at the account's price, in one
/// atomic debit. Messages the balance cannot cover are `blocked`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Charged, StoreError>")]
pub struct Charge {
    pub account: AccountId,
    /// `(message, segments)`, in sending order.
    pub items: Vec<(MessageId, u32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charged {
    /// Paid for, with what each cost.
    pub paid: Vec<(MessageId, Money)>,
    /// Not covered by the balance.
    pub blocked: Vec<MessageId>,
}

/// Give money back for messages that were paid for and not sent (provider
/// rejection, retry, already attempted elsewhere).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Refund {
    pub account: AccountId,
    pub amount: Money,
}
