//! Imports as background jobs: database rows that any instance claims. "One running import per
//! source" is a unique index over queued and running runs, so it holds across instances.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sha2::{Digest, Sha256};

use super::csvfile::FileFormat;
use super::engine::{self, ImportError};
use crate::db::{self, DbConn, DbPool};
use crate::fields::validate::PhoneCountry;
use crate::schema::import_runs;
use crate::sources::model::Source;

/// Runs idle this long while "running" belong to a process that died.
const STALE_AFTER_MINUTES: i64 = 10;

/// Copies an import file into `<data dir>/imports/<sha256>`, hashing as it goes; returns the
/// hash. At most `max_bytes` are accepted.
pub fn store_file(
    data_dir: &Path,
    mut input: impl Read,
    max_bytes: u64,
) -> Result<String, ImportError> {
    let dir = data_dir.join("imports");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImportError::Refused(format!("cannot store the file: {e}")))?;
    let io = |e: std::io::Error| ImportError::Refused(format!("cannot store the file: {e}"));
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_bytes {
            return Err(ImportError::Refused(format!(
                "The file is larger than the {} MB upload limit.",
                max_bytes / (1024 * 1024)
            )));
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io)?;
    }
    let sha = hex::encode(hasher.finalize());
    let path = dir.join(&sha);
    if !path.exists() {
        tmp.persist(&path).map_err(|e| io(e.error))?;
    }
    Ok(sha)
}

/// A new import run, refused when the source already has one queued or running.
pub struct NewRun<'a> {
    pub source: &'a Source,
    pub file_name: &'a str,
    pub sha256: &'a str,
    pub format: FileFormat,
    pub dry_run: bool,
    pub plan_of: Option<i64>,
    /// Flag records missing from a full-mode file even above a tenth of the source's.
    pub flag_confirmed: bool,
    pub user_id: Option<i64>,
    pub user_label: &'a str,
}

pub fn enqueue(conn: &mut DbConn, new: &NewRun) -> Result<i64, ImportError> {
    insert_run(conn, new, false)
}

/// A new run that is already claimed by the caller (the command line runs its own import in
/// the foreground): no worker can take it between its creation and its start.
pub fn enqueue_claimed(conn: &mut DbConn, new: &NewRun) -> Result<i64, ImportError> {
    insert_run(conn, new, true)
}

fn insert_run(conn: &mut DbConn, new: &NewRun, claimed: bool) -> Result<i64, ImportError> {
    let undoing: Option<i64> = import_runs::table
        .filter(import_runs::source_id.eq(new.source.id))
        .filter(import_runs::undo_status.eq_any(["queued", "running"]))
        .select(import_runs::id)
        .first(conn)
        .optional()?;
    if let Some(run) = undoing {
        return Err(ImportError::Refused(format!(
            "Run #{run} of source {} is being undone. Wait for the undo to finish, then try again.",
            new.source.name
        )));
    }
    let now = db::now();
    let started = claimed.then_some(now);
    let inserted = diesel::insert_into(import_runs::table)
        .values((
            import_runs::source_id.eq(new.source.id),
            import_runs::status.eq(if claimed { "running" } else { "queued" }),
            import_runs::started_at.eq(started),
            import_runs::heartbeat_at.eq(started),
            import_runs::dry_run.eq(new.dry_run),
            import_runs::mode.eq(&new.source.mode),
            import_runs::file_name.eq(new.file_name),
            import_runs::file_sha256.eq(new.sha256),
            import_runs::encoding.eq(new.format.encoding.as_str()),
            import_runs::delimiter.eq(new.format.delimiter_str()),
            import_runs::plan_of.eq(new.plan_of),
            import_runs::flag_confirmed.eq(new.flag_confirmed),
            import_runs::started_by.eq(new.user_id),
            import_runs::started_by_label.eq(new.user_label),
            import_runs::created_at.eq(now),
        ))
        .returning(import_runs::id)
        .get_result::<i64>(conn);
    match inserted {
        Ok(id) => Ok(id),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            let active: Option<i64> = import_runs::table
                .filter(import_runs::source_id.eq(new.source.id))
                .filter(import_runs::status.eq_any(["queued", "running"]))
                .select(import_runs::id)
                .first(conn)
                .optional()?;
            Err(ImportError::Refused(format!(
                "An import is already running for source {} (run #{}). Wait for it to finish, then try again.",
                new.source.name,
                active.unwrap_or_default()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Claims the oldest queued run. The conditional update makes the claim exclusive on every
/// backend; on PostgreSQL, SKIP LOCKED also keeps instances from waiting on each other.
pub fn claim_next(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    db::write_tx(conn, |conn| {
        let candidate: Option<i64> = match conn {
            DbConn::Pg(_) => {
                #[derive(QueryableByName)]
                struct Id {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    id: i64,
                }
                diesel::sql_query(
                    "SELECT id FROM import_runs WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                )
                .load::<Id>(conn)?
                .first()
                .map(|r| r.id)
            }
            DbConn::Sqlite(_) => import_runs::table
                .filter(import_runs::status.eq("queued"))
                .order(import_runs::id.asc())
                .select(import_runs::id)
                .first(conn)
                .optional()?,
        };
        let Some(id) = candidate else { return Ok(None) };
        let now = db::now();
        let claimed = diesel::update(
            import_runs::table
                .filter(import_runs::id.eq(id))
                .filter(import_runs::status.eq("queued")),
        )
        .set((
            import_runs::status.eq("running"),
            import_runs::started_at.eq(Some(now)),
            import_runs::heartbeat_at.eq(Some(now)),
        ))
        .execute(conn)?;
        Ok((claimed == 1).then_some(id))
    })
}

/// Runs a claimed run to its end and records how it ended.
pub fn process(
    pool: &DbPool,
    run_id: i64,
    data_dir: &Path,
    country: PhoneCountry,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), ImportError> {
    let mut conn = pool
        .get()
        .map_err(|e| ImportError::Refused(format!("database: {e}")))?;
    let result = engine::execute(&mut conn, run_id, data_dir, country, progress);
    let (status, error) = match &result {
        Ok(_) => ("done", None),
        Err(e) => (
            "failed",
            Some(crate::text::storable(&e.to_string()).into_owned()),
        ),
    };
    let end = |conn: &mut DbConn, error: Option<String>| {
        diesel::update(import_runs::table.find(run_id))
            .set((
                import_runs::status.eq(status),
                import_runs::error.eq(error),
                import_runs::finished_at.eq(Some(db::now())),
            ))
            .execute(conn)
    };
    if let Err(e) = end(&mut conn, error) {
        // A run left `running` would hold its source for good: it ends, with what is known.
        tracing::error!(run_id, error = %e, "could not save how the run ended");
        end(
            &mut conn,
            Some(format!(
                "The run stopped and its error could not be saved ({}); the server log has it.",
                crate::text::storable(&e.to_string())
            )),
        )?;
    }
    result.map(|_| ())
}

/// Claims the oldest queued undo, as `claim_next` claims imports.
pub fn claim_next_undo(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    db::write_tx(conn, |conn| {
        let candidate: Option<i64> = import_runs::table
            .filter(import_runs::undo_status.eq("queued"))
            .order(import_runs::id.asc())
            .select(import_runs::id)
            .first(conn)
            .optional()?;
        let Some(id) = candidate else { return Ok(None) };
        let claimed = diesel::update(
            import_runs::table
                .filter(import_runs::id.eq(id))
                .filter(import_runs::undo_status.eq("queued")),
        )
        .set((
            import_runs::undo_status.eq("running"),
            import_runs::undo_heartbeat_at.eq(Some(db::now())),
        ))
        .execute(conn)?;
        Ok((claimed == 1).then_some(id))
    })
}

/// Processes every queued run and undo, one after another (the CLI and the tests use this).
pub fn run_queued(
    pool: &DbPool,
    data_dir: &Path,
    country: PhoneCountry,
) -> Result<usize, ImportError> {
    let mut n = 0;
    loop {
        let mut conn = pool
            .get()
            .map_err(|e| ImportError::Refused(format!("database: {e}")))?;
        let Some(id) = claim_next(&mut conn)? else {
            return Ok(n + run_queued_undos(pool)?);
        };
        drop(conn);
        // A failed run is recorded on the run itself; the loop goes on with the next.
        let _ = process(pool, id, data_dir, country, &mut |_, _| {});
        n += 1;
    }
}

/// Runs every queued undo; a failure is recorded on its run.
pub fn run_queued_undos(pool: &DbPool) -> Result<usize, ImportError> {
    let mut n = 0;
    loop {
        let mut conn = pool
            .get()
            .map_err(|e| ImportError::Refused(format!("database: {e}")))?;
        let Some(id) = claim_next_undo(&mut conn)? else {
            return Ok(n);
        };
        let _ = super::undo::continue_undo(&mut conn, id, &mut |_| {});
        n += 1;
    }
}

/// Runs left "running" by a process that stopped go back to the queue; the next claim resumes
/// after the last committed batch (rows are reported per batch, in the same transaction).
pub fn recover_stale(conn: &mut DbConn) -> QueryResult<usize> {
    let cutoff = db::now() - chrono::Duration::minutes(STALE_AFTER_MINUTES);
    let runs = diesel::update(
        import_runs::table
            .filter(import_runs::status.eq("running"))
            .filter(
                import_runs::heartbeat_at
                    .lt(cutoff)
                    .or(import_runs::heartbeat_at.is_null()),
            ),
    )
    .set(import_runs::status.eq("queued"))
    .execute(conn)?;
    let undos = diesel::update(
        import_runs::table
            .filter(import_runs::undo_status.eq("running"))
            .filter(
                import_runs::undo_heartbeat_at
                    .lt(cutoff)
                    .or(import_runs::undo_heartbeat_at.is_null()),
            ),
    )
    .set(import_runs::undo_status.eq("queued"))
    .execute(conn)?;
    Ok(runs + undos)
}

/// The background worker of `serve`: claims and runs queued imports.
pub fn spawn_worker(pool: DbPool, data_dir: std::path::PathBuf, country: PhoneCountry) {
    std::thread::Builder::new()
        .name("import-worker".into())
        .spawn(move || loop {
            if let Ok(mut conn) = pool.get() {
                if let Err(e) = recover_stale(&mut conn) {
                    tracing::warn!(error = %e, "could not recover stale imports");
                }
                // Keep SQLite's write-ahead log from growing without bound during long imports.
                if let DbConn::Sqlite(c) = &mut *conn {
                    let _ = c.batch_execute("PRAGMA wal_checkpoint(PASSIVE);");
                }
            }
            match run_queued(&pool, &data_dir, country) {
                Ok(0) => std::thread::sleep(Duration::from_millis(500)),
                Ok(n) => tracing::info!(runs = n, "imports processed"),
                Err(e) => {
                    tracing::error!(error = %e, "import worker");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the import worker"));
}
