//! When a schedule triggers: its first occurrence, the one after an
//! occurrence, and whether a late trigger is still on time.
//!
//! A one-off schedule has one occurrence, its `at`. A recurring one has a
//! five-field cron expression (minute, hour, day of month, month, day of
//! week; `@daily`-style aliases too) read on the wall clock of its IANA time
//! zone, through the `croner` crate. Daylight-saving changes are handled as
//! croner documents them (the Open Cron Pattern Specification, as Vixie
//! cron does):
//!
//! - spring forward (a gap): a fixed-time expression (`30 2 * * *`) whose
//!   time falls in the gap fires once at the first valid time after the gap,
//!   the same day; wildcard or stepped expressions (`*/15 * * * *`) skip the
//!   occurrences inside the gap;
//! - fall back (a repeated hour): a fixed-time expression fires once, at the
//!   first pass; wildcard or stepped ones fire on both passes.
//!
//! Occurrences are whole seconds; each one is its own run, keyed by
//! `(schedule, occurrence)`, so a recurring campaign has one run (with its
//! own statistics) per occurrence.

use crate::domain::{ScheduleKind, Timestamp};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Why a schedule's timing is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OccurrenceError {
    #[error("cron expression {expr:?} is invalid: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("time zone {0:?} is not an IANA time zone name")]
    UnknownZone(String),
    #[error("cron expression {0:?} never matches a real time")]
    NeverMatches(String),
}

/// A parsed schedule timing.
#[derive(Debug, Clone)]
pub enum Recurrence {
    Once(Timestamp),
    Cron { cron: Box<Cron>, tz: Tz },
}

impl Recurrence {
    /// Parses a schedule's kind (every error is precise, for the operator).
    pub fn parse(kind: &ScheduleKind) -> Result<Recurrence, OccurrenceError> {
        match kind {
            ScheduleKind::Once { at } => Ok(Recurrence::Once(whole_second(*at))),
            ScheduleKind::Recurring { cron, time_zone } => {
                let tz: Tz = time_zone
                    .parse()
                    .map_err(|_| OccurrenceError::UnknownZone(time_zone.clone()))?;
                let parsed = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build()
                    .parse(cron)
                    .map_err(|e| OccurrenceError::InvalidCron {
                        expr: cron.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(Recurrence::Cron {
                    cron: Box::new(parsed),
                    tz,
                })
            }
        }
    }

    /// The first occurrence at or after `from` (None: none left).
    pub fn first_at_or_after(&self, from: Timestamp) -> Result<Option<Timestamp>, OccurrenceError> {
        match self {
            Recurrence::Once(at) => Ok((*at >= whole_second(from)).then_some(*at)),
            Recurrence::Cron { .. } => self.search(from, true),
        }
    }

    /// The occurrence after `occurrence` (None: none left; a one-off
    /// schedule has none).
    pub fn after(&self, occurrence: Timestamp) -> Result<Option<Timestamp>, OccurrenceError> {
        match self {
            Recurrence::Once(_) => Ok(None),
            Recurrence::Cron { .. } => self.search(occurrence, false),
        }
    }

    fn search(
        &self,
        from: Timestamp,
        inclusive: bool,
    ) -> Result<Option<Timestamp>, OccurrenceError> {
        let Recurrence::Cron { cron, tz } = self else {
            return Ok(None);
        };
        // croner searches on the zone's wall clock; a start with sub-second
        // precision would make `inclusive` miss a whole-second match.
        let start: DateTime<Tz> = whole_second(from).with_timezone(tz);
        match cron.find_next_occurrence(&start, inclusive) {
            Ok(t) => Ok(Some(t.with_timezone(&Utc))),
            Err(croner::errors::CronError::TimeSearchLimitExceeded) => {
                Err(OccurrenceError::NeverMatches(cron.pattern.to_string()))
            }
            Err(e) => Err(OccurrenceError::InvalidCron {
                expr: cron.pattern.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

/// What to do with a due occurrence found at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    /// Trigger it (it is due, and at most `grace` late).
    OnTime,
    /// More than `grace` late (every daemon was down): record it missed.
    Missed,
}

/// Whether an occurrence found due at `now` may still be triggered.
pub fn lateness(occurrence: Timestamp, now: Timestamp, grace: std::time::Duration) -> Lateness {
    let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
    if now.signed_duration_since(occurrence) > grace {
        Lateness::Missed
    } else {
        Lateness::OnTime
    }
}

fn whole_second(t: Timestamp) -> Timestamp {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn cron(expr: &str, tz: &str) -> Recurrence {
        Recurrence::parse(&ScheduleKind::Recurring {
            cron: expr.into(),
            time_zone: tz.into(),
        })
        .unwrap()
    }

    #[test]
    fn a_daily_cron_follows_the_zones_wall_clock_across_dst() {
        // 09:00 New York: 14:00 UTC in winter, 13:00 UTC in summer.
        let r = cron("0 9 * * *", "America/New_York");
        let first = r
            .first_at_or_after(utc(2026, 3, 7, 15, 0))
            .unwrap()
            .unwrap();
        assert_eq!(first, utc(2026, 3, 8, 13, 0)); // DST began that night
        let before = r
            .first_at_or_after(utc(2026, 3, 6, 12, 0))
            .unwrap()
            .unwrap();
        assert_eq!(before, utc(2026, 3, 6, 14, 0));
        assert_eq!(r.after(before).unwrap(), Some(utc(2026, 3, 7, 14, 0)));
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_fires_once_right_after_it() {
        // 02:30 does not exist in New York on 2026-03-08 (02:00 → 03:00).
        let r = cron("30 2 * * *", "America/New_York");
        let t = r.first_at_or_after(utc(2026, 3, 8, 0, 0)).unwrap().unwrap();
        assert_eq!(t, utc(2026, 3, 8, 7, 0)); // 03:00 EDT
        assert_eq!(r.after(t).unwrap(), Some(utc(2026, 3, 9, 6, 30))); // 02:30 EDT
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_fires_once() {
        // 01:30 happens twice in New York on 2026-11-01.
        let r = cron("30 1 * * *", "America/New_York");
        let t = r
            .first_at_or_after(utc(2026, 11, 1, 0, 0))
            .unwrap()
            .unwrap();
        assert_eq!(t, utc(2026, 11, 1, 5, 30)); // 01:30 EDT, the first pass
        assert_eq!(r.after(t).unwrap(), Some(utc(2026, 11, 2, 6, 30)));
    }

    #[test]
    fn a_one_off_schedule_has_one_occurrence() {
        let at = utc(2026, 12, 1, 10, 0);
        let r = Recurrence::parse(&ScheduleKind::Once { at }).unwrap();
        assert_eq!(
            r.first_at_or_after(utc(2026, 12, 1, 9, 0)).unwrap(),
            Some(at)
        );
        assert_eq!(r.first_at_or_after(at).unwrap(), Some(at));
        assert_eq!(r.first_at_or_after(utc(2026, 12, 1, 11, 0)).unwrap(), None);
        assert_eq!(r.after(at).unwrap(), None);
    }

    #[test]
    fn bad_timings_are_precise_errors() {
        let e = Recurrence::parse(&ScheduleKind::Recurring {
            cron: "61 * * * *".into(),
            time_zone: "UTC".into(),
        })
        .unwrap_err();
        assert!(matches!(e, OccurrenceError::InvalidCron { .. }), "{e}");
        let e = Recurrence::parse(&ScheduleKind::Recurring {
            cron: "0 9 * * *".into(),
            time_zone: "Mars/Olympus".into(),
        })
        .unwrap_err();
        assert_eq!(e, OccurrenceError::UnknownZone("Mars/Olympus".into()));
        // Seconds are not part of a campaign's timing.
        assert!(
            Recurrence::parse(&ScheduleKind::Recurring {
                cron: "0 0 9 * * *".into(),
                time_zone: "UTC".into(),
            })
            .is_err()
        );
    }

    #[test]
    fn lateness_within_grace_triggers_and_beyond_is_missed() {
        let occ = utc(2026, 12, 1, 10, 0);
        let grace = std::time::Duration::from_secs(600);
        assert_eq!(
            lateness(occ, utc(2026, 12, 1, 10, 10), grace),
            Lateness::OnTime
        );
        assert_eq!(
            lateness(occ, utc(2026, 12, 1, 10, 11), grace),
            Lateness::Missed
        );
    }
}
