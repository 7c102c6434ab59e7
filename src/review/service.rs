//! Proposals and the "check data" decisions. A proposal is a pending change to one field of
//! one record; a record with any is desynchronised until a person keeps, accepts or replaces
//! each proposed value. This module knows no HTTP types.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::totals;
use crate::db::{self, Backend, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::validate::{normalize_for, PhoneCountry};
use crate::records::list::Total;
use crate::records::model::{Actor, Origin, RecordRow};
use crate::records::service as records;
use crate::schema::{applications, import_runs, proposals};
use crate::stored::stored_enum;

stored_enum! {
    /// Where a proposal is: waiting for a person, or how it ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ProposalStatus as "proposal status" {
        Pending = "pending",
        Accepted = "accepted",
        Kept = "kept",
        NewValue = "new_value",
        Replaced = "replaced",
    }
}

pub const PENDING: &str = ProposalStatus::Pending.as_str();

/// `status = 'pending'` written into the SQL rather than bound: only then can PostgreSQL's
/// generic plans (and SQLite's planner) use the partial indexes `... WHERE status = 'pending'`.
pub(crate) fn is_pending() -> db::KeptSql<diesel::sql_types::Bool> {
    db::kept_sql("proposals.status = 'pending'")
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = proposals)]
pub struct Proposal {
    pub id: i64,
    pub record_id: i64,
    pub field_key: String,
    pub current_value: String,
    pub proposed_value: String,
    #[diesel(deserialize_as = String)]
    pub origin: Origin,
    pub origin_id: Option<i64>,
    pub origin_label: String,
    #[diesel(deserialize_as = String)]
    pub status: ProposalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = String)]
    pub record_kind: RecordKind,
    pub source_id: Option<i64>,
    pub process_id: Option<i64>,
    pub decided_value: Option<String>,
}

impl Proposal {
    /// The page the proposal came from: the import run or the application.
    pub fn origin_href(&self) -> Option<String> {
        let id = self.origin_id?;
        match self.origin {
            Origin::Import => Some(format!("/runs/{id}")),
            Origin::Application => Some(format!("/applications/{id}")),
            _ => None,
        }
    }

    /// How it was decided, in words ("accepted the proposed value", ...).
    pub fn decision_text(&self) -> String {
        match self.status {
            ProposalStatus::Accepted => format!(
                "accepted the proposed value ({})",
                shown(&self.proposed_value)
            ),
            ProposalStatus::Kept => "kept the current value".to_string(),
            ProposalStatus::NewValue => format!(
                "typed a new value ({})",
                shown(self.decided_value.as_deref().unwrap_or(""))
            ),
            ProposalStatus::Replaced => "replaced by a newer proposal".to_string(),
            ProposalStatus::Pending => "still pending".to_string(),
        }
    }

    pub fn decided_at_text(&self) -> String {
        self.decided_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default()
    }
}

fn shown(value: &str) -> &str {
    if value.is_empty() {
        "blank"
    } else {
        value
    }
}

/// Marks the pending proposals of `field_key` on these records replaced (kept as history).
fn replace_pending(
    conn: &mut DbConn,
    record_ids: &[i64],
    field_key: &str,
    actor: &Actor,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        proposals::table
            .filter(proposals::record_id.eq_any(record_ids))
            .filter(proposals::field_key.eq(field_key))
            .filter(proposals::status.eq(PENDING)),
    )
    .set((
        proposals::status.eq(ProposalStatus::Replaced.as_str()),
        proposals::decided_by.eq(Some(actor.label.clone())),
        proposals::decided_at.eq(Some(now)),
    ))
    .execute(conn)
}

/// Stores a proposal; a pending one for the same record and field is replaced (and kept, with
/// status `replaced`, as history). Call inside a transaction.
pub fn propose(
    conn: &mut DbConn,
    record_id: i64,
    field_key: &str,
    current: &str,
    proposed: &str,
    actor: &Actor,
) -> QueryResult<()> {
    use crate::schema::records;
    // Two proposals for one field at once would both find no pending row to replace and then
    // collide on the unique index: `totals::tracked` locks the record, so the second waits.
    let now = db::now();
    let record_kind: String = records::table
        .find(record_id)
        .select(records::kind)
        .first(conn)?;
    let (source_id, process_id) = match (actor.origin, actor.origin_id) {
        (Origin::Import, Some(run)) => (
            import_runs::table
                .find(run)
                .select(import_runs::source_id)
                .first::<i64>(conn)
                .optional()?,
            None,
        ),
        (Origin::Application, Some(app)) => (
            None,
            applications::table
                .find(app)
                .select(applications::process_id)
                .first::<i64>(conn)
                .optional()?,
        ),
        _ => (None, None),
    };
    totals::tracked(conn, &[record_id], |conn| {
        replace_pending(conn, &[record_id], field_key, actor, now)?;
        diesel::insert_into(proposals::table)
            .values((
                proposals::record_id.eq(record_id),
                proposals::field_key.eq(field_key),
                proposals::current_value.eq(current),
                proposals::proposed_value.eq(proposed),
                proposals::origin.eq(actor.origin.as_str()),
                proposals::origin_id.eq(actor.origin_id),
                proposals::origin_label.eq(&actor.label),
                proposals::status.eq(PENDING),
                proposals::created_at.eq(now),
                proposals::record_kind.eq(record_kind),
                proposals::source_id.eq(source_id),
                proposals::process_id.eq(process_id),
            ))
            .execute(conn)
            .map(|_| ())
    })
}

/// A proposal an import row makes under a `review` rule.
#[derive(Debug, Clone)]
pub struct NewProposal {
    pub record_id: i64,
    pub field_key: String,
    pub current: String,
    pub proposed: String,
}

#[derive(Insertable)]
#[diesel(table_name = proposals, treat_none_as_default_value = false)]
struct ProposalRow<'a> {
    record_id: i64,
    field_key: &'a str,
    current_value: &'a str,
    proposed_value: &'a str,
    origin: &'a str,
    origin_id: Option<i64>,
    origin_label: &'a str,
    status: &'a str,
    decided_by: Option<&'a str>,
    decided_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    record_kind: &'a str,
    source_id: Option<i64>,
    process_id: Option<i64>,
}

/// Many proposals of one source's import at once, as `propose` would store them one by one:
/// pending ones for the same fields are replaced, and so is an earlier one of the same batch.
/// Call inside a transaction.
pub fn propose_many(
    conn: &mut DbConn,
    new: &[NewProposal],
    kind: RecordKind,
    source_id: i64,
    actor: &Actor,
) -> QueryResult<()> {
    if new.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = new.iter().map(|p| p.record_id).collect();
    ids.sort_unstable();
    ids.dedup();
    // As in `propose`: `totals::tracked` locks these records, so concurrent proposals wait.
    let now = db::now();
    totals::tracked(conn, &ids, |conn| {
        let mut keys: Vec<&str> = new.iter().map(|p| p.field_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let on_key: Vec<i64> = new
                .iter()
                .filter(|p| p.field_key == key)
                .map(|p| p.record_id)
                .collect();
            for part in on_key.chunks(5_000) {
                replace_pending(conn, part, key, actor, now)?;
            }
        }
        let last: BTreeMap<(i64, &str), usize> = new
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.record_id, p.field_key.as_str()), i))
            .collect();
        let rows: Vec<ProposalRow> = new
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let replaced = last.get(&(p.record_id, p.field_key.as_str())) != Some(&i);
                ProposalRow {
                    record_id: p.record_id,
                    field_key: &p.field_key,
                    current_value: &p.current,
                    proposed_value: &p.proposed,
                    origin: actor.origin.as_str(),
                    origin_id: actor.origin_id,
                    origin_label: &actor.label,
                    status: if replaced {
                        ProposalStatus::Replaced
                    } else {
                        ProposalStatus::Pending
                    }
                    .as_str(),
                    decided_by: replaced.then_some(actor.label.as_str()),
                    decided_at: replaced.then_some(now),
                    created_at: now,
                    record_kind: kind.as_str(),
                    source_id: Some(source_id),
                    process_id: None,
                }
            })
            .collect();
        db::insert_all!(conn, proposals::table, rows);
        Ok(())
    })
}

pub fn pending_for(conn: &mut DbConn, record_id: i64) -> QueryResult<Vec<Proposal>> {
    pending_of(conn, &[record_id])
}

/// The pending proposals of several records (a page of the desynchronised view).
pub fn pending_of(conn: &mut DbConn, record_ids: &[i64]) -> QueryResult<Vec<Proposal>> {
    proposals::table
        .filter(is_pending())
        .filter(db::id_in(conn, "proposals.record_id", record_ids))
        .order((proposals::record_id.asc(), proposals::id.asc()))
        .select(Proposal::as_select())
        .load(conn)
}

/// A record's decided and replaced proposals, newest first: the review's own history.
pub fn earlier_for(conn: &mut DbConn, record_id: i64, limit: i64) -> QueryResult<Vec<Proposal>> {
    proposals::table
        .filter(proposals::record_id.eq(record_id))
        .filter(proposals::status.ne(PENDING))
        .order(proposals::id.desc())
        .limit(limit)
        .select(Proposal::as_select())
        .load(conn)
}

/// Withdraws the pending proposals an origin (such as an undone import run) made.
pub fn withdraw(conn: &mut DbConn, origin: &str, origin_id: i64, by: &str) -> QueryResult<usize> {
    let made = proposals::table
        .filter(proposals::origin.eq(origin))
        .filter(proposals::origin_id.eq(origin_id))
        .filter(proposals::status.eq(PENDING));
    let ids: Vec<i64> = made.select(proposals::record_id).distinct().load(conn)?;
    totals::tracked(conn, &ids, |conn| {
        diesel::update(made)
            .set((
                proposals::status.eq(ProposalStatus::Replaced.as_str()),
                proposals::decided_by.eq(Some(by.to_string())),
                proposals::decided_at.eq(Some(db::now())),
            ))
            .execute(conn)
    })
}

/// Pending fields per record, for the indicators of a list page.
pub fn pending_counts(conn: &mut DbConn, record_ids: &[i64]) -> QueryResult<BTreeMap<i64, i64>> {
    if record_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(proposals::table
        .filter(is_pending())
        .filter(db::id_in(conn, "proposals.record_id", record_ids))
        .group_by(proposals::record_id)
        .select((proposals::record_id, diesel::dsl::count_star()))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect())
}

// ---- decisions -------------------------------------------------------------------------

/// What a person decides for one pending proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Discard the proposal: the record keeps its value (and the next application is
    /// pre-filled from it).
    Keep,
    /// Take the proposed value.
    Accept,
    /// Another value, validated by the field's type.
    NewValue(String),
}

impl Choice {
    fn status(&self) -> ProposalStatus {
        match self {
            Choice::Keep => ProposalStatus::Kept,
            Choice::Accept => ProposalStatus::Accepted,
            Choice::NewValue(_) => ProposalStatus::NewValue,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Proposal id -> what is wrong with the value typed for it; nothing was applied.
    #[error("Nothing was applied: {}", .0.values().cloned().collect::<Vec<_>>().join(" "))]
    Invalid(BTreeMap<i64, String>),
    #[error("That record does not exist.")]
    NotFound,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// One decision that this request applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub proposal_id: i64,
    pub field: String,
    /// "accepted: +33612345678", "kept the current value", ...
    pub what: String,
}

/// A line someone else decided first (or a newer proposal replaced): nothing was done for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyDecided {
    pub proposal_id: i64,
    pub field: String,
    pub by: String,
    pub how: String,
    pub at: String,
}

impl AlreadyDecided {
    pub fn sentence(&self) -> String {
        if self.how.starts_with("replaced") {
            format!(
                "{}: a newer proposal (from {}) replaced the one you decided on at {}; nothing was applied, check the new one.",
                self.field, self.by, self.at
            )
        } else {
            format!(
                "{}: already decided by {} at {} ({}); your decision was not applied.",
                self.field, self.by, self.at, self.how
            )
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub applied: Vec<Applied>,
    pub already_decided: Vec<AlreadyDecided>,
}

impl Outcome {
    /// One line for a flash message.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.applied.is_empty() {
            parts.push(format!(
                "Applied: {}.",
                self.applied
                    .iter()
                    .map(|a| format!("{} {}", a.field, a.what))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        parts.extend(self.already_decided.iter().map(AlreadyDecided::sentence));
        if parts.is_empty() {
            "Nothing was decided.".to_string()
        } else {
            parts.join(" ")
        }
    }
}

pub use crate::fields::model::label_of;

/// Checks the values typed for "new value" (and that no required field would be blanked)
/// before anything is written.
fn validated(
    defs: &[FieldDef],
    pending: &[Proposal],
    decisions: &[(i64, Choice)],
    country: PhoneCountry,
) -> Result<BTreeMap<i64, String>, ReviewError> {
    let mut typed = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (id, choice) in decisions {
        let Some(proposal) = pending.iter().find(|p| p.id == *id) else {
            continue;
        };
        let raw = match choice {
            Choice::Keep => continue,
            Choice::Accept => {
                if proposal.proposed_value.is_empty()
                    && defs
                        .iter()
                        .any(|d| d.key == proposal.field_key && d.required())
                {
                    let label = label_of(defs, &proposal.field_key);
                    errors.insert(*id, format!("{label} cannot be blank; keep it instead."));
                }
                continue;
            }
            Choice::NewValue(raw) => raw,
        };
        let Some(def) = defs.iter().find(|d| d.key == proposal.field_key) else {
            errors.insert(
                *id,
                format!("'{}' is no longer a field.", proposal.field_key),
            );
            continue;
        };
        if def.ftype() == FieldType::Document {
            errors.insert(
                *id,
                format!(
                    "{}: a document cannot be typed; keep or accept it.",
                    def.label
                ),
            );
            continue;
        }
        match normalize_for(def, raw, country) {
            Ok(value) if def.required() && value.is_empty() => {
                errors.insert(*id, format!("{} cannot be blank.", def.label));
            }
            Ok(value) => {
                typed.insert(*id, value);
            }
            Err(message) => {
                errors.insert(*id, message);
            }
        }
    }
    if errors.is_empty() {
        Ok(typed)
    } else {
        Err(ReviewError::Invalid(errors))
    }
}

/// Applies decisions on a record's proposals in one transaction, each with a history row.
///
/// Each proposal is claimed by a conditional update (pending -> decided): of several people
/// deciding the same line, only the first applies anything; the others are told who decided
/// and how. A value that fails validation applies nothing at all.
pub fn decide(
    conn: &mut DbConn,
    record_id: i64,
    decisions: &[(i64, Choice)],
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Outcome, ReviewError> {
    db::write_tx(conn, |conn| {
        totals::tracked(conn, &[record_id], |conn| {
            let record = records::find(conn, record_id)?.ok_or(ReviewError::NotFound)?;
            let defs = crate::fields::service::list(conn, record.record_kind(), true)?;
            let ids: Vec<i64> = decisions.iter().map(|(id, _)| *id).collect();
            let asked: Vec<Proposal> = proposals::table
                .filter(proposals::id.eq_any(&ids))
                .filter(proposals::record_id.eq(record_id))
                .select(Proposal::as_select())
                .load(conn)?;
            let typed = validated(&defs, &asked, decisions, country)?;
            let mut outcome = Outcome::default();
            for (id, choice) in decisions {
                let Some(proposal) = asked.iter().find(|p| p.id == *id) else {
                    continue;
                };
                let field = label_of(&defs, &proposal.field_key);
                let value = match choice {
                    Choice::Keep => None,
                    Choice::Accept => Some(proposal.proposed_value.clone()),
                    Choice::NewValue(_) => typed.get(id).cloned(),
                };
                if !claim(conn, proposal.id, choice, value.as_deref(), actor)? {
                    let decided: Proposal = proposals::table
                        .find(proposal.id)
                        .select(Proposal::as_select())
                        .first(conn)?;
                    outcome.already_decided.push(AlreadyDecided {
                        proposal_id: proposal.id,
                        field,
                        by: decided.decided_by.clone().unwrap_or_default(),
                        how: decided.decision_text(),
                        at: decided.decided_at_text(),
                    });
                    continue;
                }
                let what = apply(conn, &record, &defs, proposal, choice, value, actor)?;
                outcome.applied.push(Applied {
                    proposal_id: proposal.id,
                    field,
                    what,
                });
            }
            Ok(outcome)
        })
    })
}

/// Marks a pending proposal decided; false when it no longer was pending.
fn claim(
    conn: &mut DbConn,
    proposal_id: i64,
    choice: &Choice,
    value: Option<&str>,
    actor: &Actor,
) -> QueryResult<bool> {
    let decided_value = match choice {
        Choice::NewValue(_) => value.map(str::to_string),
        _ => None,
    };
    let claimed = diesel::update(
        proposals::table
            .filter(proposals::id.eq(proposal_id))
            .filter(proposals::status.eq(PENDING)),
    )
    .set((
        proposals::status.eq(choice.status().as_str()),
        proposals::decided_by.eq(Some(actor.label.clone())),
        proposals::decided_at.eq(Some(db::now())),
        proposals::decided_value.eq(decided_value),
    ))
    .execute(conn)?;
    Ok(claimed == 1)
}

/// Writes what a claimed decision asks for and its history row; returns it in words.
fn apply(
    conn: &mut DbConn,
    record: &RecordRow,
    defs: &[FieldDef],
    proposal: &Proposal,
    choice: &Choice,
    value: Option<String>,
    actor: &Actor,
) -> QueryResult<String> {
    let what = match (choice, &value) {
        (Choice::Keep, _) => format!(
            "kept the current value, discarded {} from {}",
            shown(&proposal.proposed_value),
            proposal.origin_label
        ),
        (Choice::Accept, Some(v)) => {
            format!("accepted {} from {}", shown(v), proposal.origin_label)
        }
        (_, v) => format!(
            "set to a new value {} instead of {} from {}",
            shown(v.as_deref().unwrap_or("")),
            shown(&proposal.proposed_value),
            proposal.origin_label
        ),
    };
    let review_actor = Actor {
        origin: Origin::Review,
        origin_id: Some(proposal.id),
        // Accepting takes the source's own value (nothing to send back to it); a value a
        // person types is news to the source.
        source_id: proposal
            .source_id
            .filter(|_| matches!(choice, Choice::Accept)),
        user_id: actor.user_id,
        label: format!("{}: {what}", actor.label),
    };
    // The record may have changed since the page was read: write against its current row.
    let fresh = records::find(conn, record.id)?.unwrap_or_else(|| record.clone());
    let def = defs.iter().find(|d| d.key == proposal.field_key);
    let written = match (value, def) {
        (Some(value), Some(def)) => {
            records::write_values(conn, &fresh, &[(def.clone(), value)], &review_actor)?.len()
        }
        _ => 0,
    };
    if written == 0 {
        // Kept, or a value equal to the current one: no value changes, but the decision still
        // gets its history row.
        let current = records::values(conn, &fresh, defs)?
            .remove(&proposal.field_key)
            .filter(|v| !v.is_empty());
        crate::records::writer::note(conn, record.id, &proposal.field_key, current, &review_actor)?;
    }
    Ok(what)
}

// ---- the desynchronised-records view ---------------------------------------------------

/// Filters of the desynchronised-records view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesyncFilter {
    pub kind: Option<RecordKind>,
    /// Proposals from imports of this source.
    pub source_id: Option<i64>,
    /// Proposals from applications of this process.
    pub process_id: Option<i64>,
}

/// Pending proposals matching the filter; each filter has a partial index of its own.
fn pending_filtered(filter: &DesyncFilter) -> proposals::BoxedQuery<'static, Backend> {
    let mut q = proposals::table.filter(is_pending()).into_boxed();
    if let Some(kind) = filter.kind {
        q = q.filter(proposals::record_kind.eq(kind.as_str()));
    }
    if let Some(source) = filter.source_id {
        q = q.filter(proposals::source_id.eq(source));
    }
    if let Some(process) = filter.process_id {
        q = q.filter(proposals::process_id.eq(process));
    }
    q
}

#[derive(QueryableByName)]
struct Totals {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    records: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    fields: i64,
}

/// Desynchronised records counted at most (then "10,000+"): pages and banners never scan
/// every pending proposal.
pub const DESYNC_COUNT_CAP: i64 = 10_000;

/// (desynchronised records, pending fields), each counted up to the cap.
pub type DesyncTotals = (Total, Total);

/// (desynchronised records, pending fields) under the filter: exact from the kept totals for
/// all records or one kind; for a source or a process, counted in one pass over the filter's
/// partial index (two separate counts, one of them distinct, cost twice as much), stopping
/// after `DESYNC_COUNT_CAP` records: past it both read "at least".
pub fn totals(conn: &mut DbConn, filter: &DesyncFilter) -> QueryResult<DesyncTotals> {
    use diesel::sql_types::{BigInt, Text};
    if let Some((records, fields)) = totals::exact(conn, filter)? {
        return Ok((
            Total {
                count: records,
                more: false,
            },
            Total {
                count: fields,
                more: false,
            },
        ));
    }
    let mut conditions = String::new();
    if filter.kind.is_some() {
        conditions.push_str(" AND record_kind = ?");
    }
    if filter.source_id.is_some() {
        conditions.push_str(" AND source_id = ?");
    }
    if filter.process_id.is_some() {
        conditions.push_str(" AND process_id = ?");
    }
    let sql = format!(
        "SELECT COUNT(*) AS records, CAST(COALESCE(SUM(n), 0) AS BIGINT) AS fields \
         FROM (SELECT record_id, COUNT(*) AS n FROM proposals \
               WHERE status = 'pending'{conditions} GROUP BY record_id LIMIT {}) AS pending",
        DESYNC_COUNT_CAP + 1
    );
    let sql = match conn {
        // PostgreSQL numbers its parameters.
        DbConn::Pg(_) => numbered_parameters(&sql),
        DbConn::Sqlite(_) => sql,
    };
    let mut query = diesel::sql_query(sql).into_boxed::<Backend>();
    if let Some(kind) = filter.kind {
        query = query.bind::<Text, _>(kind.as_str());
    }
    if let Some(source) = filter.source_id {
        query = query.bind::<BigInt, _>(source);
    }
    if let Some(process) = filter.process_id {
        query = query.bind::<BigInt, _>(process);
    }
    let totals: Totals = query.get_result(conn)?;
    let more = totals.records > DESYNC_COUNT_CAP;
    Ok((
        Total {
            count: totals.records.min(DESYNC_COUNT_CAP),
            more,
        },
        Total {
            count: totals.fields,
            more,
        },
    ))
}

/// `?` placeholders as PostgreSQL's `$1, $2, ...`.
fn numbered_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A desynchronised record and what waits for a decision on it.
pub struct DesyncEntry {
    pub record: RecordRow,
    pub proposals: Vec<Proposal>,
}

impl DesyncEntry {
    pub fn latest(&self) -> Option<NaiveDateTime> {
        self.proposals.iter().map(|p| p.created_at).max()
    }

    /// Distinct origins ("application #3 (Onboarding) by Ann", ...) with their pages.
    pub fn origins(&self) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for p in &self.proposals {
            if !out.iter().any(|(label, _)| label == &p.origin_label) {
                out.push((p.origin_label.clone(), p.origin_href()));
            }
        }
        out
    }
}

pub struct DesyncPage {
    pub entries: Vec<DesyncEntry>,
    /// Records with pending proposals (under the filter).
    pub records: Total,
    /// Pending fields (under the filter).
    pub fields: Total,
    /// The last record id of this page when there is another page.
    pub next_after: Option<i64>,
}

/// One page of desynchronised records, by record id after `after`, with the totals.
/// The page reads an index in record order and stops after `limit` records.
pub fn desynchronised(
    conn: &mut DbConn,
    filter: &DesyncFilter,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<DesyncPage> {
    let (records_total, fields) = totals(conn, filter)?;
    let mut q = pending_filtered(filter)
        .select(proposals::record_id)
        .distinct()
        .order(proposals::record_id.asc());
    if let Some(after) = after {
        q = q.filter(proposals::record_id.gt(after));
    }
    let mut ids: Vec<i64> = db::limited(q, limit + 1).load(conn)?;
    let has_more = ids.len() as i64 > limit;
    ids.truncate(usize::try_from(limit).unwrap_or(0));
    let rows: Vec<RecordRow> = crate::schema::records::table
        .filter(db::id_in(conn, "records.id", &ids))
        .select(RecordRow::as_select())
        .load(conn)?;
    let mut pending: BTreeMap<i64, Vec<Proposal>> = BTreeMap::new();
    for p in pending_of(conn, &ids)? {
        pending.entry(p.record_id).or_default().push(p);
    }
    let entries = ids
        .iter()
        .filter_map(|id| {
            let record = rows.iter().find(|r| r.id == *id)?.clone();
            Some(DesyncEntry {
                proposals: pending.remove(id).unwrap_or_default(),
                record,
            })
        })
        .collect();
    Ok(DesyncPage {
        entries,
        records: records_total,
        fields,
        next_after: if has_more { ids.last().copied() } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(status: ProposalStatus, value: Option<&str>) -> Proposal {
        Proposal {
            id: 1,
            record_id: 1,
            field_key: "phone".into(),
            current_value: "+33100000000".into(),
            proposed_value: "+33600000000".into(),
            origin: Origin::Application,
            origin_id: Some(4),
            origin_label: "application #4".into(),
            status,
            decided_by: Some("Ann".into()),
            decided_at: None,
            created_at: NaiveDateTime::default(),
            record_kind: RecordKind::Contact,
            source_id: None,
            process_id: Some(2),
            decided_value: value.map(str::to_string),
        }
    }

    #[test]
    fn decisions_read_as_sentences() {
        let cases = [
            (
                ProposalStatus::Accepted,
                None,
                "accepted the proposed value (+33600000000)",
            ),
            (ProposalStatus::Kept, None, "kept the current value"),
            (
                ProposalStatus::NewValue,
                Some("+33700000000"),
                "typed a new value (+33700000000)",
            ),
            (
                ProposalStatus::Replaced,
                None,
                "replaced by a newer proposal",
            ),
            (ProposalStatus::Pending, None, "still pending"),
        ];
        for (status, value, text) in cases {
            assert_eq!(decided(status, value).decision_text(), text, "{status}");
        }
        assert_eq!(
            decided(ProposalStatus::Pending, None)
                .origin_href()
                .as_deref(),
            Some("/applications/4")
        );
    }
}
