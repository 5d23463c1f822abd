//! Discord's webhook format and answers (shared/reference/providers.md,
//! section 4): the message body (embeds with fields, mentions suppressed),
//! its size limits enforced by cutting text with an ellipsis (Discord
//! refuses a message over a limit with 400), and what an answer means
//! (204 posted; 429 wait `retry_after`; 404/401 the webhook is gone).

use serde::Serialize;
use std::time::Duration;

/// Discord's limits, in characters (counted here in UTF-16 code units, as
/// JavaScript does, which is never fewer than characters).
pub mod limits {
    pub const CONTENT: usize = 2000;
    pub const EMBEDS: usize = 10;
    pub const TITLE: usize = 256;
    pub const DESCRIPTION: usize = 4096;
    pub const FIELDS: usize = 25;
    pub const FIELD_NAME: usize = 256;
    pub const FIELD_VALUE: usize = 1024;
    pub const FOOTER: usize = 2048;
    pub const AUTHOR: usize = 256;
    /// Title, description, field names and values, footer and author
    /// names, summed over every embed of one message.
    pub const TOTAL: usize = 6000;
}

/// Colours by severity.
pub mod colour {
    pub const RED: u32 = 0xE74C3C;
    pub const ORANGE: u32 = 0xE67E22;
    pub const GREEN: u32 = 0x2ECC71;
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Footer {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Author {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Embed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    /// ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<Footer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
}

impl Embed {
    pub fn new(title: impl Into<String>, colour: u32) -> Embed {
        Embed {
            title: Some(title.into()),
            color: Some(colour),
            ..Default::default()
        }
    }

    pub fn description(mut self, d: impl Into<String>) -> Embed {
        self.description = Some(d.into());
        self
    }

    pub fn field(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        inline: bool,
    ) -> Embed {
        self.fields.push(Field {
            name: name.into(),
            value: value.into(),
            inline,
        });
        self
    }

    pub fn footer(mut self, text: impl Into<String>) -> Embed {
        self.footer = Some(Footer { text: text.into() });
        self
    }

    pub fn timestamp(mut self, t: crate::domain::Timestamp) -> Embed {
        self.timestamp = Some(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowedMentions {
    pub parse: Vec<String>,
}

/// The body of an Execute Webhook request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub username: String,
    pub embeds: Vec<Embed>,
    /// Always `{"parse": []}`: an alert never pings anyone, whatever text
    /// it carries.
    pub allowed_mentions: AllowedMentions,
}

impl Message {
    pub fn new(embeds: Vec<Embed>) -> Message {
        Message {
            content: None,
            username: "Trackly alerts".into(),
            embeds,
            allowed_mentions: AllowedMentions { parse: vec![] },
        }
    }

    /// The message within every Discord limit: text trimmed and cut with
    /// "…" where too long, empty field names and values filled, at most 10
    /// embeds and 25 fields each, and the 6,000-character total kept by
    /// cutting descriptions, then field values, then dropping the last
    /// fields and embeds.
    pub fn fitted(mut self) -> Message {
        self.allowed_mentions.parse.clear();
        if let Some(c) = &mut self.content {
            *c = cut(c, limits::CONTENT);
        }
        self.embeds.truncate(limits::EMBEDS);
        for e in &mut self.embeds {
            fit_opt(&mut e.title, limits::TITLE);
            fit_opt(&mut e.description, limits::DESCRIPTION);
            if let Some(f) = &mut e.footer {
                f.text = cut(&f.text, limits::FOOTER);
            }
            if let Some(a) = &mut e.author {
                a.name = cut(&a.name, limits::AUTHOR);
            }
            if e.fields.len() > limits::FIELDS {
                let dropped = e.fields.len() - (limits::FIELDS - 1);
                e.fields.truncate(limits::FIELDS - 1);
                e.fields.push(Field {
                    name: "…".into(),
                    value: format!("{dropped} more not shown"),
                    inline: false,
                });
            }
            for f in &mut e.fields {
                f.name = non_empty(cut(&f.name, limits::FIELD_NAME));
                f.value = non_empty(cut(&f.value, limits::FIELD_VALUE));
            }
        }
        self.fit_total();
        if self.embeds.is_empty() && self.content.as_deref().is_none_or(str::is_empty) {
            self.content = Some("(empty alert)".into());
        }
        self
    }

    /// The characters counted against the 6,000 total.
    pub fn total(&self) -> usize {
        self.embeds.iter().map(embed_total).sum()
    }

    fn fit_total(&mut self) {
        let mut over = self.total().saturating_sub(limits::TOTAL);
        if over == 0 {
            return;
        }
        // Descriptions first, from the last embed.
        for e in self.embeds.iter_mut().rev() {
            if let Some(d) = &mut e.description {
                let len = units(d);
                let keep = len.saturating_sub(over).max(1);
                if keep < len {
                    *d = cut(d, keep);
                    over = over.saturating_sub(len - units(d));
                }
            }
            if over == 0 {
                return;
            }
        }
        // Then field values, from the last.
        for e in self.embeds.iter_mut().rev() {
            for f in e.fields.iter_mut().rev() {
                let len = units(&f.value);
                let keep = len.saturating_sub(over).max(1);
                if keep < len {
                    f.value = non_empty(cut(&f.value, keep));
                    over = over.saturating_sub(len.saturating_sub(units(&f.value)));
                }
                if over == 0 {
                    return;
                }
            }
        }
        // Then whole fields and embeds, from the end.
        while self.total() > limits::TOTAL {
            let several = self.embeds.len() > 1;
            let Some(e) = self.embeds.last_mut() else {
                return;
            };
            if !e.fields.is_empty() {
                e.fields.pop();
            } else if several {
                self.embeds.pop();
            } else {
                // One embed without fields still too long: only its title,
                // description, footer and author are left; keep them short.
                e.footer = None;
                e.author = None;
                fit_opt(&mut e.title, limits::TITLE);
                if let Some(d) = &mut e.description {
                    *d = cut(d, 1000);
                }
                return;
            }
        }
    }
}

fn embed_total(e: &Embed) -> usize {
    let opt = |s: &Option<String>| s.as_deref().map_or(0, units);
    opt(&e.title)
        + opt(&e.description)
        + e.fields
            .iter()
            .map(|f| units(&f.name) + units(&f.value))
            .sum::<usize>()
        + e.footer.as_ref().map_or(0, |f| units(&f.text))
        + e.author.as_ref().map_or(0, |a| units(&a.name))
}

/// Length as Discord counts it (UTF-16 code units, after trimming).
pub fn units(s: &str) -> usize {
    s.trim().encode_utf16().count()
}

/// `s` trimmed, cut to at most `max` units, ending in "…" when cut.
pub fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    if units(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let n = c.len_utf16();
        if used + n > max.saturating_sub(1) {
            break;
        }
        out.push(c);
        used += n;
    }
    let mut out = out.trim_end().to_string();
    out.push('…');
    out
}

fn fit_opt(s: &mut Option<String>, max: usize) {
    if let Some(v) = s {
        *v = cut(v, max);
        if v.is_empty() {
            *s = None;
        }
    }
}

fn non_empty(s: String) -> String {
    if s.is_empty() { "—".into() } else { s }
}

/// What Discord's answer to a post means.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx: posted.
    Posted,
    /// 429: try again after this long.
    RateLimited(Duration),
    /// 404 (Unknown Webhook) or 401 (invalid token): stop using the
    /// webhook; repeated tries lead to a ban.
    Gone(u16),
    /// Any other status (400: a body Discord refused; 5xx).
    Failed(u16),
}

/// Classify an answer: `retry_after` from the JSON body (seconds, a float),
/// else the `Retry-After` header (seconds), else one second.
pub fn answer(status: u16, retry_after_header: Option<&str>, body: &[u8]) -> Answer {
    match status {
        200..=299 => Answer::Posted,
        429 => {
            let from_body = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("retry_after").and_then(|r| r.as_f64()));
            let from_header = retry_after_header.and_then(|h| h.trim().parse::<f64>().ok());
            let secs = from_body
                .or(from_header)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or(1.0);
            Answer::RateLimited(Duration::from_secs_f64(secs.min(86_400.0)))
        }
        404 | 401 => Answer::Gone(status),
        other => Answer::Failed(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let s = "x".repeat(300);
        let c = cut(&s, limits::TITLE);
        assert_eq!(units(&c), 256);
        assert!(c.ends_with('…'));
        assert_eq!(cut("  short  ", 10), "short");
    }

    #[test]
    fn a_message_over_every_limit_is_fitted() {
        let big = "é".repeat(5000);
        let mut embeds = Vec::new();
        for _ in 0..12 {
            let mut e = Embed::new(big.clone(), colour::RED)
                .description(big.clone())
                .footer(big.clone());
            for _ in 0..30 {
                e = e.field(big.clone(), big.clone(), true);
            }
            embeds.push(e);
        }
        let mut m = Message::new(embeds);
        m.content = Some(big.clone());
        let m = m.fitted();
        assert!(m.embeds.len() <= limits::EMBEDS && !m.embeds.is_empty());
        assert!(m.total() <= limits::TOTAL, "total {}", m.total());
        assert!(units(m.content.as_deref().unwrap_or("")) <= limits::CONTENT);
        for e in &m.embeds {
            assert!(e.fields.len() <= limits::FIELDS);
            assert!(units(e.title.as_deref().unwrap_or("")) <= limits::TITLE);
            for f in &e.fields {
                assert!(!f.name.is_empty() && !f.value.is_empty());
                assert!(units(&f.value) <= limits::FIELD_VALUE);
            }
        }
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["allowed_mentions"], serde_json::json!({"parse": []}));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(answer(204, None, b""), Answer::Posted);
        assert_eq!(
            answer(429, Some("3"), br#"{"retry_after": 0.25, "global": false}"#),
            Answer::RateLimited(Duration::from_millis(250))
        );
        assert_eq!(
            answer(429, Some("2"), b"not json"),
            Answer::RateLimited(Duration::from_secs(2))
        );
        assert_eq!(answer(404, None, b""), Answer::Gone(404));
        assert_eq!(answer(401, None, b""), Answer::Gone(401));
        assert_eq!(answer(400, None, b""), Answer::Failed(400));
    }
}
