//! Desynchronised-records view at scale: counts, first and deep pages, each filter, and the
//! list indicators of one page.
//!
//!     cargo bench --bench desync                      # 100 000 records, SQLite
//!     BENCH_ROWS=1000000 cargo bench --bench desync   # a million
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench desync
//!
//! A quarter of the records are desynchronised, with two pending fields each (half of them
//! from a source's imports, half from a process's applications), plus decided history.

mod common;

use std::time::Instant;

use common::{time, BenchDb};
use diesel::connection::SimpleConnection;
use syncdesk::db::DbConn;
use syncdesk::fields::model::RecordKind;
use syncdesk::review::service::{self as review, DesyncFilter};

fn main() {
    let rows = common::rows(100_000);
    let db = BenchDb::new();
    let mut conn = db.pool.get().expect("connection");
    let started = Instant::now();
    seed(&mut conn, rows);
    // As the console's start does for records written by hand.
    syncdesk::records::counts::fill_if_empty(&mut conn).expect("list totals");
    syncdesk::review::totals::fill_if_empty(&mut conn).expect("desynchronised totals");
    println!(
        "seeded {rows} records ({} desynchronised, two pending fields each) in {:.1?}",
        rows / 4,
        started.elapsed()
    );

    let all = DesyncFilter::default();
    time("counts, all records", || {
        review::totals(&mut conn, &all).expect("totals");
    });
    time("counts + first page, all records", || {
        review::desynchronised(&mut conn, &all, None, 50).expect("page");
    });
    time("20 pages deep (keyset), with counts", || {
        let mut after = None;
        for _ in 0..20 {
            after = review::desynchronised(&mut conn, &all, after, 50)
                .expect("page")
                .next_after;
        }
    });
    let companies = DesyncFilter {
        kind: Some(RecordKind::Company),
        ..DesyncFilter::default()
    };
    time("counts + first page, companies only", || {
        review::desynchronised(&mut conn, &companies, None, 50).expect("page");
    });
    let by_source = DesyncFilter {
        source_id: Some(1),
        ..DesyncFilter::default()
    };
    time("counts + first page, one source", || {
        review::desynchronised(&mut conn, &by_source, None, 50).expect("page");
    });
    let by_process = DesyncFilter {
        process_id: Some(1),
        kind: Some(RecordKind::Contact),
        ..DesyncFilter::default()
    };
    time("counts + first page, process + kind", || {
        review::desynchronised(&mut conn, &by_process, None, 50).expect("page");
    });
    let page_ids: Vec<i64> = (1..=50).map(|i| i * (rows as i64 / 60).max(1)).collect();
    time("list indicators for a page of 50", || {
        review::pending_counts(&mut conn, &page_ids).expect("counts");
    });
}

/// Generates rows inside the database: the bench measures reads, not the write path.
/// Every tenth record is a company; every fourth has two pending proposals and one decided.
fn seed(conn: &mut DbConn, rows: u64) {
    let common = "INSERT INTO sources (name, kind, id_column, created_at, updated_at)
                  VALUES ('Books', 'contact', 'id', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);
                  INSERT INTO processes (name, kind, created_at, updated_at)
                  VALUES ('Onboarding', 'contact', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);";
    let proposals = "
        INSERT INTO proposals (record_id, field_key, current_value, proposed_value, origin, origin_id,
                               origin_label, status, created_at, record_kind, source_id, process_id)
        SELECT id, f.key, '', 'new ' || f.key,
               CASE WHEN id % 8 = 0 THEN 'import' ELSE 'application' END, 1,
               CASE WHEN id % 8 = 0 THEN 'import run 1 (Books)' ELSE 'application #1' END,
               f.status, CURRENT_TIMESTAMP, kind,
               CASE WHEN id % 8 = 0 THEN 1 END, CASE WHEN id % 8 = 0 THEN NULL ELSE 1 END
        FROM records
        CROSS JOIN (SELECT 'phone' AS key, 'accepted' AS status
                    UNION ALL SELECT 'phone', 'pending'
                    UNION ALL SELECT 'email', 'pending') AS f
        WHERE id % 4 = 0;
        ANALYZE;";
    let records = match conn {
        DbConn::Sqlite(_) => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO records (kind, name, name_norm, created_at, updated_at)
             SELECT CASE WHEN i % 10 = 0 THEN 'company' ELSE 'contact' END,
                    'Record ' || printf('%07d', i), 'record ' || printf('%07d', i),
                    datetime('now'), datetime('now')
             FROM n;"
        ),
        DbConn::Pg(_) => format!(
            "INSERT INTO records (kind, name, name_norm, created_at, updated_at)
             SELECT CASE WHEN i % 10 = 0 THEN 'company' ELSE 'contact' END,
                    'Record ' || lpad(i::text, 7, '0'), 'record ' || lpad(i::text, 7, '0'), now(), now()
             FROM generate_series(1, {rows}) AS i;"
        ),
    };
    conn.batch_execute(&format!("{common}{records}{proposals}"))
        .expect("seed");
    if let DbConn::Pg(_) = conn {
        // As autovacuum would: index-only scans need the visibility map.
        conn.batch_execute("VACUUM ANALYZE proposals")
            .expect("vacuum");
    }
}
