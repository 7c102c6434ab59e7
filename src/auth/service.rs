//! Account rules, independent of HTTP: setup, sign-in and throttling, passwords, roles.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chrono::{Duration, NaiveDateTime};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::model::{NewUserRow, Role, User};
use super::sessions;
use crate::db::{self, DbConn};
use crate::schema::{login_failures, users};

pub const MIN_PASSWORD_LEN: usize = 10;
const MAX_PASSWORD_LEN: usize = 1024;
/// Failed sign-ins counted over this window.
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;
/// Failures for one account from one address within the window before each further try
/// waits: `FIRST_DELAY_SECONDS`, doubling with every failure, at most the window. Only that
/// address waits: nobody elsewhere can lock an account out.
pub const FREE_FAILURES_PER_ACCOUNT: i64 = 3;
pub const FIRST_DELAY_SECONDS: i64 = 15;
/// Failures from one address (over any accounts) within the window before it is refused.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("The email or the password is wrong.")]
    InvalidCredentials,
    #[error("Too many failed sign-in attempts {scope}. Try again in {}.", in_words(*seconds))]
    Throttled { scope: &'static str, seconds: i64 },
    #[error("{0}")]
    Invalid(String),
    #[error("A user with the email {0} already exists.")]
    EmailTaken(String),
    #[error("The first admin has already been created: sign in instead.")]
    SetupDone,
    #[error("{0} is the last active admin: make another user an admin first.")]
    LastAdmin(String),
    #[error("The current password is wrong.")]
    WrongPassword,
    #[error("That user does not exist.")]
    NoSuchUser,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// What a new account needs; validated by `create_user`.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub password: String,
    pub role: Role,
}

pub fn user_count(conn: &mut DbConn) -> QueryResult<i64> {
    users::table.count().get_result(conn)
}

pub fn list_users(conn: &mut DbConn) -> QueryResult<Vec<User>> {
    users::table
        .order((users::active.desc(), users::email.asc()))
        .select(User::as_select())
        .load(conn)
}

pub fn find_user(conn: &mut DbConn, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_active_user(conn: &mut DbConn, id: i64) -> QueryResult<Option<User>> {
    Ok(find_user(conn, id)?.filter(|u| u.active))
}

/// Emails are compared and stored trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The same check as an email field's (`fields::validate::normalize_email`); accounts then
/// store the address lower-cased whole, so signing in ignores case.
pub fn validate_email(email: &str) -> Result<(), String> {
    crate::fields::validate::normalize_email(email.trim())
        .map(|_| ())
        .map_err(|message| format!("{message}."))
}

pub fn validate_password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(format!(
            "The password must have at least {MIN_PASSWORD_LEN} characters."
        ));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(format!(
            "The password must have at most {MAX_PASSWORD_LEN} characters."
        ));
    }
    Ok(())
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn password_matches(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks the fields of a new account and hashes its password (outside any transaction).
fn prepare(new: &NewUser) -> Result<(String, String, String), AuthError> {
    let email = normalize_email(&new.email);
    validate_email(&email).map_err(AuthError::Invalid)?;
    let display_name = new.display_name.trim();
    let display_name = if display_name.is_empty() {
        email.split('@').next().unwrap_or_default().to_string()
    } else {
        display_name.to_string()
    };
    if display_name.chars().count() > 200 {
        return Err(AuthError::Invalid(
            "The display name must have at most 200 characters.".into(),
        ));
    }
    validate_password(&new.password).map_err(AuthError::Invalid)?;
    let hash = hash_password(&new.password)?;
    Ok((email, display_name, hash))
}

fn insert_user(
    conn: &mut DbConn,
    email: &str,
    display_name: &str,
    hash: &str,
    role: Role,
) -> Result<User, AuthError> {
    let now = db::now();
    let inserted = diesel::insert_into(users::table)
        .values(NewUserRow {
            email,
            display_name,
            password_hash: hash,
            role: role.as_str(),
            active: true,
            created_at: now,
            updated_at: now,
        })
        .execute(conn);
    match inserted {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            return Err(AuthError::EmailTaken(email.to_string()))
        }
        other => other?,
    };
    Ok(users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)?)
}

/// Creates an account with the given role.
pub fn create_user(conn: &mut DbConn, new: &NewUser) -> Result<User, AuthError> {
    let (email, display_name, hash) = prepare(new)?;
    db::write_tx(conn, |conn| {
        insert_user(conn, &email, &display_name, &hash, new.role)
    })
}

/// Creates the first admin, only while there is no user at all.
pub fn create_first_admin(conn: &mut DbConn, new: &NewUser) -> Result<User, AuthError> {
    let (email, display_name, hash) = prepare(new)?;
    db::write_tx(conn, |conn| {
        lock_users(conn)?;
        if user_count(conn)? > 0 {
            return Err(AuthError::SetupDone);
        }
        insert_user(conn, &email, &display_name, &hash, Role::Admin)
    })
}

/// Serialises account changes that depend on counting users or admins. SQLite's immediate
/// transaction already holds the write lock; PostgreSQL needs an explicit lock.
fn lock_users(conn: &mut DbConn) -> QueryResult<()> {
    if let DbConn::Pg(c) = conn {
        c.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")?;
    }
    Ok(())
}

/// Checks a sign-in. Every failure is recorded; too many recent failures for the account or
/// from the address refuse further tries until the oldest of them leaves the window.
pub fn authenticate(
    conn: &mut DbConn,
    email: &str,
    password: &str,
    address: &str,
    now: NaiveDateTime,
) -> Result<User, AuthError> {
    let email = normalize_email(email);
    let since = now - Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let by_account: Vec<NaiveDateTime> = login_failures::table
        .filter(login_failures::email.eq(&email))
        .filter(login_failures::address.eq(address))
        .filter(login_failures::failed_at.gt(since))
        .order(login_failures::failed_at.desc())
        .select(login_failures::failed_at)
        .load(conn)?;
    if let Some(seconds) = account_delay(&by_account, now) {
        return Err(AuthError::Throttled {
            scope: "for this account from your address",
            seconds,
        });
    }
    let by_address: Vec<NaiveDateTime> = login_failures::table
        .filter(login_failures::address.eq(address))
        .filter(login_failures::failed_at.gt(since))
        .order(login_failures::failed_at.desc())
        .select(login_failures::failed_at)
        .limit(MAX_FAILURES_PER_ADDRESS)
        .load(conn)?;
    if let Some(seconds) = retry_after(&by_address, MAX_FAILURES_PER_ADDRESS, now) {
        return Err(AuthError::Throttled {
            scope: "from your network address",
            seconds,
        });
    }

    let row: Option<(User, String)> = users::table
        .filter(users::email.eq(&email))
        .select((User::as_select(), users::password_hash))
        .first(conn)
        .optional()?;
    let ok_user = match row {
        Some((user, hash)) => password_matches(password, &hash).then_some(user),
        None => {
            // Spend the same time as a real check, so timing does not reveal who has an account.
            let _ = hash_password(password);
            None
        }
    };
    match ok_user {
        // Writes wait their turn for the lock like every other (an import gives way to them).
        Some(user) if user.active => db::write_tx(conn, |conn| {
            diesel::delete(login_failures::table.filter(login_failures::email.eq(&email)))
                .execute(conn)?;
            Ok(user)
        }),
        // The failure is stored (committed), then reported.
        _ => db::write_tx(conn, |conn| {
            diesel::insert_into(login_failures::table)
                .values((
                    login_failures::email.eq(&email),
                    login_failures::address.eq(address),
                    login_failures::failed_at.eq(now),
                ))
                .execute(conn)?;
            // Old rows serve no window any more.
            diesel::delete(
                login_failures::table.filter(login_failures::failed_at.lt(now - Duration::days(1))),
            )
            .execute(conn)?;
            Ok::<_, AuthError>(())
        })
        .and(Err(AuthError::InvalidCredentials)),
    }
}

/// Seconds until the `limit`-th most recent failure (of `recent`, newest first) leaves the window.
fn retry_after(recent: &[NaiveDateTime], limit: i64, now: NaiveDateTime) -> Option<i64> {
    let limit = usize::try_from(limit).ok()?;
    let oldest_counted = recent.get(limit.checked_sub(1)?)?;
    let free_at = *oldest_counted + Duration::minutes(THROTTLE_WINDOW_MINUTES);
    Some((free_at - now).num_seconds().max(1))
}

/// Seconds an account's next try from this address waits, after `recent` failures (newest
/// first): none for the first few, then a delay that doubles with each failure.
fn account_delay(recent: &[NaiveDateTime], now: NaiveDateTime) -> Option<i64> {
    let failures = i64::try_from(recent.len()).ok()?;
    let over = u32::try_from(failures - FREE_FAILURES_PER_ACCOUNT).ok()?;
    let delay = FIRST_DELAY_SECONDS
        .saturating_mul(1_i64 << over.min(16))
        .min(THROTTLE_WINDOW_MINUTES * 60);
    let free_at = *recent.first()? + Duration::seconds(delay);
    (free_at > now).then(|| (free_at - now).num_seconds().max(1))
}

fn in_words(seconds: i64) -> String {
    match seconds {
        1 => "1 second".into(),
        s if s < 90 => format!("{s} seconds"),
        s => format!("{} minutes", (s + 59) / 60),
    }
}

pub fn change_password(
    conn: &mut DbConn,
    user_id: i64,
    current: &str,
    new_password: &str,
    confirmation: &str,
    keep_session: Option<&str>,
) -> Result<usize, AuthError> {
    let hash: String = users::table
        .find(user_id)
        .select(users::password_hash)
        .first(conn)
        .optional()?
        .ok_or(AuthError::NoSuchUser)?;
    if !password_matches(current, &hash) {
        return Err(AuthError::WrongPassword);
    }
    if new_password != confirmation {
        return Err(AuthError::Invalid(
            "The new password and its confirmation differ.".into(),
        ));
    }
    validate_password(new_password).map_err(AuthError::Invalid)?;
    let new_hash = hash_password(new_password)?;
    // Whoever knew the old password is signed out everywhere but here.
    let ended = db::write_tx(conn, |conn| {
        diesel::update(users::table.find(user_id))
            .set((
                users::password_hash.eq(new_hash),
                users::must_change_password.eq(false),
                users::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        sessions::end_all_of(conn, user_id, keep_session)
    })?;
    Ok(ended)
}

/// An admin sets a temporary password: the user's sessions end, and at the next sign-in they
/// must choose their own before anything else.
pub fn reset_password(conn: &mut DbConn, user_id: i64, temporary: &str) -> Result<User, AuthError> {
    validate_password(temporary).map_err(AuthError::Invalid)?;
    let hash = hash_password(temporary)?;
    db::write_tx(conn, |conn| {
        let updated = diesel::update(users::table.find(user_id))
            .set((
                users::password_hash.eq(&hash),
                users::must_change_password.eq(true),
                users::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        if updated == 0 {
            return Err(AuthError::NoSuchUser);
        }
        sessions::end_all_of(conn, user_id, None)?;
        find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)
    })
}

/// An admin's "sign out everywhere" for a user; returns how many sessions ended.
pub fn sign_out_everywhere(conn: &mut DbConn, user_id: i64) -> Result<usize, AuthError> {
    find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)?;
    Ok(db::write_tx(conn, |conn| {
        sessions::end_all_of(conn, user_id, None)
    })?)
}

/// Changes a user's role; the last active admin keeps theirs.
pub fn set_role(conn: &mut DbConn, user_id: i64, role: Role) -> Result<User, AuthError> {
    db::write_tx(conn, |conn| {
        lock_users(conn)?;
        let user = find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)?;
        if role != Role::Admin {
            ensure_not_last_admin(conn, &user)?;
        }
        diesel::update(users::table.find(user_id))
            .set((
                users::role.eq(role.as_str()),
                users::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)
    })
}

/// Deactivates or reactivates a user; the last active admin stays active.
pub fn set_active(conn: &mut DbConn, user_id: i64, active: bool) -> Result<User, AuthError> {
    db::write_tx(conn, |conn| {
        lock_users(conn)?;
        let user = find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)?;
        if !active {
            ensure_not_last_admin(conn, &user)?;
        }
        diesel::update(users::table.find(user_id))
            .set((users::active.eq(active), users::updated_at.eq(db::now())))
            .execute(conn)?;
        if !active {
            sessions::end_all_of(conn, user_id, None)?;
        }
        find_user(conn, user_id)?.ok_or(AuthError::NoSuchUser)
    })
}

fn ensure_not_last_admin(conn: &mut DbConn, user: &User) -> Result<(), AuthError> {
    if !(user.active && user.role() == Role::Admin) {
        return Ok(());
    }
    let other_admins: i64 = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::active.eq(true))
        .filter(users::id.ne(user.id))
        .count()
        .get_result(conn)?;
    if other_admins == 0 {
        return Err(AuthError::LastAdmin(user.email.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(minute: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(12, minute, 0))
            .unwrap()
    }

    #[test]
    fn retry_after_counts_from_the_oldest_counted_failure() {
        let failures = vec![at(10), at(9), at(8), at(7), at(6)];
        assert_eq!(retry_after(&failures, 5, at(10)), Some(11 * 60));
        assert_eq!(retry_after(&failures[..4], 5, at(10)), None);
    }

    #[test]
    fn an_account_waits_longer_after_each_failure() {
        let second = |s: i64| at(10) + Duration::seconds(s);
        assert_eq!(account_delay(&[at(10), at(10)], at(10)), None);
        let three = [at(10), at(10), at(10)];
        assert_eq!(account_delay(&three, second(5)), Some(10));
        assert_eq!(account_delay(&three, second(15)), None);
        let five = [at(10); 5];
        assert_eq!(account_delay(&five, at(10)), Some(60));
        assert_eq!(account_delay(&[at(10); 40], at(10)), Some(15 * 60));
        assert_eq!(in_words(1), "1 second");
        assert_eq!(in_words(600), "10 minutes");
    }

    #[test]
    fn email_checks() {
        assert!(validate_email("ada@example.org").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.d",
        ] {
            assert!(validate_email(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("wrong", &hash));
    }
}
