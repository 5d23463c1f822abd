//! Decides, at audience evaluation, whether one contact gets this run's
//! message and when: the filter chain of the spec ("Filters applied") as one
//! pure function.
//!
//! Checks, in this order; the first that fails is the skip reason recorded:
//! 1. `unsubscribed`: not subscribed on the list (opted out, or not on it at
//!    all), or blocked by the platform or the account. Consent comes first
//!    so that a contact who said STOP is always counted as such.
//! 2. `invalid_number`: the stored number is not valid per libphonenumber.
//! 3. `in_workflow`: in an active welcome journey, when the schedule excludes
//!    those.
//! 4. `cooldown`: the last campaign message on this list was less than the
//!    list's cooldown ago (exactly the cooldown ago is allowed).
//! 5. `quiet_hours`: outside the list's TCPA window in the contact's zone
//!    ([`super::phone::zone_for_contact`]); unless the schedule defers such
//!    contacts, in which case they are eligible with `send_at` at the next
//!    window opening. It comes last because it is the only check that a
//!    later time can fix.

use super::phone::valid_number_zone;
use super::window::LocalWindow;
use crate::domain::{Contact, ContactState, SendingListId, Timestamp};
use chrono_tz::Tz;

/// What the chain needs to know about one contact.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Subscribed on this list (false when unsubscribed or not on it).
    pub subscribed: bool,
    /// Blocked by the platform or the account.
    pub blocked: bool,
    /// In an active welcome journey.
    pub in_workflow: bool,
    /// The last campaign message on this list.
    pub last_sent: Option<Timestamp>,
    /// The stored number (E.164).
    pub phone: &'a str,
    /// The stored IANA zone; empty or unknown names fall back to the number.
    pub time_zone: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    /// The facts of a stored contact for one list.
    pub fn of(contact: &'a Contact, list: SendingListId) -> Self {
        Candidate {
            subscribed: matches!(contact.state_on(list), ContactState::Sendable),
            blocked: contact.blocked,
            in_workflow: contact.in_workflow,
            last_sent: contact
                .last_sent
                .iter()
                .filter(|l| l.list == list)
                .map(|l| l.at)
                .max(),
            phone: contact.phone.as_str(),
            time_zone: Some(contact.time_zone.as_str()).filter(|z| !z.trim().is_empty()),
        }
    }
}

/// The list's rules.
#[derive(Debug, Clone)]
pub struct ListRules {
    /// Minimum seconds between two campaign messages to one contact.
    pub cooldown_secs: u64,
    /// The TCPA window.
    pub window: LocalWindow,
    /// The zone of contacts whose zone is neither stored nor derivable from
    /// their number (an IANA name).
    pub default_zone: String,
}

/// The schedule's rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleRules {
    /// Skip contacts in an active welcome journey.
    pub exclude_in_workflow: bool,
    /// Queue contacts outside their window for its next opening instead of
    /// skipping them.
    pub defer_outside_window: bool,
}

/// Why a contact is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not subscribed on the list, or blocked.
    Unsubscribed,
    /// Messaged on this list within the cooldown.
    Cooldown,
    /// The stored number is not valid.
    InvalidNumber,
    /// Outside the TCPA window (and not deferred).
    QuietHours,
    /// In an active welcome journey (and the schedule excludes those).
    InWorkflow,
    /// The creative uses a placeholder this contact has no value for, and
    /// the placeholder has no default (decided when rendering, after the
    /// chain).
    MissingField,
}

impl SkipReason {
    /// The stable key of the run's skip counts (`ScheduleRun::skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unsubscribed => "unsubscribed",
            SkipReason::Cooldown => "cooldown",
            SkipReason::InvalidNumber => "invalid_number",
            SkipReason::QuietHours => "quiet_hours",
            SkipReason::InWorkflow => "in_workflow",
            SkipReason::MissingField => "missing_field",
        }
    }
}

/// The chain's answer for one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue the message for `send_at` (now, or the next window opening).
    Eligible {
        /// When the message may be sent.
        send_at: Timestamp,
        /// The zone the window was checked in.
        tz: Tz,
    },
    /// Do not queue it.
    Skip(SkipReason),
}

/// Runs the chain (order in the module doc) for one contact at `now`.
pub fn evaluate(
    contact: &Candidate<'_>,
    list: &ListRules,
    schedule: &ScheduleRules,
    now: Timestamp,
) -> Decision {
    if contact.blocked || !contact.subscribed {
        return Decision::Skip(SkipReason::Unsubscribed);
    }
    let Some(tz) = valid_number_zone(contact.phone, contact.time_zone, &list.default_zone) else {
        return Decision::Skip(SkipReason::InvalidNumber);
    };
    if schedule.exclude_in_workflow && contact.in_workflow {
        return Decision::Skip(SkipReason::InWorkflow);
    }
    if let Some(last) = contact.last_sent {
        let cooldown = i64::try_from(list.cooldown_secs).unwrap_or(i64::MAX);
        let elapsed = now.signed_duration_since(last).num_seconds();
        if elapsed < cooldown {
            return Decision::Skip(SkipReason::Cooldown);
        }
    }
    if list.window.check(now, tz).allowed {
        Decision::Eligible { send_at: now, tz }
    } else if schedule.defer_outside_window {
        Decision::Eligible {
            send_at: list.window.next_start(now, tz),
            tz,
        }
    } else {
        Decision::Skip(SkipReason::QuietHours)
    }
}
