//! The outbound change feed of each source: ordering entries by commit, reading them by cursor,
//! the held (`review`) entries a person approves or drops, and pruning. The entries themselves
//! are written by the record write path (`records::outbox`).
//!
//! Exactly once: entry ids are taken when a transaction writes, not when it commits, so on
//! PostgreSQL a reader polling by id could pass over an entry that commits later with a
//! smaller id. Entries get their cursor (`seq`) instead from one sequencer at a time, which
//! numbers only committed entries, in id order, after every number it gave before.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::{self, DbConn};
use crate::records::outbox::FeedStatus;
use crate::schema::source_changes;

/// Entries numbered per sequencer pass.
const SEQUENCE_BATCH: i64 = 50_000;

/// Arbitrary key of the PostgreSQL advisory lock that makes the sequencer one at a time.
const SEQUENCER_LOCK: i64 = 0x5d_feed;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = source_changes)]
pub struct FeedEntry {
    #[serde(skip)]
    pub id: i64,
    /// The entry's cursor; `None` until sequenced (or while held).
    #[serde(rename = "cursor")]
    pub seq: Option<i64>,
    #[serde(skip)]
    pub source_id: i64,
    pub record_id: i64,
    pub external_id: String,
    pub event: String,
    /// The source's column name of a value change.
    #[serde(rename = "column")]
    pub column_name: Option<String>,
    #[serde(rename = "field")]
    pub field_key: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub origin: String,
    #[serde(skip)]
    pub origin_id: Option<i64>,
    #[serde(rename = "by")]
    pub actor_label: String,
    #[serde(serialize_with = "crate::text::utc")]
    pub changed_at: NaiveDateTime,
    #[serde(skip)]
    pub status: String,
    #[serde(skip)]
    pub decided_by: Option<String>,
    #[serde(skip)]
    pub decided_at: Option<NaiveDateTime>,
}

/// Numbers committed entries that have no cursor yet; returns how many it numbered.
pub fn sequence(conn: &mut DbConn) -> QueryResult<usize> {
    // Readers and the feed worker call this often: with nothing waiting for a number, a read
    // of the partial index answers, without taking SQLite's write lock.
    let waiting: Option<i64> = source_changes::table
        .filter(source_changes::seq.is_null())
        .filter(source_changes::status.eq(FeedStatus::Ready.as_str()))
        .select(source_changes::id)
        .first(conn)
        .optional()?;
    if waiting.is_none() {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let numbered = db::write_tx(conn, |conn| -> QueryResult<usize> {
            if matches!(conn, DbConn::Pg(_)) {
                diesel::sql_query(format!("SELECT pg_advisory_xact_lock({SEQUENCER_LOCK})"))
                    .execute(conn)?;
            }
            diesel::sql_query(format!(
                "UPDATE source_changes SET seq = numbered.n \
                 FROM (SELECT id, (SELECT COALESCE(MAX(seq), 0) FROM source_changes \
                                   WHERE seq IS NOT NULL) \
                                  + ROW_NUMBER() OVER (ORDER BY id) AS n \
                       FROM source_changes WHERE seq IS NULL AND status = 'ready' \
                       ORDER BY id LIMIT {SEQUENCE_BATCH}) AS numbered \
                 WHERE source_changes.id = numbered.id"
            ))
            .execute(conn)
        })?;
        total += numbered;
        if numbered < SEQUENCE_BATCH as usize {
            return Ok(total);
        }
    }
}

/// A page of a source's feed after `after` (0: from the start), oldest first.
pub fn page(
    conn: &mut DbConn,
    source_id: i64,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<FeedEntry>> {
    source_changes::table
        .filter(source_changes::source_id.eq(source_id))
        .filter(source_changes::seq.gt(after))
        .order(source_changes::seq.asc())
        .limit(limit)
        .select(FeedEntry::as_select())
        .load(conn)
}

/// The newest entries of a source's feed, newest first (the source page).
pub fn latest(conn: &mut DbConn, source_id: i64, limit: i64) -> QueryResult<Vec<FeedEntry>> {
    source_changes::table
        .filter(source_changes::source_id.eq(source_id))
        .filter(source_changes::seq.is_not_null())
        .order(source_changes::seq.desc())
        .limit(limit)
        .select(FeedEntry::as_select())
        .load(conn)
}

/// Entries waiting for a person (rule `review`), oldest first.
pub fn held(conn: &mut DbConn, source_id: i64, limit: i64) -> QueryResult<Vec<FeedEntry>> {
    source_changes::table
        .filter(source_changes::source_id.eq(source_id))
        .filter(source_changes::status.eq(FeedStatus::Held.as_str()))
        .order(source_changes::id.asc())
        .limit(limit)
        .select(FeedEntry::as_select())
        .load(conn)
}

/// Approves (into the feed) or drops held entries of a source; returns how many it decided.
/// Entries already decided are left as they are.
pub fn decide(
    conn: &mut DbConn,
    source_id: i64,
    ids: &[i64],
    approve: bool,
    by: &str,
) -> QueryResult<usize> {
    let status = if approve {
        FeedStatus::Ready
    } else {
        FeedStatus::Dropped
    };
    db::write_tx(conn, |conn| {
        diesel::update(
            source_changes::table
                .filter(source_changes::source_id.eq(source_id))
                .filter(source_changes::id.eq_any(ids))
                .filter(source_changes::status.eq(FeedStatus::Held.as_str())),
        )
        .set((
            source_changes::status.eq(status.as_str()),
            source_changes::decided_by.eq(Some(by)),
            source_changes::decided_at.eq(Some(db::now())),
        ))
        .execute(conn)
    })
}

/// Deletes entries older than `before` (kept for the configured retention): numbered and
/// dropped ones only. Held entries wait for their decision, ready ones for their number, and
/// the newest numbered entry stays, so numbering goes on after it instead of starting again
/// below the cursors readers keep.
pub fn prune(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<usize> {
    db::write_tx(conn, |conn| {
        let newest: Option<i64> = source_changes::table
            .select(diesel::dsl::max(source_changes::seq))
            .first(conn)?;
        let old = source_changes::table.filter(source_changes::changed_at.lt(before));
        let numbered = diesel::delete(old.filter(source_changes::seq.lt(newest.unwrap_or(0))))
            .execute(conn)?;
        let dropped =
            diesel::delete(old.filter(source_changes::status.eq(FeedStatus::Dropped.as_str())))
                .execute(conn)?;
        Ok(numbered + dropped)
    })
}
