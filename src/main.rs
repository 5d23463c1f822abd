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
        Command::CheckConfig { path } => match load(Some(&path)) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
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
