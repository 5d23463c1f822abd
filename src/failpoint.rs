//! Crash points: named places right after a pipeline stage or a store write
//! where a test can kill the process (SIGKILL, no cleanup), to prove that
//! recovery restores the guarantees from every one of them (ARCHITECTURE.md,
//! "Crash points", says what recovery does after each).
//!
//! `TRACKLY_FAILPOINT=<name>` kills the process the first time `<name>` is
//! hit; `<name>@<n>` the n-th time. Only in builds with debug assertions
//! (the test profile): in release builds [`hit`] compiles to nothing.

/// Every crash point, in pipeline order.
pub const ALL: &[&str] = &[
    "coordinator.claimed",
    "worker.screened",
    "worker.permitted",
    "worker.charged",
    "worker.sent",
    "worker.settled",
    "worker.unsubscribed",
    "worker.dead_lettered",
    "worker.requeued",
    "worker.completed",
    "recovery.settled",
    "recovery.removed",
    "recovery.released",
    "intake.applied",
    "resolver.taken",
    "resolver.not_taken",
    "webhooks.enqueued",
    "webhooks.claimed",
    "webhooks.recorded",
    "alerts.counted",
    "alerts.claimed",
    "alerts.held",
    "alerts.flagged",
    "alerts.disabled",
    "lease.renewed",
    "scheduler.run_started",
    "scheduler.advanced",
    "scheduler.cooldowns_reserved",
    "scheduler.page_committed",
    "scheduler.finished",
];

#[cfg(debug_assertions)]
mod active {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn spec() -> &'static Option<(String, u64)> {
        static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let v = std::env::var("TRACKLY_FAILPOINT").ok()?;
            let v = v.trim();
            if v.is_empty() {
                return None;
            }
            Some(match v.split_once('@') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1).max(1)),
                None => (v.to_string(), 1),
            })
        })
    }

    pub fn hit(name: &'static str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some((target, n)) = spec() else { return };
        if target != name {
            return;
        }
        if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("failpoint {name}: killing the process");
            // SAFETY: sends a signal to our own process; no memory is touched.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Kill the process here if the test asked for it (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &'static str) {
    active::hit(name)
}

/// Compiled out of release builds.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &'static str) {}
