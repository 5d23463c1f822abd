//! `trackly inspect`: the line protocol through `run_lines`, and the binary
//! itself (stdin, stdout, exit codes).

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use trackly::rules::inspect::{Kind, run_lines};

fn lines(kind: Kind, input: &str) -> Vec<Value> {
    let mut out = Vec::new();
    run_lines(kind, input.as_bytes(), &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

#[test]
fn number_lines() {
    let out = lines(
        Kind::Number,
        concat!(
            r#"{"input": "(201) 555-0123", "region": "US"}"#,
            "\n",
            r#"{"input": "+442079460958", "region": null}"#,
            "\n",
            r#"{"input": "+1 201 555 01234"}"#,
            "\n",
        ),
    );
    assert_eq!(
        out,
        [
            json!({"valid": true, "e164": "+12015550123", "region": "US", "time_zones": ["America/New_York"]}),
            json!({"valid": true, "e164": "+442079460958", "region": "GB", "time_zones": ["Europe/London"]}),
            json!({"valid": false, "e164": null, "region": null, "time_zones": []}),
        ]
    );
}

#[test]
fn segments_lines() {
    let out = lines(
        Kind::Segments,
        &format!(
            "{}\n{}\n",
            json!({"text": "a".repeat(161)}),
            json!({"text": "Hi 👋"})
        ),
    );
    assert_eq!(
        out,
        [
            json!({"encoding": "GSM-7", "segments": 2, "code_units": 161}),
            json!({"encoding": "UCS-2", "segments": 1, "code_units": 5}),
        ]
    );
}

#[test]
fn window_lines() {
    let out = lines(
        Kind::Window,
        concat!(
            r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "08:00", "end": "21:00"}"#,
            "\n",
            r#"{"utc": "2026-03-08T06:59:59Z", "tz": "America/New_York", "start": "08:00", "end": "21:00"}"#,
            "\n",
            r#"{"utc": "2026-03-08T02:30:00.5Z", "tz": "Asia/Kolkata", "start": "08:00", "end": "21:00"}"#,
            "\n",
        ),
    );
    assert_eq!(
        out,
        [
            json!({"allowed": true, "local": "2026-03-08T08:00:00-04:00"}),
            json!({"allowed": false, "local": "2026-03-08T01:59:59-05:00"}),
            json!({"allowed": true, "local": "2026-03-08T08:00:00.500+05:30"}),
        ]
    );
}

#[test]
fn bad_lines_get_an_error_each_and_the_rest_goes_on() {
    let input = concat!(
        "{not json\n",
        "\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "Mars/Olympus", "start": "08:00", "end": "21:00"}"#,
        "\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "8am", "end": "21:00"}"#,
        "\n",
        r#"{"utc": "yesterday", "tz": "America/New_York", "start": "08:00", "end": "21:00"}"#,
        "\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "08:00"}"#,
        "\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "08:00", "end": "08:00"}"#,
        "\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "08:00", "end": "21:00", "extra": 1}"#,
        "\r\n",
        r#"{"utc": "2026-03-08T12:00:00Z", "tz": "America/New_York", "start": "08:00", "end": "21:00"}"#,
    );
    let out = lines(Kind::Window, input);
    assert_eq!(out.len(), 9, "one answer per input line: {out:?}");
    assert!(
        error_of(&out[0]).starts_with("line 1: invalid input: "),
        "{}",
        out[0]
    );
    assert_eq!(error_of(&out[1]), "line 2: blank line");
    assert!(
        error_of(&out[2]).contains(r#"line 3: unknown time zone "Mars/Olympus""#),
        "{}",
        out[2]
    );
    assert!(
        error_of(&out[3]).contains(r#"line 4: bad start time "8am""#),
        "{}",
        out[3]
    );
    assert!(
        error_of(&out[4]).contains(r#"line 5: bad utc "yesterday""#),
        "{}",
        out[4]
    );
    assert!(
        error_of(&out[5]).contains("missing field `end`"),
        "{}",
        out[5]
    );
    assert!(
        error_of(&out[6]).contains("line 7: empty window"),
        "{}",
        out[6]
    );
    assert!(
        error_of(&out[7]).contains("unknown field `extra`"),
        "{}",
        out[7]
    );
    // The last line has no newline and the previous one ended in CRLF.
    assert_eq!(
        out[8],
        json!({"allowed": true, "local": "2026-03-08T08:00:00-04:00"})
    );
}

#[test]
fn number_line_errors() {
    let out = lines(
        Kind::Number,
        concat!(
            r#"{"input": "2015550123", "region": "XX"}"#,
            "\n",
            r#"{"region": "US"}"#,
            "\n",
            r#"{"input": 2015550123}"#,
            "\n",
        ),
    );
    assert_eq!(error_of(&out[0]), r#"line 1: unknown region "XX""#);
    assert!(
        error_of(&out[1]).contains("missing field `input`"),
        "{}",
        out[1]
    );
    assert!(error_of(&out[2]).contains("invalid type"), "{}", out[2]);
}

#[test]
fn invalid_utf8_is_an_error_line() {
    let mut out = Vec::new();
    run_lines(
        Kind::Segments,
        &b"\xff\xfe\n{\"text\": \"ok\"}\n"[..],
        &mut out,
    )
    .unwrap();
    let out: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        error_of(&out[0]).starts_with("line 1: not UTF-8"),
        "{}",
        out[0]
    );
    assert_eq!(out[1]["segments"], 1);
}

// ------------------------------------------------------------ the binary ---

fn trackly(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackly"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn binary_reads_json_lines_and_exits_zero_despite_bad_lines() {
    let input = concat!(
        r#"{"input": "(201) 555-0123", "region": "US"}"#,
        "\n",
        "garbage\n",
        r#"{"input": "+14155552671"}"#,
        "\n",
    );
    let (code, stdout, stderr) = trackly(&["inspect", "number"], input);
    assert_eq!(code, 0, "{stderr}");
    let out: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["e164"], "+12015550123");
    assert!(error_of(&out[1]).starts_with("line 2: "));
    assert_eq!(out[2]["time_zones"], json!(["America/Los_Angeles"]));
}

#[test]
fn binary_argument_forms() {
    let (code, stdout, _) = trackly(
        &["inspect", "number", "(201) 555-0123", "--region", "US"],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"valid": true, "e164": "+12015550123", "region": "US", "time_zones": ["America/New_York"]})
    );
    let (code, stdout, _) = trackly(&["inspect", "segments", "Price: 5€"], "");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"encoding": "GSM-7", "segments": 1, "code_units": 10})
    );
    let args = [
        "inspect",
        "window",
        "2026-03-08T12:00:00Z",
        "America/New_York",
        "--start",
        "08:00",
        "--end",
        "21:00",
    ];
    let (code, stdout, _) = trackly(&args, "");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"allowed": true, "local": "2026-03-08T08:00:00-04:00"})
    );
    // The default window is 08:00-21:00.
    let (code, stdout, _) = trackly(
        &[
            "inspect",
            "window",
            "2026-03-08T06:00:00Z",
            "America/New_York",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["allowed"],
        false
    );
    // A bad single value: the error object, exit 1.
    let (code, stdout, _) = trackly(
        &["inspect", "window", "2026-03-08T12:00:00Z", "Nowhere/Land"],
        "",
    );
    assert_eq!(code, 1);
    assert!(error_of(&serde_json::from_str(&stdout).unwrap()).contains("unknown time zone"));
    // A usage error is clap's (exit 2).
    let (code, _, stderr) = trackly(&["inspect", "window", "2026-03-08T12:00:00Z"], "");
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn keyword_lines() {
    let input = [
        json!({"body": " STOP "}),
        json!({"body": "stop by the store"}),
        json!({"body": "Start"}),
        json!({"body": "help"}),
        json!({"body": "NONSTOP"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>()
        + "{\"text\": \"STOP\"}\n";
    let out = lines(Kind::Keyword, &input);
    let actions: Vec<&str> = out[..5]
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["unsubscribe", "none", "resubscribe", "help", "none"]
    );
    assert!(error_of(&out[5]).contains("line 6"), "{}", out[5]);
}

#[test]
fn binary_keyword_argument_form() {
    let (code, stdout, _) = trackly(&["inspect", "keyword", "ＳＴＯＰ"], "");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({"action": "unsubscribe"})
    );
}
