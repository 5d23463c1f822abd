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
//! - [`actors`]: one file per actor; [`messages`]: their protocol.
//! - [`app`]: wiring of one daemon's actor tree.
//! - [`providers`]: the provider port and its adapters.
//! - [`domain`]: the stored model (typed structs, newtype ids, money, E.164).
//! - [`store`]: storage ports and their MongoDB and in-memory adapters.
//! - [`ratelimit`]: token-bucket state in Redis (Lua) or in-process.
//! - [`config`]: typed configuration, env overrides, validation.
//! - [`clock`]: time as a dependency.
//! - [`telemetry`]: logging and masking of numbers, bodies and secrets.

pub mod actors;
pub mod app;
pub mod audit;
pub mod bench;
pub mod bus;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod embedded;
pub mod failpoint;
pub mod http;
pub mod instance;
pub mod messages;
pub mod metrics;
pub mod mock;
pub mod providers;
pub mod ratelimit;
pub mod rules;
pub mod seed;
pub mod serve;
pub mod store;
pub mod telemetry;
