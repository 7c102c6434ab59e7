//! Imports as background jobs: database rows that any instance claims. "One running import per
//! source" is a unique index over queued and running runs, so it holds across instances.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDateTime;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sha2::{Digest, Sha256};

use super::claims;
use super::csvfile::FileFormat;
use super::engine::{self, ImportError};
use super::model::{ImportRun, RunStatus};
use super::worker::Worker;
use crate::db::{self, DbConn, DbPool};
use crate::fields::validate::PhoneCountry;
use crate::schema::import_runs;
use crate::sources::model::Source;

/// A run silent this long while "running" (a chunk commits every quarter second) belongs to a
/// process that stopped.
pub const STALE_AFTER_SECONDS: i64 = 30;

/// Who runs a run: a `serve` worker or the command line, by process and machine
/// (`serve 1234@host`).
pub fn claimant(kind: &str) -> String {
    format!("{kind} {}@{}", std::process::id(), host_name())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a claimant is known to be gone: a process of this machine whose id is no longer
/// alive. (Other machines' processes are judged by their silence alone.)
fn claimant_gone(claimed_by: &str) -> bool {
    let Some((pid, host)) = claimed_by
        .split_once(' ')
        .and_then(|(_, rest)| rest.split_once('@'))
    else {
        return false;
    };
    let proc = Path::new("/proc");
    host == host_name() && proc.join("self").exists() && !proc.join(pid).exists()
}

fn is_command_line(claimed_by: Option<&str>) -> bool {
    claimed_by.is_some_and(|c| c.starts_with("cli "))
}

/// A run with the process that holds it.
pub struct HeldRun {
    pub run: ImportRun,
    pub claimed_by: Option<String>,
}

impl HeldRun {
    pub fn load(conn: &mut DbConn, run: ImportRun) -> QueryResult<Self> {
        let claimed_by = claims::claimant_of(conn, run.id)?;
        Ok(HeldRun { run, claimed_by })
    }

    /// A running run has stopped: silent for `STALE_AFTER_SECONDS`, or its process is gone.
    pub fn is_stale(&self, now: NaiveDateTime) -> bool {
        self.run.status == RunStatus::Running
            && (self
                .run
                .heartbeat_at
                .is_none_or(|at| now - at > chrono::Duration::seconds(STALE_AFTER_SECONDS))
                || self.claimed_by.as_deref().is_some_and(claimant_gone))
    }
}

/// What holds a source: its queued or running run, in words a person can act on.
pub fn describe_holder(held: &HeldRun, now: NaiveDateTime) -> String {
    let run = &held.run;
    if run.status == RunStatus::Queued {
        return format!(
            "run #{} is queued, waiting for a worker of `syncdesk serve`",
            run.id
        );
    }
    let by = held
        .claimed_by
        .as_deref()
        .filter(|by| !by.is_empty())
        .unwrap_or("an unknown process");
    let since = run
        .started_at
        .map(|at| format!(" since {} UTC", at.format("%Y-%m-%d %H:%M:%S")))
        .unwrap_or_default();
    let silent = run
        .heartbeat_at
        .map(|at| format!(", last progress {} s ago", (now - at).num_seconds().max(0)))
        .unwrap_or_default();
    let mut text = format!("run #{} is running in {by}{since}{silent}", run.id);
    if held.is_stale(now) && is_command_line(held.claimed_by.as_deref()) {
        text.push_str(&format!(
            "; it looks interrupted: `syncdesk resume {0}` carries it on, `syncdesk cancel {0}` ends it",
            run.id
        ));
    } else if held.is_stale(now) {
        text.push_str("; it looks interrupted and a worker of `syncdesk serve` will resume it");
    }
    text
}

/// The latest runs of a source, newest first.
pub fn runs_of(conn: &mut DbConn, source_id: i64, limit: i64) -> QueryResult<Vec<ImportRun>> {
    import_runs::table
        .filter(import_runs::source_id.eq(source_id))
        .order(import_runs::id.desc())
        .limit(limit)
        .select(ImportRun::as_select())
        .load(conn)
}

/// The source's queued or running run, if any.
pub fn active_run(conn: &mut DbConn, source_id: i64) -> QueryResult<Option<HeldRun>> {
    import_runs::table
        .filter(import_runs::source_id.eq(source_id))
        .filter(import_runs::status.eq_any(RunStatus::ACTIVE))
        .select(ImportRun::as_select())
        .first(conn)
        .optional()?
        .map(|run| HeldRun::load(conn, run))
        .transpose()
}

/// Stops a queued or running run. The process running it notices at its next chunk and rolls
/// that chunk back; chunks committed before stay (undo the run to take them back).
pub fn cancel(conn: &mut DbConn, run_id: i64, by: &str) -> Result<(), ImportError> {
    let cancelled = db::write_tx(conn, |conn| {
        diesel::update(
            import_runs::table
                .filter(import_runs::id.eq(run_id))
                .filter(import_runs::status.eq_any(RunStatus::ACTIVE)),
        )
        .set((
            import_runs::status.eq(RunStatus::Cancelled.as_str()),
            import_runs::error.eq(Some(format!(
                "Cancelled by {by}. Rows imported before stay; undo the run to take them back."
            ))),
            import_runs::finished_at.eq(Some(db::now())),
        ))
        .execute(conn)
    })?;
    if cancelled == 0 {
        return Err(ImportError::Refused(format!(
            "Run #{run_id} is not queued or running: there is nothing to cancel."
        )));
    }
    Ok(())
}

/// Claims a run for the command line to carry on in the foreground: a queued run, or a
/// running one whose process has stopped.
pub fn claim_for_resume(conn: &mut DbConn, run_id: i64) -> Result<(), ImportError> {
    db::write_tx(conn, |conn| {
        let run = engine::load_run(conn, run_id)?
            .ok_or_else(|| ImportError::Refused(format!("There is no import run #{run_id}.")))?;
        let held = HeldRun::load(conn, run)?;
        let now = db::now();
        if !(held.run.status == RunStatus::Queued || held.is_stale(now)) {
            return Err(ImportError::Refused(match held.run.status {
                RunStatus::Running => format!("Cannot resume: {}.", describe_holder(&held, now)),
                other => format!("Run #{run_id} is {other}: there is nothing to resume."),
            }));
        }
        diesel::update(import_runs::table.find(run_id))
            .set((
                import_runs::status.eq(RunStatus::Running.as_str()),
                import_runs::heartbeat_at.eq(Some(now)),
                import_runs::started_at.eq(Some(held.run.started_at.unwrap_or(now))),
            ))
            .execute(conn)?;
        claims::set_claimant(conn, run_id, Some(&claimant("cli")))?;
        Ok(())
    })
}

/// Copies an import file into `<data dir>/imports/<sha256>`, hashing as it goes; returns the
/// hash. At most `max_bytes` are accepted.
pub fn store_file(
    data_dir: &Path,
    mut input: impl Read,
    max_bytes: u64,
) -> Result<String, ImportError> {
    let dir = data_dir.join("imports");
    crate::config::create_private_dir(&dir)
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
    insert_run(conn, new, None)
}

/// The refusal of a second run for a source, saying which run and process hold it; None when
/// no run holds the source.
pub fn already_running(conn: &mut DbConn, source: &Source) -> QueryResult<Option<ImportError>> {
    Ok(active_run(conn, source.id)?.map(|held| {
        ImportError::SourceBusy(format!(
            "An import is already running for source {}: {}. Wait for it to finish, then try again.",
            source.name,
            describe_holder(&held, db::now())
        ))
    }))
}

/// A new run that is already claimed by the caller (the command line runs its own import in
/// the foreground): no worker can take it between its creation and its start.
pub fn enqueue_claimed(conn: &mut DbConn, new: &NewRun) -> Result<i64, ImportError> {
    insert_run(conn, new, Some("cli"))
}

/// `enqueue_claimed` for another kind of foreground caller (`api`: a small push answered at
/// once).
pub fn enqueue_claimed_by(conn: &mut DbConn, new: &NewRun, kind: &str) -> Result<i64, ImportError> {
    insert_run(conn, new, Some(kind))
}

/// Inserts a run, queued for a worker, or already claimed by a process of `claimed_by` kind.
fn insert_run(
    conn: &mut DbConn,
    new: &NewRun,
    claimed_by: Option<&str>,
) -> Result<i64, ImportError> {
    let claimed = claimed_by.is_some();
    let undoing: Option<i64> = import_runs::table
        .filter(import_runs::source_id.eq(new.source.id))
        .filter(import_runs::undo_status.eq_any(["queued", "running"]))
        .select(import_runs::id)
        .first(conn)
        .optional()?;
    if let Some(run) = undoing {
        return Err(ImportError::SourceBusy(format!(
            "Run #{run} of source {} is being undone. Wait for the undo to finish, then try again.",
            new.source.name
        )));
    }
    let now = db::now();
    let started = claimed.then_some(now);
    // In a savepoint: a refused insert must leave a caller's transaction usable (PostgreSQL
    // aborts it otherwise, and the refusal below could not be read).
    let inserted = conn.transaction(|conn| {
        diesel::insert_into(import_runs::table)
            .values((
                import_runs::source_id.eq(new.source.id),
                import_runs::status.eq(if claimed {
                    RunStatus::Running
                } else {
                    RunStatus::Queued
                }
                .as_str()),
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
            .get_result::<i64>(conn)
            .and_then(|id| {
                if let Some(kind) = claimed_by {
                    claims::set_claimant(conn, id, Some(&claimant(kind)))?;
                }
                Ok(id)
            })
    });
    match inserted {
        Ok(id) => Ok(id),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            // The run holding the source may have ended since: the refusal still stands.
            Err(already_running(conn, new.source)?.unwrap_or_else(|| {
                ImportError::SourceBusy(format!(
                    "An import is already running for source {}: another run holds it. Wait for it to finish, then try again.",
                    new.source.name
                ))
            }))
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
                .filter(import_runs::status.eq(RunStatus::Queued.as_str()))
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
                .filter(import_runs::status.eq(RunStatus::Queued.as_str())),
        )
        .set((
            import_runs::status.eq(RunStatus::Running.as_str()),
            import_runs::started_at.eq(Some(now)),
            import_runs::heartbeat_at.eq(Some(now)),
        ))
        .execute(conn)?;
        if claimed == 1 {
            claims::set_claimant(conn, id, Some(&claimant("serve")))?;
        }
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
    let claimed_by = claims::claimant_of(&mut conn, run_id)?.unwrap_or_default();
    let result = engine::execute(&mut conn, run_id, data_dir, country, progress);
    let (status, error) = match &result {
        Ok(_) => (RunStatus::Done, None),
        Err(e) => (
            RunStatus::Failed,
            Some(crate::text::storable(&e.to_string()).into_owned()),
        ),
    };
    // Only while this process still holds the run: a cancelled run stays cancelled.
    let end = |conn: &mut DbConn, error: Option<String>| {
        db::write_tx(conn, |conn| {
            if !claims::holds(conn, run_id, &claimed_by)? {
                return Ok(0);
            }
            diesel::update(import_runs::table.find(run_id))
                .set((
                    import_runs::status.eq(status.as_str()),
                    import_runs::error.eq(error.clone()),
                    import_runs::finished_at.eq(Some(db::now())),
                ))
                .execute(conn)
        })
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

/// Runs left "running" by a `serve` worker that stopped go back to the queue; the next claim
/// resumes after the last committed chunk (rows are reported per chunk, in the same
/// transaction). Runs of the command line wait for `syncdesk resume` or `cancel`: they are
/// someone's foreground work, not to be finished silently elsewhere.
pub fn recover_stale(conn: &mut DbConn) -> QueryResult<usize> {
    let now = db::now();
    let running: Vec<ImportRun> = import_runs::table
        .filter(import_runs::status.eq(RunStatus::Running.as_str()))
        .select(ImportRun::as_select())
        .load(conn)?;
    let mut recovered = 0;
    for run in running {
        let held = HeldRun::load(conn, run)?;
        if !held.is_stale(now) || is_command_line(held.claimed_by.as_deref()) {
            continue;
        }
        tracing::warn!(run = held.run.id, by = ?held.claimed_by, "import run stopped; queued again");
        let by = held.claimed_by.unwrap_or_default();
        recovered += db::write_tx(conn, |conn| {
            if !claims::holds(conn, held.run.id, &by)? {
                return Ok(0);
            }
            claims::set_claimant(conn, held.run.id, None)?;
            diesel::update(import_runs::table.find(held.run.id))
                .set(import_runs::status.eq(RunStatus::Queued.as_str()))
                .execute(conn)
        })?;
    }
    let cutoff = now - chrono::Duration::seconds(STALE_AFTER_SECONDS);
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
    Ok(recovered + undos)
}

/// How often the import worker, when idle, counts the list totals afresh.
const RECOUNT_EVERY: Duration = Duration::from_secs(3_600);

/// The background worker of `serve`: claims and runs queued imports.
pub fn spawn_worker(
    pool: DbPool,
    data_dir: std::path::PathBuf,
    country: PhoneCountry,
) -> std::io::Result<Worker> {
    let mut last_recount = std::time::Instant::now();
    Worker::spawn("import-worker", move || {
        if let Ok(mut conn) = pool.get() {
            if let Err(e) = recover_stale(&mut conn) {
                tracing::warn!(error = %e, "could not recover stale imports");
            }
            if let Err(e) = crate::records::counts::merge_if_many(&mut conn) {
                tracing::warn!(error = %e, "could not merge the list totals");
            }
            if let Err(e) = crate::review::totals::merge_if_many(&mut conn) {
                tracing::warn!(error = %e, "could not merge the desynchronised totals");
            }
            // Keep SQLite's write-ahead log from growing without bound during long imports.
            if let DbConn::Sqlite(c) = &mut *conn {
                let _ = c.batch_execute("PRAGMA wal_checkpoint(PASSIVE);");
            }
        }
        match run_queued(&pool, &data_dir, country) {
            Ok(0) if last_recount.elapsed() > RECOUNT_EVERY => {
                last_recount = std::time::Instant::now();
                if let Ok(mut conn) = pool.get() {
                    if let Err(e) = crate::records::counts::recount(&mut conn) {
                        tracing::warn!(error = %e, "could not recount the list totals");
                    }
                    if let Err(e) = crate::review::totals::recount(&mut conn) {
                        tracing::warn!(error = %e, "could not recount the desynchronised totals");
                    }
                }
                Duration::from_millis(500)
            }
            Ok(0) => Duration::from_millis(500),
            Ok(n) => {
                tracing::info!(runs = n, "imports processed");
                Duration::ZERO
            }
            Err(e) => {
                tracing::error!(error = %e, "import worker");
                Duration::from_secs(2)
            }
        }
    })
}
