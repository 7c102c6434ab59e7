//! Sources: create, edit, map fields, disconnect and reconnect.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::model::{
    columns_read, same_column, Mapping, MappingInput, OnInvalid, Source, SourceContent, COMPANY_KEY,
};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldType, RecordKind};
use crate::fields::service::{self as fields, FieldError, NewField};
use crate::records::model::Actor;
use crate::records::writer;
use crate::rules::Rule;
use crate::schema::{self, source_fields, sources};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Invalid(String),
    #[error("A source named '{0}' already exists.")]
    NameTaken(String),
    #[error("That source does not exist.")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// What a source is, as a form or the command line gives it.
#[derive(Debug, Clone)]
pub struct SourceInput {
    pub name: String,
    pub kind: RecordKind,
    /// Empty when rows are matched by `match_by` instead.
    pub id_column: String,
    /// Field keys whose values identify a row when the files have no id column.
    pub match_by: Vec<String>,
    pub full_mode: bool,
    /// ISO code of the country of phones written without one; empty for the console's.
    pub country: String,
    /// An absolute folder whose new files are imported automatically; empty for none.
    pub watch_dir: String,
    /// Set for a source whose rows are activities of contacts (kind contact).
    pub activities: Option<ActivitySettings>,
}

/// How a source of activities finds its rows' contacts and type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivitySettings {
    /// The contact source whose external ids the files name (target `contact_external_id`).
    pub contacts_from: Option<i64>,
    /// The type of rows when the file has no type column; empty: a type column is needed.
    pub default_type: String,
}

/// A source as checked and stored: its name, id column, fields to match by and country.
struct Checked {
    name: String,
    id_column: String,
    match_by: String,
    country: String,
    watch_dir: String,
    activities: Option<ActivitySettings>,
}

pub fn list(conn: &mut DbConn) -> QueryResult<Vec<Source>> {
    sources::table
        .order(sources::name.asc())
        .select(Source::as_select())
        .load(conn)
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Source>> {
    sources::table
        .find(id)
        .select(Source::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_name(conn: &mut DbConn, name: &str) -> QueryResult<Option<Source>> {
    sources::table
        .filter(sources::name.eq(name.trim()))
        .select(Source::as_select())
        .first(conn)
        .optional()
}

pub fn mapping(conn: &mut DbConn, source_id: i64) -> QueryResult<Vec<Mapping>> {
    source_fields::table
        .filter(source_fields::source_id.eq(source_id))
        .order(source_fields::id.asc())
        .select(Mapping::as_select())
        .load(conn)
}

fn check(conn: &mut DbConn, input: &SourceInput) -> Result<Checked, SourceError> {
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(SourceError::Invalid(
            "The name is required (at most 100 characters).".into(),
        ));
    }
    let match_by: Vec<&str> = input
        .match_by
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect();
    let id_column = if match_by.is_empty() {
        input.id_column.trim().to_string()
    } else {
        String::new()
    };
    let activities = match &input.activities {
        Some(settings) => Some(check_activities(conn, input, &match_by, settings)?),
        None => None,
    };
    if match_by.is_empty() && id_column.is_empty() {
        return Err(SourceError::Invalid(
            "Name the column that carries the external id (for example External Id), or choose the fields that identify a row (for example email) if the files have none.".into(),
        ));
    }
    let defs = fields::list(conn, input.kind, false)?;
    for key in &match_by {
        let usable = defs.iter().any(|d| {
            d.key == *key && !matches!(d.ftype(), crate::fields::model::FieldType::Document)
        });
        if !usable {
            return Err(SourceError::Invalid(format!(
                "'{key}' is not a {} field rows can be matched by; use for example email, phone or name,email.",
                input.kind
            )));
        }
    }
    let country = input.country.trim().to_ascii_uppercase();
    if !country.is_empty() {
        crate::fields::validate::PhoneCountry::parse(&country).map_err(SourceError::Invalid)?;
    }
    let watch_dir = input.watch_dir.trim().to_string();
    if let Some(problem) = (!watch_dir.is_empty())
        .then(|| crate::sync::watch::folder_problem(&watch_dir))
        .flatten()
    {
        return Err(SourceError::Invalid(problem));
    }
    Ok(Checked {
        name,
        id_column,
        match_by: match_by.join(","),
        country,
        watch_dir,
        activities,
    })
}

/// A source of activities: of contacts, keyed by each activity's own id, naming its contacts'
/// ids of a contact source that exists.
fn check_activities(
    conn: &mut DbConn,
    input: &SourceInput,
    match_by: &[&str],
    settings: &ActivitySettings,
) -> Result<ActivitySettings, SourceError> {
    if input.kind != RecordKind::Contact {
        return Err(SourceError::Invalid(
            "Activities belong to contacts: a source of activities is of kind contact.".into(),
        ));
    }
    if !match_by.is_empty() || input.id_column.trim().is_empty() {
        return Err(SourceError::Invalid(
            "Name the column that carries each activity's own id (for example Call ID): importing a file again then logs each activity once.".into(),
        ));
    }
    if let Some(from) = settings.contacts_from {
        let usable = find(conn, from)?
            .is_some_and(|s| s.kind == RecordKind::Contact && !s.carries_activities());
        if !usable {
            return Err(SourceError::Invalid(format!(
                "Source #{from} is not a source of contacts: choose the one whose ids the files name."
            )));
        }
    }
    let default_type = settings.default_type.trim().to_string();
    if !default_type.is_empty() {
        let known: i64 = schema::activity_types::table
            .filter(schema::activity_types::key.eq(&default_type))
            .count()
            .get_result(conn)?;
        if known == 0 {
            return Err(SourceError::Invalid(format!(
                "'{default_type}' is not an activity type."
            )));
        }
    }
    Ok(ActivitySettings {
        contacts_from: settings.contacts_from,
        default_type,
    })
}

/// Activities are never missing from a source: a source of them runs in delta mode.
fn mode_of(input: &SourceInput, carries: SourceContent) -> &'static str {
    if input.full_mode && carries == SourceContent::Records {
        "full"
    } else {
        "delta"
    }
}

fn name_taken(e: DieselError, name: &str) -> SourceError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            SourceError::NameTaken(name.to_string())
        }
        other => other.into(),
    }
}

pub fn create(conn: &mut DbConn, input: &SourceInput) -> Result<Source, SourceError> {
    let Checked {
        name,
        id_column,
        match_by,
        country,
        watch_dir,
        activities,
    } = check(conn, input)?;
    let now = db::now();
    let carries = match activities {
        Some(_) => SourceContent::Activities,
        None => SourceContent::Records,
    };
    let activities = activities.unwrap_or_default();
    let id: i64 = diesel::insert_into(sources::table)
        .values((
            sources::name.eq(&name),
            sources::kind.eq(input.kind.as_str()),
            sources::id_column.eq(&id_column),
            sources::match_by.eq(&match_by),
            sources::country.eq(&country),
            sources::watch_dir.eq(&watch_dir),
            sources::mode.eq(mode_of(input, carries)),
            sources::carries.eq(carries.as_str()),
            sources::contacts_from.eq(activities.contacts_from),
            sources::activity_type.eq(&activities.default_type),
            sources::status.eq("connected"),
            sources::created_at.eq(now),
            sources::updated_at.eq(now),
        ))
        .returning(sources::id)
        .get_result(conn)
        .map_err(|e| name_taken(e, &name))?;
    find(conn, id)?.ok_or(SourceError::NotFound)
}

/// Name, id column and mode may change; the record kind may not once records depend on it.
pub fn update(conn: &mut DbConn, id: i64, input: &SourceInput) -> Result<Source, SourceError> {
    let Checked {
        name,
        id_column,
        match_by,
        country,
        watch_dir,
        activities,
    } = check(conn, input)?;
    let current = find(conn, id)?.ok_or(SourceError::NotFound)?;
    if current.record_kind() != input.kind || current.carries_activities() != activities.is_some() {
        return Err(SourceError::Invalid(
            "What a source's rows are (contacts, companies or activities) cannot change: create another source.".into(),
        ));
    }
    let activities = activities.unwrap_or_default();
    diesel::update(sources::table.find(id))
        .set((
            sources::name.eq(&name),
            sources::id_column.eq(&id_column),
            sources::match_by.eq(&match_by),
            sources::country.eq(&country),
            sources::watch_dir.eq(&watch_dir),
            sources::mode.eq(mode_of(input, current.carries)),
            sources::contacts_from.eq(activities.contacts_from),
            sources::activity_type.eq(&activities.default_type),
            sources::updated_at.eq(db::now()),
        ))
        .execute(conn)
        .map_err(|e| name_taken(e, &name))?;
    find(conn, id)?.ok_or(SourceError::NotFound)
}

/// What imports through the source do with a row holding an invalid value.
pub fn set_on_invalid(
    conn: &mut DbConn,
    id: i64,
    on_invalid: OnInvalid,
) -> Result<Source, SourceError> {
    diesel::update(sources::table.find(id))
        .set((
            sources::on_invalid.eq(on_invalid.as_str()),
            sources::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    find(conn, id)?.ok_or(SourceError::NotFound)
}

/// Replaces the whole mapping, after checking every line against the kind's fields.
pub fn set_mapping(
    conn: &mut DbConn,
    source_id: i64,
    lines: &[MappingInput],
) -> Result<Vec<Mapping>, SourceError> {
    db::write_tx(conn, |conn| {
        let source = find(conn, source_id)?.ok_or(SourceError::NotFound)?;
        let defs = fields::list(conn, source.record_kind(), false)?;
        let mut problems = Vec::new();
        let mut seen_columns: Vec<String> = Vec::new();
        let mut seen_fields: Vec<&str> = Vec::new();
        for line in lines {
            let column = line.column_name.trim();
            if column.is_empty() {
                problems.push("A mapping line has no column name.".to_string());
                continue;
            }
            if columns_read(column).is_none() {
                problems.push(format!(
                    "'{column}': a pattern names columns in braces, as in {{First Name}} {{Last Name}}."
                ));
            }
            if seen_columns.iter().any(|c| same_column(c, column)) {
                problems.push(format!("The column '{column}' is mapped twice."));
            }
            seen_columns.push(column.to_string());
            let company_link =
                source.record_kind() == RecordKind::Contact && line.field_key == COMPANY_KEY;
            let unknown = if source.carries_activities() {
                crate::activities::import::Target::parse(&line.field_key).err()
            } else if !company_link && !defs.iter().any(|d| d.key == line.field_key) {
                Some(format!(
                    "there is no active {} field '{}'.",
                    source.kind, line.field_key
                ))
            } else {
                None
            };
            if let Some(unknown) = unknown {
                problems.push(format!("Column '{column}': {unknown}"));
            } else if seen_fields.contains(&line.field_key.as_str()) {
                problems.push(format!(
                    "The field '{}' is mapped from two columns.",
                    line.field_key
                ));
            }
            seen_fields.push(&line.field_key);
        }
        if !problems.is_empty() {
            return Err(SourceError::Invalid(problems.join(" ")));
        }
        diesel::delete(source_fields::table.filter(source_fields::source_id.eq(source_id)))
            .execute(conn)?;
        for line in lines {
            diesel::insert_into(source_fields::table)
                .values((
                    source_fields::source_id.eq(source_id),
                    source_fields::column_name.eq(line.column_name.trim()),
                    source_fields::field_key.eq(&line.field_key),
                    source_fields::to_record.eq(line.to_record.as_str()),
                    source_fields::to_source.eq(line.to_source.as_str()),
                    source_fields::blanks_clear.eq(line.blanks_clear),
                ))
                .execute(conn)?;
        }
        Ok(mapping(conn, source_id)?)
    })
}

/// Creates the custom fields a mapping maps to (columns that become fields in one step), then
/// replaces the mapping; all or nothing.
pub fn create_fields_and_map(
    conn: &mut DbConn,
    source_id: i64,
    new_fields: &[NewField],
    lines: &[MappingInput],
) -> Result<Vec<Mapping>, SourceError> {
    db::write_tx(conn, |conn| {
        let source = find(conn, source_id)?.ok_or(SourceError::NotFound)?;
        for new in new_fields {
            fields::create(conn, source.record_kind(), new).map_err(|e| match e {
                FieldError::Db(e) => SourceError::Db(e),
                other => SourceError::Invalid(format!("New field '{}': {other}", new.key)),
            })?;
        }
        set_mapping(conn, source_id, lines)
    })
}

/// Parses `COLUMN=field[:rule]` as the command line takes it (rule defaults to `always`);
/// `COLUMN=+key:type[:rule...]` also asks for a new custom field of that type.
pub fn parse_map_arg(arg: &str) -> Result<(MappingInput, Option<NewField>), String> {
    let (column, target) = arg
        .rsplit_once('=')
        .ok_or_else(|| format!("'{arg}' is not COLUMN=field[:TO_RECORD[:TO_SOURCE]]"))?;
    let mut parts = target.split(':');
    let mut field = parts.next().unwrap_or_default().trim();
    let new_field = match field.strip_prefix('+') {
        Some(key) => {
            field = key.trim();
            let field_type = parts.next().unwrap_or("text").trim();
            if FieldType::parse(field_type).is_none() {
                return Err(format!(
                    "'{field_type}' in '{arg}' is not a field type: text, email, phone, date, number or list"
                ));
            }
            Some(NewField {
                key: field.to_string(),
                label: column.trim().to_string(),
                field_type: field_type.to_string(),
                options: String::new(),
            })
        }
        None => None,
    };
    let rule = |word: Option<&str>, default: Rule| match word {
        None => Ok(default),
        Some(word) => Rule::parse(word).ok_or_else(|| {
            format!("'{word}' in '{arg}' is not a rule: always, fill_blanks, review or never")
        }),
    };
    let to_record = rule(parts.next(), Rule::Always)?;
    let to_source = rule(parts.next(), Rule::Never)?;
    if parts.next().is_some() {
        return Err(format!(
            "'{arg}' is not COLUMN=field[:TO_RECORD[:TO_SOURCE]]"
        ));
    }
    let line = MappingInput {
        column_name: column.trim().to_string(),
        field_key: field.to_string(),
        to_record,
        to_source,
        blanks_clear: false,
    };
    Ok((line, new_field))
}

/// Every record the source owns becomes manual and keeps its links; the next import
/// (a reconnect) converts them back through those links.
pub fn disconnect(conn: &mut DbConn, source_id: i64, actor: &Actor) -> Result<usize, SourceError> {
    db::write_tx(conn, |conn| {
        let source = find(conn, source_id)?.ok_or(SourceError::NotFound)?;
        // Records it owns are linked to it: found through its links, not a scan of records.
        let linked: Vec<i64> = schema::record_links::table
            .filter(schema::record_links::source_id.eq(source_id))
            .select(schema::record_links::record_id)
            .load(conn)?;
        let catalog = writer::Catalog::load(conn)?;
        let mut owned = 0;
        for part in linked.chunks(5_000) {
            let states = writer::load_states(conn, part)?;
            let edits: Vec<writer::Edit> = states
                .into_iter()
                .filter(|(_, (_, state))| state.owner_source_id == Some(source.id))
                .map(|(id, (_, state))| {
                    let mut edit = writer::Edit::change(id, state);
                    edit.after.owner_source_id = None;
                    edit
                })
                .collect();
            owned += edits.len();
            writer::apply(conn, &catalog, &edits, actor)?;
        }
        diesel::update(sources::table.find(source_id))
            .set((
                sources::status.eq("disconnected"),
                sources::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        Ok(owned)
    })
}

pub fn reconnect(conn: &mut DbConn, source_id: i64) -> Result<Source, SourceError> {
    diesel::update(sources::table.find(source_id))
        .set((
            sources::status.eq("connected"),
            sources::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    find(conn, source_id)?.ok_or(SourceError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_arguments() {
        let parse_map_arg = |arg| parse_map_arg(arg).map(|(line, _)| line);
        let m = parse_map_arg("Phone number=phone:fill_blanks").unwrap();
        assert_eq!(
            (m.column_name.as_str(), m.field_key.as_str(), m.to_record),
            ("Phone number", "phone", Rule::FillBlanks)
        );
        assert_eq!(parse_map_arg("Name=name").unwrap().to_record, Rule::Always);
        assert!(parse_map_arg("Name").unwrap_err().contains("COLUMN=field"));
        assert!(parse_map_arg("Name=name:sometimes")
            .unwrap_err()
            .contains("not a rule"));
        let both = parse_map_arg("Email=email:review:fill_blanks").unwrap();
        assert_eq!(
            (both.to_record, both.to_source),
            (Rule::Review, Rule::FillBlanks)
        );
        assert_eq!(parse_map_arg("Name=name").unwrap().to_source, Rule::Never);
        assert!(parse_map_arg("Name=name:always:never:x").is_err());
    }

    #[test]
    fn a_map_argument_may_create_its_field() {
        let (line, new) = super::parse_map_arg("tag1=+tag1:number:review").unwrap();
        assert_eq!(
            (line.field_key.as_str(), line.to_record),
            ("tag1", Rule::Review)
        );
        let new = new.expect("a new field");
        assert_eq!(
            (new.key.as_str(), new.field_type.as_str()),
            ("tag1", "number")
        );
        assert!(super::parse_map_arg("tag1=+tag1:colour")
            .unwrap_err()
            .contains("not a field type"));
    }
}
