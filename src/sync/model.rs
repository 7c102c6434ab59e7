use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConn;
use crate::schema::{import_rows, import_runs};
use crate::stored::stored_enum;
pub use crate::stored::UnknownValue;

stored_enum! {
    /// Where a run is. Stored as text (a CHECK constraint keeps the values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RunStatus as "run status" {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// The statuses that hold a source (one such run per source).
    pub const ACTIVE: [&'static str; 2] = ["queued", "running"];

    pub fn finished(self) -> bool {
        matches!(
            self,
            RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

stored_enum! {
    /// What happened to one line of a file (or, for `MissingFromSource`, to a record the file
    /// lacked). `ALL` is the order a run's counts are shown in.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Outcome as "outcome" {
        Created = "created",
        Updated = "updated",
        /// No value written; changes wait for a person's decision (rule `review`).
        Proposed = "proposed",
        Unchanged = "unchanged",
        Converted = "converted",
        LinkedForcedManual = "linked_forced_manual",
        Ignored = "ignored",
        Ambiguous = "ambiguous",
        #[default]
        Error = "error",
        MissingFromSource = "missing_from_source",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = import_runs)]
pub struct ImportRun {
    pub id: i64,
    pub source_id: i64,
    #[diesel(deserialize_as = String)]
    pub status: RunStatus,
    pub dry_run: bool,
    pub mode: String,
    pub file_name: String,
    pub file_sha256: String,
    pub encoding: String,
    pub delimiter: String,
    pub plan_of: Option<i64>,
    pub started_by: Option<i64>,
    pub started_by_label: String,
    pub rows_total: i64,
    pub rows_done: i64,
    pub counts: String,
    pub error: Option<String>,
    pub undo_report: Option<String>,
    pub undone_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub heartbeat_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub undo_status: Option<String>,
    pub undo_by: Option<i64>,
    pub undo_by_label: Option<String>,
    pub undo_rows_done: i64,
    pub undo_cursor_line: Option<i64>,
    pub undo_cursor_id: Option<i64>,
    pub undo_error: Option<String>,
    pub undo_heartbeat_at: Option<NaiveDateTime>,
    pub notice: Option<String>,
    pub flag_confirmed: bool,
}

impl ImportRun {
    pub fn counts(&self) -> BTreeMap<String, i64> {
        serde_json::from_str(&self.counts).unwrap_or_default()
    }

    pub fn count(&self, outcome: &str) -> i64 {
        self.counts().get(outcome).copied().unwrap_or(0)
    }

    pub fn finished(&self) -> bool {
        self.status.finished()
    }

    pub fn percent(&self) -> i64 {
        if self.rows_total <= 0 {
            if self.finished() {
                100
            } else {
                0
            }
        } else {
            (self.rows_done * 100 / self.rows_total).clamp(0, 100)
        }
    }

    /// Rows per second so far, from the start to the last heartbeat.
    pub fn rows_per_second(&self) -> Option<i64> {
        let seconds = (self.heartbeat_at? - self.started_at?).num_seconds();
        (seconds > 0 && self.rows_done > 0).then(|| self.rows_done / seconds)
    }

    /// "about 2 min 10 s left" while running, at the rate so far.
    pub fn time_left(&self) -> Option<String> {
        if self.finished() {
            return None;
        }
        let rate = self.rows_per_second()?;
        let left = (self.rows_total - self.rows_done).max(0) / rate.max(1);
        Some(match left {
            s if s >= 60 => format!("about {} min {} s left", s / 60, s % 60),
            s => format!("about {s} s left"),
        })
    }

    /// An undo asked for and not finished yet.
    pub fn undo_in_progress(&self) -> bool {
        matches!(self.undo_status.as_deref(), Some("queued" | "running"))
    }

    /// Rows the undo still has to go through, as a percentage done.
    pub fn undo_percent(&self) -> i64 {
        if self.rows_total <= 0 {
            0
        } else {
            (self.undo_rows_done * 100 / self.rows_total).clamp(0, 100)
        }
    }

    pub fn undo_lines(&self) -> Vec<String> {
        self.undo_report
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default()
    }
}

/// A field change as a report shows it (and undo reverses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = import_rows)]
pub struct ImportRow {
    pub id: i64,
    pub run_id: i64,
    pub line: i64,
    pub external_id: String,
    #[diesel(deserialize_as = String)]
    pub outcome: Outcome,
    pub record_id: Option<i64>,
    pub reason: String,
    pub changes: String,
    pub candidates: String,
    pub row_values: String,
    pub record_created: bool,
    pub link_added: bool,
    pub previous_owner: Option<i64>,
    pub owner_changed: bool,
    pub record_updated_at: Option<NaiveDateTime>,
}

impl ImportRow {
    /// The values this line changed. A report that cannot be read is an error, never "no
    /// changes": undo would otherwise restore nothing and say it had.
    pub fn changes(&self) -> Result<Vec<FieldChange>, String> {
        serde_json::from_str(&self.changes).map_err(|e| self.unreadable("changes", &e))
    }

    pub fn candidates(&self) -> Result<Vec<i64>, String> {
        serde_json::from_str(&self.candidates).map_err(|e| self.unreadable("candidates", &e))
    }

    /// The candidates to show on the run page (none when unreadable; resolving says why).
    pub fn candidates_shown(&self) -> Vec<i64> {
        self.candidates().unwrap_or_default()
    }

    fn unreadable(&self, what: &str, e: &serde_json::Error) -> String {
        format!(
            "Line {} of run #{}'s report holds unreadable {what} ({e}); nothing was changed.",
            self.line, self.run_id
        )
    }

    pub fn values(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.row_values).unwrap_or_default()
    }

    /// `phone: 0400 000 002 → 0400 000 012; email: … → …`
    pub fn changes_text(&self) -> String {
        let Ok(changes) = self.changes() else {
            return "(unreadable)".into();
        };
        changes
            .iter()
            .map(|c| format!("{}: {} → {}", c.field, blank(&c.old), blank(&c.new)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn blank(value: &str) -> &str {
    if value.is_empty() {
        "(blank)"
    } else {
        value
    }
}

pub fn load_run(conn: &mut DbConn, run_id: i64) -> QueryResult<Option<ImportRun>> {
    import_runs::table
        .find(run_id)
        .select(ImportRun::as_select())
        .first(conn)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statuses_read_back_or_refuse() {
        for status in [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Done,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(
                RunStatus::try_from(status.as_str().to_string()).ok(),
                Some(status)
            );
        }
        let unknown = RunStatus::try_from("paused".to_string()).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown run status 'paused' in the database"
        );
    }

    #[test]
    fn outcomes_read_back_or_refuse() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::try_from(outcome.to_string()).ok(), Some(outcome));
        }
        assert!(Outcome::try_from("skipped".to_string()).is_err());
    }
}
