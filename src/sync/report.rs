//! A run's report: its lines page by page for the run page, and as CSV for download and the
//! command line (written as it is read: memory does not grow with the run).

use diesel::prelude::*;

use super::error::ImportError;
use super::model::ImportRow;
use crate::db::DbConn;
use crate::schema::import_rows;

/// One page of a run's report lines in file order, after the keyset `(line, row id)`, with
/// only `outcome` if given; true when more follow.
pub fn page(
    conn: &mut DbConn,
    run_id: i64,
    outcome: &str,
    after: Option<(i64, i64)>,
    limit: i64,
) -> QueryResult<(Vec<ImportRow>, bool)> {
    let mut q = import_rows::table
        .filter(import_rows::run_id.eq(run_id))
        .order((import_rows::line.asc(), import_rows::id.asc()))
        .limit(limit + 1)
        .select(ImportRow::as_select())
        .into_boxed();
    if !outcome.is_empty() {
        q = q.filter(import_rows::outcome.eq(outcome.to_string()));
    }
    if let Some((line, row)) = after {
        q = q.filter(
            import_rows::line
                .gt(line)
                .or(import_rows::line.eq(line).and(import_rows::id.gt(row))),
        );
    }
    let mut rows: Vec<ImportRow> = q.load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((rows, more))
}

/// The run report as CSV: `line,external_id,outcome,record_id,reason,changes`, formula-safe.
pub fn report_csv(
    conn: &mut DbConn,
    run_id: i64,
    out: impl std::io::Write,
) -> Result<(), ImportError> {
    let mut writer = crate::records::export::SafeCsv::new(out);
    let csv_error = |e: csv::Error| ImportError::Refused(format!("cannot write the report: {e}"));
    writer
        .row([
            "line",
            "external_id",
            "outcome",
            "record_id",
            "reason",
            "changes",
        ])
        .map_err(csv_error)?;
    let mut after = -1i64;
    loop {
        let rows: Vec<ImportRow> = import_rows::table
            .filter(import_rows::run_id.eq(run_id))
            .filter(import_rows::id.gt(after))
            .order(import_rows::id.asc())
            .limit(1000)
            .select(ImportRow::as_select())
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            writer
                .row([
                    row.line.to_string(),
                    row.external_id.clone(),
                    row.outcome.as_str().to_string(),
                    row.record_id.map(|id| id.to_string()).unwrap_or_default(),
                    row.reason.clone(),
                    row.changes_text(),
                ])
                .map_err(csv_error)?;
        }
    }
    writer
        .flush()
        .map_err(|e| ImportError::Refused(format!("cannot write the report: {e}")))?;
    Ok(())
}

/// A line a plan's check decided differently from the dry run.
#[derive(Debug, Clone)]
pub struct DecisionChange {
    pub line: i64,
    pub external_id: String,
    pub planned: String,
    pub now: String,
    pub reason: String,
}

/// The first `limit` lines whose outcome differs between a dry run and its check, in file
/// order (both read by `import_rows_run_idx`), and whether there are more.
pub fn decision_changes(
    conn: &mut DbConn,
    plan: i64,
    check: i64,
    limit: i64,
) -> QueryResult<(Vec<DecisionChange>, bool)> {
    let (now, planned) = diesel::alias!(import_rows as now_rows, import_rows as planned_rows);
    let rows: Vec<(i64, String, String, String, String)> = now
        .inner_join(
            planned.on(planned.field(import_rows::run_id).eq(plan).and(
                planned
                    .field(import_rows::line)
                    .eq(now.field(import_rows::line)),
            )),
        )
        .filter(now.field(import_rows::run_id).eq(check))
        .filter(now.field(import_rows::line).gt(0))
        .filter(
            now.field(import_rows::outcome)
                .ne(planned.field(import_rows::outcome)),
        )
        .order(now.field(import_rows::line).asc())
        .limit(limit + 1)
        .select((
            now.field(import_rows::line),
            now.field(import_rows::external_id),
            planned.field(import_rows::outcome),
            now.field(import_rows::outcome),
            now.field(import_rows::reason),
        ))
        .load(conn)?;
    let more = rows.len() as i64 > limit;
    let changes = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|(line, external_id, planned, now, reason)| DecisionChange {
            line,
            external_id,
            planned,
            now,
            reason,
        })
        .collect();
    Ok((changes, more))
}
