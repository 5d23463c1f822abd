//! Contacts: bulk import (JSON) with an error per refused row.
//!
//! `POST /api/v1/contacts/import` (operator):
//! `{"account", "list", "default_region"? ("US"), "contacts": [{"phone",
//! "time_zone"?, "first_name"?, "last_name"?, "tags"?, "fields"?}]}`, at
//! most 10,000 rows. Each row is checked on its own: an invalid number
//! (libphonenumber, national numbers read in `default_region`), an unknown
//! time zone, a number twice in the file or already a contact of the
//! account; refused rows are answered with their index, field and reason,
//! the others are imported (subscribed to `list`, numbers stored E.164):
//! `{"imported": n, "errors": [{"row", "field", "error"}]}`.

use super::doc::{BadRequest, Invalid, Operator};
use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::domain::{AccountId, Contact, ContactId, SendingListId, contact::Subscription};
use crate::http::AppState;
use crate::http::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// Rows per request.
pub const MAX_ROWS: usize = 10_000;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(import);
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Import {
    /// The account's hex id.
    account: String,
    /// The sending list's hex id (of that account): the contacts are subscribed to it.
    list: String,
    /// Where national numbers are read (ISO 3166 region, "US" by default).
    #[serde(default)]
    default_region: Option<String>,
    /// At most 10,000.
    contacts: Vec<Row>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Row {
    /// National (read in `default_region`) or +E.164; stored E.164.
    phone: String,
    /// IANA, e.g. America/New_York.
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Custom fields (placeholders in creatives).
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

/// A refused row.
#[derive(Serialize, ToSchema)]
struct RowError {
    /// The row's index, from 0.
    row: usize,
    /// `phone`, `time_zone`, …
    field: String,
    error: String,
}

#[derive(Serialize, ToSchema)]
struct ImportReport {
    imported: u64,
    errors: Vec<RowError>,
}

/// Bulk import: each row checked on its own; refused rows answered with their index, field and reason, the others imported subscribed to the list.
#[utoipa::path(
    tag = "contacts",
    operation_id = "import_contacts",
    request_body = Import,
    security(("bearer" = ["operator"])),
    responses(
        (status = 200, description = "how many were imported, and the refused rows", body = ImportReport),
        Operator, BadRequest, Invalid,
    )
)]
#[post("/contacts/import")]
async fn import(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Role::Operator)?;
    let im: Import = parse_body(&body)?;
    let account: AccountId = parse_id("account", &im.account)?;
    let list_id: SendingListId = parse_id("list", &im.list)?;
    if im.contacts.len() > MAX_ROWS {
        return Err(ApiError::InvalidField {
            field: "contacts",
            message: format!(
                "at most {MAX_ROWS} rows per request, got {}",
                im.contacts.len()
            ),
        });
    }
    let region = im.default_region.as_deref().unwrap_or("US");
    if crate::rules::phone::parse_region(region).is_err() {
        return Err(ApiError::InvalidField {
            field: "default_region",
            message: format!("not a region libphonenumber knows: {region:?}"),
        });
    }
    match state
        .stores
        .lists
        .get_list(list_id)
        .await
        .map_err(store_error)?
    {
        Some(l) if l.account == account => {}
        Some(_) => {
            return Err(ApiError::InvalidField {
                field: "list",
                message: "the list belongs to another account".into(),
            });
        }
        None => {
            return Err(ApiError::InvalidField {
                field: "list",
                message: format!("no such sending list: {list_id}"),
            });
        }
    }
    let now = state.clock.now();
    // The numbers already contacts of the account: one read for the request.
    let parsed: Vec<crate::domain::E164> = im
        .contacts
        .iter()
        .filter_map(|r| crate::rules::phone::e164_of(&r.phone, Some(region)).ok())
        .collect();
    let existing = state
        .stores
        .contacts
        .existing_phones(account, &parsed)
        .await
        .map_err(store_error)?;
    let mut errors = vec![];
    let mut seen = HashSet::new();
    let mut contacts = vec![];
    for (row, r) in im.contacts.into_iter().enumerate() {
        let mut refuse = |field: &str, error: String| {
            errors.push(RowError {
                row,
                field: field.to_string(),
                error,
            });
        };
        let phone = match crate::rules::phone::e164_of(&r.phone, Some(region)) {
            Ok(p) => p,
            Err(e) => {
                refuse("phone", e.to_string());
                continue;
            }
        };
        let zone = match r.time_zone.as_deref().map(str::trim) {
            Some(z) if z.parse::<chrono_tz::Tz>().is_err() => {
                refuse("time_zone", format!("not an IANA time zone: {z:?}"));
                continue;
            }
            Some(z) => z.to_string(),
            None => String::new(),
        };
        if !seen.insert(phone.clone()) {
            refuse(
                "phone",
                "the same number appears earlier in this import".into(),
            );
            continue;
        }
        if existing.contains(&phone) {
            refuse("phone", "already a contact of this account".into());
            continue;
        }
        let mut fields = r.fields;
        if let Some(f) = r.first_name {
            fields.insert("first_name".into(), f);
        }
        if let Some(l) = r.last_name {
            fields.insert("last_name".into(), l);
        }
        contacts.push(Contact {
            id: ContactId::new(),
            account,
            phone,
            time_zone: zone,
            subscriptions: vec![Subscription {
                list: list_id,
                subscribed: true,
                changed_at: now,
            }],
            blocked: false,
            in_workflow: false,
            tags: r.tags,
            custom_fields: fields,
            last_sent: vec![],
            created_at: now,
        });
    }
    let imported = if contacts.is_empty() {
        0
    } else {
        state
            .stores
            .contacts
            .insert_contacts(contacts)
            .await
            .map_err(store_error)?
    };
    Ok(HttpResponse::Ok().json(ImportReport { imported, errors }))
}
