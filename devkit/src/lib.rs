//! # Trackly devkit
//!
//! Everything that helps develop and demonstrate the daemon without being
//! part of it: the daemon's library and binary build without this crate and
//! its dependencies (the progress bar, for one).
//!
//! # Layout
//!
//! - [`mock`]: the mock provider (Infobip, Twilio and CM over real HTTP, with
//!   failure knobs and delivery reports), one file per provider.
//! - [`seed`]: builders for accounts, lists, contacts and queued messages,
//!   shared by the tests, the demo and the benchmark.
//! - [`harness`]: a daemon with its HTTP server wired to an in-process mock.
//! - [`webhook_receiver`]: a customer's delivery-webhook receiver that checks
//!   signatures (tests and the `webhooks` benchmark).
//! - [`discord_mock`]: a Discord webhook endpoint that checks Discord's
//!   payload limits and answers 429 or 404 on demand (alert tests).
//! - [`demo`]: `devkit demo` (the README's `cargo demo`).
//! - [`bench`]: `devkit bench`, reading its figures from the daemon's
//!   metrics registry; [`campaign_bench`]: its `campaign` suite (audience
//!   evaluation, and a campaign end to end); [`webhook_bench`]: its
//!   `webhooks` suite (customer webhook deliveries per second).

pub mod bench;
pub mod campaign_bench;
pub mod demo;
pub mod discord_mock;
pub mod harness;
pub mod mock;
pub mod resolver_bench;
pub mod seed;
pub mod webhook_bench;
pub mod webhook_receiver;
