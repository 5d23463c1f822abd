//! # Worker
//!
//! Owns: nothing but the batch it is working on (one at a time: its
//! supervisor hands it a new batch only after it answered the last).
//!
//! Handles: [`ProcessBatch`], as a pipeline of named stages, one file each.
//! After each stage (and each store write) is a crash point; ARCHITECTURE.md
//! ("Crash points") says what recovery does after each one.
//!
//! 1. [`screen`]: existing outcomes first (a re-claimed message that already
//!    has one is done; one still in doubt is left to Recovery), then
//!    staleness (or the billing TTL) and blocked content. Nothing is
//!    written yet: these failures are recorded in `finish`.
//! 2. Then, chunk by chunk (about one burst of the list's rate):
//!    - [`permit`]: admission permits from the list's rate limit; nothing is
//!      written before them, so a daemon that dies while waiting leaves
//!      nothing in doubt;
//!    - [`attempt`]: the contact's state re-read for this chunk, then the
//!      charge and the attempt records in one transaction (a record that
//!      already exists means someone tried: never sent again);
//!    - [`send`]: a send permit right before the provider call (the rate
//!      holds at the provider), the call, started only while this
//!      instance's lease allows it; every answer classified;
//!    - [`record`]: the outcomes, each failure with its dead letter and
//!      refund, durably, before anything marks the message done.
//! 3. [`finish`]: dead letters for the screened-out messages, requeues, and
//!    only then `complete` (the queue entries are deleted).
//!
//! Store writes that fail transiently are retried with backoff for as long
//! as the lease holds (the worker still has the answers in memory); a batch
//! that cannot go on is given up, and its supervisor releases the claim.
//!
//! Sends: [`Acquire`]/[`Throttled`] to the RateLimiter, [`Charge`]/[`Settle`]
//! to Billing, [`RecordFailures`] to DeadLetter.
//!
//! Restart: a crashed worker loses nothing. Its claim stays in the store;
//! the supervisor releases it, and every message it had attempted is
//! protected by its attempt record.

mod attempt;
mod finish;
mod permit;
mod record;
mod screen;
mod send;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::*;
use crate::instance::Instance;
use crate::messages::*;
use crate::metrics::Metrics;
use crate::store::{Requeue, StoreError, Stores};
use actix::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

pub use send::retry_delay;

/// Everything a worker talks to, injected (tests pass probes).
pub struct WorkerDeps {
    pub stores: Stores,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    /// This daemon instance: its tokens, its lease, shutdown.
    pub instance: Arc<Instance>,
    pub acquire: Recipient<Acquire>,
    pub throttled: Recipient<Throttled>,
    pub charge: Recipient<Charge>,
    pub settle: Recipient<Settle>,
    pub dead_letter: Recipient<RecordFailures>,
    /// Campaign run counters (fire and forget).
    pub count_runs: Recipient<crate::messages::CountRuns>,
    /// Discord alerts (fire and forget, never waits).
    pub alerts: crate::messages::AlertSink,
    pub metrics: Arc<Metrics>,
}

pub struct Worker {
    /// Shared by the list's six workers; the batch itself lives in the
    /// future the handler returns, not in the actor.
    deps: Arc<WorkerDeps>,
}

impl Worker {
    pub fn new(deps: Arc<WorkerDeps>) -> Self {
        Worker { deps }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<ProcessBatch> for Worker {
    type Result = ResponseFuture<BatchReport>;

    fn handle(&mut self, msg: ProcessBatch, _: &mut Self::Context) -> Self::Result {
        let run = BatchRun::new(self.deps.clone(), msg.list, msg.batch.token);
        Box::pin(run.execute(msg.batch.messages))
    }
}

/// Why a batch was given up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abort {
    #[error("{what}: {source}")]
    Store {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("{what}: actor mailbox: {source}")]
    Mailbox {
        what: &'static str,
        #[source]
        source: MailboxError,
    },
}

/// A step's failure before the retry policy decides.
pub(crate) enum StepError {
    Store(StoreError),
    Mailbox(MailboxError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

impl From<MailboxError> for StepError {
    fn from(e: MailboxError) -> Self {
        StepError::Mailbox(e)
    }
}

/// One batch's work and what it has decided so far.
pub(crate) struct BatchRun {
    d: Arc<WorkerDeps>,
    list: ListHandle,
    token: String,
    report: BatchReport,
    /// Failures of messages that were never attempted (nothing charged):
    /// written in `finish`, before the claim is completed.
    failures: Vec<FailedMessage>,
    /// Messages going back to the queue, written in `finish`.
    requeues: Vec<Requeue>,
    /// Whether a permit was granted in this batch yet (the inter-batch delay
    /// applies between grants).
    granted_before: bool,
    /// What became of campaign messages, counted once durable; handed to
    /// RunStats when the batch ends.
    runs: HashMap<ScheduleRunId, RunCounts>,
}

impl BatchRun {
    fn new(d: Arc<WorkerDeps>, list: ListHandle, token: String) -> Self {
        BatchRun {
            d,
            list,
            token,
            report: BatchReport::default(),
            failures: Vec::new(),
            requeues: Vec::new(),
            granted_before: false,
            runs: HashMap::new(),
        }
    }

    async fn execute(mut self, messages: Vec<QueuedTextMessage>) -> BatchReport {
        let list_id = self.list.id();
        self.d.metrics.claimed.inc_by(messages.len() as u64);
        if let Err(abort) = self.run(messages).await {
            tracing::error!(list = %list_id, token = %self.token, error = %abort,
                "batch given up; its claim is released and its messages re-claimed");
            self.report.aborted = Some(abort.to_string());
            self.d.instance.note_given_up();
        }
        // From here on, Recovery may judge this batch's unanswered attempts.
        self.d.instance.finish_token(&self.token);
        if !self.runs.is_empty() {
            let counts = std::mem::take(&mut self.runs).into_iter().collect();
            self.d.count_runs.do_send(CountRuns(counts));
        }
        self.report
    }

    async fn run(&mut self, messages: Vec<QueuedTextMessage>) -> Result<(), Abort> {
        let screened = self.screen(messages).await?;
        crate::failpoint::hit("worker.screened");
        match self.list.clone() {
            ListHandle::Serve(list) => self.deliver_all(&list, screened).await?,
            ListHandle::Deleted(id) => {
                let now = self.d.clock.now();
                for m in &screened {
                    self.fail(
                        m,
                        FailureReason::ListDeleted,
                        format!("sending list {id} no longer exists"),
                        None,
                        now,
                    );
                }
            }
        }
        self.finish().await
    }

    /// Record a failure of a message that was never attempted.
    fn fail(
        &mut self,
        m: &QueuedTextMessage,
        reason: FailureReason,
        detail: String,
        provider: Option<(&str, &str)>,
        at: Timestamp,
    ) {
        self.failures.push(crate::actors::outcome::failure(
            m, reason, detail, provider, at,
        ));
        *self.report.failed.entry(reason).or_insert(0) += 1;
    }

    fn requeue(
        &mut self,
        m: &QueuedTextMessage,
        not_before: Timestamp,
        attempts: u32,
        billing_since: Option<Timestamp>,
        last_error: Option<String>,
    ) {
        self.requeues.push(Requeue {
            id: m.id,
            not_before,
            send_at: None,
            attempts,
            billing_blocked_since: billing_since,
            last_error,
        });
        self.report.requeued += 1;
    }

    /// Put back for the next start of its contact's window, with that as its
    /// new send time (staleness counts from there).
    fn defer(&mut self, m: &QueuedTextMessage, to: Timestamp, why: String) {
        self.requeues.push(Requeue {
            id: m.id,
            not_before: to,
            send_at: Some(to),
            attempts: m.attempts,
            billing_blocked_since: m.billing_blocked_since,
            last_error: Some(why),
        });
        self.report.requeued += 1;
    }

    /// Put back unchanged (shutdown, pause, rate limiter unreachable, lease
    /// lost): nothing was attempted or charged.
    fn release(&mut self, m: &QueuedTextMessage) {
        let now = self.d.clock.now();
        self.requeue(
            m,
            now.max(m.not_before),
            m.attempts,
            m.billing_blocked_since,
            m.last_error.clone(),
        );
    }

    /// Run a store write until it is durable: transient failures are retried
    /// with backoff (the answers are only in memory) while the lease holds;
    /// anything else gives the batch up.
    async fn durable<T, F, Fut>(&self, what: &'static str, mut op: F) -> Result<T, Abort>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StepError>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut tries = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(StepError::Store(e)) if e.is_transient() && self.d.instance.lease_valid() => {
                    if tries.is_multiple_of(10) {
                        tracing::warn!(token = %self.token, what, error = %e, "store write failed; retrying");
                    }
                    tries += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(StepError::Store(source)) => return Err(Abort::Store { what, source }),
                Err(StepError::Mailbox(source)) => return Err(Abort::Mailbox { what, source }),
            }
        }
    }
}

/// A deterministic fraction in `[0, 1)` from a message id and an attempt
/// number (jitter that tests can predict and that differs per message).
fn jitter(id: MessageId, n: u32) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, n).hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0
}

impl BatchRun {
    /// Stage 2 for the whole batch: chunk by chunk, permit → attempt →
    /// send → record.
    async fn deliver_all(
        &mut self,
        list: &Arc<ListContext>,
        messages: Vec<QueuedTextMessage>,
    ) -> Result<(), Abort> {
        use permit::Permit;
        use std::collections::VecDeque;
        let cfg = self.d.config.clone();
        let deadline = tokio::time::Instant::now() + cfg.worker.permit_timeout.get();
        // About one burst of the list's rate (what is charged and recorded
        // before its provider calls, so what a crash can leave in doubt),
        // and a few provider requests. Each chunk costs five store round
        // trips (contacts, attempts, charge, commit, outcomes) whatever its
        // size; larger ones were slower on the test server, whose bulk
        // outcome update grows faster than its statement count.
        let burst =
            (list.rate_per_minute() as f64 / 60.0 * cfg.rate_limit.burst_seconds).max(1.0) as usize;
        let chunk_size = burst.min(list.provider.max_batch().max(1) * 4).max(1);
        let mut remaining: VecDeque<QueuedTextMessage> = messages.into();
        'chunks: while !remaining.is_empty() {
            let n = chunk_size.min(remaining.len());
            let mut pending: VecDeque<QueuedTextMessage> = remaining.drain(..n).collect();
            while !pending.is_empty() {
                match self.permit(list, pending.len(), deadline).await? {
                    Permit::Granted(k) => {
                        let part: Vec<QueuedTextMessage> = pending.drain(..k).collect();
                        let to_send = self.attempt(list, part).await?;
                        if to_send.is_empty() {
                            continue;
                        }
                        let answers = self.send(list, &to_send).await?;
                        self.record(list.list.id, &to_send, answers).await?;
                    }
                    Permit::Release(why) => {
                        tracing::debug!(list = %list.list.id, why, "putting the rest of the batch back");
                        let rest: Vec<QueuedTextMessage> =
                            pending.drain(..).chain(remaining.drain(..)).collect();
                        for m in &rest {
                            self.release(m);
                        }
                        break 'chunks;
                    }
                    Permit::Timeout(detail) => {
                        let now = self.d.clock.now();
                        let rest: Vec<QueuedTextMessage> =
                            pending.drain(..).chain(remaining.drain(..)).collect();
                        for m in &rest {
                            self.fail(
                                m,
                                FailureReason::RateLimitTimeout,
                                detail.clone(),
                                None,
                                now,
                            );
                        }
                        break 'chunks;
                    }
                }
            }
        }
        Ok(())
    }
}
