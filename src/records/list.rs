//! The contact and company lists: search, filters, sorting and keyset pagination.
//!
//! A page is read as "the next N rows after (sort value, id)", which an index serves directly,
//! so page 1000 costs what page 1 costs, and a row deleted between two pages shifts nothing.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use serde::{Deserialize, Serialize};

use super::counts;
use super::model::RecordRow;
use super::search::{self, Scope};
use super::service::escape_like;
use crate::db::{Backend, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::validate::{norm_phone, norm_text};
use crate::schema::{record_values, records};

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
    /// A search's best matches first: records whose name matches, then those found by email
    /// or phone, each in the order they were added. The default of a search: a page costs
    /// its own rows however many records match (sorting 26,000 Smiths by name does not).
    Relevance,
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
            Self::Relevance => "",
            Self::Custom { key, .. } => key,
        }
    }
}

/// Where the previous page stopped: the last row's sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub value: String,
    pub id: i64,
    /// Sorted by a custom field: the last row had no value (blanks come after the values).
    #[serde(default)]
    pub blank: bool,
    /// Searching: the last row was found by email or phone (those follow the name matches).
    #[serde(default)]
    pub rest: bool,
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
/// A search's count stops here ("100+"): it runs at each keystroke of a search as people type,
/// and reading a thousand matches to say "1,000+" made a common name's page a quarter as fast
/// (counting to 200 instead of 100 cost a two-word search on PostgreSQL a third of its speed).
pub const SEARCH_COUNT_CAP: i64 = 100;

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

/// The filters, without sort or position, applied to a query over `records` (alone or
/// joined with a custom field's values): shared by the page, its count and the custom sorts.
/// `postgres`: the search index is each backend's own; `scope`: which of the search's matches.
macro_rules! with_filters {
    ($query:expr, $q:expr, $postgres:expr, $scope:expr) => {{
        let (q, postgres, scope) = ($q, $postgres, $scope);
        let mut query = $query
            .filter(records::kind.eq(q.kind.as_str()))
            .filter(records::archived.eq(q.archived));
        let search = q.search.trim();
        if !search.is_empty() {
            let terms = search::terms(search);
            query = if terms.is_empty() {
                // Only punctuation: nothing to look for, nothing found.
                query.filter(records::id.lt(0))
            } else {
                // Every term is the prefix of one of the record's tokens.
                query.filter(search::matches_sql(postgres, &terms, scope))
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
            let matching = diesel::alias!(record_values as filter_values);
            let ids = matching
                .filter(matching.field(record_values::field_id).eq(*field_id))
                .select(matching.field(record_values::record_id));
            query = if *exact {
                query.filter(
                    records::id
                        .eq_any(ids.filter(matching.field(record_values::value).eq(value.clone()))),
                )
            } else {
                let pattern = format!("%{}%", escape_like(value.trim()));
                query.filter(
                    records::id.eq_any(
                        ids.filter(
                            matching
                                .field(record_values::value)
                                .like(pattern)
                                .escape('\\'),
                        ),
                    ),
                )
            };
        }
        query
    }};
}

/// The records `q` selects, unsorted.
fn filtered(q: &ListQuery, postgres: bool, scope: Scope) -> BoxedRecords<'static> {
    with_filters!(records::table.into_boxed(), q, postgres, scope)
}

/// Rows after (value, id) in the sort order, as one row-value comparison: both databases read
/// it as a range of the list's index and start there (an `a > v OR (a = v AND id > i)` form
/// made PostgreSQL read the whole list for a deep page).
macro_rules! keyset {
    ($query:expr, $column:expr, $column_sql:literal, $sql_type:ty, $value:expr, $id:expr, $desc:expr) => {{
        let cmp = if $desc { "<" } else { ">" };
        let query = $query.filter(
            crate::db::kept_sql::<Bool>(&format!("({}, records.id) {cmp} (", $column_sql))
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
    count_of(conn, &ListQuery::new(kind), &mut Matches::default())
}

/// The records `q` selects, counted up to `COUNT_CAP`: first whether there are more than the
/// cap (the database skips that many index entries and returns one row at most), and only
/// if not, the exact count. Neither sends thousands of rows to be counted here.
fn count_of(conn: &mut DbConn, q: &ListQuery, matches: &mut Matches) -> QueryResult<Total> {
    if !q.search.trim().is_empty() {
        return count_search(conn, q, matches);
    }
    if let Some(count) = counts::total(conn, q)? {
        return Ok(Total { count, more: false });
    }
    let postgres = matches!(conn, DbConn::Pg(_));
    let beyond_cap: Option<i64> = filtered(q, postgres, Scope::All)
        .select(records::id)
        .offset(COUNT_CAP)
        .limit(1)
        .get_result(conn)
        .optional()?;
    if beyond_cap.is_some() {
        return Ok(Total {
            count: COUNT_CAP,
            more: true,
        });
    }
    let count = filtered(q, postgres, Scope::All).count().get_result(conn)?;
    Ok(Total { count, more: false })
}

/// One page of records, the total count, and where the next page starts. A search lists the
/// records whose name matches first, then those found by email or phone, each in the sort
/// order.
pub fn page(conn: &mut DbConn, q: &ListQuery, custom_columns: &[FieldDef]) -> QueryResult<Page> {
    let mut matches = Matches::default();
    let total = if q.count {
        count_of(conn, q, &mut matches)?
    } else {
        Total::default()
    };
    if q.search.trim().is_empty() {
        let rows = sorted(conn, q, Scope::All, &mut matches)?;
        return finish_page(conn, q, custom_columns, total, rows, 0);
    }
    if q.after.as_ref().is_some_and(|c| c.rest) {
        let rows = sorted(conn, q, Scope::NotName, &mut matches)?;
        return finish_page(conn, q, custom_columns, total, rows, 0);
    }
    let mut rows = sorted(conn, q, Scope::Name, &mut matches)?;
    let by_name = rows.len();
    if by_name as i64 <= q.limit {
        // The name matches end on this page: the others follow from their start.
        let rest = ListQuery {
            after: None,
            limit: q.limit - by_name as i64,
            ..q.clone()
        };
        rows.extend(sorted(conn, &rest, Scope::NotName, &mut matches)?);
    }
    finish_page(conn, q, custom_columns, total, rows, by_name)
}

/// Up to `q.limit + 1` records within `scope` of the search, in the sort order, after the
/// cursor.
fn sorted(
    conn: &mut DbConn,
    q: &ListQuery,
    scope: Scope,
    matches: &mut Matches,
) -> QueryResult<Vec<RecordRow>> {
    if q.sort == SortKey::Relevance && !q.search.trim().is_empty() {
        let after = q.after.as_ref().map_or(0, |c| c.id);
        return by_relevance(conn, q, scope, after, q.limit + 1, matches);
    }
    let desc = q.descending;
    let base = filtered(q, matches!(conn, DbConn::Pg(_)), scope);
    let query = match (&q.sort, &q.after) {
        (SortKey::Name | SortKey::Relevance, None) => ordered!(base, records::name_norm, desc),
        (SortKey::Email, None) => ordered!(base, records::email_norm, desc),
        (SortKey::Phone, None) => ordered!(base, records::phone_norm, desc),
        (SortKey::Updated, None) => ordered!(base, records::updated_at, desc),
        (SortKey::Name | SortKey::Relevance, Some(c)) => keyset!(
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
            _,
        ) => return custom_sorted(conn, q, *field_id, *numeric, scope),
    };
    crate::db::limited(query.select(RecordRow::as_select()), q.limit + 1).load(conn)
}

/// Ids read from the search index per batch: twice a page, so that the list's other filters
/// rarely need a second batch, and the count's batch, so that PostgreSQL reads it once for both.
const SEARCH_BATCH: i64 = SEARCH_COUNT_CAP;

/// The records of a search within `scope`, in id order after `after`, `want` at most, with
/// the list's other filters: one statement reads a batch of the index in id order and keeps
/// its records that pass the filters; only when the filters leave too few is the next batch
/// read.
fn by_relevance(
    conn: &mut DbConn,
    q: &ListQuery,
    scope: Scope,
    after: i64,
    want: i64,
    matches: &mut Matches,
) -> QueryResult<Vec<RecordRow>> {
    let mut rows: Vec<RecordRow> = Vec::new();
    let batch = SEARCH_BATCH.max(want);
    let mut from = after;
    let Some(terms) = matches.terms(conn, q)? else {
        return Ok(rows);
    };
    loop {
        let missing = want - rows.len() as i64;
        match matches.rows.remove(&(scope, from, batch)) {
            Some(counted) => rows.extend(
                counted
                    .into_iter()
                    .take(usize::try_from(missing).unwrap_or(0)),
            ),
            None => rows.extend(
                in_batch(conn, q, &terms, scope, from, batch, matches)?
                    .order(records::id.asc())
                    .limit(missing)
                    .select(RecordRow::as_select())
                    .load::<RecordRow>(conn)?,
            ),
        }
        if rows.len() as i64 >= want {
            break;
        }
        match batch_end(conn, &terms, scope, from, batch, matches)? {
            Some(last) => from = last,
            None => break,
        }
    }
    Ok(rows)
}

/// How many records a search selects, up to `SEARCH_COUNT_CAP` ("200+" is what a person
/// needs to know to narrow it): the name matches first, which are quick to read and, for a
/// common name, already past the cap.
fn count_search(conn: &mut DbConn, q: &ListQuery, matches: &mut Matches) -> QueryResult<Total> {
    let by_name = count_scope(conn, q, Scope::Name, matches)?;
    if by_name.more {
        return Ok(by_name);
    }
    count_scope(conn, q, Scope::All, matches)
}

/// A search's records within `scope`, counted a batch of the index at a time up to the cap.
fn count_scope(
    conn: &mut DbConn,
    q: &ListQuery,
    scope: Scope,
    matches: &mut Matches,
) -> QueryResult<Total> {
    let mut count = 0;
    let mut from = 0;
    let Some(terms) = matches.terms(conn, q)? else {
        return Ok(Total::default());
    };
    loop {
        // Rows up to the cap, not a COUNT: PostgreSQL's batch is every match, and a whole batch
        // is kept for the page, which lists the same batch's first rows.
        let limit = SEARCH_COUNT_CAP - count;
        let rows: Vec<RecordRow> =
            in_batch(conn, q, &terms, scope, from, SEARCH_COUNT_CAP, matches)?
                .order(records::id.asc())
                .limit(limit)
                .select(RecordRow::as_select())
                .load(conn)?;
        count += rows.len() as i64;
        if limit == SEARCH_COUNT_CAP {
            matches.rows.insert((scope, from, SEARCH_COUNT_CAP), rows);
        }
        if count >= SEARCH_COUNT_CAP {
            return Ok(Total {
                count: SEARCH_COUNT_CAP,
                more: true,
            });
        }
        match batch_end(conn, &terms, scope, from, SEARCH_COUNT_CAP, matches)? {
            Some(last) => from = last,
            None => break,
        }
    }
    Ok(Total { count, more: false })
}

/// What a page's search looks for and, on PostgreSQL, the ids it matched: by name, the last
/// batch read (a page's count and rows ask for the same batch twice); in other scopes every
/// match, in id order, read once per page, so that its count and its rows share one pass over
/// the GIN index. The rows the count read are kept for the page, which starts with them.
#[derive(Default)]
struct Matches {
    terms: Option<Vec<search::Term>>,
    ids: HashMap<Scope, Vec<i64>>,
    last_by_name: Option<((i64, i64), Vec<i64>)>,
    /// Every listed record of a batch (scope, after, size), read by the count.
    rows: HashMap<(Scope, i64, i64), Vec<RecordRow>>,
}

impl Matches {
    /// The search's terms, with the name words they cover (`search::expand`); `None` when it
    /// has none to look for.
    fn terms(
        &mut self,
        conn: &mut DbConn,
        q: &ListQuery,
    ) -> QueryResult<Option<Vec<search::Term>>> {
        if self.terms.is_none() {
            let mut terms = search::terms(&q.search);
            search::expand(conn, &mut terms)?;
            self.terms = Some(terms);
        }
        Ok(self.terms.clone().filter(|terms| !terms.is_empty()))
    }

    /// At most `batch` of the matches after `after`.
    fn batch(
        &mut self,
        pg: &mut diesel::PgConnection,
        terms: &[search::Term],
        scope: Scope,
        after: i64,
        batch: i64,
    ) -> QueryResult<Vec<i64>> {
        if scope == Scope::Name {
            if let Some((_, ids)) = self
                .last_by_name
                .as_ref()
                .filter(|(read, _)| *read == (after, batch))
            {
                return Ok(ids.clone());
            }
            if let Some(ids) = search::name_ids_after(pg, terms, after, batch)? {
                self.last_by_name = Some(((after, batch), ids.clone()));
                return Ok(ids);
            }
        }
        let ids = match self.ids.entry(scope) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(search::all_ids(pg, terms, scope)?)
            }
        };
        let start = ids.partition_point(|id| *id <= after);
        let end = start.saturating_add(usize::try_from(batch).unwrap_or(usize::MAX));
        Ok(ids[start..end.min(ids.len())].to_vec())
    }
}

/// The list's records among a batch of the search's matches (the list's filters applied).
/// SQLite reads the batch from its index in the same statement; PostgreSQL's batches are cut
/// from every match, read once (`Matches`), and bound as a short array (binding all 26,000
/// matches of a common name cost 13 ms of planning per statement).
fn in_batch(
    conn: &mut DbConn,
    q: &ListQuery,
    terms: &[search::Term],
    scope: Scope,
    after: i64,
    batch: i64,
    matches: &mut Matches,
) -> QueryResult<BoxedRecords<'static>> {
    let others = ListQuery {
        search: String::new(),
        ..q.clone()
    };
    match conn {
        DbConn::Sqlite(_) => Ok(filtered(&others, false, Scope::All)
            .filter(search::batch_sql(terms, scope, after, batch))),
        DbConn::Pg(pg) => {
            let ids = matches.batch(pg, terms, scope, after, batch)?;
            // As text (`id_in`): bound as an array, the statement was planned afresh each time.
            Ok(filtered(&others, true, Scope::All).filter(crate::db::id_in(
                conn,
                "records.id",
                &ids,
            )))
        }
    }
}

/// The last match of a full batch of the index (the next one starts after it); `None` when
/// the batch was the last.
fn batch_end(
    conn: &mut DbConn,
    terms: &[search::Term],
    scope: Scope,
    after: i64,
    batch: i64,
    matches: &mut Matches,
) -> QueryResult<Option<i64>> {
    let ids = match conn {
        DbConn::Pg(pg) => matches.batch(pg, terms, scope, after, batch)?,
        DbConn::Sqlite(c) => search::ids_after(c, terms, scope, after, batch)?,
    };
    Ok(ids.last().copied().filter(|_| ids.len() as i64 == batch))
}

/// The page of the first `q.limit` of `rows` (one more is read to know there is a next page)
/// with their custom values, and the cursor of the next page. The first `by_name` rows are a
/// search's name matches; the rest were found by email or phone.
fn finish_page(
    conn: &mut DbConn,
    q: &ListQuery,
    custom_columns: &[FieldDef],
    total: Total,
    mut rows: Vec<RecordRow>,
    by_name: usize,
) -> QueryResult<Page> {
    let searching = !q.search.trim().is_empty();
    let has_more = rows.len() as i64 > q.limit;
    rows.truncate(usize::try_from(q.limit).unwrap_or(0));

    let mut custom = custom_of(conn, &rows, custom_columns, &q.sort)?;
    let next = if has_more {
        rows.last().map(|last| {
            let value = sort_value(last, &q.sort, &custom);
            let blank = match q.sort {
                SortKey::Custom { numeric: true, .. } => number_of(&value).is_none(),
                SortKey::Custom { .. } => value.is_empty(),
                _ => false,
            };
            Cursor {
                value,
                id: last.id,
                blank,
                rest: searching && rows.len() > by_name,
            }
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

/// A number field's value as the number it sorts by (as the write path stores it).
fn number_of(value: &str) -> Option<f64> {
    value.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Keeps the values after (value, id) of a cursor, in the sort's direction.
macro_rules! values_after {
    ($query:expr, $numeric:expr, $cmp:expr, $value:expr, $id:expr) => {{
        if $numeric {
            $query.filter(
                crate::db::kept_sql::<Bool>(&format!(
                    "(record_values.number, record_values.record_id) {} (",
                    $cmp
                ))
                .bind::<Double, _>(number_of($value).unwrap_or_default())
                .sql(", ")
                .bind::<BigInt, _>($id)
                .sql(")"),
            )
        } else {
            $query.filter(
                crate::db::kept_sql::<Bool>(&format!(
                    "(record_values.value, record_values.record_id) {} (",
                    $cmp
                ))
                .bind::<Text, _>($value.to_string())
                .sql(", ")
                .bind::<BigInt, _>($id)
                .sql(")"),
            )
        }
    }};
}

/// Orders by the field's value (or number), then record id, in the sort's direction.
macro_rules! by_value {
    ($query:expr, $numeric:expr, $desc:expr) => {{
        match ($numeric, $desc) {
            (true, false) => {
                $query.order((record_values::number.asc(), record_values::record_id.asc()))
            }
            (true, true) => $query.order((
                record_values::number.desc(),
                record_values::record_id.desc(),
            )),
            (false, false) => {
                $query.order((record_values::value.asc(), record_values::record_id.asc()))
            }
            (false, true) => {
                $query.order((record_values::value.desc(), record_values::record_id.desc()))
            }
        }
    }};
}

/// Most record ids one step of a custom sort reads from the field's index.
const MAX_CANDIDATES: i64 = 8_192;

/// Up to `q.limit + 1` records sorted by a custom field: those with a value in its order (read
/// from the field's index of values, or numbers, in order), then those without one by id, in
/// either direction, so that a page costs what the first one costs.
fn custom_sorted(
    conn: &mut DbConn,
    q: &ListQuery,
    field_id: i64,
    numeric: bool,
    scope: Scope,
) -> QueryResult<Vec<RecordRow>> {
    let postgres = matches!(conn, DbConn::Pg(_));
    let (want, desc) = (q.limit + 1, q.descending);
    let cmp = if desc { "<" } else { ">" };
    let mut rows = Vec::new();
    let in_values = !q.after.as_ref().is_some_and(|c| c.blank);
    if in_values && !q.search.trim().is_empty() {
        // A search selects few records: they are found first, then sorted.
        let joined = records::table
            .inner_join(
                record_values::table.on(record_values::record_id
                    .eq(records::id)
                    .and(record_values::field_id.eq(field_id))),
            )
            .into_boxed();
        let mut query = with_filters!(joined, q, postgres, scope);
        if numeric {
            query = query.filter(record_values::number.is_not_null());
        }
        if let Some(c) = &q.after {
            query = values_after!(query, numeric, cmp, &c.value, c.id);
        }
        rows = crate::db::limited(
            by_value!(query, numeric, desc).select(RecordRow::as_select()),
            want,
        )
        .load(conn)?;
    } else if in_values {
        // Otherwise the field's index is read in order, a growing step at a time, keeping the
        // records the filters select: one step for the list as it opens.
        let mut after = q.after.as_ref().map(|c| (c.value.clone(), c.id));
        // Most records pass the list's filters: one page's worth is read first.
        let mut step = want;
        loop {
            let mut candidates = record_values::table
                .filter(record_values::field_id.eq(field_id))
                .into_boxed();
            if numeric {
                candidates = candidates.filter(record_values::number.is_not_null());
            }
            if let Some((value, id)) = &after {
                candidates = values_after!(candidates, numeric, cmp, value, *id);
            }
            let ordered = by_value!(candidates, numeric, desc);
            // A number is read from its index alone (the value would cost a row lookup each).
            let found: Vec<(i64, String)> = if numeric {
                crate::db::limited(
                    ordered.select((record_values::record_id, record_values::number)),
                    step,
                )
                .load::<(i64, Option<f64>)>(conn)?
                .into_iter()
                .map(|(id, n)| (id, n.unwrap_or_default().to_string()))
                .collect()
            } else {
                crate::db::limited(
                    ordered.select((record_values::record_id, record_values::value)),
                    step,
                )
                .load(conn)?
            };
            let exhausted = (found.len() as i64) < step;
            let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
            let mut selected: HashMap<i64, RecordRow> = filtered(q, postgres, scope)
                .filter(crate::db::id_in(conn, "records.id", &ids))
                .select(RecordRow::as_select())
                .load(conn)?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            rows.extend(ids.iter().filter_map(|id| selected.remove(id)));
            if exhausted || rows.len() as i64 >= want {
                break;
            }
            after = found.last().map(|(id, value)| (value.clone(), *id));
            step = (step * 4).min(MAX_CANDIDATES);
        }
        rows.truncate(usize::try_from(want).unwrap_or(0));
    }
    let missing = want - rows.len() as i64;
    if missing > 0 {
        // `field_id` is an integer from the field definitions, never user text.
        let mut blanks =
            filtered(q, postgres, scope).filter(crate::db::kept_sql::<Bool>(&format!(
                "NOT EXISTS (SELECT 1 FROM record_values rv WHERE rv.record_id = records.id \
             AND rv.field_id = {field_id}{})",
                if numeric {
                    " AND rv.number IS NOT NULL"
                } else {
                    ""
                }
            )));
        if let Some(c) = q.after.as_ref().filter(|c| c.blank) {
            blanks = if desc {
                blanks.filter(records::id.lt(c.id))
            } else {
                blanks.filter(records::id.gt(c.id))
            };
        }
        blanks = if desc {
            blanks.order(records::id.desc())
        } else {
            blanks.order(records::id.asc())
        };
        rows.extend(
            crate::db::limited(blanks.select(RecordRow::as_select()), missing)
                .load::<RecordRow>(conn)?,
        );
    }
    Ok(rows)
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
    let field_ids: Vec<i64> = field_keys.keys().copied().collect();
    let found: Vec<(i64, i64, String)> = record_values::table
        .filter(crate::db::id_in(conn, "record_values.record_id", &ids))
        .filter(crate::db::id_in(conn, "record_values.field_id", &field_ids))
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
        SortKey::Relevance => String::new(),
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
