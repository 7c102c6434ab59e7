//! What both benchmarks share: a database of their own, migrated, and a timer.
#![allow(dead_code)]

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
                let base = &admin[..admin.rfind('/').expect("database in URL")];
                (format!("{base}/{name}"), Some((admin.clone(), name)))
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

impl Drop for BenchDb {
    fn drop(&mut self) {
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
