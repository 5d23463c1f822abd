//! Campaigns from trigger to queue: when a schedule is due
//! ([`occurrence`]), what a run needs and whether it is valid ([`plan`]),
//! each page of the audience screened and turned into messages
//! ([`evaluate`]), a run executed page by page with its checkpoint
//! ([`run`]), and the dry run that explains a schedule before it sends
//! ([`explain`]), with a preview of one creative for one contact.
//!
//! The Scheduler actor ([`crate::actors::scheduler`]) drives runs; the rules
//! themselves are the plain functions of [`crate::rules`].

pub mod evaluate;
pub mod explain;
pub mod occurrence;
pub mod plan;
pub mod run;
