//! Contacts: bulk import, JSON or CSV, with an error per refused row.
//!
//! `POST /api/v1/contacts/import` (operator), at most 10,000 rows, in
//! either format:
//!
//! - JSON (any content type but `text/csv`): `{"account", "list",
//!   "default_region"? ("US"), "contacts": [{"phone", "time_zone"?,
//!   "first_name"?, "last_name"?, "tags"?, "fields"?}]}`.
//! - CSV (`Content-Type: text/csv`): `?account=…&list=…&default_region=US`
//!   (the last optional) and a header row: `phone` required; `time_zone`,
//!   `first_name`, `last_name`, `tags` (`;`-separated) optional; any other
//!   column is a custom field (an empty cell sets nothing). A row that is
//!   not well-formed (a field count unlike the header's, invalid UTF-8) is
//!   refused on its own, with field `csv` and its line.
//!
//! Custom field names (JSON `fields` keys, CSV columns) that are empty,
//! start with `$` or contain `.` or NUL are refused with 400 before
//! anything is stored: they would be query operators or paths in MongoDB.
//!
//! Each row is checked on its own, by the same code for both formats: an
//! invalid number (libphonenumber, national numbers read in
//! `default_region`), an unknown time zone, a number twice in the file or
//! already a contact of the account; refused rows are answered with their
//! index (from 0, the header not counted), field and reason, the others
//! are imported (subscribed to `list`, numbers stored E.164):
//! `{"imported": n, "errors": [{"row", "field", "error"}]}`.

use super::doc::{BadRequest, Invalid, Operator};
use super::{Role, authorize, parse_body, parse_id, store_error};
use crate::domain::{AccountId, Contact, ContactId, SendingListId, contact::Subscription};
use crate::http::AppState;
use crate::http::error::ApiError;
use actix_web::http::header::CONTENT_TYPE;
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

/// The CSV import's query parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvQuery {
    account: Option<String>,
    list: Option<String>,
    default_region: Option<String>,
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

/// Bulk import, JSON or CSV (`Content-Type: text/csv`, with `account`, `list` and `default_region` as query parameters): each row checked on its own; refused rows answered with their index, field and reason, the others imported subscribed to the list.
#[utoipa::path(
    tag = "contacts",
    operation_id = "import_contacts",
    params(
        ("account" = Option<String>, Query, description = "text/csv only, and then required: the account's hex id"),
        ("list" = Option<String>, Query, description = "text/csv only, and then required: the sending list's hex id"),
        ("default_region" = Option<String>, Query, description = "text/csv only: where national numbers are read (\"US\" by default)"),
    ),
    request_body(
        description = "JSON, or CSV with a header row: `phone` required; `time_zone`, `first_name`, `last_name`, `tags` (`;`-separated) optional; any other column a custom field",
        content(
            (Import = "application/json"),
            (String = "text/csv", example = "phone,time_zone,first_name,tags,zip\n(212) 200-1000,America/New_York,Ann,vip;new,10001\n"),
        )
    ),
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
    let (target, rows) = if is_csv(&req) {
        from_csv(&req, &body)?
    } else {
        from_json(&body)?
    };
    let report = import_rows(&state, target, rows).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Where the rows go.
struct Target {
    account: AccountId,
    list: SendingListId,
    region: String,
}

/// A row as read, or why it could not be read (its field and reason).
type ReadRow = Result<Row, (&'static str, String)>;

fn is_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
}

/// A custom field name that is safe as a document key: not empty, no
/// leading `$` (an operator), no `.` (a path), no NUL.
fn check_field_name(where_: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.starts_with('$') || name.contains('.') || name.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{where_}: custom field name {name:?} refused: it must not be empty, start with '$' or contain '.'"
        )));
    }
    Ok(())
}

fn region_of(raw: Option<&str>) -> Result<String, ApiError> {
    let region = raw.map(str::trim).unwrap_or("US");
    if crate::rules::phone::parse_region(region).is_err() {
        return Err(ApiError::InvalidField {
            field: "default_region",
            message: format!("not a region libphonenumber knows: {region:?}"),
        });
    }
    Ok(region.to_string())
}

fn too_many(field: &'static str, got: String) -> ApiError {
    ApiError::InvalidField {
        field,
        message: format!("at most {MAX_ROWS} rows per request, got {got}"),
    }
}

fn from_json(body: &[u8]) -> Result<(Target, Vec<ReadRow>), ApiError> {
    let im: Import = parse_body(body)?;
    let account: AccountId = parse_id("account", &im.account)?;
    let list: SendingListId = parse_id("list", &im.list)?;
    if im.contacts.len() > MAX_ROWS {
        return Err(too_many("contacts", im.contacts.len().to_string()));
    }
    for (i, r) in im.contacts.iter().enumerate() {
        for k in r.fields.keys() {
            check_field_name(&format!("invalid body at contacts[{i}].fields"), k)?;
        }
    }
    let region = region_of(im.default_region.as_deref())?;
    let target = Target {
        account,
        list,
        region,
    };
    Ok((target, im.contacts.into_iter().map(Ok).collect()))
}

/// The columns of a CSV import that are not custom fields.
enum Column {
    Phone,
    TimeZone,
    FirstName,
    LastName,
    Tags,
    Field(String),
}

fn from_csv(req: &HttpRequest, body: &[u8]) -> Result<(Target, Vec<ReadRow>), ApiError> {
    let q = web::Query::<CsvQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let required = |v: Option<String>, name: &str| {
        v.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "query parameter {name} is required with Content-Type: text/csv"
            ))
        })
    };
    let account: AccountId = parse_id("account", &required(q.account, "account")?)?;
    let list: SendingListId = parse_id("list", &required(q.list, "list")?)?;
    let region = region_of(q.default_region.as_deref())?;
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let header = reader
        .byte_headers()
        .map_err(|e| ApiError::BadRequest(format!("the CSV header row does not parse: {e}")))?
        .clone();
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for raw in header.iter() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| ApiError::BadRequest("the CSV header row is not UTF-8".into()))?
            .trim();
        if !seen.insert(name.to_string()) {
            return Err(ApiError::BadRequest(format!(
                "the CSV header names column {name:?} twice"
            )));
        }
        columns.push(match name {
            "phone" => Column::Phone,
            "time_zone" => Column::TimeZone,
            "first_name" => Column::FirstName,
            "last_name" => Column::LastName,
            "tags" => Column::Tags,
            other => {
                check_field_name("the CSV header", other)?;
                Column::Field(other.to_string())
            }
        });
    }
    if !columns.iter().any(|c| matches!(c, Column::Phone)) {
        return Err(ApiError::BadRequest(
            "the CSV header row has no phone column (required)".into(),
        ));
    }
    let mut rows = vec![];
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        let read = reader.read_byte_record(&mut record);
        if matches!(read, Ok(false)) {
            break;
        }
        if rows.len() == MAX_ROWS {
            return Err(too_many("body", "more".into()));
        }
        rows.push(match read {
            Ok(_) => csv_row(&columns, &record).map_err(|e| ("csv", format!("line {line}: {e}"))),
            Err(e) => Err(("csv", format!("line {line}: {}", csv_error(&e)))),
        });
    }
    let target = Target {
        account,
        list,
        region,
    };
    Ok((target, rows))
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    }
}

fn csv_row(columns: &[Column], record: &csv::ByteRecord) -> Result<Row, String> {
    let mut row = Row {
        phone: String::new(),
        time_zone: None,
        first_name: None,
        last_name: None,
        tags: vec![],
        fields: BTreeMap::new(),
    };
    for (column, raw) in columns.iter().zip(record.iter()) {
        let cell = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8".to_string())?
            .trim();
        let value = (!cell.is_empty()).then(|| cell.to_string());
        match column {
            Column::Phone => row.phone = cell.to_string(),
            Column::TimeZone => row.time_zone = value,
            Column::FirstName => row.first_name = value,
            Column::LastName => row.last_name = value,
            Column::Tags => {
                row.tags = cell
                    .split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            }
            Column::Field(name) => {
                if let Some(v) = value {
                    row.fields.insert(name.clone(), v);
                }
            }
        }
    }
    Ok(row)
}

/// The one row check, whatever the format: each row on its own (number,
/// zone, twice in the file, already a contact), the rest stored.
async fn import_rows(
    state: &AppState,
    target: Target,
    rows: Vec<ReadRow>,
) -> Result<ImportReport, ApiError> {
    let Target {
        account,
        list: list_id,
        region,
    } = target;
    let region = region.as_str();
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
    let parsed: Vec<crate::domain::E164> = rows
        .iter()
        .filter_map(|r| r.as_ref().ok())
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
    for (row, r) in rows.into_iter().enumerate() {
        let mut refuse = |field: &str, error: String| {
            errors.push(RowError {
                row,
                field: field.to_string(),
                error,
            });
        };
        let r = match r {
            Ok(r) => r,
            Err((field, error)) => {
                refuse(field, error);
                continue;
            }
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
    Ok(ImportReport { imported, errors })
}
