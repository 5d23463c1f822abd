//! # Trackly Executor
//!
//! The daemon that sends SMS campaigns: it claims queued messages from
//! MongoDB, rate-limits them through Redis, sends them through the list's
//! provider, records the outcome, bills the account and dead-letters what
//! cannot be sent. ARCHITECTURE.md has the actor tree and the life of one
//! message.
//!
//! # Layout
//!
//! The daemon and nothing else: the development tooling (mock provider,
//! seed data, demo, benchmark) is the `devkit` workspace member.
//!
//! - [`actors`]: one file per actor (the worker is a folder, one file per
//!   stage), each starting with its contract; [`messages`]: their protocol
//!   (nothing there imports from `actors`).
//! - [`app`]: wiring of one daemon's actor tree; [`serve`]: `trackly serve`
//!   (start-up, signals, shutdown).
//! - [`instance`]: this daemon instance (claim tokens, the lease's window);
//!   [`bus`]: hints between daemons (Redis pub/sub or in-process).
//! - [`providers`]: the provider port and its adapters (one file each; the
//!   batch APIs share `providers/batch.rs`).
//! - [`domain`]: the stored model (typed structs, newtype ids, money, E.164,
//!   SMS segments).
//! - [`store`]: storage ports and their MongoDB and in-memory adapters.
//! - [`rules`]: the campaign rules as plain functions (numbers, TCPA
//!   windows, placeholders, variants, links, eligibility) and `trackly
//!   inspect`.
//! - [`ratelimit`]: token-bucket state in Redis (Lua) or in-process.
//! - [`audit`]: `trackly audit`, the guarantees checked on a live store;
//!   [`ctl`]: `trackly ctl`, the admin API from the command line.
//! - [`http`]: the HTTP routes (health, webhooks) and the one error table.
//! - [`config`]: typed configuration, layering from file and environment,
//!   validation, secrets.
//! - [`metrics`]: the Prometheus registry everything records into.
//! - [`net`]: the SSRF rule for customer-supplied URLs (resolved, vetted,
//!   pinned).
//! - [`clock`]: time as a dependency; [`failpoint`]: crash points for the
//!   crash test (debug builds only); [`telemetry`]: logging and masking of
//!   numbers, bodies and secrets.

pub mod actors;
pub mod app;
pub mod audit;
pub mod bus;
pub mod campaign;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod domain;
pub mod failpoint;
pub mod http;
pub mod instance;
pub mod messages;
pub mod metrics;
pub mod net;
pub mod providers;
pub mod ratelimit;
pub mod rules;
pub mod serve;
pub mod store;
pub mod telemetry;
