use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::auth::model::User;
use crate::fields::model::RecordKind;
use crate::schema::{documents, record_history, records};
use crate::stored::stored_enum;

/// A contact or company row; built-in field values are columns, custom ones live in
/// `record_values`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = records)]
pub struct RecordRow {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub kind: RecordKind,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub registration_number: String,
    pub address: String,
    pub company_id: Option<i64>,
    pub owner_source_id: Option<i64>,
    pub forced_manual: bool,
    pub missing_from_source: bool,
    pub archived: bool,
    #[diesel(deserialize_as = crate::db::Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = crate::db::Stamp)]
    pub updated_at: NaiveDateTime,
}

impl RecordRow {
    pub fn record_kind(&self) -> RecordKind {
        self.kind
    }

    /// The value of a built-in field, `None` for a custom field key.
    pub fn builtin_value(&self, key: &str) -> Option<&str> {
        match key {
            "name" => Some(&self.name),
            "email" => Some(&self.email),
            "phone" => Some(&self.phone),
            "registration_number" => Some(&self.registration_number),
            "address" => Some(&self.address),
            _ => None,
        }
    }

    pub fn is_synced(&self) -> bool {
        self.owner_source_id.is_some()
    }
}

stored_enum! {
    /// Where a change came from; kept on every history row and proposal.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Origin as "origin" {
        User = "user",
        Import = "import",
        Application = "application",
        Review = "review",
        Undo = "undo",
        System = "system",
    }
}

/// Who or what changed a value; kept on every history row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub origin: Origin,
    /// The import run, application, ... the change came from.
    pub origin_id: Option<i64>,
    /// The source whose data this is (an import, a push, an accepted proposal of it): the
    /// change feed never sends a source its own changes back.
    pub source_id: Option<i64>,
    pub user_id: Option<i64>,
    pub label: String,
}

impl Actor {
    pub fn user(user: &User) -> Self {
        Self {
            origin: Origin::User,
            origin_id: None,
            source_id: None,
            user_id: Some(user.id),
            label: user.display_name.clone(),
        }
    }

    pub fn system(label: &str) -> Self {
        Self {
            origin: Origin::System,
            origin_id: None,
            source_id: None,
            user_id: None,
            label: label.to_string(),
        }
    }
}

/// What a form (or any other write path) asks to change. Only the keys present are touched.
#[derive(Debug, Clone, Default)]
pub struct RecordInput {
    pub values: BTreeMap<String, String>,
    /// For contacts: `Some(None)` clears the company, `Some(Some(id))` sets it.
    pub company_id: Option<Option<i64>>,
}

/// One value that changed, as history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field_key: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = record_history)]
pub struct HistoryEntry {
    pub id: i64,
    pub record_id: i64,
    pub field_key: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    #[diesel(deserialize_as = String)]
    pub origin: Origin,
    pub origin_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub actor_label: String,
    pub changed_at: NaiveDateTime,
}

impl HistoryEntry {
    /// "Ada (user)", "import run 12", ...
    pub fn who(&self) -> String {
        match (self.origin, self.origin_id) {
            // Review labels already say who decided what, and from where.
            (Origin::User | Origin::Review, _) => self.actor_label.clone(),
            (origin, Some(id)) => format!("{} ({origin} {id})", self.actor_label),
            (origin, None) => format!("{} ({origin})", self.actor_label),
        }
    }

    pub fn old_text(&self) -> &str {
        self.old_value.as_deref().unwrap_or("")
    }

    pub fn new_text(&self) -> &str {
        self.new_value.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = documents)]
pub struct Document {
    pub id: i64,
    pub sha256: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub uploaded_by: Option<i64>,
    pub created_at: NaiveDateTime,
}

impl Document {
    pub fn size_text(&self) -> String {
        match self.size {
            s if s >= 1024 * 1024 => format!("{:.1} MB", s as f64 / (1024.0 * 1024.0)),
            s if s >= 1024 => format!("{:.0} kB", s as f64 / 1024.0),
            s => format!("{s} bytes"),
        }
    }
}

/// A source's link to a record: the "metadata".
#[derive(Debug, Clone)]
pub struct LinkView {
    pub source_id: i64,
    pub source_name: String,
    pub external_id: String,
}
