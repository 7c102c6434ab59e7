//! The contact and company lists: search, filters, sorting and keyset pagination.
//!
//! A page is read as "the next N rows after (sort value, id)", which an index serves directly,
//! so page 1000 costs what page 1 costs, and a row deleted between two pages shifts nothing.

use std::collections::BTreeMap;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use serde::{Deserialize, Serialize};

use super::model::RecordRow;
use super::search;
use super::service::escape_like;
use crate::db::DbConn;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::validate::{norm_phone, norm_text};
use crate::schema::{record_values, records};

type Backend = <DbConn as diesel::Connection>::Backend;
type BoxedRecords<'a> = records::BoxedQuery<'a, Backend>;

pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFilter {
    Any,
    Manual,
    Synced,
    Source(i64),
}

impl OwnerFilter {
    pub fn parse(value: &str) -> Self {
        match value {
            "manual" => Self::Manual,
            "synced" => Self::Synced,
            other => other
                .strip_prefix("source:")
                .and_then(|id| id.parse().ok())
                .map(Self::Source)
                .unwrap_or(Self::Any),
        }
    }

    pub fn as_param(&self) -> String {
        match self {
            Self::Any => String::new(),
            Self::Manual => "manual".into(),
            Self::Synced => "synced".into(),
            Self::Source(id) => format!("source:{id}"),
        }
    }
}

/// What to sort by: a built-in column or a custom field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Email,
    Phone,
    Updated,
    /// `numeric`: a number field, sorted by value (800 before 1200), blanks first.
    Custom {
        field_id: i64,
        key: String,
        numeric: bool,
    },
}

impl SortKey {
    pub fn parse(key: &str, defs: &[FieldDef]) -> Self {
        match key {
            "email" => Self::Email,
            "phone" => Self::Phone,
            "updated" => Self::Updated,
            "name" | "" => Self::Name,
            other => defs
                .iter()
                .find(|d| d.key == other && !d.builtin)
                .map(|d| Self::Custom {
                    field_id: d.id,
                    key: d.key.clone(),
                    numeric: d.ftype() == FieldType::Number,
                })
                .unwrap_or(Self::Name),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Self::Name => "name",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Updated => "updated",
            Self::Custom { key, .. } => key,
        }
    }
}

/// Where the previous page stopped: the last row's sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub value: String,
    pub id: i64,
}

impl Cursor {
    /// An opaque token for the "next page" link.
    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(token: &str) -> Option<Self> {
        serde_json::from_slice(&hex::decode(token).ok()?).ok()
    }
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub kind: RecordKind,
    pub search: String,
    pub owner: OwnerFilter,
    /// `Some(true)`: only forced manual; `Some(false)`: only not forced.
    pub forced_manual: Option<bool>,
    pub missing_from_source: bool,
    pub archived: bool,
    /// Custom field filters: (field id, value, exact). Exact for lists, "contains" otherwise.
    pub custom: Vec<(i64, String, bool)>,
    pub sort: SortKey,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub limit: i64,
    /// Count the matching records (up to `COUNT_CAP`); exports page through without.
    pub count: bool,
}

/// Lists count matching records up to this many and show "10,000+" beyond: a count never
/// reads more than this many index entries, whatever the table's size.
pub const COUNT_CAP: i64 = 10_000;

/// How many records a list has: exact up to `COUNT_CAP`, "at least" beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Total {
    pub count: i64,
    /// There are more than `count`.
    pub more: bool,
}

impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.count.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        write!(f, "{grouped}{}", if self.more { "+" } else { "" })
    }
}

impl ListQuery {
    pub fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            search: String::new(),
            owner: OwnerFilter::Any,
            forced_manual: None,
            missing_from_source: false,
            archived: false,
            custom: Vec::new(),
            sort: SortKey::Name,
            descending: false,
            after: None,
            limit: PAGE_SIZE,
            count: true,
        }
    }
}

pub struct ListRow {
    pub record: RecordRow,
    /// Custom values of the listed custom columns, by key.
    pub custom: BTreeMap<String, String>,
}

impl ListRow {
    /// The value of a field column: the built-in column, else the custom value ('' if none).
    pub fn value(&self, key: &str) -> &str {
        self.record
            .builtin_value(key)
            .or_else(|| self.custom.get(key).map(String::as_str))
            .unwrap_or("")
    }
}

pub struct Page {
    pub rows: Vec<ListRow>,
    pub next: Option<Cursor>,
    pub total: Total,
}

/// The filters, without sort or position: shared by the page and its count.
/// `postgres`: the search index is each backend's own.
fn filtered(q: &ListQuery, postgres: bool) -> BoxedRecords<'static> {
    let mut query = records::table
        .filter(records::kind.eq(q.kind.as_str()))
        .filter(records::archived.eq(q.archived))
        .into_boxed();
    let search = q.search.trim();
    if !search.is_empty() {
        let terms = search::terms(search);
        query = if terms.is_empty() {
            // Only punctuation: nothing to look for, nothing found.
            query.filter(records::id.lt(0))
        } else {
            // Every term is the prefix of one of the record's tokens.
            query.filter(search::matches_sql(postgres, &terms))
        };
    }
    query = match q.owner {
        OwnerFilter::Any => query,
        OwnerFilter::Manual => query.filter(records::owner_source_id.is_null()),
        OwnerFilter::Synced => query.filter(records::owner_source_id.is_not_null()),
        OwnerFilter::Source(id) => query.filter(records::owner_source_id.eq(id)),
    };
    if let Some(forced) = q.forced_manual {
        query = query.filter(records::forced_manual.eq(forced));
    }
    if q.missing_from_source {
        query = query.filter(records::missing_from_source.eq(true));
    }
    for (field_id, value, exact) in &q.custom {
        let matching = record_values::table
            .filter(record_values::field_id.eq(*field_id))
            .select(record_values::record_id);
        query = if *exact {
            query
                .filter(records::id.eq_any(matching.filter(record_values::value.eq(value.clone()))))
        } else {
            let pattern = format!("%{}%", escape_like(value.trim()));
            query.filter(
                records::id
                    .eq_any(matching.filter(record_values::value.like(pattern).escape('\\'))),
            )
        };
    }
    query
}

/// A numeric sort value below every number: where blanks sort.
const BLANK_NUMBER: f64 = -1e308;

/// The SQL of a custom field's sort value for the current row: its text ('' when it has
/// none), or for a number field its value as a number (`BLANK_NUMBER` when it has none).
/// `field_id` is an integer from the field definitions, never user text.
fn custom_value_sql(field_id: i64, numeric: bool) -> String {
    if numeric {
        format!("COALESCE((SELECT CAST(rv.value AS DOUBLE PRECISION) FROM record_values rv WHERE rv.record_id = records.id AND rv.field_id = {field_id}), {BLANK_NUMBER:e})")
    } else {
        format!("COALESCE((SELECT rv.value FROM record_values rv WHERE rv.record_id = records.id AND rv.field_id = {field_id}), '')")
    }
}

/// Rows after (value, id) in the sort order, as one row-value comparison: both databases read
/// it as a range of the list's index and start there (an `a > v OR (a = v AND id > i)` form
/// made PostgreSQL read the whole list for a deep page).
macro_rules! keyset {
    ($query:expr, $column:expr, $column_sql:literal, $sql_type:ty, $value:expr, $id:expr, $desc:expr) => {{
        let cmp = if $desc { "<" } else { ">" };
        let query = $query.filter(
            sql::<Bool>(&format!("({}, records.id) {cmp} (", $column_sql))
                .bind::<$sql_type, _>($value)
                .sql(", ")
                .bind::<BigInt, _>($id)
                .sql(")"),
        );
        if $desc {
            query.order(($column.desc(), records::id.desc()))
        } else {
            query.order(($column.asc(), records::id.asc()))
        }
    }};
}

macro_rules! ordered {
    ($query:expr, $column:expr, $desc:expr) => {{
        if $desc {
            $query.order(($column.desc(), records::id.desc()))
        } else {
            $query.order(($column.asc(), records::id.asc()))
        }
    }};
}

/// How many records of `kind` the list shows by default (active ones).
pub fn count(conn: &mut DbConn, kind: RecordKind) -> QueryResult<Total> {
    count_of(conn, &ListQuery::new(kind))
}

/// The records `q` selects, counted up to `COUNT_CAP`.
fn count_of(conn: &mut DbConn, q: &ListQuery) -> QueryResult<Total> {
    let postgres = matches!(conn, DbConn::Pg(_));
    let ids: Vec<i64> = filtered(q, postgres)
        .select(records::id)
        .limit(COUNT_CAP + 1)
        .load(conn)?;
    let n = ids.len() as i64;
    Ok(Total {
        count: n.min(COUNT_CAP),
        more: n > COUNT_CAP,
    })
}

/// One page of records, the total count, and where the next page starts.
pub fn page(conn: &mut DbConn, q: &ListQuery, custom_columns: &[FieldDef]) -> QueryResult<Page> {
    let total = if q.count {
        count_of(conn, q)?
    } else {
        Total::default()
    };
    let desc = q.descending;
    let base = filtered(q, matches!(conn, DbConn::Pg(_)));
    let query = match (&q.sort, &q.after) {
        (SortKey::Name, None) => ordered!(base, records::name_norm, desc),
        (SortKey::Email, None) => ordered!(base, records::email_norm, desc),
        (SortKey::Phone, None) => ordered!(base, records::phone_norm, desc),
        (SortKey::Updated, None) => ordered!(base, records::updated_at, desc),
        (SortKey::Name, Some(c)) => keyset!(
            base,
            records::name_norm,
            "records.name_norm",
            Text,
            c.value.clone(),
            c.id,
            desc
        ),
        (SortKey::Email, Some(c)) => keyset!(
            base,
            records::email_norm,
            "records.email_norm",
            Text,
            c.value.clone(),
            c.id,
            desc
        ),
        (SortKey::Phone, Some(c)) => keyset!(
            base,
            records::phone_norm,
            "records.phone_norm",
            Text,
            c.value.clone(),
            c.id,
            desc
        ),
        (SortKey::Updated, Some(c)) => {
            let at = chrono::NaiveDateTime::parse_from_str(&c.value, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_default();
            keyset!(
                base,
                records::updated_at,
                "records.updated_at",
                diesel::sql_types::Timestamp,
                at,
                c.id,
                desc
            )
        }
        (
            SortKey::Custom {
                field_id, numeric, ..
            },
            after,
        ) => {
            let mut query = base;
            let value_sql = custom_value_sql(*field_id, *numeric);
            if let Some(c) = after {
                let cmp = if desc { "<" } else { ">" };
                let head = format!("({value_sql} {cmp} ");
                let middle = format!(" OR ({value_sql} = ");
                let tail = format!(" AND records.id {cmp} ");
                query = if *numeric {
                    let n = c.value.parse::<f64>().unwrap_or(BLANK_NUMBER);
                    query.filter(
                        sql::<Bool>(&head)
                            .bind::<Double, _>(n)
                            .sql(&middle)
                            .bind::<Double, _>(n)
                            .sql(&tail)
                            .bind::<BigInt, _>(c.id)
                            .sql("))"),
                    )
                } else {
                    query.filter(
                        sql::<Bool>(&head)
                            .bind::<Text, _>(c.value.clone())
                            .sql(&middle)
                            .bind::<Text, _>(c.value.clone())
                            .sql(&tail)
                            .bind::<BigInt, _>(c.id)
                            .sql("))"),
                    )
                };
            }
            let value = sql::<Text>(&value_sql);
            if desc {
                query.order((value.desc(), records::id.desc()))
            } else {
                query.order((value.asc(), records::id.asc()))
            }
        }
    };
    let mut rows: Vec<RecordRow> = query
        .limit(q.limit + 1)
        .select(RecordRow::as_select())
        .load(conn)?;
    let has_more = rows.len() as i64 > q.limit;
    rows.truncate(usize::try_from(q.limit).unwrap_or(0));

    let mut custom = custom_of(conn, &rows, custom_columns, &q.sort)?;
    let next = if has_more {
        rows.last().map(|last| Cursor {
            value: sort_value(last, &q.sort, &custom),
            id: last.id,
        })
    } else {
        None
    };
    let rows = rows
        .into_iter()
        .map(|record| {
            let values = custom.remove(&record.id).unwrap_or_default();
            ListRow {
                record,
                custom: values,
            }
        })
        .collect();
    Ok(Page { rows, next, total })
}

/// Values of the listed custom columns (and the custom sort field) for the page's records.
fn custom_of(
    conn: &mut DbConn,
    rows: &[RecordRow],
    columns: &[FieldDef],
    sort: &SortKey,
) -> QueryResult<BTreeMap<i64, BTreeMap<String, String>>> {
    let mut field_keys: BTreeMap<i64, String> =
        columns.iter().map(|d| (d.id, d.key.clone())).collect();
    if let SortKey::Custom { field_id, key, .. } = sort {
        field_keys.insert(*field_id, key.clone());
    }
    let mut out: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    if rows.is_empty() || field_keys.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let found: Vec<(i64, i64, String)> = record_values::table
        .filter(record_values::record_id.eq_any(&ids))
        .filter(record_values::field_id.eq_any(field_keys.keys().copied().collect::<Vec<_>>()))
        .select((
            record_values::record_id,
            record_values::field_id,
            record_values::value,
        ))
        .load(conn)?;
    for (record_id, field_id, value) in found {
        if let Some(key) = field_keys.get(&field_id) {
            out.entry(record_id).or_default().insert(key.clone(), value);
        }
    }
    Ok(out)
}

fn sort_value(
    record: &RecordRow,
    sort: &SortKey,
    custom: &BTreeMap<i64, BTreeMap<String, String>>,
) -> String {
    match sort {
        SortKey::Name => norm_text(&record.name),
        SortKey::Email => norm_text(&record.email),
        SortKey::Phone => norm_phone(&record.phone),
        SortKey::Updated => record.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        SortKey::Custom { key, .. } => custom
            .get(&record.id)
            .and_then(|values| values.get(key))
            .cloned()
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::Total;

    #[test]
    fn totals_read_with_thousands_and_a_plus_past_the_cap() {
        let shown = |count, more| Total { count, more }.to_string();
        assert_eq!(shown(0, false), "0");
        assert_eq!(shown(999, false), "999");
        assert_eq!(shown(1_000, false), "1,000");
        assert_eq!(shown(10_000, true), "10,000+");
        assert_eq!(shown(1_048_576, false), "1,048,576");
    }
}
