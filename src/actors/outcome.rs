//! How outcomes are written down: the dead letters and settlements that the
//! Worker and Recovery both produce. One function per kind of outcome, so a
//! message judged in doubt by Recovery is recorded exactly as one a worker
//! saw time out.

use crate::domain::sent::NO_RESPONSE;
use crate::domain::*;
use crate::store::Settlement;

/// A dead letter for `m`.
pub fn failure(
    m: &QueuedTextMessage,
    reason: FailureReason,
    detail: String,
    provider: Option<(&str, &str)>,
    at: Timestamp,
) -> FailedMessage {
    FailedMessage {
        id: m.id,
        account: m.account,
        sending_list: m.sending_list,
        reason,
        detail,
        provider_code: provider.map(|p| p.0.to_string()),
        provider_text: provider.map(|p| p.1.to_string()),
        failed_at: at,
        original: Some(m.clone()),
        raw: None,
        resolved: None,
        requeued: None,
    }
}

/// The request may have reached the provider and no usable answer came
/// back: recorded `submitted = false`, `error_code = NO_RESPONSE`, with its
/// NO_RESPONSE dead letter; the charge stands (the provider may have sent
/// it). Never resent automatically; a delivery report (or a provider
/// lookup, or an operator) settles it later.
pub fn in_doubt(
    original: &QueuedTextMessage,
    provider_code: Option<&str>,
    detail: String,
    at: Timestamp,
) -> Settlement {
    let text = detail.clone();
    Settlement::Failed {
        at,
        code: NO_RESPONSE.to_string(),
        text,
        refund: false,
        dead_letter: Box::new(failure(
            original,
            FailureReason::NoResponse,
            detail,
            provider_code.map(|c| (c, "")),
            at,
        )),
    }
}

/// A provider's permanent refusal (or transient errors until the message
/// went stale): `submitted = false` with the provider's code, a
/// PROVIDER_ERROR dead letter, and the charge refunded.
pub fn rejected(
    m: &QueuedTextMessage,
    code: &str,
    text: &str,
    detail: String,
    at: Timestamp,
) -> Settlement {
    Settlement::Failed {
        at,
        code: code.to_string(),
        text: text.to_string(),
        refund: true,
        dead_letter: Box::new(failure(
            m,
            FailureReason::ProviderError,
            detail,
            Some((code, text)),
            at,
        )),
    }
}

/// When the queued message is gone, what its attempt record still knows
/// (the body is not kept there).
pub fn original_from_attempt(a: &MessageSent) -> QueuedTextMessage {
    QueuedTextMessage {
        id: a.id,
        account: a.account,
        sending_list: a.sending_list,
        contact: a.contact,
        schedule: a.schedule,
        run: a.run,
        creative: a.creative,
        variant: a.variant.clone(),
        send_type: a.send_type,
        from: a.from.clone(),
        to: a.to.clone(),
        body: String::new(),
        segments: a.segments,
        encoding: None,
        time_zone: None,
        defer_outside_window: false,
        send_at: a.attempted_at,
        not_before: a.attempted_at,
        claimed_by: None,
        claimed_at: None,
        claim_owner: None,
        claim_count: 0,
        attempts: 0,
        billing_blocked_since: None,
        last_error: None,
        queued_at: a.attempted_at,
    }
}
