//! Worker → RateLimiter.

use crate::domain::SendingListId;
use crate::ratelimit::{Bucket, Grant, RateLimitError};
use actix::prelude::*;

/// Ask for up to `n` permits from `list`'s `bucket`, whose configured rate
/// is `per_minute`. One round trip to the shared state.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Grant, RateLimitError>")]
pub struct Acquire {
    pub list: SendingListId,
    pub bucket: Bucket,
    pub per_minute: u32,
    pub n: u32,
}

/// Worker → RateLimiter: the provider throttled this list (HTTP 429) or
/// failed transiently; lower its effective rate (multiplicative decrease).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Throttled {
    pub list: SendingListId,
}

/// Is the shared rate-limit state reachable?
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), RateLimitError>")]
pub struct CheckRateLimiter;

/// The effective rate of a list right now, as a fraction of its configured
/// rate (1.0 unless the provider throttled recently).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "f64")]
pub struct EffectiveFraction {
    pub list: SendingListId,
}
