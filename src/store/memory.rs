//! The in-memory store: same semantics as MongoDB, for the embedded mode and
//! actor tests. One mutex guards all state; every critical section is short
//! and never held across an `.await`.

use super::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct State {
    queue: HashMap<MessageId, QueuedTextMessage>,
    /// Ready (unclaimed) ids per list, in FIFO order.
    ready: HashMap<SendingListId, BTreeSet<MessageId>>,
    sent: HashMap<MessageId, MessageSent>,
    failed: HashMap<MessageId, FailedMessage>,
    contacts: HashMap<ContactId, Contact>,
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
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
    fn claimed_by<'a>(
        &'a self,
        list: Option<SendingListId>,
        token: &'a str,
    ) -> impl Iterator<Item = MessageId> + 'a {
        self.queue
            .values()
            .filter(move |m| {
                m.claimed_by.as_deref() == Some(token) && list.is_none_or(|l| m.sending_list == l)
            })
            .map(|m| m.id)
    }
}

#[async_trait]
impl QueueStore for MemoryStore {
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for m in msgs {
            if st.queue.contains_key(&m.id) {
                continue;
            }
            if m.claimed_by.is_none() {
                st.mark_ready(m.sending_list, m.id);
            }
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

    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        token: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<QueuedTextMessage>> {
        let mut st = self.lock();
        let ids: Vec<MessageId> = match st.ready.get(&list) {
            Some(set) => set
                .iter()
                .filter(|id| st.queue.get(id).is_some_and(|m| m.not_before <= now))
                .take(max)
                .copied()
                .collect(),
            None => return Ok(vec![]),
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            st.unmark_ready(list, id);
            if let Some(m) = st.queue.get_mut(&id) {
                m.claimed_by = Some(token.to_string());
                m.claimed_at = Some(now);
                m.claim_count += 1;
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for r in items {
            let list = match st.queue.get_mut(&r.id) {
                Some(m) if m.claimed_by.as_deref() == Some(token) => {
                    m.claimed_by = None;
                    m.claimed_at = None;
                    m.not_before = r.not_before;
                    m.attempts = r.attempts;
                    m.billing_blocked_since = r.billing_blocked_since;
                    m.last_error = r.last_error;
                    m.sending_list
                }
                _ => continue,
            };
            st.mark_ready(list, r.id);
            n += 1;
        }
        Ok(n)
    }

    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let mut st = self.lock();
        let ids: Vec<MessageId> = st.claimed_by(Some(list), token).collect();
        for id in &ids {
            if let Some(m) = st.queue.get_mut(id) {
                m.claimed_by = None;
                m.claimed_at = None;
            }
            st.mark_ready(list, *id);
        }
        Ok(ids.len() as u64)
    }

    async fn release_stale(&self, claimed_before: Timestamp) -> StoreResult<u64> {
        let mut st = self.lock();
        let stale: Vec<(SendingListId, MessageId)> = st
            .queue
            .values()
            .filter(|m| m.claimed_by.is_some() && m.claimed_at.is_some_and(|t| t < claimed_before))
            .map(|m| (m.sending_list, m.id))
            .collect();
        for (list, id) in &stale {
            if let Some(m) = st.queue.get_mut(id) {
                m.claimed_by = None;
                m.claimed_at = None;
            }
            st.mark_ready(*list, *id);
        }
        Ok(stale.len() as u64)
    }

    async fn complete(&self, list: SendingListId, token: &str) -> StoreResult<u64> {
        let mut st = self.lock();
        let ids: Vec<MessageId> = st.claimed_by(Some(list), token).collect();
        for id in &ids {
            st.queue.remove(id);
        }
        Ok(ids.len() as u64)
    }

    async fn remove(&self, ids: &[MessageId]) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for id in ids {
            if let Some(m) = st.queue.remove(id) {
                st.unmark_ready(m.sending_list, m.id);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn get(&self, id: MessageId) -> StoreResult<Option<QueuedTextMessage>> {
        Ok(self.lock().queue.get(&id).cloned())
    }

    async fn depth(&self) -> StoreResult<u64> {
        Ok(self.lock().queue.len() as u64)
    }
}

#[async_trait]
impl SentStore for MemoryStore {
    async fn record_attempts(&self, records: Vec<MessageSent>) -> StoreResult<AttemptResult> {
        let mut st = self.lock();
        let mut res = AttemptResult::default();
        for r in records {
            if let std::collections::hash_map::Entry::Vacant(e) = st.sent.entry(r.id) {
                res.inserted.push(r.id);
                e.insert(r);
            } else {
                res.already_attempted.push(r.id);
            }
        }
        Ok(res)
    }

    async fn record_outcomes(&self, outcomes: Vec<SendOutcome>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for o in outcomes {
            if let Some(r) = st.sent.get_mut(&o.id)
                && r.submitted.is_none()
            {
                r.submitted = Some(o.submitted);
                r.submitted_at = Some(o.at);
                r.provider_message_id = o.provider_message_id;
                r.error_code = o.error_code;
                r.error_text = o.error_text;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn discard_attempts(&self, token: &str, ids: Vec<MessageId>) -> StoreResult<u64> {
        let mut st = self.lock();
        let mut n = 0;
        for id in ids {
            let removable = st
                .sent
                .get(&id)
                .is_some_and(|r| r.submitted.is_none() && r.attempt_token == token);
            if removable {
                st.sent.remove(&id);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn in_doubt(
        &self,
        attempted_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<MessageSent>> {
        let st = self.lock();
        let mut v: Vec<MessageSent> = st
            .sent
            .values()
            .filter(|r| r.submitted.is_none() && r.attempted_at < attempted_before)
            .cloned()
            .collect();
        v.sort_by_key(|r| r.id);
        v.truncate(limit);
        Ok(v)
    }

    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied> {
        let mut st = self.lock();
        let mut res = DeliveryApplied::default();
        for u in updates {
            match st.sent.get_mut(&u.id) {
                None => res.unknown.push(u.id),
                Some(r) => {
                    if delivery_applies(r.delivery_state, u.state) {
                        r.delivery_state = Some(u.state);
                        r.delivered = u.state.delivered();
                        r.delivery_updated_at = Some(u.at);
                        r.delivery_error_code = u.error_code;
                        res.applied += 1;
                    } else {
                        res.ignored += 1;
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

    async fn debit(&self, id: AccountId, amount: Money) -> StoreResult<Debit> {
        let mut st = self.lock();
        let a = st
            .accounts
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        if a.balance.0 >= amount.0 {
            a.balance = Money(a.balance.0 - amount.0);
            Ok(Debit::Done { balance: a.balance })
        } else {
            Ok(Debit::Insufficient { balance: a.balance })
        }
    }

    async fn credit(&self, id: AccountId, amount: Money) -> StoreResult<Money> {
        let mut st = self.lock();
        let a = st
            .accounts
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        a.balance = Money(a.balance.0.saturating_add(amount.0));
        Ok(a.balance)
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

    async fn get_list(&self, id: SendingListId) -> StoreResult<Option<SendingList>> {
        Ok(self.lock().lists.get(&id).cloned())
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
        self.lock().clicks.push(click);
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
}

#[async_trait]
impl StoreHealth for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
