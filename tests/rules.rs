//! The pure campaign rules (`trackly::rules` and `domain::sms`), tested
//! without actors, store or clock: every `now` is a parameter and every RNG
//! is seeded.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use trackly::domain::sms::{Encoding, analyze};
use trackly::domain::{ContactId, E164, ScheduleRunId};
use trackly::rules::eligibility::{
    Candidate, Decision, ListRules, ScheduleRules, SkipReason, evaluate,
};
use trackly::rules::links::{CODE_LEN, find_urls, rewrite_links, rewrite_links_with};
use trackly::rules::phone::{check_number, e164_of, zone_for_contact};
use trackly::rules::placeholders::{ContactView, PlaceholderError, parse};
use trackly::rules::variants::{ArmStats, DEFAULT_FLOOR, pick_weighted, thompson_pick};
use trackly::rules::window::{LocalWindow, WindowError, next_window_start, window_check};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(s: &str) -> NaiveTime {
    NaiveTime::parse_from_str(s, "%H:%M").unwrap()
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

// ---------------------------------------------------------------- phone ---

/// Expected answers computed with libphonenumber's Python port
/// (`phonenumbers` 9.0.33, the metadata release the `phonenumber` crate
/// bundles): `is_valid_number`, E.164, `region_code_for_number` and
/// `time_zones_for_number`.
#[test]
fn numbers_agree_with_libphonenumber() {
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<(&'static str, &'static str, &'static [&'static str])>,
    );
    let cases: &[Case] = &[
        (
            "(201) 555-0123",
            Some("US"),
            Some(("+12015550123", "US", &["America/New_York"])),
        ),
        (
            "(201) 555-0123",
            Some("us"),
            Some(("+12015550123", "US", &["America/New_York"])),
        ),
        (
            "+12015550123",
            None,
            Some(("+12015550123", "US", &["America/New_York"])),
        ),
        (
            "+1 201 555 0123",
            None,
            Some(("+12015550123", "US", &["America/New_York"])),
        ),
        (
            "+14155552671",
            None,
            Some(("+14155552671", "US", &["America/Los_Angeles"])),
        ),
        (
            "+1 520-878-2491",
            None,
            Some(("+15208782491", "US", &["America/Phoenix"])),
        ),
        (
            "+1 208 201 1234",
            None,
            Some(("+12082011234", "US", &["America/Denver"])),
        ),
        (
            "+1 208 215 0000",
            None,
            Some(("+12082150000", "US", &["America/Los_Angeles"])),
        ),
        (
            "+12085550100",
            None,
            Some((
                "+12085550100",
                "US",
                &["America/Boise", "America/Los_Angeles"],
            )),
        ),
        (
            "+1 709 555 0123",
            None,
            Some((
                "+17095550123",
                "CA",
                &["America/Puerto_Rico", "America/St_Johns"],
            )),
        ),
        (
            "+44 20 7946 0958",
            None,
            Some(("+442079460958", "GB", &["Europe/London"])),
        ),
        (
            "+61 8 8123 4567",
            None,
            Some((
                "+61881234567",
                "AU",
                &["Australia/Adelaide", "Australia/Perth"],
            )),
        ),
        (
            "+61 2 9123 4567",
            None,
            Some(("+61291234567", "AU", &["Australia/Sydney"])),
        ),
        (
            "+52 55 1234 5678",
            None,
            Some(("+525512345678", "MX", &["America/Mexico_City"])),
        ),
        (
            "+8613912345678",
            None,
            Some(("+8613912345678", "CN", &["Asia/Shanghai"])),
        ),
        (
            "0612345678",
            Some("FR"),
            Some(("+33612345678", "FR", &["Europe/Paris"])),
        ),
        (
            "+49 30 123456",
            None,
            Some(("+4930123456", "DE", &["Europe/Berlin"])),
        ),
        ("2015550123", None, None),
        ("12345", None, None),
        ("+999123", None, None),
        ("+1 201 555 01234", None, None),
        ("+5215512345678", None, None),
        ("", None, None),
        ("not a number", Some("US"), None),
        ("(201) 555-0123", Some("XX"), None),
    ];
    for (input, region, expected) in cases {
        let got = check_number(input, *region);
        match expected {
            Some((e164, reg, zones)) => {
                assert!(got.valid, "{input} ({region:?}) should be valid");
                assert_eq!(got.e164.as_deref(), Some(*e164), "{input}");
                assert_eq!(got.region.as_deref(), Some(*reg), "{input}");
                assert_eq!(got.time_zones, *zones, "{input}");
            }
            None => {
                assert!(!got.valid, "{input} ({region:?}) should be invalid");
                assert_eq!(got.e164, None);
                assert_eq!(got.region, None);
                assert!(got.time_zones.is_empty());
            }
        }
    }
}

#[test]
fn mobile_and_non_geographic_numbers_get_country_level_zones() {
    // A UK mobile is not geographical: country-level zones (the Python port
    // says the same, region GG for this range).
    let uk_mobile = check_number("+447911123456", None);
    assert!(uk_mobile.valid);
    assert_eq!(
        uk_mobile.time_zones,
        [
            "Europe/Guernsey",
            "Europe/Isle_of_Man",
            "Europe/Jersey",
            "Europe/London"
        ]
    );
    // A US toll-free number gets every NANP zone.
    let toll_free = check_number("+1 800 555 0123", None);
    assert!(toll_free.valid);
    assert_eq!(toll_free.time_zones.len(), 42);
    assert!(toll_free.time_zones.iter().any(|z| z == "America/New_York"));
    // India's one zone, under its libphonenumber name (a chrono-tz alias).
    let india = check_number("+91 98765 43210", None);
    assert_eq!(india.time_zones, ["Asia/Calcutta"]);
    assert_eq!(tz("Asia/Calcutta"), tz("Asia/Calcutta"));
}

#[test]
fn e164_for_importers() {
    assert_eq!(
        e164_of("(201) 555-0123", Some("US")).unwrap().as_str(),
        "+12015550123"
    );
    assert!(e164_of("(201) 555-0123", None).is_err());
    let err = e164_of("+1 201 555 01234", None).unwrap_err();
    // The number itself is masked in the error (errors reach logs).
    assert!(!err.to_string().contains("55501234"), "{err}");
    assert!(e164_of("+12015550123", Some("ZZ")).is_err());
}

#[test]
fn zone_for_contact_prefers_stored_then_number_then_default() {
    let ny = E164::parse("+12015550123").unwrap();
    assert_eq!(
        zone_for_contact(Some("Europe/Paris"), &ny, "America/Chicago"),
        tz("Europe/Paris")
    );
    // Unknown or empty stored zones fall back to the number.
    assert_eq!(
        zone_for_contact(Some("Mars/Olympus"), &ny, "America/Chicago"),
        tz("America/New_York")
    );
    assert_eq!(
        zone_for_contact(Some(""), &ny, "America/Chicago"),
        tz("America/New_York")
    );
    assert_eq!(
        zone_for_contact(None, &ny, "America/Chicago"),
        tz("America/New_York")
    );
    // Several zones: the list default when it is one of them ...
    let boise = E164::parse("+12085550100").unwrap();
    assert_eq!(
        zone_for_contact(None, &boise, "America/Los_Angeles"),
        tz("America/Los_Angeles")
    );
    // ... else the first in libphonenumber's order.
    assert_eq!(
        zone_for_contact(None, &boise, "America/Chicago"),
        tz("America/Boise")
    );
    // A number with no zone (structurally E.164, not valid): the default.
    let odd = E164::parse("+99912345678").unwrap();
    assert_eq!(
        zone_for_contact(None, &odd, "America/Chicago"),
        tz("America/Chicago")
    );
    assert_eq!(zone_for_contact(None, &odd, "nonsense"), Tz::UTC);
}

// --------------------------------------------------------------- window ---

#[test]
fn window_check_reports_local_time_with_offset() {
    let c = window_check(
        utc("2026-03-08T12:00:00Z"),
        tz("America/New_York"),
        hm("08:00"),
        hm("21:00"),
    )
    .unwrap();
    assert!(c.allowed);
    assert_eq!(c.local.to_rfc3339(), "2026-03-08T08:00:00-04:00");
    // The end is exclusive, the start inclusive.
    let w = |s| {
        window_check(utc(s), tz("America/New_York"), hm("08:00"), hm("21:00"))
            .unwrap()
            .allowed
    };
    assert!(!w("2026-03-09T01:00:00Z")); // 21:00 EDT
    assert!(w("2026-03-09T00:59:59Z")); // 20:59:59 EDT
    assert!(!w("2026-03-08T11:59:59Z")); // 07:59:59 EDT
}

#[test]
fn half_hour_offsets() {
    let nw = |s, z| window_check(utc(s), tz(z), hm("08:00"), hm("21:00")).unwrap();
    // Kolkata, +05:30, no DST.
    let c = nw("2026-03-08T02:30:00Z", "Asia/Kolkata");
    assert!(c.allowed);
    assert_eq!(c.local.to_rfc3339(), "2026-03-08T08:00:00+05:30");
    assert!(!nw("2026-03-08T02:29:59Z", "Asia/Kolkata").allowed);
    assert_eq!(
        next_window_start(
            utc("2026-03-08T16:00:00Z"),
            tz("Asia/Kolkata"),
            hm("08:00"),
            hm("21:00")
        )
        .unwrap(),
        utc("2026-03-09T02:30:00Z")
    );
    // St John's, −03:30 / −02:30: the DST switch of 2026-03-08 at 02:00.
    let c = nw("2026-03-08T05:29:59Z", "America/St_Johns");
    assert_eq!(c.local.to_rfc3339(), "2026-03-08T01:59:59-03:30");
    let c = nw("2026-03-08T05:30:00Z", "America/St_Johns");
    assert_eq!(c.local.to_rfc3339(), "2026-03-08T03:00:00-02:30");
    assert_eq!(
        next_window_start(
            utc("2026-03-08T05:30:00Z"),
            tz("America/St_Johns"),
            hm("08:00"),
            hm("21:00")
        )
        .unwrap(),
        utc("2026-03-08T10:30:00Z")
    );
    // Adelaide, southern hemisphere: +09:30 in winter, +10:30 from
    // 2026-10-04 02:00 (clocks to 03:00), back on 2026-04-05 at 03:00.
    let c = nw("2026-10-03T16:29:59Z", "Australia/Adelaide");
    assert_eq!(c.local.to_rfc3339(), "2026-10-04T01:59:59+09:30");
    let c = nw("2026-10-03T16:30:00Z", "Australia/Adelaide");
    assert_eq!(c.local.to_rfc3339(), "2026-10-04T03:00:00+10:30");
    assert_eq!(
        next_window_start(
            utc("2026-10-03T16:30:00Z"),
            tz("Australia/Adelaide"),
            hm("08:00"),
            hm("21:00")
        )
        .unwrap(),
        utc("2026-10-03T21:30:00Z")
    );
    assert_eq!(
        next_window_start(
            utc("2026-04-04T16:30:00Z"),
            tz("Australia/Adelaide"),
            hm("08:00"),
            hm("21:00")
        )
        .unwrap(),
        utc("2026-04-04T22:30:00Z")
    );
}

#[test]
fn start_inside_a_spring_forward_gap_opens_after_the_gap() {
    // (zone, an instant before the gap, the start time, the transition)
    let cases = [
        // New York: 02:00 EST -> 03:00 EDT at 07:00Z.
        (
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "02:30",
            "2026-03-08T07:00:00Z",
            "2026-03-08T03:00:00-04:00",
        ),
        // London: 01:00 GMT -> 02:00 BST at 01:00Z.
        (
            "Europe/London",
            "2026-03-28T23:00:00Z",
            "01:30",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00+01:00",
        ),
        // Sydney: 02:00 AEST -> 03:00 AEDT at 16:00Z the day before (UTC).
        (
            "Australia/Sydney",
            "2026-10-03T13:00:00Z",
            "02:30",
            "2026-10-03T16:00:00Z",
            "2026-10-04T03:00:00+11:00",
        ),
        // Adelaide: 02:00 ACST -> 03:00 ACDT at 16:30Z.
        (
            "Australia/Adelaide",
            "2026-10-03T14:00:00Z",
            "02:15",
            "2026-10-03T16:30:00Z",
            "2026-10-04T03:00:00+10:30",
        ),
        // St John's: 02:00 NST -> 03:00 NDT at 05:30Z.
        (
            "America/St_Johns",
            "2026-03-08T03:00:00Z",
            "02:15",
            "2026-03-08T05:30:00Z",
            "2026-03-08T03:00:00-02:30",
        ),
    ];
    for (zone, now, start, expected, local) in cases {
        let at = next_window_start(utc(now), tz(zone), hm(start), hm("21:00")).unwrap();
        assert_eq!(at, utc(expected), "{zone}");
        let c = window_check(at, tz(zone), hm(start), hm("21:00")).unwrap();
        assert!(c.allowed, "{zone}");
        assert_eq!(c.local.to_rfc3339(), local, "{zone}");
    }
}

#[test]
fn start_inside_a_fall_back_fold_opens_at_the_first_occurrence() {
    let cases = [
        // New York: 01:30 happens at 05:30Z (EDT) and 06:30Z (EST).
        (
            "America/New_York",
            "2026-11-01T03:00:00Z",
            "01:30",
            "2026-11-01T05:30:00Z",
        ),
        // London: 01:30 at 00:30Z (BST) and 01:30Z (GMT).
        (
            "Europe/London",
            "2026-10-24T23:00:00Z",
            "01:30",
            "2026-10-25T00:30:00Z",
        ),
        // Sydney: 02:30 on 2026-04-05 at 15:30Z (AEDT) and 16:30Z (AEST).
        (
            "Australia/Sydney",
            "2026-04-04T12:00:00Z",
            "02:30",
            "2026-04-04T15:30:00Z",
        ),
    ];
    for (zone, now, start, expected) in cases {
        let at = next_window_start(utc(now), tz(zone), hm(start), hm("21:00")).unwrap();
        assert_eq!(at, utc(expected), "{zone}");
    }
    // Between the two occurrences (01:15 EST, after the clocks went back) the
    // wall clock next shows 01:30 at the second occurrence.
    let at = next_window_start(
        utc("2026-11-01T06:15:00Z"),
        tz("America/New_York"),
        hm("01:30"),
        hm("21:00"),
    )
    .unwrap();
    assert_eq!(at, utc("2026-11-01T06:30:00Z"));
}

#[test]
fn next_window_start_is_now_inside_and_tomorrow_after_the_end() {
    let ny = tz("America/New_York");
    let now = utc("2026-07-01T15:00:00Z"); // 11:00 EDT
    assert_eq!(
        next_window_start(now, ny, hm("08:00"), hm("21:00")).unwrap(),
        now
    );
    // 22:00 EDT: tomorrow 08:00 EDT.
    assert_eq!(
        next_window_start(utc("2026-07-02T02:00:00Z"), ny, hm("08:00"), hm("21:00")).unwrap(),
        utc("2026-07-02T12:00:00Z")
    );
    // 06:00 EDT: today 08:00.
    assert_eq!(
        next_window_start(utc("2026-07-01T10:00:00Z"), ny, hm("08:00"), hm("21:00")).unwrap(),
        utc("2026-07-01T12:00:00Z")
    );
    // London, the day the clocks go forward: 07:00 BST is 06:00Z.
    assert_eq!(
        next_window_start(
            utc("2026-03-28T22:00:00Z"),
            tz("Europe/London"),
            hm("07:00"),
            hm("21:00")
        )
        .unwrap(),
        utc("2026-03-29T06:00:00Z")
    );
}

#[test]
fn windows_crossing_midnight_and_empty_windows() {
    let ny = tz("America/New_York");
    let night = |s| {
        window_check(utc(s), ny, hm("21:00"), hm("06:00"))
            .unwrap()
            .allowed
    };
    assert!(night("2026-07-02T02:00:00Z")); // 22:00 EDT
    assert!(night("2026-07-02T09:59:00Z")); // 05:59 EDT
    assert!(!night("2026-07-02T10:00:00Z")); // 06:00 EDT
    assert_eq!(
        next_window_start(utc("2026-07-01T16:00:00Z"), ny, hm("21:00"), hm("06:00")).unwrap(),
        utc("2026-07-02T01:00:00Z")
    );
    assert_eq!(
        window_check(utc("2026-07-01T16:00:00Z"), ny, hm("08:00"), hm("08:00")),
        Err(WindowError::Empty(hm("08:00")))
    );
    assert!(next_window_start(utc("2026-07-01T16:00:00Z"), ny, hm("08:00"), hm("08:00")).is_err());
    let stored = trackly::domain::TcpaWindow {
        start_minute: 480,
        end_minute: 1260,
    };
    let w = LocalWindow::from_tcpa(&stored).unwrap();
    assert_eq!((w.start(), w.end()), (hm("08:00"), hm("21:00")));
    let bad = trackly::domain::TcpaWindow {
        start_minute: 480,
        end_minute: 2000,
    };
    assert_eq!(
        LocalWindow::from_tcpa(&bad),
        Err(WindowError::MinuteOutOfRange(2000))
    );
}

// ------------------------------------------------------------- segments ---

#[test]
fn segments_at_gsm7_and_ucs2_boundaries() {
    let seg = |t: &str| {
        let i = analyze(t);
        (i.encoding, i.segments, i.code_units)
    };
    for (n, s) in [(160, 1), (161, 2), (306, 2), (307, 3)] {
        assert_eq!(seg(&"x".repeat(n)), (Encoding::Gsm7, s, n as u32), "{n}");
    }
    for (n, s) in [(70, 1), (71, 2), (134, 2), (135, 3)] {
        // ç (lowercase) is not in GSM-7.
        assert_eq!(seg(&"ç".repeat(n)), (Encoding::Ucs2, s, n as u32), "{n}");
    }
    // An extension character right at the 160 boundary: 158 + 2 fits ...
    assert_eq!(
        seg(&format!("{}[", "x".repeat(158))),
        (Encoding::Gsm7, 1, 160)
    );
    // ... 159 + 2 does not, and then the pair may not straddle 153.
    assert_eq!(
        seg(&format!("{}]", "x".repeat(159))),
        (Encoding::Gsm7, 2, 161)
    );
    assert_eq!(
        seg(&format!("{}~{}", "x".repeat(152), "x".repeat(152))),
        (Encoding::Gsm7, 3, 306)
    );
}

#[test]
fn emoji_and_clusters_are_never_split() {
    let seg = |t: &str| {
        let i = analyze(t);
        (i.encoding, i.segments, i.code_units)
    };
    // Surrogate pairs: 35 × 2 = 70 units fit one message.
    assert_eq!(seg(&"😀".repeat(35)), (Encoding::Ucs2, 1, 70));
    assert_eq!(seg(&"😀".repeat(36)), (Encoding::Ucs2, 2, 72));
    // 66 units then an emoji: the pair starts segment 2 (67 + 2 would not
    // fit), so 66 + 2 + 66 = 134 units need 3 segments.
    let body = format!("{}😀{}", "ç".repeat(66), "ç".repeat(66));
    assert_eq!(seg(&body), (Encoding::Ucs2, 3, 134));
    // A flag (two regional indicators, 4 units) at the boundary.
    let body = format!("{}🇺🇸{}", "ç".repeat(65), "ç".repeat(65));
    assert_eq!(seg(&body), (Encoding::Ucs2, 3, 134));
    let body = format!("{}🇺🇸{}", "ç".repeat(63), "ç".repeat(67));
    assert_eq!(seg(&body), (Encoding::Ucs2, 2, 134));
    // Skin tone (👍🏽, 4 units) and a ZWJ family (👨‍👩‍👧‍👦, 11 units).
    let thumbs = "👍🏽";
    assert_eq!(seg(thumbs), (Encoding::Ucs2, 1, 4));
    let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
    assert_eq!(seg(family), (Encoding::Ucs2, 1, 11));
    let body = format!("{}{}{}", "ç".repeat(60), family, "ç".repeat(60));
    // 60 + 11 > 67: the family moves whole to segment 2 (11 + 56 = 67), the
    // last 4 go to segment 3.
    assert_eq!(seg(&body), (Encoding::Ucs2, 3, 131));
    let body = format!("{}{}{}", "ç".repeat(56), family, "ç".repeat(67));
    assert_eq!(seg(&body), (Encoding::Ucs2, 2, 134));
    // An emoji with a variation selector (❤️ = U+2764 U+FE0F, 2 units).
    let body = format!("{}❤\u{fe0f}{}", "ç".repeat(66), "ç".repeat(66));
    assert_eq!(seg(&body), (Encoding::Ucs2, 3, 134));
    // Combining marks stay with their letter.
    let body = format!("{}e\u{301}{}", "ç".repeat(66), "ç".repeat(66));
    assert_eq!(seg(&body), (Encoding::Ucs2, 3, 134));
    // The executor's entry point agrees.
    assert_eq!(trackly::domain::sms::segments(&body), 3);
}

/// Answers of Twilio's calculator (npm `sms-segments-calculator` 1.3.0, from
/// TwilioDevEd/message-segment-calculator); the boundary cases of the two
/// tests above were checked against it too.
#[test]
fn agrees_with_twilios_calculator() {
    let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
    let cases: Vec<(String, Encoding, u32, u32)> = vec![
        ("Hi 👋".into(), Encoding::Ucs2, 1, 5),
        ("price: 5€ {ok}".into(), Encoding::Gsm7, 1, 17),
        ("a\r\nb".into(), Encoding::Gsm7, 1, 4),
        ("x\u{0c}y".into(), Encoding::Gsm7, 1, 4),
        ("hello “quoted”".into(), Encoding::Ucs2, 1, 14),
        (
            format!("{}👍🏽{}", "a".repeat(100), "a".repeat(100)),
            Encoding::Ucs2,
            4,
            204,
        ),
        ("👍🏽".repeat(20), Encoding::Ucs2, 2, 80),
        (family.repeat(12), Encoding::Ucs2, 2, 132),
        ("Ça va? à bientôt".into(), Encoding::Ucs2, 1, 16),
        ("Ç".repeat(161), Encoding::Gsm7, 2, 161),
        ("back`tick".into(), Encoding::Ucs2, 1, 9),
        ("\u{a0}".repeat(5), Encoding::Ucs2, 1, 5),
    ];
    for (text, encoding, segments, units) in cases {
        let i = analyze(&text);
        assert_eq!(
            (i.encoding, i.segments, i.code_units),
            (encoding, segments, units),
            "{text:?}"
        );
    }
}

#[test]
fn an_overlong_cluster_does_not_loop_or_panic() {
    let zalgo = format!("a{}", "\u{301}".repeat(500));
    let i = analyze(&zalgo);
    assert_eq!((i.encoding, i.code_units), (Encoding::Ucs2, 501));
    assert_eq!(i.segments, 8); // 501 / 67 rounded up, split by code points
}

// --------------------------------------------------------- placeholders ---

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn placeholders_render_with_defaults_and_whitespace() {
    let f = fields(&[("first_name", "Ana"), ("city", "Lyon"), ("last_name", "  ")]);
    let view = ContactView {
        phone: "+33612345678",
        custom_fields: &f,
    };
    let t =
        parse("Hi {{ first_name | there }}, {{last_name|friend}} in {{custom.city}} ({{phone}})")
            .unwrap();
    assert_eq!(t.render(&view), "Hi Ana, friend in Lyon (+33612345678)");
    let empty = BTreeMap::new();
    let nobody = ContactView {
        phone: "+33612345678",
        custom_fields: &empty,
    };
    assert_eq!(t.render(&nobody), "Hi there, friend in  (+33612345678)");
    assert_eq!(t.unresolved_without_default(&nobody), ["custom.city"]);
    assert!(t.unresolved_without_default(&view).is_empty());
    // No placeholders, lone braces and a stray closing pair are text.
    let plain = parse("50% off {today} }} only").unwrap();
    assert_eq!(plain.render(&view), "50% off {today} }} only");
    // Repeated missing names are listed once.
    let t = parse("{{last_name}} {{last_name}} {{first_name}}").unwrap();
    assert_eq!(
        t.unresolved_without_default(&nobody),
        ["last_name", "first_name"]
    );
    // An explicit empty default counts as a default.
    let t = parse("Hi{{first_name|}}!").unwrap();
    assert_eq!(t.render(&nobody), "Hi!");
    assert!(t.unresolved_without_default(&nobody).is_empty());
}

#[test]
fn placeholder_errors_name_the_placeholder_and_position() {
    assert_eq!(
        parse("Hi {{first_name"),
        Err(PlaceholderError::Unclosed {
            position: 3,
            snippet: "{{first_name".into()
        })
    );
    assert_eq!(
        parse("Hi {{ frist_name }}!"),
        Err(PlaceholderError::Unknown {
            name: "frist_name".into(),
            position: 3
        })
    );
    let e = parse("ok {{phone}} é {{custom.}}").unwrap_err();
    assert_eq!(
        e,
        PlaceholderError::Unknown {
            name: "custom.".into(),
            position: 16
        }
    );
    assert!(e.to_string().contains("\"custom.\" at byte 16"), "{e}");
    assert!(matches!(
        parse("{{}}"),
        Err(PlaceholderError::Unknown { position: 0, .. })
    ));
    assert!(matches!(
        parse("{{custom.a b}}"),
        Err(PlaceholderError::Unknown { .. })
    ));
}

// ------------------------------------------------------------- variants ---

/// `n` contact ids as one process would mint them (same second, same
/// process bytes, a counter), fixed so that the test is deterministic.
fn ids(n: usize) -> Vec<ContactId> {
    (0..n as u32)
        .map(|i| {
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&1_780_000_000u32.to_be_bytes());
            b[4..9].copy_from_slice(&[0x5e, 0x11, 0xa7, 0x3c, 0x02]);
            b[9..].copy_from_slice(&i.to_be_bytes()[1..]);
            ContactId(bson::oid::ObjectId::from_bytes(b))
        })
        .collect()
}

#[test]
fn weighted_split_proportions_and_zero_weights() {
    let run = ScheduleRunId("65f0aa000000000000000001".parse().unwrap());
    let weights = [50, 30, 20, 0];
    let mut counts = [0usize; 4];
    // Sequential ObjectIds (the realistic case: one importer's contacts).
    let contacts = ids(100_000);
    for c in &contacts {
        counts[pick_weighted(&weights, *c, run).unwrap()] += 1;
    }
    assert_eq!(counts[3], 0, "zero weight picked");
    for (i, expected) in [50_000.0, 30_000.0, 20_000.0].iter().enumerate() {
        let share = counts[i] as f64;
        assert!(
            (share - expected).abs() < 1_000.0,
            "variant {i}: {counts:?}"
        );
    }
    assert_eq!(pick_weighted(&[0, 0], contacts[0], run), None);
    assert_eq!(pick_weighted(&[], contacts[0], run), None);
    assert_eq!(pick_weighted(&[0, 7], contacts[0], run), Some(1));
}

#[test]
fn weighted_split_is_deterministic_per_contact_and_run() {
    let run = ScheduleRunId("65f0aa000000000000000001".parse().unwrap());
    let other_run = ScheduleRunId("65f0aa000000000000000002".parse().unwrap());
    let weights = [1, 1, 1];
    let contacts = ids(1_000);
    let first: Vec<_> = contacts
        .iter()
        .map(|c| pick_weighted(&weights, *c, run))
        .collect();
    let again: Vec<_> = contacts
        .iter()
        .map(|c| pick_weighted(&weights, *c, run))
        .collect();
    assert_eq!(first, again);
    // Another run deals contacts independently.
    let other: Vec<_> = contacts
        .iter()
        .map(|c| pick_weighted(&weights, *c, other_run))
        .collect();
    let same = first.iter().zip(&other).filter(|(a, b)| a == b).count();
    assert!(
        (250..420).contains(&same),
        "{same} of 1000 kept their variant"
    );
}

#[test]
fn thompson_sampling_converges_on_the_best_variant() {
    let mut rng = StdRng::seed_from_u64(7);
    let truth = [0.02, 0.05, 0.10];
    let mut arms = [ArmStats::default(); 3];
    let mut late_picks = [0usize; 3];
    let rounds = 20_000;
    for round in 0..rounds {
        let i = thompson_pick(&arms, DEFAULT_FLOOR, &mut rng).unwrap();
        arms[i].sends += 1;
        if rand::RngExt::random_bool(&mut rng, truth[i]) {
            arms[i].clicks += 1;
        }
        if round >= rounds - 5_000 {
            late_picks[i] += 1;
        }
    }
    // The best arm dominates late picks; each arm keeps at least its floor
    // share (5 % of 5,000 = 250, minus sampling noise).
    assert!(late_picks[2] > 4_000, "{late_picks:?}");
    assert!(late_picks.iter().all(|&n| n > 180), "{late_picks:?}");
}

#[test]
fn thompson_floor_and_edge_cases() {
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(thompson_pick(&[], 0.05, &mut rng), None);
    // A clear winner with no floor is always picked ...
    let arms = [
        ArmStats {
            sends: 10_000,
            clicks: 10,
        },
        ArmStats {
            sends: 10_000,
            clicks: 5_000,
        },
    ];
    let picks: usize = (0..1_000)
        .filter(|_| thompson_pick(&arms, 0.0, &mut rng) == Some(1))
        .count();
    assert_eq!(picks, 1_000);
    // ... with a 20 % floor the loser still gets about 20 %.
    let losers = (0..10_000)
        .filter(|_| thompson_pick(&arms, 0.2, &mut rng) == Some(0))
        .count();
    assert!((1_800..2_200).contains(&losers), "{losers}");
    // Floors past 1/n mean uniform; NaN means none; clicks > sends is clamped.
    let odd = [
        ArmStats {
            sends: 3,
            clicks: 9,
        },
        ArmStats::default(),
    ];
    for floor in [5.0, f64::NAN, -1.0] {
        assert!(thompson_pick(&odd, floor, &mut rng).is_some());
    }
}

// ---------------------------------------------------------------- links ---

#[test]
fn links_are_found_with_a_careful_rule() {
    let found = |body: &str| -> Vec<String> {
        find_urls(body)
            .into_iter()
            .map(|r| body[r].to_string())
            .collect()
    };
    assert_eq!(
        found("no links here, just www.example.com"),
        Vec::<String>::new()
    );
    assert_eq!(found("See https://a.io/x."), ["https://a.io/x"]);
    assert_eq!(
        found("(see https://a.io/x), then http://b.io?q=1!"),
        ["https://a.io/x", "http://b.io?q=1"]
    );
    assert_eq!(
        found("https://en.wikipedia.org/wiki/Foo_(bar)."),
        ["https://en.wikipedia.org/wiki/Foo_(bar)"]
    );
    assert_eq!(found("HTTPS://A.IO/Path;"), ["HTTPS://A.IO/Path"]);
    assert_eq!(
        found("a https://a.io/x?b=1&c=2#frag\nb"),
        ["https://a.io/x?b=1&c=2#frag"]
    );
    assert_eq!(found("<https://a.io/x>"), ["https://a.io/x"]);
    assert_eq!(
        found("xhttps://a.io and https:// and https://."),
        Vec::<String>::new()
    );
    assert_eq!(found("ünï https://ü.example/é?"), ["https://ü.example/é"]);
}

#[test]
fn links_are_rewritten_with_unguessable_codes() {
    let mut rng = StdRng::seed_from_u64(42);
    let body = "Sale! https://shop.io/a, and https://shop.io/a. Also http://b.io/x?y=1";
    let r = rewrite_links_with(body, "https://t.ly/", &mut rng);
    assert_eq!(r.links.len(), 3);
    // The same URL twice gets two codes.
    assert_eq!(r.links[0].destination, "https://shop.io/a");
    assert_eq!(r.links[1].destination, "https://shop.io/a");
    assert_ne!(r.links[0].code, r.links[1].code);
    assert_eq!(r.links[2].destination, "http://b.io/x?y=1");
    let expected = format!(
        "Sale! https://t.ly/l/{}, and https://t.ly/l/{}. Also https://t.ly/l/{}",
        r.links[0].code, r.links[1].code, r.links[2].code
    );
    assert_eq!(r.body, expected);
    for l in &r.links {
        assert_eq!(l.code.len(), CODE_LEN);
        assert!(
            l.code.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            l.code
        );
    }
    // No links: the body is unchanged.
    let r = rewrite_links("Reply STOP to opt out.", "https://t.ly");
    assert_eq!(r.body, "Reply STOP to opt out.");
    assert!(r.links.is_empty());
    // The OS-seeded generator gives different codes each time.
    let a = rewrite_links("https://a.io", "https://t.ly");
    let b = rewrite_links("https://a.io", "https://t.ly");
    assert_ne!(a.links[0].code, b.links[0].code);
}

// ---------------------------------------------------------- eligibility ---

fn candidate() -> Candidate<'static> {
    Candidate {
        subscribed: true,
        blocked: false,
        in_workflow: false,
        last_sent: None,
        phone: "+12015550123",
        time_zone: None,
    }
}

fn list_rules() -> ListRules {
    ListRules {
        cooldown_secs: 3_600,
        window: LocalWindow::new(hm("08:00"), hm("21:00")).unwrap(),
        default_zone: "America/Chicago".into(),
    }
}

const NOON_NY: &str = "2026-07-01T16:00:00Z"; // 12:00 EDT
const NIGHT_NY: &str = "2026-07-02T03:00:00Z"; // 23:00 EDT

#[test]
fn eligible_contacts_are_sent_now_in_their_zone() {
    let d = evaluate(
        &candidate(),
        &list_rules(),
        &ScheduleRules::default(),
        utc(NOON_NY),
    );
    assert_eq!(
        d,
        Decision::Eligible {
            send_at: utc(NOON_NY),
            tz: tz("America/New_York")
        }
    );
}

#[test]
fn each_skip_reason() {
    let sched = ScheduleRules::default();
    let now = utc(NOON_NY);
    let skip = |c: Candidate<'_>, s: &ScheduleRules, now| match evaluate(&c, &list_rules(), s, now)
    {
        Decision::Skip(r) => Some(r),
        Decision::Eligible { .. } => None,
    };
    assert_eq!(
        skip(
            Candidate {
                subscribed: false,
                ..candidate()
            },
            &sched,
            now
        ),
        Some(SkipReason::Unsubscribed)
    );
    assert_eq!(
        skip(
            Candidate {
                blocked: true,
                ..candidate()
            },
            &sched,
            now
        ),
        Some(SkipReason::Unsubscribed)
    );
    assert_eq!(
        skip(
            Candidate {
                phone: "+1201555012",
                ..candidate()
            },
            &sched,
            now
        ),
        Some(SkipReason::InvalidNumber)
    );
    let in_wf = Candidate {
        in_workflow: true,
        ..candidate()
    };
    assert_eq!(skip(in_wf, &sched, now), None);
    let excl = ScheduleRules {
        exclude_in_workflow: true,
        ..sched
    };
    assert_eq!(skip(in_wf, &excl, now), Some(SkipReason::InWorkflow));
    let recent = Candidate {
        last_sent: Some(utc("2026-07-01T15:00:01Z")),
        ..candidate()
    };
    assert_eq!(skip(recent, &sched, now), Some(SkipReason::Cooldown));
    let exactly = Candidate {
        last_sent: Some(utc("2026-07-01T15:00:00Z")),
        ..candidate()
    };
    assert_eq!(skip(exactly, &sched, now), None);
    assert_eq!(
        skip(candidate(), &sched, utc(NIGHT_NY)),
        Some(SkipReason::QuietHours)
    );
    // The stored zone wins over the number's: noon in New York is 18:00 in
    // Paris, inside; 23:00 in New York is 05:00 in Paris, outside.
    let paris = Candidate {
        time_zone: Some("Europe/Paris"),
        ..candidate()
    };
    assert_eq!(skip(paris, &sched, now), None);
    assert_eq!(
        skip(paris, &sched, utc(NIGHT_NY)),
        Some(SkipReason::QuietHours)
    );
}

#[test]
fn skip_order_is_documented_order() {
    let sched = ScheduleRules {
        exclude_in_workflow: true,
        defer_outside_window: false,
    };
    let everything_wrong = Candidate {
        subscribed: false,
        blocked: true,
        in_workflow: true,
        last_sent: Some(utc("2026-07-02T02:59:00Z")),
        phone: "+1",
        time_zone: None,
    };
    let now = utc(NIGHT_NY);
    let r = |c| evaluate(&c, &list_rules(), &sched, now);
    assert_eq!(
        r(everything_wrong),
        Decision::Skip(SkipReason::Unsubscribed)
    );
    let c = Candidate {
        subscribed: true,
        blocked: false,
        ..everything_wrong
    };
    assert_eq!(r(c), Decision::Skip(SkipReason::InvalidNumber));
    let c = Candidate {
        phone: "+12015550123",
        ..c
    };
    assert_eq!(r(c), Decision::Skip(SkipReason::InWorkflow));
    let c = Candidate {
        in_workflow: false,
        ..c
    };
    assert_eq!(r(c), Decision::Skip(SkipReason::Cooldown));
    let c = Candidate {
        last_sent: None,
        ..c
    };
    assert_eq!(r(c), Decision::Skip(SkipReason::QuietHours));
}

#[test]
fn deferred_contacts_get_the_next_window_opening() {
    let sched = ScheduleRules {
        defer_outside_window: true,
        ..ScheduleRules::default()
    };
    let d = evaluate(&candidate(), &list_rules(), &sched, utc(NIGHT_NY));
    // 23:00 EDT -> 08:00 EDT the next morning.
    assert_eq!(
        d,
        Decision::Eligible {
            send_at: utc("2026-07-02T12:00:00Z"),
            tz: tz("America/New_York")
        }
    );
}

#[test]
fn candidate_of_a_stored_contact() {
    use trackly::domain::contact::LastSent;
    use trackly::domain::{AccountId, Contact, SendingListId, Subscription};
    let list = SendingListId::new();
    let other = SendingListId::new();
    let at = |s| utc(s);
    let mut contact = Contact {
        id: ContactId::new(),
        account: AccountId::new(),
        phone: E164::parse("+12015550123").unwrap(),
        time_zone: String::new(),
        subscriptions: vec![Subscription {
            list,
            subscribed: true,
            changed_at: at(NOON_NY),
        }],
        blocked: false,
        in_workflow: true,
        tags: vec![],
        custom_fields: BTreeMap::new(),
        last_sent: vec![
            LastSent {
                list,
                at: at("2026-06-01T00:00:00Z"),
            },
            LastSent {
                list: other,
                at: at("2026-06-30T00:00:00Z"),
            },
            LastSent {
                list,
                at: at("2026-06-02T00:00:00Z"),
            },
        ],
        created_at: at(NOON_NY),
    };
    let c = Candidate::of(&contact, list);
    assert!(c.subscribed && !c.blocked && c.in_workflow);
    assert_eq!(c.last_sent, Some(at("2026-06-02T00:00:00Z")));
    assert_eq!((c.phone, c.time_zone), ("+12015550123", None));
    assert!(
        !Candidate::of(&contact, other).subscribed,
        "not on the other list"
    );
    contact.time_zone = "America/Denver".into();
    contact.subscriptions[0].subscribed = false;
    let c = Candidate::of(&contact, list);
    assert_eq!((c.subscribed, c.time_zone), (false, Some("America/Denver")));
}

#[test]
fn skip_reason_keys_are_stable() {
    let keys: Vec<_> = [
        SkipReason::Unsubscribed,
        SkipReason::Cooldown,
        SkipReason::InvalidNumber,
        SkipReason::QuietHours,
        SkipReason::InWorkflow,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(
        keys,
        [
            "unsubscribed",
            "cooldown",
            "invalid_number",
            "quiet_hours",
            "in_workflow"
        ]
    );
}

#[test]
fn short_codes_and_preview_agents() {
    use trackly::rules::links::{is_code, is_preview_bot, new_code};
    let code = new_code(&mut rand::rng());
    assert!(is_code(&code));
    for bad in [
        "",
        "short",
        "Ab3dE6gH9kX",
        "Ab3dE6gH9!",
        "$ne$ne$ne$",
        "Ab3dE6gH9é",
    ] {
        assert!(!is_code(bad), "{bad:?}");
    }
    for bot in [
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0",
        "",
        "   ",
    ] {
        assert!(is_preview_bot(Some(bot)), "{bot:?}");
    }
    assert!(is_preview_bot(None));
    for person in [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    ] {
        assert!(!is_preview_bot(Some(person)), "{person:?}");
    }
}

#[test]
fn inbound_keywords_whole_message_and_lenient_opt_outs() {
    use trackly::rules::keywords::{KeywordAction::*, classify};
    for (body, want) in [
        // The carriers' keywords, trimmed, any case, the whole message.
        ("STOP", Unsubscribe),
        ("  stop\n", Unsubscribe),
        ("StopAll", Unsubscribe),
        ("UNSUBSCRIBE", Unsubscribe),
        ("cancel", Unsubscribe),
        ("End", Unsubscribe),
        ("quit", Unsubscribe),
        ("START", Resubscribe),
        ("unstop", Resubscribe),
        ("Yes", Resubscribe),
        ("HELP", Help),
        ("info", Help),
        // Not the whole message, or not the word: nothing changes.
        ("stop by the store", None),
        ("NONSTOP", None),
        ("stopped", None),
        ("I will stop by later", None),
        ("help me find the store", None),
        ("", None),
        ("   ", None),
        ("Thanks!", None),
        // Meant as STOP: lenient is the safe side.
        ("Stop!", Unsubscribe),
        ("STOP.", Unsubscribe),
        ("stop 🛑", Unsubscribe),
        ("stop texting me", Unsubscribe),
        ("Please stop!!", Unsubscribe),
        ("Don't text me", Unsubscribe),
        ("remove me from your list.", Unsubscribe),
        ("OPT OUT", Unsubscribe),
        ("opt-out", Unsubscribe),
        ("optout", Unsubscribe),
        ("REVOKE", Unsubscribe),
        ("ＳＴＯＰ", Unsubscribe),
        ("\u{200B}STOP\u{200B}", Unsubscribe),
        ("S\u{00AD}TOP", Unsubscribe),
        ("\u{FEFF}stop", Unsubscribe),
    ] {
        assert_eq!(classify(body), want, "{body:?}");
    }
}

#[test]
fn clicks_right_at_arrival_are_previews() {
    use trackly::rules::links::is_preview_timing;
    let t = utc("2026-12-01T12:00:00Z");
    let s = chrono::Duration::seconds;
    let ms = chrono::Duration::milliseconds;
    assert!(is_preview_timing(t + ms(800), Some(t), None));
    assert!(
        is_preview_timing(t - ms(500), None, Some(t)),
        "a report after the fetch"
    );
    assert!(is_preview_timing(t + s(30), Some(t), Some(t + s(29))));
    assert!(!is_preview_timing(t + s(3), Some(t), None));
    assert!(!is_preview_timing(t + s(40), Some(t), Some(t + s(20))));
    assert!(!is_preview_timing(t, None, None));
}
