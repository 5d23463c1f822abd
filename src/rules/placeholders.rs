//! Decides what a creative's `{{placeholders}}` mean, whether a template is
//! well formed, and what it renders to for one contact.
//!
//! Syntax: `{{name}}` or `{{name|default}}`; whitespace around the name and
//! the default is ignored (`{{ first_name | there }}`). A lone `{` or `}`, or
//! a `}}` with no opening, is plain text. Known names, mapped onto
//! [`Contact`]'s fields (it has no dedicated name fields: names are custom
//! fields, as importers store them):
//!
//! | placeholder       | value                                    |
//! |-------------------|------------------------------------------|
//! | `first_name`      | `custom_fields["first_name"]`            |
//! | `last_name`       | `custom_fields["last_name"]`             |
//! | `phone`           | the stored E.164 number (`+14155552671`) |
//! | `custom.<field>`  | `custom_fields["<field>"]`               |
//!
//! `<field>` is one or more ASCII letters, digits, `_` or `-`. A value that
//! is missing or empty (after trimming) counts as missing: it renders as the
//! default, or as nothing when there is none; validation finds those with
//! [`Template::unresolved_without_default`].

use crate::domain::Contact;
use std::collections::BTreeMap;

/// What a contact offers to a template.
#[derive(Debug, Clone, Copy)]
pub struct ContactView<'a> {
    /// E.164 number.
    pub phone: &'a str,
    /// The contact's custom fields (names live here too, see the module doc).
    pub custom_fields: &'a BTreeMap<String, String>,
}

impl<'a> ContactView<'a> {
    /// The view of a stored contact.
    pub fn of(contact: &'a Contact) -> Self {
        ContactView {
            phone: contact.phone.as_str(),
            custom_fields: &contact.custom_fields,
        }
    }

    fn value(&self, field: &Field) -> Option<&'a str> {
        let v = match field {
            Field::FirstName => self.custom_fields.get("first_name")?.as_str(),
            Field::LastName => self.custom_fields.get("last_name")?.as_str(),
            Field::Phone => self.phone,
            Field::Custom(name) => self.custom_fields.get(name)?.as_str(),
        };
        if v.trim().is_empty() { None } else { Some(v) }
    }
}

/// A placeholder's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `first_name`.
    FirstName,
    /// `last_name`.
    LastName,
    /// `phone`.
    Phone,
    /// `custom.<field>`.
    Custom(String),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Text(String),
    /// A placeholder.
    Placeholder {
        /// Where the value comes from.
        field: Field,
        /// The name as written (trimmed), e.g. `custom.city`.
        name: String,
        /// Text after `|`, trimmed; `None` without a `|`.
        default: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template does not parse. Positions are byte offsets of the `{{`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// `{{` without a following `}}`.
    #[error("unclosed placeholder {snippet:?} at byte {position}: missing }}}}")]
    Unclosed {
        /// Byte offset of the `{{`.
        position: usize,
        /// The start of the placeholder (at most 24 characters).
        snippet: String,
    },
    /// A name outside the known set.
    #[error(
        "unknown placeholder {name:?} at byte {position}: expected first_name, last_name, phone or custom.<field>"
    )]
    Unknown {
        /// The name as written (trimmed).
        name: String,
        /// Byte offset of the `{{`.
        position: usize,
    },
}

/// Parses a template (module doc for the syntax).
pub fn parse(template: &str) -> Result<Template, PlaceholderError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        text.push_str(&rest[..open]);
        let position = offset + open;
        let inner_start = open + 2;
        let Some(close) = rest[inner_start..].find("}}") else {
            return Err(PlaceholderError::Unclosed {
                position,
                snippet: rest[open..].chars().take(24).collect(),
            });
        };
        let inner = &rest[inner_start..inner_start + close];
        let (raw_name, default) = match inner.split_once('|') {
            Some((n, d)) => (n, Some(d.trim().to_string())),
            None => (inner, None),
        };
        let name = raw_name.trim();
        let field = field_of(name).ok_or_else(|| PlaceholderError::Unknown {
            name: name.chars().take(64).collect(),
            position,
        })?;
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Placeholder {
            field,
            name: name.to_string(),
            default,
        });
        let consumed = inner_start + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Template { parts })
}

fn field_of(name: &str) -> Option<Field> {
    match name {
        "first_name" => Some(Field::FirstName),
        "last_name" => Some(Field::LastName),
        "phone" => Some(Field::Phone),
        _ => {
            let custom = name.strip_prefix("custom.")?;
            let ok = !custom.is_empty()
                && custom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            ok.then(|| Field::Custom(custom.to_string()))
        }
    }
}

impl Template {
    /// The parsed pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The body for one contact: each placeholder becomes the contact's
    /// value, else its default, else nothing.
    pub fn render(&self, contact: &ContactView<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder { field, default, .. } => {
                    if let Some(v) = contact.value(field) {
                        out.push_str(v);
                    } else if let Some(d) = default {
                        out.push_str(d);
                    }
                }
            }
        }
        out
    }

    /// Names (as written, each once, in order of first use) of placeholders
    /// that have no value for this contact and no default.
    pub fn unresolved_without_default(&self, contact: &ContactView<'_>) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        for part in &self.parts {
            if let Part::Placeholder {
                field,
                name,
                default: None,
            } = part
                && contact.value(field).is_none()
                && !missing.contains(name)
            {
                missing.push(name.clone());
            }
        }
        missing
    }
}
