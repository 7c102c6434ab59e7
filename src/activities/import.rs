//! Activities from files: a source that carries activities maps its columns to the contact
//! (console id, email, or the external id of a contact source), the type, the time, the
//! subject, the body and attributes. Each row logs one activity, once: its id column is the
//! activity's own id, so a file imported again changes nothing. A row whose contact is not
//! found, or found several times, is reported and logged nowhere. Chunked like record imports:
//! a few queries per chunk, none per row; the activity mapping's templates and field updates
//! apply as they do to activities sent through the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::mapping::{self, ActivityMapping, FieldUpdate};
use super::model::ActivityOrigin;
use crate::db::{self, DbConn};
use crate::fields::model::RecordKind;
use crate::fields::validate::norm_text;
use crate::records::model::{Actor, Origin};
use crate::records::writer::Catalog;
use crate::schema::{activities, activity_mappings, activity_types, record_links, records};
use crate::sources::model::{
    column_index, quoted_headers, same_column, ColumnValue, Mapping, Source,
};
use crate::sources::propose::{column_sample, key_from_header, ProposedLine};
use crate::sync::claims::claimant_of;
use crate::sync::csvfile::{self, FileError, FileFormat};
use crate::sync::engine::{count_rows, resume_state, ImportError, CHUNK_ROWS};
use crate::sync::model::{ImportRun, Outcome};
use crate::sync::plan::{error_row, RowOutcome};
use crate::sync::write::{counts_after, refused_row, save_report, RunProgress, StepTransaction};

/// Where a mapped column goes in an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    ContactId,
    ContactEmail,
    ContactExternalId,
    Type,
    OccurredAt,
    Subject,
    Body,
    /// Kept with the activity; a variable of its mapping's templates.
    Attribute(String),
}

/// The parts of an activity a column can fill, with their labels; any other key names an
/// attribute.
pub const TARGETS: [(&str, &str); 7] = [
    ("contact_id", "Contact: the console's id"),
    ("contact_email", "Contact: email"),
    ("contact_external_id", "Contact: id in the contact source"),
    ("type", "Activity type"),
    ("occurred_at", "Time"),
    ("subject", "Subject"),
    ("body", "Body"),
];

impl Target {
    pub fn parse(key: &str) -> Result<Self, String> {
        Ok(match key.trim() {
            "contact_id" => Target::ContactId,
            "contact_email" => Target::ContactEmail,
            "contact_external_id" => Target::ContactExternalId,
            "type" => Target::Type,
            "occurred_at" => Target::OccurredAt,
            "subject" => Target::Subject,
            "body" => Target::Body,
            other => {
                crate::fields::service::validate_key(other).map_err(|problem| {
                    format!("'{other}' is neither a part of an activity nor an attribute name: {problem}")
                })?;
                Target::Attribute(other.to_string())
            }
        })
    }
}

/// The names files give each part of an activity and the dialers' usual attributes, as
/// header keys (`key_from_header`); the first column that has one takes it.
const KNOWN_HEADERS: [(&str, &[&str]); 14] = [
    ("contact_id", &["contact_id", "record_id"]),
    (
        "contact_email",
        &[
            "email",
            "e_mail",
            "contact_email",
            "email_address",
            "courriel",
        ],
    ),
    (
        "contact_external_id",
        &[
            "contact_external_id",
            "customer_id",
            "client_id",
            "external_id",
            "crm_id",
            "account_id",
        ],
    ),
    ("type", &["type", "activity_type"]),
    (
        "occurred_at",
        &[
            "occurred_at",
            "date",
            "time",
            "date_time",
            "datetime",
            "timestamp",
            "start_time",
            "call_date",
            "call_time",
            "started_at",
        ],
    ),
    ("subject", &["subject", "title"]),
    ("body", &["body", "notes", "note", "description"]),
    (
        "outcome",
        &["outcome", "call_outcome", "disposition", "result"],
    ),
    ("comments", &["comments", "comment", "agent_comments"]),
    (
        "email_subject",
        &[
            "email_subject",
            "email_template_subject",
            "template_subject",
        ],
    ),
    ("wrap_time", &["wrap_time", "wrap_up_time", "wrapup_time"]),
    ("list_name", &["list_name", "list", "campaign"]),
    ("duration", &["duration", "call_duration", "talk_time"]),
    ("caller_id", &["caller_id", "callerid", "ani"]),
];

/// A mapping proposed for a file of activities: each column to the part or standard variable
/// its header names, any other kept as an attribute named after it. The id column is the
/// source's own and is not mapped.
pub fn propose(headers: &[String], rows: &[Vec<String>], id_column: &str) -> Vec<ProposedLine> {
    let mut taken: HashSet<&str> = HashSet::new();
    let mut lines = Vec::new();
    for (index, header) in headers.iter().enumerate() {
        if header.trim().is_empty() || same_column(header, id_column) {
            continue;
        }
        let key = key_from_header(header);
        let known = KNOWN_HEADERS
            .iter()
            .find(|(target, names)| !taken.contains(target) && names.contains(&key.as_str()))
            .map(|(target, _)| *target);
        let (field_key, why) = match known {
            Some(target) => {
                taken.insert(target);
                let what = TARGETS
                    .iter()
                    .find(|(k, _)| *k == target)
                    .map(|(_, label)| label.to_string())
                    .unwrap_or_else(|| format!("the variable {{{{ {target} }}}}"));
                (target.to_string(), format!("The header names {what}."))
            }
            None => (
                key.clone(),
                format!("Kept with each activity as the attribute {{{{ {key} }}}}."),
            ),
        };
        let sample = column_sample(rows, index);
        lines.push(ProposedLine {
            column: header.trim().to_string(),
            field_key: Some(field_key),
            why,
            sample,
            new_field: None,
        });
    }
    lines
}

/// How a file's rows name their contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContactBy {
    Id,
    Email,
    /// The external id of this contact source.
    ExternalId(i64),
}

impl ContactBy {
    fn describe(self, key: &str) -> String {
        match self {
            ContactBy::Id => format!("contact #{key}"),
            ContactBy::Email => format!("contact with the email '{key}'"),
            ContactBy::ExternalId(source) => {
                format!("contact of source #{source} with the id '{key}'")
            }
        }
    }
}

/// Where each part of an activity is in a file.
struct Columns {
    id: usize,
    contact: (ContactBy, ColumnValue, String),
    activity_type: Option<ColumnValue>,
    occurred_at: Option<(ColumnValue, String)>,
    subject: Option<ColumnValue>,
    body: Option<ColumnValue>,
    attributes: Vec<(String, ColumnValue)>,
}

impl Columns {
    /// The columns of a file with these headers, or why its rows cannot be logged.
    fn of(source: &Source, mapping: &[Mapping], headers: &[String]) -> Result<Self, String> {
        let id = column_index(headers, &source.id_column).ok_or_else(|| {
            format!(
                "The file has no column '{}' (each activity's own id). Its columns are: {}. Nothing was imported.",
                source.id_column,
                quoted_headers(headers)
            )
        })?;
        let mut found: Vec<(Target, ColumnValue, String)> = Vec::new();
        for line in mapping {
            let (Ok(target), Some(value)) = (
                Target::parse(&line.field_key),
                ColumnValue::resolve(&line.column_name, headers),
            ) else {
                continue;
            };
            found.push((target, value, line.column_name.clone()));
        }
        let take = |wanted: &Target| {
            found
                .iter()
                .find(|(t, _, _)| t == wanted)
                .map(|(_, v, c)| (v.clone(), c.clone()))
        };
        // The most precise reference the file has.
        let contact = if let Some((v, c)) = take(&Target::ContactId) {
            (ContactBy::Id, v, c)
        } else if let Some((v, c)) = take(&Target::ContactExternalId) {
            let from = source.contacts_from.ok_or_else(|| {
                format!("The column '{c}' holds contacts' ids in another source, but this source's settings name no contact source. Nothing was imported.")
            })?;
            (ContactBy::ExternalId(from), v, c)
        } else if let Some((v, c)) = take(&Target::ContactEmail) {
            (ContactBy::Email, v, c)
        } else {
            return Err(format!(
                "No column of this file names the contact: map one to contact_id, contact_email or contact_external_id. Its columns are: {}. Nothing was imported.",
                quoted_headers(headers)
            ));
        };
        let activity_type = take(&Target::Type).map(|(v, _)| v);
        if activity_type.is_none() && source.activity_type.is_empty() {
            return Err(
                "No column of this file gives the activity type and the source has no default type: map a column to type, or choose the type in the source's settings. Nothing was imported."
                    .into(),
            );
        }
        Ok(Columns {
            id,
            contact,
            activity_type,
            occurred_at: take(&Target::OccurredAt),
            subject: take(&Target::Subject).map(|(v, _)| v),
            body: take(&Target::Body).map(|(v, _)| v),
            attributes: found
                .iter()
                .filter_map(|(t, v, _)| match t {
                    Target::Attribute(name) => Some((name.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        })
    }
}

/// Why a file with these headers cannot be imported through a source of activities, if not.
pub fn columns_problem(source: &Source, mapping: &[Mapping], headers: &[String]) -> Option<String> {
    Columns::of(source, mapping, headers).err()
}

/// Longest subject and body kept (as for activities logged one by one).
const MAX_SUBJECT: usize = 500;
const MAX_BODY: usize = 20_000;

/// A row that passed the checks that need no database.
struct ReadyActivity {
    line: i64,
    external_id: String,
    /// The contact reference, normalised as it is looked up.
    contact: String,
    activity_type: String,
    occurred_at: NaiveDateTime,
    subject: String,
    body: String,
    attributes: BTreeMap<String, String>,
}

/// A time as files write it: `2026-11-30 14:05[:09]`, with a `T`, with a zone
/// (`2026-11-30T14:05:09Z`, `+01:00`: kept in UTC), or a date alone (midnight).
pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.naive_utc().trunc_subsecs(0));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.trunc_subsecs(0));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
}

/// What a run needs to read every row the same way.
struct Reading<'a> {
    columns: Columns,
    default_type: &'a str,
    known_types: &'a HashSet<String>,
    started: NaiveDateTime,
}

fn read_row(
    reading: &Reading<'_>,
    line: i64,
    row: &csv::StringRecord,
) -> Result<ReadyActivity, Box<RowOutcome>> {
    let columns = &reading.columns;
    let external_id = row.get(columns.id).unwrap_or("").trim().to_string();
    let fail = |reason: String| {
        Box::new(error_row(
            line,
            &external_id,
            format!("Line {line}: {reason}"),
        ))
    };
    if external_id.is_empty() {
        return Err(fail(
            "the activity's id is empty; without it the activity could be logged twice, so it was not logged.".into(),
        ));
    }
    if external_id.chars().count() > 255 {
        return Err(fail(
            "the activity's id is longer than 255 characters.".into(),
        ));
    }
    let (by, value, column) = &columns.contact;
    let raw_contact = value.read(row);
    let contact = match by {
        ContactBy::Email => norm_text(&raw_contact),
        _ => raw_contact.trim().to_string(),
    };
    if contact.is_empty() {
        return Err(fail(format!(
            "the column '{column}' is empty: no contact to log the activity on."
        )));
    }
    if *by == ContactBy::Id && contact.parse::<i64>().is_err() {
        return Err(fail(format!(
            "column '{column}': '{contact}' is not a contact id (a number)."
        )));
    }
    let activity_type = match &columns.activity_type {
        Some(value) => norm_text(&value.read(row)),
        None => String::new(),
    };
    let activity_type = if activity_type.is_empty() {
        reading.default_type.to_string()
    } else {
        activity_type
    };
    if !reading.known_types.contains(&activity_type) {
        let mut known: Vec<&str> = reading.known_types.iter().map(String::as_str).collect();
        known.sort_unstable();
        return Err(fail(format!(
            "'{activity_type}' is not an activity type: {}.",
            known.join(", ")
        )));
    }
    let occurred_at = match &columns.occurred_at {
        None => reading.started,
        Some((value, column)) => {
            let text = value.read(row);
            parse_time(&text).ok_or_else(|| {
                fail(format!(
                    "column '{column}': '{}' is not a time written as 2026-11-30 14:05 (or 2026-11-30T14:05:00Z, or a date alone).",
                    text.trim()
                ))
            })?
        }
    };
    let read = |value: &Option<ColumnValue>| {
        value
            .as_ref()
            .map(|v| v.read(row).trim().to_string())
            .unwrap_or_default()
    };
    let (subject, body) = (read(&columns.subject), read(&columns.body));
    if subject.chars().count() > MAX_SUBJECT || body.chars().count() > MAX_BODY {
        return Err(fail(format!(
            "the subject has at most {MAX_SUBJECT} characters and the body {MAX_BODY}."
        )));
    }
    let attributes = columns
        .attributes
        .iter()
        .map(|(name, value)| (name.clone(), value.read(row).trim().to_string()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    Ok(ReadyActivity {
        line,
        external_id,
        contact,
        activity_type,
        occurred_at,
        subject,
        body,
        attributes,
    })
}

#[derive(Insertable)]
#[diesel(table_name = activities, treat_none_as_default_value = false)]
struct NewActivityRow {
    record_id: i64,
    activity_type: String,
    occurred_at: NaiveDateTime,
    subject: String,
    body: String,
    attributes: String,
    outcome: String,
    source_id: Option<i64>,
    sender: String,
    external_id: String,
    user_id: Option<i64>,
    origin: &'static str,
    origin_label: String,
    created_at: NaiveDateTime,
}

/// A run of a source of activities, from the values every chunk shares.
struct ActivityRun<'a> {
    run: &'a ImportRun,
    source: &'a Source,
    reading: Reading<'a>,
    /// Whose external ids these are: the same as the source's API pushes.
    sender: String,
    mappings: HashMap<String, ActivityMapping>,
    catalog: Catalog,
    defs: Vec<crate::fields::model::FieldDef>,
    actor: Actor,
    claimant: String,
    counts: BTreeMap<String, i64>,
    /// Activity ids seen in this file, with their first line.
    seen: HashMap<String, i64>,
    /// Those first seen in the chunk being written: forgotten if it rolls back.
    seen_in_chunk: Vec<String>,
}

/// Runs a claimed run of a source of activities to its end.
pub fn run_file(
    conn: &mut DbConn,
    run: &ImportRun,
    source: &Source,
    path: &Path,
    format: FileFormat,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BTreeMap<String, i64>, ImportError> {
    let mut reader = csvfile::open(path, format)?;
    let headers = csvfile::headers(&mut reader)?;
    let mapping = crate::sources::service::mapping(conn, source.id)?;
    let columns = Columns::of(source, &mapping, &headers).map_err(ImportError::NoKey)?;
    let known_types: HashSet<String> = activity_types::table
        .select(activity_types::key)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let mappings = activity_mappings::table
        .filter(activity_mappings::source_id.eq(source.id))
        .select(ActivityMapping::as_select())
        .load(conn)?
        .into_iter()
        .map(|m| (m.activity_type.clone(), m))
        .collect();
    let total = count_rows(path, format)?;
    diesel::update(crate::schema::import_runs::table.find(run.id))
        .set(crate::schema::import_runs::rows_total.eq(i64::try_from(total).unwrap_or(i64::MAX)))
        .execute(conn)?;
    let (_, counts, done_lines) = resume_state(conn, run.id)?;
    let mut this = ActivityRun {
        run,
        source,
        reading: Reading {
            columns,
            default_type: &source.activity_type,
            known_types: &known_types,
            started: run.started_at.unwrap_or_else(db::now),
        },
        sender: format!("source:{}", source.id),
        mappings,
        catalog: Catalog::load(conn)?,
        defs: crate::fields::service::list(conn, RecordKind::Contact, false)?,
        actor: Actor {
            origin: Origin::Import,
            origin_id: Some(run.id),
            source_id: Some(source.id),
            user_id: run.started_by,
            label: format!("import run {} ({})", run.id, source.name),
        },
        claimant: claimant_of(conn, run.id)?.unwrap_or_default(),
        counts,
        seen: HashMap::new(),
        seen_in_chunk: Vec::new(),
    };
    let mut tx = StepTransaction::default();
    let result = (|| -> Result<(), ImportError> {
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        let mut rows_done = 0u64;
        for record in reader.records() {
            let record = record.map_err(FileError::from)?;
            rows_done += 1;
            let line =
                i64::try_from(record.position().map(|p| p.line()).unwrap_or(0)).unwrap_or(i64::MAX);
            if line <= done_lines {
                continue;
            }
            chunk.push(read_row(&this.reading, line, &record));
            if chunk.len() >= CHUNK_ROWS {
                tx.ensure_open(conn)?;
                this.write_chunk(conn, std::mem::take(&mut chunk), rows_done)?;
                if tx.commit_if_due(conn)? {
                    progress(rows_done, total);
                }
            }
        }
        tx.ensure_open(conn)?;
        this.write_chunk(conn, chunk, rows_done)?;
        tx.commit(conn)?;
        progress(rows_done, total);
        Ok(())
    })();
    if let Err(e) = result {
        tx.rollback(conn)?;
        return Err(e);
    }
    Ok(this.counts)
}

impl ActivityRun<'_> {
    /// Decides and writes a chunk in a savepoint; a chunk the database refuses is written row
    /// by row, so only the offending row fails.
    fn write_chunk(
        &mut self,
        conn: &mut DbConn,
        rows: Vec<Result<ReadyActivity, Box<RowOutcome>>>,
        rows_done: u64,
    ) -> Result<(), DieselError> {
        self.seen_in_chunk.clear();
        let attempt = conn.transaction(|conn| self.apply(conn, &rows, rows_done));
        match attempt {
            Ok(counts) => {
                self.counts = counts;
                Ok(())
            }
            Err(DieselError::DatabaseError(kind, info)) if refused_row(&kind) => {
                self.forget_chunk();
                if rows.len() > 1 {
                    for row in rows {
                        self.write_chunk(conn, vec![row], rows_done)?;
                    }
                    return Ok(());
                }
                let Some(Ok(row)) = rows.first() else {
                    return Ok(());
                };
                // The same activity sent through the API meanwhile is already there.
                let outcome = if kind == DatabaseErrorKind::UniqueViolation {
                    RowOutcome {
                        line: row.line,
                        external_id: row.external_id.clone(),
                        outcome: Outcome::Unchanged,
                        reason: format!(
                            "Line {}: already logged (activity id '{}'): nothing changed.",
                            row.line, row.external_id
                        ),
                        ..Default::default()
                    }
                } else {
                    error_row(
                        row.line,
                        &row.external_id,
                        format!(
                            "Line {}: the database refused the activity ({}). Nothing of it was written.",
                            row.line,
                            info.message()
                        ),
                    )
                };
                let outcomes = [outcome];
                let counts = counts_after(&self.counts, &outcomes);
                conn.transaction(|conn| self.report(conn, &outcomes, rows_done, &counts))?;
                self.counts = counts;
                Ok(())
            }
            Err(e) => {
                self.forget_chunk();
                Err(e)
            }
        }
    }

    fn forget_chunk(&mut self) {
        for id in self.seen_in_chunk.drain(..) {
            self.seen.remove(&id);
        }
    }

    fn report(
        &self,
        conn: &mut DbConn,
        outcomes: &[RowOutcome],
        rows_done: u64,
        counts: &BTreeMap<String, i64>,
    ) -> Result<(), DieselError> {
        let progress = RunProgress {
            run_id: self.run.id,
            claimant: &self.claimant,
            rows_done,
            counts: counts.clone(),
        };
        save_report(conn, &progress, outcomes)
    }

    /// The chunk's decisions and writes; the run's counts after it.
    fn apply(
        &mut self,
        conn: &mut DbConn,
        rows: &[Result<ReadyActivity, Box<RowOutcome>>],
        rows_done: u64,
    ) -> Result<BTreeMap<String, i64>, DieselError> {
        let ready: Vec<&ReadyActivity> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        let logged = self.already_logged(conn, &ready)?;
        let contacts = self.contacts(conn, &ready)?;
        let now = db::now();
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut inserts = Vec::new();
        let mut updates: Vec<(i64, Vec<(FieldUpdate, String)>)> = Vec::new();
        for row in rows {
            let row = match row {
                Ok(row) => row,
                Err(failed) => {
                    outcomes.push(RowOutcome::clone(failed));
                    continue;
                }
            };
            match self.decide(row, &logged, &contacts) {
                Decision::Report(outcome) => outcomes.push(outcome),
                Decision::Log {
                    insert,
                    field_updates,
                    outcome,
                } => {
                    outcomes.push(outcome);
                    if !field_updates.is_empty() {
                        updates.push((insert.record_id, field_updates));
                    }
                    inserts.push(NewActivityRow {
                        created_at: now,
                        ..*insert
                    });
                }
            }
        }
        if !self.run.dry_run {
            db::insert_all!(conn, activities::table, inserts);
            mapping::update_fields_many(
                conn,
                &self.catalog,
                &self.defs,
                self.source.id,
                &updates,
                &self.actor,
            )?;
        }
        let counts = counts_after(&self.counts, &outcomes);
        self.report(conn, &outcomes, rows_done, &counts)?;
        Ok(counts)
    }

    fn decide(
        &mut self,
        row: &ReadyActivity,
        logged: &HashSet<String>,
        contacts: &HashMap<String, Vec<(i64, String)>>,
    ) -> Decision {
        let line = row.line;
        let unchanged = |reason: String| {
            Decision::Report(RowOutcome {
                line,
                external_id: row.external_id.clone(),
                outcome: Outcome::Unchanged,
                reason,
                ..Default::default()
            })
        };
        if let Some(first) = self.seen.get(&row.external_id) {
            return unchanged(format!(
                "Line {line}: the same activity id as line {first} ('{}'): logged once.",
                row.external_id
            ));
        }
        self.seen.insert(row.external_id.clone(), line);
        self.seen_in_chunk.push(row.external_id.clone());
        if logged.contains(&row.external_id) {
            return unchanged(format!(
                "Line {line}: already logged (activity id '{}'): nothing changed.",
                row.external_id
            ));
        }
        let by = self.reading.columns.contact.0;
        let fail = |reason: String| {
            Decision::Report(error_row(
                line,
                &row.external_id,
                format!("Line {line}: {reason}"),
            ))
        };
        let (record_id, name) = match contacts.get(&row.contact).map(Vec::as_slice) {
            Some([(id, name)]) => (*id, name.clone()),
            None | Some([]) => {
                return fail(format!(
                    "there is no {}: the activity was not logged.",
                    by.describe(&row.contact)
                ))
            }
            Some(several) => {
                let ids: Vec<String> = several.iter().map(|(id, _)| format!("#{id}")).collect();
                return fail(format!(
                    "several contacts match ({}: {}): the activity was not logged; name the contact by its id.",
                    by.describe(&row.contact),
                    ids.join(", ")
                ));
            }
        };
        let (mut subject, mut body, mut field_updates) =
            (row.subject.clone(), row.body.clone(), Vec::new());
        if let Some(m) = self.mappings.get(&row.activity_type) {
            match mapping::apply_templates(
                &m.subject,
                &m.body,
                &m.updates(),
                &row.attributes,
                &row.subject,
                &row.body,
            ) {
                Ok(mapped) => {
                    if !mapped.subject.trim().is_empty() {
                        subject = mapped.subject;
                    }
                    if !mapped.body.trim().is_empty() {
                        body = mapped.body;
                    }
                    field_updates = mapped.updates;
                }
                Err(problem) => {
                    return fail(format!(
                        "the activity mapping for {} cannot write it: {problem}.",
                        row.activity_type
                    ))
                }
            }
        }
        let when = row.occurred_at.format("%Y-%m-%d %H:%M");
        let updates_note = if field_updates.is_empty() {
            String::new()
        } else {
            let fields: Vec<&str> = field_updates
                .iter()
                .map(|(u, _)| u.field.as_str())
                .collect();
            format!(
                " Field updates under the mapping's rules: {}.",
                fields.join(", ")
            )
        };
        let outcome = RowOutcome {
            line,
            external_id: row.external_id.clone(),
            outcome: Outcome::Created,
            record_id: Some(record_id),
            reason: format!(
                "Line {line}: {} of {when} logged on {name} (#{record_id}).{updates_note}",
                row.activity_type
            ),
            ..Default::default()
        };
        let insert = NewActivityRow {
            record_id,
            activity_type: row.activity_type.clone(),
            occurred_at: row.occurred_at,
            subject: subject
                .chars()
                .take(MAX_SUBJECT)
                .collect::<String>()
                .trim()
                .to_string(),
            body: body
                .chars()
                .take(MAX_BODY)
                .collect::<String>()
                .trim()
                .to_string(),
            attributes: serde_json::to_string(&row.attributes).unwrap_or_else(|_| "{}".into()),
            outcome: row.attributes.get("outcome").cloned().unwrap_or_default(),
            source_id: Some(self.source.id),
            sender: self.sender.clone(),
            external_id: row.external_id.clone(),
            user_id: None,
            origin: ActivityOrigin::Import.as_str(),
            origin_label: self.actor.label.clone(),
            created_at: NaiveDateTime::default(),
        };
        Decision::Log {
            insert: Box::new(insert),
            field_updates,
            outcome,
        }
    }

    /// The chunk's activity ids this source has already logged: one query.
    fn already_logged(
        &self,
        conn: &mut DbConn,
        rows: &[&ReadyActivity],
    ) -> QueryResult<HashSet<String>> {
        let ids: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
        let mut logged = HashSet::new();
        for part in ids.chunks(IN_LIST) {
            logged.extend(
                activities::table
                    .filter(activities::sender.eq(&self.sender))
                    .filter(activities::external_id.eq_any(part))
                    .select(activities::external_id)
                    .load::<String>(conn)?,
            );
        }
        Ok(logged)
    }

    /// The active contacts the chunk's rows name, by the reference as the rows give it: one
    /// query.
    fn contacts(
        &self,
        conn: &mut DbConn,
        rows: &[&ReadyActivity],
    ) -> QueryResult<HashMap<String, Vec<(i64, String)>>> {
        let mut keys: Vec<&str> = rows.iter().map(|r| r.contact.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut found: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        let contacts = || {
            records::table
                .filter(records::kind.eq(RecordKind::Contact.as_str()))
                .filter(records::archived.eq(false))
        };
        for part in keys.chunks(IN_LIST) {
            let rows: Vec<(String, i64, String)> = match self.reading.columns.contact.0 {
                ContactBy::Id => {
                    let ids: Vec<i64> = part.iter().filter_map(|k| k.parse().ok()).collect();
                    contacts()
                        .filter(records::id.eq_any(ids))
                        .select((records::id, records::name))
                        .load::<(i64, String)>(conn)?
                        .into_iter()
                        .map(|(id, name)| (id.to_string(), id, name))
                        .collect()
                }
                ContactBy::Email => contacts()
                    .filter(records::email_norm.eq_any(part))
                    .select((records::email_norm, records::id, records::name))
                    .load(conn)?,
                ContactBy::ExternalId(from) => contacts()
                    .inner_join(record_links::table)
                    .filter(record_links::source_id.eq(from))
                    .filter(record_links::external_id.eq_any(part))
                    .select((record_links::external_id, records::id, records::name))
                    .load(conn)?,
            };
            for (key, id, name) in rows {
                found.entry(key).or_default().push((id, name));
            }
        }
        Ok(found)
    }
}

/// Keys per `IN (...)` list.
const IN_LIST: usize = 5_000;

/// What a row comes to: a report line only, or an activity to log (with field updates).
enum Decision {
    Report(RowOutcome),
    Log {
        insert: Box<NewActivityRow>,
        field_updates: Vec<(FieldUpdate, String)>,
        outcome: RowOutcome,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_files_write_them() {
        let at = |s: &str| parse_time(s).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        assert_eq!(
            at("2026-11-30 14:05").as_deref(),
            Some("2026-11-30 14:05:00")
        );
        assert_eq!(
            at("2026-11-30T14:05:09").as_deref(),
            Some("2026-11-30 14:05:09")
        );
        assert_eq!(
            at("2026-11-30T14:05:09+01:00").as_deref(),
            Some("2026-11-30 13:05:09")
        );
        assert_eq!(
            at("2026-11-30T14:05:09.75Z").as_deref(),
            Some("2026-11-30 14:05:09")
        );
        assert_eq!(at(" 2026-11-30 ").as_deref(), Some("2026-11-30 00:00:00"));
        assert_eq!(at("30/11/2026"), None);
        assert_eq!(at(""), None);
    }

    #[test]
    fn mapping_keys_are_parts_or_attribute_names() {
        assert_eq!(Target::parse("contact_email"), Ok(Target::ContactEmail));
        assert_eq!(
            Target::parse("wrap_time"),
            Ok(Target::Attribute("wrap_time".into()))
        );
        assert!(Target::parse("Wrap Time").is_err());
    }

    #[test]
    fn a_dialer_export_is_proposed_part_by_part() {
        let headers: Vec<String> = [
            "Call ID",
            "Customer ID",
            "Start Time",
            "Call Outcome",
            "Agent Comments",
            "Wrap-up Time",
            "Campaign",
            "Talk Time",
            "Caller ID",
            "Agent",
        ]
        .map(String::from)
        .to_vec();
        let rows = vec![vec![
            "c1".to_string(),
            "C-7".into(),
            "2026-11-30 14:05".into(),
        ]];
        let proposal = propose(&headers, &rows, "call id");
        let keys: Vec<&str> = proposal
            .iter()
            .map(|l| l.field_key.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "contact_external_id",
                "occurred_at",
                "outcome",
                "comments",
                "wrap_time",
                "list_name",
                "duration",
                "caller_id",
                "agent"
            ]
        );
        assert_eq!(proposal[1].sample, "2026-11-30 14:05");
    }
}
