//! `trackly ctl`: the admin API's common operations from the command line,
//! so operators need no curl. Talks to one daemon's `/api/v1` (any daemon:
//! list control and schedule changes reach every daemon through the store
//! and the bus).
//!
//! The URL comes from `--url` or `TRACKLY_API_URL` (default
//! `http://127.0.0.1:8080`), the token from `--token` or
//! `TRACKLY_ADMIN_TOKEN`. The answer's JSON is printed on stdout. Exit 0 on
//! success; 1 when the API refused (its error code and message on stderr);
//! 2 when the daemon could not be reached (or a file to send cannot be
//! read).

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The daemon's base URL.
    #[arg(long, env = "TRACKLY_API_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token (operator or read-only).
    #[arg(long, env = "TRACKLY_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// A sending list and its queue depth.
    List { id: String },
    /// Pause a sending list on every daemon.
    Pause { list: String },
    /// Resume a sending list on every daemon.
    Resume { list: String },
    /// Drain a sending list on every daemon: paused, answered once no daemon
    /// holds a claim on it.
    Drain { list: String },
    /// Set a sending list's rate (messages per minute) on every daemon.
    Rate { list: String, per_minute: u32 },
    /// Queue depth per list.
    Queue,
    /// The queue view per list: depth, rate limit, current rate, paused or
    /// not, serving daemons, in-doubt messages (what the dashboard shows).
    Lists,
    /// Every schedule: status, next run, audience size, latest run's
    /// progress (the dashboard's schedules view).
    Schedules,
    /// Every daemon: id, version, lease age, lists served, readiness.
    Daemons,
    /// The token's role.
    Whoami,
    /// A schedule and its latest runs (counters, skipped by reason).
    Schedule { id: String },
    /// A campaign run's stats: queued, sent, delivered, failed and clicked,
    /// skipped by reason, and the four rates.
    Stats { run: String },
    /// The dry run of a schedule: who would be skipped and why, cost, time.
    Explain { schedule: String },
    /// Make a schedule due now.
    Trigger { schedule: String },
    /// Pause a schedule.
    PauseSchedule { schedule: String },
    /// Resume a schedule.
    ResumeSchedule { schedule: String },
    /// Cancel a schedule.
    CancelSchedule { schedule: String },
    /// Import contacts from a CSV file (header row: phone, time_zone?,
    /// first_name?, last_name?, tags? (`;`-separated), custom fields).
    /// Failed messages (in-doubt ones apart), newest first.
    Failed {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        list: Option<String>,
    },
    /// "Resend to failed only": requeue dead letters by id, or all of a
    /// reason (optionally of one list or schedule); in-doubt (NO_RESPONSE)
    /// ones only with --include-in-doubt, since they may have been delivered.
    Requeue {
        /// Dead letter ids (or give --reason).
        ids: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        list: Option<String>,
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        include_in_doubt: bool,
    },
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        account: String,
        #[arg(long)]
        list: String,
        /// Where national numbers are read (US by default).
        #[arg(long)]
        default_region: Option<String>,
    },
}

/// A request's body.
enum Body {
    None,
    Json(Value),
    Csv(Vec<u8>),
}

/// What to send for a command (an error when a file cannot be read).
fn request(c: &CtlCommand) -> Result<(reqwest::Method, String, Body), String> {
    use reqwest::Method;
    let (method, path, json) = match c {
        CtlCommand::List { id } => (Method::GET, format!("/api/v1/lists/{id}"), None),
        CtlCommand::Pause { list } => (Method::POST, format!("/api/v1/lists/{list}/pause"), None),
        CtlCommand::Resume { list } => (Method::POST, format!("/api/v1/lists/{list}/resume"), None),
        CtlCommand::Drain { list } => (Method::POST, format!("/api/v1/lists/{list}/drain"), None),
        CtlCommand::Rate { list, per_minute } => (
            Method::PUT,
            format!("/api/v1/lists/{list}/rate"),
            Some(json!({ "per_minute": per_minute })),
        ),
        CtlCommand::Queue => (Method::GET, "/api/v1/queue".into(), None),
        CtlCommand::Lists => (Method::GET, "/api/v1/lists".into(), None),
        CtlCommand::Schedules => (Method::GET, "/api/v1/schedules".into(), None),
        CtlCommand::Daemons => (Method::GET, "/api/v1/daemons".into(), None),
        CtlCommand::Whoami => (Method::GET, "/api/v1/whoami".into(), None),
        CtlCommand::Schedule { id } => (Method::GET, format!("/api/v1/schedules/{id}"), None),
        CtlCommand::Stats { run } => (Method::GET, format!("/api/v1/runs/{run}"), None),
        CtlCommand::Failed { reason, list } => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(r) = reason {
                q.append_pair("reason", r);
            }
            if let Some(l) = list {
                q.append_pair("list", l);
            }
            (Method::GET, format!("/api/v1/failed?{}", q.finish()), None)
        }
        CtlCommand::Requeue {
            ids,
            reason,
            list,
            schedule,
            limit,
            include_in_doubt,
        } => {
            let mut body = serde_json::Map::new();
            if !ids.is_empty() {
                body.insert("ids".into(), json!(ids));
            }
            for (k, v) in [("reason", reason), ("list", list), ("schedule", schedule)] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            if let Some(l) = limit {
                body.insert("limit".into(), json!(l));
            }
            if *include_in_doubt {
                body.insert("include_in_doubt".into(), json!(true));
            }
            (
                Method::POST,
                "/api/v1/failed/requeue".into(),
                Some(Value::Object(body)),
            )
        }
        CtlCommand::Explain { schedule } => (
            Method::POST,
            format!("/api/v1/schedules/{schedule}/explain"),
            None,
        ),
        CtlCommand::Trigger { schedule } => (
            Method::POST,
            format!("/api/v1/schedules/{schedule}/trigger"),
            None,
        ),
        CtlCommand::PauseSchedule { schedule } => (
            Method::POST,
            format!("/api/v1/schedules/{schedule}/pause"),
            None,
        ),
        CtlCommand::ResumeSchedule { schedule } => (
            Method::POST,
            format!("/api/v1/schedules/{schedule}/resume"),
            None,
        ),
        CtlCommand::CancelSchedule { schedule } => (
            Method::POST,
            format!("/api/v1/schedules/{schedule}/cancel"),
            None,
        ),
        CtlCommand::Import {
            file,
            account,
            list,
            default_region,
        } => {
            let csv =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("account", account).append_pair("list", list);
            if let Some(r) = default_region {
                q.append_pair("default_region", r);
            }
            let path = format!("/api/v1/contacts/import?{}", q.finish());
            return Ok((Method::POST, path, Body::Csv(csv)));
        }
    };
    Ok((method, path, json.map_or(Body::None, Body::Json)))
}

/// Runs the subcommand; the exit code for `main`.
pub fn main(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trackly ctl: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(run(args))
}

async fn run(args: CtlArgs) -> ExitCode {
    let (method, path, body) = match request(&args.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trackly ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trackly ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let mut req = client.request(method, &url).bearer_auth(&args.token);
    match body {
        Body::None => {}
        Body::Json(b) => req = req.json(&b),
        Body::Csv(csv) => req = req.header("content-type", "text/csv").body(csv),
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trackly ctl: cannot reach {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "trackly ctl: {} {}: {}",
            status.as_u16(),
            value["error"].as_str().unwrap_or("error"),
            value["message"].as_str().unwrap_or("")
        );
        ExitCode::from(1)
    }
}
