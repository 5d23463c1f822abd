//! Anyone → DeadLetter. DeadLetter is the only writer of FailedMessage.

use crate::domain::FailedMessage;
use crate::store::StoreError;
use actix::prelude::*;

/// Record these dead letters. Answers once they are durable (concurrent
/// requests are written together in one insert). Returns how many were new.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct RecordFailures(pub Vec<FailedMessage>);
