use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::fields::model::RecordKind;
use crate::fields::validate::PhoneCountry;
use crate::rules::{FieldRule, Rule};
use crate::schema::{source_fields, sources};
use crate::stored::stored_enum;

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
    /// Field keys, comma-separated, that identify a row when the files have no id column
    /// ("email", "name,email"); empty when `id_column` does.
    pub match_by: String,
    /// The country of phone numbers written without one (ISO code); empty: the console's.
    pub country: String,
    /// A folder whose new files are imported by themselves (`sync::watch`); empty: none.
    pub watch_dir: String,
    /// The database connector (`sources::connector`): a SELECT, the URL's environment
    /// variable or the URL encrypted, how often (minutes; 0 on demand), when it last ran.
    pub query_sql: String,
    pub query_url_env: String,
    pub query_url_secret: String,
    pub query_every_minutes: i64,
    pub query_last_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = String)]
    pub carries: SourceContent,
    /// For a source of activities: the contact source whose external ids its files name.
    pub contacts_from: Option<i64>,
    /// For a source of activities: the type of rows when the file has no type column.
    pub activity_type: String,
}

stored_enum! {
    /// What a source's rows are: records of its kind, or activities of contacts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SourceContent as "source content" {
        Records = "records",
        Activities = "activities",
    }
}

/// The mapping target of a contact source's column naming the contact's company: not a field,
/// a link to a company record found by name (created when missing).
pub const COMPANY_KEY: &str = "company";

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

    pub fn carries_activities(&self) -> bool {
        self.carries == SourceContent::Activities
    }

    /// What its rows are, in words: "contact records", "activities of contacts".
    pub fn content_description(&self) -> String {
        match self.carries {
            SourceContent::Records => format!("{} records", self.kind),
            SourceContent::Activities => "activities of contacts".into(),
        }
    }

    pub fn connected(&self) -> bool {
        self.status == "connected"
    }

    pub fn full_mode(&self) -> bool {
        self.mode == "full"
    }

    /// The fields that identify a row, when the source has no id column.
    pub fn match_fields(&self) -> Vec<String> {
        self.match_by
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect()
    }

    /// How rows find their records, in words: "id column External Id", "matched by email".
    pub fn key_description(&self) -> String {
        let fields = self.match_fields();
        if self.carries_activities() {
            format!("activity id column {}", self.id_column)
        } else if fields.is_empty() {
            format!("id column {}", self.id_column)
        } else {
            format!("matched by {}", fields.join(" + "))
        }
    }

    /// The country for phone numbers written without one: the source's, else `default`.
    pub fn phone_country(&self, default: PhoneCountry) -> PhoneCountry {
        PhoneCountry::parse(&self.country).unwrap_or(default)
    }
}

/// How a file's rows are keyed: the id column's index, or the fields whose normalised values
/// together make the external id (stored in the record's link like any other id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    Column(usize),
    Fields(Vec<String>),
}

impl RowKey {
    /// The key of a source for a file with these headers, or why rows could not be matched.
    pub fn of(source: &Source, mapping: &[Mapping], headers: &[String]) -> Result<Self, String> {
        let fields = source.match_fields();
        if fields.is_empty() {
            return column_index(headers, &source.id_column)
                .map(RowKey::Column)
                .ok_or_else(|| {
                    format!(
                        "The file has no column '{}' (the source's id column). Its columns are: {}. Nothing was imported.",
                        source.id_column,
                        quoted_headers(headers)
                    )
                });
        }
        let unmapped: Vec<&str> = fields
            .iter()
            .filter(|key| {
                !mapping.iter().any(|m| {
                    &m.field_key == *key && ColumnValue::resolve(&m.column_name, headers).is_some()
                })
            })
            .map(String::as_str)
            .collect();
        if unmapped.is_empty() {
            Ok(RowKey::Fields(fields))
        } else {
            Err(format!(
                "The source matches rows by {}, but no column of this file is mapped to {}. Its columns are: {}. Nothing was imported.",
                fields.join(" + "),
                unmapped.join(" or "),
                quoted_headers(headers)
            ))
        }
    }
}

/// Where a mapping line's value comes from in a file: one column, or several put together by
/// a pattern such as `{First Name} {Middle Name} {Last Name}` (runs of blanks collapsed, so an
/// empty middle name leaves one space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    Column(usize),
    Joined(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Column(usize),
}

/// The file columns a mapping line reads: the names in braces of a pattern, else the line's
/// column itself. `None` for a pattern with an unclosed brace.
pub fn columns_read(column_name: &str) -> Option<Vec<&str>> {
    if !column_name.contains('{') {
        return Some(vec![column_name.trim()]);
    }
    let mut names = Vec::new();
    let mut rest = column_name;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        names.push(after[..close].trim());
        rest = &after[close + 1..];
    }
    (!rest.contains('}')).then_some(names)
}

impl ColumnValue {
    /// Where the line's value is among `headers`; `None` when a column it reads is absent.
    pub fn resolve(column_name: &str, headers: &[String]) -> Option<Self> {
        if !column_name.contains('{') {
            return column_index(headers, column_name).map(ColumnValue::Column);
        }
        columns_read(column_name)?;
        let mut pieces = Vec::new();
        let mut rest = column_name;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            pieces.push(Piece::Column(column_index(headers, &after[..close])?));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Some(ColumnValue::Joined(pieces))
    }

    /// The value in a row.
    pub fn read<'r>(&self, row: &'r csv::StringRecord) -> std::borrow::Cow<'r, str> {
        match self {
            ColumnValue::Column(index) => row.get(*index).unwrap_or("").into(),
            ColumnValue::Joined(pieces) => {
                let mut joined = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => joined.push_str(text),
                        Piece::Column(index) => joined.push_str(row.get(*index).unwrap_or("")),
                    }
                }
                joined
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into()
            }
        }
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

/// Why the rows of a file with these headers could not be imported through the source (no id
/// column, no key field, no contact column...), if they could not.
pub fn rows_problem(source: &Source, mapping: &[Mapping], headers: &[String]) -> Option<String> {
    if source.carries_activities() {
        crate::activities::import::columns_problem(source, mapping, headers)
    } else {
        RowKey::of(source, mapping, headers).err()
    }
}

/// What a file's header row means for a source: per header the fields it feeds (if any), the
/// mapped columns the file lacks, and why its rows could not be matched, if they could not.
pub struct HeaderCheck {
    pub mapped: Vec<Option<String>>,
    pub missing_columns: Vec<String>,
    pub key_problem: Option<String>,
}

impl HeaderCheck {
    pub fn of(source: &Source, mapping: &[Mapping], headers: &[String]) -> Self {
        let reads = |m: &Mapping, header: &str| {
            columns_read(&m.column_name)
                .unwrap_or_default()
                .iter()
                .any(|c| same_column(header, c))
        };
        HeaderCheck {
            mapped: headers
                .iter()
                .map(|h| {
                    let fed: Vec<String> = mapping
                        .iter()
                        .filter(|m| reads(m, h))
                        .map(|m| format!("{} ({})", m.field_key, m.to_record))
                        .collect();
                    (!fed.is_empty()).then(|| fed.join(", "))
                })
                .collect(),
            missing_columns: mapping
                .iter()
                .filter(|m| ColumnValue::resolve(&m.column_name, headers).is_none())
                .map(|m| m.column_name.clone())
                .collect(),
            key_problem: rows_problem(source, mapping, headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_joins_columns_and_collapses_blanks() {
        let headers: Vec<String> = ["First Name", "Middle Name", "Last Name"]
            .map(String::from)
            .to_vec();
        let value = ColumnValue::resolve("{First Name} {Middle Name} {last name}", &headers)
            .expect("every column is there");
        let row = csv::StringRecord::from(vec!["Zoé ", "", " Lefèvre"]);
        assert_eq!(value.read(&row), "Zoé Lefèvre");
        assert_eq!(
            columns_read("{First Name} {Last Name}"),
            Some(vec!["First Name", "Last Name"])
        );
        assert_eq!(columns_read("{First Name"), None);
        assert!(ColumnValue::resolve("{First Name} {Surname}", &headers).is_none());
        assert_eq!(
            ColumnValue::resolve("last name", &headers),
            Some(ColumnValue::Column(2))
        );
    }
}
