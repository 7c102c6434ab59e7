//! What the benchmarks share: a database of their own, migrated, a timer, and the console's
//! app served on a loopback port.
#![allow(dead_code)]

pub mod realistic;

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use syncdesk::db::DbPool;

/// `BENCH_ROWS`, else `default`.
pub fn rows(default: u64) -> u64 {
    std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A migrated database: a SQLite file in a temporary folder, or, with BENCH_DATABASE_URL, a
/// PostgreSQL database created on that server and dropped when this value is.
pub struct BenchDb {
    pub pool: DbPool,
    pub url: String,
    _dir: tempfile::TempDir,
    pg_drop: Option<(String, String)>,
}

impl BenchDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let (url, pg_drop) = match std::env::var("BENCH_DATABASE_URL") {
            Ok(admin) => {
                let name = format!("syncdesk_bench_{}", std::process::id());
                let mut conn = diesel::PgConnection::establish(&admin).expect("PostgreSQL");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create database");
                // Parameters after the database's name (`?sslmode=…`) are kept.
                let (path, params) = admin.split_once('?').unwrap_or((&admin, ""));
                let base = &path[..path.rfind('/').expect("database in URL")];
                let params = if params.is_empty() {
                    String::new()
                } else {
                    format!("?{params}")
                };
                (
                    format!("{base}/{name}{params}"),
                    Some((admin.clone(), name)),
                )
            }
            Err(_) => (
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                None,
            ),
        };
        let pool = syncdesk::db::connect(&url).expect("connect");
        let url = url.to_string();
        syncdesk::db::run_migrations(&mut pool.get().expect("connection")).expect("migrate");
        BenchDb {
            pool,
            url,
            _dir: dir,
            pg_drop,
        }
    }
}

impl BenchDb {
    /// The database's size on disk in MB: the SQLite file with its WAL, or PostgreSQL's
    /// `pg_database_size`.
    pub fn size_mb(&self) -> f64 {
        let bytes = match &self.pg_drop {
            Some(_) => {
                use diesel::RunQueryDsl;
                let mut conn = diesel::PgConnection::establish(&self.url).expect("PostgreSQL");
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "pg_database_size(current_database())",
                ))
                .get_result::<i64>(&mut conn)
                .expect("size") as u64
            }
            None => {
                // The WAL folded into the file first: during an import it holds pages the
                // file will take back.
                use diesel::RunQueryDsl;
                if let Ok(mut conn) = self.pool.get() {
                    let _ = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn);
                }
                let file = self._dir.path().join("bench.db");
                let wal = self._dir.path().join("bench.db-wal");
                [file, wal]
                    .iter()
                    .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                    .sum()
            }
        };
        bytes as f64 / 1e6
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        // `BENCH_KEEP=1` leaves the database for a look at its plans afterwards.
        if std::env::var_os("BENCH_KEEP").is_some() {
            println!("kept the database: {}", self.url);
            if let Ok(dir) = tempfile::tempdir() {
                let _ = std::mem::replace(&mut self._dir, dir).keep();
            }
            return;
        }
        if let Some((admin, name)) = &self.pg_drop {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Runs `f` once to warm the caches, then prints its mean time over five runs.
pub fn time(label: &str, mut f: impl FnMut()) {
    f();
    let runs = 5;
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let start = Instant::now();
        f();
        total += start.elapsed();
    }
    println!("{label:<40} {:>10.2?} per run", total / runs);
}

/// The console's settings for a benchmark: its database, a data folder, a phone country.
pub fn config(
    db: &BenchDb,
    data_dir: std::path::PathBuf,
    country: &str,
) -> syncdesk::config::Config {
    syncdesk::config::Config {
        bind: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        data_dir,
        session_key: None,
        secure_cookies: false,
        default_country: syncdesk::fields::validate::PhoneCountry::parse(country).expect("country"),
        max_upload_bytes: 1 << 20,
        max_import_bytes: 1 << 30,
        session_idle_hours: syncdesk::config::DEFAULT_SESSION_IDLE_HOURS,
        trusted_proxies: Vec::new(),
        api_requests_per_minute: 1_000_000,
        feed_retention_days: syncdesk::config::DEFAULT_FEED_RETENTION_DAYS,
        // As `serve` reads it: to compare settings.
        db_concurrency: std::env::var("SYNCDESK_DB_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok()),
        webhooks_allow_private: false,
    }
}

/// Serves the app on a loopback port in a thread of its own (two workers, as on a 2-core
/// machine); returns the base URL.
pub fn serve(state: syncdesk::AppState) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || syncdesk::build_app(state.clone()))
                .workers(2)
                .listen(listener)
                .expect("listen")
                .run()
                .await
                .expect("server")
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    base
}

/// Peak resident memory since the last reset, in MB (Linux).
pub fn peak_rss_mb() -> f64 {
    peak_rss_mb_of("self")
}

/// The same of process `pid` ("self" for this one).
pub fn peak_rss_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
