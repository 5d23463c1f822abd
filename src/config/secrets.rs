//! Secrets: provider credentials, the admin token and the webhook token,
//! read from the environment only (never from the file).

use crate::telemetry::Secret;

/// Secrets, read from the environment only.
///
/// Provider credentials come in named sets: a list's provider settings name
/// one (`credentials = "default"` unless set). `TRACKLY_INFOBIP_API_KEY` is
/// the set "default", `TRACKLY_INFOBIP_API_KEY_EU` the set "eu"; likewise
/// `TRACKLY_TWILIO_ACCOUNT_SID[_NAME]` with `TRACKLY_TWILIO_AUTH_TOKEN[_NAME]`,
/// and `TRACKLY_CM_PRODUCT_TOKEN[_NAME]`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Admin API bearer token with the operator role (`TRACKLY_ADMIN_TOKEN`).
    pub admin_token: Option<Secret>,
    /// Admin API bearer token that may only read (`TRACKLY_READONLY_TOKEN`).
    pub readonly_token: Option<Secret>,
    /// Part of the delivery-report URLs of providers that do not sign their
    /// reports (Infobip, CM): `/webhooks/infobip/<token>`.
    pub webhook_token: Option<Secret>,
    pub infobip: std::collections::BTreeMap<String, Secret>,
    pub twilio: std::collections::BTreeMap<String, TwilioCredentials>,
    pub cm: std::collections::BTreeMap<String, Secret>,
}

#[derive(Debug, Clone)]
pub struct TwilioCredentials {
    pub account_sid: Secret,
    pub auth_token: Secret,
}

impl Secrets {
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Pure: tests pass their own environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| Secret::new(v.clone()))
        };
        // `BASE` is the set "default", `BASE_NAME` the set "name".
        let named = |base: &str| -> std::collections::BTreeMap<String, Secret> {
            vars.iter()
                .filter_map(|(n, v)| {
                    let rest = n.strip_prefix(base)?;
                    let name = if rest.is_empty() {
                        "default".to_string()
                    } else {
                        rest.strip_prefix('_')?.to_ascii_lowercase()
                    };
                    Some((name, Secret::new(v.clone())))
                })
                .collect()
        };
        let sids = named("TRACKLY_TWILIO_ACCOUNT_SID");
        let tokens = named("TRACKLY_TWILIO_AUTH_TOKEN");
        let twilio = sids
            .into_iter()
            .filter_map(|(name, sid)| {
                tokens.get(&name).map(|tok| {
                    (
                        name,
                        TwilioCredentials {
                            account_sid: sid,
                            auth_token: tok.clone(),
                        },
                    )
                })
            })
            .collect();
        Secrets {
            admin_token: get("TRACKLY_ADMIN_TOKEN"),
            readonly_token: get("TRACKLY_READONLY_TOKEN"),
            webhook_token: get("TRACKLY_WEBHOOK_TOKEN"),
            infobip: named("TRACKLY_INFOBIP_API_KEY"),
            twilio,
            cm: named("TRACKLY_CM_PRODUCT_TOKEN"),
        }
    }
}
