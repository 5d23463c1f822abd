//! Moving work: Coordinator ⇄ ListSupervisor ⇄ Worker. Work flows by pull: a
//! supervisor asks for what one idle worker can handle; nothing is pushed
//! into a mailbox unasked.

use crate::domain::{FailureReason, ListStatus, QueuedTextMessage, SendingList, SendingListId};
use crate::providers::SharedProvider;
use crate::store::StoreError;
use actix::prelude::*;
use aho_corasick::AhoCorasick;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Messages claimed under one token (one claim = one worker's batch).
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub token: String,
    pub messages: Vec<QueuedTextMessage>,
    /// Nothing more of the list was ready when the claim looked: the
    /// supervisor waits for the next [`WorkAvailable`] instead of claiming
    /// again.
    pub exhausted: bool,
}

/// ListSupervisor → Coordinator: "claim up to `max` ready messages of
/// `list` for one of my idle workers". The Coordinator is the only claimer.
/// An empty batch means nothing is ready (or the daemon may not claim now:
/// shutting down, or its lease is not renewed).
#[derive(Message, Debug)]
#[rtype(result = "Result<ClaimedBatch, StoreError>")]
pub struct RequestWork {
    pub list: SendingListId,
    pub max: usize,
}

/// Coordinator → ListSupervisor: the list has ready messages. A hint: losing
/// one is harmless (the next poll sends another).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct WorkAvailable;

/// Coordinator → ListSupervisor: the list's stored settings changed (an
/// operator paused it or changed its rate, on any daemon): read them again.
/// `resume`: an operator resumed it through this daemon, which also ends a
/// local drain.
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "()")]
pub struct ReloadList {
    pub resume: bool,
}

/// Anyone → Coordinator: messages were just queued; poll now instead of at
/// the next interval. Idempotent and losable.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Nudge;

/// ListSupervisor → Coordinator: the supervisor is stopping (idle or
/// drained); forget its address.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SupervisorStopped {
    pub list: SendingListId,
}

/// What a worker sends a batch for.
#[derive(Debug, Clone)]
pub enum ListHandle {
    /// The list as this daemon serves it.
    Serve(Arc<ListContext>),
    /// The list no longer exists: its messages are dead-lettered LIST_DELETED.
    Deleted(SendingListId),
}

impl ListHandle {
    pub fn id(&self) -> SendingListId {
        match self {
            ListHandle::Serve(c) => c.list.id,
            ListHandle::Deleted(id) => *id,
        }
    }
}

/// ListSupervisor → Worker: send this batch. The worker answers once every
/// message of the batch has a durable outcome or is back in the queue (or
/// the batch was given up and its claim must be released).
#[derive(Message, Debug)]
#[rtype(result = "BatchReport")]
pub struct ProcessBatch {
    pub batch: ClaimedBatch,
    pub list: ListHandle,
}

/// What a worker did with one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Accepted by the provider.
    pub sent: u64,
    /// Dead-lettered, by reason.
    pub failed: BTreeMap<FailureReason, u64>,
    /// Put back in the queue (retry, billing backoff, released).
    pub requeued: u64,
    /// Already attempted elsewhere: not sent again.
    pub skipped_already_attempted: u64,
    /// The rate limiter could not be reached: the supervisor pauses claiming
    /// until it answers again.
    pub rate_limiter_unavailable: bool,
    /// The batch was given up (a store error that retries did not fix, or the
    /// lease lapsed): the supervisor releases what the token still holds.
    pub aborted: Option<String>,
}

impl BatchReport {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Settings of a list that change while batches run (an operator's pause or
/// rate change): shared by the supervisor, which updates them on reload,
/// and its workers, which read them before each permit.
#[derive(Debug, Default)]
pub struct ListLive {
    paused: AtomicBool,
    rate_per_minute: AtomicU32,
}

impl ListLive {
    pub fn set(&self, list: &SendingList) {
        self.rate_per_minute
            .store(list.rate_limit_per_minute, Ordering::Relaxed);
        self.paused.store(
            list.status != ListStatus::Active || list.rate_limit_per_minute == 0,
            Ordering::Relaxed,
        );
    }

    /// Paused by status, or by a rate of 0.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn rate_per_minute(&self) -> u32 {
        self.rate_per_minute.load(Ordering::Relaxed)
    }
}

/// A list as one daemon serves it: its settings when last read, its
/// provider on this daemon, its blocked words compiled once, and the live
/// settings shared with its supervisor.
pub struct ListContext {
    pub list: SendingList,
    pub provider: SharedProvider,
    /// One automaton for all blocked words, and the words it was built from.
    blocked: Option<(AhoCorasick, Vec<String>)>,
    pub live: Arc<ListLive>,
}

impl std::fmt::Debug for ListContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListContext")
            .field("list", &self.list.id)
            .field("provider", &self.provider.kind())
            .finish()
    }
}

impl ListContext {
    pub fn new(list: SendingList, provider: SharedProvider, live: Arc<ListLive>) -> Self {
        let words: Vec<String> = list
            .blocked_words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        let blocked = if words.is_empty() {
            None
        } else {
            AhoCorasick::new(&words).ok().map(|ac| (ac, words))
        };
        live.set(&list);
        ListContext {
            list,
            provider,
            blocked,
            live,
        }
    }

    /// The list's rate now (an operator's change shows at once).
    pub fn rate_per_minute(&self) -> u32 {
        self.live.rate_per_minute()
    }

    /// The first blocked word that appears in `body` as a whole word,
    /// case-insensitively.
    pub fn blocked_word(&self, body: &str) -> Option<String> {
        let (ac, words) = self.blocked.as_ref()?;
        let lower = body.to_lowercase();
        for m in ac.find_overlapping_iter(&lower) {
            let before = lower[..m.start()].chars().next_back();
            let after = lower[m.end()..].chars().next();
            let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
            if boundary(before) && boundary(after) {
                return words.get(m.pattern().as_usize()).cloned();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use crate::providers::fake::{FakeProvider, FakeSettings};

    fn ctx_with(words: &[&str]) -> ListContext {
        let list = SendingList {
            id: SendingListId::new(),
            account: AccountId::new(),
            name: "l".into(),
            provider: ProviderSettings::Fake,
            from_numbers: vec!["+15550000001".into()],
            rate_limit_per_minute: 100,
            cooldown_secs: 0,
            blocked_words: words.iter().map(|w| w.to_string()).collect(),
            tcpa_window: TcpaWindow::default(),
            default_time_zone: None,
            help_reply: None,
            status: ListStatus::Active,
            discord_webhook_url: None,
            created_at: chrono::Utc::now(),
        };
        ListContext::new(
            list,
            Arc::new(FakeProvider::new(FakeSettings::default())),
            Arc::new(ListLive::default()),
        )
    }

    #[test]
    fn blocked_words_match_whole_words_case_insensitively() {
        let c = ctx_with(&["free", "Cash Prize", "ünï"]);
        assert_eq!(c.blocked_word("Get it FREE today").as_deref(), Some("free"));
        assert_eq!(
            c.blocked_word("win a cash prize!").as_deref(),
            Some("cash prize")
        );
        assert_eq!(c.blocked_word("freedom and carefree"), None);
        assert_eq!(c.blocked_word("ÜNÏ."), Some("ünï".into()));
        assert_eq!(c.blocked_word("free"), Some("free".into()));
        assert_eq!(ctx_with(&[]).blocked_word("free"), None);
    }

    #[test]
    fn a_rate_of_zero_pauses_the_list() {
        let live = ListLive::default();
        let mut list = ctx_with(&[]).list;
        list.rate_limit_per_minute = 0;
        live.set(&list);
        assert!(live.paused());
        list.rate_limit_per_minute = 60;
        live.set(&list);
        assert!(!live.paused());
        list.status = ListStatus::Paused;
        live.set(&list);
        assert!(live.paused());
    }
}
