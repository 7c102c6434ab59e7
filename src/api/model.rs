use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::api_tokens;
use crate::stored::stored_enum;

stored_enum! {
    /// What a token may do. Stored space-separated on the token.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Scope as "scope" {
        /// Read records (fields, owner, links, flags, pending proposals).
        RecordsRead = "records:read",
        /// Push rows through a source, as an import.
        RowsWrite = "rows:write",
        /// Read a source's outbound change feed.
        ChangesRead = "changes:read",
        /// Record activities (for the activities API).
        ActivitiesWrite = "activities:write",
    }
}

impl Scope {
    pub fn parse(word: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == word.trim())
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scope::RecordsRead => "read records",
            Scope::RowsWrite => "push rows through a source",
            Scope::ChangesRead => "read a source's change feed",
            Scope::ActivitiesWrite => "record activities",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The secret's first characters, to tell tokens apart (`sdk_1a2b3c4d`).
    pub prefix: String,
    #[allow(dead_code)]
    secret_hash: String,
    scopes: String,
    /// When set, the token works for this source (and its records) only.
    pub source_id: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl ApiToken {
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes
            .split_whitespace()
            .filter_map(Scope::parse)
            .collect()
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes().contains(&scope)
    }

    pub fn scope_list(&self) -> String {
        self.scopes.replace(' ', ", ")
    }

    pub fn revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}
