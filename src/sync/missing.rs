//! Full mode: records the source owns that a complete file lacks are flagged missing from
//! source (never deleted), unless the file looks unfit to say so or the share is large enough
//! to wait for a person's confirmation.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::model::Outcome;
use super::plan::{self, RowOutcome};
use super::write::{record_outcomes, Execution, CHUNK_ROWS};
use crate::db::{self, DbConn};
use crate::records::model::RecordRow;
use crate::records::writer::{self, Edit};
use crate::schema::import_rows;

/// Count of a full-mode run: records missing from the file that were not flagged, waiting for
/// a person to confirm.
pub const MISSING_NOT_FLAGGED: &str = "missing_not_flagged";

/// Above this share of a file's rows in error, or of a source's records missing from it, a
/// full-mode run flags nothing by itself.
const FLAG_LIMIT_PERCENT: i64 = 10;

/// Why a full-mode run must not flag the records its file lacks, and how many it leaves
/// unflagged: a file with no valid row, or mostly errors, is not a list of what the source
/// holds; and flagging more than a tenth of the source waits for a person's confirmation.
pub(super) fn flagging_refusal(
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

/// Full mode: records the source owns whose external id the file did not bring are flagged
/// (never deleted), one report line each. The source's links are read in pages.
pub(super) fn flag_missing(
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

/// External ids seen in this run, by a 64-bit hash (a million ids in 16 MB instead of 60):
/// the line where each first appeared.
#[derive(Default)]
pub struct Seen(HashMap<u64, i64>);

impl Seen {
    fn key(external_id: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        external_id.hash(&mut h);
        h.finish()
    }

    /// The line of an earlier row with this id, else remembers this one.
    pub(super) fn first_or_insert(&mut self, external_id: &str, line: i64) -> Option<i64> {
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

    pub(super) fn contains(&self, external_id: &str) -> bool {
        self.0.contains_key(&Self::key(external_id))
    }
}
