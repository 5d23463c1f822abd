//! `GET /l/{code}`: a tracked short link. Answers 302 to the destination
//! as soon as the link is found; the click (time, user agent, a keyed hash
//! of the client address, whether a preview fetcher or crawler made it) is
//! handed to the ClickIntake actor without waiting, so recording never
//! slows the redirect. A code that cannot be ours is answered 404 without a
//! store read; an unknown one 404 too; a store that does not answer, 503.

use super::AppState;
use super::error::ApiError;
use crate::domain::{ClickId, LinkClick};
use crate::messages::RecordClicks;
use crate::rules::links::{is_code, is_preview_bot};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/l/{code}", web::get().to(redirect));
}

/// The longest user agent kept with a click.
const MAX_USER_AGENT: usize = 256;

async fn redirect(
    state: web::Data<AppState>,
    req: HttpRequest,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    if !is_code(&code) {
        return Err(ApiError::UnknownLink);
    }
    let link = match state.stores.links.find_link(&code).await {
        Ok(Some(l)) => l,
        Ok(None) => return Err(ApiError::UnknownLink),
        Err(e) => {
            tracing::warn!(error = %e, "short link lookup failed");
            return Err(ApiError::StoreUnavailable);
        }
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_USER_AGENT).collect::<String>());
    let ip_hash = req
        .connection_info()
        .realip_remote_addr()
        .map(|addr| hash_address(strip_port(addr), &state));
    let click = LinkClick {
        id: ClickId::new(),
        link: link.id,
        message: link.message,
        clicked_at: state.clock.now(),
        is_bot: is_preview_bot(user_agent.as_deref()),
        user_agent,
        ip_hash,
    };
    state.metrics.redirects.inc();
    // Bounded hand-over: a full intake drops the click (counted), never
    // the redirect.
    if state.clicks.try_send(RecordClicks(vec![click])).is_err() {
        state.metrics.clicks_dropped.inc();
    }
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, link.destination_url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish())
}

/// `1.2.3.4:5678` → `1.2.3.4`; `[::1]:80` → `::1`; a bare address as is.
fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

/// HMAC-SHA1 of the address keyed with `TRACKLY_WEBHOOK_TOKEN` (the same on
/// every daemon, so one address hashes alike everywhere), truncated to 16
/// bytes. Without the secret, the key is a constant: still not the address,
/// but then only as good as a plain hash.
fn hash_address(addr: &str, state: &AppState) -> String {
    let key = state
        .secrets
        .webhook_token
        .as_ref()
        .map_or("trackly-link-clicks", |s| s.expose());
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(addr.as_bytes());
    let digest = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_v4_and_v6_addresses() {
        assert_eq!(strip_port("1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(strip_port("1.2.3.4"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
    }
}
