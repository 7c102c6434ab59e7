//! Exact list totals without counting: how many records each group of the list filters'
//! columns (kind, archived, owner, forced manual, missing from source) holds, kept by the
//! write path in the transaction of each change (`writer::apply`) as rows of +/- records per
//! group, merged into one row per group now and then. A list's total is then a sum over a
//! few dozen rows, whatever the table's size.

use std::collections::BTreeMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::list::{ListQuery, OwnerFilter};
use super::writer::RecordState;
use crate::db::{self, DbConn};
use crate::schema::{record_counts, records};

/// Merged when the table holds more rows than this (each import chunk adds a few).
const MERGE_ABOVE: i64 = 512;

/// The columns a list filters on, as one record has them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    kind: String,
    archived: bool,
    owner_source_id: Option<i64>,
    forced_manual: bool,
    missing_from_source: bool,
}

impl Group {
    pub fn of(state: &RecordState) -> Self {
        Self {
            kind: state.kind.as_str().to_string(),
            archived: state.archived,
            owner_source_id: state.owner_source_id,
            forced_manual: state.forced_manual,
            missing_from_source: state.missing_from_source,
        }
    }
}

/// Records gained (or lost, when negative) per group by a batch of changes.
#[derive(Debug, Default)]
pub struct Deltas(BTreeMap<Group, i64>);

impl Deltas {
    /// A record created in `after`'s group, or moved from `before`'s group to `after`'s.
    pub fn add(&mut self, before: Option<&RecordState>, after: &RecordState) {
        let to = Group::of(after);
        if let Some(before) = before {
            let from = Group::of(before);
            if from == to {
                return;
            }
            *self.0.entry(from).or_default() -= 1;
        }
        *self.0.entry(to).or_default() += 1;
    }
}

#[derive(Insertable)]
#[diesel(table_name = record_counts, treat_none_as_default_value = false)]
struct NewCount {
    kind: String,
    archived: bool,
    owner_source_id: Option<i64>,
    forced_manual: bool,
    missing_from_source: bool,
    records: i64,
}

/// Writes a batch's deltas (call in the batch's transaction).
pub fn record(conn: &mut DbConn, deltas: Deltas) -> QueryResult<()> {
    let rows: Vec<NewCount> = deltas
        .0
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(g, records)| NewCount {
            kind: g.kind,
            archived: g.archived,
            owner_source_id: g.owner_source_id,
            forced_manual: g.forced_manual,
            missing_from_source: g.missing_from_source,
            records,
        })
        .collect();
    db::insert_all!(conn, record_counts::table, rows);
    Ok(())
}

/// The exact number of records a list without search or custom-field filters selects;
/// `None` for other lists (those are counted up to a cap).
pub fn total(conn: &mut DbConn, q: &ListQuery) -> QueryResult<Option<i64>> {
    if !q.search.trim().is_empty() || !q.custom.is_empty() {
        return Ok(None);
    }
    let mut query = record_counts::table
        .filter(record_counts::kind.eq(q.kind.as_str()))
        .filter(record_counts::archived.eq(q.archived))
        .into_boxed();
    query = match q.owner {
        OwnerFilter::Any => query,
        OwnerFilter::Manual => query.filter(record_counts::owner_source_id.is_null()),
        OwnerFilter::Synced => query.filter(record_counts::owner_source_id.is_not_null()),
        OwnerFilter::Source(id) => query.filter(record_counts::owner_source_id.eq(id)),
    };
    if let Some(forced) = q.forced_manual {
        query = query.filter(record_counts::forced_manual.eq(forced));
    }
    if q.missing_from_source {
        query = query.filter(record_counts::missing_from_source.eq(true));
    }
    let counts: Vec<i64> = query.select(record_counts::records).load(conn)?;
    Ok(Some(counts.into_iter().sum()))
}

/// The list totals' table: a row per group a batch changed, summed when read.
const RECORD_TOTALS: KeptTotals = KeptTotals {
    table: "record_counts",
    groups: "kind, archived, owner_source_id, forced_manual, missing_from_source",
    sums: &["records"],
    counted:
        "SELECT kind, archived, owner_source_id, forced_manual, missing_from_source, COUNT(*) \
              FROM records \
              GROUP BY kind, archived, owner_source_id, forced_manual, missing_from_source",
};

/// Counts every record afresh when the table is empty (a database from before it, or records
/// written by hand into an empty one); returns whether it did.
pub fn fill_if_empty(conn: &mut DbConn) -> QueryResult<bool> {
    RECORD_TOTALS.fill_if_empty(conn)
}

/// Counts every record afresh, replacing the kept totals: the import worker does it once an
/// hour, so that totals a race left wrong (two transactions changing one record's group from
/// the same state on PostgreSQL) are right again within the hour.
pub fn recount(conn: &mut DbConn) -> QueryResult<()> {
    RECORD_TOTALS.count_afresh(conn, false).map(|_| ())
}

/// Merges the rows of each group into one when there are many (at start, and by the import
/// worker between runs).
pub fn merge_if_many(conn: &mut DbConn) -> QueryResult<()> {
    RECORD_TOTALS.merge_if_many(conn)
}

/// Merges the rows of each group into one.
pub fn merge(conn: &mut DbConn) -> QueryResult<()> {
    RECORD_TOTALS.merge(conn)
}

/// A table of totals kept as deltas by the write path (a row of +/- per group a change moved),
/// summed when read, merged now and then, and counted afresh from its source when empty or
/// when asked. The names are the code's own, never input.
pub(crate) struct KeptTotals {
    pub table: &'static str,
    /// The group columns, comma-separated.
    pub groups: &'static str,
    /// The summed columns.
    pub sums: &'static [&'static str],
    /// A SELECT of the groups and sums, in that order, counted from the source tables.
    pub counted: &'static str,
}

impl KeptTotals {
    fn columns(&self) -> String {
        format!("{}, {}", self.groups, self.sums.join(", "))
    }

    fn summed(&self, from: &str) -> String {
        let sums: Vec<String> = self.sums.iter().map(|c| format!("SUM({c})")).collect();
        let nonzero: Vec<String> = self.sums.iter().map(|c| format!("SUM({c}) <> 0")).collect();
        format!(
            "SELECT {}, {} FROM {from} GROUP BY {} HAVING {}",
            self.groups,
            sums.join(", "),
            self.groups,
            nonzero.join(" OR ")
        )
    }

    fn rows(&self, conn: &mut DbConn) -> QueryResult<i64> {
        #[derive(QueryableByName)]
        struct Kept {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let kept: Kept = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {}", self.table))
            .get_result(conn)?;
        Ok(kept.n)
    }

    pub fn fill_if_empty(&self, conn: &mut DbConn) -> QueryResult<bool> {
        if self.rows(conn)? > 0 {
            return Ok(false);
        }
        self.count_afresh(conn, true)
    }

    pub fn count_afresh(&self, conn: &mut DbConn, only_if_empty: bool) -> QueryResult<bool> {
        db::write_tx(conn, |conn| {
            if let DbConn::Pg(c) = conn {
                // Writers wait while the source is counted: a change committed before the
                // count would otherwise be counted twice (once in the source, once as a
                // delta). Another instance starting at the same time finds the table filled.
                c.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", self.table))?;
            }
            if only_if_empty && self.rows(conn)? > 0 {
                return Ok(false);
            }
            conn.batch_execute(&format!(
                "DELETE FROM {t}; INSERT INTO {t} ({}) {}",
                self.columns(),
                self.counted,
                t = self.table
            ))?;
            Ok(true)
        })
    }

    pub fn merge_if_many(&self, conn: &mut DbConn) -> QueryResult<()> {
        if self.rows(conn)? <= MERGE_ABOVE {
            return Ok(());
        }
        self.merge(conn)
    }

    pub fn merge(&self, conn: &mut DbConn) -> QueryResult<()> {
        let (table, columns) = (self.table, self.columns());
        db::write_tx(conn, |conn| match conn {
            // One statement: a change committed meanwhile is either merged or left as it is.
            DbConn::Pg(c) => c.batch_execute(&format!(
                "WITH gone AS (DELETE FROM {table} RETURNING *) INSERT INTO {table} ({columns}) {}",
                self.summed("gone")
            )),
            // SQLite's write transaction has the database to itself: the rows up to the last
            // id are summed into new rows, then deleted.
            DbConn::Sqlite(c) => {
                #[derive(QueryableByName)]
                struct Last {
                    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
                    id: Option<i64>,
                }
                let last: Last = diesel::sql_query(format!("SELECT MAX(id) AS id FROM {table}"))
                    .get_result(c)?;
                let Some(last) = last.id else { return Ok(()) };
                c.batch_execute(&format!(
                    "INSERT INTO {table} ({columns}) {}; DELETE FROM {table} WHERE id <= {last}",
                    self.summed(&format!("(SELECT * FROM {table} WHERE id <= {last})"))
                ))
            }
        })
    }
}

/// Every group's count against `records` itself: (kept, counted) per group where they differ.
/// For tests and checks; it reads the whole table.
pub fn differences(conn: &mut DbConn) -> QueryResult<Vec<(String, i64, i64)>> {
    let mut kept: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let label = |kind: &str, archived: bool, owner: Option<i64>, forced: bool, missing: bool| {
        format!("{kind} archived={archived} owner={owner:?} forced={forced} missing={missing}")
    };
    let rows: Vec<(String, bool, Option<i64>, bool, bool, i64)> = record_counts::table
        .select((
            record_counts::kind,
            record_counts::archived,
            record_counts::owner_source_id,
            record_counts::forced_manual,
            record_counts::missing_from_source,
            record_counts::records,
        ))
        .load(conn)?;
    for (kind, archived, owner, forced, missing, n) in rows {
        kept.entry(label(&kind, archived, owner, forced, missing))
            .or_default()
            .0 += n;
    }
    let counted: Vec<(String, bool, Option<i64>, bool, bool)> = records::table
        .select((
            records::kind,
            records::archived,
            records::owner_source_id,
            records::forced_manual,
            records::missing_from_source,
        ))
        .load(conn)?;
    for (kind, archived, owner, forced, missing) in counted {
        kept.entry(label(&kind, archived, owner, forced, missing))
            .or_default()
            .1 += 1;
    }
    Ok(kept
        .into_iter()
        .filter(|(_, (k, c))| k != c)
        .map(|(group, (k, c))| (group, k, c))
        .collect())
}
