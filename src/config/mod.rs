//! Configuration: typed sections with defaults in one place, unknown keys
//! rejected, environment overrides, and every error reported at once.
//!
//! Precedence: built-in defaults < the TOML file < `TRACKLY_SECTION__KEY`
//! environment variables (`TRACKLY_RATE_LIMIT__BACKEND=local`,
//! `TRACKLY_PROVIDERS__FAKE__ENABLED=true`). Secrets never live in the file:
//! see [`Secrets`].
//!
//! # Layout
//!
//! - [`sections`]: the typed sections and their defaults (what
//!   `config.toml` lists);
//! - [`dur`]: durations written as `"250ms"`, `"10m"`;
//! - [`load`]: the layering (defaults, file, environment) and the
//!   collection of every shape and value error;
//! - [`validate`]: the semantic checks, timing against the configured
//!   providers included;
//! - [`secrets`]: credentials, from the environment only.
//!
//! The layering is our own, small and tested, rather than a layering crate
//! such as figment: those stop at the first error serde reports for a
//! section, and an operator fixing a file should see every problem at once.

mod dur;
mod load;
mod secrets;
pub mod sections;
mod validate;

#[cfg(test)]
mod tests;

pub use dur::Dur;
pub use secrets::{Secrets, TwilioCredentials};
pub use sections::*;

use std::fmt;

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`coordinator.max_batch`), or the env variable.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// The daemon id, defaulted to `<hostname>-<pid>`.
    pub fn daemon_id(&self) -> String {
        if !self.daemon.id.is_empty() {
            return self.daemon.id.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "trackly".into());
        format!("{host}-{}", std::process::id())
    }
}
