use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::fields::model::RecordKind;
use crate::rules::Rule;
use crate::schema::data_links;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = data_links)]
pub struct DataLink {
    pub id: i64,
    pub process_id: i64,
    /// `to_application`, `to_record` or `both`.
    pub direction: String,
    #[diesel(deserialize_as = String)]
    pub record_kind: RecordKind,
    /// `information` or `document`.
    pub data_kind: String,
    pub item_id: i64,
    pub field_key: String,
    /// Stakeholder roles it applies to, comma-separated; empty means all.
    pub roles: String,
    pub to_record: String,
    pub created_at: NaiveDateTime,
}

impl DataLink {
    pub fn prefills(&self) -> bool {
        matches!(self.direction.as_str(), "to_application" | "both")
    }

    pub fn updates_record(&self) -> bool {
        matches!(self.direction.as_str(), "to_record" | "both")
    }

    pub fn rule(&self) -> Rule {
        Rule::parse(&self.to_record).unwrap_or(Rule::Never)
    }

    pub fn role_list(&self) -> Vec<String> {
        split_roles(&self.roles)
    }

    /// Whether a stakeholder with `role` is concerned (no roles: everyone).
    pub fn applies_to(&self, role: &str) -> bool {
        let roles = self.role_list();
        roles.is_empty() || roles.iter().any(|r| r.eq_ignore_ascii_case(role.trim()))
    }
}

pub fn split_roles(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

pub const DIRECTIONS: [&str; 3] = ["to_application", "to_record", "both"];
