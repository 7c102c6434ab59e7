//! Applies an import file through a source's mapping, in chunks: each chunk is parsed and
//! validated in memory, reads what its rows need in a few queries, is decided row by row in
//! memory (`plan`), and is written with multi-row statements in one short transaction
//! (`records::writer` for records, values, links and history). A dry run plans the same way
//! and writes only its report.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::csvfile::{self, FileError, FileFormat, TextEncoding};
use super::model::{ImportRun, Outcome, RunStatus};
use super::plan::{self, error_row, Parsed, RowOutcome, RunRules};
use crate::db::{self, DbConn};
use crate::fields::service as fields;
use crate::fields::validate::PhoneCountry;
use crate::records::model::{Actor, RecordRow};
use crate::records::service::RecordError;
use crate::records::writer::{self, Catalog, Edit};
use crate::review::service as review;
use crate::schema::{import_rows, import_run_claims, import_runs};
use crate::sources::model::{quoted_headers, same_column, Mapping};
use crate::sources::service as sources;
use crate::text;

pub use super::report::report_csv;
pub use super::undo::{resolve_ambiguous, undo};

/// Rows per chunk: large enough that the per-chunk queries cost little per row, small enough
/// that writing one takes tens of milliseconds.
pub const CHUNK_ROWS: usize = 1_000;

/// Chunks share one write transaction until it has been open this long, or until another
/// writer of this process waits for the lock. Committing every chunk would, on SQLite, write
/// each touched index page to the WAL again at every commit: a million rows with random names
/// would write gigabytes.
const MAX_TRANSACTION: Duration = Duration::from_millis(250);

/// After a commit that ran its full time, the lock stays free this long, so that writers of
/// other processes (polling SQLite's lock) get their turn too.
const PAUSE_AFTER_COMMIT: Duration = Duration::from_millis(10);

/// SQLite page cache of an importing connection, in KB.
const IMPORT_CACHE_KB: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("The file has no column '{column}' (the source's id column). Its columns are: {found}. Nothing was imported.")]
    MissingIdColumn { column: String, found: String },
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Refused(String),
    #[error("The run was cancelled, or taken over by another process after it went silent; its last chunk was rolled back.")]
    Stopped,
    #[error(transparent)]
    Db(DieselError),
}

impl From<DieselError> for ImportError {
    fn from(e: DieselError) -> Self {
        match e {
            // Only `record_outcomes` asks for a rollback: the run is no longer this process's.
            DieselError::RollbackTransaction => ImportError::Stopped,
            other => ImportError::Db(other),
        }
    }
}

impl From<RecordError> for ImportError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Db(db) => ImportError::Db(db),
            other => ImportError::Refused(other.to_string()),
        }
    }
}

/// Where uploaded import files are kept (by content hash), so a run can be re-read, applied
/// from its dry run, or resumed after a crash.
pub fn file_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    (sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| data_dir.join("imports").join(sha256))
}

pub fn load_run(conn: &mut DbConn, run_id: i64) -> QueryResult<Option<ImportRun>> {
    import_runs::table
        .find(run_id)
        .select(ImportRun::as_select())
        .first(conn)
        .optional()
}

pub fn run_format(run: &ImportRun) -> FileFormat {
    FileFormat {
        encoding: TextEncoding::parse(&run.encoding).unwrap_or(TextEncoding::Utf8),
        delimiter: FileFormat::parse_delimiter(&run.delimiter).unwrap_or(b','),
    }
}

/// External ids seen in this run, by a 64-bit hash (a million ids in 16 MB instead of 60):
/// the line where each first appeared.
#[derive(Default)]
struct Seen(HashMap<u64, i64>);

impl Seen {
    fn key(external_id: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        external_id.hash(&mut h);
        h.finish()
    }

    /// The line of an earlier row with this id, else remembers this one.
    fn first_or_insert(&mut self, external_id: &str, line: i64) -> Option<i64> {
        if external_id.is_empty() {
            return None;
        }
        match self.0.entry(Self::key(external_id)) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(line);
                None
            }
        }
    }

    fn contains(&self, external_id: &str) -> bool {
        self.0.contains_key(&Self::key(external_id))
    }
}

/// A run being executed: its rules, who it writes as, and its counts so far.
struct Execution<'a> {
    run: ImportRun,
    /// The process running it (`jobs::claimant`).
    claimant: String,
    rules: &'a RunRules,
    actor: Actor,
    counts: BTreeMap<String, i64>,
    rows_done: u64,
}

impl Execution<'_> {
    fn created(&self) -> i64 {
        self.counts
            .get(Outcome::Created.as_str())
            .copied()
            .unwrap_or(0)
    }

    fn counts_after(&self, outcomes: &[RowOutcome]) -> BTreeMap<String, i64> {
        let mut counts = self.counts.clone();
        for o in outcomes {
            *counts.entry(o.outcome.as_str().to_string()).or_default() += 1;
            if o.warnings > 0 {
                *counts.entry("warnings".into()).or_default() += 1;
            }
        }
        counts
    }
}

/// Runs a claimed import to its end. `progress(done, total)` is called after every chunk.
pub fn execute(
    conn: &mut DbConn,
    run_id: i64,
    data_dir: &Path,
    country: PhoneCountry,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BTreeMap<String, i64>, ImportError> {
    execute_in_chunks(conn, run_id, data_dir, country, CHUNK_ROWS, progress)
}

/// `execute` with a chosen chunk size (the equivalence tests compare sizes down to one row).
pub fn execute_in_chunks(
    conn: &mut DbConn,
    run_id: i64,
    data_dir: &Path,
    country: PhoneCountry,
    chunk_rows: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BTreeMap<String, i64>, ImportError> {
    import_settings(conn, true)?;
    let result = run_file(conn, run_id, data_dir, country, chunk_rows, progress);
    // The connection goes back to the pool as it came.
    let reset = import_settings(conn, false);
    let counts = result?;
    reset?;
    Ok(counts)
}

/// Connection settings for the length of an import.
fn import_settings(conn: &mut DbConn, importing: bool) -> QueryResult<()> {
    match conn {
        // Compiling a chunk's statements (JIT) would cost more than running them. A commit
        // need not wait for the disk: after a crash the run resumes from the last commit that
        // reached it. (Query plans stay the defaults: `Growth` keeps their statistics current,
        // and a session-wide `force_custom_plan` would also re-plan every foreign-key check.)
        DbConn::Pg(c) => c.batch_execute(if importing {
            "SET jit = off; SET synchronous_commit = off"
        } else {
            "RESET jit; RESET synchronous_commit"
        }),
        // Index pages of a million-row table do not fit SQLite's default 2 MB page cache: every
        // insert would read them again; 64 MB keeps the import within its memory target. And
        // the WAL may grow to 64 MB between checkpoints instead of being copied back into the
        // file at nearly every commit.
        DbConn::Sqlite(c) => c.batch_execute(&if importing {
            format!("PRAGMA cache_size = -{IMPORT_CACHE_KB}; PRAGMA wal_autocheckpoint = 16384;")
        } else {
            "PRAGMA cache_size = -2000; PRAGMA wal_autocheckpoint = 1000;".to_string()
        }),
    }
}

fn run_file(
    conn: &mut DbConn,
    run_id: i64,
    data_dir: &Path,
    country: PhoneCountry,
    chunk_rows: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BTreeMap<String, i64>, ImportError> {
    let run = load_run(conn, run_id)?
        .ok_or_else(|| ImportError::Refused(format!("no import run #{run_id}")))?;
    let path = file_path(data_dir, &run.file_sha256)
        .ok_or_else(|| ImportError::Refused("the run's file is missing".into()))?;
    let format = run_format(&run);
    let source = sources::find(conn, run.source_id)?
        .ok_or_else(|| ImportError::Refused("the source no longer exists".into()))?;
    if !source.connected() && !run.dry_run {
        // Importing is how a source reconnects: its status follows.
        sources::reconnect(conn, source.id).map_err(|e| ImportError::Refused(e.to_string()))?;
    }
    let mut reader = csvfile::open(&path, format)?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(FileError::from)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let id_index = headers
        .iter()
        .position(|h| same_column(h, &source.id_column))
        .ok_or_else(|| ImportError::MissingIdColumn {
            column: source.id_column.clone(),
            found: quoted_headers(&headers),
        })?;
    let kind = source.record_kind();
    let defs = fields::list(conn, kind, false)?;
    let mapping: Vec<Mapping> = sources::mapping(conn, source.id)?;
    let columns = mapping
        .iter()
        .filter_map(|m| {
            let index = headers
                .iter()
                .position(|h| same_column(h, &m.column_name))?;
            let def = defs.iter().find(|d| d.key == m.field_key)?.clone();
            Some((index, m.column_name.clone(), def, m.field_rule()))
        })
        .collect();
    let total = count_rows(&path, format)?;
    let actor = Actor {
        origin: "import",
        origin_id: Some(run.id),
        user_id: run.started_by,
        label: format!("import run {} ({})", run.id, source.name),
    };
    let rules = RunRules {
        on_invalid: source.on_invalid(),
        header_len: headers.len(),
        headers: headers.clone(),
        dry_run: run.dry_run,
        catalog: Catalog::load(conn)?,
        source,
        kind,
        id_index,
        columns,
        defs,
        country,
    };
    diesel::update(import_runs::table.find(run_id))
        .set(import_runs::rows_total.eq(i64::try_from(total).unwrap_or(i64::MAX)))
        .execute(conn)?;

    // A run resumed after a crash: rows already reported are not applied twice, and their ids
    // and counts carry on.
    let (seen, counts, done_lines) = resume_state(conn, run_id)?;
    let mut exec = Execution {
        claimant: claimant_of(conn, run_id)?.unwrap_or_default(),
        run,
        rules: &rules,
        actor,
        counts,
        rows_done: 0,
    };
    // Reading and validating (phone numbers above all) run on a second thread while this one
    // writes the previous chunk.
    let (seen, read) = std::thread::scope(|scope| {
        let (chunks, received) = std::sync::mpsc::sync_channel::<Result<Chunk, FileError>>(2);
        let rules = &rules;
        let reading =
            scope.spawn(move || read_chunks(reader, rules, seen, done_lines, chunk_rows, chunks));
        let mut tx = StepTransaction::default();
        let mut written = (|| -> Result<(), ImportError> {
            let mut growth = Growth::start(conn)?;
            for chunk in received {
                let chunk = chunk?;
                exec.rows_done = chunk.rows_done;
                tx.ensure_open(conn)?;
                write_chunk(conn, &mut exec, &chunk.rows)?;
                if tx.commit_if_due(conn)? {
                    growth.refresh_if_doubled(conn, exec.created())?;
                    progress(exec.rows_done, total);
                }
            }
            tx.commit(conn)?;
            progress(exec.rows_done, total);
            Ok(())
        })();
        if written.is_err() {
            if let Err(e) = tx.rollback(conn) {
                written = Err(e.into());
            }
        }
        // A failed write drops the receiver: the reader stops at its next chunk.
        (reading.join(), written)
    });
    read?;
    // Without every id the file had, full mode would flag records it did bring.
    let seen =
        seen.map_err(|_| ImportError::Refused("reading the file stopped unexpectedly".into()))?;
    if exec.rules.source.full_mode() {
        match flagging_refusal(conn, &exec, &seen)? {
            None => flag_missing(conn, &mut exec, &seen)?,
            Some((notice, not_flagged)) => {
                if not_flagged > 0 {
                    exec.counts.insert(MISSING_NOT_FLAGGED.into(), not_flagged);
                }
                diesel::update(import_runs::table.find(run_id))
                    .set((
                        import_runs::notice.eq(Some(notice)),
                        import_runs::counts.eq(json(&exec.counts)),
                    ))
                    .execute(conn)?;
            }
        }
    }
    Ok(exec.counts)
}

/// Count of a full-mode run: records missing from the file that were not flagged, waiting for
/// a person to confirm.
pub const MISSING_NOT_FLAGGED: &str = "missing_not_flagged";

/// Above this share of a file's rows in error, or of a source's records missing from it, a
/// full-mode run flags nothing by itself.
const FLAG_LIMIT_PERCENT: i64 = 10;

/// Why a full-mode run must not flag the records its file lacks, and how many it leaves
/// unflagged: a file with no valid row, or mostly errors, is not a list of what the source
/// holds; and flagging more than a tenth of the source waits for a person's confirmation.
fn flagging_refusal(
    conn: &mut DbConn,
    exec: &Execution<'_>,
    seen: &Seen,
) -> QueryResult<Option<(String, i64)>> {
    let rows = i64::try_from(exec.rows_done).unwrap_or(i64::MAX);
    let errors = exec
        .counts
        .get(Outcome::Error.as_str())
        .copied()
        .unwrap_or(0);
    if rows == errors {
        return Ok(Some((
            "Nothing was flagged missing from source: the file has no valid row.".into(),
            0,
        )));
    }
    if errors * 100 > rows * FLAG_LIMIT_PERCENT {
        return Ok(Some((
            format!(
                "Nothing was flagged missing from source: {errors} of the file's {rows} rows have errors (more than {FLAG_LIMIT_PERCENT} %). Correct the file and import it again."
            ),
            0,
        )));
    }
    if exec.run.flag_confirmed {
        return Ok(None);
    }
    let (missing, owned) = count_missing(conn, exec.rules.source.id, seen)?;
    if missing * 100 > owned * FLAG_LIMIT_PERCENT {
        return Ok(Some((
            format!(
                "{missing} of the source's {owned} records ({} %) are not in this file. More than {FLAG_LIMIT_PERCENT} % are flagged missing from source only when you confirm it; nothing was flagged.",
                missing * 100 / owned.max(1)
            ),
            missing,
        )));
    }
    Ok(None)
}

/// A record the source owns, still listed, whose id the file lacks.
fn is_missing(source_id: i64, seen: &Seen, external_id: &str, row: &RecordRow) -> bool {
    row.owner_source_id == Some(source_id) && !row.archived && !seen.contains(external_id)
}

/// (records missing from the file, records the source owns and lists).
fn count_missing(conn: &mut DbConn, source_id: i64, seen: &Seen) -> QueryResult<(i64, i64)> {
    let (mut missing, mut owned) = (0, 0);
    let mut after = String::new();
    loop {
        let page = plan::owned_links_page(conn, source_id, &after, CHUNK_ROWS as i64 * 5)?;
        let Some(last) = page.last() else { break };
        after = last.1.clone();
        for (_, external_id, row) in &page {
            if row.owner_source_id == Some(source_id) && !row.archived {
                owned += 1;
                missing += i64::from(is_missing(source_id, seen, external_id, row));
            }
        }
    }
    Ok((missing, owned))
}

/// Keeps the planner's statistics in step with tables an import grows: refreshed each time
/// `records` has doubled since they were last taken, so a million-row import refreshes them
/// about ten times and a re-import of unchanged rows never.
struct Growth {
    records_before: i64,
    records_at_refresh: i64,
}

impl Growth {
    fn start(conn: &mut DbConn) -> QueryResult<Self> {
        let records = db::analyzed_records(conn)?;
        Ok(Growth {
            records_before: records,
            records_at_refresh: records,
        })
    }

    fn refresh_if_doubled(&mut self, conn: &mut DbConn, created: i64) -> QueryResult<()> {
        let records = self.records_before + created;
        if records - self.records_at_refresh > self.records_at_refresh.max(1_000) {
            db::refresh_statistics(conn, db::LOOKUP_TABLES)?;
            self.records_at_refresh = records;
        }
        Ok(())
    }
}

/// Rows of the file, parsed and validated, ready to be written.
struct Chunk {
    rows: Vec<Parsed>,
    /// File rows read so far (those of a resumed run's earlier attempts included).
    rows_done: u64,
}

/// The reading thread: parses the file into chunks and hands them over.
fn read_chunks(
    mut reader: csvfile::CsvReader,
    rules: &RunRules,
    mut seen: Seen,
    done_lines: i64,
    chunk_rows: usize,
    out: std::sync::mpsc::SyncSender<Result<Chunk, FileError>>,
) -> Seen {
    let mut rows = Vec::with_capacity(chunk_rows);
    let mut rows_done = 0u64;
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let _ = out.send(Err(FileError::from(e)));
                return seen;
            }
        };
        rows_done += 1;
        let line =
            i64::try_from(record.position().map(|p| p.line()).unwrap_or(0)).unwrap_or(i64::MAX);
        if line <= done_lines {
            continue;
        }
        let external_id = record.get(rules.id_index).unwrap_or("").trim();
        let first = seen.first_or_insert(external_id, line);
        rows.push(plan::parse_row(rules, line, &record, first));
        if rows.len() >= chunk_rows {
            let chunk = Chunk {
                rows: std::mem::replace(&mut rows, Vec::with_capacity(chunk_rows)),
                rows_done,
            };
            if out.send(Ok(chunk)).is_err() {
                return seen;
            }
        }
    }
    if !rows.is_empty() {
        let _ = out.send(Ok(Chunk { rows, rows_done }));
    }
    seen
}

/// What earlier attempts of this run reported: the ids seen, the counts, the last line.
fn resume_state(conn: &mut DbConn, run_id: i64) -> QueryResult<(Seen, BTreeMap<String, i64>, i64)> {
    let mut seen = Seen::default();
    let mut counts = BTreeMap::new();
    let mut last_line = 0;
    let mut after = 0i64;
    loop {
        let page: Vec<(i64, i64, String, String, String)> = import_rows::table
            .filter(import_rows::run_id.eq(run_id))
            .filter(import_rows::line.gt(after))
            .order(import_rows::line.asc())
            .limit(10_000)
            .select((
                import_rows::id,
                import_rows::line,
                import_rows::external_id,
                import_rows::outcome,
                import_rows::reason,
            ))
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.1;
        for (_, line, external_id, outcome, reason) in page {
            seen.first_or_insert(&external_id, line);
            *counts.entry(outcome).or_default() += 1;
            if reason.contains("the field was left unchanged") {
                *counts.entry("warnings".to_string()).or_default() += 1;
            }
            last_line = line;
        }
    }
    // Missing-from-source lines (line 0) of an attempt that got that far.
    let missing: i64 = import_rows::table
        .filter(import_rows::run_id.eq(run_id))
        .filter(import_rows::line.eq(0))
        .count()
        .get_result(conn)?;
    if missing > 0 {
        *counts
            .entry(Outcome::MissingFromSource.as_str().to_string())
            .or_default() += missing;
    }
    Ok((seen, counts, last_line))
}

fn count_rows(path: &Path, format: FileFormat) -> Result<u64, FileError> {
    let mut reader = csvfile::open(path, format)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while reader.read_byte_record(&mut record)? {
        n += 1;
    }
    Ok(n)
}

/// The import's write transaction: opened for a chunk, committed in steps.
#[derive(Default)]
struct StepTransaction {
    since: Option<Instant>,
}

impl StepTransaction {
    fn ensure_open(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.is_none() {
            db::begin_bulk(conn)?;
            self.since = Some(Instant::now());
        }
        Ok(())
    }

    /// Commits when the transaction is old enough or someone waits; true when it did.
    fn commit_if_due(&mut self, conn: &mut DbConn) -> QueryResult<bool> {
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

    fn commit(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.is_some() {
            db::commit(conn)?;
            self.since = None;
        }
        Ok(())
    }

    fn rollback(&mut self, conn: &mut DbConn) -> QueryResult<()> {
        if self.since.take().is_some() {
            db::rollback(conn)?;
        }
        Ok(())
    }
}

/// Writes one chunk in a savepoint of the open transaction. A chunk the database refuses (a
/// constraint) is retried row by row, so only the offending row fails, with the database's
/// words.
fn write_chunk(
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
fn refused_row(kind: &diesel::result::DatabaseErrorKind) -> bool {
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
        let (targets, edits): (Vec<usize>, Vec<Edit>) = plan.edits.into_iter().unzip();
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

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The chunk's report lines and the run's progress, in the chunk's transaction.
fn record_outcomes(
    conn: &mut DbConn,
    exec: &Execution<'_>,
    outcomes: &[RowOutcome],
) -> Result<(), DieselError> {
    let lines: Vec<ReportLine> = outcomes
        .iter()
        .map(|o| ReportLine {
            run_id: exec.run.id,
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
    if !holds(conn, exec.run.id, &exec.claimant)? {
        return Err(DieselError::RollbackTransaction);
    }
    diesel::update(import_runs::table.find(exec.run.id))
        .set((
            import_runs::rows_done.eq(i64::try_from(exec.rows_done).unwrap_or(i64::MAX)),
            import_runs::heartbeat_at.eq(Some(db::now())),
            import_runs::counts.eq(json(&exec.counts_after(outcomes))),
        ))
        .execute(conn)?;
    Ok(())
}

/// Which process holds a run (see `jobs::claimant`).
pub fn claimant_of(conn: &mut DbConn, run_id: i64) -> QueryResult<Option<String>> {
    Ok(import_run_claims::table
        .find(run_id)
        .select(import_run_claims::claimed_by)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Names the process that holds a run (None: nobody, the run is queued).
pub fn set_claimant(conn: &mut DbConn, run_id: i64, claimant: Option<&str>) -> QueryResult<usize> {
    diesel::update(import_run_claims::table.find(run_id))
        .set(import_run_claims::claimed_by.eq(claimant))
        .execute(conn)
}

/// Whether `claimant` still runs the run; in a transaction, also locks the run's row until
/// it ends, so a cancellation waits for the chunk or wins before it.
pub fn holds(conn: &mut DbConn, run_id: i64, claimant: &str) -> QueryResult<bool> {
    Ok(diesel::update(
        import_run_claims::table
            .filter(import_run_claims::id.eq(run_id))
            .filter(import_run_claims::status.eq(RunStatus::Running.as_str()))
            .filter(import_run_claims::claimed_by.eq(claimant)),
    )
    .set(import_run_claims::claimed_by.eq(claimant))
    .execute(conn)?
        == 1)
}

/// Full mode: records the source owns whose external id the file did not bring are flagged
/// (never deleted), one report line each. The source's links are read in pages.
fn flag_missing(
    conn: &mut DbConn,
    exec: &mut Execution<'_>,
    seen: &Seen,
) -> Result<(), DieselError> {
    let source_id = exec.rules.source.id;
    // A resumed run may have reported some already: those are not reported twice.
    let reported: HashSet<i64> = import_rows::table
        .filter(import_rows::run_id.eq(exec.run.id))
        .filter(import_rows::line.eq(0))
        .select(import_rows::record_id)
        .load::<Option<i64>>(conn)?
        .into_iter()
        .flatten()
        .collect();
    let mut after = String::new();
    loop {
        let page = plan::owned_links_page(conn, source_id, &after, CHUNK_ROWS as i64 * 5)?;
        let Some(last) = page.last() else { break };
        after = last.1.clone();
        let missing: Vec<_> = page
            .into_iter()
            .filter(|(id, ext, row)| {
                is_missing(source_id, seen, ext, row) && !reported.contains(id)
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        let outcomes = db::bulk_write_tx(conn, |conn| -> Result<_, DieselError> {
            let to_flag: Vec<i64> = missing
                .iter()
                .filter(|(_, _, row)| !row.missing_from_source)
                .map(|(id, _, _)| *id)
                .collect();
            if !exec.rules.dry_run {
                let edits: Vec<Edit> = writer::load_states(conn, &to_flag)?
                    .into_iter()
                    .map(|(id, (_, state))| {
                        let mut edit = Edit::change(id, state);
                        edit.after.missing_from_source = true;
                        edit
                    })
                    .collect();
                writer::apply(conn, &exec.rules.catalog, &edits, &exec.actor)?;
            }
            let outcomes: Vec<RowOutcome> = missing
                .iter()
                .map(|(record_id, external_id, row)| RowOutcome {
                    external_id: external_id.clone(),
                    outcome: Outcome::MissingFromSource,
                    record_id: Some(*record_id),
                    reason: format!("External id {external_id} was not in this full import: the record is flagged missing from source (nothing is deleted)."),
                    // Undo clears only the flags this run set.
                    owner_changed: !row.missing_from_source,
                    ..Default::default()
                })
                .collect();
            record_outcomes(conn, exec, &outcomes)?;
            Ok(outcomes)
        })?;
        exec.counts = exec.counts_after(&outcomes);
    }
    Ok(())
}
