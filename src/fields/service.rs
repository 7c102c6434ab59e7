//! Field definitions: list, add, edit, order and archive custom fields.

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use super::model::{split_options, FieldDef, FieldType, RecordKind, BUILTIN_KEYS};
use crate::db::{self, DbConn};
use crate::schema::{field_defs, record_values};

/// Keys that name something else on a record page, list or export.
const RESERVED_KEYS: [&str; 10] = [
    "id",
    "kind",
    "company",
    "owner",
    "links",
    "forced_manual",
    "archived",
    "created_at",
    "updated_at",
    "missing_from_source",
];

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{0}")]
    Invalid(String),
    #[error("A {kind} field with the key '{key}' already exists.")]
    KeyTaken { kind: RecordKind, key: String },
    #[error("That field does not exist.")]
    NotFound,
    #[error("Built-in fields cannot be archived.")]
    Builtin,
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// What an admin types to add a custom field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewField {
    pub key: String,
    pub label: String,
    pub field_type: String,
    pub options: String,
}

pub fn list(
    conn: &mut DbConn,
    kind: RecordKind,
    with_archived: bool,
) -> QueryResult<Vec<FieldDef>> {
    let mut query = field_defs::table
        .filter(field_defs::kind.eq(kind.as_str()))
        .order((field_defs::position.asc(), field_defs::id.asc()))
        .select(FieldDef::as_select())
        .into_boxed();
    if !with_archived {
        query = query.filter(field_defs::archived.eq(false));
    }
    query.load(conn)
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<FieldDef>> {
    field_defs::table
        .find(id)
        .select(FieldDef::as_select())
        .first(conn)
        .optional()
}

pub fn validate_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_with_letter || !rest_ok || key.len() > 40 {
        return Err(format!(
            "The key '{key}' must start with a lowercase letter and hold only lowercase letters, \
             digits and _ (at most 40), such as tag1 or max_credit."
        ));
    }
    if BUILTIN_KEYS.contains(&key) || RESERVED_KEYS.contains(&key) {
        return Err(format!(
            "The key '{key}' is reserved for a built-in field or record property."
        ));
    }
    Ok(())
}

fn validate_label(label: &str) -> Result<String, FieldError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 {
        return Err(FieldError::Invalid(
            "The label is required (at most 100 characters).".into(),
        ));
    }
    Ok(label.to_string())
}

fn validate_options(field_type: FieldType, options: &str) -> Result<String, FieldError> {
    let list = split_options(options);
    if field_type == FieldType::List && list.is_empty() {
        return Err(FieldError::Invalid(
            "A list field needs at least one option (one per line).".into(),
        ));
    }
    Ok(if field_type == FieldType::List {
        list.join("\n")
    } else {
        String::new()
    })
}

pub fn create(conn: &mut DbConn, kind: RecordKind, new: &NewField) -> Result<FieldDef, FieldError> {
    let key = new.key.trim().to_string();
    validate_key(&key).map_err(FieldError::Invalid)?;
    let label = validate_label(&new.label)?;
    let field_type = FieldType::parse(&new.field_type).ok_or_else(|| {
        FieldError::Invalid(format!(
            "'{}' is not a field type: choose text, email, phone, date, number, list or document.",
            new.field_type
        ))
    })?;
    let options = validate_options(field_type, &new.options)?;
    db::write_tx(conn, |conn| {
        let taken: i64 = field_defs::table
            .filter(field_defs::kind.eq(kind.as_str()))
            .filter(field_defs::key.eq(&key))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Err(FieldError::KeyTaken {
                kind,
                key: key.clone(),
            });
        }
        let last: Option<i32> = field_defs::table
            .filter(field_defs::kind.eq(kind.as_str()))
            .select(diesel::dsl::max(field_defs::position))
            .first(conn)?;
        let now = db::now();
        diesel::insert_into(field_defs::table)
            .values((
                field_defs::kind.eq(kind.as_str()),
                field_defs::key.eq(&key),
                field_defs::label.eq(&label),
                field_defs::field_type.eq(field_type.as_str()),
                field_defs::options.eq(&options),
                field_defs::builtin.eq(false),
                field_defs::position.eq(last.unwrap_or(0) + 1),
                field_defs::archived.eq(false),
                field_defs::created_at.eq(now),
                field_defs::updated_at.eq(now),
            ))
            .execute(conn)?;
        field_defs::table
            .filter(field_defs::kind.eq(kind.as_str()))
            .filter(field_defs::key.eq(&key))
            .select(FieldDef::as_select())
            .first(conn)
            .map_err(FieldError::from)
    })
}

/// Changes the label and (for lists) the options. The key and type never change: mappings,
/// links and stored values depend on them. Options still in use cannot be removed.
pub fn update(
    conn: &mut DbConn,
    id: i64,
    label: &str,
    options: &str,
) -> Result<FieldDef, FieldError> {
    let label = validate_label(label)?;
    db::write_tx(conn, |conn| {
        let def = find(conn, id)?.ok_or(FieldError::NotFound)?;
        let options = validate_options(def.ftype(), options)?;
        if def.ftype() == FieldType::List {
            let kept = split_options(&options);
            let in_use: Vec<String> = record_values::table
                .filter(record_values::field_id.eq(id))
                .select(record_values::value)
                .distinct()
                .load(conn)?;
            let removed: Vec<String> = in_use.into_iter().filter(|v| !kept.contains(v)).collect();
            if !removed.is_empty() {
                return Err(FieldError::Invalid(format!(
                    "Records still use the option{} {}: change those records first.",
                    if removed.len() == 1 { "" } else { "s" },
                    removed.join(", ")
                )));
            }
        }
        diesel::update(field_defs::table.find(id))
            .set((
                field_defs::label.eq(&label),
                field_defs::options.eq(&options),
                field_defs::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        find(conn, id)?.ok_or(FieldError::NotFound)
    })
}

/// Archived fields leave forms, lists and new mappings; their values are kept.
pub fn set_archived(conn: &mut DbConn, id: i64, archived: bool) -> Result<FieldDef, FieldError> {
    db::write_tx(conn, |conn| {
        let def = find(conn, id)?.ok_or(FieldError::NotFound)?;
        if def.builtin {
            return Err(FieldError::Builtin);
        }
        diesel::update(field_defs::table.find(id))
            .set((
                field_defs::archived.eq(archived),
                field_defs::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        find(conn, id)?.ok_or(FieldError::NotFound)
    })
}

/// Swaps the field with its neighbour above (`up`) or below.
pub fn move_field(conn: &mut DbConn, id: i64, up: bool) -> Result<(), FieldError> {
    db::write_tx(conn, |conn| {
        let def = find(conn, id)?.ok_or(FieldError::NotFound)?;
        let kind = RecordKind::parse(&def.kind).ok_or(FieldError::NotFound)?;
        let mut fields = list(conn, kind, true)?;
        // Positions may repeat after manual edits: renumber in display order first.
        for (i, f) in fields.iter_mut().enumerate() {
            f.position = i32::try_from(i).unwrap_or(i32::MAX);
        }
        let Some(index) = fields.iter().position(|f| f.id == id) else {
            return Err(FieldError::NotFound);
        };
        let other = if up {
            index.checked_sub(1)
        } else {
            Some(index + 1)
        };
        if let Some(other) = other.filter(|o| *o < fields.len()) {
            fields.swap(index, other);
        }
        for (i, f) in fields.iter().enumerate() {
            diesel::update(field_defs::table.find(f.id))
                .set(field_defs::position.eq(i32::try_from(i).unwrap_or(i32::MAX)))
                .execute(conn)?;
        }
        Ok(())
    })
}
