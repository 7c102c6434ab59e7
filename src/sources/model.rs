use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::fields::model::RecordKind;
use crate::rules::{FieldRule, Rule};
use crate::schema::{source_fields, sources};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sources)]
pub struct Source {
    pub id: i64,
    pub name: String,
    #[diesel(deserialize_as = String)]
    pub kind: RecordKind,
    pub id_column: String,
    pub mode: String,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub on_invalid: String,
}

/// What an import does with a row that has an invalid value in one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Import the row without that field, with a warning on the row.
    SkipField,
    /// Report the row as an error; nothing of it is written.
    RejectRow,
}

impl OnInvalid {
    pub const ALL: [OnInvalid; 2] = [OnInvalid::SkipField, OnInvalid::RejectRow];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SkipField => "skip_field",
            Self::RejectRow => "reject_row",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == value.trim())
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::SkipField => "import the row without the invalid field, with a warning",
            Self::RejectRow => "reject the whole row",
        }
    }
}

impl Source {
    pub fn on_invalid(&self) -> OnInvalid {
        OnInvalid::parse(&self.on_invalid).unwrap_or(OnInvalid::SkipField)
    }

    pub fn record_kind(&self) -> RecordKind {
        self.kind
    }

    pub fn connected(&self) -> bool {
        self.status == "connected"
    }

    pub fn full_mode(&self) -> bool {
        self.mode == "full"
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = source_fields)]
pub struct Mapping {
    pub id: i64,
    pub source_id: i64,
    pub column_name: String,
    pub field_key: String,
    pub to_record: String,
    pub to_source: String,
    pub blanks_clear: bool,
}

impl Mapping {
    pub fn to_record_rule(&self) -> Rule {
        Rule::parse(&self.to_record).unwrap_or(Rule::Never)
    }

    pub fn to_source_rule(&self) -> Rule {
        Rule::parse(&self.to_source).unwrap_or(Rule::Never)
    }

    pub fn field_rule(&self) -> FieldRule {
        FieldRule {
            field_key: self.field_key.clone(),
            rule: self.to_record_rule(),
            blanks_clear: self.blanks_clear,
        }
    }
}

/// One mapping line as an admin or a script gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingInput {
    pub column_name: String,
    pub field_key: String,
    pub to_record: Rule,
    pub to_source: Rule,
    pub blanks_clear: bool,
}

/// Whether a file's header names a source's column: case and surrounding spaces do not count.
/// The one rule for matching headers, used by the mapping proposal, the preview and imports.
pub fn same_column(header: &str, column: &str) -> bool {
    header.trim().eq_ignore_ascii_case(column.trim())
}

/// Where a column is among a file's headers.
pub fn column_index(headers: &[String], column: &str) -> Option<usize> {
    headers.iter().position(|h| same_column(h, column))
}

/// "'a', 'b', 'c'": a file's headers, quoted, for messages.
pub fn quoted_headers(headers: &[String]) -> String {
    headers
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a file's header row means for a source: per header the field it feeds (if any), the
/// mapped columns the file lacks, and whether the id column is there.
pub struct HeaderCheck {
    pub mapped: Vec<Option<String>>,
    pub missing_columns: Vec<String>,
    pub has_id: bool,
}

impl HeaderCheck {
    pub fn of(source: &Source, mapping: &[Mapping], headers: &[String]) -> Self {
        HeaderCheck {
            mapped: headers
                .iter()
                .map(|h| {
                    mapping
                        .iter()
                        .find(|m| same_column(h, &m.column_name))
                        .map(|m| format!("{} ({})", m.field_key, m.to_record))
                })
                .collect(),
            missing_columns: mapping
                .iter()
                .filter(|m| column_index(headers, &m.column_name).is_none())
                .map(|m| m.column_name.clone())
                .collect(),
            has_id: column_index(headers, &source.id_column).is_some(),
        }
    }
}
