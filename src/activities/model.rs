use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::{activities, activity_types};
use crate::stored::stored_enum;

stored_enum! {
    /// Who logged an activity.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ActivityOrigin as "activity origin" {
        User = "user",
        Api = "api",
        Import = "import",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = activity_types)]
pub struct ActivityType {
    pub key: String,
    pub label: String,
    pub builtin: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = activities)]
pub struct Activity {
    pub id: i64,
    pub record_id: i64,
    pub activity_type: String,
    pub occurred_at: NaiveDateTime,
    pub subject: String,
    pub body: String,
    pub attributes: String,
    pub outcome: String,
    pub source_id: Option<i64>,
    pub sender: String,
    pub external_id: String,
    pub user_id: Option<i64>,
    #[diesel(deserialize_as = String)]
    pub origin: ActivityOrigin,
    pub origin_label: String,
    pub created_at: NaiveDateTime,
}

impl Activity {
    /// The attributes it came with, in name order.
    pub fn attribute_list(&self) -> Vec<(String, String)> {
        attributes_of(&self.attributes)
    }
}

/// Attributes as stored (a JSON object), in name order, each value as text.
pub fn attributes_of(stored: &str) -> Vec<(String, String)> {
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(stored)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

/// How a sender names the contact of an activity: by record id, by a source's external id,
/// or by email. Never by a guess: a reference that finds no contact, or several, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ContactRef {
    Id { id: i64 },
    ExternalId { source_id: i64, external_id: String },
    Email { email: String },
}

/// An activity to log.
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub contact: ContactRef,
    pub activity_type: String,
    pub occurred_at: NaiveDateTime,
    pub subject: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// The sender's own id of the activity: sending it again changes nothing.
    pub external_id: String,
    pub source_id: Option<i64>,
    pub origin: ActivityOrigin,
    pub origin_label: String,
    pub user_id: Option<i64>,
    /// Whose external ids these are (`source:<id>` or `token:<id>`).
    pub sender: String,
}

/// What logging did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    Created(i64),
    /// Already logged under the same sender and external id: nothing changed.
    AlreadyThere(i64),
}

impl Logged {
    pub fn id(self) -> i64 {
        match self {
            Logged::Created(id) | Logged::AlreadyThere(id) => id,
        }
    }
}
