//! Storage ports. Each capability is a small trait; [`Stores`] bundles one
//! implementation of each. Two backends implement all of them with the same
//! semantics, proven by one contract suite (`tests/store_contract.rs`):
//!
//! - [`memory::MemoryStore`]: the embedded mode and fast actor tests;
//! - [`mongo::MongoStore`]: production, on the official `mongodb` driver.

pub mod memory;
pub mod mongo;

use crate::domain::*;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, timeout, no primary).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A unique key already exists.
    #[error("already exists: {0}")]
    Duplicate(String),
    /// A stored document does not decode into the model.
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Worth retrying later (the backend may come back).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// New values for a claimed message that goes back to the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Requeue {
    pub id: MessageId,
    pub not_before: Timestamp,
    pub attempts: u32,
    pub billing_blocked_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The queue of messages waiting to be sent. Only the Coordinator claims;
/// only the worker holding a claim token requeues or completes it.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Insert messages (bulk). Returns how many were inserted; ids that already
    /// exist are skipped, so a retried enqueue is harmless.
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64>;
    /// Lists that have at least one ready message (unclaimed, due at `now`).
    async fn due_lists(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<SendingListId>>;
    /// Atomically claim up to `max` ready messages of `list`, oldest first,
    /// stamping them with `token` and counting the claim (`claim_count`). Concurrent claimers never receive the same
    /// message; messages not due yet (or in backoff) are never claimed.
    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        token: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<QueuedTextMessage>>;
    /// Put claimed messages back with new values; only those still claimed by
    /// `token`. Returns how many were put back.
    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64>;
    /// Release every message still claimed by `token`, unchanged.
    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64>;
    /// Release claims taken before `claimed_before` (stale-claim recovery).
    async fn release_stale(&self, claimed_before: Timestamp) -> StoreResult<u64>;
    /// Delete every message still claimed by `token`. The caller guarantees
    /// that each of them has a durable outcome (MessageSent or FailedMessage).
    async fn complete(&self, list: SendingListId, token: &str) -> StoreResult<u64>;
    /// Delete these messages whatever their claim. Only for messages whose
    /// outcome is already durable (the in-doubt sweep).
    async fn remove(&self, ids: &[MessageId]) -> StoreResult<u64>;
    async fn get(&self, id: MessageId) -> StoreResult<Option<QueuedTextMessage>>;
    /// Messages in the queue (claimed or not).
    async fn depth(&self) -> StoreResult<u64>;
}

/// What happened when attempt records were inserted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptResult {
    /// Newly recorded: these may be sent now.
    pub inserted: Vec<MessageId>,
    /// An attempt record already existed: someone tried before. Never send.
    pub already_attempted: Vec<MessageId>,
}

/// The provider's answer for one attempted message.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    pub id: MessageId,
    pub submitted: bool,
    pub at: Timestamp,
    pub provider_message_id: Option<String>,
    pub error_code: Option<String>,
    pub error_text: Option<String>,
}

/// One normalised delivery report.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    pub id: MessageId,
    pub state: DeliveryState,
    pub error_code: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryApplied {
    /// Records whose delivery state changed.
    pub applied: u64,
    /// Reports that did not change anything (the record already held a final
    /// state, or the same state).
    pub ignored: u64,
    /// Reports for ids with no MessageSent record.
    pub unknown: Vec<MessageId>,
}

/// Attempt records (`MessageSent`).
#[async_trait]
pub trait SentStore: Send + Sync {
    /// Insert attempt records (submitted = null) before the provider call.
    /// A record that already exists is reported in `already_attempted`, never
    /// as an error, and the existing record is left untouched.
    async fn record_attempts(&self, records: Vec<MessageSent>) -> StoreResult<AttemptResult>;
    /// Record provider answers. Only records still `submitted = null` change.
    async fn record_outcomes(&self, outcomes: Vec<SendOutcome>) -> StoreResult<u64>;
    /// Remove attempt records that are still `submitted = null` and carry
    /// `token`: the provider provably did not take them (retryable error), so
    /// they may be attempted again.
    async fn discard_attempts(&self, token: &str, ids: Vec<MessageId>) -> StoreResult<u64>;
    /// Attempts still `submitted = null` that started before `attempted_before`.
    async fn in_doubt(
        &self,
        attempted_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<MessageSent>>;
    /// Apply delivery reports. A final state is never replaced by a later
    /// intermediate one (nor by another final one).
    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied>;
    async fn get(&self, id: MessageId) -> StoreResult<Option<MessageSent>>;
    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<MessageSent>>;
    async fn count(&self) -> StoreResult<u64>;
    /// Attempt records of a list by submitted and delivered state.
    async fn delivery_counts(&self, list: SendingListId) -> StoreResult<DeliveryCounts>;
}

/// Attempt records by outcome (campaign statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub attempted: u64,
    pub submitted: u64,
    pub rejected: u64,
    pub delivered: u64,
    pub undelivered: u64,
    /// Submitted, and no final delivery report yet.
    pub unknown: u64,
}

impl DeliveryCounts {
    pub fn add(&mut self, submitted: Option<bool>, delivered: Option<bool>) {
        self.attempted += 1;
        match submitted {
            Some(true) => {
                self.submitted += 1;
                match delivered {
                    Some(true) => self.delivered += 1,
                    Some(false) => self.undelivered += 1,
                    None => self.unknown += 1,
                }
            }
            Some(false) => self.rejected += 1,
            None => {}
        }
    }
}

/// The dead-letter collection (`FailedMessage`). Only the DeadLetter actor writes.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Insert dead letters. A message already dead-lettered keeps its first
    /// record; the returned count is of new records.
    async fn record(&self, failures: Vec<FailedMessage>) -> StoreResult<u64>;
    async fn get(&self, id: MessageId) -> StoreResult<Option<FailedMessage>>;
    /// The dead letters that exist among `ids`.
    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<FailedMessage>>;
    async fn count_by_reason(&self) -> StoreResult<BTreeMap<FailureReason, u64>>;
}

/// Contacts and audiences.
#[async_trait]
pub trait ContactStore: Send + Sync {
    async fn insert_contacts(&self, contacts: Vec<Contact>) -> StoreResult<u64>;
    async fn get_contact(&self, id: ContactId) -> StoreResult<Option<Contact>>;
    /// Current block state of each contact on `list`, read now. Ids with no
    /// record come back as [`ContactState::Missing`].
    async fn contact_states(
        &self,
        list: SendingListId,
        ids: &[ContactId],
    ) -> StoreResult<HashMap<ContactId, ContactState>>;
    /// Subscribe or unsubscribe a contact on a list.
    async fn set_subscription(
        &self,
        contact: ContactId,
        list: SendingListId,
        subscribed: bool,
        at: Timestamp,
    ) -> StoreResult<()>;
    async fn set_blocked(&self, contact: ContactId, blocked: bool) -> StoreResult<()>;
    async fn insert_audience(&self, audience: Audience) -> StoreResult<()>;
    async fn get_audience(&self, id: AudienceId) -> StoreResult<Option<Audience>>;
}

/// Result of an atomic debit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debit {
    /// Debited; the balance after it.
    Done { balance: Money },
    /// Not debited: the balance would go below zero.
    Insufficient { balance: Money },
}

/// Accounts and balances. Only the Billing actor debits and credits.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn insert_account(&self, account: Account) -> StoreResult<()>;
    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    /// Subtract `amount` atomically, refusing to go below zero.
    async fn debit(&self, id: AccountId, amount: Money) -> StoreResult<Debit>;
    /// Add `amount` (top-up or refund); returns the new balance.
    async fn credit(&self, id: AccountId, amount: Money) -> StoreResult<Money>;
}

/// Sending lists.
#[async_trait]
pub trait ListStore: Send + Sync {
    async fn insert_list(&self, list: SendingList) -> StoreResult<()>;
    async fn get_list(&self, id: SendingListId) -> StoreResult<Option<SendingList>>;
    async fn set_list_status(&self, id: SendingListId, status: ListStatus) -> StoreResult<()>;
    async fn set_rate_limit(&self, id: SendingListId, per_minute: u32) -> StoreResult<()>;
}

/// Short links and clicks.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Insert links; a duplicate code is an error ([`StoreError::Duplicate`]).
    async fn insert_links(&self, links: Vec<MessageShortLink>) -> StoreResult<()>;
    async fn find_link(&self, code: &str) -> StoreResult<Option<MessageShortLink>>;
    async fn record_click(&self, click: LinkClick) -> StoreResult<()>;
    /// Clicks on a link, excluding bots.
    async fn human_clicks(&self, link: LinkId) -> StoreResult<u64>;
}

/// Creatives, schedules and their runs.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    async fn insert_creative(&self, creative: MessageCreative) -> StoreResult<()>;
    async fn get_creative(&self, id: CreativeId) -> StoreResult<Option<MessageCreative>>;
    async fn insert_schedule(&self, schedule: Schedule) -> StoreResult<()>;
    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Option<Schedule>>;
    /// Active schedules whose `next_run_at` is at or before `now`.
    async fn due_schedules(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Schedule>>;
    /// Record the start of a run. Exactly one caller per
    /// `(schedule, occurrence)` gets `true`; every other gets `false`.
    async fn start_run(&self, run: ScheduleRun) -> StoreResult<bool>;
    async fn get_run(&self, id: ScheduleRunId) -> StoreResult<Option<ScheduleRun>>;
}

/// Reachability, for `/readyz`.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
}

/// One implementation of every storage capability.
#[derive(Clone)]
pub struct Stores {
    pub queue: Arc<dyn QueueStore>,
    pub sent: Arc<dyn SentStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub contacts: Arc<dyn ContactStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub lists: Arc<dyn ListStore>,
    pub links: Arc<dyn LinkStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub health: Arc<dyn StoreHealth>,
    /// "memory" or "mongodb", for logs and `/readyz`.
    pub backend: &'static str,
}

impl Stores {
    /// Every capability served by one object.
    pub fn from_backend<T>(backend: Arc<T>, name: &'static str) -> Self
    where
        T: QueueStore
            + SentStore
            + DeadLetterStore
            + ContactStore
            + AccountStore
            + ListStore
            + LinkStore
            + ScheduleStore
            + StoreHealth
            + 'static,
    {
        Stores {
            queue: backend.clone(),
            sent: backend.clone(),
            dead_letters: backend.clone(),
            contacts: backend.clone(),
            accounts: backend.clone(),
            lists: backend.clone(),
            links: backend.clone(),
            schedules: backend.clone(),
            health: backend,
            backend: name,
        }
    }

    pub fn memory() -> Self {
        Self::from_backend(Arc::new(memory::MemoryStore::new()), "memory")
    }
}
