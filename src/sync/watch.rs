//! Automatic import: a source may watch a folder (and run a query on a schedule, see
//! `sources::connector`; one thread of `serve` does both). A file that appears there and stops growing
//! is imported with the source's settings, like an upload applied at once; when its run ends
//! the file moves to `done/` or `failed/` beside it, prefixed with the run's number, with the
//! run report written next to it (`<run>-<name>.report.csv`). Files written by rename into
//! place, or whose size and time stay the same for `settle`, are taken; hidden files and names
//! ending in `.tmp`, `.part` or `.partial` are left alone.
//!
//! A file is known by its hash: a run of the source from this folder with the same hash,
//! started after the file was last written, is that file's run. So a restart between the
//! import and the move neither imports it twice nor loses it, and the same content dropped
//! again later is imported again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use diesel::prelude::*;

use super::csvfile;
use super::engine::ImportError;
use super::jobs::{self, NewRun};
use super::model::{ImportRun, RunStatus};
use super::report;
use super::worker::Worker;
use crate::db::{DbConn, DbPool};
use crate::schema::{import_runs, sources};
use crate::sources::connector;
use crate::sources::model::Source;

/// Who started a run from a watched folder, as run pages show it.
pub const STARTED_BY: &str = "automatic import";

/// How often `serve` looks at the watched folders.
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// What the watcher remembers between scans: each file's size and time, and since when
/// they have not changed.
#[derive(Default)]
pub struct Watcher {
    seen: HashMap<PathBuf, Seen>,
}

struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
    /// Stored and hashed once it stopped changing.
    sha: Option<String>,
}

/// What a scan did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Still being written (or seen for the first time): looked at again next scan.
    Waiting(PathBuf),
    Queued {
        path: PathBuf,
        run_id: i64,
    },
    Moved {
        from: PathBuf,
        to: PathBuf,
    },
}

/// When the file last changed, its name included: the later of its modification time and
/// (on Unix) its status change time, which a rename moves on. A file moved back from
/// `failed/` keeps its modification time but is a new drop.
fn changed_at(meta: &std::fs::Metadata) -> Option<SystemTime> {
    let modified = meta.modified().ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = u64::try_from(meta.ctime())
            .ok()
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        return modified.max(changed);
    }
    #[allow(unreachable_code)]
    modified
}

/// Skipped: hidden, or named as being written.
fn is_partial(name: &str) -> bool {
    name.starts_with('.')
        || [".tmp", ".part", ".partial", ".crdownload"]
            .iter()
            .any(|end| name.to_ascii_lowercase().ends_with(end))
}

/// Why a folder cannot be watched, if it cannot.
pub fn folder_problem(dir: &str) -> Option<String> {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Some(format!(
            "The watched folder '{dir}' must be an absolute path, such as /srv/imports/crm."
        ));
    }
    (!path.is_dir())
        .then(|| format!("The watched folder '{dir}' does not exist or is not a folder."))
}

impl Watcher {
    /// One look at every watched folder. `settle`: how long a file's size and time must stay
    /// the same before it is imported.
    pub fn scan(
        &mut self,
        conn: &mut DbConn,
        data_dir: &Path,
        max_bytes: u64,
        settle: Duration,
    ) -> Result<Vec<Step>, ImportError> {
        let watching: Vec<Source> = sources::table
            .filter(sources::watch_dir.ne(""))
            .select(Source::as_select())
            .load(conn)?;
        let mut steps = Vec::new();
        let mut present = Vec::new();
        for source in &watching {
            let dir = PathBuf::from(&source.watch_dir);
            // Never the console's own files (its SQLite database, stored uploads).
            let console_files = match (dir.canonicalize(), data_dir.canonicalize()) {
                (Ok(dir), Ok(data)) => {
                    data.starts_with(&dir)
                        || ["imports", "documents"]
                            .iter()
                            .any(|kept| dir.starts_with(data.join(kept)))
                }
                _ => false,
            };
            if console_files {
                tracing::warn!(source = %source.name, folder = %dir.display(), "the watched folder holds the data folder: not watched");
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                tracing::warn!(source = %source.name, folder = %dir.display(), "cannot read the watched folder");
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || is_partial(&name) {
                    continue;
                }
                present.push(path.clone());
                let (len, modified) = (meta.len(), changed_at(&meta));
                let stable_since = match self.seen.get(&path) {
                    Some(seen) if (seen.len, seen.modified) == (len, modified) => seen.since,
                    _ => {
                        let since = Instant::now();
                        let seen = Seen {
                            len,
                            modified,
                            since,
                            sha: None,
                        };
                        self.seen.insert(path.clone(), seen);
                        steps.push(Step::Waiting(path));
                        continue;
                    }
                };
                if stable_since.elapsed() < settle {
                    steps.push(Step::Waiting(path));
                    continue;
                }
                // One file that cannot be read or moved stops neither the others nor the
                // next scans.
                match self.take(conn, source, &path, &name, modified, data_dir, max_bytes) {
                    Ok(step) => steps.push(step),
                    Err(ImportError::Db(e)) => return Err(ImportError::Db(e)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "automatic import");
                        steps.push(Step::Waiting(path));
                    }
                }
            }
        }
        self.seen.retain(|path, _| present.contains(path));
        Ok(steps)
    }

    /// A file that stopped changing: start its run, or if its run has ended, move it.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        conn: &mut DbConn,
        source: &Source,
        path: &Path,
        name: &str,
        modified: Option<SystemTime>,
        data_dir: &Path,
        max_bytes: u64,
    ) -> Result<Step, ImportError> {
        let known = self.seen.get(path).and_then(|s| s.sha.clone());
        let sha = match known {
            Some(sha) => sha,
            None => {
                let file = std::fs::File::open(path).map_err(|e| {
                    ImportError::Refused(format!("cannot read {}: {e}", path.display()))
                })?;
                match jobs::store_file(data_dir, file, max_bytes) {
                    Ok(sha) => {
                        if let Some(seen) = self.seen.get_mut(path) {
                            seen.sha = Some(sha.clone());
                        }
                        sha
                    }
                    Err(refused) => return self.set_aside(path, name, &refused.to_string()),
                }
            }
        };
        // Runs started after the file's last write (SQLite keeps whole seconds).
        let written_at = modified
            .map(chrono::DateTime::<chrono::Utc>::from)
            .map(|t| t.naive_utc() - chrono::Duration::seconds(1))
            .unwrap_or_default();
        let run: Option<ImportRun> = import_runs::table
            .filter(import_runs::source_id.eq(source.id))
            .filter(import_runs::file_sha256.eq(&sha))
            .filter(import_runs::started_by_label.eq(STARTED_BY))
            .filter(import_runs::created_at.ge(written_at))
            .order(import_runs::id.desc())
            .select(ImportRun::as_select())
            .first(conn)
            .optional()?;
        let Some(run) = run else {
            let format = match csvfile::sniff_file(path) {
                Ok(format) => format,
                Err(e) => return self.set_aside(path, name, &e.to_string()),
            };
            let new = NewRun {
                source,
                file_name: name,
                sha256: &sha,
                format,
                dry_run: false,
                plan_of: None,
                flag_confirmed: false,
                user_id: None,
                user_label: STARTED_BY,
            };
            return match jobs::enqueue(conn, &new) {
                Ok(run_id) => Ok(Step::Queued {
                    path: path.to_path_buf(),
                    run_id,
                }),
                // Another run holds the source: the file waits its turn.
                Err(ImportError::SourceBusy(_)) => Ok(Step::Waiting(path.to_path_buf())),
                Err(refused) => self.set_aside(path, name, &refused.to_string()),
            };
        };
        let folder = match run.status {
            RunStatus::Queued | RunStatus::Running => return Ok(Step::Waiting(path.to_path_buf())),
            RunStatus::Done => "done",
            RunStatus::Failed | RunStatus::Cancelled => "failed",
        };
        let to = self.move_to(path, folder, &format!("{}-{name}", run.id))?;
        let mut report_path = to.clone().into_os_string();
        report_path.push(".report.csv");
        let out = crate::config::create_private_file(Path::new(&report_path)).map_err(|e| {
            ImportError::Refused(format!(
                "cannot write the report beside {}: {e}",
                to.display()
            ))
        })?;
        report::report_csv(conn, run.id, std::io::BufWriter::new(out))?;
        if let Some(error) = &run.error {
            write_note(&to, error)?;
        }
        Ok(Step::Moved {
            from: path.to_path_buf(),
            to,
        })
    }

    /// A file that cannot be imported at all goes to `failed/` with why.
    fn set_aside(&mut self, path: &Path, name: &str, why: &str) -> Result<Step, ImportError> {
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
        let to = self.move_to(path, "failed", &format!("refused-{stamp}-{name}"))?;
        write_note(&to, why)?;
        Ok(Step::Moved {
            from: path.to_path_buf(),
            to,
        })
    }

    fn move_to(&mut self, path: &Path, folder: &str, name: &str) -> Result<PathBuf, ImportError> {
        let dir = path
            .parent()
            .map(|p| p.join(folder))
            .unwrap_or_else(|| PathBuf::from(folder));
        let io = |e: std::io::Error| {
            ImportError::Refused(format!(
                "cannot move {} to {}: {e}",
                path.display(),
                dir.display()
            ))
        };
        crate::config::create_private_dir(&dir).map_err(io)?;
        let to = dir.join(name);
        std::fs::rename(path, &to).map_err(io)?;
        self.seen.remove(path);
        Ok(to)
    }
}

/// `<file>.error.txt`: why the file's run failed or the file was refused.
fn write_note(file: &Path, why: &str) -> Result<(), ImportError> {
    let mut note = file.to_path_buf().into_os_string();
    note.push(".error.txt");
    use std::io::Write;
    crate::config::create_private_file(Path::new(&note))
        .and_then(|mut out| out.write_all(format!("{why}\n").as_bytes()))
        .map_err(|e| ImportError::Refused(format!("cannot write {}: {e}", file.display())))
}

/// The automatic imports of `serve`: every few seconds, looks at the watched folders and
/// runs the database queries that are due.
pub fn spawn_automatic_imports(
    pool: DbPool,
    data_dir: PathBuf,
    max_bytes: u64,
    session_key: Vec<u8>,
) -> std::io::Result<Worker> {
    let mut watcher = Watcher::default();
    Worker::spawn("automatic-imports", move || {
        let Ok(mut conn) = pool.get() else {
            return SCAN_EVERY;
        };
        match watcher.scan(&mut conn, &data_dir, max_bytes, SCAN_EVERY) {
            Ok(steps) => {
                for step in steps {
                    match step {
                        Step::Waiting(_) => {}
                        Step::Queued { path, run_id } => {
                            tracing::info!(file = %path.display(), run_id, "automatic import queued")
                        }
                        Step::Moved { from, to } => {
                            tracing::info!(file = %from.display(), to = %to.display(), "automatic import filed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watched folders"),
        }
        match connector::run_due(&mut conn, &data_dir, &session_key) {
            Ok(runs) if !runs.is_empty() => tracing::info!(?runs, "scheduled queries queued"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled queries"),
        }
        SCAN_EVERY
    })
}
