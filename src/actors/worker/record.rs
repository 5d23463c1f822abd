//! Stage 2d, record: the chunk's answers made durable through Billing, in
//! one write (a transaction when any failure is among them: each failure's
//! outcome, its dead letter and its refund together). Every answer applies
//! only to an attempt still unanswered, so a late second writer (Recovery,
//! a retried request) changes nothing. Then contacts the provider reported
//! as opted out are unsubscribed from the list.
//!
//! Crash point after the settlement (`worker.settled`): outcomes and dead
//! letters are durable; the queue entries are still claimed. When the lease
//! lapses they are released, re-claimed, and the screen finds their
//! outcomes: done. After the unsubscribes (`worker.unsubscribed`): the same.

use super::send::Answers;
use super::{Abort, BatchRun, StepError};
use crate::domain::*;
use crate::messages::Settle;
use crate::store::Settlement;
use std::collections::{BTreeMap, HashMap};

impl BatchRun {
    pub(super) async fn record(
        &mut self,
        list: SendingListId,
        msgs: &[QueuedTextMessage],
        answers: Answers,
    ) -> Result<(), Abort> {
        let Answers {
            settlements,
            unsubscribed,
            reasons,
            transient,
        } = answers;
        let mut alert_sent = 0u64;
        let mut alert_failures = Vec::new();
        let reasons: HashMap<MessageId, FailureReason> = reasons.into_iter().collect();
        let accounts: HashMap<MessageId, AccountId> =
            msgs.iter().map(|m| (m.id, m.account)).collect();
        let runs: HashMap<MessageId, Option<ScheduleRunId>> =
            msgs.iter().map(|m| (m.id, m.run)).collect();
        let mut by_account: BTreeMap<AccountId, Vec<Settlement>> = BTreeMap::new();
        for s in settlements {
            let account = accounts
                .get(&s.id())
                .copied()
                .unwrap_or_else(crate::domain::failed::unknown_account);
            by_account.entry(account).or_default().push(s);
        }
        for (account, items) in by_account {
            let settle = self.d.settle.clone();
            let settled = self
                .durable("record outcomes", || {
                    let settle = settle.clone();
                    let items = items.clone();
                    async move {
                        settle
                            .send(Settle { account, items })
                            .await?
                            .map_err(StepError::from)
                    }
                })
                .await?;
            self.report.sent += settled.sent;
            // The current rate this daemon's lease reports (per chunk, not
            // per batch: a batch can take minutes at a low rate).
            self.d.instance.count_sent(self.list.id(), settled.sent);
            alert_sent += settled.sent;
            let applied: std::collections::HashSet<&MessageId> = settled.failed.iter().collect();
            alert_failures.extend(items.iter().filter_map(|s| match s {
                Settlement::Failed { dead_letter, .. } if applied.contains(&dead_letter.id) => {
                    Some(crate::messages::FailureItem {
                        reason: dead_letter.reason,
                        provider_code: dead_letter.provider_code.clone(),
                    })
                }
                _ => None,
            }));
            for id in &settled.failed {
                if let Some(r) = reasons.get(id) {
                    *self.report.failed.entry(*r).or_insert(0) += 1;
                    self.d.metrics.add_failed(*r, 1);
                    if let Some(run) = runs.get(id).copied().flatten() {
                        self.runs.entry(run).or_default().add_failed(r.as_str(), 1);
                    }
                }
            }
            // The taken ones by run. `settled.sent` is short of the `Sent`
            // items only when another writer answered an attempt first (it
            // counted it then); the shortfall comes off the last run counted.
            let now = self.d.clock.now();
            let mut taken: BTreeMap<ScheduleRunId, u64> = BTreeMap::new();
            for s in &items {
                if let Settlement::Sent { id, .. } = s
                    && let Some(run) = runs.get(id).copied().flatten()
                {
                    *taken.entry(run).or_insert(0) += 1;
                }
            }
            let sent_items = items
                .iter()
                .filter(|s| matches!(s, Settlement::Sent { .. }))
                .count() as u64;
            let mut short = sent_items.saturating_sub(settled.sent);
            for (run, n) in taken.into_iter().rev() {
                let cut = short.min(n);
                short -= cut;
                self.runs.entry(run).or_default().add_sent(n - cut, now);
            }
        }
        crate::failpoint::hit("worker.settled");
        if let Some(m) = msgs.first()
            && (alert_sent > 0 || transient > 0 || !alert_failures.is_empty())
        {
            self.d.alerts.emit(crate::messages::AlertEvent::Outcomes {
                account: m.account,
                list,
                sent: alert_sent,
                transient,
                failures: alert_failures,
            });
        }
        if !unsubscribed.is_empty() {
            let now = self.d.clock.now();
            for contact in unsubscribed {
                let store = self.d.stores.contacts.clone();
                self.durable("unsubscribe", || {
                    let store = store.clone();
                    async move {
                        match store.set_subscription(contact, list, false, now).await {
                            // A contact deleted meanwhile needs no opt-out.
                            Err(crate::store::StoreError::NotFound(_)) => Ok(()),
                            other => other.map_err(StepError::from),
                        }
                    }
                })
                .await?;
            }
            crate::failpoint::hit("worker.unsubscribed");
        }
        Ok(())
    }
}
