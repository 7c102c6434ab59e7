//! Records: create, change, archive, force manual. Every changed value gets a history row,
//! whichever path (form, import, application, review) asked for it.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::model::{Actor, Change, HistoryEntry, LinkView, RecordInput, RecordRow};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::{norm_phone, norm_text, normalize_for, PhoneCountry};
use crate::schema::{
    documents, record_history, record_links, record_values, records, source_fields, sources,
};

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

/// Custom values of one record: field id -> value.
fn custom_values(conn: &mut DbConn, record_id: i64) -> QueryResult<BTreeMap<i64, String>> {
    Ok(record_values::table
        .filter(record_values::record_id.eq(record_id))
        .select((record_values::field_id, record_values::value))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Every value of the record by field key (built-in and custom, blank ones included).
pub fn values(
    conn: &mut DbConn,
    record: &RecordRow,
    defs: &[FieldDef],
) -> QueryResult<BTreeMap<String, String>> {
    let custom = custom_values(conn, record.id)?;
    Ok(defs
        .iter()
        .map(|def| {
            let value = match record.builtin_value(&def.key) {
                Some(v) if def.builtin => v.to_string(),
                _ => custom.get(&def.id).cloned().unwrap_or_default(),
            };
            (def.key.clone(), value)
        })
        .collect())
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
        let now = db::now();
        let id: i64 = diesel::insert_into(records::table)
            .values((
                records::kind.eq(kind.as_str()),
                records::name.eq(""),
                records::name_norm.eq(""),
                records::company_id.eq(input.company_id.flatten()),
                records::created_at.eq(now),
                records::updated_at.eq(now),
            ))
            .returning(records::id)
            .get_result(conn)?;
        let record = find(conn, id)?.ok_or(RecordError::NotFound)?;
        write_values(conn, &record, &values, actor)?;
        if let Some(company) = input.company_id.flatten() {
            history(conn, id, "company", None, Some(company.to_string()), actor)?;
        }
        find(conn, id)?.ok_or(RecordError::NotFound)
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
        let record = find(conn, id)?.ok_or(RecordError::NotFound)?;
        let kind = record.record_kind();
        let defs = fields::list(conn, kind, false)?;
        let values = validate(conn, &defs, input, country)?;
        let current = self::values(conn, &record, &defs)?;
        let locked = locked_fields(conn, &record)?;
        let mut errors = FieldErrors::new();
        for (def, value) in &values {
            let unchanged = current.get(&def.key).is_some_and(|c| c == value);
            if let Some(reason) = locked.get(&def.key).filter(|_| !unchanged) {
                errors.insert(def.key.clone(), format!("{}: {reason}", def.label));
            }
        }
        if !errors.is_empty() {
            return Err(RecordError::Invalid(errors));
        }
        check_company(conn, kind, input.company_id)?;
        let mut changes = write_values(conn, &record, &values, actor)?;
        if let Some(company) = input.company_id.filter(|c| *c != record.company_id) {
            diesel::update(records::table.find(id))
                .set((
                    records::company_id.eq(company),
                    records::updated_at.eq(db::now()),
                ))
                .execute(conn)?;
            let old = record.company_id.map(|c| c.to_string());
            let new = company.map(|c| c.to_string());
            history(conn, id, "company", old.clone(), new.clone(), actor)?;
            changes.push(Change {
                field_key: "company".into(),
                old: old.unwrap_or_default(),
                new: new.unwrap_or_default(),
            });
        }
        Ok(changes)
    })
}

/// Writes already-validated values, skipping those equal to the current value, with one
/// history row per changed value. Call inside a transaction.
pub fn write_values(
    conn: &mut DbConn,
    record: &RecordRow,
    values: &[(FieldDef, String)],
    actor: &Actor,
) -> QueryResult<Vec<Change>> {
    let custom = custom_values(conn, record.id)?;
    let mut changes = Vec::new();
    for (def, new) in values {
        let old = match record.builtin_value(&def.key) {
            Some(v) if def.builtin => v.to_string(),
            _ => custom.get(&def.id).cloned().unwrap_or_default(),
        };
        if &old == new {
            continue;
        }
        if def.builtin {
            write_builtin(conn, record.id, &def.key, new)?;
        } else {
            diesel::delete(
                record_values::table
                    .filter(record_values::record_id.eq(record.id))
                    .filter(record_values::field_id.eq(def.id)),
            )
            .execute(conn)?;
            if !new.is_empty() {
                diesel::insert_into(record_values::table)
                    .values((
                        record_values::record_id.eq(record.id),
                        record_values::field_id.eq(def.id),
                        record_values::value.eq(new),
                    ))
                    .execute(conn)?;
            }
        }
        let as_option = |v: &str| (!v.is_empty()).then(|| v.to_string());
        history(
            conn,
            record.id,
            &def.key,
            as_option(&old),
            as_option(new),
            actor,
        )?;
        changes.push(Change {
            field_key: def.key.clone(),
            old,
            new: new.clone(),
        });
    }
    if !changes.is_empty() {
        diesel::update(records::table.find(record.id))
            .set(records::updated_at.eq(db::now()))
            .execute(conn)?;
    }
    Ok(changes)
}

fn write_builtin(conn: &mut DbConn, id: i64, key: &str, value: &str) -> QueryResult<usize> {
    let target = records::table.find(id);
    match key {
        "name" => diesel::update(target)
            .set((
                records::name.eq(value),
                records::name_norm.eq(norm_text(value)),
            ))
            .execute(conn),
        "email" => diesel::update(target)
            .set((
                records::email.eq(value),
                records::email_norm.eq(norm_text(value)),
            ))
            .execute(conn),
        "phone" => diesel::update(target)
            .set((
                records::phone.eq(value),
                records::phone_norm.eq(norm_phone(value)),
            ))
            .execute(conn),
        "registration_number" => diesel::update(target)
            .set(records::registration_number.eq(value))
            .execute(conn),
        "address" => diesel::update(target)
            .set(records::address.eq(value))
            .execute(conn),
        _ => Ok(0),
    }
}

/// Appends one history row.
pub fn history(
    conn: &mut DbConn,
    record_id: i64,
    field_key: &str,
    old: Option<String>,
    new: Option<String>,
    actor: &Actor,
) -> QueryResult<usize> {
    diesel::insert_into(record_history::table)
        .values((
            record_history::record_id.eq(record_id),
            record_history::field_key.eq(field_key),
            record_history::old_value.eq(old),
            record_history::new_value.eq(new),
            record_history::origin.eq(actor.origin),
            record_history::origin_id.eq(actor.origin_id),
            record_history::actor_id.eq(actor.user_id),
            record_history::actor_label.eq(&actor.label),
            record_history::changed_at.eq(db::now()),
        ))
        .execute(conn)
}

/// A history row for a change of owner (`None`: manual).
pub fn history_owner(
    conn: &mut DbConn,
    record_id: i64,
    old: Option<&str>,
    new: Option<&str>,
    actor: &Actor,
) -> QueryResult<usize> {
    let label = |owner: Option<&str>| Some(owner.unwrap_or("manual").to_string());
    history(conn, record_id, "owner", label(old), label(new), actor)
}

/// Makes `source` (or nobody) the owner of a record, with history.
pub fn set_owner(
    conn: &mut DbConn,
    record: &RecordRow,
    source: Option<(i64, &str)>,
    actor: &Actor,
) -> QueryResult<()> {
    let old_name = match record.owner_source_id {
        Some(id) => source_name(conn, id)?,
        None => None,
    };
    diesel::update(records::table.find(record.id))
        .set((
            records::owner_source_id.eq(source.map(|(id, _)| id)),
            records::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    history_owner(
        conn,
        record.id,
        old_name.as_deref(),
        source.map(|(_, n)| n),
        actor,
    )?;
    Ok(())
}

fn yes_no(flag: bool) -> Option<String> {
    Some(if flag { "yes" } else { "no" }.to_string())
}

/// A yes/no property of a record that people set, with history like any value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFlag {
    /// Hidden from lists; nothing is deleted.
    Archived,
    /// Imports link the record but never change its values.
    ForcedManual,
}

impl RecordFlag {
    fn key(self) -> &'static str {
        match self {
            Self::Archived => "archived",
            Self::ForcedManual => "forced_manual",
        }
    }
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
        let record = find(conn, id)?.ok_or(RecordError::NotFound)?;
        let current = match flag {
            RecordFlag::ForcedManual => record.forced_manual,
            RecordFlag::Archived => record.archived,
        };
        if current == value {
            return Ok(record);
        }
        let target = records::table.find(id);
        let now = db::now();
        match flag {
            RecordFlag::ForcedManual => diesel::update(target)
                .set((
                    records::forced_manual.eq(value),
                    records::updated_at.eq(now),
                ))
                .execute(conn)?,
            RecordFlag::Archived => diesel::update(target)
                .set((records::archived.eq(value), records::updated_at.eq(now)))
                .execute(conn)?,
        };
        history(conn, id, flag.key(), yes_no(current), yes_no(value), actor)?;
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

/// Names of the given records, by id.
pub fn names_of(conn: &mut DbConn, ids: &[i64]) -> QueryResult<BTreeMap<i64, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(records::table
        .filter(records::id.eq_any(ids))
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
