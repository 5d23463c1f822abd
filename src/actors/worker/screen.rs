//! Stage 1, screen: decide what needs no provider at all, before anything
//! is written.
//!
//! Existing outcomes come first, so a message is never given a second
//! terminal state: a re-claimed message (claimed before: a retry, a
//! billing backoff, a released claim) whose dead letter or answered attempt
//! exists is simply done; one whose attempt is still unanswered is in
//! flight elsewhere or in doubt, and is left to Recovery, which judges it by
//! its owner's lease. Then the message's own age: STALE past
//! `worker.stale_after` from its send time, or, for a billing-blocked
//! message, BILLING_BLOCKED past `billing.ttl` from the first block (the TTL
//! governs it instead of staleness, ARCHITECTURE.md); then the list's
//! blocked words.
//!
//! Crash point after it (`worker.screened`): nothing was written; the claim
//! is released when the lease lapses and the next claimer screens again,
//! with the same result.

use super::{Abort, BatchRun};
use crate::clock::chrono_dur;
use crate::domain::*;
use crate::messages::ListHandle;
use std::collections::{HashMap, HashSet};

impl BatchRun {
    pub(super) async fn screen(
        &mut self,
        messages: Vec<QueuedTextMessage>,
    ) -> Result<Vec<QueuedTextMessage>, Abort> {
        let cfg = self.d.config.clone();
        let now = self.d.clock.now();
        let reclaimed: Vec<MessageId> = messages
            .iter()
            .filter(|m| m.claim_count > 1)
            .map(|m| m.id)
            .collect();
        let (attempts, letters): (HashMap<MessageId, MessageSent>, HashSet<MessageId>) =
            if reclaimed.is_empty() {
                Default::default()
            } else {
                let stores = self.d.stores.clone();
                self.durable("read existing outcomes", || {
                    let stores = stores.clone();
                    let ids = reclaimed.clone();
                    async move {
                        let a = stores.sent.get_many(&ids).await?;
                        let f = stores.dead_letters.get_many(&ids).await?;
                        Ok((
                            a.into_iter().map(|r| (r.id, r)).collect(),
                            f.into_iter().map(|f| f.id).collect(),
                        ))
                    }
                })
                .await?
            };
        let stale_after = chrono_dur(cfg.worker.stale_after.get());
        let billing_ttl = chrono_dur(cfg.billing.ttl.get());
        let recheck = now + chrono_dur(cfg.recovery.sweep_interval.get());
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if letters.contains(&m.id) {
                // Dead-lettered by an earlier pass: done.
                continue;
            }
            if let Some(a) = attempts.get(&m.id) {
                self.report.skipped_already_attempted += 1;
                self.d.metrics.already_attempted.inc();
                if a.submitted.is_none() {
                    // In flight on a live daemon, or in doubt: Recovery
                    // decides by its owner's lease; look again after it ran.
                    self.requeue(
                        &m,
                        recheck.max(m.not_before),
                        m.attempts,
                        m.billing_blocked_since,
                        Some("attempt unanswered; left to recovery".into()),
                    );
                }
                // Answered: done (its dead letter, if it failed, exists).
                continue;
            }
            if let Some(since) = m.billing_blocked_since {
                if now - since > billing_ttl {
                    let detail = format!(
                        "account could not pay for {} (billing TTL)",
                        humantime::format_duration(cfg.billing.ttl.get())
                    );
                    self.fail(&m, FailureReason::BillingBlocked, detail, None, now);
                    continue;
                }
            } else if now - m.send_at > stale_after {
                let detail = format!(
                    "send time {} is more than {} ago",
                    m.send_at.to_rfc3339(),
                    humantime::format_duration(cfg.worker.stale_after.get())
                );
                self.fail(&m, FailureReason::Stale, detail, None, now);
                continue;
            }
            if let ListHandle::Serve(list) = &self.list
                && let Some(word) = list.blocked_word(&m.body)
            {
                self.fail(
                    &m,
                    FailureReason::BlockedContent,
                    format!("contains the blocked word {word:?}"),
                    None,
                    now,
                );
                continue;
            }
            out.push(m);
        }
        Ok(out)
    }
}
