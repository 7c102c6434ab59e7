//! What happens to a finished run afterwards: undo, and the resolution of its ambiguous rows.
//! Both write through `records::writer`, undo in pages of report lines.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::error::ImportError;
use super::model::load_run;
use super::model::{FieldChange, ImportRow, Outcome, RunStatus};
use super::plan::{apply_field_rules, new_record};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::PhoneCountry;
use crate::records::model::{Actor, Origin};
use crate::records::writer::{self, Catalog, Edit, RecordState};
use crate::review::service as review;
use crate::schema::{import_rows, import_runs};
use crate::sources::service as sources;

const PAGE: i64 = 5_000;

/// Reverses an applied run, to its end, in this thread: values it changed go back (unless
/// edited since: reported, not overwritten), records it created are archived and unlinked,
/// conversions and links undone. Returns the lines left as they were.
pub fn undo(conn: &mut DbConn, run_id: i64, by: &Actor) -> Result<Vec<String>, ImportError> {
    request_undo(conn, run_id, by, true)?;
    continue_undo(conn, run_id, &mut |_| {})
}

/// Asks for a run's undo: refused unless the run is a finished, applied, not yet undone import
/// and its source has no import under way. `claimed`: the caller runs it now (else the
/// background worker does).
pub fn request_undo(
    conn: &mut DbConn,
    run_id: i64,
    by: &Actor,
    claimed: bool,
) -> Result<(), ImportError> {
    db::write_tx(conn, |conn| {
        let run = load_run(conn, run_id)?
            .ok_or_else(|| ImportError::Refused(format!("no import run #{run_id}")))?;
        if run.dry_run {
            return Err(ImportError::Refused(
                "A dry run changed nothing: there is nothing to undo.".into(),
            ));
        }
        if !matches!(run.status, RunStatus::Done | RunStatus::Cancelled) {
            return Err(ImportError::Refused(
                "Only a finished or cancelled run can be undone.".into(),
            ));
        }
        if run.undone_at.is_some() {
            return Err(ImportError::Refused(
                "This run has already been undone.".into(),
            ));
        }
        let activities = crate::schema::sources::table
            .find(run.source_id)
            .select(crate::schema::sources::carries)
            .first::<String>(conn)?;
        if activities == crate::sources::model::SourceContent::Activities.as_str() {
            return Err(ImportError::Refused(
                "Activities are kept: a run that logged activities cannot be undone.".into(),
            ));
        }
        if run.undo_in_progress() {
            return Err(ImportError::Refused(
                "This run is already being undone: follow it on the run's page.".into(),
            ));
        }
        let active: i64 = import_runs::table
            .filter(import_runs::source_id.eq(run.source_id))
            .filter(import_runs::status.eq_any(["queued", "running"]))
            .count()
            .get_result(conn)?;
        if active > 0 {
            return Err(ImportError::Refused(
                "An import of this source is under way: undo the run once it has finished.".into(),
            ));
        }
        let target = import_runs::table.find(run_id);
        diesel::update(target)
            .set((
                import_runs::undo_status.eq(Some(if claimed { "running" } else { "queued" })),
                import_runs::undo_by.eq(by.user_id),
                import_runs::undo_by_label.eq(Some(&by.label)),
                import_runs::undo_error.eq(None::<String>),
                import_runs::undo_heartbeat_at.eq(Some(db::now())),
            ))
            .execute(conn)?;
        // A failed undo carries on from its cursor: the pages it wrote stay undone.
        if run.undo_status.as_deref() != Some("failed") {
            diesel::update(target)
                .set((
                    import_runs::undo_rows_done.eq(0),
                    import_runs::undo_cursor_line.eq(None::<i64>),
                    import_runs::undo_cursor_id.eq(None::<i64>),
                    import_runs::undo_report.eq(None::<String>),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Runs a claimed undo from where it stopped: one page of report lines per transaction, the
/// cursor saved with each page, so the console stays usable and a crash loses nothing.
/// `progress(rows done)` is called after every page.
pub fn continue_undo(
    conn: &mut DbConn,
    run_id: i64,
    progress: &mut dyn FnMut(i64),
) -> Result<Vec<String>, ImportError> {
    // The run's report and the records it wrote may be too new for the planner's statistics.
    db::refresh_statistics(conn, db::BULK_TABLES)?;
    let result = undo_pages(conn, run_id, progress);
    if let Err(e) = &result {
        diesel::update(import_runs::table.find(run_id))
            .set((
                import_runs::undo_status.eq(Some("failed")),
                import_runs::undo_error
                    .eq(Some(crate::text::storable(&e.to_string()).into_owned())),
            ))
            .execute(conn)?;
    }
    let restored = result?;
    // An undo rewrites records' search tokens as an import does.
    crate::records::search::settle(conn)?;
    Ok(restored)
}

fn undo_pages(
    conn: &mut DbConn,
    run_id: i64,
    progress: &mut dyn FnMut(i64),
) -> Result<Vec<String>, ImportError> {
    let run = load_run(conn, run_id)?
        .ok_or_else(|| ImportError::Refused(format!("no import run #{run_id}")))?;
    let source = sources::find(conn, run.source_id)?
        .ok_or_else(|| ImportError::Refused("the source no longer exists".into()))?;
    let actor = Actor {
        origin: Origin::Undo,
        origin_id: Some(run_id),
        source_id: None,
        user_id: run.undo_by,
        label: format!(
            "undo of import run {run_id} by {}",
            run.undo_by_label.as_deref().unwrap_or("?")
        ),
    };
    let catalog = Catalog::load(conn)?;
    let defs: HashMap<RecordKind, Vec<FieldDef>> = RecordKind::ALL
        .into_iter()
        .map(|kind| Ok((kind, fields::list(conn, kind, true)?)))
        .collect::<QueryResult<_>>()?;
    // Newest line first, then the missing-from-source lines (line 0) by id.
    let mut cursor_line = run.undo_cursor_line.unwrap_or(i64::MAX);
    let mut cursor_id = run.undo_cursor_id.unwrap_or(0);
    let mut rows_done = run.undo_rows_done;
    loop {
        let finished = db::bulk_write_tx(conn, |conn| -> Result<bool, ImportError> {
            let rows: Vec<ImportRow> = if cursor_line > 0 {
                import_rows::table
                    .filter(import_rows::run_id.eq(run_id))
                    .filter(import_rows::line.lt(cursor_line))
                    .filter(import_rows::line.gt(0))
                    .order(import_rows::line.desc())
                    .limit(PAGE)
                    .select(ImportRow::as_select())
                    .load(conn)?
            } else {
                import_rows::table
                    .filter(import_rows::run_id.eq(run_id))
                    .filter(import_rows::line.eq(0))
                    .filter(import_rows::id.gt(cursor_id))
                    .order(import_rows::id.asc())
                    .limit(PAGE)
                    .select(ImportRow::as_select())
                    .load(conn)?
            };
            let Some(last) = rows.last() else {
                if cursor_line > 0 {
                    // The numbered lines are done: the missing-from-source lines come next.
                    cursor_line = 0;
                    return Ok(false);
                }
                return Ok(true);
            };
            if cursor_line > 0 {
                cursor_line = last.line;
            } else {
                cursor_id = last.id;
            }
            let mut report = Vec::new();
            undo_rows(conn, &catalog, &defs, source.id, &rows, &actor, &mut report)?;
            rows_done += rows.len() as i64;
            let mut lines = load_run(conn, run_id)?
                .map(|r| r.undo_lines())
                .unwrap_or_default();
            lines.extend(report);
            diesel::update(import_runs::table.find(run_id))
                .set((
                    import_runs::undo_cursor_line.eq(Some(cursor_line)),
                    import_runs::undo_cursor_id.eq(Some(cursor_id)),
                    import_runs::undo_rows_done.eq(rows_done),
                    import_runs::undo_heartbeat_at.eq(Some(db::now())),
                    import_runs::undo_report.eq(Some(
                        serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into()),
                    )),
                ))
                .execute(conn)?;
            Ok(false)
        })?;
        progress(rows_done);
        if finished {
            break;
        }
    }
    db::write_tx(conn, |conn| -> Result<Vec<String>, ImportError> {
        review::withdraw(conn, "import", run_id, &actor.label)?;
        let lines = load_run(conn, run_id)?
            .map(|r| r.undo_lines())
            .unwrap_or_default();
        diesel::update(import_runs::table.find(run_id))
            .set((
                import_runs::undone_at.eq(Some(db::now())),
                import_runs::undo_status.eq(Some("done")),
                import_runs::undo_report.eq(Some(
                    serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into()),
                )),
            ))
            .execute(conn)?;
        Ok(lines)
    })
}

/// Undoes one page of report lines, in their order, with one batch of edits.
fn undo_rows(
    conn: &mut DbConn,
    catalog: &Catalog,
    defs: &HashMap<RecordKind, Vec<FieldDef>>,
    source_id: i64,
    rows: &[ImportRow],
    actor: &Actor,
    report: &mut Vec<String>,
) -> Result<(), ImportError> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r.record_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut states: HashMap<i64, RecordState> = writer::load_states(conn, &ids)?
        .into_iter()
        .map(|(id, (_, state))| (id, state))
        .collect();
    let mut edits = Vec::new();
    for row in rows {
        let Some(record_id) = row.record_id else {
            continue;
        };
        let Some(state) = states.get(&record_id) else {
            continue;
        };
        let mut edit = Edit::change(record_id, state.clone());
        if row.outcome == Outcome::MissingFromSource {
            if row.owner_changed {
                edit.after.missing_from_source = false;
            }
        } else {
            let kind_defs = defs.get(&state.kind).map(Vec::as_slice).unwrap_or(&[]);
            let changes: Vec<FieldChange> = row.changes().map_err(ImportError::Refused)?;
            let mut restore = Vec::new();
            for change in changes {
                if change.field == crate::sources::model::COMPANY_KEY {
                    // "#12 Acme": the company the import set, and the one before ("" none).
                    let id_of = |text: &str| {
                        text.strip_prefix('#')
                            .and_then(|t| t.split_whitespace().next())
                            .and_then(|id| id.parse::<i64>().ok())
                    };
                    if state.company_id.is_some() && state.company_id == id_of(&change.new) {
                        edit.after.company_id = id_of(&change.old);
                    } else {
                        report.push(format!(
                            "Line {}, record #{record_id} ({}), company: left as it is because it was changed after the import.",
                            row.line, state.name
                        ));
                    }
                    continue;
                }
                let Some(def) = kind_defs.iter().find(|d| d.key == change.field) else {
                    continue;
                };
                let now = state.get(def);
                if now == change.new {
                    restore.push((def, change.old));
                } else {
                    report.push(format!(
                        "Line {}, record #{record_id} ({}), {}: left as '{}' because it was edited after the import (the import had set '{}').",
                        row.line, state.name, change.field, now, change.new
                    ));
                }
            }
            if row.record_created {
                edit.after.archived = true;
            } else {
                for (def, old) in restore {
                    edit.after.set(def, &old);
                }
            }
            if row.link_added {
                edit.unlink.push((source_id, row.external_id.clone()));
            }
            if row.owner_changed || row.record_created {
                edit.after.owner_source_id = row.previous_owner.filter(|_| !row.record_created);
            }
        }
        states.insert(record_id, edit.after.clone());
        edits.push(edit);
    }
    writer::apply(conn, catalog, &edits, actor)?;
    Ok(())
}

/// Resolves an ambiguous row of a finished run: link it to one candidate, or create a record.
pub fn resolve_ambiguous(
    conn: &mut DbConn,
    row_id: i64,
    choice: Option<i64>,
    by: &Actor,
    _country: PhoneCountry,
) -> Result<String, ImportError> {
    db::write_tx(conn, |conn| {
        let row: ImportRow = import_rows::table
            .find(row_id)
            .select(ImportRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| ImportError::Refused("That report line does not exist.".into()))?;
        if row.outcome != Outcome::Ambiguous {
            return Err(ImportError::Refused(format!(
                "Line {} is not ambiguous (any more): it is {}.",
                row.line, row.outcome
            )));
        }
        let run = load_run(conn, row.run_id)?.ok_or(DieselError::NotFound)?;
        if run.dry_run {
            return Err(ImportError::Refused(
                "This is a dry run: apply it first, then resolve the ambiguous rows.".into(),
            ));
        }
        if run.undone_at.is_some() || run.undo_in_progress() {
            return Err(ImportError::Refused(
                "This run is undone (or being undone): its rows can no longer be resolved.".into(),
            ));
        }
        let source = sources::find(conn, run.source_id)?.ok_or(DieselError::NotFound)?;
        let kind = source.record_kind();
        let defs = fields::list(conn, kind, false)?;
        let field_rules: Vec<_> = sources::mapping(conn, source.id)?
            .iter()
            .filter(|m| defs.iter().any(|d| d.key == m.field_key))
            .map(|m| m.field_rule())
            .collect();
        let actor = Actor {
            origin: Origin::Import,
            origin_id: Some(run.id),
            source_id: Some(run.source_id),
            user_id: by.user_id,
            label: format!(
                "import run {} ({}), resolved by {}",
                run.id, source.name, by.label
            ),
        };
        let values = row.values();
        let catalog = Catalog::load(conn)?;
        let (edit, outcome, changes, proposals) = match choice {
            Some(candidate) => {
                // A candidate, or any active record of the kind the person picked instead.
                let (current, state) = writer::load_state(conn, candidate)?
                    .filter(|(r, _)| r.kind == kind && !r.archived)
                    .ok_or_else(|| {
                        ImportError::Refused(format!(
                            "There is no active {kind} #{candidate} to link line {} to.",
                            row.line
                        ))
                    })?;
                let mut edit = Edit::change(candidate, state);
                edit.link.push((source.id, row.external_id.clone()));
                if current.forced_manual {
                    // A person keeps this record manual: linked, never owned or written.
                    (edit, Outcome::LinkedForcedManual, Vec::new(), Vec::new())
                } else {
                    edit.after.owner_source_id = Some(source.id);
                    let (changes, proposals) =
                        apply_field_rules(&field_rules, &defs, candidate, &mut edit, &values);
                    (edit, Outcome::Converted, changes, proposals)
                }
            }
            None => {
                if values.get("name").is_none_or(|n| n.trim().is_empty()) {
                    return Err(ImportError::Refused(
                        "A new record needs a name, and this line has none.".into(),
                    ));
                }
                let (edit, changes) = new_record(kind, &defs, source.id, &row.external_id, &values);
                (edit, Outcome::Created, changes, Vec::new())
            }
        };
        let created = edit.record_id.is_none();
        // What undo gives the record back to.
        let previous_owner = edit.before.owner_source_id.filter(|_| !created);
        let written = writer::apply(conn, &catalog, std::slice::from_ref(&edit), &actor)
            .map_err(link_taken(&row.external_id))?;
        let record_id = written
            .first()
            .map(|w| w.record_id)
            .ok_or(DieselError::NotFound)?;
        review::propose_many(conn, &proposals, kind, source.id, &actor)?;
        let message = if created {
            format!("Line {}: new record #{record_id} created.", row.line)
        } else {
            format!("Line {} linked to record #{record_id}.", row.line)
        };
        diesel::update(import_rows::table.find(row_id))
            .set((
                import_rows::outcome.eq(outcome.as_str()),
                import_rows::record_id.eq(Some(record_id)),
                import_rows::reason.eq(format!(
                    "{} Resolved by {}: {message}",
                    row.reason, by.label
                )),
                import_rows::changes.eq(serde_json::to_string(&changes).unwrap_or_default()),
                import_rows::record_created.eq(created),
                import_rows::link_added.eq(true),
                import_rows::owner_changed.eq(outcome == Outcome::Converted),
                import_rows::previous_owner.eq(previous_owner),
            ))
            .execute(conn)?;
        // The run's counts move one line from ambiguous to its new outcome: no recount.
        let mut counts: BTreeMap<String, i64> = run.counts();
        let ambiguous = Outcome::Ambiguous.as_str();
        match counts.get(ambiguous).copied() {
            Some(n) if n > 1 => {
                counts.insert(ambiguous.into(), n - 1);
            }
            _ => {
                counts.remove(ambiguous);
            }
        }
        *counts.entry(outcome.as_str().to_string()).or_default() += 1;
        diesel::update(import_runs::table.find(row.run_id))
            .set(import_runs::counts.eq(serde_json::to_string(&counts).unwrap_or_default()))
            .execute(conn)?;
        Ok(message)
    })
}

fn link_taken(external_id: &str) -> impl Fn(DieselError) -> ImportError + '_ {
    move |e| match e {
        DieselError::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            ImportError::Refused(format!(
                "External id {external_id} is already linked to another record of this source."
            ))
        }
        other => ImportError::Db(other),
    }
}
