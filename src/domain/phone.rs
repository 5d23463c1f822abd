//! E.164 phone numbers: `+`, a country code that does not start with 0, at most
//! 15 digits in all. This is the structural check; carrier-level validity is
//! the scheduler's job (it will use the `phonenumber` crate at audience time).

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct E164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an E.164 number (+ then 8 to 15 digits, no leading 0): {0}")]
pub struct InvalidE164(pub String);

impl E164 {
    /// Parse a strict E.164 string. Separators are not accepted here: the
    /// stored form is canonical.
    pub fn parse(s: &str) -> Result<Self, InvalidE164> {
        let digits = s
            .strip_prefix('+')
            .ok_or_else(|| InvalidE164(crate::telemetry::mask_phone(s)))?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(E164(s.to_string()))
        } else {
            Err(InvalidE164(crate::telemetry::mask_phone(s)))
        }
    }

    /// `+14155552671`
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `14155552671` (Infobip's form).
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
    /// `0014155552671` (CM's form).
    pub fn with_00(&self) -> String {
        format!("00{}", self.digits())
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        E164::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a whole number, even in debug output.
        write!(f, "E164({})", crate::telemetry::mask_phone(&self.0))
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::telemetry::mask_phone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn accepts_and_renders() {
        let n = E164::parse("+14155552671").unwrap();
        assert_eq!(n.digits(), "14155552671");
        assert_eq!(n.with_00(), "0014155552671");
        assert_eq!(n.as_str(), "+14155552671");
    }
    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "14155552671",
            "+04155552671",
            "+1415",
            "+1415555267123456",
            "+1415-555-2671",
            "",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }
    #[test]
    fn display_and_debug_mask() {
        let n = E164::parse("+14155552671").unwrap();
        assert!(!format!("{n}").contains("5552671"));
        assert!(!format!("{n:?}").contains("5552671"));
    }
}
