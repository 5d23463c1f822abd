//! Logging setup and the one place that decides what may appear in a log
//! line: phone numbers, message bodies and secrets go through these helpers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Initialise `tracing`: `RUST_LOG`-style filter (default `info`), text or
/// JSON lines on stderr.
pub fn init(filter: &str, json: bool) {
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // Colour codes only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests) is not an error worth failing over.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// `+14155552671` → `+141*****71`: the country code area and the last two
/// digits stay, enough to tell numbers apart in an incident, not enough to
/// dial.
pub fn mask_phone(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head = if chars[0] == '+' { 4 } else { 3 };
    let tail = 2;
    let mut out = String::with_capacity(chars.len());
    for (i, c) in chars.iter().enumerate() {
        if i < head || i >= chars.len() - tail {
            out.push(*c);
        } else {
            out.push('*');
        }
    }
    out
}

/// A message body in a log line: its length only.
pub fn mask_body(body: &str) -> String {
    format!("<{} chars>", body.chars().count())
}

/// A URL with any `user:password@` and query string removed; webhook URLs
/// that carry their credential in the path (Discord) keep only the host.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<url>".to_string(),
    };
    let host_part = rest.split(['/', '?']).next().unwrap_or("");
    let host = host_part.rsplit('@').next().unwrap_or(host_part);
    let masked_creds = if host_part.contains('@') { "***@" } else { "" };
    format!("{scheme}://{masked_creds}{host}/…")
}

/// A secret value (API key, token, webhook secret). Its `Debug` and `Display`
/// never show the value; use [`Secret::expose`] at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Stored as-is (MongoDB is trusted storage); never logged.
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_masked() {
        assert_eq!(mask_phone("+14155552671"), "+141******71");
        assert_eq!(mask_phone("123"), "***");
    }

    #[test]
    fn bodies_are_reduced_to_length() {
        assert_eq!(mask_body("hello"), "<5 chars>");
    }

    #[test]
    fn urls_lose_credentials_paths_and_queries() {
        assert_eq!(
            mask_url("mongodb://user:pw@db.example:27017/x?authSource=admin"),
            "mongodb://***@db.example:27017/…"
        );
        assert_eq!(
            mask_url("https://discord.com/api/webhooks/1/TOKEN"),
            "https://discord.com/…"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk_live_abc");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "sk_live_abc");
    }
}
