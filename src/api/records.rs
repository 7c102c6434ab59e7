//! Records as the API shows them: every field (custom ones included), owner, links, flags and
//! pending proposals. A page costs a fixed number of queries whatever its size.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::DbConn;
use crate::fields::model::RecordKind;
use crate::fields::service as fields;
use crate::records::writer;
use crate::review::service as review;
use crate::schema::{record_links, records, sources};

/// Largest page of records.
pub const MAX_PAGE: i64 = 1_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiLink {
    pub source_id: i64,
    pub source: String,
    pub external_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiProposal {
    pub field: String,
    pub current_value: String,
    pub proposed_value: String,
    /// Where it came from ("import run 12 (CRM)", "application #4 ...").
    pub origin: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiRecord {
    pub id: i64,
    /// `contact` or `company`.
    pub kind: String,
    /// Every field by key, blank ones included.
    pub fields: BTreeMap<String, String>,
    /// A contact's company.
    pub company_id: Option<i64>,
    /// The source that owns the record; `null` for a manual one.
    pub owner_source_id: Option<i64>,
    pub links: Vec<ApiLink>,
    pub forced_manual: bool,
    pub archived: bool,
    pub missing_from_source: bool,
    pub pending_proposals: Vec<ApiProposal>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::text::utc")]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::text::utc")]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<ApiRecord>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// `EXISTS (a link of the source to the record)`.
type LinkedTo = diesel::dsl::exists<
    diesel::dsl::Filter<
        diesel::dsl::Filter<record_links::table, diesel::dsl::Eq<record_links::source_id, i64>>,
        diesel::dsl::Eq<record_links::record_id, records::id>,
    >,
>;

/// Records linked to `source` only, when the token is restricted to one.
fn linked_to(source: i64) -> LinkedTo {
    diesel::dsl::exists(
        record_links::table
            .filter(record_links::source_id.eq(source))
            .filter(record_links::record_id.eq(records::id)),
    )
}

/// A page of records of `kind` by id, after `after`.
pub fn page(
    conn: &mut DbConn,
    kind: RecordKind,
    after: i64,
    limit: i64,
    source: Option<i64>,
) -> QueryResult<RecordPage> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut query = records::table
        .filter(records::kind.eq(kind.as_str()))
        .filter(records::id.gt(after))
        .order(records::id.asc())
        .limit(limit + 1)
        .select(records::id)
        .into_boxed();
    if let Some(source) = source {
        query = query.filter(linked_to(source));
    }
    let mut ids: Vec<i64> = query.load(conn)?;
    let more = ids.len() as i64 > limit;
    ids.truncate(limit as usize);
    let next = more.then(|| ids.last().map(i64::to_string)).flatten();
    Ok(RecordPage {
        records: build(conn, &ids)?,
        next,
    })
}

/// One record, if it exists (and, for a restricted token, is linked to its source).
pub fn one(conn: &mut DbConn, id: i64, source: Option<i64>) -> QueryResult<Option<ApiRecord>> {
    let mut query = records::table
        .filter(records::id.eq(id))
        .select(records::id)
        .into_boxed();
    if let Some(source) = source {
        query = query.filter(linked_to(source));
    }
    let ids: Vec<i64> = query.load(conn)?;
    Ok(build(conn, &ids)?.pop())
}

/// The record a source knows by `external_id`.
pub fn by_external_id(
    conn: &mut DbConn,
    source_id: i64,
    external_id: &str,
) -> QueryResult<Option<ApiRecord>> {
    let ids: Vec<i64> = record_links::table
        .filter(record_links::source_id.eq(source_id))
        .filter(record_links::external_id.eq(external_id))
        .select(record_links::record_id)
        .load(conn)?;
    Ok(build(conn, &ids)?.pop())
}

/// The records of `ids`, in that order: states (2 queries), field definitions (one per kind
/// present), links and pending proposals (one each).
fn build(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<ApiRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut states = writer::load_states(conn, ids)?;
    let mut defs = HashMap::new();
    for (row, _) in states.values() {
        if let std::collections::hash_map::Entry::Vacant(slot) = defs.entry(row.record_kind()) {
            slot.insert(fields::list(conn, row.record_kind(), false)?);
        }
    }
    let mut links: HashMap<i64, Vec<ApiLink>> = HashMap::new();
    for (record_id, source_id, source, external_id) in record_links::table
        .inner_join(sources::table)
        .filter(record_links::record_id.eq_any(ids))
        .order((record_links::record_id, sources::name))
        .select((
            record_links::record_id,
            record_links::source_id,
            sources::name,
            record_links::external_id,
        ))
        .load::<(i64, i64, String, String)>(conn)?
    {
        links.entry(record_id).or_default().push(ApiLink {
            source_id,
            source,
            external_id,
        });
    }
    let mut proposals: HashMap<i64, Vec<ApiProposal>> = HashMap::new();
    for p in review::pending_of(conn, ids)? {
        proposals.entry(p.record_id).or_default().push(ApiProposal {
            field: p.field_key,
            current_value: p.current_value,
            proposed_value: p.proposed_value,
            origin: p.origin_label,
        });
    }
    Ok(ids
        .iter()
        .filter_map(|id| {
            let (row, state) = states.remove(id)?;
            let kind = row.record_kind();
            Some(ApiRecord {
                id: row.id,
                kind: kind.as_str().to_string(),
                fields: state
                    .values(defs.get(&kind).map_or(&[][..], Vec::as_slice))
                    .into_iter()
                    .collect(),
                company_id: row.company_id,
                owner_source_id: row.owner_source_id,
                links: links.remove(id).unwrap_or_default(),
                forced_manual: row.forced_manual,
                archived: row.archived,
                missing_from_source: row.missing_from_source,
                pending_proposals: proposals.remove(id).unwrap_or_default(),
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect())
}
