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
    pub kind: String,
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
        RecordKind::parse(&self.kind).unwrap_or(RecordKind::Contact)
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
