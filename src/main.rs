//! The `trackly` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use trackly::config::Config;

#[derive(Parser)]
#[command(
    name = "trackly",
    version,
    about = "Trackly Executor: sends SMS campaigns"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: claim, rate-limit, send, record; HTTP health and webhooks.
    Serve {
        /// Configuration file; without it, built-in defaults (plus TRACKLY_* overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check the guarantees on a live MongoDB (while daemons run): messages
    /// with two terminal states, failures without a dead letter, finished
    /// messages still queued, claims of lapsed leases, balances that do not
    /// reconcile. Exit 1 on any violation.
    Audit {
        /// Configuration file, as for `serve` (TRACKLY_* overrides apply).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check numbers, message bodies and TCPA windows with the campaign rules.
    Inspect(trackly::rules::inspect::InspectArgs),
    /// The admin API's common operations: pause, resume, rate, queue,
    /// schedules (show, explain, trigger, pause, resume, cancel).
    Ctl(trackly::ctl::CtlArgs),
    /// Validate a configuration file (plus TRACKLY_* overrides) and print every error.
    CheckConfig {
        #[arg(default_value = "config.toml")]
        path: PathBuf,
    },
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errs| {
        eprint!("{errs}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect(args) => trackly::rules::inspect::main(args),
        Command::Ctl(args) => trackly::ctl::main(args),
        Command::CheckConfig { path } => match load(Some(&path)) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Audit { config, json } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            trackly::telemetry::init("warn", cfg.log.json);
            match actix_rt::System::new().block_on(trackly::audit::run(&cfg)) {
                Ok(report) => {
                    if json {
                        match serde_json::to_string_pretty(&report) {
                            Ok(s) => println!("{s}"),
                            Err(e) => {
                                eprintln!("audit: {e}");
                                return ExitCode::from(2);
                            }
                        }
                    } else {
                        print!("{}", report.text());
                    }
                    if report.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("audit failed: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config } => {
            let cfg = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            trackly::telemetry::init(&cfg.log.filter, cfg.log.json);
            let code = actix_rt::System::new().block_on(trackly::serve::run(cfg));
            ExitCode::from(code as u8)
        }
    }
}
