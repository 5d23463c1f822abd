//! `trackly inspect`: the rules from outside the test suite, for operators
//! checking a contact file or a creative before a campaign.
//!
//! `number`, `segments`, `window` and `keyword` each take one value as
//! arguments, or, given none, read JSON lines on stdin and print one JSON
//! object per input line, in order (formats in [`Kind`]'s variants).
//!
//! - A line that cannot be answered (bad JSON, a missing or unknown field, an
//!   unknown region or zone, a bad time) gets `{"error": "line N: …"}` and
//!   the command goes on with the next line; it still exits 0.
//! - A blank line (only whitespace) is an error line too (`line N: blank
//!   line`), so that output line N always answers input line N and the two
//!   files can be pasted side by side.
//! - A line that is not UTF-8 is an error line; a final line without a
//!   newline is read like any other; a trailing `\r` (CRLF files) is ignored.
//! - In the argument form a value that cannot be answered prints the same
//!   error object and exits 1, since that value was the whole input.
//!
//! This is the only part of `rules` that does I/O.

use super::phone::{check_number, parse_region};
use super::window::LocalWindow;
use crate::domain::sms;
use chrono::{DateTime, NaiveTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// `trackly inspect …`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(subcommand)]
    command: InspectCommand,
}

#[derive(Debug, clap::Subcommand)]
enum InspectCommand {
    /// Validate a phone number: E.164 form, region, time zones. Without
    /// INPUT, reads {"input": "...", "region": "US" | null} lines on stdin.
    Number {
        /// The number as written, e.g. "(201) 555-0123".
        input: Option<String>,
        /// Region that national numbers are read in (CLDR code, e.g. US).
        #[arg(long)]
        region: Option<String>,
    },
    /// Encoding and SMS segment count of a body. Without TEXT, reads
    /// {"text": "..."} lines on stdin.
    Segments {
        /// The message body.
        text: Option<String>,
    },
    /// What an inbound message asks for: unsubscribe, resubscribe, help or
    /// none. Without BODY, reads {"body": "..."} lines on stdin.
    Keyword {
        /// The inbound message's text.
        body: Option<String>,
    },
    /// Whether an instant is inside a TCPA window in a zone. Without
    /// arguments, reads {"utc": ..., "tz": ..., "start": "08:00", "end":
    /// "21:00"} lines on stdin.
    Window {
        /// The instant, RFC 3339 (2026-03-08T12:00:00Z).
        #[arg(requires = "tz")]
        utc: Option<String>,
        /// IANA zone (America/New_York).
        tz: Option<String>,
        /// Window start, local HH:MM.
        #[arg(long, default_value = "08:00")]
        start: String,
        /// Window end (exclusive), local HH:MM; before start crosses midnight.
        #[arg(long, default_value = "21:00")]
        end: String,
    },
}

/// Which question each stdin line asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{"input": "(201) 555-0123", "region": "US" | null}` →
    /// `{"valid", "e164", "region", "time_zones"}`.
    Number,
    /// `{"text": "..."}` → `{"encoding", "segments", "code_units"}`.
    Segments,
    /// `{"utc", "tz", "start", "end"}` → `{"allowed", "local"}`.
    Window,
    /// `{"body": "..."}` → `{"action": "unsubscribe" | "resubscribe" |
    /// "help" | "none"}`.
    Keyword,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumberLine {
    input: String,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsLine {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordLine {
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowLine {
    utc: String,
    tz: String,
    start: String,
    end: String,
}

/// Runs the subcommand; the exit code for `main`.
pub fn main(args: InspectArgs) -> ExitCode {
    let one = match args.command {
        InspectCommand::Number {
            input: Some(input),
            region,
        } => number(&input, region.as_deref()),
        InspectCommand::Segments { text: Some(text) } => Ok(segments(&text)),
        InspectCommand::Keyword { body: Some(body) } => Ok(keyword(&body)),
        InspectCommand::Window {
            utc: Some(utc),
            tz: Some(tz),
            start,
            end,
        } => window(&utc, &tz, &start, &end),
        command => {
            let kind = match command {
                InspectCommand::Number { .. } => Kind::Number,
                InspectCommand::Segments { .. } => Kind::Segments,
                InspectCommand::Window { .. } => Kind::Window,
                InspectCommand::Keyword { .. } => Kind::Keyword,
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            return match run_lines(kind, stdin, stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("trackly inspect: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let (value, code) = match one {
        Ok(v) => (v, ExitCode::SUCCESS),
        Err(e) => (json!({ "error": e }), ExitCode::FAILURE),
    };
    println!("{value}");
    code
}

/// Answers each line of `reader` on `writer`, one JSON object per line (rules
/// in the module doc). Only I/O errors stop it.
pub fn run_lines(
    kind: Kind,
    mut reader: impl BufRead,
    mut writer: impl Write,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let answer = match std::str::from_utf8(&buf) {
            Ok(line) => answer_line(kind, line.trim_end_matches(['\n', '\r'])),
            Err(e) => Err(format!("not UTF-8: {e}")),
        };
        let value = answer.unwrap_or_else(|e| json!({ "error": format!("line {line_no}: {e}") }));
        serde_json::to_writer(&mut writer, &value)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

fn answer_line(kind: Kind, line: &str) -> Result<Value, String> {
    if line.trim().is_empty() {
        return Err("blank line".to_string());
    }
    let bad_json = |e: serde_json::Error| format!("invalid input: {e}");
    match kind {
        Kind::Number => {
            let l: NumberLine = serde_json::from_str(line).map_err(bad_json)?;
            number(&l.input, l.region.as_deref())
        }
        Kind::Segments => {
            let l: SegmentsLine = serde_json::from_str(line).map_err(bad_json)?;
            Ok(segments(&l.text))
        }
        Kind::Window => {
            let l: WindowLine = serde_json::from_str(line).map_err(bad_json)?;
            window(&l.utc, &l.tz, &l.start, &l.end)
        }
        Kind::Keyword => {
            let l: KeywordLine = serde_json::from_str(line).map_err(bad_json)?;
            Ok(keyword(&l.body))
        }
    }
}

fn keyword(body: &str) -> Value {
    json!({"action": super::keywords::classify(body).as_str()})
}

fn number(input: &str, region: Option<&str>) -> Result<Value, String> {
    // An unknown region is the operator's mistake, not an invalid number.
    if let Some(r) = region {
        parse_region(r).map_err(|e| e.to_string())?;
    }
    let c = check_number(input, region);
    Ok(json!({
        "valid": c.valid,
        "e164": c.e164,
        "region": c.region,
        "time_zones": c.time_zones,
    }))
}

fn segments(text: &str) -> Value {
    let i = sms::analyze(text);
    json!({
        "encoding": i.encoding.as_str(),
        "segments": i.segments,
        "code_units": i.code_units,
    })
}

fn window(utc: &str, tz: &str, start: &str, end: &str) -> Result<Value, String> {
    let utc = DateTime::parse_from_rfc3339(utc.trim())
        .map_err(|e| {
            format!("bad utc {utc:?}: {e} (expected RFC 3339, e.g. 2026-03-08T12:00:00Z)")
        })?
        .with_timezone(&Utc);
    let tz: Tz = tz.trim().parse().map_err(|_| {
        format!("unknown time zone {tz:?} (expected an IANA name, e.g. America/New_York)")
    })?;
    let w = LocalWindow::new(time_of_day("start", start)?, time_of_day("end", end)?)
        .map_err(|e| e.to_string())?;
    let c = w.check(utc, tz);
    Ok(json!({
        "allowed": c.allowed,
        "local": c.local.to_rfc3339_opts(SecondsFormat::AutoSi, false),
    }))
}

/// `HH:MM` (or `HH:MM:SS`), 24-hour.
fn time_of_day(what: &str, s: &str) -> Result<NaiveTime, String> {
    let t = s.trim();
    NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
        .map_err(|_| format!("bad {what} time {s:?} (expected HH:MM, 00:00 to 23:59)"))
}
