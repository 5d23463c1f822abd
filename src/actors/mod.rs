//! The actor tree (ARCHITECTURE.md draws it):
//!
//! ```text
//! Coordinator ──┬── ListSupervisor (one per sending list) ── 6 × Worker
//!               └── ...
//! RateLimiter · Billing · DeadLetter · DeliveryIntake · ClickIntake ·
//! Lease · Recovery · Resolver · Scheduler · RunStats ·
//! WebhookSender · Alerts                                (one each per daemon)
//! ```
//!
//! Each file starts with the actor's contract: what it owns, what it handles,
//! what it sends, and what happens when it restarts.

pub mod alerts;
pub mod billing;
pub mod click_intake;
pub mod coalesce;
pub mod coordinator;
pub mod customer_webhooks;
pub mod dead_letter;
pub mod delivery_intake;
pub mod lease;
pub mod outcome;
pub mod rate_limiter;
pub mod recovery;
pub mod resolver;
pub mod run_stats;
pub mod scheduler;
pub mod supervisor;
pub mod worker;
