//! What an inbound message asks for: opt out, opt back in, help, or
//! nothing. The inbound webhooks act on it; `trackly inspect keyword`
//! answers from the same function.
//!
//! The rule. The text is normalized: full-width letters (`ＳＴＯＰ`) become
//! ASCII, invisible characters (zero-width spaces and joiners, word
//! joiner, byte-order mark, soft hyphen) are removed, apostrophes dropped,
//! every other character that is not a letter or digit becomes a space,
//! spaces collapse, case is ignored. Then the **whole** message must be one
//! of the keywords, so "stop by the store" and "NONSTOP" change nothing:
//!
//! - opt out: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (the carriers'
//!   list), and OPT OUT / OPTOUT and REVOKE, which the FCC's 2024
//!   consent-revocation order names;
//! - opt back in: START, UNSTOP, YES;
//! - help: HELP, INFO.
//!
//! Lenient on the safe side: a message a person clearly means as STOP
//! opts out too: the keywords with punctuation around them ("Stop!",
//! "STOP."), and a short list of phrases ("stop texting me", "please
//! stop", "remove me", "unsubscribe me", "do not text me", ...). An
//! opt-out phrase is matched whole, never as a part of a longer message.

use serde::Serialize;

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeywordAction {
    Unsubscribe,
    Resubscribe,
    Help,
    None,
}

impl KeywordAction {
    pub fn as_str(self) -> &'static str {
        match self {
            KeywordAction::Unsubscribe => "unsubscribe",
            KeywordAction::Resubscribe => "resubscribe",
            KeywordAction::Help => "help",
            KeywordAction::None => "none",
        }
    }
}

const OPT_OUT: &[&str] = &[
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "opt out",
    "optout",
    "revoke",
];

const OPT_OUT_PHRASES: &[&str] = &[
    "stop please",
    "please stop",
    "stop it",
    "stop now",
    "stop texting",
    "stop texting me",
    "stop messaging",
    "stop messaging me",
    "stop sending",
    "stop sending me",
    "stop sending messages",
    "stop sending me messages",
    "stop sending texts",
    "stop sending me texts",
    "stop contacting me",
    "unsubscribe me",
    "please unsubscribe",
    "please unsubscribe me",
    "unsubscribe please",
    "remove me",
    "please remove me",
    "remove me please",
    "remove me from this list",
    "remove me from your list",
    "take me off",
    "take me off your list",
    "take me off this list",
    "opt me out",
    "i opt out",
    "revoke consent",
    "i revoke consent",
    "i revoke my consent",
    "do not text me",
    "dont text me",
    "do not text",
    "dont text",
    "do not contact me",
    "dont contact me",
    "no more texts",
    "no more messages",
    "cancel subscription",
    "cancel my subscription",
];

const OPT_IN: &[&str] = &["start", "unstop", "yes"];
const HELP: &[&str] = &["help", "info"];

/// What `body` asks for (see the module's rule).
pub fn classify(body: &str) -> KeywordAction {
    let text = normalize(body);
    let t = text.as_str();
    if OPT_OUT.contains(&t) || OPT_OUT_PHRASES.contains(&t) {
        KeywordAction::Unsubscribe
    } else if OPT_IN.contains(&t) {
        KeywordAction::Resubscribe
    } else if HELP.contains(&t) {
        KeywordAction::Help
    } else {
        KeywordAction::None
    }
}

/// Full-width to ASCII, invisible characters out, apostrophes out, other
/// non-alphanumerics to spaces, spaces collapsed, lower case. Bodies longer
/// than any keyword phrase are not normalized past 200 characters.
fn normalize(body: &str) -> String {
    let mut out = String::with_capacity(body.len().min(200));
    let mut space = false;
    for c in body.chars().take(200) {
        let c = match c {
            // Full-width forms of ASCII (U+FF01..U+FF5E) and the ideographic space.
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        };
        match c {
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\'' | '\u{2019}' | '\u{2018}' | '`' => {}
            c if c.is_alphanumeric() => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.extend(c.to_lowercase());
            }
            _ => space = true,
        }
    }
    out
}
