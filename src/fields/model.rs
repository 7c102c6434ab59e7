use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::field_defs;
use crate::stored::stored_enum;

stored_enum! {
    /// Contacts and companies share one records table; `kind` tells them apart. Stored kinds
    /// read back exactly; anything else fails the read (it never passes for a contact).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum RecordKind as "record kind" {
        Contact = "contact",
        Company = "company",
    }
}

impl RecordKind {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "contact" | "contacts" => Some(Self::Contact),
            "company" | "companies" => Some(Self::Company),
            _ => None,
        }
    }

    /// The list page's path segment and title.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Contact => "contacts",
            Self::Company => "companies",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Contact => "Contacts",
            Self::Company => "Companies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Email,
    Phone,
    Date,
    Number,
    List,
    Document,
}

impl FieldType {
    pub const ALL: [FieldType; 7] = [
        FieldType::Text,
        FieldType::Email,
        FieldType::Phone,
        FieldType::Date,
        FieldType::Number,
        FieldType::List,
        FieldType::Document,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Date => "date",
            Self::Number => "number",
            Self::List => "list",
            Self::Document => "document",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == value.trim().to_ascii_lowercase())
    }

    /// The HTML input type for the edit form.
    pub fn input_type(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "tel",
            Self::Date => "date",
            _ => "text",
        }
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys of the built-in fields, which are columns of `records`.
pub const BUILTIN_KEYS: [&str; 5] = ["name", "email", "phone", "registration_number", "address"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = field_defs)]
pub struct FieldDef {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub label: String,
    pub field_type: String,
    /// List options, one per line.
    pub options: String,
    pub builtin: bool,
    pub position: i32,
    pub archived: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl FieldDef {
    /// The table only admits the seven type names; anything else reads as text.
    pub fn ftype(&self) -> FieldType {
        FieldType::parse(&self.field_type).unwrap_or(FieldType::Text)
    }

    pub fn option_list(&self) -> Vec<String> {
        split_options(&self.options)
    }

    pub fn required(&self) -> bool {
        self.key == "name"
    }
}

/// Options as typed by an admin: one per line (or comma-separated), trimmed, without blanks
/// or repeats.
pub fn split_options(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for option in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(option)) {
            out.push(option.to_string());
        }
    }
    out
}

/// A field's label as people know it, or its key when no definition has it. The one lookup
/// of labels by key.
pub fn label_of<'a>(defs: impl IntoIterator<Item = &'a FieldDef>, key: &str) -> String {
    defs.into_iter()
        .find(|d| d.key == key)
        .map(|d| d.label.clone())
        .unwrap_or_else(|| key.to_string())
}
