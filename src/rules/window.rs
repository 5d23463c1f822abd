//! Decides whether an instant falls inside a contact's TCPA sending window
//! (local wall-clock time in the contact's own IANA zone) and, if not, when
//! the window opens next.
//!
//! Rules:
//! - The window is `[start, end)` in local wall-clock time.
//! - A window whose start is after its end crosses midnight (`21:00`–`06:00`
//!   means from 21:00 to 06:00 the next morning). A window whose start equals
//!   its end is refused ([`WindowError::Empty`]): it could mean "never" or
//!   "always", and guessing either is wrong for a compliance rule.
//! - Daylight saving time, for the next opening: a start time that falls into
//!   a spring-forward gap opens the window at the first instant after the gap
//!   (the transition itself); a start time that occurs twice in a fall-back
//!   fold opens it at the first occurrence.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::TcpaWindow;

/// A window that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Start and end are the same time of day.
    #[error("empty window: start and end are both {0}")]
    Empty(NaiveTime),
    /// A stored minute-of-day past 24:00.
    #[error("minute of day out of range (0..=1440): {0}")]
    MinuteOutOfRange(u16),
}

/// A validated local-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl LocalWindow {
    /// A window from `start` (inclusive) to `end` (exclusive), crossing
    /// midnight when `start > end`.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, WindowError> {
        if start == end {
            return Err(WindowError::Empty(start));
        }
        Ok(LocalWindow { start, end })
    }

    /// The stored form of a list's window (minutes after local midnight;
    /// 1440 as an end means midnight).
    pub fn from_tcpa(w: &TcpaWindow) -> Result<Self, WindowError> {
        let time = |m: u16| {
            if m > 1440 {
                return Err(WindowError::MinuteOutOfRange(m));
            }
            let m = u32::from(m % 1440);
            NaiveTime::from_hms_opt(m / 60, m % 60, 0).ok_or(WindowError::MinuteOutOfRange(0))
        };
        LocalWindow::new(time(w.start_minute)?, time(w.end_minute)?)
    }

    /// Inclusive start.
    pub fn start(&self) -> NaiveTime {
        self.start
    }

    /// Exclusive end.
    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Whether a local wall-clock time is inside.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// [`window_check`] for this window.
    pub fn check(&self, utc: DateTime<Utc>, tz: Tz) -> WindowCheck {
        let local = utc.with_timezone(&tz);
        WindowCheck {
            allowed: self.contains(local.time()),
            local: local.fixed_offset(),
        }
    }

    /// [`next_window_start`] for this window.
    pub fn next_start(&self, utc: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self.check(utc, tz).allowed {
            return utc;
        }
        let today = utc.with_timezone(&tz).date_naive();
        let mut fallback = None;
        // Today's start may still be ahead; otherwise tomorrow's. A few more
        // days cover a whole skipped day (Pacific/Apia, 2011-12-30) and a
        // window that lies entirely inside a gap on one day.
        for day in today.iter_days().take(4) {
            let local = day.and_time(self.start);
            let at = match tz.from_local_datetime(&local) {
                // Between the two occurrences of a fold, the second one is
                // the next time the wall clock shows `start`.
                LocalResult::Ambiguous(a, b) if a.min(b) <= utc => a.max(b).with_timezone(&Utc),
                _ => first_instant_at(tz, local),
            };
            if at <= utc {
                continue;
            }
            if self.check(at, tz).allowed {
                return at;
            }
            fallback.get_or_insert(at);
        }
        // Unreachable with real zones (every day has a start instant inside
        // its window unless the whole window is skipped); the first later
        // start is still the honest answer.
        fallback.unwrap_or(utc)
    }
}

/// The answer of [`window_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCheck {
    /// Whether the local wall-clock time is inside the window.
    pub allowed: bool,
    /// The instant in the contact's zone, with the offset in force then.
    pub local: DateTime<FixedOffset>,
}

/// Whether `utc` is inside `[start, end)` of the local wall clock in `tz`.
pub fn window_check(
    utc: DateTime<Utc>,
    tz: Tz,
    start: NaiveTime,
    end: NaiveTime,
) -> Result<WindowCheck, WindowError> {
    Ok(LocalWindow::new(start, end)?.check(utc, tz))
}

/// `utc` itself when inside the window, else the next instant the local
/// wall clock in `tz` reaches `start` (DST rules in the module doc).
pub fn next_window_start(
    utc: DateTime<Utc>,
    tz: Tz,
    start: NaiveTime,
    end: NaiveTime,
) -> Result<DateTime<Utc>, WindowError> {
    Ok(LocalWindow::new(start, end)?.next_start(utc, tz))
}

/// The first instant at which the wall clock in `tz` shows `local` or, when
/// `local` is skipped by a gap, the first instant after the gap.
pub fn first_instant_at(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        // Fold: the earlier of the two occurrences.
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => end_of_gap(tz, local),
    }
}

/// The transition instant of the gap that skips `local`: the first instant
/// whose wall-clock time is past `local`. UTC offsets lie within −12 h and
/// +14 h, so that instant is within `local` − 14 h … `local` + 12 h read as
/// UTC; the wall clock only moves forward across that range (no zone has a
/// fold within a day of a gap), so a binary search over whole seconds finds
/// it. Transitions happen on whole seconds.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let wall =
        |secs: i64| DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).naive_local());
    let as_utc = local.and_utc().timestamp();
    let mut lo = as_utc - 15 * 3600; // wall clock before `local`
    let mut hi = as_utc + 13 * 3600; // wall clock after `local`
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match wall(mid) {
            Some(w) if w > local => hi = mid,
            _ => lo = mid,
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
