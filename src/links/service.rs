//! Data links: checks (types, kinds), pre-filling applications from records, and sending
//! submitted answers to records by the link's `to_record` rule.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::model::{split_roles, DataLink, DIRECTIONS};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::processes::model::{AnswerOrigin, Application, Item};
use crate::processes::store::{self as processes, ProcessError};
use crate::records::model::{Actor, Origin, RecordRow};
use crate::records::service as records;
use crate::review::service as review;
use crate::rules::{apply_rules, FieldRule, Rule};
use crate::schema::{application_answers, data_links};

/// A data link as an admin sets it.
#[derive(Debug, Clone)]
pub struct LinkInput {
    pub direction: String,
    pub record_kind: RecordKind,
    pub data_kind: String,
    pub item_id: i64,
    pub field_key: String,
    pub roles: String,
    pub to_record: Rule,
}

pub fn list(conn: &mut DbConn, process_id: i64) -> QueryResult<Vec<DataLink>> {
    data_links::table
        .filter(data_links::process_id.eq(process_id))
        .order(data_links::id.asc())
        .select(DataLink::as_select())
        .load(conn)
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<DataLink>> {
    data_links::table
        .find(id)
        .select(DataLink::as_select())
        .first(conn)
        .optional()
}

/// The item and the field must hold the same type (lists: every item option is a field
/// option); per-stakeholder items link to contact fields.
fn check(
    conn: &mut DbConn,
    process_id: i64,
    input: &LinkInput,
) -> Result<(Item, FieldDef), ProcessError> {
    if !DIRECTIONS.contains(&input.direction.as_str()) {
        return Err(ProcessError::Invalid(
            "Choose a direction: to_application, to_record or both.".into(),
        ));
    }
    let item = processes::find_item(conn, input.item_id)?
        .filter(|i| i.process_id == process_id)
        .ok_or(ProcessError::NotFound("The item"))?;
    let step =
        processes::find_step(conn, item.step_id)?.ok_or(ProcessError::NotFound("The step"))?;
    let process =
        processes::find(conn, process_id)?.ok_or(ProcessError::NotFound("The process"))?;
    let expected_kind = if step.per_stakeholder {
        RecordKind::Contact
    } else {
        process.record_kind()
    };
    if input.record_kind != expected_kind {
        return Err(ProcessError::Invalid(format!(
            "The item '{}' belongs to the step '{}', whose answers go to {} records: link it to a {} field.",
            item.label,
            step.title,
            expected_kind,
            expected_kind
        )));
    }
    let field = fields::list(conn, input.record_kind, false)?
        .into_iter()
        .find(|f| f.key == input.field_key)
        .ok_or_else(|| {
            ProcessError::Invalid(format!(
                "There is no active {} field '{}'.",
                input.record_kind, input.field_key
            ))
        })?;
    if item.ftype() != field.ftype() {
        return Err(ProcessError::Invalid(format!(
            "Type mismatch: the item '{}' is {} and the field '{}' is {}. A data link needs the same type on both sides.",
            item.label,
            item.ftype(),
            field.label,
            field.ftype()
        )));
    }
    if item.ftype() == FieldType::List {
        let field_options = field.option_list();
        let missing: Vec<String> = item
            .option_list()
            .into_iter()
            .filter(|o| !field_options.contains(o))
            .collect();
        if !missing.is_empty() {
            return Err(ProcessError::Invalid(format!(
                "The list item '{}' has options the field '{}' lacks: {}.",
                item.label,
                field.label,
                missing.join(", ")
            )));
        }
    }
    let is_document = item.ftype() == FieldType::Document;
    if (input.data_kind == "document") != is_document {
        return Err(ProcessError::Invalid(format!(
            "The data kind must be {} for a {} item.",
            if is_document {
                "document"
            } else {
                "information"
            },
            item.ftype()
        )));
    }
    Ok((item, field))
}

pub fn create(
    conn: &mut DbConn,
    process_id: i64,
    input: &LinkInput,
) -> Result<DataLink, ProcessError> {
    check(conn, process_id, input)?;
    let id: i64 = diesel::insert_into(data_links::table)
        .values((
            data_links::process_id.eq(process_id),
            data_links::direction.eq(&input.direction),
            data_links::record_kind.eq(input.record_kind.as_str()),
            data_links::data_kind.eq(&input.data_kind),
            data_links::item_id.eq(input.item_id),
            data_links::field_key.eq(&input.field_key),
            data_links::roles.eq(split_roles(&input.roles).join(", ")),
            data_links::to_record.eq(input.to_record.as_str()),
            data_links::created_at.eq(db::now()),
        ))
        .returning(data_links::id)
        .get_result(conn)?;
    find(conn, id)?.ok_or(ProcessError::NotFound("The data link"))
}

pub fn update(conn: &mut DbConn, id: i64, input: &LinkInput) -> Result<DataLink, ProcessError> {
    let link = find(conn, id)?.ok_or(ProcessError::NotFound("The data link"))?;
    check(conn, link.process_id, input)?;
    diesel::update(data_links::table.find(id))
        .set((
            data_links::direction.eq(&input.direction),
            data_links::record_kind.eq(input.record_kind.as_str()),
            data_links::data_kind.eq(&input.data_kind),
            data_links::item_id.eq(input.item_id),
            data_links::field_key.eq(&input.field_key),
            data_links::roles.eq(split_roles(&input.roles).join(", ")),
            data_links::to_record.eq(input.to_record.as_str()),
        ))
        .execute(conn)?;
    find(conn, id)?.ok_or(ProcessError::NotFound("The data link"))
}

pub fn delete(conn: &mut DbConn, id: i64) -> QueryResult<usize> {
    diesel::delete(data_links::table.find(id)).execute(conn)
}

/// The record each answer of an item goes to or comes from: the application's record for a
/// shared step, each concerned stakeholder's contact for a per-stakeholder step.
fn targets(
    conn: &mut DbConn,
    application: &Application,
    link: &DataLink,
    item: &Item,
) -> Result<Vec<(i64, RecordRow)>, DieselError> {
    let step = processes::find_step(conn, item.step_id)?.ok_or(DieselError::NotFound)?;
    let mut out = Vec::new();
    if step.per_stakeholder {
        for holder in processes::stakeholders(conn, application.id)? {
            if link.applies_to(&holder.role) {
                if let Some(record) = records::find(conn, holder.contact_id)? {
                    out.push((holder.id, record));
                }
            }
        }
    } else if let Some(record) = records::find(conn, application.record_id)? {
        out.push((0, record));
    }
    Ok(out)
}

/// Fills every linked item still without a typed answer from its record's field. Documents are
/// the same stored document, not a copy.
pub fn prefill(conn: &mut DbConn, application_id: i64) -> Result<usize, ProcessError> {
    let application = processes::find_application(conn, application_id)?
        .ok_or(ProcessError::NotFound("The application"))?;
    let existing = processes::answers(conn, application_id)?;
    let mut filled = 0;
    for link in list(conn, application.process_id)?
        .into_iter()
        .filter(DataLink::prefills)
    {
        let Some(item) = processes::find_item(conn, link.item_id)? else {
            continue;
        };
        let kind = link.record_kind;
        let defs = fields::list(conn, kind, true)?;
        for (stakeholder, record) in targets(conn, &application, &link, &item)? {
            let answered = existing.iter().any(|a| {
                a.item_id == item.id
                    && a.stakeholder_id == stakeholder
                    && (a.origin == AnswerOrigin::Typed || !a.value.is_empty())
            });
            if answered {
                continue;
            }
            let values = records::values(conn, &record, &defs)?;
            let value = values.get(&link.field_key).cloned().unwrap_or_default();
            if !value.is_empty() {
                processes::set_answer(
                    conn,
                    application_id,
                    item.id,
                    stakeholder,
                    &value,
                    AnswerOrigin::Prefill,
                )?;
                filled += 1;
            }
        }
    }
    Ok(filled)
}

/// Sends answers of linked items (of one step, or all) to their records by each link's rule:
/// written with history, turned into a proposal, or ignored. Returns what happened, in words.
pub fn push(
    conn: &mut DbConn,
    application: &Application,
    step_id: Option<i64>,
    by: &Actor,
) -> Result<Vec<String>, ProcessError> {
    let process = processes::find(conn, application.process_id)?
        .ok_or(ProcessError::NotFound("The process"))?;
    let actor = Actor {
        origin: Origin::Application,
        origin_id: Some(application.id),
        source_id: None,
        user_id: by.user_id,
        label: format!(
            "application #{} ({}) by {}",
            application.id, process.name, by.label
        ),
    };
    let answers: BTreeMap<(i64, i64), String> = application_answers::table
        .filter(application_answers::application_id.eq(application.id))
        .select((
            application_answers::item_id,
            application_answers::stakeholder_id,
            application_answers::value,
        ))
        .load::<(i64, i64, String)>(conn)?
        .into_iter()
        .map(|(item, holder, value)| ((item, holder), value))
        .collect();
    let mut summary = Vec::new();
    for link in list(conn, application.process_id)?
        .into_iter()
        .filter(DataLink::updates_record)
    {
        let Some(item) = processes::find_item(conn, link.item_id)? else {
            continue;
        };
        if step_id.is_some_and(|s| s != item.step_id) {
            continue;
        }
        let kind = link.record_kind;
        let defs = fields::list(conn, kind, false)?;
        let Some(def) = defs.iter().find(|d| d.key == link.field_key).cloned() else {
            continue;
        };
        for (stakeholder, record) in targets(conn, application, &link, &item)? {
            let Some(answer) = answers.get(&(item.id, stakeholder)) else {
                continue;
            };
            let current = records::values(conn, &record, &defs)?;
            let incoming: BTreeMap<String, String> = [(def.key.clone(), answer.clone())].into();
            let rule = FieldRule {
                field_key: def.key.clone(),
                rule: link.rule(),
                blanks_clear: false,
            };
            let result = apply_rules(&[rule], &current, &incoming);
            for (_, value) in result.writes {
                let changes =
                    records::write_values(conn, &record, &[(def.clone(), value.clone())], &actor)?;
                if !changes.is_empty() {
                    summary.push(format!("{} of {} set to {value}.", def.label, record.name));
                }
            }
            for (_, value) in result.proposals {
                let now = current.get(&def.key).cloned().unwrap_or_default();
                review::propose(conn, record.id, &def.key, &now, &value, &actor)?;
                summary.push(format!(
                    "{} of {}: {value} proposed for review.",
                    def.label, record.name
                ));
            }
        }
    }
    Ok(summary)
}
