//! The signature on customer webhooks.
//!
//! Header: `X-Trackly-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//! `HMAC-SHA256(secret, "<t>.<body>")` in lowercase hex, `<t>` the time the
//! request was sent and `<body>` the raw request body. A receiver recomputes
//! the HMAC over the bytes it received, compares in constant time, and
//! refuses a `t` further than its tolerance (five minutes is usual) from its
//! own clock, so a captured request cannot be replayed later.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "X-Trackly-Signature";

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The header value for `body` signed at `t` (unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the timestamp is outside the tolerance")]
    Expired,
    #[error("the signature does not match")]
    Mismatch,
}

/// Check a header value against the received body, at `now` (unix seconds)
/// with `tolerance_secs` either way. What a receiver does.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), Invalid> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(Invalid::Malformed)?;
    if sigs.is_empty() {
        return Err(Invalid::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(Invalid::Expired);
    }
    let expected = hex(&mac(secret, t, body).finalize().into_bytes());
    if sigs
        .iter()
        .any(|s| crate::providers::twilio::constant_time_eq(s.as_bytes(), expected.as_bytes()))
    {
        Ok(())
    } else {
        Err(Invalid::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let h = sign("s3cret", 1_700_000_000, b"{\"id\":\"x\"}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(
            verify("s3cret", &h, b"{\"id\":\"x\"}", 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify("s3cret", &h, b"{\"id\":\"y\"}", 1_700_000_100, 300),
            Err(Invalid::Mismatch)
        );
        assert_eq!(
            verify("other", &h, b"{\"id\":\"x\"}", 1_700_000_100, 300),
            Err(Invalid::Mismatch)
        );
        assert_eq!(
            verify("s3cret", &h, b"{\"id\":\"x\"}", 1_700_001_000, 300),
            Err(Invalid::Expired)
        );
        assert_eq!(
            verify("s3cret", "v1=ab", b"", 0, 300),
            Err(Invalid::Malformed)
        );
    }

    /// A fixed vector, so the documented recipe can be checked elsewhere:
    /// `printf '1700000000.{}' | openssl dgst -sha256 -hmac key`.
    #[test]
    fn known_vector() {
        assert_eq!(
            sign("key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
