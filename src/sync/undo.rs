//! What happens to a finished run afterwards: undo, and the resolution of its ambiguous rows.
//! Both write through `records::writer`, undo in pages of report lines.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::engine::{load_run, ImportError};
use super::model::{FieldChange, ImportRow};
use super::plan::apply_field_rules;
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::PhoneCountry;
use crate::records::model::Actor;
use crate::records::writer::{self, Catalog, CreatedHistory, Edit, RecordState};
use crate::review::service as review;
use crate::schema::{import_rows, import_runs};
use crate::sources::service as sources;

const PAGE: i64 = 5_000;

/// Reverses an applied run: values it changed go back (unless edited since: reported, not
/// overwritten), records it created are archived and unlinked, conversions and links undone.
pub fn undo(conn: &mut DbConn, run_id: i64, by: &Actor) -> Result<Vec<String>, ImportError> {
    db::bulk_write_tx(conn, |conn| {
        let run = load_run(conn, run_id)?
            .ok_or_else(|| ImportError::Refused(format!("no import run #{run_id}")))?;
        if run.dry_run {
            return Err(ImportError::Refused(
                "A dry run changed nothing: there is nothing to undo.".into(),
            ));
        }
        if run.status != "done" {
            return Err(ImportError::Refused(
                "Only a finished run can be undone.".into(),
            ));
        }
        if run.undone_at.is_some() {
            return Err(ImportError::Refused(
                "This run has already been undone.".into(),
            ));
        }
        let source = sources::find(conn, run.source_id)?
            .ok_or_else(|| ImportError::Refused("the source no longer exists".into()))?;
        let actor = Actor {
            origin: "undo",
            origin_id: Some(run_id),
            user_id: by.user_id,
            label: format!("undo of import run {run_id} by {}", by.label),
        };
        let catalog = Catalog::load(conn)?;
        let defs: HashMap<RecordKind, Vec<FieldDef>> = RecordKind::ALL
            .into_iter()
            .map(|kind| Ok((kind, fields::list(conn, kind, true)?)))
            .collect::<QueryResult<_>>()?;
        let mut report = Vec::new();
        // Newest line first, then the missing-from-source lines (line 0).
        let mut before_line = i64::MAX;
        loop {
            let rows: Vec<ImportRow> = import_rows::table
                .filter(import_rows::run_id.eq(run_id))
                .filter(import_rows::line.lt(before_line))
                .filter(import_rows::line.gt(0))
                .order(import_rows::line.desc())
                .limit(PAGE)
                .select(ImportRow::as_select())
                .load(conn)?;
            let Some(last) = rows.last() else { break };
            before_line = last.line;
            undo_rows(conn, &catalog, &defs, source.id, &rows, &actor, &mut report)?;
        }
        let mut after_id = 0;
        loop {
            let rows: Vec<ImportRow> = import_rows::table
                .filter(import_rows::run_id.eq(run_id))
                .filter(import_rows::line.eq(0))
                .filter(import_rows::id.gt(after_id))
                .order(import_rows::id.asc())
                .limit(PAGE)
                .select(ImportRow::as_select())
                .load(conn)?;
            let Some(last) = rows.last() else { break };
            after_id = last.id;
            undo_rows(conn, &catalog, &defs, source.id, &rows, &actor, &mut report)?;
        }
        review::withdraw(conn, "import", run_id, &actor.label)?;
        let report_json = serde_json::to_string(&report).unwrap_or_else(|_| "[]".into());
        diesel::update(import_runs::table.find(run_id))
            .set((
                import_runs::undone_at.eq(Some(db::now())),
                import_runs::undo_report.eq(Some(report_json)),
            ))
            .execute(conn)?;
        Ok(report)
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
) -> QueryResult<()> {
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
        if row.outcome == "missing_from_source" {
            if row.owner_changed {
                edit.after.missing_from_source = false;
            }
        } else {
            let kind_defs = defs.get(&state.kind).map(Vec::as_slice).unwrap_or(&[]);
            let changes: Vec<FieldChange> = serde_json::from_str(&row.changes).unwrap_or_default();
            let mut restore = Vec::new();
            for change in changes {
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
        if row.outcome != "ambiguous" {
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
        let source = sources::find(conn, run.source_id)?.ok_or(DieselError::NotFound)?;
        let kind = source.record_kind();
        let defs = fields::list(conn, kind, false)?;
        let field_rules: Vec<_> = sources::mapping(conn, source.id)?
            .iter()
            .filter(|m| defs.iter().any(|d| d.key == m.field_key))
            .map(|m| m.field_rule())
            .collect();
        let actor = Actor {
            origin: "import",
            origin_id: Some(run.id),
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
                if !row.candidates().contains(&candidate) {
                    return Err(ImportError::Refused(format!(
                        "Record #{candidate} is not one of this line's candidates."
                    )));
                }
                let (_, state) =
                    writer::load_state(conn, candidate)?.ok_or(DieselError::NotFound)?;
                let mut edit = Edit::change(candidate, state);
                edit.after.owner_source_id = Some(source.id);
                edit.link.push((source.id, row.external_id.clone()));
                let (changes, proposals) =
                    apply_field_rules(&field_rules, &defs, candidate, &mut edit, &values);
                (edit, "converted", changes, proposals)
            }
            None => {
                if values.get("name").is_none_or(|n| n.trim().is_empty()) {
                    return Err(ImportError::Refused(
                        "A new record needs a name, and this line has none.".into(),
                    ));
                }
                let mut state = RecordState::blank(kind);
                let mut changes = Vec::new();
                for (key, value) in values.iter().filter(|(_, v)| !v.is_empty()) {
                    if let Some(def) = defs.iter().find(|d| &d.key == key) {
                        state.set(def, value);
                        changes.push(FieldChange {
                            field: key.clone(),
                            old: String::new(),
                            new: value.clone(),
                        });
                    }
                }
                state.owner_source_id = Some(source.id);
                let mut edit = Edit::create(state);
                edit.link.push((source.id, row.external_id.clone()));
                edit.created_history = CreatedHistory::Summary;
                (edit, "created", changes, Vec::new())
            }
        };
        let created = edit.record_id.is_none();
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
                import_rows::outcome.eq(outcome),
                import_rows::record_id.eq(Some(record_id)),
                import_rows::reason.eq(format!(
                    "{} Resolved by {}: {message}",
                    row.reason, by.label
                )),
                import_rows::changes.eq(serde_json::to_string(&changes).unwrap_or_default()),
                import_rows::record_created.eq(created),
                import_rows::link_added.eq(true),
                import_rows::owner_changed.eq(!created),
            ))
            .execute(conn)?;
        // The run's counts move one line from ambiguous to its new outcome: no recount.
        let mut counts: BTreeMap<String, i64> = run.counts();
        match counts.get("ambiguous").copied() {
            Some(n) if n > 1 => {
                counts.insert("ambiguous".into(), n - 1);
            }
            _ => {
                counts.remove("ambiguous");
            }
        }
        *counts.entry(outcome.to_string()).or_default() += 1;
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
