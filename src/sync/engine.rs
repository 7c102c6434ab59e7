//! Applies an import file through a source's mapping, row by row, in batches inside
//! transactions. A row is written whole or not at all (each row runs in a savepoint); a dry run
//! rolls every row back and keeps only its report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::csvfile::{self, FileError, FileFormat, TextEncoding};
use super::decide::{self, Candidate, Decision, FieldRule};
use super::model::{FieldChange, ImportRow, ImportRun};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::{norm_phone, norm_text, normalize_for, PhoneCountry};
use crate::records::model::{Actor, RecordInput, RecordRow};
use crate::records::service::{self as records, RecordError, RecordFlag};
use crate::review::service as review;
use crate::schema::{import_rows, import_runs, record_links, records as records_t};
use crate::sources::model::{Mapping, Source};
use crate::sources::service as sources;

const BATCH_ROWS: usize = 250;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("The file has no column '{column}' (the source's id column). Its columns are: {found}. Nothing was imported.")]
    MissingIdColumn { column: String, found: String },
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DieselError),
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

/// Everything a row needs that does not change during a run.
struct RunContext {
    run: ImportRun,
    source: Source,
    kind: RecordKind,
    id_index: usize,
    header_len: usize,
    /// (column index, column name, field, rule)
    columns: Vec<(usize, String, FieldDef, FieldRule)>,
    defs: Vec<FieldDef>,
    country: PhoneCountry,
    actor: Actor,
    /// For "apply this plan": the dry run's rows by line (record and its updated_at then).
    plan: BTreeMap<i64, (Option<i64>, Option<chrono::NaiveDateTime>)>,
}

/// What happened to one row: becomes a line of the report.
#[derive(Debug, Clone, Default)]
struct RowOutcome {
    external_id: String,
    outcome: &'static str,
    record_id: Option<i64>,
    reason: String,
    changes: Vec<FieldChange>,
    candidates: Vec<i64>,
    values: BTreeMap<String, String>,
    record_created: bool,
    link_added: bool,
    previous_owner: Option<i64>,
    owner_changed: bool,
    record_updated_at: Option<chrono::NaiveDateTime>,
}

/// A row's transaction ends with this to roll back (dry run) while keeping the outcome.
enum RowEnd {
    Db(DieselError),
    RolledBack(Box<RowOutcome>),
}

impl From<DieselError> for RowEnd {
    fn from(e: DieselError) -> Self {
        RowEnd::Db(e)
    }
}

impl From<RecordError> for RowEnd {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Db(db) => RowEnd::Db(db),
            // Values are validated before: a refusal here is a bug, reported on the row.
            other => RowEnd::Db(DieselError::QueryBuilderError(other.to_string().into())),
        }
    }
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

/// Runs a claimed import to its end. `progress(done, total)` is called after every batch.
pub fn execute(
    conn: &mut DbConn,
    run_id: i64,
    data_dir: &Path,
    country: PhoneCountry,
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
        // Importing is how a source reconnects (DESIGN 2): its status follows.
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
        .position(|h| h.eq_ignore_ascii_case(source.id_column.trim()))
        .ok_or_else(|| ImportError::MissingIdColumn {
            column: source.id_column.clone(),
            found: headers
                .iter()
                .map(|h| format!("'{h}'"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let kind = source.record_kind();
    let defs = fields::list(conn, kind, false)?;
    let mapping: Vec<Mapping> = sources::mapping(conn, source.id)?;
    let columns = mapping
        .iter()
        .filter_map(|m| {
            let index = headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(m.column_name.trim()))?;
            let def = defs.iter().find(|d| d.key == m.field_key)?.clone();
            Some((index, m.column_name.clone(), def, m.field_rule()))
        })
        .collect();
    let total = count_rows(&path, format)?;
    let plan = match run.plan_of {
        Some(dry) => import_rows::table
            .filter(import_rows::run_id.eq(dry))
            .select((
                import_rows::line,
                import_rows::record_id,
                import_rows::record_updated_at,
            ))
            .load::<(i64, Option<i64>, Option<chrono::NaiveDateTime>)>(conn)?
            .into_iter()
            .map(|(line, record, at)| (line, (record, at)))
            .collect(),
        None => BTreeMap::new(),
    };
    let actor = Actor {
        origin: "import",
        origin_id: Some(run.id),
        user_id: run.started_by,
        label: format!("import run {} ({})", run.id, source.name),
    };
    let ctx = RunContext {
        header_len: headers.len(),
        run,
        source,
        kind,
        id_index,
        columns,
        defs,
        country,
        actor,
        plan,
    };
    diesel::update(import_runs::table.find(run_id))
        .set(import_runs::rows_total.eq(i64::try_from(total).unwrap_or(i64::MAX)))
        .execute(conn)?;

    // Rows already reported (a run resumed after a crash) are not applied twice.
    let done_lines: i64 = import_rows::table
        .filter(import_rows::run_id.eq(run_id))
        .select(diesel::dsl::max(import_rows::line))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0);
    let mut batch: Vec<(i64, csv::StringRecord)> = Vec::with_capacity(BATCH_ROWS);
    let mut done: u64 = 0;
    let mut records = reader.records();
    loop {
        let next = records.next();
        let finished = next.is_none();
        if let Some(record) = next {
            let record = record.map_err(FileError::from)?;
            let line =
                i64::try_from(record.position().map(|p| p.line()).unwrap_or(0)).unwrap_or(i64::MAX);
            done += 1;
            if line > done_lines {
                batch.push((line, record));
            }
        }
        if batch.len() >= BATCH_ROWS || (finished && !batch.is_empty()) {
            db::write_tx(conn, |conn| -> Result<(), DieselError> {
                for (line, record) in &batch {
                    let outcome = row_in_savepoint(conn, &ctx, *line, record)?;
                    insert_row(conn, run_id, *line, &outcome)?;
                }
                diesel::update(import_runs::table.find(run_id))
                    .set((
                        import_runs::rows_done.eq(i64::try_from(done).unwrap_or(i64::MAX)),
                        import_runs::heartbeat_at.eq(Some(db::now())),
                        import_runs::counts.eq(counts_json(conn, run_id)?),
                    ))
                    .execute(conn)?;
                Ok(())
            })?;
            batch.clear();
            progress(done, total);
        }
        if finished {
            break;
        }
    }
    if ctx.source.full_mode() {
        db::write_tx(conn, |conn| flag_missing(conn, &ctx))?;
    }
    let counts = counts_of(conn, run_id)?;
    Ok(counts)
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

fn counts_of(conn: &mut DbConn, run_id: i64) -> QueryResult<BTreeMap<String, i64>> {
    Ok(import_rows::table
        .filter(import_rows::run_id.eq(run_id))
        .group_by(import_rows::outcome)
        .select((import_rows::outcome, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect())
}

fn counts_json(conn: &mut DbConn, run_id: i64) -> QueryResult<String> {
    Ok(serde_json::to_string(&counts_of(conn, run_id)?).unwrap_or_else(|_| "{}".into()))
}

/// One row in a savepoint: kept when applying, rolled back in a dry run.
fn row_in_savepoint(
    conn: &mut DbConn,
    ctx: &RunContext,
    line: i64,
    record: &csv::StringRecord,
) -> Result<RowOutcome, DieselError> {
    let result = conn.transaction::<RowOutcome, RowEnd, _>(|conn| {
        let outcome = process_row(conn, ctx, line, record)?;
        if ctx.run.dry_run {
            Err(RowEnd::RolledBack(Box::new(outcome)))
        } else {
            Ok(outcome)
        }
    });
    match result {
        Ok(outcome) => Ok(outcome),
        Err(RowEnd::RolledBack(mut outcome)) => {
            // The record a dry run would create does not exist: nothing to point at.
            if outcome.record_created {
                outcome.record_id = None;
            }
            Ok(*outcome)
        }
        Err(RowEnd::Db(e)) => Err(e),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn insert_row(conn: &mut DbConn, run_id: i64, line: i64, o: &RowOutcome) -> QueryResult<usize> {
    diesel::insert_into(import_rows::table)
        .values((
            import_rows::run_id.eq(run_id),
            import_rows::line.eq(line),
            import_rows::external_id.eq(&o.external_id),
            import_rows::outcome.eq(o.outcome),
            import_rows::record_id.eq(o.record_id),
            import_rows::reason.eq(&o.reason),
            import_rows::changes.eq(json(&o.changes)),
            import_rows::candidates.eq(json(&o.candidates)),
            import_rows::row_values.eq(json(&o.values)),
            import_rows::record_created.eq(o.record_created),
            import_rows::link_added.eq(o.link_added),
            import_rows::previous_owner.eq(o.previous_owner),
            import_rows::owner_changed.eq(o.owner_changed),
            import_rows::record_updated_at.eq(o.record_updated_at),
        ))
        .execute(conn)
}

fn error_row(external_id: &str, reason: String) -> RowOutcome {
    RowOutcome {
        external_id: external_id.to_string(),
        outcome: "error",
        reason,
        ..Default::default()
    }
}

fn process_row(
    conn: &mut DbConn,
    ctx: &RunContext,
    line: i64,
    record: &csv::StringRecord,
) -> Result<RowOutcome, RowEnd> {
    let external_id = record.get(ctx.id_index).unwrap_or("").trim().to_string();
    if record.len() != ctx.header_len {
        return Ok(error_row(
            &external_id,
            format!(
                "Line {line} has {} fields; the header has {}. The row was not imported.",
                record.len(),
                ctx.header_len
            ),
        ));
    }
    if external_id.is_empty() {
        return Ok(error_row(
            "",
            format!(
                "Line {line}: the id column '{}' is empty.",
                ctx.source.id_column
            ),
        ));
    }
    let first: Option<i64> = import_rows::table
        .filter(import_rows::run_id.eq(ctx.run.id))
        .filter(import_rows::external_id.eq(&external_id))
        .select(import_rows::line)
        .order(import_rows::line.asc())
        .first(conn)
        .optional()?;
    if let Some(first) = first {
        return Ok(error_row(
            &external_id,
            format!("Line {line}: the external id {external_id} already appeared on line {first}; only line {first} was applied."),
        ));
    }
    // Validate every mapped value first: one bad value and nothing of the row is written.
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, column, def, _) in &ctx.columns {
        let raw = record.get(*index).unwrap_or("");
        match normalize_for(def, raw, ctx.country) {
            Ok(value) => {
                values.insert(def.key.clone(), value);
            }
            // A blank name is only an error for a new record; caught at creation.
            Err(_) if def.required() && raw.trim().is_empty() => {
                values.insert(def.key.clone(), String::new());
            }
            Err(message) => problems.push(format!("column '{column}': {message}")),
        }
    }
    if !problems.is_empty() {
        let mut row = error_row(
            &external_id,
            format!(
                "Line {line}, {}. The row was not imported.",
                problems.join("; ")
            ),
        );
        row.values = values;
        return Ok(row);
    }
    let linked = linked_candidate(conn, ctx, &external_id)?;
    let identity = if linked.is_none() {
        identity_candidates(conn, ctx, &values)?
    } else {
        Vec::new()
    };
    let decision = decide::decide(
        (ctx.source.id, &ctx.source.name),
        &external_id,
        linked.as_ref(),
        &identity,
    );
    let mut out = RowOutcome {
        external_id: external_id.clone(),
        values: values.clone(),
        ..Default::default()
    };
    match decision {
        Decision::Ignore { record_id, reason } => {
            out.outcome = "ignored";
            out.record_id = Some(record_id);
            out.reason = reason;
        }
        Decision::Ambiguous { candidates, reason } => {
            out.outcome = "ambiguous";
            out.candidates = candidates;
            out.reason = reason;
        }
        Decision::Create { reason } => {
            if values.get("name").is_none_or(|n| n.is_empty()) {
                return Ok(error_row(
                    &external_id,
                    format!("Line {line}: a new record needs a name, and the row has none."),
                ));
            }
            let created = create_record(conn, ctx, &external_id, &values)?;
            out.outcome = "created";
            out.record_id = Some(created.0);
            out.changes = created.1;
            out.record_created = true;
            out.link_added = true;
            out.reason = reason;
        }
        Decision::Use {
            record_id,
            convert,
            link,
            forced_manual,
            by_identity,
            reason,
        } => {
            let record = records::find(conn, record_id)?.ok_or(DieselError::NotFound)?;
            out.record_id = Some(record_id);
            out.record_updated_at = Some(record.updated_at);
            out.reason = reason;
            note_plan_change(ctx, line, &record, &mut out);
            if convert {
                out.previous_owner = record.owner_source_id;
                out.owner_changed = true;
                records::set_owner(
                    conn,
                    &record,
                    Some((ctx.source.id, &ctx.source.name)),
                    &ctx.actor,
                )?;
            }
            if link {
                add_link(conn, ctx, record_id, &external_id)?;
                out.link_added = true;
            }
            if record.missing_from_source {
                diesel::update(records_t::table.find(record_id))
                    .set(records_t::missing_from_source.eq(false))
                    .execute(conn)?;
            }
            if forced_manual {
                out.outcome = "linked_forced_manual";
            } else {
                let (changes, proposed) = apply_rules(conn, ctx, &record, &values)?;
                out.outcome = match (by_identity, changes.is_empty()) {
                    (true, _) => "converted",
                    (false, false) => "updated",
                    (false, true) => "unchanged",
                };
                if !changes.is_empty() {
                    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
                    out.reason
                        .push_str(&format!(" Updated: {}.", fields.join(", ")));
                } else if !by_identity {
                    out.reason.push_str(" No value changed.");
                }
                if !proposed.is_empty() {
                    out.reason
                        .push_str(&format!(" Proposed for review: {}.", proposed.join(", ")));
                }
                out.changes = changes;
            }
        }
    }
    Ok(out)
}

fn note_plan_change(ctx: &RunContext, line: i64, record: &RecordRow, out: &mut RowOutcome) {
    if let Some((Some(planned_record), Some(at))) = ctx.plan.get(&line) {
        if *planned_record == record.id && *at != record.updated_at {
            out.reason.push_str(&format!(
                " Note: this record changed since the dry run (at {} UTC).",
                record.updated_at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
}

fn candidate_of(conn: &mut DbConn, record: &RecordRow) -> QueryResult<Candidate> {
    let owner = match record.owner_source_id {
        Some(id) => Some((
            id,
            records::source_name(conn, id)?.unwrap_or_else(|| format!("#{id}")),
        )),
        None => None,
    };
    Ok(Candidate {
        record_id: record.id,
        owner,
        forced_manual: record.forced_manual,
    })
}

fn linked_candidate(
    conn: &mut DbConn,
    ctx: &RunContext,
    external_id: &str,
) -> QueryResult<Option<Candidate>> {
    let record_id: Option<i64> = record_links::table
        .filter(record_links::source_id.eq(ctx.source.id))
        .filter(record_links::external_id.eq(external_id))
        .select(record_links::record_id)
        .first(conn)
        .optional()?;
    match record_id {
        Some(id) => match records::find(conn, id)? {
            Some(record) => Ok(Some(candidate_of(conn, &record)?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Records of the kind whose normalised name, email and phone all equal the row's; records
/// already linked to this source (under another id) are not candidates.
fn identity_candidates(
    conn: &mut DbConn,
    ctx: &RunContext,
    values: &BTreeMap<String, String>,
) -> QueryResult<Vec<Candidate>> {
    let get = |key: &str| values.get(key).cloned().unwrap_or_default();
    let linked_here = record_links::table
        .filter(record_links::source_id.eq(ctx.source.id))
        .select(record_links::record_id);
    let rows: Vec<RecordRow> = records_t::table
        .filter(records_t::kind.eq(ctx.kind.as_str()))
        .filter(records_t::archived.eq(false))
        .filter(records_t::name_norm.eq(norm_text(&get("name"))))
        .filter(records_t::email_norm.eq(norm_text(&get("email"))))
        .filter(records_t::phone_norm.eq(norm_phone(&get("phone"))))
        .filter(diesel::dsl::not(records_t::id.eq_any(linked_here)))
        .order(records_t::id.asc())
        .limit(20)
        .select(RecordRow::as_select())
        .load(conn)?;
    rows.iter().map(|r| candidate_of(conn, r)).collect()
}

fn add_link(
    conn: &mut DbConn,
    ctx: &RunContext,
    record_id: i64,
    external_id: &str,
) -> QueryResult<usize> {
    diesel::insert_into(record_links::table)
        .values((
            record_links::record_id.eq(record_id),
            record_links::source_id.eq(ctx.source.id),
            record_links::external_id.eq(external_id),
            record_links::created_at.eq(db::now()),
        ))
        .execute(conn)
}

fn create_record(
    conn: &mut DbConn,
    ctx: &RunContext,
    external_id: &str,
    values: &BTreeMap<String, String>,
) -> Result<(i64, Vec<FieldChange>), RowEnd> {
    let input = RecordInput {
        values: values
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        company_id: None,
    };
    let record = records::create(conn, ctx.kind, &input, &ctx.actor, ctx.country)?;
    records::set_owner(
        conn,
        &record,
        Some((ctx.source.id, &ctx.source.name)),
        &ctx.actor,
    )?;
    add_link(conn, ctx, record.id, external_id)?;
    let changes = input
        .values
        .iter()
        .map(|(field, new)| FieldChange {
            field: field.clone(),
            old: String::new(),
            new: new.clone(),
        })
        .collect();
    Ok((record.id, changes))
}

/// The field rules against the record's current values: writes (with history) and proposals.
fn apply_rules(
    conn: &mut DbConn,
    ctx: &RunContext,
    record: &RecordRow,
    incoming: &BTreeMap<String, String>,
) -> Result<(Vec<FieldChange>, Vec<String>), RowEnd> {
    let current = records::values(conn, record, &ctx.defs)?;
    let rules: Vec<FieldRule> = ctx
        .columns
        .iter()
        .map(|(_, _, _, rule)| rule.clone())
        .collect();
    let result = decide::apply_rules(&rules, &current, incoming);
    let writes: Vec<(FieldDef, String)> = result
        .writes
        .iter()
        .filter(|(key, value)| !(key == "name" && value.is_empty()))
        .filter_map(|(key, value)| {
            Some((
                ctx.defs.iter().find(|d| &d.key == key)?.clone(),
                value.clone(),
            ))
        })
        .collect();
    let written = records::write_values(conn, record, &writes, &ctx.actor)?;
    for (key, proposed) in &result.proposals {
        let now = current.get(key).cloned().unwrap_or_default();
        review::propose(conn, record.id, key, &now, proposed, &ctx.actor)?;
    }
    let changes = written
        .into_iter()
        .map(|c| FieldChange {
            field: c.field_key,
            old: c.old,
            new: c.new,
        })
        .collect();
    Ok((
        changes,
        result.proposals.into_iter().map(|(k, _)| k).collect(),
    ))
}

/// Full mode: records the source owns whose external id the file did not bring are flagged
/// (never deleted), one report line each.
fn flag_missing(conn: &mut DbConn, ctx: &RunContext) -> Result<(), DieselError> {
    let seen = import_rows::table
        .filter(import_rows::run_id.eq(ctx.run.id))
        .select(import_rows::external_id);
    let missing: Vec<(i64, String, bool)> = records_t::table
        .inner_join(record_links::table.on(record_links::record_id.eq(records_t::id)))
        .filter(records_t::owner_source_id.eq(ctx.source.id))
        .filter(records_t::archived.eq(false))
        .filter(record_links::source_id.eq(ctx.source.id))
        .filter(diesel::dsl::not(record_links::external_id.eq_any(seen)))
        .select((
            records_t::id,
            record_links::external_id,
            records_t::missing_from_source,
        ))
        .load(conn)?;
    for (record_id, external_id, already) in missing {
        if !ctx.run.dry_run && !already {
            diesel::update(records_t::table.find(record_id))
                .set(records_t::missing_from_source.eq(true))
                .execute(conn)?;
        }
        let outcome = RowOutcome {
            external_id: external_id.clone(),
            outcome: "missing_from_source",
            record_id: Some(record_id),
            reason: format!("External id {external_id} was not in this full import: the record is flagged missing from source (nothing is deleted)."),
            // Undo clears only the flags this run set.
            owner_changed: !already,
            ..Default::default()
        };
        insert_row(conn, ctx.run.id, 0, &outcome)?;
    }
    Ok(())
}

/// Reverses an applied run: values it changed go back (unless edited since: reported, not
/// overwritten), records it created are archived and unlinked, conversions and links undone.
pub fn undo(conn: &mut DbConn, run_id: i64, by: &Actor) -> Result<Vec<String>, ImportError> {
    db::write_tx(conn, |conn| {
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
        let rows: Vec<ImportRow> = import_rows::table
            .filter(import_rows::run_id.eq(run_id))
            .filter(import_rows::record_id.is_not_null())
            .order(import_rows::line.desc())
            .select(ImportRow::as_select())
            .load(conn)?;
        let mut report = Vec::new();
        for row in rows {
            let Some(record_id) = row.record_id else {
                continue;
            };
            let Some(record) = records::find(conn, record_id)? else {
                continue;
            };
            if row.outcome == "missing_from_source" {
                if row.owner_changed {
                    diesel::update(records_t::table.find(record_id))
                        .set(records_t::missing_from_source.eq(false))
                        .execute(conn)?;
                }
                continue;
            }
            let defs = fields::list(conn, record.record_kind(), true)?;
            let current = records::values(conn, &record, &defs)?;
            let mut restore = Vec::new();
            for change in row.changes() {
                let now = current.get(&change.field).cloned().unwrap_or_default();
                if now == change.new {
                    if let Some(def) = defs.iter().find(|d| d.key == change.field) {
                        restore.push((def.clone(), change.old.clone()));
                    }
                } else {
                    report.push(format!(
                        "Line {}, record #{record_id} ({}), {}: left as '{}' because it was edited after the import (the import had set '{}').",
                        row.line, record.name, change.field, now, change.new
                    ));
                }
            }
            if row.record_created {
                records::set_flag(conn, record_id, RecordFlag::Archived, true, &actor)?;
            } else if !restore.is_empty() {
                records::write_values(conn, &record, &restore, &actor)?;
            }
            if row.link_added {
                diesel::delete(
                    record_links::table
                        .filter(record_links::record_id.eq(record_id))
                        .filter(record_links::source_id.eq(source.id))
                        .filter(record_links::external_id.eq(&row.external_id)),
                )
                .execute(conn)?;
            }
            if row.owner_changed || row.record_created {
                let fresh = records::find(conn, record_id)?.ok_or(DieselError::NotFound)?;
                let previous = match row.previous_owner.filter(|_| !row.record_created) {
                    Some(id) => records::source_name(conn, id)?.map(|n| (id, n)),
                    None => None,
                };
                records::set_owner(
                    conn,
                    &fresh,
                    previous.as_ref().map(|(id, n)| (*id, n.as_str())),
                    &actor,
                )?;
            }
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

/// Resolves an ambiguous row of a finished run: link it to one candidate, or create a record.
pub fn resolve_ambiguous(
    conn: &mut DbConn,
    row_id: i64,
    choice: Option<i64>,
    by: &Actor,
    country: PhoneCountry,
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
        let mapping = sources::mapping(conn, source.id)?;
        let actor = Actor {
            origin: "import",
            origin_id: Some(run.id),
            user_id: by.user_id,
            label: format!(
                "import run {} ({}), resolved by {}",
                run.id, source.name, by.label
            ),
        };
        let ctx = RunContext {
            header_len: 0,
            id_index: 0,
            columns: mapping
                .iter()
                .filter_map(|m| {
                    Some((
                        0,
                        m.column_name.clone(),
                        defs.iter().find(|d| d.key == m.field_key)?.clone(),
                        m.field_rule(),
                    ))
                })
                .collect(),
            kind,
            defs,
            country,
            actor,
            plan: BTreeMap::new(),
            source,
            run,
        };
        let values = row.values();
        let (record_id, outcome, changes, created, message) = match choice {
            Some(candidate) => {
                if !row.candidates().contains(&candidate) {
                    return Err(ImportError::Refused(format!(
                        "Record #{candidate} is not one of this line's candidates."
                    )));
                }
                let record = records::find(conn, candidate)?.ok_or(DieselError::NotFound)?;
                records::set_owner(
                    conn,
                    &record,
                    Some((ctx.source.id, &ctx.source.name)),
                    &ctx.actor,
                )?;
                add_link(conn, &ctx, candidate, &row.external_id)
                    .map_err(link_taken(&row.external_id))?;
                let record = records::find(conn, candidate)?.ok_or(DieselError::NotFound)?;
                let (changes, _) = apply_rules(conn, &ctx, &record, &values).map_err(row_end)?;
                (
                    candidate,
                    "converted",
                    changes,
                    false,
                    format!("Line {} linked to record #{candidate}.", row.line),
                )
            }
            None => {
                let (id, changes) =
                    create_record(conn, &ctx, &row.external_id, &values).map_err(row_end)?;
                (
                    id,
                    "created",
                    changes,
                    true,
                    format!("Line {}: new record #{id} created.", row.line),
                )
            }
        };
        diesel::update(import_rows::table.find(row_id))
            .set((
                import_rows::outcome.eq(outcome),
                import_rows::record_id.eq(Some(record_id)),
                import_rows::reason.eq(format!(
                    "{} Resolved by {}: {message}",
                    row.reason, by.label
                )),
                import_rows::changes.eq(json(&changes)),
                import_rows::record_created.eq(created),
                import_rows::link_added.eq(true),
                import_rows::owner_changed.eq(!created),
            ))
            .execute(conn)?;
        diesel::update(import_runs::table.find(row.run_id))
            .set(import_runs::counts.eq(counts_json(conn, row.run_id)?))
            .execute(conn)?;
        Ok(message)
    })
}

fn row_end(e: RowEnd) -> ImportError {
    match e {
        RowEnd::Db(db) => ImportError::Db(db),
        RowEnd::RolledBack(_) => ImportError::Refused("rolled back".into()),
    }
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

/// The run report as CSV: `line,external_id,outcome,record_id,reason,changes`, formula-safe.
pub fn report_csv(
    conn: &mut DbConn,
    run_id: i64,
    out: impl std::io::Write,
) -> Result<(), ImportError> {
    use crate::records::export::spreadsheet_safe;
    let mut writer = csv::Writer::from_writer(out);
    let csv_error = |e: csv::Error| ImportError::Refused(format!("cannot write the report: {e}"));
    writer
        .write_record([
            "line",
            "external_id",
            "outcome",
            "record_id",
            "reason",
            "changes",
        ])
        .map_err(csv_error)?;
    let mut after = -1i64;
    loop {
        let rows: Vec<ImportRow> = import_rows::table
            .filter(import_rows::run_id.eq(run_id))
            .filter(import_rows::id.gt(after))
            .order(import_rows::id.asc())
            .limit(1000)
            .select(ImportRow::as_select())
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            writer
                .write_record([
                    row.line.to_string(),
                    spreadsheet_safe(&row.external_id),
                    row.outcome.clone(),
                    row.record_id.map(|id| id.to_string()).unwrap_or_default(),
                    spreadsheet_safe(&row.reason),
                    spreadsheet_safe(&row.changes_text()),
                ])
                .map_err(csv_error)?;
        }
    }
    writer
        .flush()
        .map_err(|e| ImportError::Refused(format!("cannot write the report: {e}")))?;
    Ok(())
}
