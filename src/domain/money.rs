//! Money as integer micro-units (1 unit = 1,000,000 micros) of the account's
//! currency. Integers keep debits exact and let MongoDB `$inc` them atomically.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_micros(micros: i64) -> Self {
        Money(micros)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    /// `self * n`, saturating.
    pub fn times(self, n: u64) -> Money {
        Money(self.0.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn displays_with_six_decimals() {
        assert_eq!(Money(7_500).to_string(), "0.007500");
        assert_eq!(Money(-1_250_000).to_string(), "-1.250000");
        assert_eq!(Money(7_500).times(3), Money(22_500));
    }
}
