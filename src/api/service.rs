//! API tokens and idempotent pushes. Knows no HTTP types.
//!
//! A token is `sdk_` and 48 hex characters of randomness; only its SHA-256 is stored (the
//! secret is long and random, so a slow password hash would add nothing but latency).

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::model::{ApiToken, Scope};
use crate::db::{self, DbConn};
use crate::schema::{api_idempotency, api_tokens, sources};

/// Every token starts with this, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "sdk_";

/// `last_used_at` is written at most this often per token, not on every request.
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// What a new token may do.
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub source_id: Option<i64>,
    pub created_by: Option<i64>,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token; returns it and its secret, which is never shown again.
pub fn create(conn: &mut DbConn, new: &NewToken) -> Result<(ApiToken, String), TokenError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TokenError::Invalid(
            "Give the token a name of 1 to 100 characters (who or what uses it).".into(),
        ));
    }
    if new.scopes.is_empty() {
        return Err(TokenError::Invalid(
            "Choose at least one scope: what the token may do.".into(),
        ));
    }
    if let Some(source_id) = new.source_id {
        let found: i64 = sources::table.find(source_id).count().get_result(conn)?;
        if found == 0 {
            return Err(TokenError::Invalid(format!(
                "There is no source #{source_id}."
            )));
        }
    }
    let secret = format!("{TOKEN_PREFIX}{}", &crate::web::random_token()[..48]);
    let mut scopes: Vec<&str> = new.scopes.iter().map(|s| s.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let id: i64 = diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::name.eq(name),
            api_tokens::prefix.eq(&secret[..TOKEN_PREFIX.len() + 8]),
            api_tokens::secret_hash.eq(digest(&secret)),
            api_tokens::scopes.eq(scopes.join(" ")),
            api_tokens::source_id.eq(new.source_id),
            api_tokens::created_by.eq(new.created_by),
            api_tokens::created_at.eq(db::now()),
        ))
        .returning(api_tokens::id)
        .get_result(conn)?;
    let token = find(conn, id)?.ok_or(diesel::result::Error::NotFound)?;
    Ok((token, secret))
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .find(id)
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// Every token, newest first.
pub fn list(conn: &mut DbConn) -> QueryResult<Vec<ApiToken>> {
    api_tokens::table
        .order(api_tokens::id.desc())
        .select(ApiToken::as_select())
        .load(conn)
}

/// Revokes a token: its next request is refused. Revoking twice changes nothing.
pub fn revoke(conn: &mut DbConn, id: i64) -> Result<ApiToken, TokenError> {
    diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(db::now())))
    .execute(conn)?;
    find(conn, id)?.ok_or_else(|| TokenError::Invalid(format!("There is no token #{id}.")))
}

/// The live token with this secret, if any; notes when it was last used.
pub fn authenticate(conn: &mut DbConn, secret: &str) -> QueryResult<Option<ApiToken>> {
    if !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let token: Option<ApiToken> = api_tokens::table
        .filter(api_tokens::secret_hash.eq(digest(secret)))
        .filter(api_tokens::revoked_at.is_null())
        .select(ApiToken::as_select())
        .first(conn)
        .optional()?;
    let Some(token) = token else { return Ok(None) };
    let now = db::now();
    let stale = token
        .last_used_at
        .is_none_or(|t| (now - t).num_seconds() >= LAST_USED_GRANULARITY_SECONDS);
    if stale {
        diesel::update(api_tokens::table.find(token.id))
            .set(api_tokens::last_used_at.eq(Some(now)))
            .execute(conn)?;
    }
    Ok(Some(token))
}

/// The answer first given to a push with this idempotency key.
pub struct StoredAnswer {
    pub status_code: u16,
    pub body: String,
}

pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Where a push with an idempotency key stands.
pub enum KeyClaim {
    /// First use: this request runs the push, then `finish_key` keeps its answer.
    New,
    /// Used before with the same body: the first answer.
    Replay(StoredAnswer),
    /// The first request with this key is still running.
    InProgress,
    /// Used before with another body.
    OtherBody,
}

/// Where an idempotency key counts: a token's key on one request path (`/api/v1/sources/3/rows`),
/// so the same key on another path is a new request.
#[derive(Debug, Clone)]
pub struct KeyScope {
    pub token_id: i64,
    pub path: String,
    pub key: String,
}

/// Claims an idempotency key for a body, in one statement, so that two requests with the
/// same key never both run: the first inserts the key (answer pending), the others read it.
pub fn claim_key(conn: &mut DbConn, scope: &KeyScope, body_sha256: &str) -> QueryResult<KeyClaim> {
    let inserted = diesel::insert_into(api_idempotency::table)
        .values((
            api_idempotency::token_id.eq(scope.token_id),
            api_idempotency::request_path.eq(&scope.path),
            api_idempotency::idempotency_key.eq(&scope.key),
            api_idempotency::body_sha256.eq(body_sha256),
            api_idempotency::status_code.eq(0),
            api_idempotency::response_body.eq(""),
            api_idempotency::created_at.eq(db::now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => return Ok(KeyClaim::New),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e),
    }
    let (stored_sha, status, body) = api_idempotency::table
        .find((scope.token_id, &scope.path, &scope.key))
        .select((
            api_idempotency::body_sha256,
            api_idempotency::status_code,
            api_idempotency::response_body,
        ))
        .first::<(String, i32, String)>(conn)?;
    Ok(if stored_sha != body_sha256 {
        KeyClaim::OtherBody
    } else if status == 0 {
        KeyClaim::InProgress
    } else {
        KeyClaim::Replay(StoredAnswer {
            status_code: u16::try_from(status).unwrap_or(200),
            body,
        })
    })
}

/// Keeps the answer of a push whose key `claim_key` gave.
pub fn finish_key(conn: &mut DbConn, scope: &KeyScope, answer: &StoredAnswer) -> QueryResult<()> {
    diesel::update(api_idempotency::table.find((scope.token_id, &scope.path, &scope.key)))
        .set((
            api_idempotency::status_code.eq(i32::from(answer.status_code)),
            api_idempotency::response_body.eq(&answer.body),
        ))
        .execute(conn)?;
    Ok(())
}

/// Frees a key whose push failed before it had an answer: the client may try again with it.
pub fn release_key(conn: &mut DbConn, scope: &KeyScope) -> QueryResult<()> {
    diesel::delete(
        api_idempotency::table
            .find((scope.token_id, &scope.path, &scope.key))
            .filter(api_idempotency::status_code.eq(0)),
    )
    .execute(conn)?;
    Ok(())
}
