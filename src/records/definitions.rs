//! The definitions list pages read on every request and people rarely change (fields, source
//! names, follow-up templates, processes), kept in memory. Triggers move a version on every
//! write to their tables, whoever makes it; the statement that finds a request's signed-in
//! user reads that version too (`auth::sessions::user_of`), so a page reads the definitions
//! again only when they changed, here or on another console over the same database. On
//! PostgreSQL that is three or four round trips fewer per page.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use diesel::prelude::*;

use crate::db::DbConn;
use crate::fields::model::{FieldDef, RecordKind};

/// The version's SQL, for a statement that reads it beside something else; -1 if its row is
/// missing (then nothing is kept and every page reads the definitions).
pub const VERSION_SQL: &str =
    "COALESCE((SELECT version FROM definitions_version WHERE id = 1), -1)";

const KINDS: [RecordKind; 2] = [RecordKind::Contact, RecordKind::Company];

#[derive(Debug, Default)]
pub struct Definitions {
    /// Each kind's fields, archived ones included, in their order.
    fields: HashMap<RecordKind, Vec<FieldDef>>,
    pub sources: BTreeMap<i64, String>,
    /// Each kind's follow-up templates (id, name) by name.
    followups: HashMap<RecordKind, Vec<(i64, String)>>,
    /// (id, name) by name.
    pub processes: Vec<(i64, String)>,
}

impl Definitions {
    /// What `fields::service::list` returns.
    pub fn fields(&self, kind: RecordKind, with_archived: bool) -> Vec<FieldDef> {
        self.fields
            .get(&kind)
            .into_iter()
            .flatten()
            .filter(|f| with_archived || !f.archived)
            .cloned()
            .collect()
    }

    /// What `followups::service::names_for` returns.
    pub fn followups(&self, kind: RecordKind) -> Vec<(i64, String)> {
        self.followups.get(&kind).cloned().unwrap_or_default()
    }

    /// Read through the services the pages called before, so the order and selection stay
    /// theirs.
    fn load(conn: &mut DbConn) -> QueryResult<Self> {
        let mut fields = HashMap::new();
        let mut followups = HashMap::new();
        for kind in KINDS {
            fields.insert(kind, crate::fields::service::list(conn, kind, true)?);
            followups.insert(kind, crate::followups::service::names_for(conn, kind)?);
        }
        let processes = crate::processes::service::list(conn)?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        Ok(Definitions {
            fields,
            sources: super::service::source_names(conn)?,
            followups,
            processes,
        })
    }
}

/// The definitions as last read, with the version they were read at.
#[derive(Default)]
pub struct DefinitionsCache {
    kept: Mutex<Option<(i64, Arc<Definitions>)>>,
}

impl DefinitionsCache {
    /// The definitions at `seen` or newer: the kept ones when they are, else read afresh.
    /// `seen` is the version a request saw when it began (None: read them).
    pub fn at_least(&self, conn: &mut DbConn, seen: Option<i64>) -> QueryResult<Arc<Definitions>> {
        if let Some(seen) = seen.filter(|v| *v >= 0) {
            let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, definitions)) = kept.as_ref().filter(|(version, _)| *version >= seen) {
                return Ok(definitions.clone());
            }
        }
        // The version first: definitions read after it are at least that new, so keeping
        // them under it never hides a later change.
        let version = current_version(conn)?;
        let definitions = Arc::new(Definitions::load(conn)?);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if version >= 0 && kept.as_ref().is_none_or(|(v, _)| *v < version) {
            *kept = Some((version, definitions.clone()));
        }
        Ok(definitions)
    }
}

fn current_version(conn: &mut DbConn) -> QueryResult<i64> {
    diesel::select(crate::db::kept_sql::<diesel::sql_types::BigInt>(
        VERSION_SQL,
    ))
    .get_result(conn)
}
