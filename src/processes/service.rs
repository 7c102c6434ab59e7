//! Processes and applications: templates, instances, answers, drafts and submissions.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::model::{AnswerOrigin, Application, ApplicationStatus, Item, Process, Step, StepView};
pub use super::store::{
    answers, find, find_application, find_item, find_step, set_answer, stakeholders, ProcessError,
};
use crate::db::{self, DbConn};
use crate::fields::model::{split_options, FieldType, RecordKind};
use crate::fields::validate::{normalize, PhoneCountry};
use crate::links::service as links;
use crate::records::model::Actor;
use crate::records::service as records;
use crate::schema::{
    application_stakeholders, application_step_states, applications, process_items, process_steps,
    processes,
};

pub fn list(conn: &mut DbConn) -> QueryResult<Vec<Process>> {
    processes::table
        .order(processes::name.asc())
        .select(Process::as_select())
        .load(conn)
}

pub fn create(conn: &mut DbConn, name: &str, kind: RecordKind) -> Result<Process, ProcessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ProcessError::Invalid(
            "The process name is required (at most 100 characters).".into(),
        ));
    }
    let now = db::now();
    let id: i64 = diesel::insert_into(processes::table)
        .values((
            processes::name.eq(name),
            processes::kind.eq(kind.as_str()),
            processes::created_at.eq(now),
            processes::updated_at.eq(now),
        ))
        .returning(processes::id)
        .get_result(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ProcessError::Invalid(format!("A process named '{name}' already exists."))
            }
            other => other.into(),
        })?;
    find(conn, id)?.ok_or(ProcessError::NotFound("The process"))
}

pub fn add_step(
    conn: &mut DbConn,
    process_id: i64,
    title: &str,
    per_stakeholder: bool,
) -> Result<Step, ProcessError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ProcessError::Invalid("A step needs a title.".into()));
    }
    db::write_tx(conn, |conn| {
        find(conn, process_id)?.ok_or(ProcessError::NotFound("The process"))?;
        let last: Option<i32> = process_steps::table
            .filter(process_steps::process_id.eq(process_id))
            .select(diesel::dsl::max(process_steps::position))
            .first(conn)?;
        let id: i64 = diesel::insert_into(process_steps::table)
            .values((
                process_steps::process_id.eq(process_id),
                process_steps::position.eq(last.unwrap_or(0) + 1),
                process_steps::title.eq(title),
                process_steps::per_stakeholder.eq(per_stakeholder),
            ))
            .returning(process_steps::id)
            .get_result(conn)?;
        Ok(process_steps::table
            .find(id)
            .select(Step::as_select())
            .first(conn)?)
    })
}

/// What an admin types to add an item to a step.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub key: String,
    pub label: String,
    pub item_type: String,
    pub required: bool,
    pub options: String,
}

pub fn add_item(conn: &mut DbConn, step_id: i64, new: &NewItem) -> Result<Item, ProcessError> {
    let key = new.key.trim();
    let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && key.len() <= 40;
    if !valid_key {
        return Err(ProcessError::Invalid(format!(
            "The item key '{key}' must start with a lowercase letter and hold only lowercase letters, digits and _."
        )));
    }
    if new.label.trim().is_empty() {
        return Err(ProcessError::Invalid("An item needs a label.".into()));
    }
    let item_type = FieldType::parse(&new.item_type).ok_or_else(|| {
        ProcessError::Invalid(format!("'{}' is not an item type.", new.item_type))
    })?;
    let options = split_options(&new.options);
    if item_type == FieldType::List && options.is_empty() {
        return Err(ProcessError::Invalid(
            "A list item needs at least one option.".into(),
        ));
    }
    db::write_tx(conn, |conn| {
        let step: Step = process_steps::table
            .find(step_id)
            .select(Step::as_select())
            .first(conn)
            .optional()?
            .ok_or(ProcessError::NotFound("The step"))?;
        let taken: i64 = process_items::table
            .filter(process_items::process_id.eq(step.process_id))
            .filter(process_items::key.eq(key))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Err(ProcessError::Invalid(format!(
                "This process already has an item '{key}'."
            )));
        }
        let last: Option<i32> = process_items::table
            .filter(process_items::step_id.eq(step_id))
            .select(diesel::dsl::max(process_items::position))
            .first(conn)?;
        let id: i64 = diesel::insert_into(process_items::table)
            .values((
                process_items::process_id.eq(step.process_id),
                process_items::step_id.eq(step_id),
                process_items::position.eq(last.unwrap_or(0) + 1),
                process_items::key.eq(key),
                process_items::label.eq(new.label.trim()),
                process_items::item_type.eq(item_type.as_str()),
                process_items::required.eq(new.required),
                process_items::options.eq(options.join("\n")),
            ))
            .returning(process_items::id)
            .get_result(conn)?;
        find_item(conn, id)?.ok_or(ProcessError::NotFound("The item"))
    })
}

pub fn items_of(conn: &mut DbConn, process_id: i64) -> QueryResult<Vec<Item>> {
    process_items::table
        .filter(process_items::process_id.eq(process_id))
        .order((process_items::step_id.asc(), process_items::position.asc()))
        .select(Item::as_select())
        .load(conn)
}

pub fn steps(conn: &mut DbConn, process_id: i64) -> QueryResult<Vec<StepView>> {
    let steps: Vec<Step> = process_steps::table
        .filter(process_steps::process_id.eq(process_id))
        .order((process_steps::position.asc(), process_steps::id.asc()))
        .select(Step::as_select())
        .load(conn)?;
    let items = items_of(conn, process_id)?;
    Ok(steps
        .into_iter()
        .map(|step| {
            let mut own: Vec<Item> = items
                .iter()
                .filter(|i| i.step_id == step.id)
                .cloned()
                .collect();
            own.sort_by_key(|i| (i.position, i.id));
            StepView { step, items: own }
        })
        .collect())
}

// ---- applications ------------------------------------------------------------------------

pub fn applications_of_process(
    conn: &mut DbConn,
    process_id: i64,
) -> QueryResult<Vec<Application>> {
    applications::table
        .filter(applications::process_id.eq(process_id))
        .order(applications::id.desc())
        .limit(200)
        .select(Application::as_select())
        .load(conn)
}

/// Applications for a record, or in which it is a stakeholder.
pub fn applications_of_record(conn: &mut DbConn, record_id: i64) -> QueryResult<Vec<Application>> {
    let as_stakeholder = application_stakeholders::table
        .filter(application_stakeholders::contact_id.eq(record_id))
        .select(application_stakeholders::application_id);
    applications::table
        .filter(
            applications::record_id
                .eq(record_id)
                .or(applications::id.eq_any(as_stakeholder)),
        )
        .order(applications::id.desc())
        .select(Application::as_select())
        .load(conn)
}

pub fn submitted_steps(conn: &mut DbConn, application_id: i64) -> QueryResult<Vec<i64>> {
    application_step_states::table
        .filter(application_step_states::application_id.eq(application_id))
        .select(application_step_states::step_id)
        .load(conn)
}

/// Creates an application for a record, with its first stakeholders, pre-filled from records.
pub fn create_application(
    conn: &mut DbConn,
    process_id: i64,
    record_id: i64,
    stakeholders: &[(i64, String)],
    created_by: Option<i64>,
) -> Result<Application, ProcessError> {
    db::write_tx(conn, |conn| {
        let process = find(conn, process_id)?.ok_or(ProcessError::NotFound("The process"))?;
        let record = records::find(conn, record_id)?.ok_or(ProcessError::NotFound("The record"))?;
        if record.record_kind() != process.record_kind() {
            return Err(ProcessError::Invalid(format!(
                "The process {} is for {} records; #{record_id} is a {}.",
                process.name, process.kind, record.kind
            )));
        }
        let now = db::now();
        let id: i64 = diesel::insert_into(applications::table)
            .values((
                applications::process_id.eq(process_id),
                applications::record_id.eq(record_id),
                applications::status.eq(ApplicationStatus::Draft.as_str()),
                applications::created_by.eq(created_by),
                applications::created_at.eq(now),
                applications::updated_at.eq(now),
            ))
            .returning(applications::id)
            .get_result(conn)?;
        for (contact, role) in stakeholders {
            insert_stakeholder(conn, id, *contact, role)?;
        }
        links::prefill(conn, id)?;
        find_application(conn, id)?.ok_or(ProcessError::NotFound("The application"))
    })
}

fn insert_stakeholder(
    conn: &mut DbConn,
    application_id: i64,
    contact_id: i64,
    role: &str,
) -> Result<(), ProcessError> {
    let role = role.trim();
    if role.is_empty() {
        return Err(ProcessError::Invalid(
            "A stakeholder needs a role, such as applicant or partner.".into(),
        ));
    }
    let contact = records::find(conn, contact_id)?.ok_or(ProcessError::NotFound("The contact"))?;
    if contact.record_kind() != RecordKind::Contact {
        return Err(ProcessError::Invalid(format!(
            "Stakeholders are contacts; #{contact_id} is a {}.",
            contact.kind
        )));
    }
    diesel::insert_into(application_stakeholders::table)
        .values((
            application_stakeholders::application_id.eq(application_id),
            application_stakeholders::contact_id.eq(contact_id),
            application_stakeholders::role.eq(role),
        ))
        .execute(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ProcessError::Invalid(format!(
                    "{} is already a stakeholder as {role}.",
                    contact.name
                ))
            }
            other => other.into(),
        })?;
    Ok(())
}

/// Adds a stakeholder; their per-stakeholder items are pre-filled from their contact.
pub fn add_stakeholder(
    conn: &mut DbConn,
    application_id: i64,
    contact_id: i64,
    role: &str,
) -> Result<(), ProcessError> {
    db::write_tx(conn, |conn| {
        find_application(conn, application_id)?.ok_or(ProcessError::NotFound("The application"))?;
        insert_stakeholder(conn, application_id, contact_id, role)?;
        links::prefill(conn, application_id)?;
        Ok(())
    })
}

/// The key of one answer in forms and error maps.
pub fn answer_key(item_id: i64, stakeholder_id: i64) -> String {
    format!("{item_id}:{stakeholder_id}")
}

/// Saves typed answers of one step, validated by type. `submit` also checks required items,
/// marks the step submitted and sends linked answers to the records by their rules.
pub fn save_step(
    conn: &mut DbConn,
    application_id: i64,
    step_id: i64,
    typed: &BTreeMap<(i64, i64), String>,
    submit: bool,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Vec<String>, ProcessError> {
    db::write_tx(conn, |conn| {
        let application = find_application(conn, application_id)?
            .ok_or(ProcessError::NotFound("The application"))?;
        let step = find_step(conn, step_id)?
            .filter(|s| s.process_id == application.process_id)
            .ok_or(ProcessError::NotFound("The step"))?;
        let items: Vec<Item> = items_of(conn, application.process_id)?
            .into_iter()
            .filter(|i| i.step_id == step.id)
            .collect();
        let holders = stakeholders(conn, application_id)?;
        let targets: Vec<i64> = if step.per_stakeholder {
            holders.iter().map(|h| h.id).collect()
        } else {
            vec![0]
        };
        let existing = answers(conn, application_id)?;
        let mut errors = BTreeMap::new();
        let mut clean = Vec::new();
        for item in &items {
            for target in &targets {
                let key = (item.id, *target);
                let current = existing
                    .iter()
                    .find(|a| a.item_id == item.id && a.stakeholder_id == *target)
                    .map(|a| a.value.clone());
                let raw = match typed.get(&key) {
                    Some(raw) => raw.clone(),
                    None => current.clone().unwrap_or_default(),
                };
                let who = holders
                    .iter()
                    .find(|h| h.id == *target)
                    .map(|h| format!(" ({})", h.role))
                    .unwrap_or_default();
                match normalize(item.ftype(), &item.option_list(), &raw, country) {
                    Ok(value) if value.is_empty() && item.required && submit => {
                        errors.insert(
                            answer_key(item.id, *target),
                            format!("{}{who}: is required", item.label),
                        );
                    }
                    Ok(value) => {
                        if typed.contains_key(&key) && current.as_deref() != Some(value.as_str()) {
                            clean.push((item.id, *target, value));
                        }
                    }
                    Err(message) => {
                        errors.insert(
                            answer_key(item.id, *target),
                            format!("{}{who}: {message}", item.label),
                        );
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ProcessError::Answers(errors));
        }
        for (item_id, stakeholder_id, value) in clean {
            set_answer(
                conn,
                application_id,
                item_id,
                stakeholder_id,
                &value,
                AnswerOrigin::Typed,
            )?;
        }
        let mut summary = Vec::new();
        if submit {
            diesel::delete(
                application_step_states::table
                    .filter(application_step_states::application_id.eq(application_id))
                    .filter(application_step_states::step_id.eq(step_id)),
            )
            .execute(conn)?;
            diesel::insert_into(application_step_states::table)
                .values((
                    application_step_states::application_id.eq(application_id),
                    application_step_states::step_id.eq(step_id),
                    application_step_states::submitted_at.eq(db::now()),
                ))
                .execute(conn)?;
            summary = links::push(conn, &application, Some(step_id), actor)?;
        }
        diesel::update(applications::table.find(application_id))
            .set(applications::updated_at.eq(db::now()))
            .execute(conn)?;
        Ok(summary)
    })
}

/// Submits every step (required items checked) and marks the application submitted.
pub fn submit_application(
    conn: &mut DbConn,
    application_id: i64,
    actor: &Actor,
    country: PhoneCountry,
) -> Result<Vec<String>, ProcessError> {
    db::write_tx(conn, |conn| {
        let application = find_application(conn, application_id)?
            .ok_or(ProcessError::NotFound("The application"))?;
        let mut summary = Vec::new();
        for view in steps(conn, application.process_id)? {
            summary.extend(save_step(
                conn,
                application_id,
                view.step.id,
                &BTreeMap::new(),
                true,
                actor,
                country,
            )?);
        }
        let now = db::now();
        diesel::update(applications::table.find(application_id))
            .set((
                applications::status.eq(ApplicationStatus::Submitted.as_str()),
                applications::submitted_at.eq(Some(now)),
                applications::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(summary)
    })
}
