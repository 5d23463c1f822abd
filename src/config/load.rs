//! Layering: built-in defaults, then the TOML file, then `TRACKLY_*`
//! environment variables. Shape errors (unknown keys, wrong types) are all
//! collected first; then values that do not parse are reported one by one,
//! each put back to its default so that the rest can still be checked.

use super::{Config, ConfigError, ConfigErrors, Secrets};
use std::path::Path;

const ENV_PREFIX: &str = "TRACKLY_";

impl Config {
    /// Load a file (or only defaults when `path` is None), apply environment
    /// overrides from the process environment, and validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    key: p.display().to_string(),
                    message: format!("cannot read: {e}"),
                }])
            })?,
            None => String::new(),
        };
        Self::from_sources(&text, std::env::vars())
    }

    /// Parse TOML text plus `(name, value)` environment pairs. Pure: tests
    /// pass their own environment.
    pub fn from_sources(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let defaults = toml::Value::try_from(Config::default()).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "<defaults>".into(),
                message: e.to_string(),
            }])
        })?;
        let mut value: toml::Value = match toml::from_str::<toml::Table>(text) {
            Ok(t) => toml::Value::Table(t),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    key: "<file>".into(),
                    message: format!("not valid TOML: {}", e.message().trim()),
                }]));
            }
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        check_shape(&value, &defaults, "", &mut errors);
        if !errors.is_empty() {
            // Unknown keys and wrong types are reported; drop them so the
            // remaining values can still be checked below.
            for e in &errors {
                remove_path(&mut value, &e.key);
            }
        }
        for (name, raw) in &env {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX)
                && rest.contains("__")
            {
                apply_env(&mut value, &defaults, name, rest, raw, &mut errors);
            }
        }
        // Values of the right shape can still be wrong ("soon" is not a
        // duration): deserialize, and on an error note it, put the default
        // back at that path, and go on, so every such error is reported too.
        let mut cfg = None;
        for _ in 0..64 {
            match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                Ok(c) => {
                    cfg = Some(c);
                    break;
                }
                Err(e) => {
                    let path = e.path().to_string();
                    errors.push(ConfigError {
                        key: path.clone(),
                        message: e.into_inner().to_string().trim().to_string(),
                    });
                    if !reset_to_default(&mut value, &defaults, &path) {
                        break;
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let Some(cfg) = cfg else {
            return Err(ConfigErrors(vec![ConfigError {
                key: "<config>".into(),
                message: "could not be read".into(),
            }]));
        };
        cfg.validate_with(&Secrets::from_vars(env))?;
        Ok(cfg)
    }
}

/// Remove the value at a dotted `path`, if there is one.
fn remove_path(value: &mut toml::Value, path: &str) {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = value;
    for (i, seg) in segs.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i + 1 == segs.len() {
            t.remove(*seg);
            return;
        }
        match t.get_mut(*seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

/// Replace the value at a dotted `path` with the default's. False when the
/// path does not lead anywhere (nothing more can be fixed).
fn reset_to_default(value: &mut toml::Value, defaults: &toml::Value, path: &str) -> bool {
    let segs: Vec<&str> = path
        .split('.')
        .filter(|s| !s.is_empty() && *s != "?")
        .collect();
    if segs.is_empty() {
        return false;
    }
    let mut d = defaults;
    for seg in &segs {
        match d.get(seg) {
            Some(next) => d = next,
            None => return false,
        }
    }
    let mut cur = value;
    for (i, seg) in segs.iter().enumerate() {
        let toml::Value::Table(t) = cur else {
            return false;
        };
        if i + 1 == segs.len() {
            t.insert(seg.to_string(), d.clone());
            return true;
        }
        match t.get_mut(*seg) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    false
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn same_kind(user: &toml::Value, default: &toml::Value) -> bool {
    use toml::Value::*;
    matches!(
        (user, default),
        (String(_), String(_))
            | (Integer(_), Integer(_))
            | (Float(_), Float(_))
            | (Integer(_), Float(_))
            | (Boolean(_), Boolean(_))
            | (Array(_), Array(_))
            | (Table(_), Table(_))
    )
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Walk the user's value against the defaults: unknown keys and wrong types,
/// all of them.
fn check_shape(
    user: &toml::Value,
    default: &toml::Value,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    if let (toml::Value::Table(u), toml::Value::Table(d)) = (user, default) {
        for (k, v) in u {
            let p = join(path, k);
            match d.get(k) {
                None => errors.push(ConfigError {
                    key: p,
                    message: format!(
                        "unknown key (known here: {})",
                        d.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
                Some(dv) if !same_kind(v, dv) => errors.push(ConfigError {
                    key: p,
                    message: format!("expected {}, found {}", kind(dv), kind(v)),
                }),
                Some(dv) => check_shape(v, dv, &p, errors),
            }
        }
    }
}

/// Apply one `TRACKLY_A__B__C=value` override, typed by the default's type.
fn apply_env(
    value: &mut toml::Value,
    defaults: &toml::Value,
    name: &str,
    rest: &str,
    raw: &str,
    errors: &mut Vec<ConfigError>,
) {
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let mut d = defaults;
    for seg in &path {
        match d.get(seg) {
            Some(next) => d = next,
            None => {
                errors.push(ConfigError {
                    key: name.to_string(),
                    message: format!("no such configuration key: {}", path.join(".")),
                });
                return;
            }
        }
    }
    let parsed = match d {
        toml::Value::String(_) => Some(toml::Value::String(raw.to_string())),
        toml::Value::Integer(_) => raw.trim().parse::<i64>().ok().map(toml::Value::Integer),
        toml::Value::Float(_) => raw.trim().parse::<f64>().ok().map(toml::Value::Float),
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Some(toml::Value::Boolean(true)),
            "false" | "0" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        toml::Value::Table(_) => None,
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v")),
    };
    let Some(parsed) = parsed else {
        errors.push(ConfigError {
            key: name.to_string(),
            message: format!("expected {}, got {raw:?}", kind(d)),
        });
        return;
    };
    let mut cur = value;
    for (i, seg) in path.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i + 1 == path.len() {
            t.insert(seg.clone(), parsed);
            return;
        }
        cur = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
}
