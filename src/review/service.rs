use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::{self, DbConn};
use crate::records::model::Actor;
use crate::schema::proposals;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = proposals)]
pub struct Proposal {
    pub id: i64,
    pub record_id: i64,
    pub field_key: String,
    pub current_value: String,
    pub proposed_value: String,
    pub origin: String,
    pub origin_id: Option<i64>,
    pub origin_label: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

/// Stores a proposal; a pending one for the same record and field is replaced (and kept, with
/// status `replaced`, as history). Call inside a transaction.
pub fn propose(
    conn: &mut DbConn,
    record_id: i64,
    field_key: &str,
    current: &str,
    proposed: &str,
    actor: &Actor,
) -> QueryResult<()> {
    let now = db::now();
    diesel::update(
        proposals::table
            .filter(proposals::record_id.eq(record_id))
            .filter(proposals::field_key.eq(field_key))
            .filter(proposals::status.eq("pending")),
    )
    .set((
        proposals::status.eq("replaced"),
        proposals::decided_by.eq(Some(format!("replaced by {}", actor.label))),
        proposals::decided_at.eq(Some(now)),
    ))
    .execute(conn)?;
    diesel::insert_into(proposals::table)
        .values((
            proposals::record_id.eq(record_id),
            proposals::field_key.eq(field_key),
            proposals::current_value.eq(current),
            proposals::proposed_value.eq(proposed),
            proposals::origin.eq(actor.origin),
            proposals::origin_id.eq(actor.origin_id),
            proposals::origin_label.eq(&actor.label),
            proposals::status.eq("pending"),
            proposals::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn pending_for(conn: &mut DbConn, record_id: i64) -> QueryResult<Vec<Proposal>> {
    proposals::table
        .filter(proposals::record_id.eq(record_id))
        .filter(proposals::status.eq("pending"))
        .order(proposals::field_key.asc())
        .select(Proposal::as_select())
        .load(conn)
}

/// Withdraws the pending proposals an origin (such as an undone import run) made.
pub fn withdraw(conn: &mut DbConn, origin: &str, origin_id: i64, by: &str) -> QueryResult<usize> {
    diesel::update(
        proposals::table
            .filter(proposals::origin.eq(origin))
            .filter(proposals::origin_id.eq(origin_id))
            .filter(proposals::status.eq("pending")),
    )
    .set((
        proposals::status.eq("replaced"),
        proposals::decided_by.eq(Some(by.to_string())),
        proposals::decided_at.eq(Some(db::now())),
    ))
    .execute(conn)
}
