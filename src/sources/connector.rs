//! The database connector: a source may read its rows from a PostgreSQL query instead of
//! files. An admin gives the database's URL (kept encrypted with a key derived from the
//! console's session key) or names the environment variable that holds it, and a SELECT.
//! syncdesk runs it in a read-only transaction with a statement timeout, on demand or every N
//! minutes, fetches the rows through a cursor a few thousand at a time into a CSV file, and
//! runs that file through the import engine like an upload: same mapping, rules, report.
//! Before it saves or runs anything it checks what the connection reaches (`check_reader`):
//! never the console's own database, and only a role that can do nothing but read.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};

use super::model::Source;
use super::service::{self as sources, SourceError};
use crate::db::{self, DbConn};
use crate::schema::sources as sources_t;
use crate::sync::csvfile::{FileFormat, TextEncoding};
use crate::sync::engine::ImportError;
use crate::sync::jobs::{self, NewRun};

/// Who started a scheduled query's run, as run pages show it.
pub const SCHEDULED: &str = "scheduled query";

/// The prefix of the environment variables a connector may read its URL from.
pub const URL_ENV_PREFIX: &str = "SYNCDESK_CONNECTOR_";

/// A query may run this long before the database stops it.
const STATEMENT_TIMEOUT_SECONDS: u32 = 120;

/// Seconds to wait for the database to answer a connection.
const CONNECT_TIMEOUT_SECONDS: u32 = 10;

/// Rows fetched from the cursor at a time.
const FETCH_ROWS: usize = 5_000;

/// What an admin sets for a source's connector.
#[derive(Debug, Clone, Default)]
pub struct ConnectorInput {
    /// A new database URL to keep (encrypted); empty keeps the one stored.
    pub url: String,
    /// Or the name of an environment variable holding the URL.
    pub url_env: String,
    pub sql: String,
    /// 0: on demand only.
    pub every_minutes: i64,
}

/// What the stored database URLs are encrypted for (each purpose has a key of its own).
const URL_PURPOSE: &[u8] = b"syncdesk connector database URLs";

/// The 32-byte key that encrypts stored secrets of one purpose: an HMAC of the session key,
/// so that the session key itself encrypts nothing and changing it makes them unreadable.
fn secret_key(session_key: &[u8], purpose: &[u8]) -> Result<Key, String> {
    use hmac::{KeyInit as _, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(session_key)
        .map_err(|_| "the session key cannot make a key".to_string())?;
    mac.update(purpose);
    let bytes = mac.finalize().into_bytes();
    Ok(*Key::from_slice(&bytes[..32]))
}

/// `nonce || ciphertext`, base64, under the key of `purpose` (webhook secrets use it too).
pub fn seal(session_key: &[u8], purpose: &[u8], plain: &str) -> Result<String, String> {
    let cipher = ChaCha20Poly1305::new(&secret_key(session_key, purpose)?);
    let nonce: [u8; 12] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
        .map_err(|_| "cannot encrypt the secret".to_string())?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// What `seal` made; None when it cannot be read (another session key, or not sealed).
pub fn unseal(session_key: &[u8], purpose: &[u8], stored: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(12);
    let plain = ChaCha20Poly1305::new(&secret_key(session_key, purpose).ok()?)
        .decrypt(Nonce::from_slice(nonce), sealed)
        .ok()?;
    String::from_utf8(plain).ok()
}

/// A database URL as it is stored.
pub fn encrypt(session_key: &[u8], plain: &str) -> Result<String, String> {
    seal(session_key, URL_PURPOSE, plain)
}

pub fn decrypt(session_key: &[u8], stored: &str) -> Result<String, String> {
    unseal(session_key, URL_PURPOSE, stored).ok_or_else(|| {
        "The stored database URL cannot be read (was the session key changed?): enter it again."
            .to_string()
    })
}

/// Saves a source's connector settings.
pub fn save(
    conn: &mut DbConn,
    source_id: i64,
    input: &ConnectorInput,
    session_key: &[u8],
) -> Result<Source, SourceError> {
    let sql = input.sql.trim().trim_end_matches(';').trim().to_string();
    let url_env = input.url_env.trim().to_string();
    let url = input.url.trim();
    if !url.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(SourceError::Invalid(
            "The database URL starts with postgres:// (for example postgres://reader@db.example/accounts)."
                .into(),
        ));
    }
    // Only variables named for the purpose: naming any other (the session key, the console's
    // own DATABASE_URL) would let an admin read it.
    let connector_variable = url_env.starts_with(URL_ENV_PREFIX)
        && url_env
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !url_env.is_empty() && !connector_variable {
        return Err(SourceError::Invalid(format!(
            "'{url_env}' is not a connector variable: name one such as {URL_ENV_PREFIX}ACCOUNTS (upper case letters, digits and _)."
        )));
    }
    let first_word = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !sql.is_empty() && !matches!(first_word.as_str(), "select" | "with") {
        return Err(SourceError::Invalid(
            "The query is one SELECT (or WITH ... SELECT) statement.".into(),
        ));
    }
    if !(0..=10_080).contains(&input.every_minutes) {
        return Err(SourceError::Invalid(
            "Run it every 1 to 10,080 minutes (a week), or 0 for on demand only.".into(),
        ));
    }
    let current = sources::find(conn, source_id)?.ok_or(SourceError::NotFound)?;
    let secret = if url.is_empty() {
        current.query_url_secret.clone()
    } else {
        encrypt(session_key, url).map_err(SourceError::Invalid)?
    };
    // What it would reach is checked now, so the admin hears why at once; it is checked again
    // at every run (roles change). Without a query nothing runs, and nothing is checked.
    let mut settings = current.clone();
    settings.query_url_env.clone_from(&url_env);
    settings.query_url_secret.clone_from(&secret);
    let has_url = !url_env.is_empty() || !secret.is_empty();
    if !sql.is_empty() && has_url {
        let url = url_of(&settings, session_key).map_err(SourceError::Invalid)?;
        connect(conn, &url).map_err(SourceError::Invalid)?;
    }
    diesel::update(sources_t::table.find(source_id))
        .set((
            sources_t::query_sql.eq(&sql),
            sources_t::query_url_env.eq(&url_env),
            sources_t::query_url_secret.eq(&secret),
            sources_t::query_every_minutes.eq(input.every_minutes),
            sources_t::updated_at.eq(db::now()),
        ))
        .execute(conn)?;
    sources::find(conn, source_id)?.ok_or(SourceError::NotFound)
}

/// The database URL a source's query reads: the named environment variable, else the stored
/// one.
fn url_of(source: &Source, session_key: &[u8]) -> Result<String, String> {
    if !source.query_url_env.is_empty() {
        if !source.query_url_env.starts_with(URL_ENV_PREFIX) {
            return Err(format!(
                "Only variables named {URL_ENV_PREFIX}... can hold a connector's URL."
            ));
        }
        let url = std::env::var(&source.query_url_env).map_err(|_| {
            format!(
                "The environment variable {} that should hold the database URL is not set for this process.",
                source.query_url_env
            )
        })?;
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(format!(
                "The environment variable {} does not hold a postgres:// URL.",
                source.query_url_env
            ));
        }
        return Ok(url);
    }
    if source.query_url_secret.is_empty() {
        return Err("Give the database URL, or the environment variable that holds it.".into());
    }
    decrypt(session_key, &source.query_url_secret)
}

/// Where a connection is: its cluster's system identifier (when the role may read it), the
/// server's address and port, and the database.
#[derive(QueryableByName, Debug)]
struct Identity {
    #[diesel(sql_type = Nullable<Text>)]
    system: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    addr: Option<String>,
    #[diesel(sql_type = Text)]
    port: String,
    #[diesel(sql_type = Text)]
    database: String,
}

impl Identity {
    fn read(pg: &mut diesel::PgConnection) -> QueryResult<Identity> {
        let query = |system: &str| {
            format!(
                "SELECT {system} AS system, pg_catalog.host(pg_catalog.inet_server_addr()) AS addr, \
                 pg_catalog.current_setting('port') AS port, \
                 pg_catalog.current_database()::text AS database"
            )
        };
        diesel::sql_query(query(
            "(SELECT system_identifier::text FROM pg_catalog.pg_control_system())",
        ))
        .get_result(pg)
        .or_else(|_| diesel::sql_query(query("NULL::text")).get_result(pg))
    }

    /// The same database of the same cluster: by system identifier when both are known,
    /// else by the server's address and port as each connection sees them.
    fn same_as(&self, other: &Identity) -> bool {
        self.database == other.database
            && match (&self.system, &other.system) {
                (Some(a), Some(b)) => a == b,
                _ => self.addr == other.addr && self.port == other.port,
            }
    }
}

#[derive(QueryableByName)]
struct Reason {
    #[diesel(sql_type = Text)]
    reason: String,
}

/// Why the connection's role can do more than read: superuser, creating roles or databases,
/// the roles that reach the server's files and programs or write every table, CREATE on the
/// database or a schema, writing a table or changing a sequence; for the role itself and
/// every role it may become (`SET ROLE`, also from a query through `set_config`), whether it
/// inherits their privileges or not.
const ROLE_REASONS: &str = "
WITH roles AS (
  SELECT r.oid, r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb
  FROM pg_catalog.pg_roles r
  WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
), reasons AS (
  SELECT 1 AS o, pg_catalog.format('role %I is a superuser', rolname) AS reason
    FROM roles WHERE rolsuper
  UNION ALL
  SELECT 2, pg_catalog.format('role %I may create roles', rolname) FROM roles WHERE rolcreaterole
  UNION ALL
  SELECT 3, pg_catalog.format('role %I may create databases', rolname) FROM roles WHERE rolcreatedb
  UNION ALL
  SELECT 4, pg_catalog.format('it is a member of %I, which reaches files or programs on the database server', rolname)
    FROM roles
    WHERE rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
  UNION ALL
  SELECT 5, pg_catalog.format('it is a member of %I, which writes every table', rolname)
    FROM roles WHERE rolname = 'pg_write_all_data'
  UNION ALL
  SELECT 6, pg_catalog.format('role %I may create objects in database %I', rolname, pg_catalog.current_database())
    FROM roles
    WHERE pg_catalog.has_database_privilege(roles.oid, pg_catalog.current_database(), 'CREATE')
  UNION ALL
  SELECT 7, pg_catalog.format('role %I may create objects in schema %I', roles.rolname, n.nspname)
    FROM roles, pg_catalog.pg_namespace n
    WHERE pg_catalog.has_schema_privilege(roles.oid, n.oid, 'CREATE')
  UNION ALL
  SELECT 8, pg_catalog.format('role %I may write table %I.%I', roles.rolname, n.nspname, c.relname)
    FROM roles, pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      -- Everyone may update pg_settings: that is SET, for the session only.
      AND c.oid <> 'pg_catalog.pg_settings'::pg_catalog.regclass
      AND (pg_catalog.has_table_privilege(roles.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
        OR pg_catalog.has_any_column_privilege(roles.oid, c.oid, 'INSERT, UPDATE'))
  UNION ALL
  SELECT 9, pg_catalog.format('role %I may change sequence %I.%I', roles.rolname, n.nspname, c.relname)
    FROM roles, pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND pg_catalog.has_sequence_privilege(roles.oid, c.oid, 'USAGE, UPDATE')
)
SELECT reason FROM reasons ORDER BY o, reason LIMIT 6";

/// Refuses a connection that reaches the console's own database (compared by what each
/// server says it is, not by the URLs' text), or whose role can do more than read. The
/// read-only transaction alone is not enough: `lo_export`, `lo_import`, `COPY ... PROGRAM`
/// and `pg_read_file` reach the server's files and programs from inside one, and need a
/// superuser or a member of pg_write_server_files, pg_read_server_files or
/// pg_execute_server_program, which are refused here.
fn check_reader(console: &mut DbConn, pg: &mut diesel::PgConnection) -> Result<(), String> {
    let unchecked = |e: diesel::result::Error| format!("Cannot check the database's role: {e}");
    // A console on SQLite cannot be reached through a postgres:// URL.
    if let DbConn::Pg(own) = console {
        let ours = Identity::read(own).map_err(unchecked)?;
        let theirs = Identity::read(pg).map_err(unchecked)?;
        if theirs.same_as(&ours) {
            return Err(format!(
                "That is the console's own database ({} on the same PostgreSQL server): a connector reads another system's database, never the console's users and records.",
                theirs.database
            ));
        }
    }
    let reasons: Vec<Reason> = diesel::sql_query(ROLE_REASONS)
        .load(pg)
        .map_err(unchecked)?;
    if reasons.is_empty() {
        return Ok(());
    }
    #[derive(QueryableByName)]
    struct Me {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let me = diesel::sql_query("SELECT session_user::text AS name")
        .get_result::<Me>(pg)
        .map_err(unchecked)?
        .name;
    let reasons: Vec<String> = reasons.into_iter().map(|r| r.reason).collect();
    Err(format!(
        "The database role {me} can do more than read, so the connector refuses it: {}. Give the connector a role that can only read, for example CREATE ROLE reader LOGIN PASSWORD '...'; GRANT SELECT ON the tables it reads TO reader.",
        reasons.join("; ")
    ))
}

/// Connects to a connector's database and checks what it reaches (`check_reader`).
fn connect(console: &mut DbConn, url: &str) -> Result<diesel::PgConnection, String> {
    // An unreachable host must not hold the automatic-imports thread.
    let url = if url.contains("connect_timeout=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&connect_timeout={CONNECT_TIMEOUT_SECONDS}")
    } else {
        format!("{url}?connect_timeout={CONNECT_TIMEOUT_SECONDS}")
    };
    let mut pg = diesel::PgConnection::establish(&url)
        .map_err(|e| format!("Cannot connect to the database: {e}"))?;
    check_reader(console, &mut pg)?;
    Ok(pg)
}

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Text)]
    row: String,
}

/// A JSON value as a CSV cell: text as is, numbers and booleans written out, null blank.
fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs the source's query and writes its rows as CSV to `out`; returns how many. Columns are
/// the query's, in name order; a query without rows writes the source's columns only.
fn query_to_csv(
    console: &mut DbConn,
    source: &Source,
    url: &str,
    mapped_columns: &[String],
    out: impl Write,
) -> Result<usize, String> {
    let failed = |e: diesel::result::Error| format!("The query failed: {e}");
    let mut pg = connect(console, url)?;
    pg.batch_execute(&format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT_SECONDS}s'"
    ))
    .map_err(failed)?;
    // One prepared statement: a DECLARE takes a single SELECT, nothing else can ride along.
    diesel::sql_query(format!(
        // The line break ends a trailing `-- comment` of the query before `) q`.
        "DECLARE syncdesk_rows NO SCROLL CURSOR FOR SELECT row_to_json(q)::text AS row FROM ({}\n) q",
        source.query_sql
    ))
    .execute(&mut pg)
    .map_err(failed)?;
    let mut writer = csv::Writer::from_writer(out);
    let write = |e: csv::Error| format!("cannot write the rows: {e}");
    let mut columns: Option<Vec<String>> = None;
    let mut count = 0;
    loop {
        let rows: Vec<JsonRow> =
            diesel::sql_query(format!("FETCH {FETCH_ROWS} FROM syncdesk_rows"))
                .load(&mut pg)
                .map_err(failed)?;
        for row in &rows {
            let values: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&row.row).map_err(|e| format!("unreadable row: {e}"))?;
            let columns = columns.get_or_insert_with(|| {
                let names: Vec<String> = values.keys().cloned().collect();
                names
            });
            if count == 0 {
                writer.write_record(columns.iter()).map_err(write)?;
            }
            writer
                .write_record(
                    columns
                        .iter()
                        .map(|c| values.get(c).map(cell).unwrap_or_default()),
                )
                .map_err(write)?;
            count += 1;
        }
        if rows.len() < FETCH_ROWS {
            break;
        }
    }
    pg.batch_execute("COMMIT").map_err(failed)?;
    if count == 0 {
        let mut header: Vec<&str> = Vec::new();
        if !source.id_column.is_empty() {
            header.push(&source.id_column);
        }
        header.extend(mapped_columns.iter().map(String::as_str));
        writer.write_record(header).map_err(write)?;
    }
    writer
        .flush()
        .map_err(|e| format!("cannot write the rows: {e}"))?;
    Ok(count)
}

/// Runs a source's query now and queues its rows as an import run (applied, not a dry run);
/// returns the run's id.
pub fn run_now(
    conn: &mut DbConn,
    source: &Source,
    data_dir: &Path,
    session_key: &[u8],
    started_by: (Option<i64>, &str),
) -> Result<i64, ImportError> {
    if source.query_sql.is_empty() {
        return Err(ImportError::Refused(format!(
            "Source {} has no query.",
            source.name
        )));
    }
    if let Some(busy) = jobs::already_running(conn, source)? {
        return Err(busy);
    }
    diesel::update(sources_t::table.find(source.id))
        .set(sources_t::query_last_at.eq(Some(db::now())))
        .execute(conn)?;
    let url = url_of(source, session_key).map_err(ImportError::Refused)?;
    let mapped: Vec<String> = sources::mapping(conn, source.id)?
        .into_iter()
        .map(|m| m.column_name)
        .collect();
    let io = |e: std::io::Error| ImportError::Refused(format!("cannot keep the rows: {e}"));
    let mut file = tempfile::tempfile().map_err(io)?;
    query_to_csv(
        conn,
        source,
        &url,
        &mapped,
        std::io::BufWriter::new(&mut file),
    )
    .map_err(ImportError::Refused)?;
    use std::io::Seek;
    file.rewind().map_err(io)?;
    let sha = jobs::store_file(data_dir, file, u64::MAX)?;
    let name = format!(
        "query {}.csv",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
    );
    jobs::enqueue(
        conn,
        &NewRun {
            source,
            file_name: &name,
            sha256: &sha,
            format: FileFormat {
                encoding: TextEncoding::Utf8,
                delimiter: b',',
            },
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: started_by.0,
            user_label: started_by.1,
        },
    )
}

/// Runs the queries that are due (every N minutes since their last run); returns the runs
/// queued. A failing query is logged and tried again at its next time.
pub fn run_due(conn: &mut DbConn, data_dir: &Path, session_key: &[u8]) -> QueryResult<Vec<i64>> {
    let scheduled: Vec<Source> = sources_t::table
        .filter(sources_t::query_every_minutes.gt(0))
        .filter(sources_t::query_sql.ne(""))
        .select(Source::as_select())
        .load(conn)?;
    let now = db::now();
    let mut queued = Vec::new();
    for source in scheduled {
        let due = source
            .query_last_at
            .is_none_or(|last| now - last >= chrono::Duration::minutes(source.query_every_minutes));
        if !due {
            continue;
        }
        match run_now(conn, &source, data_dir, session_key, (None, SCHEDULED)) {
            Ok(run) => queued.push(run),
            Err(ImportError::SourceBusy(_)) => {}
            Err(e) => tracing::warn!(source = %source.name, error = %e, "scheduled query"),
        }
    }
    Ok(queued)
}
