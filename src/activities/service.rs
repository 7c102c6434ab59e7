//! Activities: log one (from the console, the API or a file), find its contact without
//! guessing, read a contact's timeline and the filtered list, export it. No HTTP here.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::mapping;
use super::model::{Activity, ActivityType, ContactRef, Logged, NewActivity};
use crate::db::{self, DbConn};
use crate::fields::model::RecordKind;
use crate::fields::validate::norm_text;
use crate::schema::{activities, activity_types, record_links, records, sources};

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    /// The activity cannot be logged as given (no such contact, type, ...): said in words.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// Longest subject, body and external id kept.
const MAX_SUBJECT: usize = 500;
const MAX_BODY: usize = 20_000;
const MAX_EXTERNAL_ID: usize = 255;

pub fn types(conn: &mut DbConn) -> QueryResult<Vec<ActivityType>> {
    activity_types::table
        .order((activity_types::builtin.desc(), activity_types::label.asc()))
        .select(ActivityType::as_select())
        .load(conn)
}

/// Adds an activity type (admin).
pub fn add_type(conn: &mut DbConn, key: &str, label: &str) -> Result<ActivityType, ActivityError> {
    let key = key.trim();
    let label = label.trim();
    crate::fields::service::validate_key(key).map_err(ActivityError::Invalid)?;
    if label.is_empty() || label.chars().count() > 100 {
        return Err(ActivityError::Invalid(
            "The label is required (at most 100 characters).".into(),
        ));
    }
    diesel::insert_into(activity_types::table)
        .values((
            activity_types::key.eq(key),
            activity_types::label.eq(label),
            activity_types::builtin.eq(false),
            activity_types::created_at.eq(db::now()),
        ))
        .execute(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                ActivityError::Invalid(format!("An activity type '{key}' already exists."))
            }
            other => other.into(),
        })?;
    Ok(ActivityType {
        key: key.into(),
        label: label.into(),
        builtin: false,
        created_at: db::now(),
    })
}

/// The contact a reference names, or why there is none to attach the activity to. With
/// `within`, only contacts linked to that source count, so one outside it is answered in the
/// same words as one that does not exist (a source's token learns nothing of other contacts).
pub fn resolve_contact(
    conn: &mut DbConn,
    contact: &ContactRef,
    within: Option<i64>,
) -> Result<i64, ActivityError> {
    let mut contacts = records::table
        .filter(records::kind.eq(RecordKind::Contact.as_str()))
        .filter(records::archived.eq(false))
        .select(records::id)
        .into_boxed();
    if let Some(source) = within {
        contacts = contacts.filter(diesel::dsl::exists(
            record_links::table
                .filter(record_links::source_id.eq(source))
                .filter(record_links::record_id.eq(records::id)),
        ));
    }
    let found: Vec<i64> = match contact {
        ContactRef::Id { id } => contacts.filter(records::id.eq(id)).load(conn)?,
        ContactRef::ExternalId {
            source_id,
            external_id,
        } => contacts
            .filter(
                records::id.eq_any(
                    record_links::table
                        .filter(record_links::source_id.eq(source_id))
                        .filter(record_links::external_id.eq(external_id.trim()))
                        .select(record_links::record_id),
                ),
            )
            .load(conn)?,
        ContactRef::Email { email } => contacts
            .filter(records::email_norm.eq(norm_text(email)))
            .filter(records::email_norm.ne(""))
            .limit(10)
            .load(conn)?,
    };
    let named = match contact {
        ContactRef::Id { id } => format!("contact #{id}"),
        ContactRef::ExternalId {
            source_id,
            external_id,
        } => format!("contact of source #{source_id} with the id '{external_id}'"),
        ContactRef::Email { email } => format!("contact with the email '{email}'"),
    };
    match found[..] {
        [id] => Ok(id),
        [] => Err(ActivityError::Invalid(format!(
            "There is no {named}: the activity was not logged."
        ))),
        _ => Err(ActivityError::Invalid(format!(
            "Several contacts match ({named}: {}): the activity was not logged; name the contact by id.",
            found
                .iter()
                .map(|id| format!("#{id}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Logs an activity on its contact. One with an external id already logged by the same sender
/// changes nothing and answers the one there.
pub fn log(conn: &mut DbConn, new: &NewActivity) -> Result<Logged, ActivityError> {
    log_within(conn, new, None)
}

/// `log` for a caller restricted to one source (a source's API token): the contact must be
/// linked to `within`, see `resolve_contact`.
pub fn log_within(
    conn: &mut DbConn,
    new: &NewActivity,
    within: Option<i64>,
) -> Result<Logged, ActivityError> {
    let external_id = new.external_id.trim();
    if external_id.chars().count() > MAX_EXTERNAL_ID {
        return Err(ActivityError::Invalid(format!(
            "The activity's id is longer than {MAX_EXTERNAL_ID} characters."
        )));
    }
    if !external_id.is_empty() {
        if let Some(id) = already_logged(conn, &new.sender, external_id)? {
            return Ok(Logged::AlreadyThere(id));
        }
    }
    let known_type: i64 = activity_types::table
        .filter(activity_types::key.eq(&new.activity_type))
        .count()
        .get_result(conn)?;
    if known_type == 0 {
        let known: Vec<String> = types(conn)?.into_iter().map(|t| t.key).collect();
        return Err(ActivityError::Invalid(format!(
            "'{}' is not an activity type: {}.",
            new.activity_type,
            known.join(", ")
        )));
    }
    if new.subject.chars().count() > MAX_SUBJECT || new.body.chars().count() > MAX_BODY {
        return Err(ActivityError::Invalid(format!(
            "The subject has at most {MAX_SUBJECT} characters and the body {MAX_BODY}."
        )));
    }
    if let Some(source) = new.source_id {
        // Else the insert fails on the foreign key, a 500 that says nothing.
        let known: i64 = sources::table.find(source).count().get_result(conn)?;
        if known == 0 {
            return Err(ActivityError::Invalid(format!(
                "There is no source #{source}: `source_id` must name a source of this console."
            )));
        }
    }
    let record_id = resolve_contact(conn, &new.contact, within)?;
    let attributes = serde_json::to_string(&new.attributes).unwrap_or_else(|_| "{}".into());
    let outcome = new.attributes.get("outcome").cloned().unwrap_or_default();
    // A source's mapping for this type writes the entry and updates fields.
    let mapping = match new.source_id {
        Some(source) => mapping::find(conn, source, &new.activity_type)?,
        None => None,
    };
    let (subject, body, updates) = match &mapping {
        Some(m) => {
            let mapped = mapping::apply_templates(
                &m.subject,
                &m.body,
                &m.updates(),
                &new.attributes,
                &new.subject,
                &new.body,
            )
            .map_err(|p| {
                ActivityError::Invalid(format!(
                    "The activity mapping of this source cannot write it: {p}."
                ))
            })?;
            let subject = Some(mapped.subject).filter(|s| !s.trim().is_empty());
            let body = Some(mapped.body).filter(|s| !s.trim().is_empty());
            (
                subject.unwrap_or_else(|| new.subject.clone()),
                body.unwrap_or_else(|| new.body.clone()),
                mapped.updates,
            )
        }
        None => (new.subject.clone(), new.body.clone(), Vec::new()),
    };
    let (subject, body) = (
        subject.chars().take(MAX_SUBJECT).collect::<String>(),
        body.chars().take(MAX_BODY).collect::<String>(),
    );
    let inserted = db::write_tx(conn, |conn| -> QueryResult<i64> {
        let id = diesel::insert_into(activities::table)
            .values((
                activities::record_id.eq(record_id),
                activities::activity_type.eq(&new.activity_type),
                activities::occurred_at.eq(new.occurred_at),
                activities::subject.eq(subject.trim()),
                activities::body.eq(body.trim()),
                activities::attributes.eq(&attributes),
                activities::outcome.eq(outcome.trim()),
                activities::source_id.eq(new.source_id),
                activities::sender.eq(&new.sender),
                activities::external_id.eq(external_id),
                activities::user_id.eq(new.user_id),
                activities::origin.eq(new.origin.as_str()),
                activities::origin_label.eq(&new.origin_label),
                activities::created_at.eq(db::now()),
            ))
            .returning(activities::id)
            .get_result::<i64>(conn)?;
        if let Some(source) = new.source_id.filter(|_| !updates.is_empty()) {
            let actor = mapping::actor(id, source, &new.origin_label);
            mapping::update_fields(conn, record_id, source, &updates, &actor)?;
        }
        Ok(id)
    });
    match inserted {
        Ok(id) => Ok(Logged::Created(id)),
        // The same activity sent twice at once: the first one won.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            already_logged(conn, &new.sender, external_id)?
                .map(Logged::AlreadyThere)
                .ok_or_else(|| ActivityError::Invalid("The activity could not be logged.".into()))
        }
        Err(e) => Err(e.into()),
    }
}

fn already_logged(conn: &mut DbConn, sender: &str, external_id: &str) -> QueryResult<Option<i64>> {
    activities::table
        .filter(activities::sender.eq(sender))
        .filter(activities::external_id.eq(external_id))
        .select(activities::id)
        .first(conn)
        .optional()
}

/// Where a page of activities stopped: the last one's time and id (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub at: NaiveDateTime,
    pub id: i64,
}

impl Before {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at.and_utc().timestamp(), self.id)
    }

    pub fn decode(token: &str) -> Option<Self> {
        let (at, id) = token.split_once('.')?;
        Some(Before {
            at: chrono::DateTime::from_timestamp(at.parse().ok()?, 0)?.naive_utc(),
            id: id.parse().ok()?,
        })
    }
}

/// An activity with its contact's name, as lists show it.
pub type ListedActivity = (Activity, String);

/// What the activities list selects.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub record_id: Option<i64>,
    pub activity_type: Option<String>,
    pub source_id: Option<i64>,
    /// From this time (inclusive) until this one (exclusive).
    pub from: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub outcome: Option<String>,
}

/// A page of activities, newest first, after `before`; with where the next page starts, if
/// there is one. Read in the order of an index (by contact, by type, or by time), so a page
/// costs its own rows.
pub fn page(
    conn: &mut DbConn,
    filter: &ActivityFilter,
    before: Option<Before>,
    limit: i64,
) -> QueryResult<(Vec<ListedActivity>, Option<Before>)> {
    let mut query = activities::table
        .inner_join(records::table)
        .select((Activity::as_select(), records::name))
        .into_boxed();
    if let Some(record) = filter.record_id {
        query = query.filter(activities::record_id.eq(record));
    }
    if let Some(kind) = &filter.activity_type {
        query = query.filter(activities::activity_type.eq(kind.clone()));
    }
    if let Some(source) = filter.source_id {
        query = query.filter(activities::source_id.eq(source));
    }
    if let Some(from) = filter.from {
        query = query.filter(activities::occurred_at.ge(from));
    }
    if let Some(until) = filter.until {
        query = query.filter(activities::occurred_at.lt(until));
    }
    if let Some(outcome) = &filter.outcome {
        query = query.filter(activities::outcome.eq(outcome.clone()));
    }
    if let Some(b) = before {
        // One row-value comparison: read as a range of the index, where an OR is not.
        query = query.filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(activities.occurred_at, activities.id) < (",
            )
            .bind::<diesel::sql_types::Timestamp, _>(b.at)
            .sql(", ")
            .bind::<diesel::sql_types::BigInt, _>(b.id)
            .sql(")"),
        );
    }
    let mut rows: Vec<(Activity, String)> = query
        .order((activities::occurred_at.desc(), activities::id.desc()))
        .limit(limit + 1)
        .load(conn)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = rows.last().filter(|_| more).map(|(last, _)| Before {
        at: last.occurred_at,
        id: last.id,
    });
    Ok((rows, next))
}

/// The list as CSV, every page of it, with constant memory.
pub fn export_csv(
    conn: &mut DbConn,
    filter: &ActivityFilter,
    out: impl std::io::Write,
) -> Result<(), crate::sync::engine::ImportError> {
    use crate::sync::engine::ImportError;
    let mut writer = crate::records::export::SafeCsv::new(out);
    let failed = |e: csv::Error| ImportError::Refused(format!("cannot write the export: {e}"));
    writer
        .row([
            "id",
            "occurred_at",
            "type",
            "contact_id",
            "contact",
            "subject",
            "body",
            "outcome",
            "attributes",
            "origin",
            "external_id",
        ])
        .map_err(failed)?;
    let mut before = None;
    loop {
        let (rows, next) = page(conn, filter, before, 1_000)?;
        for (a, name) in &rows {
            writer
                .row([
                    &a.id.to_string(),
                    &a.occurred_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    &a.activity_type,
                    &a.record_id.to_string(),
                    name,
                    &a.subject,
                    &a.body,
                    &a.outcome,
                    &a.attributes,
                    &a.origin_label,
                    &a.external_id,
                ])
                .map_err(failed)?;
        }
        if next.is_none() {
            break;
        }
        before = next;
    }
    writer
        .flush()
        .map_err(|e| ImportError::Refused(format!("cannot write the export: {e}")))?;
    Ok(())
}
