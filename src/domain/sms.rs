//! SMS encoding and segment counting (GSM 03.38 / UCS-2), used for billing
//! (accounts pay per segment) and, later, by the scheduler for previews.
//!
//! Rules (see shared/reference/providers.md §5): GSM-7 counts septets, with the
//! extension table costing two; 160 fit one message, 153 per segment when
//! concatenated, and an escape pair is never split. Anything outside both
//! tables switches the whole message to UCS-2, counted in UTF-16 code units:
//! 70 in one message, 67 per segment, and a surrogate pair is never split.

/// Which alphabet a body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
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
    match encoding(body) {
        Encoding::Gsm7 => {
            let costs: Vec<usize> = body.chars().filter_map(gsm7_cost).collect();
            let total: usize = costs.iter().sum();
            if total <= 160 {
                return 1;
            }
            pack(&costs, 153)
        }
        Encoding::Ucs2 => {
            let costs: Vec<usize> = body.chars().map(char::len_utf16).collect();
            let total: usize = costs.iter().sum();
            if total <= 70 {
                return 1;
            }
            pack(&costs, 67)
        }
    }
}

/// Greedy packing of indivisible units (escape pairs, surrogate pairs) into
/// segments of `capacity`.
fn pack(costs: &[usize], capacity: usize) -> u32 {
    let mut segs = 1u32;
    let mut used = 0usize;
    for &c in costs {
        if used + c > capacity {
            segs += 1;
            used = 0;
        }
        used += c;
    }
    segs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(segments(""), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
    }

    #[test]
    fn extension_chars_cost_two_and_are_not_split() {
        assert_eq!(encoding("price: 5€ {ok}"), Encoding::Gsm7);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        // 152 septets then an escape pair: the pair moves to segment 2.
        let body = format!("{}{}{}", "a".repeat(152), "€", "a".repeat(10));
        assert_eq!(segments(&body), 2);
    }

    #[test]
    fn ucs2_boundaries_and_surrogates() {
        assert_eq!(encoding("hello “quoted”"), Encoding::Ucs2);
        assert_eq!(segments(&"é".repeat(10)), 1); // é is GSM-7
        assert_eq!(segments(&"á".repeat(70)), 1);
        assert_eq!(segments(&"á".repeat(71)), 2);
        assert_eq!(segments(&"á".repeat(134)), 2);
        assert_eq!(segments(&"á".repeat(135)), 3);
        // 35 emoji = 70 UTF-16 units: one message; 36 need two segments.
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
    }
}
