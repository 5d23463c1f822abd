//! SMS encoding and segment counting (GSM 03.38 / UCS-2), used for billing
//! (accounts pay per segment) and by the scheduler for previews and
//! `trackly inspect segments`.
//!
//! The count equals Twilio's segment calculator (TwilioDevEd's
//! message-segment-calculator): a message is packed into 140-octet segments;
//! one that fits a single segment carries no header, a longer one has a
//! 6-octet concatenation header in every segment. That gives, per
//! shared/reference/providers.md §5:
//!
//! - GSM-7, when every character is in the default alphabet or its extension
//!   table: septets, the extension table (`^{}\[~]|€` and form feed) costing
//!   two (escape + code). 160 septets fit one message, 153 per segment when
//!   concatenated, and an escape pair is never split across segments.
//! - UCS-2 otherwise, counted in UTF-16 code units: 70 in one message, 67 per
//!   segment, and no grapheme cluster (a surrogate pair, a flag, an emoji with
//!   a variation selector or skin tone, a ZWJ sequence, a letter with
//!   combining marks) is split across segments, as the calculator splits by
//!   grapheme. Clusters come from `unicode-segmentation` (UAX #29, extended).
//!
//! CR LF is one grapheme cluster but two GSM-7 characters: two septets, as
//! in the calculator. U+001B (escape) is not text (it is the GSM-7 escape
//! code) and forces UCS-2, as in the calculator's table. `tests/rules.rs`
//! checks the boundaries against the calculator's npm release
//! (`sms-segments-calculator` 1.3.0).
//!
//! Where the rule is ours: a single grapheme cluster longer than a whole
//! segment (67 units, e.g. a letter with dozens of combining marks) cannot be
//! kept whole; it is then split between code points (never inside a
//! surrogate pair). The calculator would instead count an over-full segment.

use unicode_segmentation::UnicodeSegmentation;

/// Which alphabet a body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet with its extension table.
    Gsm7,
    /// UTF-16 (what providers send as "UCS-2").
    Ucs2,
}

impl Encoding {
    /// `GSM-7` or `UCS-2`, as providers and the calculator name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// Encoding and size of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The alphabet the body needs.
    pub encoding: Encoding,
    /// Segments billed (at least 1, even for an empty body).
    pub segments: u32,
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    pub code_units: u32,
}

/// Capacities in code units: (single message, per concatenated segment).
const GSM7_LIMITS: (usize, usize) = (160, 153);
const UCS2_LIMITS: (usize, usize) = (70, 67);

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{0c}";

fn gsm7_cost(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a body needs.
pub fn encoding(body: &str) -> Encoding {
    if body.chars().all(|c| gsm7_cost(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Number of SMS segments the body is billed as (at least 1, even for an
/// empty body).
pub fn segments(body: &str) -> u32 {
    analyze(body).segments
}

/// Encoding, segment count and size of a body.
pub fn analyze(text: &str) -> SegmentInfo {
    match encoding(text) {
        Encoding::Gsm7 => {
            // Every character is its own unit: an escape pair is one unit of 2.
            let units = text.chars().filter_map(gsm7_cost).collect();
            finish(Encoding::Gsm7, units, GSM7_LIMITS)
        }
        Encoding::Ucs2 => {
            let mut units = Vec::with_capacity(text.len());
            for g in text.graphemes(true) {
                let len = g.encode_utf16().count();
                if len > UCS2_LIMITS.1 {
                    // An over-long cluster is split between code points (see
                    // the module doc); anything else stays whole.
                    units.extend(g.chars().map(char::len_utf16));
                } else {
                    units.push(len);
                }
            }
            finish(Encoding::Ucs2, units, UCS2_LIMITS)
        }
    }
}

/// Packs indivisible units greedily: one message if everything fits the
/// single-message capacity, otherwise segments of the concatenated capacity,
/// a unit that does not fit the current segment starting the next one.
fn finish(
    encoding: Encoding,
    units: Vec<usize>,
    (single, per_segment): (usize, usize),
) -> SegmentInfo {
    let total: usize = units.iter().sum();
    let segments = if total <= single {
        1
    } else {
        let mut segments = 1usize;
        let mut used = 0usize;
        for &u in &units {
            if used + u > per_segment {
                segments += 1;
                used = 0;
            }
            used += u;
        }
        segments
    };
    SegmentInfo {
        encoding,
        segments: u32::try_from(segments).unwrap_or(u32::MAX),
        code_units: u32::try_from(total).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> (Encoding, u32, u32) {
        let i = analyze(text);
        (i.encoding, i.segments, i.code_units)
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(info(""), (Encoding::Gsm7, 1, 0));
        assert_eq!(info(&"a".repeat(160)), (Encoding::Gsm7, 1, 160));
        assert_eq!(info(&"a".repeat(161)), (Encoding::Gsm7, 2, 161));
        assert_eq!(info(&"a".repeat(306)), (Encoding::Gsm7, 2, 306));
        assert_eq!(info(&"a".repeat(307)), (Encoding::Gsm7, 3, 307));
        assert_eq!(segments(&"a".repeat(459)), 3);
        assert_eq!(segments(&"a".repeat(460)), 4);
    }

    #[test]
    fn extension_chars_cost_two_and_are_not_split() {
        assert_eq!(encoding("price: 5€ {ok}"), Encoding::Gsm7);
        assert_eq!(info(&"€".repeat(80)), (Encoding::Gsm7, 1, 160));
        assert_eq!(info(&"€".repeat(81)), (Encoding::Gsm7, 2, 162));
        // 159 septets then an escape pair: 161 in all, so concatenated.
        assert_eq!(segments(&format!("{}^", "a".repeat(159))), 2);
        // 152 septets then an escape pair: the pair would straddle septet
        // 153, so it moves to segment 2, and 306 septets (which would fit
        // exactly in 2 x 153) need 3 segments.
        let body = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(info(&body), (Encoding::Gsm7, 3, 306));
        // Without the straddle the same 306 septets fit in 2.
        let body = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(info(&body), (Encoding::Gsm7, 2, 306));
        // Form feed is in the extension table.
        assert_eq!(info("\u{0c}"), (Encoding::Gsm7, 1, 2));
    }

    #[test]
    fn crlf_is_two_septets_and_escape_is_not_text() {
        assert_eq!(info("a\r\nb"), (Encoding::Gsm7, 1, 4));
        assert_eq!(encoding("a\u{1b}b"), Encoding::Ucs2);
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(encoding("hello “quoted”"), Encoding::Ucs2);
        assert_eq!(encoding(&"é".repeat(10)), Encoding::Gsm7);
        assert_eq!(info(&"á".repeat(70)), (Encoding::Ucs2, 1, 70));
        assert_eq!(info(&"á".repeat(71)), (Encoding::Ucs2, 2, 71));
        assert_eq!(info(&"á".repeat(134)), (Encoding::Ucs2, 2, 134));
        assert_eq!(info(&"á".repeat(135)), (Encoding::Ucs2, 3, 135));
    }

    #[test]
    fn overlong_cluster_is_split_by_code_points() {
        // "a" with 100 combining acute accents: one grapheme of 101 units.
        let zalgo = format!("a{}", "\u{301}".repeat(100));
        assert_eq!(zalgo.graphemes(true).count(), 1);
        assert_eq!(info(&zalgo), (Encoding::Ucs2, 2, 101));
    }
}
