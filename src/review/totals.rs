//! Exact desynchronised totals without grouping every pending proposal: how many records of
//! each kind wait for a review decision, and on how many fields, kept by each write of
//! proposals (`tracked`) in its transaction as rows of +/- per kind, merged now and then like
//! the list totals.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::service::{is_pending, DesyncFilter};
use crate::db::{self, DbConn};
use crate::records::counts::KeptTotals;
use crate::schema::{desync_counts, proposals};

const DESYNC_TOTALS: KeptTotals = KeptTotals {
    table: "desync_counts",
    groups: "record_kind",
    sums: &["records", "fields"],
    counted: "SELECT record_kind, COUNT(*), SUM(n) \
              FROM (SELECT record_id, record_kind, COUNT(*) AS n FROM proposals \
                    WHERE status = 'pending' GROUP BY record_id, record_kind) AS pending \
              GROUP BY record_kind",
};

/// Pending fields per record (of `ids`, or every record), with the record's kind; records
/// with none are absent.
fn pending_per_record(
    conn: &mut DbConn,
    ids: Option<&[i64]>,
) -> QueryResult<Vec<(i64, String, i64)>> {
    let mut q = proposals::table
        .filter(is_pending())
        .group_by((proposals::record_id, proposals::record_kind))
        .select((
            proposals::record_id,
            proposals::record_kind,
            diesel::dsl::count_star(),
        ))
        .into_boxed();
    if let Some(ids) = ids {
        q = q.filter(proposals::record_id.eq_any(ids));
    }
    q.load(conn)
}

/// Pending fields per record among `ids`, with the record's kind.
fn pending(conn: &mut DbConn, ids: &[i64]) -> QueryResult<BTreeMap<i64, (String, i64)>> {
    let mut out = BTreeMap::new();
    for part in ids.chunks(5_000) {
        let rows = pending_per_record(conn, Some(part))?;
        out.extend(rows.into_iter().map(|(id, kind, n)| (id, (kind, n))));
    }
    Ok(out)
}

#[derive(Insertable)]
#[diesel(table_name = desync_counts, treat_none_as_default_value = false)]
struct NewCount {
    record_kind: String,
    records: i64,
    fields: i64,
}

/// Runs `write`, a change to the proposals of the records `ids` (call inside the write's
/// transaction), and keeps the totals it moved: the pending state of those records is read
/// before and after, so every way a proposal starts or stops waiting counts the same. On
/// PostgreSQL the records are locked first: concurrent writers of their proposals wait.
pub fn tracked<T, E>(
    conn: &mut DbConn,
    ids: &[i64],
    write: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    if let DbConn::Pg(pg) = conn {
        // Another transaction changing these records' proposals between the two reads would
        // be counted by both: they wait for this one (in id order, so two never deadlock).
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for part in sorted.chunks(5_000) {
            crate::schema::records::table
                .filter(crate::schema::records::id.eq_any(part))
                .select(crate::schema::records::id)
                .order(crate::schema::records::id)
                .for_update()
                .load::<i64>(pg)?;
        }
    }
    let before = pending(conn, ids)?;
    let written = write(conn)?;
    let after = pending(conn, ids)?;
    let mut moved: BTreeMap<String, Waiting> = BTreeMap::new();
    for (state, sign) in [(before, -1), (after, 1)] {
        for (kind, fields) in state.into_values() {
            let total = moved.entry(kind).or_default();
            total.0 += sign;
            total.1 += sign * fields;
        }
    }
    let rows: Vec<NewCount> = moved
        .into_iter()
        .filter(|(_, n)| *n != (0, 0))
        .map(|(record_kind, (records, fields))| NewCount {
            record_kind,
            records,
            fields,
        })
        .collect();
    db::insert_all!(conn, desync_counts::table, rows);
    Ok(written)
}

/// Exact (records, fields) waiting for review under the filter; `None` when it names a source
/// or a process (those views are counted up to a cap).
pub fn exact(conn: &mut DbConn, filter: &DesyncFilter) -> QueryResult<Option<Waiting>> {
    if filter.source_id.is_some() || filter.process_id.is_some() {
        return Ok(None);
    }
    let mut q = desync_counts::table
        .select((desync_counts::records, desync_counts::fields))
        .into_boxed();
    if let Some(kind) = filter.kind {
        q = q.filter(desync_counts::record_kind.eq(kind.as_str()));
    }
    let rows: Vec<(i64, i64)> = q.load(conn)?;
    let (records, fields) = rows.into_iter().fold((0, 0), |(r, f), (records, fields)| {
        (r + records, f + fields)
    });
    // A total a race left wrong is never shown below zero (the hourly count corrects it).
    Ok(Some((records.max(0), fields.max(0))))
}

/// Counts the pending proposals afresh when nothing is kept (a database from before these
/// totals, or proposals written by hand); returns whether it did.
pub fn fill_if_empty(conn: &mut DbConn) -> QueryResult<bool> {
    DESYNC_TOTALS.fill_if_empty(conn)
}

/// Counts afresh, replacing the kept totals (the import worker, once an hour: see
/// `records::counts::recount` for the race this corrects).
pub fn recount(conn: &mut DbConn) -> QueryResult<()> {
    DESYNC_TOTALS.count_afresh(conn, false).map(|_| ())
}

/// Merges the rows of each kind into one when there are many.
pub fn merge_if_many(conn: &mut DbConn) -> QueryResult<()> {
    DESYNC_TOTALS.merge_if_many(conn)
}

/// Merges the rows of each kind into one.
pub fn merge(conn: &mut DbConn) -> QueryResult<()> {
    DESYNC_TOTALS.merge(conn)
}

/// (records, fields) waiting for review.
pub type Waiting = (i64, i64);

/// Kept totals against the proposals themselves: (kind, kept, counted) where they differ.
/// For tests and checks; it reads every pending proposal.
pub fn differences(conn: &mut DbConn) -> QueryResult<Vec<(String, Waiting, Waiting)>> {
    let mut both: BTreeMap<String, (Waiting, Waiting)> = BTreeMap::new();
    let kept: Vec<(String, i64, i64)> = desync_counts::table
        .select((
            desync_counts::record_kind,
            desync_counts::records,
            desync_counts::fields,
        ))
        .load(conn)?;
    for (kind, records, fields) in kept {
        let k = &mut both.entry(kind).or_default().0;
        k.0 += records;
        k.1 += fields;
    }
    for (_, kind, fields) in pending_per_record(conn, None)? {
        let c = &mut both.entry(kind).or_default().1;
        c.0 += 1;
        c.1 += fields;
    }
    Ok(both
        .into_iter()
        .filter(|(_, (k, c))| k != c)
        .map(|(kind, (k, c))| (kind, k, c))
        .collect())
}
