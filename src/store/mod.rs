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

/// What went wrong underneath a store error: the driver's (or encoder's)
/// own error, kept whole for `source()`, and shared so that a store error
/// stays `Clone` (a coalesced write answers many waiters with one result).
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(e))
    }

    /// A cause that is only a description (no underlying error).
    pub fn msg(m: impl Into<String>) -> Cause {
        #[derive(Debug)]
        struct Msg(String);
        impl std::fmt::Display for Msg {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Msg {}
        Cause(Arc::new(Msg(m.into())))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Every way a store operation fails that a caller handles differently.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, timeout, no
    /// primary): retry later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// What was looked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A unique key already exists.
    #[error("already exists: {0}")]
    Duplicate(String),
    /// A stored document does not decode into the model (or a value does
    /// not encode).
    #[error("invalid stored data: {0}")]
    Corrupt(#[source] Cause),
    /// A transaction kept losing to concurrent writers (retried already):
    /// retry later.
    #[error("write conflict: {0}")]
    Conflict(#[source] Cause),
    /// Too much is waiting to be written: retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The store's configuration is unusable (an invalid URI).
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The server refused the operation for another reason (a write error,
    /// an unexpected reply).
    #[error("the store refused the operation: {0}")]
    Rejected(#[source] Cause),
    /// The record moved on without this writer (another daemon owns it now,
    /// or it is past the state the write expected): do not retry.
    #[error("superseded: {0}")]
    Superseded(String),
    /// The actor that owns this write stopped before answering.
    #[error("the {0} stopped before answering")]
    Stopped(&'static str),
}

impl StoreError {
    /// Worth retrying later (the backend may come back, the conflict pass).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::Overloaded(_)
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// New values for a claimed message that goes back to the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Requeue {
    pub id: MessageId,
    pub not_before: Timestamp,
    /// A new send time (a message deferred to the next start of its
    /// contact's window: staleness counts from there); `None` keeps it.
    pub send_at: Option<Timestamp>,
    pub attempts: u32,
    pub billing_blocked_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Who claims: a token minted for one batch (unique for ever: it starts with
/// the instance id, which has a random part per start) and the instance that
/// minted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub token: String,
    pub owner: String,
}

/// What one claim produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claimed {
    pub messages: Vec<QueuedTextMessage>,
    /// Claimed documents that could not be decoded: each was dead-lettered
    /// MALFORMED with its raw content and removed from the queue, so one bad
    /// document never blocks its list.
    pub quarantined: u64,
    /// The claim found fewer than `max` ready messages: nothing more of the
    /// list was ready when it looked (what is queued or falls due later
    /// wakes the list through the Coordinator's poll).
    pub exhausted: bool,
}

/// The queue of messages waiting to be sent. Only the Coordinator claims;
/// only the batch holding a claim token requeues, releases or completes it;
/// Recovery releases the claims of instances whose lease has expired.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Insert messages (bulk). Returns how many were inserted; ids that already
    /// exist are skipped, so a retried enqueue is harmless.
    async fn enqueue(&self, msgs: Vec<QueuedTextMessage>) -> StoreResult<u64>;
    /// Lists that have at least one ready message (unclaimed, due at `now`).
    async fn due_lists(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<SendingListId>>;
    /// The earliest `not_before` later than `now` among unclaimed messages:
    /// when the next message falls due (`None`: none waits).
    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>>;
    /// Atomically claim up to `max` ready messages of `list`, oldest first,
    /// stamping them with the claimant's token and owner and counting the
    /// claim (`claim_count`). Concurrent claimers never receive the same
    /// message; messages not due yet (or in backoff) are never claimed.
    async fn claim(
        &self,
        list: SendingListId,
        max: usize,
        claimant: &Claimant,
        now: Timestamp,
    ) -> StoreResult<Claimed>;
    /// Put claimed messages back with new values; only those still claimed by
    /// `token`. Returns how many were put back.
    async fn requeue(&self, token: &str, items: Vec<Requeue>) -> StoreResult<u64>;
    /// Release every message still claimed by `token`, unchanged.
    async fn release(&self, list: SendingListId, token: &str) -> StoreResult<u64>;
    /// The instances that hold claims now.
    async fn claim_owners(&self) -> StoreResult<Vec<String>>;
    /// Release every claim held by these instances (their leases expired).
    async fn release_owners(&self, owners: &[String]) -> StoreResult<u64>;
    /// Delete every message still claimed by `token`. The caller guarantees
    /// that each of them has a durable outcome (MessageSent or FailedMessage).
    async fn complete(&self, list: SendingListId, token: &str) -> StoreResult<u64>;
    /// Delete these messages whatever their claim. Only for messages whose
    /// outcome is already durable (recovery).
    async fn remove(&self, ids: &[MessageId]) -> StoreResult<u64>;
    async fn get(&self, id: MessageId) -> StoreResult<Option<QueuedTextMessage>>;
    /// Messages in the queue (claimed or not).
    async fn depth(&self) -> StoreResult<u64>;
    /// Messages in the queue per list (claimed or not).
    async fn depth_by_list(&self) -> StoreResult<BTreeMap<SendingListId, u64>>;
    /// Messages of one list in the queue (claimed or not).
    async fn list_depth(&self, list: SendingListId) -> StoreResult<u64>;
    /// Messages of `list` claimed by any daemon now (drain waits for 0).
    async fn list_claimed(&self, list: SendingListId) -> StoreResult<u64>;
    /// Every queued message as `(id, list, claim owner)` (audit).
    async fn scan(&self) -> StoreResult<Vec<QueueEntry>>;
}

/// A queued message as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: MessageId,
    pub list: SendingListId,
    pub claim_owner: Option<String>,
}

/// What the charge-and-record transaction did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptsBegun {
    /// Charged and recorded: these may be sent now.
    pub recorded: Vec<MessageId>,
    /// An attempt record already existed: someone tried before. Never send;
    /// not charged.
    pub already_attempted: Vec<MessageId>,
    /// The balance could not cover them (after the longest affordable
    /// prefix): not charged, not recorded.
    pub unaffordable: Vec<MessageId>,
    /// The balance after the debit (None when nothing was charged).
    pub balance: Option<Money>,
}

/// One recorded answer for an attempted message. Every variant applies only
/// while the attempt is still unanswered (`submitted = null`), so a second
/// writer (a late worker, recovery, a report) changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// The provider took it: `submitted = true`.
    Sent {
        id: MessageId,
        at: Timestamp,
        provider_message_id: Option<String>,
        /// Set when evidence other than the send answer proved it
        /// (`delivery_report`, `provider_lookup`).
        resolved_by: Option<&'static str>,
    },
    /// A failure after the attempt was recorded: `submitted = false` with the
    /// code, its dead letter, and (when `refund`) the charge given back; all
    /// in one transaction. An in-doubt judgment (`code = NO_RESPONSE`) of an
    /// attempt that already has a delivery report is recorded sent instead
    /// (the report proves the provider took it), in the same transaction.
    Failed {
        at: Timestamp,
        code: String,
        text: String,
        refund: bool,
        dead_letter: Box<FailedMessage>,
    },
    /// Provably never reached the provider (refused before the request was
    /// written, 429, a blocked contact, a lost lease before the call): the
    /// attempt record is removed, only while it still carries `token`, and
    /// its charge refunded in the same transaction, so the message may be
    /// attempted again.
    Unsent { id: MessageId, token: String },
}

impl Settlement {
    pub fn id(&self) -> MessageId {
        match self {
            Settlement::Sent { id, .. } | Settlement::Unsent { id, .. } => *id,
            Settlement::Failed { dead_letter, .. } => dead_letter.id,
        }
    }
}

/// What a settlement changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    /// `Sent` settlements that applied.
    pub sent: u64,
    /// `Failed` settlements that applied (their dead letters are durable).
    pub failed: Vec<MessageId>,
    /// `Unsent` settlements that applied (records removed).
    pub unsent: Vec<MessageId>,
    /// Total given back.
    pub refunded: Money,
}

/// Which unanswered attempts recovery looks at: those of instances that are
/// not live, this instance's own that no running batch holds, and any older
/// than the hard horizon. With `only_mine`, just this instance's own.
#[derive(Debug, Clone, PartialEq)]
pub struct UnansweredQuery {
    /// Only this instance's orphans (recovery on a daemon that is not the
    /// recovery leader).
    pub only_mine: bool,
    /// Instances with a live lease (this one included).
    pub live_owners: Vec<String>,
    /// This instance.
    pub me: String,
    /// Tokens of this instance's running batches.
    pub active_tokens: Vec<String>,
    /// Attempts made before this (database time) are in doubt whoever owns them.
    pub attempted_before: Timestamp,
    pub limit: usize,
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
    /// In-doubt (NO_RESPONSE) messages a report proved sent: now
    /// `submitted = true`, their dead letters resolved.
    pub resolved: Vec<MessageId>,
    /// The records this call changed, each once, with the state it left them
    /// in (run counters and customer webhooks follow these).
    pub changed: Vec<DeliveryChange>,
}

/// A record whose delivery state a call changed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryChange {
    pub id: MessageId,
    pub run: Option<ScheduleRunId>,
    pub state: DeliveryState,
}

/// Attempt records (`MessageSent`).
#[async_trait]
pub trait SentStore: Send + Sync {
    /// The charge-and-record transaction: among `records` (costs set) whose
    /// id has no attempt record yet, take the longest prefix the account's
    /// balance covers, debit its total and insert those records, atomically.
    /// A message is therefore charged exactly when its attempt record exists.
    async fn begin_attempts(
        &self,
        account: AccountId,
        records: Vec<MessageSent>,
    ) -> StoreResult<AttemptsBegun>;
    /// Record answers (see [`Settlement`]); each failure's outcome, dead
    /// letter and refund are durable together.
    async fn settle(&self, items: Vec<Settlement>) -> StoreResult<Settled>;
    /// Unanswered attempts recovery must judge (see [`UnansweredQuery`]).
    async fn unanswered(&self, q: &UnansweredQuery) -> StoreResult<Vec<MessageSent>>;
    /// Instances that have unanswered attempts.
    async fn attempt_owners(&self) -> StoreResult<Vec<String>>;
    /// In-doubt (NO_RESPONSE) messages that already have a delivery report,
    /// resolved as sent (record and dead letter together), up to `limit`.
    /// `apply_delivery` does this for the reports it applies; this catches
    /// any it could not finish. `at` (the database's time) stamps them.
    async fn resolve_reported(&self, limit: usize, at: Timestamp) -> StoreResult<Vec<MessageId>>;
    /// In-doubt messages their provider's records show it took: `submitted =
    /// true`, `resolved_by = provider_lookup`, the provider's id, and the
    /// delivery state it knows (only on a record that has none); their dead
    /// letters resolved. One transaction; only records still in doubt
    /// change. Answers the ids that changed.
    async fn resolve_taken(
        &self,
        items: Vec<LookupTaken>,
        at: Timestamp,
    ) -> StoreResult<Vec<MessageId>>;
    /// An in-doubt message its provider has no record of, in one
    /// transaction and only while it is still in doubt: its attempt becomes
    /// a failure (`NOT_TAKEN`, `resolved_by = provider_lookup`) and its
    /// charge is given back; with `resend`, that message is queued (a new
    /// id: the next attempt is a new attempt record, allowed once) and the
    /// dead letter marked requeued to it; without (too old to send), the
    /// dead letter's reason becomes STALE. Answers whether it changed.
    async fn resolve_not_taken(&self, item: LookupNotTaken, at: Timestamp) -> StoreResult<bool>;
    /// Apply delivery reports. A final state is never replaced by a later
    /// intermediate one (nor by another final one). A report for an in-doubt
    /// message proves the provider took it: it is resolved as sent (if that
    /// transaction cannot finish now, the report still counts as applied and
    /// [`SentStore::resolve_reported`] finishes it later).
    async fn apply_delivery(&self, updates: Vec<DeliveryUpdate>) -> StoreResult<DeliveryApplied>;
    async fn get(&self, id: MessageId) -> StoreResult<Option<MessageSent>>;
    async fn get_many(&self, ids: &[MessageId]) -> StoreResult<Vec<MessageSent>>;
    async fn count(&self) -> StoreResult<u64>;
    /// Attempt records of a list by submitted and delivered state.
    async fn delivery_counts(&self, list: SendingListId) -> StoreResult<DeliveryCounts>;
    /// Every attempt record, reduced to what the audit checks.
    async fn scan(&self) -> StoreResult<Vec<SentEntry>>;
}

/// An attempt record as the audit sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEntry {
    pub id: MessageId,
    pub account: AccountId,
    pub owner: String,
    pub submitted: Option<bool>,
    pub in_doubt: bool,
    pub cost: Money,
    pub refunded: bool,
    pub provider: ProviderKind,
    /// How an in-doubt attempt was settled (`delivery_report`,
    /// `provider_lookup`), if it was.
    pub resolved_by: Option<String>,
    /// An in-doubt attempt the provider's records show it never took.
    pub not_taken: bool,
}

impl SentEntry {
    pub fn of(r: &MessageSent) -> SentEntry {
        SentEntry {
            id: r.id,
            account: r.account,
            owner: r.owner.clone(),
            submitted: r.submitted,
            in_doubt: r.in_doubt(),
            cost: r.cost,
            refunded: r.refunded,
            provider: r.provider,
            resolved_by: r.resolved_by.clone(),
            not_taken: r.error_code.as_deref() == Some(crate::domain::sent::NOT_TAKEN),
        }
    }
}

/// `resolved_by` of an in-doubt message a delivery report proved sent.
pub const RESOLVED_BY_REPORT: &str = "delivery_report";
/// `resolved_by` of an in-doubt message its provider's records settled.
pub const RESOLVED_BY_LOOKUP: &str = "provider_lookup";

/// An in-doubt message the provider's records show it took.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupTaken {
    pub id: MessageId,
    pub provider_message_id: Option<String>,
    pub delivery: Option<DeliveryState>,
    pub error_code: Option<String>,
}

/// An in-doubt message the provider never took.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupNotTaken {
    pub id: MessageId,
    /// Queue it again as this message (still within its staleness window);
    /// `None`: too old to send, it ends STALE.
    pub resend: Option<QueuedTextMessage>,
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
    /// Every dead letter as `(id, reason, resolved)` (audit).
    async fn scan(&self) -> StoreResult<Vec<(MessageId, FailureReason, bool)>>;
    /// Dead letters matching `filter`, newest first, at most `limit`.
    /// How many dead letters `filter` selects.
    async fn count_failed(&self, filter: &FailedFilter) -> StoreResult<u64>;
    async fn list_failed(
        &self,
        filter: &FailedFilter,
        limit: usize,
    ) -> StoreResult<Vec<FailedMessage>>;
    /// Requeue dead letter `id` as `message` (the original's content under a
    /// new id): the dead letter is marked requeued and the message queued
    /// together (one transaction), once. `Ok(false)`: it was requeued
    /// before, or does not exist; nothing changed.
    async fn requeue(
        &self,
        id: MessageId,
        message: QueuedTextMessage,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailedFilter {
    pub reason: Option<FailureReason>,
    pub list: Option<SendingListId>,
    /// The campaign (schedule) the message came from.
    pub schedule: Option<ScheduleId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only those not requeued yet (and not resolved as sent).
    pub open_only: bool,
    /// Only those resolved as sent (`Some(true)`), or only those requeued
    /// (`Some(false)`).
    pub settled_as_sent: Option<bool>,
}

impl FailedFilter {
    pub fn matches(&self, f: &FailedMessage) -> bool {
        self.reason.is_none_or(|r| f.reason == r)
            && self.list.is_none_or(|l| f.sending_list == l)
            && self
                .schedule
                .is_none_or(|s| f.original.as_ref().and_then(|o| o.schedule) == Some(s))
            && self.since.is_none_or(|t| f.failed_at >= t)
            && self.until.is_none_or(|t| f.failed_at < t)
            && (!self.open_only || (f.requeued.is_none() && f.resolved.is_none()))
            && match self.settled_as_sent {
                Some(true) => f.resolved.is_some(),
                Some(false) => f.requeued.is_some(),
                None => true,
            }
    }
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
    /// The contact of `account` with this number (unique per account).
    async fn find_by_phone(&self, account: AccountId, phone: &E164)
    -> StoreResult<Option<Contact>>;
    /// Which of `phones` are already contacts of `account` (one read: a
    /// bulk import checks a whole request at once).
    async fn existing_phones(
        &self,
        account: AccountId,
        phones: &[E164],
    ) -> StoreResult<std::collections::HashSet<E164>>;
    async fn set_blocked(&self, contact: ContactId, blocked: bool) -> StoreResult<()>;
    async fn insert_audience(&self, audience: Audience) -> StoreResult<()>;
    async fn get_audience(&self, id: AudienceId) -> StoreResult<Option<Audience>>;
    /// The next `limit` contacts of `account` after `after`, in `_id` order,
    /// that match at least one of `filters` (the union of audiences: each
    /// contact once, however many audiences it is in). Empty `filters`
    /// match nothing. Fewer than `limit` means none match past them.
    async fn audience_page(
        &self,
        account: AccountId,
        filters: &[AudienceFilter],
        after: Option<ContactId>,
        limit: usize,
    ) -> StoreResult<Vec<Contact>>;
    /// The send time of each contact's cooldown reservation on `list` that
    /// is still running at `now` (contacts without one are absent), leaving
    /// out those held by `except` (a resumed run's own).
    async fn cooldowns(
        &self,
        list: SendingListId,
        ids: &[ContactId],
        now: Timestamp,
        except: Option<ScheduleRunId>,
    ) -> StoreResult<HashMap<ContactId, Timestamp>>;
    /// Reserve each contact's cooldown on `list` for `run`, atomically per
    /// contact: a reservation is taken only when the contact has none still
    /// running at `now`, or has this run's own (a resumed run). Returns the
    /// contacts refused (another campaign holds them), so two campaigns
    /// running at once cannot both message one contact within its cooldown.
    async fn reserve_cooldowns(
        &self,
        list: SendingListId,
        run: ScheduleRunId,
        items: &[CooldownClaim],
        now: Timestamp,
    ) -> StoreResult<Vec<ContactId>>;
}

/// One contact's cooldown reservation: its message goes out `at`; nothing
/// else on the list may reach it before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownClaim {
    pub contact: ContactId,
    pub at: Timestamp,
    pub until: Timestamp,
}

/// Accounts and balances. Balances move only in [`SentStore::begin_attempts`]
/// (charges), [`SentStore::settle`] (refunds) and [`AccountStore::top_up`].
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn insert_account(&self, account: Account) -> StoreResult<()>;
    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    /// Add money paid in: `balance` and `funded` together, atomically.
    /// Returns the new balance.
    async fn top_up(&self, id: AccountId, amount: Money) -> StoreResult<Money>;
    async fn accounts(&self) -> StoreResult<Vec<Account>>;
    /// Set (or with `None` clear) the account's delivery-status webhook.
    /// `Ok(false)`: no such account, nothing changed.
    async fn set_delivery_webhook(
        &self,
        id: AccountId,
        webhook: Option<CustomerWebhook>,
    ) -> StoreResult<bool>;
    /// Set or clear the account's Discord webhook URL (already checked by
    /// the outbound URL rule). False when there is no such account.
    async fn set_discord_webhook(
        &self,
        id: AccountId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool>;
}

/// What one try of a claimed outbox entry came to.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxResult {
    pub id: String,
    /// `Pending`: try again at `next_attempt_at` (the claim is released);
    /// any other status is final.
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub at: Timestamp,
}

/// The customer-webhook outbox (`webhook_outbox`). DeliveryIntake adds
/// entries before it answers the provider; the WebhookSender claims due
/// entries in batches, posts them and records each try's result.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Insert the entries whose id does not exist yet; an existing entry is
    /// left as it is (a resent report adds nothing). Returns how many were
    /// new.
    async fn add_outbox(&self, entries: Vec<OutboxEntry>) -> StoreResult<u64>;
    /// Claim up to `max` due entries for `token` until `lease_until`:
    /// pending, `next_attempt_at <= now`, not claimed or their claim's lease
    /// ran out, earliest due first, leaving out any entry of a message that
    /// still has a pending entry of a lower rank (per-message order).
    /// Concurrent claimers never get the same entry.
    async fn claim_outbox(
        &self,
        max: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<OutboxEntry>>;
    /// Record the results of entries claimed by `token` (only those still
    /// claimed by it). Returns how many applied.
    async fn finish_outbox(&self, token: &str, results: Vec<OutboxResult>) -> StoreResult<u64>;
    async fn outbox_entry(&self, id: &str) -> StoreResult<Option<OutboxEntry>>;
    /// Entries by status, for one account or all.
    async fn outbox_counts(
        &self,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<(OutboxStatus, u64)>>;
}

/// Alert windows and the Alerts actor's shared state (`alert_windows`,
/// `alert_state`). Every daemon adds its counts to the same window
/// document; once the window closed, the first daemon to claim it sends the
/// alert, so no alert goes out twice.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Add `w.counts` to the window `w.id`, creating it with `w`'s other
    /// fields (unclaimed) when it does not exist. A window already claimed
    /// still takes the counts (they are then not reported).
    async fn add_to_alert_window(&self, w: AlertWindow) -> StoreResult<()>;
    /// Claim for `owner` up to `max` unclaimed windows whose `closes_at` is
    /// not after `now`, earliest first. Concurrent claimers never get the
    /// same window.
    async fn claim_alert_windows(
        &self,
        now: Timestamp,
        owner: &str,
        max: usize,
    ) -> StoreResult<Vec<AlertWindow>>;
    /// The `List` windows of `list` starting in `[from, to]`, claimed or
    /// not (the error rate's sliding window).
    async fn list_alert_windows(
        &self,
        list: SendingListId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<AlertWindow>>;
    /// A flag's value (`false` when never set).
    async fn alert_flag(&self, key: &str) -> StoreResult<bool>;
    /// Set a flag to `to` only if it holds `from` now (a missing flag holds
    /// `false`). `Ok(false)`: it did not (another daemon changed it first).
    async fn swap_alert_flag(&self, key: &str, from: bool, to: bool) -> StoreResult<bool>;
    /// Hold `key` until `until`, unless a hold on it is still in force at
    /// `now`. `Ok(true)`: this caller holds it now; `Ok(false)`: an earlier
    /// hold stands (another alert went less than its hold ago). Atomic:
    /// of two callers at once, one gets it.
    async fn hold_alert(&self, key: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool>;
    /// Add `by` to a counter (created at 0), dropped by the store some time
    /// after `expires_at`. Returns the new value.
    async fn bump_alert_counter(
        &self,
        key: &str,
        by: i64,
        expires_at: Timestamp,
    ) -> StoreResult<i64>;
    /// A counter's value, set back to 0 in the same step.
    async fn take_alert_counter(&self, key: &str) -> StoreResult<i64>;
}

/// Sending lists.
#[async_trait]
pub trait ListStore: Send + Sync {
    async fn insert_list(&self, list: SendingList) -> StoreResult<()>;
    async fn get_list(&self, id: SendingListId) -> StoreResult<Option<SendingList>>;
    async fn set_list_status(&self, id: SendingListId, status: ListStatus) -> StoreResult<()>;
    /// 0 means paused.
    async fn set_rate_limit(&self, id: SendingListId, per_minute: u32) -> StoreResult<()>;
    async fn delete_list(&self, id: SendingListId) -> StoreResult<()>;
    /// Every list, newest first, at most `limit` (the dashboard's queue
    /// view).
    async fn lists(&self, limit: usize) -> StoreResult<Vec<SendingList>>;
    /// Set or clear the list's Discord webhook URL (already checked by the
    /// outbound URL rule). False when there is no such list.
    async fn set_list_discord_webhook(
        &self,
        id: SendingListId,
        url: Option<crate::telemetry::Secret>,
    ) -> StoreResult<bool>;
    /// Lists that send from `number` (one of their `from_numbers`): where
    /// an inbound message to that number belongs.
    async fn lists_sending_from(&self, number: &str) -> StoreResult<Vec<SendingList>>;
}

/// Daemon leases (see [`crate::domain::lease`]).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Create or renew an instance's lease; the store stamps `heartbeat_at`
    /// with its own clock and returns it.
    async fn renew_lease(&self, r: &LeaseRenewal) -> StoreResult<Timestamp>;
    /// Mark the lease stopped (clean shutdown, claims already released).
    async fn stop_lease(&self, instance: &str) -> StoreResult<()>;
    async fn leases(&self) -> StoreResult<Vec<DaemonLease>>;
    /// The store's own clock, the one leases and the hard horizon use.
    async fn server_time(&self) -> StoreResult<Timestamp>;
}

/// Short links and clicks.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Insert links; a duplicate code is an error ([`StoreError::Duplicate`]).
    async fn insert_links(&self, links: Vec<MessageShortLink>) -> StoreResult<()>;
    async fn find_link(&self, code: &str) -> StoreResult<Option<MessageShortLink>>;
    /// Record a click. The first human click on a message also counts its
    /// variant as clicked (Thompson sampling's evidence).
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
    /// Every schedule, newest first, at most `limit`.
    async fn schedules(&self, limit: usize) -> StoreResult<Vec<Schedule>>;
    /// Active schedules whose `next_run_at` is at or before `now`.
    async fn due_schedules(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Schedule>>;
    /// Record the start of a run. Exactly one caller per
    /// `(schedule, occurrence)` gets `true`; every other gets `false`.
    async fn start_run(&self, run: ScheduleRun) -> StoreResult<bool>;
    async fn get_run(&self, id: ScheduleRunId) -> StoreResult<Option<ScheduleRun>>;
    /// Move a schedule past `occurrence`: `next_run_at` becomes `next`
    /// (status `done` when there is none), only while it is still
    /// `occurrence` (every daemon that saw it due may do this; one changes
    /// it). Returns whether it changed.
    async fn advance_schedule(
        &self,
        id: ScheduleId,
        occurrence: Timestamp,
        next: Option<Timestamp>,
    ) -> StoreResult<bool>;
    /// Set a schedule's status and, when given, its next occurrence.
    async fn set_schedule_status(
        &self,
        id: ScheduleId,
        status: ScheduleStatus,
        next_run_at: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Runs still evaluating (to resume those whose daemon stopped).
    async fn evaluating_runs(&self, limit: usize) -> StoreResult<Vec<ScheduleRun>>;
    /// Hand an evaluating run from `from` to `to`, only while `from` still
    /// owns it. Returns the run as taken over.
    async fn take_over_run(
        &self,
        id: ScheduleRunId,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<ScheduleRun>>;
    /// Queue one page of a run, atomically: its messages, their short links
    /// and the run's checkpoint and counters, all or nothing, and only while
    /// `page.owner` still owns the run at checkpoint `page.from` (otherwise
    /// [`StoreError::Superseded`]: another daemon took the run over).
    async fn commit_page(&self, page: RunPage) -> StoreResult<()>;
    /// End an evaluating run owned by `owner` (queued or failed).
    async fn finish_run(
        &self,
        id: ScheduleRunId,
        owner: &str,
        status: RunStatus,
        reason: Option<String>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// The runs of a schedule, newest occurrence first.
    async fn runs_of(&self, schedule: ScheduleId, limit: usize) -> StoreResult<Vec<ScheduleRun>>;
    /// Each variant's sends (messages queued over every run of this
    /// creative) and clicked messages.
    async fn variant_stats(&self, creative: CreativeId) -> StoreResult<Vec<VariantStats>>;
    /// Adds counts to runs' `stats` (sums; the earliest first and the latest
    /// last send time). A run that does not exist is left alone.
    async fn add_run_counts(&self, counts: Vec<(ScheduleRunId, RunCounts)>) -> StoreResult<()>;
}

/// One page of a run's evaluation, committed by
/// [`ScheduleStore::commit_page`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub run: ScheduleRunId,
    pub owner: String,
    /// The checkpoint the page starts from (must still be the run's).
    pub from: Option<ContactId>,
    /// The new checkpoint: the last contact of the page.
    pub to: ContactId,
    /// The new message counter.
    pub seq: u64,
    pub messages: Vec<QueuedTextMessage>,
    pub links: Vec<MessageShortLink>,
    pub counts: PageCounts,
    /// The audience's last page (no contact follows it): the run becomes
    /// `queued`, finished at this time, in the same write.
    pub finished_at: Option<Timestamp>,
}

/// What one page adds to its run's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageCounts {
    pub audience: u64,
    pub eligible: u64,
    pub queued: u64,
    pub skipped: BTreeMap<String, u64>,
    pub variants: BTreeMap<String, VariantCount>,
    pub cost: Money,
}

impl PageCounts {
    /// Add these counts to a run (the in-memory store, and tests).
    pub fn apply_to(&self, run: &mut ScheduleRun) {
        run.audience += self.audience;
        run.eligible += self.eligible;
        run.queued += self.queued;
        for (k, v) in &self.skipped {
            *run.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &self.variants {
            let e = run.variants.entry(k.clone()).or_default();
            e.messages += v.messages;
            e.segments += v.segments;
        }
        run.cost = Money(run.cost.0.saturating_add(self.cost.0));
    }

    /// Add another part of a page's counts to these.
    pub fn add(&mut self, other: &PageCounts) {
        self.audience += other.audience;
        self.eligible += other.eligible;
        self.queued += other.queued;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.variants {
            let e = self.variants.entry(k.clone()).or_default();
            e.messages += v.messages;
            e.segments += v.segments;
        }
        self.cost = Money(self.cost.0.saturating_add(other.cost.0));
    }
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
    pub leases: Arc<dyn LeaseStore>,
    /// The customer-webhook outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// Alert windows and the Alerts actor's shared state.
    pub alerts: Arc<dyn AlertStore>,
    pub health: Arc<dyn StoreHealth>,
    /// "memory" or "mongodb", for logs and `/readyz`.
    pub backend: &'static str,
}

impl Stores {
    /// The database's clock now. On MongoDB, estimated from `instance`'s
    /// last lease renewal when it is younger than `fresh` (no round trip;
    /// see [`crate::instance::Instance::server_now`]); otherwise asked.
    pub async fn database_now(
        &self,
        instance: &crate::instance::Instance,
        fresh: std::time::Duration,
    ) -> StoreResult<Timestamp> {
        if self.backend == "mongodb"
            && let Some(t) = instance.server_now(fresh)
        {
            return Ok(t);
        }
        self.leases.server_time().await
    }

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
            + LeaseStore
            + OutboxStore
            + AlertStore
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
            leases: backend.clone(),
            outbox: backend.clone(),
            alerts: backend.clone(),
            health: backend,
            backend: name,
        }
    }

    /// The in-memory store on the wall clock.
    pub fn memory() -> Self {
        Self::from_backend(Arc::new(memory::MemoryStore::new()), "memory")
    }

    /// The in-memory store whose "server time" is `clock` (tests drive it).
    pub fn memory_with_clock(clock: crate::clock::SharedClock) -> Self {
        Self::from_backend(Arc::new(memory::MemoryStore::with_clock(clock)), "memory")
    }
}
