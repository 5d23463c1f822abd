//! Stage 2b, attempt: for the permitted part of a chunk, the contact's state
//! is read again now (one query per chunk, right before the provider call:
//! an opt-out that arrived a second ago counts), then the charge and the
//! attempt records are written in one transaction through Billing. From the
//! attempt record on, the message is never sent twice: a record that
//! already exists means someone tried.
//!
//! Contacts no longer sendable → CONTACT_BLOCKED (nothing charged). The
//! right time is checked again too: a campaign message (it carries its
//! contact's zone) whose turn came outside the list's TCPA window in that
//! zone (it waited in the queue past the window's end) is deferred to the
//! window's next start when its schedule defers, otherwise dead-lettered
//! QUIET_HOURS; nothing is charged either way. What the balance cannot
//! cover goes back with the billing backoff (`billing_blocked_since` kept
//! from the first block).
//!
//! Crash point after the transaction (`worker.charged`): the attempts are
//! recorded and charged but nothing reached the provider. Recovery finds
//! them unanswered once this instance's lease has lapsed and records them
//! in doubt (NO_RESPONSE), never resent automatically; the charge stands
//! until they are resolved.

use super::{Abort, BatchRun, StepError};
use crate::clock::chrono_dur;
use crate::domain::*;
use crate::messages::{Charge, ListContext};
use crate::rules::window::LocalWindow;
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashSet};

/// Whether a message may go now as far as its contact's window goes.
#[derive(Debug, PartialEq)]
pub(crate) enum RightTime {
    /// No zone on it (not a campaign message), or inside the window.
    Now,
    /// Outside the window; it opens again at this instant.
    Later(Timestamp),
    /// The zone or the window cannot be read: not sent.
    Unknown(String),
}

pub(crate) fn right_time(
    m: &QueuedTextMessage,
    window: Option<&LocalWindow>,
    now: Timestamp,
) -> RightTime {
    let Some(zone) = m.time_zone.as_deref() else {
        return RightTime::Now;
    };
    let Ok(tz) = zone.parse::<Tz>() else {
        return RightTime::Unknown(format!(
            "unknown time zone {zone:?}: its window cannot be checked"
        ));
    };
    let Some(window) = window else {
        return RightTime::Unknown("the list's TCPA window is unusable".into());
    };
    if window.check(now, tz).allowed {
        RightTime::Now
    } else {
        RightTime::Later(window.next_start(now, tz))
    }
}

impl BatchRun {
    pub(super) async fn attempt(
        &mut self,
        list: &ListContext,
        part: Vec<QueuedTextMessage>,
    ) -> Result<Vec<QueuedTextMessage>, Abort> {
        let now = self.d.clock.now();
        let contacts: Vec<ContactId> = part.iter().map(|m| m.contact).collect();
        let store = self.d.stores.contacts.clone();
        let list_id = list.list.id;
        let states = self
            .durable("re-read contacts", || {
                let store = store.clone();
                let ids = contacts.clone();
                async move { Ok(store.contact_states(list_id, &ids).await?) }
            })
            .await?;
        let window = LocalWindow::from_tcpa(&list.list.tcpa_window).ok();
        let mut sendable = Vec::with_capacity(part.len());
        for m in part {
            match states
                .get(&m.contact)
                .copied()
                .unwrap_or(ContactState::Missing)
            {
                ContactState::Sendable => {}
                other => {
                    self.fail(
                        &m,
                        FailureReason::ContactBlocked,
                        other.describe().to_string(),
                        None,
                        now,
                    );
                    continue;
                }
            }
            match right_time(&m, window.as_ref(), now) {
                RightTime::Now => sendable.push(m),
                RightTime::Later(to) if m.defer_outside_window => {
                    self.defer(
                        &m,
                        to,
                        "outside the contact's window: deferred to its next start".into(),
                    );
                }
                RightTime::Later(_) => {
                    let detail = format!(
                        "its turn came outside the list's window in {}",
                        m.time_zone.as_deref().unwrap_or("its zone")
                    );
                    self.fail(&m, FailureReason::QuietHours, detail, None, now);
                }
                RightTime::Unknown(why) => {
                    self.fail(&m, FailureReason::QuietHours, why, None, now);
                }
            }
        }
        if sendable.is_empty() {
            return Ok(sendable);
        }
        // Attempt times are on the database's clock (the hard horizon is).
        let at = self.d.instance.db_time(now);
        let kind = list.provider.kind();
        let mut by_account: BTreeMap<AccountId, Vec<MessageSent>> = BTreeMap::new();
        for m in &sendable {
            by_account
                .entry(m.account)
                .or_default()
                .push(MessageSent::attempt(
                    m,
                    kind,
                    &self.token,
                    &self.d.instance.id,
                    Money::ZERO,
                    at,
                ));
        }
        let mut recorded: HashSet<MessageId> = HashSet::new();
        let mut unaffordable: HashSet<MessageId> = HashSet::new();
        let mut already: Vec<MessageId> = Vec::new();
        for (account, attempts) in by_account {
            let charge = self.d.charge.clone();
            let begun = self
                .durable("charge and record attempts", || {
                    let charge = charge.clone();
                    let attempts = attempts.clone();
                    async move {
                        charge
                            .send(Charge { account, attempts })
                            .await?
                            .map_err(StepError::from)
                    }
                })
                .await?;
            recorded.extend(begun.recorded);
            if !begun.unaffordable.is_empty() {
                self.d
                    .alerts
                    .emit(crate::messages::AlertEvent::BillingBlocked {
                        account,
                        list: list_id,
                        messages: begun.unaffordable.len() as u64,
                    });
            }
            unaffordable.extend(begun.unaffordable);
            already.extend(begun.already_attempted);
        }
        crate::failpoint::hit("worker.charged");
        // Attempted before: answered (done), or still open elsewhere.
        let mut answered: HashSet<MessageId> = HashSet::new();
        if !already.is_empty() {
            // A retried write whose first try committed finds its own
            // records: those are ours to send. Any other is someone else's.
            let sent = self.d.stores.sent.clone();
            let existing = self
                .durable("read existing attempts", || {
                    let sent = sent.clone();
                    let ids = already.clone();
                    async move { Ok(sent.get_many(&ids).await?) }
                })
                .await?;
            for r in existing {
                if r.attempt_token == self.token && r.submitted.is_none() {
                    recorded.insert(r.id);
                } else if r.submitted.is_some() {
                    answered.insert(r.id);
                }
            }
        }
        let backoff = chrono_dur(self.d.config.billing.backoff.get());
        let recheck = now + chrono_dur(self.d.config.recovery.sweep_interval.get());
        let mut out = Vec::with_capacity(recorded.len());
        for m in sendable {
            if recorded.contains(&m.id) {
                out.push(m);
            } else if unaffordable.contains(&m.id) {
                let since = m.billing_blocked_since.unwrap_or(now);
                tracing::info!(message_id = %m.id, account = %m.account, "billing blocked: retrying after the backoff");
                self.requeue(
                    &m,
                    now + backoff,
                    m.attempts,
                    Some(since),
                    Some("billing blocked: insufficient balance".into()),
                );
            } else if answered.contains(&m.id) {
                // Attempted and answered before: done (never sent again).
                self.report.skipped_already_attempted += 1;
            } else {
                // Attempted before by someone else, still unanswered: never
                // sent again; Recovery judges it by its owner's lease.
                self.report.skipped_already_attempted += 1;
                self.requeue(
                    &m,
                    recheck,
                    m.attempts,
                    m.billing_blocked_since,
                    Some("attempt unanswered; left to recovery".into()),
                );
            }
        }
        Ok(out)
    }
}
