//! One connection type over PostgreSQL and SQLite, chosen by the database URL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, CustomizeConnection, ManageConnection, R2D2Connection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// PostgreSQL first: SQLite would accept any string as a file name.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type DbPool = r2d2::Pool<DbManager>;
/// Either database, as diesel's queries over `DbConn` name it.
pub type Backend = <DbConn as diesel::Connection>::Backend;
pub type PooledConn = r2d2::PooledConnection<DbManager>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot prepare the SQLite file: {0}")]
    Io(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// A PostgreSQL URL to this machine (`localhost`, `127.0.0.1`, `[::1]`) that names no
/// `sslmode` gets `sslmode=disable`. libpq's default (`prefer`) encrypts every round trip when
/// the server offers TLS, as Debian's does: on the loopback that protects nothing and cost a
/// fifth of a search page's throughput at a million records. A URL that sets `sslmode`, names
/// another host or several is left as it is.
fn without_loopback_tls(url: &str) -> String {
    let (base, params) = url.split_once('?').unwrap_or((url, ""));
    if params.split('&').any(|p| p.starts_with("sslmode=")) {
        return url.to_string();
    }
    let authority = base
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback || host_port.contains(',') {
        return url.to_string();
    }
    let joiner = if params.is_empty() {
        if url.contains('?') {
            ""
        } else {
            "?"
        }
    } else {
        "&"
    };
    format!("{url}{joiner}sslmode=disable")
}

/// Where the data lives, parsed from `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DbTarget {
    /// Accepts `postgres://…`, `postgresql://…`, `sqlite://PATH` or a plain file path.
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DbError::BadUrl("DATABASE_URL is empty".into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(without_loopback_tls(url)));
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(DbError::BadUrl(format!(
                "unsupported database URL scheme '{scheme}://' in DATABASE_URL: \
                 use sqlite://PATH, a plain file path, or postgres://USER@HOST/DB"
            )));
        } else {
            url
        };
        if path.is_empty() {
            return Err(DbError::BadUrl(
                "DATABASE_URL names no SQLite file: use sqlite://PATH".into(),
            ));
        }
        if path == ":memory:" || path.contains("mode=memory") {
            return Err(DbError::BadUrl(
                "an in-memory SQLite database cannot be shared by a connection pool: \
                 give a file path instead"
                    .into(),
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }
}

/// Opens connections of the chosen backend directly, so a failure reports its real cause.
#[derive(Debug, Clone)]
pub struct DbManager {
    target: DbTarget,
}

impl ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        let conn = match &self.target {
            DbTarget::Postgres(url) => diesel::PgConnection::establish(url).map(DbConn::Pg),
            DbTarget::Sqlite(path) => {
                diesel::SqliteConnection::establish(&path.to_string_lossy()).map(DbConn::Sqlite)
            }
        };
        conn.map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        // Dropped by a panic, it may be anywhere in its work: never handed out again.
        std::thread::panicking() || conn.is_broken()
    }
}

/// Per-connection SQLite settings: writers wait for each other instead of failing at once.
/// WAL (readers never block the writer) is a property of the file, set once in `connect`.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConn, r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        if let DbConn::Sqlite(c) = conn {
            c.batch_execute(
                "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Builds the pool after one direct connection attempt (r2d2 alone would only say "timed out").
pub fn connect(database_url: &str) -> Result<DbPool, DbError> {
    let target = DbTarget::parse(database_url)?;
    if let DbTarget::Sqlite(path) = &target {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::config::create_private_dir(dir)
                .map_err(|e| DbError::Io(format!("{}: {e}", dir.display())))?;
        }
        // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files the mode of
        // the database file.
        crate::config::touch_private_file(path)
            .map_err(|e| DbError::Io(format!("{}: {e}", path.display())))?;
    }
    let manager = DbManager {
        target: target.clone(),
    };
    let mut first = manager
        .connect()
        .map_err(|e| DbError::Connect(format!("{} ({})", e, target.backend_name())))?;
    if let DbConn::Sqlite(c) = &mut first {
        // Switching to WAL needs the file to itself: done here, before the pool opens others.
        c.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")?;
    }
    drop(first);
    let max_size = match target {
        DbTarget::Postgres(_) => 10,
        DbTarget::Sqlite(_) => 8,
    };
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        // No `SELECT 1` before each checkout: on PostgreSQL it was two of a list page's ten
        // round trips. A connection the server dropped fails its next query instead, which
        // marks it broken (diesel reads libpq's status after every query), and the pool
        // replaces it when it comes back (`has_broken`).
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(manager)?;
    Ok(pool)
}

/// Applies pending migrations of the connection's backend; returns the versions applied.
pub fn run_migrations(conn: &mut DbConn) -> Result<Vec<String>, DbError> {
    let applied = match conn {
        DbConn::Pg(c) => {
            // Several instances may start at once: only one migrates at a time.
            c.batch_execute("SELECT pg_advisory_lock(727274)")?;
            let result = c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>());
            c.batch_execute("SELECT pg_advisory_unlock(727274)")?;
            result
        }
        DbConn::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
    };
    applied.map_err(|e| DbError::Migration(e.to_string()))
}

/// SQLite page cache of a connection doing bulk work (an import, filling the search index), in
/// KB: the index pages of a million-row table do not fit the default 2 MB, and a long
/// transaction whose pages spill out of the cache reads them back from the WAL again and again.
pub const BULK_CACHE_KB: u32 = 65_536;

/// Console writers waiting for SQLite's write lock. A bulk writer (an import chunk) lets
/// them go first, so a long import never starves a person's save.
static WAITING_WRITERS: AtomicUsize = AtomicUsize::new(0);

/// The longest a bulk writer steps aside for waiting writers before taking its turn.
const MAX_YIELD: Duration = Duration::from_secs(2);

/// A write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, so a transaction that reads
/// and then writes waits for the write lock up front instead of failing with "database is locked".
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    transaction(conn, false, f)
}

/// A write transaction for bulk work (an import chunk): on SQLite it first waits while other
/// writers of this process wait for the lock, then takes its turn.
pub fn bulk_write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    transaction(conn, true, f)
}

fn transaction<T, E, F>(conn: &mut DbConn, bulk: bool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let sqlite_at_top_level = match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()?
            .is_none(),
        DbConn::Pg(_) => false,
    };
    if !sqlite_at_top_level {
        return conn.transaction(f);
    }
    if let DbConn::Sqlite(c) = conn {
        if bulk {
            let start = Instant::now();
            while WAITING_WRITERS.load(Ordering::Acquire) > 0 && start.elapsed() < MAX_YIELD {
                std::thread::sleep(Duration::from_millis(1));
            }
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
        } else {
            WAITING_WRITERS.fetch_add(1, Ordering::AcqRel);
            let begun = AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE");
            WAITING_WRITERS.fetch_sub(1, Ordering::AcqRel);
            begun?;
        }
    }
    // The multi-backend transaction manager delegates to the inner SQLite one, which now
    // knows a transaction is open: nested `transaction` calls inside `f` become savepoints.
    let result = f(conn);
    match result {
        Ok(value) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

/// True while another writer of this process waits for SQLite's write lock.
pub fn writers_waiting() -> bool {
    WAITING_WRITERS.load(Ordering::Acquire) > 0
}

/// Opens a long write transaction for bulk work that commits in steps (`commit`): on SQLite,
/// after letting waiting writers of this process go first. Work inside it nests savepoints.
pub fn begin_bulk(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => {
            let start = Instant::now();
            while writers_waiting() && start.elapsed() < MAX_YIELD {
                std::thread::sleep(Duration::from_millis(1));
            }
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        DbConn::Pg(_) => <DbConn as Connection>::TransactionManager::begin_transaction(conn),
    }
}

pub fn commit(conn: &mut DbConn) -> diesel::QueryResult<()> {
    <DbConn as Connection>::TransactionManager::commit_transaction(conn)
}

pub fn rollback(conn: &mut DbConn) -> diesel::QueryResult<()> {
    <DbConn as Connection>::TransactionManager::rollback_transaction(conn)
}

/// Tables an import reads by lists of keys, by record, link or name.
pub const LOOKUP_TABLES: &str = "records, record_values, record_links, record_search_names";
/// Every table bulk work grows by a million rows at a time.
pub const BULK_TABLES: &str =
    "records, record_values, record_links, record_history, proposals, import_rows, record_search_names";

/// Rows `records` had at its last statistics refresh (PostgreSQL's estimate), and rows
/// written to it since (PostgreSQL's activity counters); (0, 0) on SQLite.
pub fn records_statistics(conn: &mut DbConn) -> diesel::QueryResult<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Estimate {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        analyzed: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        modified: i64,
    }
    match conn {
        DbConn::Pg(c) => {
            let e = diesel::sql_query(
                "SELECT GREATEST(c.reltuples, 0)::BIGINT AS analyzed, \
                        COALESCE(s.n_mod_since_analyze, 0)::BIGINT AS modified \
                 FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
                 WHERE c.oid = 'records'::regclass",
            )
            .get_result::<Estimate>(c)?;
            Ok((e.analyzed, e.modified))
        }
        DbConn::Sqlite(_) => Ok((0, 0)),
    }
}

/// Refreshes PostgreSQL's planner statistics of `tables`. Without them (autovacuum may
/// be off, or not have caught up with an import) `record_id = ANY($1)` over a thousand ids is
/// estimated to match the whole table and is run as a full scan, and a chunk costs more the
/// bigger the table. SQLite's planner needs none: it prefers the index anyway.
pub fn refresh_statistics(conn: &mut DbConn, tables: &str) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Pg(c) => c.batch_execute(&format!("ANALYZE {tables}")),
        DbConn::Sqlite(_) => Ok(()),
    }
}

/// Bulk INSERT on either backend (the multi-backend connection cannot batch): binary `COPY` on
/// PostgreSQL (a multi-row INSERT is parsed and planned again each time: diesel does not keep
/// it prepared); on SQLite, which has no round trips, one cached prepared statement per row.
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {{
        match &mut *$conn {
            $crate::db::DbConn::Pg(c) => {
                if !$rows.is_empty() {
                    diesel::copy_from($table)
                        .from_insertable(&$rows[..])
                        .execute(c)?;
                }
            }
            $crate::db::DbConn::Sqlite(c) => {
                for row in $rows.iter() {
                    diesel::insert_into($table).values(row).execute(c)?;
                }
            }
        }
    }};
}

pub(crate) use insert_all;

/// The current time in UTC, to the second: SQLite and PostgreSQL then store the same value.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(0)
}

/// Lists `table -> [(column, type class, nullable)]` of the live schema, for comparing backends.
/// The search index is left out: each backend has its own kind (FTS5, a GIN-indexed vector).
pub fn describe_schema(conn: &mut DbConn) -> Result<Vec<ColumnInfo>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        nullable: bool,
    }
    let sql = match conn {
        DbConn::Pg(_) => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             data_type::text AS data_type, (is_nullable = 'YES') AS nullable \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations' \
             AND table_name NOT LIKE 'record\\_search%'"
        }
        DbConn::Sqlite(_) => {
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
             (p.\"notnull\" = 0 AND p.pk = 0) AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations' \
             AND m.name NOT LIKE 'record\\_search%' ESCAPE '\\'"
        }
    };
    let mut rows: Vec<ColumnInfo> = diesel::sql_query(sql)
        .load::<Row>(conn)?
        .into_iter()
        .map(|r| ColumnInfo {
            table: r.table_name,
            column: r.column_name,
            type_class: type_class(&r.data_type).to_string(),
            nullable: r.nullable,
        })
        .collect();
    rows.sort();
    Ok(rows)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnInfo {
    pub table: String,
    pub column: String,
    pub type_class: String,
    pub nullable: bool,
}

/// Maps each backend's spelling of a column type to the class diesel reads it as.
fn type_class(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t.contains("serial") {
        "integer"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("timestamp") {
        "timestamp"
    } else if t.contains("date") {
        "date"
    } else if t.contains("double") || t.contains("real") || t.contains("numeric") {
        "number"
    } else if t.contains("bytea") || t.contains("blob") {
        "binary"
    } else {
        "text"
    }
}

/// A SQLite file path for the data folder's default database.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("syncdesk.db").display())
}

/// `SELECT 1` through the pool, for the health check.
pub fn check(conn: &mut DbConn) -> QueryResult<()> {
    conn.ping()
}

/// `column IN ids` (`column` is its SQL, `table.column`) with the ids bound as one text value,
/// so the statement reads the same whatever the number of ids and stays prepared (diesel
/// compiles an `eq_any` over a list afresh at each run on SQLite).
pub fn id_in(conn: &DbConn, column: &'static str, ids: &[i64]) -> KeptSql<diesel::sql_types::Bool> {
    use diesel::sql_types::Text;
    let listed = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if let DbConn::Pg(_) = conn {
        kept_sql(&format!("{column} = ANY(CAST("))
            .bind::<Text, _>(format!("{{{listed}}}"))
            .sql(" AS BIGINT[]))")
    } else {
        kept_sql(&format!("{column} IN (SELECT value FROM json_each("))
            .bind::<Text, _>(format!("[{listed}]"))
            .sql("))")
    }
}

/// A `Timestamp` column read without chrono's format parser: SQLite keeps it as
/// `YYYY-MM-DD HH:MM:SS` text, which diesel parses by trying format strings one by one (a
/// fifth of the time a list page spent reading its rows). Other text is left to diesel.
#[derive(diesel::deserialize::FromSqlRow)]
pub struct Stamp(pub NaiveDateTime);

impl From<Stamp> for NaiveDateTime {
    fn from(stamp: Stamp) -> Self {
        stamp.0
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, Backend> for Stamp {
    fn from_sql(value: MultiRawValue<'_>) -> diesel::deserialize::Result<Self> {
        match value {
            MultiRawValue::Sqlite(mut value) => {
                if let Some(at) = plain_timestamp(value.read_text()) {
                    return Ok(Stamp(at));
                }
                Ok(Stamp(<NaiveDateTime as diesel::deserialize::FromSql<
                    diesel::sql_types::Timestamp,
                    diesel::sqlite::Sqlite,
                >>::from_sql(value)?))
            }
            MultiRawValue::Pg(value) => {
                Ok(Stamp(<NaiveDateTime as diesel::deserialize::FromSql<
                    diesel::sql_types::Timestamp,
                    diesel::pg::Pg,
                >>::from_sql(value)?))
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS`, as SQLite's `CURRENT_TIMESTAMP` and diesel write it.
fn plain_timestamp(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)
}

/// Raw SQL that diesel keeps prepared, written as `diesel::dsl::sql` is
/// (`kept_sql::<Bool>("a = ").bind::<Text, _>(v)`). diesel never caches a statement holding
/// `sql` or `sql_query`, so SQLite compiled such statements again at each run (a third of a
/// list page's database time) and PostgreSQL planned them again. The text must not depend on
/// user input beyond a few shapes: every value is bound, and each text is one cache entry.
pub fn kept_sql<ST>(sql: &str) -> KeptSql<ST> {
    KeptSql {
        parts: vec![SqlPart::Sql(sql.to_string())],
        sql_type: std::marker::PhantomData,
    }
}

#[derive(Debug, Clone)]
pub struct KeptSql<ST> {
    parts: Vec<SqlPart>,
    sql_type: std::marker::PhantomData<ST>,
}

#[derive(Debug, Clone)]
pub enum SqlPart {
    Sql(String),
    Text(String),
    BigInt(i64),
    Double(f64),
    Timestamp(NaiveDateTime),
}

/// A value `KeptSql` can bind as SQL type `ST`.
pub trait BindAs<ST> {
    fn part(self) -> SqlPart;
}

impl BindAs<diesel::sql_types::Text> for String {
    fn part(self) -> SqlPart {
        SqlPart::Text(self)
    }
}

impl BindAs<diesel::sql_types::BigInt> for i64 {
    fn part(self) -> SqlPart {
        SqlPart::BigInt(self)
    }
}

impl BindAs<diesel::sql_types::Double> for f64 {
    fn part(self) -> SqlPart {
        SqlPart::Double(self)
    }
}

impl BindAs<diesel::sql_types::Timestamp> for NaiveDateTime {
    fn part(self) -> SqlPart {
        SqlPart::Timestamp(self)
    }
}

impl<ST> KeptSql<ST> {
    pub fn sql(mut self, sql: &str) -> Self {
        self.parts.push(SqlPart::Sql(sql.to_string()));
        self
    }

    pub fn bind<BT, V: BindAs<BT>>(mut self, value: V) -> Self {
        self.parts.push(value.part());
        self
    }
}

impl<ST: diesel::expression::TypedExpressionType> diesel::Expression for KeptSql<ST> {
    type SqlType = ST;
}

// Over `DbConn` and over a `PgConnection` or `SqliteConnection` alone (a backend's own
// statements, such as PostgreSQL's array queries of the search).
impl<ST, DB> diesel::query_builder::QueryFragment<DB> for KeptSql<ST>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Double>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Timestamp>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    f64: diesel::serialize::ToSql<diesel::sql_types::Double, DB>,
    NaiveDateTime: diesel::serialize::ToSql<diesel::sql_types::Timestamp, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Double, Text, Timestamp};
        for part in &self.parts {
            match part {
                SqlPart::Sql(sql) => out.push_sql(sql),
                SqlPart::Text(v) => out.push_bind_param::<Text, String>(v)?,
                SqlPart::BigInt(v) => out.push_bind_param::<BigInt, i64>(v)?,
                SqlPart::Double(v) => out.push_bind_param::<Double, f64>(v)?,
                SqlPart::Timestamp(v) => out.push_bind_param::<Timestamp, NaiveDateTime>(v)?,
            }
        }
        Ok(())
    }
}

/// A whole statement (`kept_sql::<Untyped>("SELECT ...")`), loaded into `QueryableByName`
/// rows as `sql_query` would be, but kept prepared.
impl diesel::query_builder::Query for KeptSql<diesel::sql_types::Untyped> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Conn> diesel::RunQueryDsl<Conn> for KeptSql<diesel::sql_types::Untyped> {}

/// `query LIMIT n` with `n` written into the statement, not bound: PostgreSQL cannot cost a
/// bound LIMIT in a generic plan (it assumes a tenth of the table), so it planned a list
/// page's statement afresh at each run, a sixth of the page's database time. Page sizes are
/// few, so each stays one prepared statement. `query` must have no LIMIT of its own.
pub fn limited<Q>(query: Q, n: i64) -> Limited<Q> {
    Limited { query, n }
}

pub struct Limited<Q> {
    query: Q,
    n: i64,
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Limited<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> diesel::query_builder::QueryFragment<DB> for Limited<Q>
where
    DB: diesel::backend::Backend,
    Q: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(&format!(" LIMIT {}", self.n));
        Ok(())
    }
}

impl<Q> diesel::query_builder::QueryId for Limited<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, Conn> diesel::RunQueryDsl<Conn> for Limited<Q> {}

/// A PostgreSQL array literal of `values` (`{"a","b"}`), for `CAST(.. AS TEXT[])`: one text
/// parameter whatever the number of values, so the statement stays the same.
pub fn pg_text_array<S: AsRef<str>>(values: &[S]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| {
            format!(
                "\"{}\"",
                v.as_ref().replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    format!("{{{}}}", quoted.join(","))
}

impl<ST> diesel::query_builder::QueryId for KeptSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST, QS> diesel::expression::AppearsOnTable<QS> for KeptSql<ST> where Self: diesel::Expression {}

impl<ST, QS> diesel::expression::SelectableExpression<QS> for KeptSql<ST> where
    Self: diesel::Expression
{
}

impl<ST, GB> diesel::expression::ValidGrouping<GB> for KeptSql<ST> {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

#[cfg(test)]
mod tests {
    use super::without_loopback_tls as plain;

    #[test]
    fn array_literals_quote_every_value() {
        assert_eq!(
            super::pg_text_array(&["grace", "o'neil"]),
            r#"{"grace","o'neil"}"#
        );
        assert_eq!(super::pg_text_array(&[r#"a"b\c"#]), r#"{"a\"b\\c"}"#);
        assert_eq!(super::pg_text_array::<&str>(&[]), "{}");
    }

    #[test]
    fn loopback_urls_connect_without_tls_unless_they_say_otherwise() {
        assert_eq!(
            plain("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
        );
        assert_eq!(
            plain("postgresql://u:p@localhost/db?application_name=x"),
            "postgresql://u:p@localhost/db?application_name=x&sslmode=disable"
        );
        assert_eq!(
            plain("postgres://[::1]:5433/db"),
            "postgres://[::1]:5433/db?sslmode=disable"
        );
        for kept in [
            "postgres://postgres@127.0.0.1/test?sslmode=require",
            "postgres://db.example.org/test",
            "postgres://10.0.0.5:5432/test",
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test",
            "postgres://127.0.0.1:5432,10.0.0.5:5432/test",
        ] {
            assert_eq!(plain(kept), kept);
        }
    }

    use super::plain_timestamp;

    #[test]
    fn plain_timestamps_are_read_and_anything_else_is_left_to_diesel() {
        let at = plain_timestamp("2026-12-02 07:05:09").map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-12-02 07:05:09"));
        assert_eq!(plain_timestamp("2026-12-02 07:05:09.250"), None);
        assert_eq!(plain_timestamp("2026-02-30 07:05:09"), None);
        assert_eq!(plain_timestamp("2026-12-02T07:05:09"), None);
        assert_eq!(plain_timestamp("20x6-12-02 07:05:09"), None);
    }
}
