//! Server-side sign-in sessions: the cookie holds a random token; a row here says whether it
//! still opens the console. Ending the row ends the session, wherever the cookie was copied.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::model::User;
use crate::db::{self, DbConn};
use crate::schema::{user_sessions, users};

/// How long a session lasts at most, however active.
pub const ABSOLUTE_DAYS: i64 = 7;

/// Activity is written at most this often, so reading a page rarely writes.
const SEEN_EVERY_SECONDS: i64 = 60;

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `user_id`; the token goes into the cookie and nowhere else.
pub fn open(conn: &mut DbConn, user_id: i64) -> QueryResult<String> {
    let token = crate::web::random_token();
    let now = db::now();
    db::write_tx(conn, |conn| {
        diesel::insert_into(user_sessions::table)
            .values((
                user_sessions::user_id.eq(user_id),
                user_sessions::token_hash.eq(hash(&token)),
                user_sessions::created_at.eq(now),
                user_sessions::last_seen_at.eq(now),
            ))
            .execute(conn)
    })?;
    Ok(token)
}

/// The active user whose live session `token` is, or None: signed out, ended elsewhere, idle
/// longer than `idle`, older than `ABSOLUTE_DAYS`, or the user deactivated. With it, the
/// version of the definitions the request's pages may rely on (`records::definitions`), read
/// in the same statement.
pub fn user_of(
    conn: &mut DbConn,
    token: &str,
    idle: Duration,
    now: NaiveDateTime,
) -> QueryResult<Option<(User, i64)>> {
    let found: Option<(i64, NaiveDateTime, NaiveDateTime, User, i64)> = user_sessions::table
        .inner_join(users::table)
        .filter(user_sessions::token_hash.eq(hash(token)))
        .filter(user_sessions::ended_at.is_null())
        .filter(users::active.eq(true))
        .select((
            user_sessions::id,
            user_sessions::created_at,
            user_sessions::last_seen_at,
            User::as_select(),
            db::kept_sql::<diesel::sql_types::BigInt>(crate::records::definitions::VERSION_SQL),
        ))
        .first(conn)
        .optional()?;
    let Some((id, created_at, last_seen_at, user, definitions_version)) = found else {
        return Ok(None);
    };
    if now - last_seen_at > idle || now - created_at > Duration::days(ABSOLUTE_DAYS) {
        end(conn, token)?;
        return Ok(None);
    }
    if now - last_seen_at >= Duration::seconds(SEEN_EVERY_SECONDS) {
        db::write_tx(conn, |conn| {
            diesel::update(user_sessions::table.find(id))
                .set(user_sessions::last_seen_at.eq(now))
                .execute(conn)
        })?;
    }
    Ok(Some((user, definitions_version)))
}

/// Ends the session of `token` (signing out).
pub fn end(conn: &mut DbConn, token: &str) -> QueryResult<usize> {
    db::write_tx(conn, |conn| {
        diesel::update(
            user_sessions::table
                .filter(user_sessions::token_hash.eq(hash(token)))
                .filter(user_sessions::ended_at.is_null()),
        )
        .set(user_sessions::ended_at.eq(Some(db::now())))
        .execute(conn)
    })
}

/// Ends every session of a user but the one of `keep` (a password change keeps the browser
/// that made it); returns how many ended. Runs in the caller's transaction.
pub fn end_all_of(conn: &mut DbConn, user_id: i64, keep: Option<&str>) -> QueryResult<usize> {
    let keep = keep.map(hash).unwrap_or_default();
    diesel::update(
        user_sessions::table
            .filter(user_sessions::user_id.eq(user_id))
            .filter(user_sessions::ended_at.is_null())
            .filter(user_sessions::token_hash.ne(keep)),
    )
    .set(user_sessions::ended_at.eq(Some(db::now())))
    .execute(conn)
}
