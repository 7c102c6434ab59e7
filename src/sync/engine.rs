//! Applies an import file through a source's mapping, in chunks: each chunk is parsed and
//! validated in memory, reads what its rows need in a few queries, is decided row by row in
//! memory (`plan`), and is written with multi-row statements in one short transaction
//! (`records::writer` for records, values, links and history). A dry run plans the same way
//! and writes only its report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::claims::claimant_of;
use super::csvfile::{self, FileError, FileFormat, TextEncoding};
use super::missing::{flag_missing, flagging_refusal, Seen};
use super::model::{ImportRun, Outcome};
use super::plan::{self, Parsed, RunRules};
use super::write::{json, write_chunk, Execution, StepTransaction};
use crate::db::{self, DbConn};
use crate::fields::model::RecordKind;
use crate::fields::service as fields;
use crate::fields::validate::PhoneCountry;
use crate::records::model::{Actor, Origin};
use crate::records::writer::Catalog;
use crate::schema::{import_rows, import_runs};
use crate::sources::model::{ColumnValue, Mapping, RowKey, COMPANY_KEY};
use crate::sources::service as sources;

pub use super::error::ImportError;
pub use super::missing::MISSING_NOT_FLAGGED;
pub use super::model::load_run;
pub use super::write::CHUNK_ROWS;

/// Where uploaded import files are kept (by content hash), so a run can be re-read, applied
/// from its dry run, or resumed after a crash.
pub fn file_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    (sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| data_dir.join("imports").join(sha256))
}

pub fn run_format(run: &ImportRun) -> FileFormat {
    FileFormat {
        encoding: TextEncoding::parse(&run.encoding).unwrap_or(TextEncoding::Utf8),
        delimiter: FileFormat::parse_delimiter(&run.delimiter).unwrap_or(b','),
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
    let chunk_rows = super::write::import_chunk_rows(conn);
    execute_in_chunks(conn, run_id, data_dir, country, chunk_rows, progress)
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
    crate::records::search::settle(conn)?;
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
            format!(
                "PRAGMA cache_size = -{}; PRAGMA wal_autocheckpoint = 16384;",
                db::BULK_CACHE_KB
            )
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
    if source.carries_activities() {
        return crate::activities::import::run_file(conn, &run, &source, &path, format, progress);
    }
    let mut reader = csvfile::open(&path, format)?;
    let headers = csvfile::headers(&mut reader)?;
    let kind = source.record_kind();
    let defs = fields::list(conn, kind, false)?;
    let mapping: Vec<Mapping> = sources::mapping(conn, source.id)?;
    let key = RowKey::of(&source, &mapping, &headers).map_err(ImportError::NoKey)?;
    // Chosen for this upload in its preview, over the source's and the console's.
    let upload_country = PhoneCountry::parse(&super::claims::country_of(conn, run_id)?).ok();
    let columns = mapping
        .iter()
        .filter_map(|m| {
            let value = ColumnValue::resolve(&m.column_name, &headers)?;
            let def = defs.iter().find(|d| d.key == m.field_key)?.clone();
            Some((value, m.column_name.clone(), def, m.field_rule()))
        })
        .collect();
    let company = mapping
        .iter()
        .filter(|_| kind == RecordKind::Contact)
        .find(|m| m.field_key == COMPANY_KEY)
        .and_then(|m| {
            Some((
                ColumnValue::resolve(&m.column_name, &headers)?,
                m.to_record_rule(),
            ))
        });
    let total = count_rows(&path, format)?;
    let actor = Actor {
        origin: Origin::Import,
        origin_id: Some(run.id),
        source_id: Some(run.source_id),
        user_id: run.started_by,
        label: format!("import run {} ({})", run.id, source.name),
    };
    let rules = RunRules {
        on_invalid: source.on_invalid(),
        header_len: headers.len(),
        headers: headers.clone(),
        dry_run: run.dry_run,
        catalog: Catalog::load(conn)?,
        country: upload_country.unwrap_or_else(|| source.phone_country(country)),
        source,
        kind,
        key,
        columns,
        company,
        defs,
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
    // The run's own mode: API pushes of a full-mode source run as delta (they are never a
    // complete list).
    if exec.run.mode == "full" {
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

/// Keeps the planner's statistics in step with tables an import grows: refreshed each time
/// `records` has doubled since they were last taken, so a million-row import refreshes them
/// about ten times and a re-import of unchanged rows never. Many small runs (API pushes) grow
/// the table too: a run starts by refreshing them when the rows written since the last
/// refresh outnumber those it counted.
struct Growth {
    records_before: i64,
    records_at_refresh: i64,
}

impl Growth {
    fn start(conn: &mut DbConn) -> QueryResult<Self> {
        let (analyzed, modified) = db::records_statistics(conn)?;
        let records = analyzed + modified;
        if modified > analyzed.max(1_000) {
            db::refresh_statistics(conn, db::LOOKUP_TABLES)?;
        } else {
            return Ok(Growth {
                records_before: analyzed,
                records_at_refresh: analyzed,
            });
        }
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
        let external_id = plan::external_id_of(rules, &record);
        let first = seen.first_or_insert(&external_id, line);
        rows.push(plan::parse_row(rules, line, &record, external_id, first));
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
pub(crate) fn resume_state(
    conn: &mut DbConn,
    run_id: i64,
) -> QueryResult<(Seen, BTreeMap<String, i64>, i64)> {
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

pub(crate) fn count_rows(path: &Path, format: FileFormat) -> Result<u64, FileError> {
    let mut reader = csvfile::open(path, format)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while reader.read_byte_record(&mut record)? {
        n += 1;
    }
    Ok(n)
}
