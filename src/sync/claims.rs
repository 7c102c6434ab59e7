//! Which process holds a running import (`jobs::claimant` names it). A leaf: the engine checks
//! its hold before each chunk commits; the job queue, the CLI and cancellation set it.

use diesel::prelude::*;

use super::model::RunStatus;
use crate::db::DbConn;
use crate::schema::import_run_claims;

/// Which process holds a run (see `jobs::claimant`).
pub fn claimant_of(conn: &mut DbConn, run_id: i64) -> QueryResult<Option<String>> {
    Ok(import_run_claims::table
        .find(run_id)
        .select(import_run_claims::claimed_by)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Names the process that holds a run (None: nobody, the run is queued).
pub fn set_claimant(conn: &mut DbConn, run_id: i64, claimant: Option<&str>) -> QueryResult<usize> {
    diesel::update(import_run_claims::table.find(run_id))
        .set(import_run_claims::claimed_by.eq(claimant))
        .execute(conn)
}

/// Whether `claimant` still runs the run; in a transaction, also locks the run's row until
/// it ends, so a cancellation waits for the chunk or wins before it.
pub fn holds(conn: &mut DbConn, run_id: i64, claimant: &str) -> QueryResult<bool> {
    Ok(diesel::update(
        import_run_claims::table
            .filter(import_run_claims::id.eq(run_id))
            .filter(import_run_claims::status.eq(RunStatus::Running.as_str()))
            .filter(import_run_claims::claimed_by.eq(claimant)),
    )
    .set(import_run_claims::claimed_by.eq(claimant))
    .execute(conn)?
        == 1)
}

/// The phone country chosen for a run's upload ('' when none was).
pub fn country_of(conn: &mut DbConn, run_id: i64) -> QueryResult<String> {
    import_run_claims::table
        .find(run_id)
        .select(import_run_claims::country)
        .first(conn)
}

/// Sets the phone country of a run before it starts (in the transaction that queues it).
pub fn set_country(conn: &mut DbConn, run_id: i64, code: &str) -> QueryResult<()> {
    diesel::update(import_run_claims::table.find(run_id))
        .set(import_run_claims::country.eq(code))
        .execute(conn)
        .map(|_| ())
}
