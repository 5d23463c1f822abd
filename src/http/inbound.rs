//! Inbound messages (a contact texting the list's number), one route per
//! provider:
//!
//! - `POST /webhooks/infobip/{token}/inbound`: Infobip's `MO_JSON_2`
//!   (`{"results": [{"from", "to", "text", ...}]}`), the URL carrying
//!   `TRACKLY_WEBHOOK_TOKEN` as for its reports;
//! - `POST /webhooks/twilio/{credentials}/inbound`: Twilio's incoming
//!   message webhook (form: `From`, `To`, `Body`), `X-Twilio-Signature`
//!   verified as for its status callbacks;
//! - `POST /webhooks/cm/{token}/inbound`: CM's incoming message (MO)
//!   webhook (`{"from": {"number"}, "to": {"number"}, "message": {"text"},
//!   "reference"?, "timeUtc"?, "channel"?}`), the URL carrying
//!   `TRACKLY_WEBHOOK_TOKEN` as for its reports.
//!
//! Each message is classified by [`crate::rules::keywords::classify`]: an
//! opt-out unsubscribes the contact with that number from every list that
//! sends from the number it wrote to, at once, so the worker's re-check
//! right before the provider call sees it; START, UNSTOP and YES subscribe
//! it again; HELP and INFO queue the list's `help_reply` to the contact,
//! from the number it wrote to (a transactional message: it passes the
//! worker's pre-send checks like any other, so a contact that is not
//! subscribed gets none; a list without a reply counts it only). Anything
//! else changes nothing.
//!
//! An opt-out is never lost: the answer is 200 only once every change is
//! written; a store that does not answer gets 503 and the provider sends
//! the message again (changes are idempotent). A malformed payload gets 400
//! and a forged one 403, and neither changes anything.

use super::AppState;
use super::error::ApiError;
use super::webhooks::{token_ok, twilio_verified};
use crate::domain::{E164, MessageId, QueuedTextMessage, SendType, SendingListId};
use crate::rules::keywords::{KeywordAction, classify};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/webhooks/infobip/{token}/inbound",
        web::post().to(infobip_inbound),
    )
    .route(
        "/webhooks/twilio/{credentials}/inbound",
        web::post().to(twilio_inbound),
    )
    .route("/webhooks/cm/{token}/inbound", web::post().to(cm_inbound));
}

/// One inbound message: who wrote, to which of our numbers, what.
#[derive(Debug, Clone)]
struct Inbound {
    from: String,
    to: String,
    text: String,
}

#[derive(Deserialize)]
struct InfobipInbound {
    results: Vec<InfobipMessage>,
}

#[derive(Deserialize)]
struct InfobipMessage {
    from: String,
    to: String,
    #[serde(default)]
    text: String,
}

async fn infobip_inbound(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !token_ok(&state, &token) {
        return Err(ApiError::Forbidden("bad webhook token"));
    }
    let parsed: InfobipInbound = serde_json::from_slice(&body)
        .map_err(|e| ApiError::MalformedReport(format!("not an Infobip inbound message: {e}")))?;
    let messages = parsed
        .results
        .into_iter()
        .map(|m| Inbound {
            from: m.from,
            to: m.to,
            text: m.text,
        })
        .collect();
    apply(&state, "infobip", messages).await
}

#[derive(Deserialize)]
struct CmInbound {
    from: CmParty,
    to: CmParty,
    #[serde(default)]
    message: Option<CmMessage>,
}

#[derive(Deserialize)]
struct CmParty {
    number: String,
}

#[derive(Deserialize)]
struct CmMessage {
    #[serde(default)]
    text: String,
}

async fn cm_inbound(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !token_ok(&state, &token) {
        return Err(ApiError::Forbidden("bad webhook token"));
    }
    let m: CmInbound = serde_json::from_slice(&body)
        .map_err(|e| ApiError::MalformedReport(format!("not a CM incoming message: {e}")))?;
    let message = Inbound {
        from: m.from.number,
        to: m.to.number,
        text: m.message.map(|t| t.text).unwrap_or_default(),
    };
    apply(&state, "cm", vec![message]).await
}

async fn twilio_inbound(
    state: web::Data<AppState>,
    credentials: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let params = twilio_verified(&state, &credentials, &req, &body)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(from), Some(to)) = (get("From"), get("To")) else {
        return Err(ApiError::MalformedReport(
            "a Twilio inbound message needs From and To".into(),
        ));
    };
    let text = get("Body").unwrap_or_default();
    apply(&state, "twilio", vec![Inbound { from, to, text }]).await
}

/// `+12125550100`, `0012125550100` and `12125550100` (Infobip writes
/// numbers without the `+`) are one number.
fn e164(raw: &str) -> Option<E164> {
    let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let s = if let Some(rest) = s.strip_prefix("00") {
        format!("+{rest}")
    } else if s.starts_with('+') {
        s
    } else {
        format!("+{s}")
    };
    E164::parse(&s).ok()
}

async fn apply(
    state: &AppState,
    provider: &'static str,
    messages: Vec<Inbound>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (mut unsubscribed, mut resubscribed, mut help, mut ignored) = (0u64, 0u64, 0u64, 0u64);
    let mut replies = 0u64;
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(provider, error = %e, "inbound message not applied; the provider will send it again");
        ApiError::StoreUnavailable
    };
    for m in &messages {
        let action = classify(&m.text);
        let subscribe = match action {
            KeywordAction::Unsubscribe => false,
            KeywordAction::Resubscribe => true,
            KeywordAction::Help => {
                help += 1;
                if let (Some(from), Some(to)) = (e164(&m.from), e164(&m.to)) {
                    replies += help_replies(state, &from, &to, now)
                        .await
                        .map_err(unavailable)?;
                }
                continue;
            }
            KeywordAction::None => {
                ignored += 1;
                continue;
            }
        };
        let (Some(from), Some(to)) = (e164(&m.from), e164(&m.to)) else {
            tracing::warn!(
                provider,
                from = %crate::telemetry::mask_phone(&m.from),
                "inbound keyword with a number that is not E.164; ignored"
            );
            ignored += 1;
            continue;
        };
        let lists = state
            .stores
            .lists
            .lists_sending_from(to.as_str())
            .await
            .map_err(unavailable)?;
        let mut changed = 0;
        for list in &lists {
            let Some(contact) = state
                .stores
                .contacts
                .find_by_phone(list.account, &from)
                .await
                .map_err(unavailable)?
            else {
                continue;
            };
            state
                .stores
                .contacts
                .set_subscription(contact.id, list.id, subscribe, now)
                .await
                .map_err(unavailable)?;
            changed += 1;
        }
        tracing::info!(
            provider,
            action = action.as_str(),
            from = %crate::telemetry::mask_phone(from.as_str()),
            lists = changed,
            "inbound keyword applied"
        );
        if changed == 0 {
            ignored += 1;
        } else if subscribe {
            resubscribed += 1;
            state.metrics.inbound_resubscribes.inc();
        } else {
            unsubscribed += 1;
            state.metrics.inbound_unsubscribes.inc();
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "received": messages.len(),
        "unsubscribed": unsubscribed,
        "resubscribed": resubscribed,
        "help": help,
        "replies_queued": replies,
        "ignored": ignored,
    })))
}

/// Queues each list's HELP reply to the contact `from` (on the lists that
/// send from `to` and have a reply). Answers how many were queued.
async fn help_replies(
    state: &AppState,
    from: &E164,
    to: &E164,
    now: crate::domain::Timestamp,
) -> Result<u64, crate::store::StoreError> {
    let lists = state.stores.lists.lists_sending_from(to.as_str()).await?;
    let mut queued = vec![];
    for list in lists {
        let Some(text) = list.help_reply.clone() else {
            continue;
        };
        let Some(contact) = state
            .stores
            .contacts
            .find_by_phone(list.account, from)
            .await?
        else {
            continue;
        };
        let info = crate::domain::sms::analyze(&text);
        queued.push(QueuedTextMessage {
            id: MessageId::new(),
            account: list.account,
            sending_list: list.id,
            contact: contact.id,
            schedule: None,
            run: None,
            creative: None,
            variant: None,
            send_type: SendType::Transactional,
            from: to.as_str().to_string(),
            to: from.clone(),
            body: text,
            segments: info.segments,
            encoding: Some(info.encoding.as_str().to_string()),
            // An answer to the contact's own message: no quiet hours.
            time_zone: None,
            defer_outside_window: false,
            send_at: now,
            not_before: now,
            claimed_by: None,
            claimed_at: None,
            claim_owner: None,
            claim_count: 0,
            attempts: 0,
            billing_blocked_since: None,
            last_error: None,
            queued_at: now,
        });
    }
    if queued.is_empty() {
        return Ok(0);
    }
    let lists: Vec<SendingListId> = queued.iter().map(|m| m.sending_list).collect();
    let n = state.stores.queue.enqueue(queued).await?;
    // A hint: the coordinators' polls find the replies anyway.
    if let Err(e) = state
        .bus
        .publish(crate::bus::Event::Queued { lists, due: None })
        .await
    {
        tracing::warn!(error = %e, "HELP replies queued; the nudge was not published");
    }
    Ok(n)
}
