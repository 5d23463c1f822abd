//! This daemon instance: who it is, the claim tokens it minted, and whether
//! its lease currently allows it to act.
//!
//! An instance id is the daemon id plus a random part chosen at start
//! (`<daemon id>:<24 hex>`), so a daemon restarted under the same id never
//! reuses a predecessor's claim tokens (`<instance>:<sequence>`): no store
//! operation can act on messages by a token this instance did not mint.
//!
//! Lease validity is tracked on this process's monotonic clock, from the
//! moment a renewal request was *sent* (the server stamps the lease no
//! earlier than that): the instance may start a provider call only while
//! `elapsed < lease_ttl - provider timeout`, so any call it starts ends
//! before the database could consider the lease expired. When renewals stop
//! succeeding the instance fences itself: it stops claiming and sending, and
//! another daemon's recovery takes over its work once the lease lapses.

use crate::domain::{SendingListId, Timestamp};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Instance {
    /// `<daemon id>:<random>`; the lease's key and every token's prefix.
    pub id: String,
    /// The configured daemon id.
    pub daemon_id: String,
    /// Next batch sequence number.
    seq: AtomicU64,
    /// Tokens of batches running now (a token leaves once every outcome of
    /// its batch is durable or the batch was given up): recovery judges this
    /// instance's unanswered attempts only when their token is not here.
    active: Mutex<HashSet<String>>,
    /// Monotonic reference point for `valid_until_ms`.
    epoch: Instant,
    /// Milliseconds after `epoch` until which provider calls may start.
    valid_until_ms: AtomicU64,
    /// `database time - local time`, measured at each renewal, so times this
    /// daemon writes for the hard horizon are on the database's clock.
    db_offset_ms: AtomicI64,
    /// The lists this daemon serves now (reported in its lease).
    lists: Mutex<Vec<SendingListId>>,
    /// Messages this instance sent per list since it started, counted by
    /// the workers as each chunk's outcomes are recorded (its lease reports
    /// the rate between two renewals).
    sent_by_list: Mutex<std::collections::HashMap<SendingListId, u64>>,
    /// Set when the process is stopping.
    pub shutting_down: AtomicBool,
    /// This instance is the recovery leader (as its last sweep found: the
    /// live instance with the smallest id). The Resolver runs only here.
    leader: AtomicBool,
    /// The database's clock as the last lease renewal returned it, and the
    /// moment its answer arrived: the database's time now, without asking
    /// it (see [`Instance::server_now`]).
    server_clock: Mutex<Option<(Timestamp, Instant)>>,
    /// Unix milliseconds at which a message this daemon knows of falls due
    /// (i64::MAX: none): the Coordinator polls then, however far it has
    /// backed off.
    wake_ms: AtomicI64,
    /// A batch was given up since the last whole recovery sweep.
    gave_up: AtomicBool,
}

impl Instance {
    pub fn new(daemon_id: &str) -> Instance {
        Instance {
            id: format!("{daemon_id}:{}", bson::oid::ObjectId::new().to_hex()),
            daemon_id: daemon_id.to_string(),
            seq: AtomicU64::new(0),
            active: Mutex::new(HashSet::new()),
            epoch: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            db_offset_ms: AtomicI64::new(0),
            lists: Mutex::new(Vec::new()),
            sent_by_list: Mutex::new(std::collections::HashMap::new()),
            shutting_down: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            server_clock: Mutex::new(None),
            wake_ms: AtomicI64::new(i64::MAX),
            gave_up: AtomicBool::new(false),
        }
    }

    /// A batch was given up: the next recovery sweep judges its attempts.
    pub fn note_given_up(&self) {
        self.gave_up.store(true, Ordering::Relaxed);
    }

    /// Was a batch given up since the last call?
    pub fn take_given_up(&self) -> bool {
        self.gave_up.swap(false, Ordering::Relaxed)
    }

    /// A queued message falls due at `at` (a retry, a deferral, the next
    /// message in the queue): the Coordinator polls no later than that.
    pub fn wake_at(&self, at: Timestamp) {
        self.wake_ms
            .fetch_min(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Has a wake-up time come (`now` on the daemon's clock)? Clears it.
    pub fn take_wake(&self, now: Timestamp) -> bool {
        let at = self.wake_ms.load(Ordering::Relaxed);
        at <= now.timestamp_millis()
            && self
                .wake_ms
                .compare_exchange(at, i64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// A renewal answered at `received` with the database's time `db_time`.
    pub fn set_server_clock(&self, db_time: Timestamp, received: Instant) {
        *self.server_clock.lock().unwrap_or_else(|e| e.into_inner()) = Some((db_time, received));
    }

    /// The database's clock now, estimated from the last renewal's answer
    /// (its time plus the monotonic time since it arrived), when that
    /// answer is younger than `fresh`. The estimate is never ahead of the
    /// database: the server stamped the lease before its answer arrived, so
    /// it runs behind by at most one round trip, and a lease is judged
    /// lapsed that much later, never earlier.
    pub fn server_now(&self, fresh: Duration) -> Option<Timestamp> {
        let (at, received) = (*self.server_clock.lock().unwrap_or_else(|e| e.into_inner()))?;
        let age = received.elapsed();
        (age < fresh).then(|| at + crate::clock::chrono_dur(age))
    }

    /// A new claim token, registered as running.
    pub fn mint_token(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}:{n}", self.id);
        self.lock_active().insert(token.clone());
        token
    }

    /// The batch holding `token` is over (outcomes durable, or given up).
    pub fn finish_token(&self, token: &str) {
        self.lock_active().remove(token);
    }

    pub fn active_tokens(&self) -> Vec<String> {
        self.lock_active().iter().cloned().collect()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A renewal sent at `sent` succeeded: provider calls may start for
    /// `window` after `sent`.
    pub fn renewed(&self, sent: Instant, window: Duration) {
        let until = sent.saturating_duration_since(self.epoch) + window;
        self.valid_until_ms
            .fetch_max(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// May this instance claim and start provider calls now?
    pub fn lease_valid(&self) -> bool {
        self.now_ms() < self.valid_until_ms.load(Ordering::Relaxed)
    }

    /// Record the database clock's offset from ours.
    pub fn set_db_offset(&self, offset: chrono::Duration) {
        self.db_offset_ms
            .store(offset.num_milliseconds(), Ordering::Relaxed);
    }

    /// `local` moved onto the database's clock.
    pub fn db_time(&self, local: Timestamp) -> Timestamp {
        local + chrono::Duration::milliseconds(self.db_offset_ms.load(Ordering::Relaxed))
    }

    pub fn set_lists(&self, lists: Vec<SendingListId>) {
        *self.lists.lock().unwrap_or_else(|e| e.into_inner()) = lists;
    }

    /// `n` messages of `list` taken by the provider (the current rate the
    /// lease reports).
    pub fn count_sent(&self, list: SendingListId, n: u64) {
        if n > 0 {
            *self
                .sent_by_list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(list)
                .or_insert(0) += n;
        }
    }

    /// Messages sent per list since this instance started.
    pub fn sent_counts(&self) -> std::collections::HashMap<SendingListId, u64> {
        self.sent_by_list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn lists(&self) -> Vec<SendingListId> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_daemon_never_reuses_a_token() {
        let a = Instance::new("d");
        let b = Instance::new("d");
        assert_ne!(a.id, b.id);
        let ta = a.mint_token();
        let tb = b.mint_token();
        assert_ne!(ta, tb);
        assert!(ta.starts_with(&a.id));
        assert_eq!(a.active_tokens(), vec![ta.clone()]);
        a.finish_token(&ta);
        assert!(a.active_tokens().is_empty());
    }

    #[test]
    fn the_lease_window_opens_on_renewal_and_closes_after_it() {
        let i = Instance::new("d");
        assert!(!i.lease_valid(), "no renewal yet");
        i.renewed(Instant::now(), Duration::from_secs(60));
        assert!(i.lease_valid());
        let j = Instance::new("d");
        j.renewed(Instant::now(), Duration::ZERO);
        assert!(!j.lease_valid());
    }

    #[test]
    fn the_earliest_wake_up_wins_and_is_taken_once() {
        let i = Instance::new("d");
        let t0 = chrono::Utc::now();
        assert!(!i.take_wake(t0), "nothing to wake for");
        i.wake_at(t0 + chrono::Duration::seconds(10));
        i.wake_at(t0 + chrono::Duration::seconds(2));
        i.wake_at(t0 + chrono::Duration::seconds(5));
        assert!(!i.take_wake(t0 + chrono::Duration::seconds(1)), "not yet");
        assert!(i.take_wake(t0 + chrono::Duration::seconds(2)));
        assert!(
            !i.take_wake(t0 + chrono::Duration::seconds(20)),
            "taken: the later ones are the queue's next due time's job"
        );
    }

    #[test]
    fn the_database_clock_is_estimated_from_a_fresh_renewal_only() {
        let i = Instance::new("d");
        assert_eq!(i.server_now(Duration::from_secs(10)), None, "never renewed");
        let db = chrono::Utc::now() - chrono::Duration::hours(1);
        i.set_server_clock(db, Instant::now() - Duration::from_secs(3));
        let est = i
            .server_now(Duration::from_secs(10))
            .expect("a 3 s old renewal is fresh");
        let ahead = est - db;
        assert!(
            ahead >= chrono::Duration::seconds(3) && ahead < chrono::Duration::seconds(4),
            "the database's time plus the time since its answer: {ahead}"
        );
        assert_eq!(i.server_now(Duration::from_secs(2)), None, "too old");
    }

    #[test]
    fn a_given_up_batch_is_noted_once() {
        let i = Instance::new("d");
        assert!(!i.take_given_up());
        i.note_given_up();
        assert!(i.take_given_up());
        assert!(!i.take_given_up());
    }
}
