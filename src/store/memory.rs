//! The in-memory store: same semantics as MongoDB, for the embedded mode and
//! actor tests. One mutex guards all state; every critical section is short
//! and never held across an `.await`, so each operation is atomic, as the
//! MongoDB adapter's transactions are.

use super::*;
use crate::clock::{SharedClock, SystemClock};
use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct State {
    queue: HashMap<MessageId, QueuedTextMessage>,
    /// Ready (unclaimed) ids per list, in FIFO order.
    ready: HashMap<SendingListId, BTreeSet<MessageId>>,
    /// Claimed ids per claim token, so `complete` and `release` touch only
    /// their own batch instead of scanning the queue.
    claims: HashMap<String, BTreeSet<MessageId>>,
    sent: HashMap<MessageId, MessageSent>,
    failed: HashMap<MessageId, FailedMessage>,
    /// In `_id` order: audience pages walk it from a checkpoint.
    contacts: BTreeMap<ContactId, Contact>,
    contact_phones: HashSet<(AccountId, E164)>,
    audiences: HashMap<AudienceId, Audience>,
    accounts: HashMap<AccountId, Account>,
    lists: HashMap<SendingListId, SendingList>,
    links: HashMap<LinkId, MessageShortLink>,
    link_codes: HashMap<String, LinkId>,
    clicks: Vec<LinkClick>,
    creatives: HashMap<CreativeId, MessageCreative>,
    schedules: HashMap<ScheduleId, Schedule>,
    runs: HashMap<ScheduleRunId, ScheduleRun>,
    run_keys: HashSet<(ScheduleId, i64)>,
    /// Cooldown reservations per (list, contact): (send time, until, run).
    cooldowns: HashMap<(SendingListId, ContactId), (Timestamp, Timestamp, ScheduleRunId)>,
    /// Messages with a human click, and clicked messages per (creative, variant).
    clicked_messages: HashSet<MessageId>,
    /// Messages clicked at all (bots included).
    clicked_any_messages: HashSet<MessageId>,
    variant_clicks: HashMap<(CreativeId, String), u64>,
    leases: HashMap<String, DaemonLease>,
    outbox: HashMap<String, OutboxEntry>,
    /// Pending outbox entries by (next_attempt_at, id): the claim walks it
    /// from the earliest due.
    outbox_due: BTreeSet<(Timestamp, String)>,
    alert_windows: HashMap<String, AlertWindow>,
    alert_flags: HashMap<String, bool>,
    /// Counters with the time after which they may be dropped.
    alert_counters: HashMap<String, (i64, Timestamp)>,
    alert_holds: HashMap<String, Timestamp>,
}

pub struct MemoryStore {
    state: Mutex<State>,
    /// The "server clock" leases are stamped and judged with.
    clock: SharedClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(std::sync::Arc::new(SystemClock))
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_clock(clock: SharedClock) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // worth refusing: every mutation below is applied in one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn mark_ready(&mut self, list: SendingListId, id: MessageId) {
        self.ready.entry(list).or_default().insert(id);
    }
    fn unmark_ready(&mut self, list: SendingListId, id: MessageId) {
        if let Some(set) = self.ready.get_mut(&list) {
            set.remove(&id);
        }
    }
    /// Forget `id`'s claim (its token's index entry).
    fn unclaim(&mut self, id: MessageId) -> Option<SendingListId> {
        let m = self.queue.get_mut(&id)?;
        if let Some(t) = m.claimed_by.take()
            && let Some(set) = self.claims.get_mut(&t)
        {
            set.remove(&id);
            if set.is_empty() {
                self.claims.remove(&t);
            }
        }
        m.claimed_at = None;
        m.claim_owner = None;
        Some(m.sending_list)
    }
    /// Ids claimed by `token` on `list`.
    fn held(&self, list: SendingListId, token: &str) -> Vec<MessageId> {
        self.claims
            .get(token)
            .map(|set| {
                set.iter()
                    .copied()
                    .filter(|id| self.queue.get(id).is_some_and(|m| m.sending_list == list))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn remove_queued(&mut self, id: MessageId) -> bool {
        self.unclaim(id);
        match self.queue.remove(&id) {
            Some(m) => {
                self.unmark_ready(m.sending_list, id);
                true
            }
            None => false,
        }
    }
    fn credit(&mut self, account: AccountId, amount: Money) {
        if let Some(a) = self.accounts.get_mut(&account) {
            a.balance = Money(a.balance.0.saturating_add(amount.0));
        }
    }
}

#[async_trait]
impl QueueStore for MemoryStore {
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for mut m in msgs {
            if st.queue.contains_key(&m.id) {
                continue;
            }
            // Enqueued messages are ready; a claim is only ever made by `claim`.
            m.claimed_by = None;
            m.claimed_at = None;
            m.claim_owner = None;
            st.mark_ready(m.sending_list, m.id);
            st.queue.insert(m.id, m);
            n += 1;
        }
        Ok(n)
    }

    async fn due_lists(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<SendingListId>> {
        let st = self.lock();
        let mut lists: Vec<SendingListId> = st
            .ready
            .iter()
            .filter(|(_, ids)| {
                ids.iter()
                    .any(|id| st.queue.get(id).is_some_and(|m| m.not_before <= now))
            })
            .map(|(l, _)| *l)
            .collect();
        lists.sort();
        lists.truncate(limit);
        Ok(lists)
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        let st = self.lock();
        Ok(st
            .ready
            .values()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| st.queue.get(id).map(|m| m.not_before))
            .filter(|t| *t > now)
            .min())
    }

    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        claimant: &Claimant,
        now: Timestamp,
    ) -> StoreResult<Claimed> {
        let mut st = self.lock();
        let ids: Vec<MessageId> = match st.ready.get(&list) {
            Some(set) => set
                .iter()
                .filter(|id| st.queue.get(id).is_some_and(|m| m.not_before <= now))
                .take(max)
                .copied()
                .collect(),
            None => return Ok(Claimed::default()),
        };
        let exhausted = ids.len() < max;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            st.unmark_ready(list, id);
            if let Some(m) = st.queue.get_mut(&id) {
                m.claimed_by = Some(claimant.token.clone());
                m.claimed_at = Some(now);
                m.claim_owner = Some(claimant.owner.clone());
                m.claim_count += 1;
                out.push(m.clone());
                st.claims
                    .entry(claimant.token.clone())
                    .or_default()
                    .insert(id);
            }
        }
        Ok(Claimed {
            messages: out,
            quarantined: 0,
            exhausted,
        })
    }

    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for r in items {
            if st.queue.get(&r.id).and_then(|m| m.claimed_by.as_deref()) != Some(token) {
                continue;
            }
            let Some(list) = st.unclaim(r.id) else {
                continue;
            };
            if let Some(m) = st.queue.get_mut(&r.id) {
                m.not_before = r.not_before;
                if let Some(at) = r.send_at {
                    m.send_at = at;
                }
                m.attempts = r.attempts;
                m.billing_blocked_since = r.billing_blocked_since;
                m.last_error = r.last_error;
            }
            st.mark_ready(list, r.id);
            n += 1;
        }
        Ok(n)
    }

    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let mut st = self.lock();
        let ids = st.held(list, token);
        for id in &ids {
            st.unclaim(*id);
            st.mark_ready(list, *id);
        }
        Ok(ids.len() as u64)
    }

    async fn claim_owners(&self) -> StoreResult<Vec<String>> {
        let st = self.lock();
        let owners: BTreeSet<String> = st
            .queue
            .values()
            .filter(|m| m.claimed_by.is_some())
            .map(|m| m.claim_owner.clone().unwrap_or_default())
            .collect();
        Ok(owners.into_iter().collect())
    }

    async fn release_owners(&self, owners: &[String]) -> StoreResult<u64> {
        let mut st = self.lock();
        let owners: HashSet<&str> = owners.iter().map(String::as_str).collect();
        let ids: Vec<MessageId> = st
            .queue
            .values()
            .filter(|m| {
                m.claimed_by.is_some() && owners.contains(m.claim_owner.as_deref().unwrap_or(""))
            })
            .map(|m| m.id)
            .collect();
        for id in &ids {
            if let Some(list) = st.unclaim(*id) {
                st.mark_ready(list, *id);
            }
        }
        Ok(ids.len() as u64)
    }

    async fn complete(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let mut st = self.lock();
        let ids = st.held(list, token);
        for id in &ids {
            st.remove_queued(*id);
        }
        Ok(ids.len() as u64)
    }

    async fn remove(&self, ids: &[MessageId]) -> StoreResult<u64> {
        let mut st = self.lock();
        Ok(ids.iter().filter(|id| st.remove_queued(**id)).count() as u64)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<QueuedTextMessage>> {
        Ok(self.lock().queue.get(&id).cloned())
    }

    async fn depth(&self) -> StoreResult<u64> {
        Ok(self.lock().queue.len() as u64)
    }

    async fn depth_by_list(&self) -> StoreResult<BTreeMap<SendingListId, u64>> {
        let st = self.lock();
        let mut out = BTreeMap::new();
        for m in st.queue.values() {
            *out.entry(m.sending_list).or_insert(0) += 1;
        }
        Ok(out)
    }

    async fn list_depth(&self, list: SendingListId) -> StoreResult<u64> {
        let st = self.lock();
        Ok(st.queue.values().filter(|m| m.sending_list == list).count() as u64)
    }

    async fn list_claimed(&self, list: SendingListId) -> StoreResult<u64> {
        let st = self.lock();
        Ok(st
            .queue
            .values()
            .filter(|m| m.sending_list == list && m.claimed_by.is_some())
            .count() as u64)
    }

    async fn scan(&self) -> StoreResult<Vec<QueueEntry>> {
        let st = self.lock();
        Ok(st
            .queue
            .values()
            .map(|m| QueueEntry {
                id: m.id,
                list: m.sending_list,
                claim_owner: m
                    .claimed_by
                    .as_ref()
                    .map(|_| m.claim_owner.clone().unwrap_or_default()),
            })
            .collect())
    }
}

#[async_trait]
impl SentStore for MemoryStore {
    async fn begin_attempts(
        &self,
        account: AccountId,
        records: Vec<MessageSent>,
    ) -> StoreResult<AttemptsBegun> {
        let mut st = self.lock();
        let mut balance = st
            .accounts
            .get(&account)
            .ok_or_else(|| StoreError::NotFound(format!("account {account}")))?
            .balance;
        let mut res = AttemptsBegun::default();
        let mut affordable = true;
        for r in records {
            use std::collections::hash_map::Entry;
            let fits = affordable && r.cost.0 <= balance.0;
            match st.sent.entry(r.id) {
                Entry::Occupied(_) => res.already_attempted.push(r.id),
                Entry::Vacant(e) if fits => {
                    balance = Money(balance.0 - r.cost.0);
                    res.recorded.push(r.id);
                    e.insert(r);
                }
                Entry::Vacant(_) => {
                    // The longest affordable prefix: once one does not fit,
                    // the rest wait too (FIFO holds for what is paid).
                    affordable = false;
                    res.unaffordable.push(r.id);
                }
            }
        }
        if let Some(a) = st.accounts.get_mut(&account) {
            a.balance = balance;
        }
        res.balance = Some(balance);
        Ok(res)
    }

    async fn settle(&self, items: Vec<Settlement>) -> StoreResult<Settled> {
        let mut st = self.lock();
        let mut res = Settled::default();
        for item in items {
            match item {
                Settlement::Sent {
                    id,
                    at,
                    provider_message_id,
                    resolved_by,
                } => {
                    if let Some(r) = st.sent.get_mut(&id)
                        && r.submitted.is_none()
                    {
                        r.submitted = Some(true);
                        r.submitted_at = Some(at);
                        r.provider_message_id = provider_message_id;
                        r.resolved_by = resolved_by.map(String::from);
                        res.sent += 1;
                    }
                }
                Settlement::Failed {
                    at,
                    code,
                    text,
                    refund,
                    dead_letter,
                } => {
                    let id = dead_letter.id;
                    let Some(r) = st.sent.get_mut(&id) else {
                        continue;
                    };
                    if r.submitted.is_some() {
                        continue;
                    }
                    if code == crate::domain::sent::NO_RESPONSE && r.delivery_state.is_some() {
                        r.submitted = Some(true);
                        r.submitted_at = Some(at);
                        r.resolved_by = Some(RESOLVED_BY_REPORT.into());
                        res.sent += 1;
                        continue;
                    }
                    r.submitted = Some(false);
                    r.submitted_at = Some(at);
                    r.error_code = Some(code);
                    r.error_text = Some(text);
                    let mut refunded = Money::ZERO;
                    if refund && !r.refunded {
                        r.refunded = true;
                        refunded = r.cost;
                    }
                    let account = r.account;
                    st.credit(account, refunded);
                    res.refunded.0 += refunded.0;
                    st.failed.entry(id).or_insert(*dead_letter);
                    res.failed.push(id);
                }
                Settlement::Unsent { id, token } => {
                    let removable = st
                        .sent
                        .get(&id)
                        .is_some_and(|r| r.submitted.is_none() && r.attempt_token == token);
                    if removable && let Some(r) = st.sent.remove(&id) {
                        if !r.refunded {
                            st.credit(r.account, r.cost);
                            res.refunded.0 += r.cost.0;
                        }
                        res.unsent.push(id);
                    }
                }
            }
        }
        Ok(res)
    }

    async fn unanswered(&self, q: &UnansweredQuery) -> StoreResult<Vec<MessageSent>> {
        let st = self.lock();
        let live: HashSet<&str> = q.live_owners.iter().map(String::as_str).collect();
        let active: HashSet<&str> = q.active_tokens.iter().map(String::as_str).collect();
        let mut v: Vec<MessageSent> = st
            .sent
            .values()
            .filter(|r| {
                let mine = r.owner == q.me && !active.contains(r.attempt_token.as_str());
                r.submitted.is_none()
                    && (mine
                        || (!q.only_mine
                            && (!live.contains(r.owner.as_str())
                                || r.attempted_at < q.attempted_before)))
            })
            .cloned()
            .collect();
        v.sort_by_key(|r| (r.attempted_at, r.id));
        v.truncate(q.limit);
        Ok(v)
    }

    async fn resolve_reported(&self, limit: usize, at: Timestamp) -> StoreResult<Vec<MessageId>> {
        let mut st = self.lock();
        let st = &mut *st;
        let mut out = Vec::new();
        let now = at;
        for r in st.sent.values_mut() {
            if out.len() >= limit {
                break;
            }
            if r.in_doubt() && r.delivery_state.is_some() {
                r.submitted = Some(true);
                r.resolved_by = Some(RESOLVED_BY_REPORT.into());
                if let Some(f) = st.failed.get_mut(&r.id)
                    && f.resolved.is_none()
                {
                    f.resolved = Some(Resolution {
                        at: now,
                        by: RESOLVED_BY_REPORT.into(),
                    });
                }
                out.push(r.id);
            }
        }
        Ok(out)
    }

    async fn resolve_taken(
        &self,
        items: Vec<LookupTaken>,
        at: Timestamp,
    ) -> StoreResult<Vec<MessageId>> {
        let mut st = self.lock();
        let st = &mut *st;
        let mut out = Vec::new();
        for it in items {
            let Some(r) = st.sent.get_mut(&it.id).filter(|r| r.in_doubt()) else {
                continue;
            };
            r.submitted = Some(true);
            r.resolved_by = Some(RESOLVED_BY_LOOKUP.into());
            if it.provider_message_id.is_some() {
                r.provider_message_id = it.provider_message_id;
            }
            if let Some(d) = it.delivery
                && r.delivery_state.is_none()
            {
                r.delivery_state = Some(d);
                r.delivered = d.delivered();
                r.delivery_updated_at = Some(at);
                r.delivery_error_code = it.error_code;
            }
            if let Some(f) = st.failed.get_mut(&it.id)
                && f.resolved.is_none()
            {
                f.resolved = Some(Resolution {
                    at,
                    by: RESOLVED_BY_LOOKUP.into(),
                });
            }
            out.push(it.id);
        }
        Ok(out)
    }

    async fn resolve_not_taken(&self, item: LookupNotTaken, at: Timestamp) -> StoreResult<bool> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(r) = st.sent.get_mut(&item.id).filter(|r| r.in_doubt()) else {
            return Ok(false);
        };
        if let Some(m) = &item.resend
            && st.queue.contains_key(&m.id)
        {
            return Err(StoreError::Duplicate(format!("queued message {}", m.id)));
        }
        r.error_code = Some(crate::domain::sent::NOT_TAKEN.into());
        r.error_text = Some("the provider has no record of it".into());
        r.resolved_by = Some(RESOLVED_BY_LOOKUP.into());
        let refund = if r.refunded { 0 } else { r.cost.0 };
        r.refunded = true;
        let account = r.account;
        if let Some(a) = st.accounts.get_mut(&account) {
            a.balance.0 += refund;
        }
        // An operator's requeue of the same dead letter wins: no second copy.
        let mut resend = item.resend;
        if let Some(f) = st.failed.get_mut(&item.id).filter(|f| f.requeued.is_none()) {
            match &resend {
                Some(m) => {
                    f.requeued = Some(crate::domain::failed::Requeued { message: m.id, at });
                }
                None => {
                    f.reason = FailureReason::Stale;
                    f.detail =
                        "in doubt; the provider has no record of it, and it is too old to send"
                            .into();
                }
            }
        } else {
            resend = None;
        }
        if let Some(m) = resend {
            st.mark_ready(m.sending_list, m.id);
            st.queue.insert(m.id, m);
        }
        Ok(true)
    }

    async fn attempt_owners(&self) -> StoreResult<Vec<String>> {
        let st = self.lock();
        let owners: BTreeSet<String> = st
            .sent
            .values()
            .filter(|r| r.submitted.is_none())
            .map(|r| r.owner.clone())
            .collect();
        Ok(owners.into_iter().collect())
    }

    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied> {
        let mut st = self.lock();
        let mut res = DeliveryApplied::default();
        for u in updates {
            let at = u.at;
            match st.sent.get_mut(&u.id) {
                None => res.unknown.push(u.id),
                Some(r) => {
                    if delivery_applies(r.delivery_state, u.state) {
                        r.delivery_state = Some(u.state);
                        r.delivered = u.state.delivered();
                        r.delivery_updated_at = Some(u.at);
                        r.delivery_error_code = u.error_code;
                        res.applied += 1;
                        let change = crate::store::DeliveryChange {
                            id: r.id,
                            run: r.run,
                            state: u.state,
                        };
                        match res.changed.iter_mut().find(|c| c.id == r.id) {
                            Some(c) => *c = change,
                            None => res.changed.push(change),
                        }
                    } else {
                        res.ignored += 1;
                    }
                    // Any report proves the provider took the message.
                    if r.in_doubt() {
                        r.submitted = Some(true);
                        r.resolved_by = Some(RESOLVED_BY_REPORT.into());
                        if let Some(f) = st.failed.get_mut(&u.id)
                            && f.resolved.is_none()
                        {
                            f.resolved = Some(Resolution {
                                at,
                                by: RESOLVED_BY_REPORT.into(),
                            });
                        }
                        res.resolved.push(u.id);
                    }
                }
            }
        }
        Ok(res)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<MessageSent>> {
        Ok(self.lock().sent.get(&id).cloned())
    }

    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<MessageSent>> {
        let st = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| st.sent.get(id).cloned())
            .collect())
    }

    async fn count(&self) -> StoreResult<u64> {
        Ok(self.lock().sent.len() as u64)
    }

    async fn delivery_counts(&self, list: SendingListId) -> StoreResult<DeliveryCounts> {
        let st = self.lock();
        let mut c = DeliveryCounts::default();
        for r in st.sent.values().filter(|r| r.sending_list == list) {
            c.add(r.submitted, r.delivered);
        }
        Ok(c)
    }

    async fn scan(&self) -> StoreResult<Vec<SentEntry>> {
        let st = self.lock();
        Ok(st.sent.values().map(SentEntry::of).collect())
    }
}

/// The one rule both stores implement: a report applies when the record has
/// no final state yet and the report changes something.
pub fn delivery_applies(current: Option<DeliveryState>, incoming: DeliveryState) -> bool {
    match current {
        None => true,
        Some(c) if c.is_final() => false,
        Some(c) => c != incoming,
    }
}

#[async_trait]
impl DeadLetterStore for MemoryStore {
    async fn record(&self, failures: Vec<FailedMessage>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for f in failures {
            if let std::collections::hash_map::Entry::Vacant(e) = st.failed.entry(f.id) {
                e.insert(f);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<FailedMessage>> {
        Ok(self.lock().failed.get(&id).cloned())
    }

    async fn list_failed(
        &self,
        filter: &FailedFilter,
        limit: usize,
    ) -> StoreResult<Vec<FailedMessage>> {
        let st = self.lock();
        let mut v: Vec<FailedMessage> = st
            .failed
            .values()
            .filter(|f| filter.matches(f))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.failed_at.cmp(&a.failed_at).then(b.id.cmp(&a.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn count_failed(&self, filter: &FailedFilter) -> StoreResult<u64> {
        let st = self.lock();
        Ok(st.failed.values().filter(|f| filter.matches(f)).count() as u64)
    }

    async fn requeue(
        &self,
        id: MessageId,
        message: QueuedTextMessage,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        if st.queue.contains_key(&message.id) {
            return Err(StoreError::Duplicate(format!(
                "queued message {}",
                message.id
            )));
        }
        match st.failed.get_mut(&id) {
            Some(f) if f.requeued.is_none() => {
                f.requeued = Some(crate::domain::failed::Requeued {
                    message: message.id,
                    at,
                });
            }
            _ => return Ok(false),
        }
        st.mark_ready(message.sending_list, message.id);
        st.queue.insert(message.id, message);
        Ok(true)
    }

    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<FailedMessage>> {
        let st = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| st.failed.get(id).cloned())
            .collect())
    }

    async fn count_by_reason(&self) -> StoreResult<BTreeMap<FailureReason, u64>> {
        let st = self.lock();
        let mut m = BTreeMap::new();
        for f in st.failed.values() {
            *m.entry(f.reason).or_insert(0) += 1;
        }
        Ok(m)
    }

    async fn scan(&self) -> StoreResult<Vec<(MessageId, FailureReason, bool)>> {
        let st = self.lock();
        Ok(st
            .failed
            .values()
            .map(|f| (f.id, f.reason, f.resolved.is_some()))
            .collect())
    }
}

#[async_trait]
impl ContactStore for MemoryStore {
    async fn insert_contacts(&self, contacts: Vec<Contact>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for c in contacts {
            // Unique by id and by (account, phone), as the MongoDB index is.
            let key = (c.account, c.phone.clone());
            if !st.contacts.contains_key(&c.id) && !st.contact_phones.contains(&key) {
                st.contact_phones.insert(key);
                st.contacts.insert(c.id, c);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get_contact(&self, id: ContactId) -> StoreResult<Option<Contact>> {
        Ok(self.lock().contacts.get(&id).cloned())
    }

    async fn existing_phones(
        &self,
        account: AccountId,
        phones: &[E164],
    ) -> StoreResult<HashSet<E164>> {
        let wanted: HashSet<&E164> = phones.iter().collect();
        Ok(self
            .lock()
            .contacts
            .values()
            .filter(|c| c.account == account && wanted.contains(&c.phone))
            .map(|c| c.phone.clone())
            .collect())
    }

    async fn find_by_phone(
        &self,
        account: AccountId,
        phone: &E164,
    ) -> StoreResult<Option<Contact>> {
        Ok(self
            .lock()
            .contacts
            .values()
            .find(|c| c.account == account && &c.phone == phone)
            .cloned())
    }

    async fn contact_states(
        &self,
        list: SendingListId,
        ids: &[ContactId],
    ) -> StoreResult<HashMap<ContactId, ContactState>> {
        let st = self.lock();
        Ok(ids
            .iter()
            .map(|id| {
                let s = st
                    .contacts
                    .get(id)
                    .map_or(ContactState::Missing, |c| c.state_on(list));
                (*id, s)
            })
            .collect())
    }

    async fn set_subscription(
        &self,
        contact: ContactId,
        list: SendingListId,
        subscribed: bool,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut st = self.lock();
        let c = st
            .contacts
            .get_mut(&contact)
            .ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
        match c.subscriptions.iter_mut().find(|s| s.list == list) {
            Some(s) => {
                s.subscribed = subscribed;
                s.changed_at = at;
            }
            None => c.subscriptions.push(Subscription {
                list,
                subscribed,
                changed_at: at,
            }),
        }
        Ok(())
    }

    async fn set_blocked(&self, contact: ContactId, blocked: bool) -> StoreResult<()> {
        let mut st = self.lock();
        let c = st
            .contacts
            .get_mut(&contact)
            .ok_or_else(|| StoreError::NotFound(format!("contact {contact}")))?;
        c.blocked = blocked;
        Ok(())
    }

    async fn insert_audience(&self, audience: Audience) -> StoreResult<()> {
        let mut st = self.lock();
        if st.audiences.contains_key(&audience.id) {
            return Err(StoreError::Duplicate(format!("audience {}", audience.id)));
        }
        st.audiences.insert(audience.id, audience);
        Ok(())
    }

    async fn get_audience(&self, id: AudienceId) -> StoreResult<Option<Audience>> {
        Ok(self.lock().audiences.get(&id).cloned())
    }

    async fn audience_page(
        &self,
        account: AccountId,
        filters: &[AudienceFilter],
        after: Option<ContactId>,
        limit: usize,
    ) -> StoreResult<Vec<Contact>> {
        if filters.is_empty() || limit == 0 {
            return Ok(vec![]);
        }
        let st = self.lock();
        let from = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        Ok(st
            .contacts
            .range((from, Bound::Unbounded))
            .map(|(_, c)| c)
            .filter(|c| c.account == account && filters.iter().any(|f| f.matches(c)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn cooldowns(
        &self,
        list: SendingListId,
        ids: &[ContactId],
        now: Timestamp,
        except: Option<ScheduleRunId>,
    ) -> StoreResult<HashMap<ContactId, Timestamp>> {
        let st = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| {
                st.cooldowns
                    .get(&(list, *id))
                    .filter(|(_, until, run)| *until > now && Some(*run) != except)
                    .map(|(at, _, _)| (*id, *at))
            })
            .collect())
    }

    async fn reserve_cooldowns(
        &self,
        list: SendingListId,
        run: ScheduleRunId,
        items: &[CooldownClaim],
        now: Timestamp,
    ) -> StoreResult<Vec<ContactId>> {
        let mut st = self.lock();
        let mut refused = vec![];
        for c in items {
            let key = (list, c.contact);
            match st.cooldowns.get(&key) {
                Some((_, until, holder)) if *until > now && *holder != run => {
                    refused.push(c.contact);
                }
                _ => {
                    st.cooldowns.insert(key, (c.at, c.until, run));
                }
            }
        }
        Ok(refused)
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn insert_account(&self, account: Account) -> StoreResult<()> {
        let mut st = self.lock();
        if st.accounts.contains_key(&account.id) {
            return Err(StoreError::Duplicate(format!("account {}", account.id)));
        }
        st.accounts.insert(account.id, account);
        Ok(())
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        Ok(self.lock().accounts.get(&id).cloned())
    }

    async fn top_up(&self, id: AccountId, amount: Money) -> StoreResult<Money> {
        let mut st = self.lock();
        let a = st
            .accounts
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        a.balance = Money(a.balance.0.saturating_add(amount.0));
        a.funded = Money(a.funded.0.saturating_add(amount.0));
        Ok(a.balance)
    }

    async fn accounts(&self) -> StoreResult<Vec<Account>> {
        Ok(self.lock().accounts.values().cloned().collect())
    }

    async fn set_delivery_webhook(
        &self,
        id: AccountId,
        webhook: Option<CustomerWebhook>,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st.accounts.get_mut(&id) {
            Some(a) => {
                a.delivery_webhook = webhook;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn set_discord_webhook(
        &self,
        id: AccountId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st.accounts.get_mut(&id) {
            Some(a) => {
                a.discord_webhook_url = url;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn add_outbox(&self, entries: Vec<OutboxEntry>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut added = 0;
        for e in entries {
            if st.outbox.contains_key(&e.id) {
                continue;
            }
            if e.status == OutboxStatus::Pending {
                st.outbox_due.insert((e.next_attempt_at, e.id.clone()));
            }
            st.outbox.insert(e.id.clone(), e);
            added += 1;
        }
        Ok(added)
    }

    async fn claim_outbox(
        &self,
        max: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<OutboxEntry>> {
        let mut st = self.lock();
        let mut picked = Vec::new();
        for (due, id) in st.outbox_due.iter() {
            if picked.len() >= max || *due > now {
                break;
            }
            let Some(e) = st.outbox.get(id) else { continue };
            if e.lease_until.is_some_and(|l| l > now) {
                continue;
            }
            let blocked = e.earlier_key().is_some_and(|k| {
                st.outbox
                    .get(&k)
                    .is_some_and(|o| o.status == OutboxStatus::Pending)
            });
            if !blocked {
                picked.push(id.clone());
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for id in picked {
            if let Some(e) = st.outbox.get_mut(&id) {
                e.claim = Some(token.to_string());
                e.lease_until = Some(lease_until);
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    async fn finish_outbox(&self, token: &str, results: Vec<OutboxResult>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut applied = 0;
        for r in results {
            let Some(e) = st.outbox.get_mut(&r.id) else {
                continue;
            };
            if e.claim.as_deref() != Some(token) || e.status != OutboxStatus::Pending {
                continue;
            }
            let old_due = e.next_attempt_at;
            e.status = r.status;
            e.attempts = r.attempts;
            e.last_error = r.last_error;
            e.claim = None;
            e.lease_until = None;
            if r.status == OutboxStatus::Pending {
                e.next_attempt_at = r.next_attempt_at;
            } else {
                e.finished_at = Some(r.at);
            }
            let (status, due) = (e.status, e.next_attempt_at);
            st.outbox_due.remove(&(old_due, r.id.clone()));
            if status == OutboxStatus::Pending {
                st.outbox_due.insert((due, r.id));
            }
            applied += 1;
        }
        Ok(applied)
    }

    async fn outbox_entry(&self, id: &str) -> StoreResult<Option<OutboxEntry>> {
        Ok(self.lock().outbox.get(id).cloned())
    }

    async fn outbox_counts(
        &self,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<(OutboxStatus, u64)>> {
        let st = self.lock();
        Ok(OutboxStatus::ALL
            .iter()
            .map(|s| {
                let n = st
                    .outbox
                    .values()
                    .filter(|e| e.status == *s && account.is_none_or(|a| e.account == a))
                    .count() as u64;
                (*s, n)
            })
            .collect())
    }
}

#[async_trait]
impl ListStore for MemoryStore {
    async fn insert_list(&self, list: SendingList) -> StoreResult<()> {
        let mut st = self.lock();
        if st.lists.contains_key(&list.id) {
            return Err(StoreError::Duplicate(format!("list {}", list.id)));
        }
        st.lists.insert(list.id, list);
        Ok(())
    }

    async fn set_list_discord_webhook(
        &self,
        id: SendingListId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st.lists.get_mut(&id) {
            Some(l) => {
                l.discord_webhook_url = url;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get_list(&self, id: SendingListId) -> StoreResult<Option<SendingList>> {
        Ok(self.lock().lists.get(&id).cloned())
    }

    async fn lists(&self, limit: usize) -> StoreResult<Vec<SendingList>> {
        let mut v: Vec<SendingList> = self.lock().lists.values().cloned().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn lists_sending_from(&self, number: &str) -> StoreResult<Vec<SendingList>> {
        Ok(self
            .lock()
            .lists
            .values()
            .filter(|l| l.from_numbers.iter().any(|n| n == number))
            .cloned()
            .collect())
    }

    async fn set_list_status(&self, id: SendingListId, status: ListStatus) -> StoreResult<()> {
        let mut st = self.lock();
        let l = st
            .lists
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("list {id}")))?;
        l.status = status;
        Ok(())
    }

    async fn set_rate_limit(&self, id: SendingListId, per_minute: u32) -> StoreResult<()> {
        let mut st = self.lock();
        let l = st
            .lists
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("list {id}")))?;
        l.rate_limit_per_minute = per_minute;
        Ok(())
    }

    async fn delete_list(&self, id: SendingListId) -> StoreResult<()> {
        match self.lock().lists.remove(&id) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("list {id}"))),
        }
    }
}

#[async_trait]
impl LinkStore for MemoryStore {
    async fn insert_links(&self, links: Vec<MessageShortLink>) -> StoreResult<()> {
        let mut st = self.lock();
        // Ordered-insert semantics, like MongoDB: links before the first
        // taken code are inserted, the rest are not.
        for l in links {
            if st.link_codes.contains_key(&l.code) || st.links.contains_key(&l.id) {
                return Err(StoreError::Duplicate(format!("link code {}", l.code)));
            }
            st.link_codes.insert(l.code.clone(), l.id);
            st.links.insert(l.id, l);
        }
        Ok(())
    }

    async fn find_link(&self, code: &str) -> StoreResult<Option<MessageShortLink>> {
        let st = self.lock();
        Ok(st
            .link_codes
            .get(code)
            .and_then(|id| st.links.get(id))
            .cloned())
    }

    async fn record_click(&self, click: LinkClick) -> StoreResult<()> {
        let mut st = self.lock();
        // The first click of any kind counts for the run's `clicked_any`.
        let first_any = click
            .message
            .is_some_and(|m| st.clicked_any_messages.insert(m));
        if first_any
            && let Some(run) = st.links.get(&click.link).and_then(|l| l.run)
            && let Some(r) = st.runs.get_mut(&run)
        {
            r.stats.clicked_any += 1;
        }
        // The first human click of a message counts for its variant and run.
        let first = !click.is_bot && click.message.is_some_and(|m| st.clicked_messages.insert(m));
        if first && let Some(link) = st.links.get(&click.link).cloned() {
            if let (Some(creative), Some(variant)) = (link.creative, link.variant) {
                *st.variant_clicks.entry((creative, variant)).or_default() += 1;
            }
            if let Some(r) = link.run.and_then(|run| st.runs.get_mut(&run)) {
                r.stats.clicked += 1;
            }
        }
        st.clicks.push(click);
        Ok(())
    }

    async fn human_clicks(&self, link: LinkId) -> StoreResult<u64> {
        let st = self.lock();
        Ok(st
            .clicks
            .iter()
            .filter(|c| c.link == link && !c.is_bot)
            .count() as u64)
    }
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn insert_creative(&self, creative: MessageCreative) -> StoreResult<()> {
        let mut st = self.lock();
        if st.creatives.contains_key(&creative.id) {
            return Err(StoreError::Duplicate(format!("creative {}", creative.id)));
        }
        st.creatives.insert(creative.id, creative);
        Ok(())
    }

    async fn get_creative(&self, id: CreativeId) -> StoreResult<Option<MessageCreative>> {
        Ok(self.lock().creatives.get(&id).cloned())
    }

    async fn insert_schedule(&self, schedule: Schedule) -> StoreResult<()> {
        let mut st = self.lock();
        if st.schedules.contains_key(&schedule.id) {
            return Err(StoreError::Duplicate(format!("schedule {}", schedule.id)));
        }
        st.schedules.insert(schedule.id, schedule);
        Ok(())
    }

    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>> {
        Ok(self.lock().schedules.get(&id).cloned())
    }

    async fn schedules(&self, limit: usize) -> StoreResult<Vec<Schedule>> {
        let mut v: Vec<Schedule> = self.lock().schedules.values().cloned().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        v.truncate(limit);
        Ok(v)
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Schedule>> {
        let st = self.lock();
        let mut v: Vec<Schedule> = st
            .schedules
            .values()
            .filter(|s| {
                s.status == ScheduleStatus::Active && s.next_run_at.is_some_and(|t| t <= now)
            })
            .cloned()
            .collect();
        v.sort_by_key(|s| (s.next_run_at, s.id));
        v.truncate(limit);
        Ok(v)
    }

    async fn start_run(&self, run: ScheduleRun) -> StoreResult<bool> {
        let mut st = self.lock();
        let key = (run.schedule, run.occurrence.timestamp_millis());
        if !st.run_keys.insert(key) {
            return Ok(false);
        }
        st.runs.insert(run.id, run);
        Ok(true)
    }

    async fn get_run(&self, id: ScheduleRunId) -> StoreResult<Option<ScheduleRun>> {
        Ok(self.lock().runs.get(&id).cloned())
    }

    async fn advance_schedule(
        &self,
        id: ScheduleId,
        occurrence: Timestamp,
        next: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st.schedules.get_mut(&id) {
            Some(s) if s.next_run_at == Some(occurrence) => {
                s.next_run_at = next;
                if next.is_none() && s.status == ScheduleStatus::Active {
                    s.status = ScheduleStatus::Done;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_schedule_status(
        &self,
        id: ScheduleId,
        status: ScheduleStatus,
        next_run_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let mut st = self.lock();
        let s = st
            .schedules
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("schedule {id}")))?;
        s.status = status;
        if next_run_at.is_some() {
            s.next_run_at = next_run_at;
        }
        Ok(())
    }

    async fn evaluating_runs(&self, limit: usize) -> StoreResult<Vec<ScheduleRun>> {
        let st = self.lock();
        let mut v: Vec<ScheduleRun> = st
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Evaluating)
            .cloned()
            .collect();
        v.sort_by_key(|r| r.id);
        v.truncate(limit);
        Ok(v)
    }

    async fn take_over_run(
        &self,
        id: ScheduleRunId,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<ScheduleRun>> {
        let mut st = self.lock();
        match st.runs.get_mut(&id) {
            Some(r) if r.status == RunStatus::Evaluating && r.owner == from => {
                r.owner = to.to_string();
                Ok(Some(r.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn commit_page(&self, page: RunPage) -> StoreResult<()> {
        let mut st = self.lock();
        let Some(run) = st.runs.get(&page.run) else {
            return Err(StoreError::NotFound(format!("run {}", page.run)));
        };
        if run.status != RunStatus::Evaluating || run.owner != page.owner || run.cursor != page.from
        {
            return Err(StoreError::Superseded(format!(
                "run {} is no longer this daemon's at this checkpoint",
                page.run
            )));
        }
        // All or nothing, as the MongoDB transaction: check first.
        for m in &page.messages {
            if st.queue.contains_key(&m.id) {
                return Err(StoreError::Duplicate(format!("queued message {}", m.id)));
            }
        }
        for l in &page.links {
            if st.link_codes.contains_key(&l.code) || st.links.contains_key(&l.id) {
                return Err(StoreError::Duplicate(format!("link code {}", l.code)));
            }
        }
        for mut m in page.messages {
            m.claimed_by = None;
            m.claimed_at = None;
            m.claim_owner = None;
            st.mark_ready(m.sending_list, m.id);
            st.queue.insert(m.id, m);
        }
        for l in page.links {
            st.link_codes.insert(l.code.clone(), l.id);
            st.links.insert(l.id, l);
        }
        if let Some(run) = st.runs.get_mut(&page.run) {
            run.cursor = Some(page.to);
            run.seq = page.seq;
            page.counts.apply_to(run);
            if let Some(at) = page.finished_at {
                run.status = RunStatus::Queued;
                run.reason = None;
                run.finished_at = Some(at);
            }
        }
        Ok(())
    }

    async fn finish_run(
        &self,
        id: ScheduleRunId,
        owner: &str,
        status: RunStatus,
        reason: Option<String>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut st = self.lock();
        match st.runs.get_mut(&id) {
            Some(r) if r.status == RunStatus::Evaluating && r.owner == owner => {
                r.status = status;
                r.reason = reason;
                r.finished_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn runs_of(&self, schedule: ScheduleId, limit: usize) -> StoreResult<Vec<ScheduleRun>> {
        let st = self.lock();
        let mut v: Vec<ScheduleRun> = st
            .runs
            .values()
            .filter(|r| r.schedule == schedule)
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.occurrence));
        v.truncate(limit);
        Ok(v)
    }

    async fn variant_stats(&self, creative: CreativeId) -> StoreResult<Vec<VariantStats>> {
        let st = self.lock();
        let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in st.runs.values().filter(|r| r.creative == creative) {
            for (k, v) in &r.variants {
                by.entry(k.clone()).or_default().0 += v.messages;
            }
        }
        for ((c, k), n) in &st.variant_clicks {
            if *c == creative {
                by.entry(k.clone()).or_default().1 += n;
            }
        }
        Ok(by
            .into_iter()
            .map(|(variant, (sends, clicked))| VariantStats {
                creative,
                variant,
                sends,
                clicked,
            })
            .collect())
    }

    async fn add_run_counts(&self, counts: Vec<(ScheduleRunId, RunCounts)>) -> StoreResult<()> {
        let mut st = self.lock();
        for (run, c) in counts {
            if let Some(r) = st.runs.get_mut(&run) {
                r.stats.merge(&c);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn renew_lease(&self, r: &LeaseRenewal) -> StoreResult<Timestamp> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.leases.insert(
            r.instance.clone(),
            DaemonLease {
                instance: r.instance.clone(),
                daemon_id: r.daemon_id.clone(),
                version: r.version.clone(),
                started_at: r.started_at,
                heartbeat_at: now,
                ttl_ms: r.ttl_ms,
                stopped: false,
                providers: r.providers.clone(),
                lists: r.lists.clone(),
                sent_per_minute: r.sent_per_minute.clone(),
            },
        );
        Ok(now)
    }

    async fn stop_lease(&self, instance: &str) -> StoreResult<()> {
        if let Some(l) = self.lock().leases.get_mut(instance) {
            l.stopped = true;
        }
        Ok(())
    }

    async fn leases(&self) -> StoreResult<Vec<DaemonLease>> {
        Ok(self.lock().leases.values().cloned().collect())
    }

    async fn server_time(&self) -> StoreResult<Timestamp> {
        Ok(self.clock.now())
    }
}

#[async_trait]
impl AlertStore for MemoryStore {
    async fn add_to_alert_window(&self, w: AlertWindow) -> StoreResult<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        if st.alert_windows.len() > 10_000 {
            // As MongoDB's TTL index does: windows closed a day ago go.
            let day = chrono::Duration::days(1);
            st.alert_windows.retain(|_, w| w.closes_at + day > now);
        }
        match st.alert_windows.get_mut(&w.id) {
            Some(existing) => {
                for (k, v) in &w.counts {
                    *existing.counts.entry(k.clone()).or_insert(0) += *v;
                }
            }
            None => {
                let mut w = w;
                w.claimed_by = None;
                w.counts.retain(|_, v| *v != 0);
                st.alert_windows.insert(w.id.clone(), w);
            }
        }
        Ok(())
    }

    async fn claim_alert_windows(
        &self,
        now: Timestamp,
        owner: &str,
        max: usize,
    ) -> StoreResult<Vec<AlertWindow>> {
        let mut st = self.lock();
        let mut due: Vec<(Timestamp, String)> = st
            .alert_windows
            .values()
            .filter(|w| w.claimed_by.is_none() && w.closes_at <= now)
            .map(|w| (w.closes_at, w.id.clone()))
            .collect();
        due.sort();
        due.truncate(max);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(w) = st.alert_windows.get_mut(&id) {
                w.claimed_by = Some(owner.to_string());
                out.push(w.clone());
            }
        }
        Ok(out)
    }

    async fn list_alert_windows(
        &self,
        list: SendingListId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<AlertWindow>> {
        let st = self.lock();
        let mut v: Vec<AlertWindow> = st
            .alert_windows
            .values()
            .filter(|w| {
                w.kind == AlertKind::List
                    && w.list == Some(list)
                    && w.window_start >= from
                    && w.window_start <= to
            })
            .cloned()
            .collect();
        v.sort_by_key(|w| w.window_start);
        Ok(v)
    }

    async fn alert_flag(&self, key: &str) -> StoreResult<bool> {
        Ok(self.lock().alert_flags.get(key).copied().unwrap_or(false))
    }

    async fn swap_alert_flag(&self, key: &str, from: bool, to: bool) -> StoreResult<bool> {
        let mut st = self.lock();
        let now = st.alert_flags.get(key).copied().unwrap_or(false);
        if now != from {
            return Ok(false);
        }
        st.alert_flags.insert(key.to_string(), to);
        Ok(true)
    }

    async fn hold_alert(&self, key: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let mut st = self.lock();
        if st.alert_holds.len() > 1_000 {
            st.alert_holds.retain(|_, u| *u > now);
        }
        if st.alert_holds.get(key).is_some_and(|u| *u > now) {
            return Ok(false);
        }
        st.alert_holds.insert(key.to_string(), until);
        Ok(true)
    }

    async fn bump_alert_counter(
        &self,
        key: &str,
        by: i64,
        expires_at: Timestamp,
    ) -> StoreResult<i64> {
        let now = self.clock.now();
        let mut st = self.lock();
        if st.alert_counters.len() > 1_000 {
            st.alert_counters.retain(|_, (_, until)| *until > now);
        }
        let e = st
            .alert_counters
            .entry(key.to_string())
            .or_insert((0, expires_at));
        e.0 += by;
        e.1 = expires_at;
        Ok(e.0)
    }

    async fn take_alert_counter(&self, key: &str) -> StoreResult<i64> {
        let mut st = self.lock();
        Ok(st
            .alert_counters
            .get_mut(key)
            .map(|e| std::mem::take(&mut e.0))
            .unwrap_or(0))
    }
}

#[async_trait]
impl StoreHealth for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
