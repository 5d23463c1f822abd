//! Decides which parts of a message body are links to track, and replaces
//! each with a short link `<base_url>/l/<code>`.
//!
//! The URL rule, kept deliberately narrow because a wrong guess changes what
//! the recipient gets:
//! - A link starts with `http://` or `https://` (any case) that is not glued
//!   to a preceding letter or digit (`xhttp://` is not a link).
//! - It ends at the first whitespace character, or at `<`, `>` or `"`, which
//!   cannot appear unencoded in a URL and usually delimit one.
//! - Trailing punctuation that ends the sentence rather than the URL is left
//!   out: any of `. , ; : ! ? ' *` at the end, and a closing `)` or `]` that
//!   has no opening partner inside the link (so `(see https://x.io/a)` keeps
//!   the `)` outside, but `https://en.wikipedia.org/wiki/Foo_(bar)` keeps
//!   it). Stripping repeats, so `https://x.io/a).` loses both.
//! - What remains must parse as a URL with a host (`url` crate); otherwise
//!   it stays text.
//!
//! Codes are 10 base62 characters (about 59.5 bits) from a cryptographically
//! secure generator, so they cannot be guessed or enumerated. Every
//! occurrence gets its own code, also when the same URL appears twice, so
//! that each click is attributed to one place in one message. Uniqueness
//! across messages is the store's job (a unique index on the code); the
//! chance of a collision is negligible but not zero.

use rand::{CryptoRng, RngExt};
use std::ops::Range;

/// Length of a short-link code.
pub const CODE_LEN: usize = 10;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One replaced link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedLink {
    /// The short code (the last path segment of the short link).
    pub code: String,
    /// The URL as it was in the body.
    pub destination: String,
}

/// A body with its links replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The body to send.
    pub body: String,
    /// The links, in the order they appear in the body.
    pub links: Vec<TrackedLink>,
}

/// Byte ranges of the links in `body`, by the rule in the module doc.
pub fn find_urls(body: &str) -> Vec<Range<usize>> {
    let bytes = body.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(scheme_len) = scheme_at(bytes, i) else {
            i += 1;
            continue;
        };
        let glued = i > 0
            && body[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
        if glued {
            i += scheme_len;
            continue;
        }
        let end = body[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .map_or(body.len(), |n| i + n);
        let end = trim_trailing(&body[i..end]) + i;
        if end > i + scheme_len && is_link(&body[i..end]) {
            found.push(i..end);
        }
        i = end.max(i + scheme_len);
    }
    found
}

/// Length of `http://` or `https://` (ASCII case-insensitive) at `at`.
fn scheme_at(bytes: &[u8], at: usize) -> Option<usize> {
    ["https://", "http://"].iter().find_map(|s| {
        let candidate = bytes.get(at..at + s.len())?;
        candidate
            .eq_ignore_ascii_case(s.as_bytes())
            .then_some(s.len())
    })
}

/// The length of `candidate` without the trailing punctuation that belongs
/// to the sentence.
fn trim_trailing(candidate: &str) -> usize {
    let mut s = candidate;
    loop {
        let Some(last) = s.chars().next_back() else {
            return 0;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            _ => false,
        };
        if !strip {
            return s.len();
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

fn is_link(candidate: &str) -> bool {
    url::Url::parse(candidate).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
}

/// A fresh code of [`CODE_LEN`] base62 characters.
pub fn new_code<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    (0..CODE_LEN)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

/// Replaces every link of `body` with `<base_url>/l/<code>` (a trailing `/`
/// on `base_url` is ignored), with codes from the thread-local CSPRNG.
pub fn rewrite_links(body: &str, base_url: &str) -> Rewritten {
    rewrite_links_with(body, base_url, &mut rand::rng())
}

/// [`rewrite_links`] with a given generator (tests pass a seeded one; it must
/// still be a CSPRNG).
pub fn rewrite_links_with<R: CryptoRng + ?Sized>(
    body: &str,
    base_url: &str,
    rng: &mut R,
) -> Rewritten {
    let base = base_url.trim_end_matches('/');
    let mut out = String::with_capacity(body.len());
    let mut links = Vec::new();
    let mut copied = 0;
    for range in find_urls(body) {
        let code = new_code(rng);
        out.push_str(&body[copied..range.start]);
        out.push_str(base);
        out.push_str("/l/");
        out.push_str(&code);
        links.push(TrackedLink {
            code,
            destination: body[range.clone()].to_string(),
        });
        copied = range.end;
    }
    out.push_str(&body[copied..]);
    Rewritten { body: out, links }
}

/// Whether `code` can be one of ours: [`CODE_LEN`] base62 characters. The
/// redirect answers anything else 404 without asking the store.
pub fn is_code(code: &str) -> bool {
    code.len() == CODE_LEN && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// User agents of link-preview fetchers and crawlers: messaging apps and
/// social networks fetch a link to draw its preview card, search engines
/// and monitors crawl it; none of them is the recipient clicking. Matched
/// case-insensitively as substrings.
const PREVIEW_AGENTS: &[&str] = &[
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "linkedinbot",
    "skypeuripreview",
    "applebot",
    "googlebot",
    "google-pagerenderer",
    "adsbot-google",
    "bingbot",
    "bingpreview",
    "yandexbot",
    "duckduckbot",
    "baiduspider",
    "pinterestbot",
    "redditbot",
    "embedly",
    "quora link preview",
    "vkshare",
    "iframely",
    "outbrain",
    "w3c_validator",
    "headlesschrome",
    "python-requests",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "bot/",
    "crawler",
    "spider",
    "preview",
];

/// A click by a preview fetcher or crawler (see [`PREVIEW_AGENTS`]), or
/// with no user agent at all (browsers always send one): left out of the
/// click rate and the variant statistics when the account filters bots.
pub fn is_preview_bot(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return true;
    };
    let ua = ua.to_ascii_lowercase();
    PREVIEW_AGENTS.iter().any(|a| ua.contains(a))
}

/// How close to the message's arrival a click counts as a link preview.
pub const PREVIEW_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// A click within [`PREVIEW_WINDOW`] of the provider taking the message or
/// of its delivery report (either side: reports often arrive after the
/// preview fetch) is a phone or app fetching a preview as the message
/// arrives, not a person: nobody reads, decides and taps that fast.
pub fn is_preview_timing(
    clicked_at: chrono::DateTime<chrono::Utc>,
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
    delivered_at: Option<chrono::DateTime<chrono::Utc>>,
) -> bool {
    [submitted_at, delivered_at]
        .into_iter()
        .flatten()
        .any(|t| (clicked_at - t).abs() < PREVIEW_WINDOW)
}
