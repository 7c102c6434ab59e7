//! Records: create, change, archive, force manual. Every changed value gets a history row,
//! whichever path (form, import, application, review) asked for it.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::model::{Actor, Change, HistoryEntry, LinkView, RecordInput, RecordRow};
use super::writer::{self, Edit, RecordState};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::{norm_text, normalize_for, PhoneCountry};
use crate::schema::{documents, record_history, record_links, records, source_fields, sources};

/// Field key -> message, shown next to each input.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}", .0.values().cloned().collect::<Vec<_>>().join(" "))]
    Invalid(FieldErrors),
    #[error("That record does not exist.")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DieselError),
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<RecordRow>> {
    records::table
        .find(id)
        .select(RecordRow::as_select())
        .first(conn)
        .optional()
}

/// Every value of the record by field key (built-in and custom, blank ones included).
pub fn values(
    conn: &mut DbConn,
    record: &RecordRow,
    defs: &[FieldDef],
) -> QueryResult<BTreeMap<String, String>> {
    Ok(writer::load_state(conn, record.id)?
        .map(|(_, state)| state.values(defs))
        .unwrap_or_default())
}

/// Fields that the owning source writes with rule `always`: read-only for people, with the
/// reason, unless the record is forced manual.
pub fn locked_fields(
    conn: &mut DbConn,
    record: &RecordRow,
) -> QueryResult<BTreeMap<String, String>> {
    let Some(source_id) = record.owner_source_id.filter(|_| !record.forced_manual) else {
        return Ok(BTreeMap::new());
    };
    let rows: Vec<(String, String)> = source_fields::table
        .inner_join(sources::table)
        .filter(source_fields::source_id.eq(source_id))
        .filter(source_fields::to_record.eq("always"))
        .select((source_fields::field_key, sources::name))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(key, source)| {
            let reason = format!(
                "Kept in step with {source} (rule: always). Force the record manual to edit it here."
            );
            (key, reason)
        })
        .collect())
}

/// Checks and normalises every value of `input` against the active fields of `kind`.
pub fn validate(
    conn: &mut DbConn,
    defs: &[FieldDef],
    input: &RecordInput,
    country: PhoneCountry,
) -> Result<Vec<(FieldDef, String)>, RecordError> {
    let mut errors = FieldErrors::new();
    let mut out = Vec::new();
    for (key, raw) in &input.values {
        let Some(def) = defs.iter().find(|d| &d.key == key && !d.archived) else {
            errors.insert(key.clone(), format!("There is no active field '{key}'."));
            continue;
        };
        match normalize_for(def, raw, country) {
            Ok(value) => {
                if def.ftype() == FieldType::Document && !value.is_empty() {
                    let id: i64 = value.parse().unwrap_or_default();
                    let exists: i64 = documents::table.find(id).count().get_result(conn)?;
                    if exists == 0 {
                        errors.insert(key.clone(), format!("{}: no document #{id}", def.label));
                        continue;
                    }
                }
                out.push((def.clone(), value));
            }
            Err(message) => {
                errors.insert(key.clone(), message);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(RecordError::Invalid(errors))
    }
}

fn check_company(
    conn: &mut DbConn,
    kind: RecordKind,
    company_id: Option<Option<i64>>,
) -> Result<(), RecordError> {
    let Some(Some(id)) = company_id else {
        return Ok(());
    };
    let mut errors = FieldErrors::new();
    if kind != RecordKind::Contact {
        errors.insert(
            "company".into(),
            "Only contacts belong to a company.".into(),
        );
    } else {
        let found: i64 = records::table
            .filter(records::id.eq(id))
            .filter(records::kind.eq(RecordKind::Company.as_str()))
            .filter(records::archived.eq(false))
            .count()
            .get_result(conn)?;
        if found == 0 {
            errors.insert(
                "company".into(),
                format!("Company: there is no company #{id}."),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordError::Invalid(errors))
    }
}

/// Creates a record from a form (or any other path); the history shows each initial value.
pub fn create(
    conn: &mut DbConn,
    kind: RecordKind,
    input: &RecordInput,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<RecordRow, RecordError> {
    db::write_tx(conn, |conn| {
        let defs = fields::list(conn, kind, false)?;
        let mut input = input.clone();
        input.values.entry("name".into()).or_default();
        let values = validate(conn, &defs, &input, country)?;
        check_company(conn, kind, input.company_id)?;
        let mut state = RecordState::blank(kind);
        for (def, value) in &values {
            state.set(def, value);
        }
        state.company_id = input.company_id.flatten();
        let written = writer::apply_one(conn, &Edit::create(state), actor)?;
        find(conn, written.record_id)?.ok_or(RecordError::NotFound)
    })
}

/// Changes values as a person asked. Fields locked by the owning source refuse a new value.
pub fn update(
    conn: &mut DbConn,
    id: i64,
    input: &RecordInput,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Vec<Change>, RecordError> {
    db::write_tx(conn, |conn| {
        let (record, state) = writer::load_state(conn, id)?.ok_or(RecordError::NotFound)?;
        let kind = record.record_kind();
        let defs = fields::list(conn, kind, false)?;
        let values = validate(conn, &defs, input, country)?;
        let locked = locked_fields(conn, &record)?;
        let mut errors = FieldErrors::new();
        for (def, value) in &values {
            let unchanged = state.get(def) == value;
            if let Some(reason) = locked.get(&def.key).filter(|_| !unchanged) {
                errors.insert(def.key.clone(), format!("{}: {reason}", def.label));
            }
        }
        if !errors.is_empty() {
            return Err(RecordError::Invalid(errors));
        }
        check_company(conn, kind, input.company_id)?;
        let mut edit = Edit::change(id, state);
        for (def, value) in &values {
            edit.after.set(def, value);
        }
        if let Some(company) = input.company_id {
            edit.after.company_id = company;
        }
        Ok(writer::apply_one(conn, &edit, actor)?.changes)
    })
}

/// A record from a form: `company` is the company as typed ("#id" or a name; blank for none),
/// ignored for companies.
pub fn create_typed(
    conn: &mut DbConn,
    kind: RecordKind,
    values: BTreeMap<String, String>,
    company: &str,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<RecordRow, RecordError> {
    let company_id = resolve_company(conn, company)?;
    let input = RecordInput {
        values,
        company_id: (kind == RecordKind::Contact).then_some(company_id),
    };
    create(conn, kind, &input, actor, country)
}

/// A form's changes to a record: `company` as typed, `None` to leave it (and for companies).
pub fn update_typed(
    conn: &mut DbConn,
    id: i64,
    values: BTreeMap<String, String>,
    company: Option<String>,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Vec<Change>, RecordError> {
    let record = find(conn, id)?.ok_or(RecordError::NotFound)?;
    let company_id = match company.filter(|_| record.record_kind() == RecordKind::Contact) {
        Some(typed) => Some(resolve_company(conn, &typed)?),
        None => None,
    };
    update(
        conn,
        id,
        &RecordInput { values, company_id },
        actor,
        country,
    )
}

/// Writes already-validated values, skipping those equal to the current value, with one
/// history row per changed value. Call inside a transaction.
pub fn write_values(
    conn: &mut DbConn,
    record: &RecordRow,
    values: &[(FieldDef, String)],
    actor: &Actor,
) -> QueryResult<Vec<Change>> {
    let (_, state) = writer::load_state(conn, record.id)?.ok_or(DieselError::NotFound)?;
    let mut edit = Edit::change(record.id, state);
    for (def, value) in values {
        edit.after.set(def, value);
    }
    Ok(writer::apply_one(conn, &edit, actor)?.changes)
}

/// Makes `source` (or nobody) the owner of a record, with history.
pub fn set_owner(
    conn: &mut DbConn,
    record: &RecordRow,
    source: Option<(i64, &str)>,
    actor: &Actor,
) -> QueryResult<()> {
    let (_, state) = writer::load_state(conn, record.id)?.ok_or(DieselError::NotFound)?;
    let mut edit = Edit::change(record.id, state);
    edit.after.owner_source_id = source.map(|(id, _)| id);
    writer::apply_one(conn, &edit, actor)?;
    Ok(())
}

/// A yes/no property of a record that people set, with history like any value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFlag {
    /// Hidden from lists; nothing is deleted.
    Archived,
    /// Imports link the record but never change its values.
    ForcedManual,
}

pub fn set_archived(
    conn: &mut DbConn,
    id: i64,
    archived: bool,
    actor: &Actor,
) -> Result<RecordRow, RecordError> {
    set_flag(conn, id, RecordFlag::Archived, archived, actor)
}

pub fn set_forced_manual(
    conn: &mut DbConn,
    id: i64,
    forced: bool,
    actor: &Actor,
) -> Result<RecordRow, RecordError> {
    set_flag(conn, id, RecordFlag::ForcedManual, forced, actor)
}

pub fn set_flag(
    conn: &mut DbConn,
    id: i64,
    flag: RecordFlag,
    value: bool,
    actor: &Actor,
) -> Result<RecordRow, RecordError> {
    db::write_tx(conn, |conn| {
        let (record, state) = writer::load_state(conn, id)?.ok_or(RecordError::NotFound)?;
        let mut edit = Edit::change(id, state);
        match flag {
            RecordFlag::ForcedManual => edit.after.forced_manual = value,
            RecordFlag::Archived => edit.after.archived = value,
        }
        if edit.after == edit.before {
            return Ok(record);
        }
        writer::apply_one(conn, &edit, actor)?;
        find(conn, id)?.ok_or(RecordError::NotFound)
    })
}

/// Newest first; ties (same second) by insertion order.
pub fn history_of(conn: &mut DbConn, record_id: i64, limit: i64) -> QueryResult<Vec<HistoryEntry>> {
    record_history::table
        .filter(record_history::record_id.eq(record_id))
        .order((record_history::changed_at.desc(), record_history::id.desc()))
        .limit(limit)
        .select(HistoryEntry::as_select())
        .load(conn)
}

pub fn links_of(conn: &mut DbConn, record_id: i64) -> QueryResult<Vec<LinkView>> {
    Ok(record_links::table
        .inner_join(sources::table)
        .filter(record_links::record_id.eq(record_id))
        .order(sources::name.asc())
        .select((sources::id, sources::name, record_links::external_id))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(source_id, source_name, external_id)| LinkView {
            source_id,
            source_name,
            external_id,
        })
        .collect())
}

/// The links of several records, by record, each record's by source name.
pub fn links_of_many(
    conn: &mut DbConn,
    record_ids: &[i64],
) -> QueryResult<BTreeMap<i64, Vec<LinkView>>> {
    let mut out: BTreeMap<i64, Vec<LinkView>> = BTreeMap::new();
    for part in record_ids.chunks(10_000) {
        let rows = record_links::table
            .inner_join(sources::table)
            .filter(record_links::record_id.eq_any(part))
            .order((record_links::record_id, sources::name.asc()))
            .select((
                record_links::record_id,
                sources::id,
                sources::name,
                record_links::external_id,
            ))
            .load::<(i64, i64, String, String)>(conn)?;
        for (record_id, source_id, source_name, external_id) in rows {
            out.entry(record_id).or_default().push(LinkView {
                source_id,
                source_name,
                external_id,
            });
        }
    }
    Ok(out)
}

/// Names of the given records, by id.
pub fn names_of(conn: &mut DbConn, ids: &[i64]) -> QueryResult<BTreeMap<i64, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(records::table
        .filter(crate::db::id_in(conn, "records.id", ids))
        .select((records::id, records::name))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Every source's name, by id (for owner columns and filters).
pub fn source_names(conn: &mut DbConn) -> QueryResult<BTreeMap<i64, String>> {
    Ok(sources::table
        .select((sources::id, sources::name))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// "manual", or the owning source's name.
pub fn owner_label(record: &RecordRow, sources: &BTreeMap<i64, String>) -> String {
    match record.owner_source_id {
        None => "manual".into(),
        Some(id) => sources
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("source {id}")),
    }
}

pub fn source_name(conn: &mut DbConn, source_id: i64) -> QueryResult<Option<String>> {
    sources::table
        .find(source_id)
        .select(sources::name)
        .first(conn)
        .optional()
}

/// The active contacts of a company, by name.
pub fn contacts_of(conn: &mut DbConn, company_id: i64) -> QueryResult<Vec<(i64, String)>> {
    records::table
        .filter(records::company_id.eq(company_id))
        .filter(records::archived.eq(false))
        .order((records::name_norm.asc(), records::id.asc()))
        .select((records::id, records::name))
        .load(conn)
}

/// Companies whose name starts with `prefix` (case-insensitive), for the company picker.
pub fn companies_named(
    conn: &mut DbConn,
    prefix: &str,
    limit: i64,
) -> QueryResult<Vec<(i64, String)>> {
    let pattern = format!("{}%", escape_like(&norm_text(prefix)));
    records::table
        .filter(records::kind.eq(RecordKind::Company.as_str()))
        .filter(records::archived.eq(false))
        .filter(records::name_norm.like(pattern).escape('\\'))
        .order((records::name_norm.asc(), records::id.asc()))
        .limit(limit)
        .select((records::id, records::name))
        .load(conn)
}

/// Finds the company a person typed: `#12`, or a name that only one company has.
pub fn resolve_company(conn: &mut DbConn, typed: &str) -> Result<Option<i64>, RecordError> {
    resolve_record(conn, RecordKind::Company, "company", typed)
}

/// Finds a record of `kind` from what a person typed: `#12` (optionally followed by its name),
/// or a name only one active record has. Errors are keyed by `field` for the form.
pub fn resolve_record(
    conn: &mut DbConn,
    kind: RecordKind,
    field: &str,
    typed: &str,
) -> Result<Option<i64>, RecordError> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(None);
    }
    let invalid = |message: String| {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_string(), message);
        RecordError::Invalid(errors)
    };
    let label = match kind {
        RecordKind::Company => "Company",
        RecordKind::Contact => "Contact",
    };
    if let Some(rest) = typed.strip_prefix('#') {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(id) = digits.parse::<i64>() {
            let found: i64 = records::table
                .filter(records::id.eq(id))
                .filter(records::kind.eq(kind.as_str()))
                .count()
                .get_result(conn)?;
            return if found == 1 {
                Ok(Some(id))
            } else {
                Err(invalid(format!("{label}: there is no {kind} #{id}.")))
            };
        }
    }
    let matches: Vec<i64> = records::table
        .filter(records::kind.eq(kind.as_str()))
        .filter(records::archived.eq(false))
        .filter(records::name_norm.eq(norm_text(typed)))
        .select(records::id)
        .limit(2)
        .load(conn)?;
    match matches.as_slice() {
        [one] => Ok(Some(*one)),
        [] => Err(invalid(format!("{label}: no {kind} is named '{typed}'."))),
        _ => Err(invalid(format!(
            "{label}: several {} are named '{typed}'; type #id instead (shown on the record page).",
            kind.plural()
        ))),
    }
}

pub fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
