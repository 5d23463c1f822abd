//! The pure rules of a campaign run: what the Scheduler decides about each
//! contact and each message before anything is queued.
//!
//! Everything here is a plain function of its arguments: no actors, no
//! store, no async, no clock (`now` is a parameter) and no I/O, except
//! [`inspect`], the command-line front end. That keeps each rule testable on
//! its own and lets operators run the same code on a file
//! (`trackly inspect`).
//!
//! # Layout
//!
//! - [`phone`]: number validity, E.164 and region (`phonenumber`, i.e.
//!   libphonenumber's metadata) and the number's time zones (libphonenumber's
//!   prefix table, vendored in `data/` by `scripts/gen-phone-timezones`).
//! - [`window`]: TCPA quiet hours in the contact's zone, across DST.
//! - [`placeholders`]: `{{first_name|there}}` templates: parsing, validation,
//!   rendering.
//! - [`variants`]: which variant a contact gets: a stable weighted split, or
//!   Thompson sampling on clicks.
//! - [`links`]: finding URLs in a body and replacing them with short links.
//! - [`eligibility`]: the per-contact filter chain of audience evaluation.
//! - [`keywords`]: what an inbound message asks for (STOP, START, HELP).
//! - [`inspect`]: `trackly inspect number|segments|window|keyword`.
//!
//! Segment counting lives in [`crate::domain::sms`], because billing uses it
//! too.

pub mod eligibility;
pub mod inspect;
pub mod keywords;
pub mod links;
pub mod phone;
pub mod placeholders;
pub mod variants;
pub mod window;
