//! Writes a planned chunk: records through `records::writer`, proposals, and one report line
//! per row, in a savepoint of the import's step transaction.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::claims::holds;
use super::model::{ImportRun, Outcome};
use super::plan::RunRules;
use super::plan::{self, error_row, Parsed, RowOutcome};
use crate::db::{self, DbConn};
use crate::fields::model::RecordKind;
use crate::records::model::Actor;
use crate::records::writer::{self, CreatedHistory, Edit, RecordState};
use crate::review::service as review;
use crate::schema::{import_rows, import_runs};
use crate::text;
use std::collections::BTreeMap;

/// Rows per chunk: large enough that the per-chunk queries cost little per row, small enough
/// that writing one takes tens of milliseconds.
pub const CHUNK_ROWS: usize = 1_000;

/// Rows per chunk of an import on `conn`'s database. PostgreSQL takes four times
/// `CHUNK_ROWS`: each COPY sets up its insert buffer afresh (a tenth of the server's time
/// at 1,000 rows), and its readers never wait on an import's transaction, so a longer one
/// only moves a console save's p99 from about 12 to 20-60 ms. SQLite keeps `CHUNK_ROWS`:
/// there every console write waits for the chunk's transaction to end.
pub fn import_chunk_rows(conn: &DbConn) -> usize {
    match conn {
        DbConn::Pg(_) => CHUNK_ROWS * 4,
        DbConn::Sqlite(_) => CHUNK_ROWS,
    }
}

/// A run being executed: its rules, who it writes as, and its counts so far.
pub struct Execution<'a> {
    pub(super) run: ImportRun,
    /// The process running it (`jobs::claimant`).
    pub(super) claimant: String,
    pub(super) rules: &'a RunRules,
    pub(super) actor: Actor,
    pub(super) counts: BTreeMap<String, i64>,
    pub(super) rows_done: u64,
}

impl Execution<'_> {
    pub(super) fn created(&self) -> i64 {
        self.counts
            .get(Outcome::Created.as_str())
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn counts_after(&self, outcomes: &[RowOutcome]) -> BTreeMap<String, i64> {
        counts_after(&self.counts, outcomes)
    }
}

/// A run's counts with a chunk's outcomes added (and its rows with warnings).
pub fn counts_after(
    counts: &BTreeMap<String, i64>,
    outcomes: &[RowOutcome],
) -> BTreeMap<String, i64> {
    let mut counts = counts.clone();
    for o in outcomes {
        *counts.entry(o.outcome.as_str().to_string()).or_default() += 1;
        if o.warnings > 0 {
            *counts.entry("warnings".into()).or_default() += 1;
        }
    }
    counts
}

/// Chunks share one write transaction until it has been open this long, or until another
/// writer of this process waits for the lock. Committing every chunk would, on SQLite, write
/// each touched index page to the WAL again at every commit: a million rows with random names
/// would write gigabytes.
const MAX_TRANSACTION: Duration = Duration::from_millis(250);

/// After a commit that ran its full time, the lock stays free this long, so that writers of
/// other processes (polling SQLite's lock) get their turn too.
const PAUSE_AFTER_COMMIT: Duration = Duration::from_millis(10);

/// The import's write transaction: opened for a chunk, committed in steps.
#[derive(Default)]
pub struct StepTransaction {
    since: Option<Instant>,
}

impl StepTransaction {
    pub fn ensure_open(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.is_none() {
            db::begin_bulk(conn)?;
            self.since = Some(Instant::now());
        }
        Ok(())
    }

    /// Commits when the transaction is old enough or someone waits; true when it did.
    pub fn commit_if_due(&mut self, conn: &mut DbConn) -> QueryResult<bool> {
        let Some(since) = self.since else {
            return Ok(false);
        };
        let full_time = since.elapsed() >= MAX_TRANSACTION;
        if !full_time && !db::writers_waiting() {
            return Ok(false);
        }
        self.commit(conn)?;
        if full_time && matches!(conn, DbConn::Sqlite(_)) {
            std::thread::sleep(PAUSE_AFTER_COMMIT);
        }
        Ok(true)
    }

    pub fn commit(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.is_some() {
            db::commit(conn)?;
            self.since = None;
        }
        Ok(())
    }

    pub fn rollback(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.take().is_some() {
            db::rollback(conn)?;
        }
        Ok(())
    }
}

/// Writes one chunk in a savepoint of the open transaction. A chunk the database refuses (a
/// constraint) is retried row by row, so only the offending row fails, with the database's
/// words.
pub(super) fn write_chunk(
    conn: &mut DbConn,
    exec: &mut Execution<'_>,
    parsed: &[Parsed],
) -> Result<(), DieselError> {
    let attempt = conn.transaction(|conn| apply_chunk(conn, exec, parsed));
    match attempt {
        Ok(outcomes) => {
            exec.counts = exec.counts_after(&outcomes);
            Ok(())
        }
        Err(DieselError::DatabaseError(kind, _)) if refused_row(&kind) && parsed.len() > 1 => {
            for one in parsed.chunks(1) {
                write_chunk(conn, exec, one)?;
            }
            Ok(())
        }
        Err(DieselError::DatabaseError(kind, info)) if refused_row(&kind) => {
            let (line, external_id) = match &parsed[0] {
                Parsed::Done(o) => (o.line, o.external_id.clone()),
                Parsed::Ready(r) => (r.line, r.external_id.clone()),
            };
            let refused = [error_row(
                line,
                &external_id,
                format!(
                    "Line {line}: the database refused the row ({}). Nothing of it was written.",
                    info.message()
                ),
            )];
            conn.transaction(|conn| record_outcomes(conn, exec, &refused))?;
            exec.counts = exec.counts_after(&refused);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A constraint a row's values broke: that row fails, the run goes on. Anything else (a lost
/// connection, a full disk, a timeout) fails the run, which can then resume.
pub fn refused_row(kind: &diesel::result::DatabaseErrorKind) -> bool {
    use diesel::result::DatabaseErrorKind as Kind;
    matches!(
        kind,
        Kind::UniqueViolation
            | Kind::ForeignKeyViolation
            | Kind::NotNullViolation
            | Kind::CheckViolation
    )
}

fn apply_chunk(
    conn: &mut DbConn,
    exec: &Execution<'_>,
    parsed: &[Parsed],
) -> Result<Vec<RowOutcome>, DieselError> {
    let ready: Vec<&plan::ReadyRow> = parsed
        .iter()
        .filter_map(|p| match p {
            Parsed::Ready(r) => Some(r),
            Parsed::Done(_) => None,
        })
        .collect();
    let state = plan::load_chunk(conn, exec.rules, &ready, exec.run.plan_of)?;
    let plan = plan::plan_chunk(exec.rules, parsed, state, db::now());
    let mut outcomes = plan.outcomes;
    if !exec.rules.dry_run {
        let (targets, mut edits): (Vec<usize>, Vec<Edit>) = plan.edits.into_iter().unzip();
        // Only companies a written row waits for (a row held, ignored or left by its rule
        // creates none).
        let new_companies: Vec<&plan::NewCompany> = plan
            .new_companies
            .iter()
            .filter(|c| !c.dependents.is_empty())
            .collect();
        if !new_companies.is_empty() {
            let companies: Vec<Edit> = new_companies
                .iter()
                .map(|c| {
                    let mut state = RecordState::blank(RecordKind::Company);
                    state.name = c.name.clone();
                    let mut edit = Edit::create(state);
                    edit.created_history = CreatedHistory::Summary;
                    edit
                })
                .collect();
            let created = writer::apply(conn, &exec.rules.catalog, &companies, &exec.actor)?;
            for (company, w) in new_companies.iter().zip(created) {
                for &dependent in &company.dependents {
                    if let Some(edit) = edits.get_mut(dependent) {
                        edit.after.company_id = Some(w.record_id);
                    }
                    // The report names the company by its new id, as for existing ones.
                    if let Some(change) = targets
                        .get(dependent)
                        .and_then(|&line| outcomes.get_mut(line))
                        .and_then(|o| o.changes.iter_mut().find(|c| c.field == "company"))
                    {
                        change.new = format!("#{} {}", w.record_id, company.name);
                    }
                }
            }
        }
        let written = writer::apply(conn, &exec.rules.catalog, &edits, &exec.actor)?;
        for (index, w) in targets.into_iter().zip(written) {
            if outcomes[index].record_created {
                outcomes[index].record_id = Some(w.record_id);
            }
        }
        review::propose_many(
            conn,
            &plan.proposals,
            exec.rules.kind,
            exec.rules.source.id,
            &exec.actor,
        )?;
    }
    record_outcomes(conn, exec, &outcomes)?;
    Ok(outcomes)
}

#[derive(Insertable)]
#[diesel(table_name = import_rows, treat_none_as_default_value = false)]
struct ReportLine<'a> {
    run_id: i64,
    line: i64,
    external_id: Cow<'a, str>,
    outcome: &'a str,
    record_id: Option<i64>,
    reason: Cow<'a, str>,
    changes: String,
    candidates: String,
    row_values: String,
    record_created: bool,
    link_added: bool,
    previous_owner: Option<i64>,
    owner_changed: bool,
    record_updated_at: Option<NaiveDateTime>,
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The chunk's report lines and the run's progress, in the chunk's transaction.
pub(super) fn record_outcomes(
    conn: &mut DbConn,
    exec: &Execution<'_>,
    outcomes: &[RowOutcome],
) -> Result<(), DieselError> {
    let progress = RunProgress {
        run_id: exec.run.id,
        claimant: &exec.claimant,
        rows_done: exec.rows_done,
        counts: exec.counts_after(outcomes),
    };
    save_report(conn, &progress, outcomes)
}

/// Where a run is after a chunk: rows read, counts with the chunk's outcomes.
pub struct RunProgress<'a> {
    pub run_id: i64,
    /// The process that holds the run (`jobs::claimant`).
    pub claimant: &'a str,
    pub rows_done: u64,
    pub counts: BTreeMap<String, i64>,
}

/// Saves a chunk's report lines and the run's progress, in the chunk's transaction; rolls it
/// back when this process no longer holds the run.
pub fn save_report(
    conn: &mut DbConn,
    progress: &RunProgress<'_>,
    outcomes: &[RowOutcome],
) -> Result<(), DieselError> {
    let lines: Vec<ReportLine> = outcomes
        .iter()
        .map(|o| ReportLine {
            run_id: progress.run_id,
            line: o.line,
            // A file's stray bytes (a NUL above all) quoted in a reason must not stop the
            // line from being saved.
            external_id: text::storable(&o.external_id),
            outcome: o.outcome.as_str(),
            record_id: o.record_id,
            reason: text::storable(&o.reason),
            changes: if o.changes.is_empty() {
                "[]".into()
            } else {
                json(&o.changes)
            },
            candidates: if o.candidates.is_empty() {
                "[]".into()
            } else {
                json(&o.candidates)
            },
            row_values: if o.values.is_empty() {
                "{}".into()
            } else {
                json(&o.values)
            },
            record_created: o.record_created,
            link_added: o.link_added,
            previous_owner: o.previous_owner,
            owner_changed: o.owner_changed,
            record_updated_at: o.record_updated_at,
        })
        .collect();
    db::insert_all!(conn, import_rows::table, lines);
    // Only while this process holds the run: cancelled, or taken over after a silence, the
    // run stops here and this chunk rolls back.
    if !holds(conn, progress.run_id, progress.claimant)? {
        return Err(DieselError::RollbackTransaction);
    }
    diesel::update(import_runs::table.find(progress.run_id))
        .set((
            import_runs::rows_done.eq(i64::try_from(progress.rows_done).unwrap_or(i64::MAX)),
            import_runs::heartbeat_at.eq(Some(db::now())),
            import_runs::counts.eq(json(&progress.counts)),
        ))
        .execute(conn)?;
    Ok(())
}
