//! Record list speed at scale: count, first page, deep pages (keyset), search, custom sort.
//!
//!     cargo bench --bench records_list                      # 100 000 contacts, SQLite
//!     BENCH_ROWS=1000000 cargo bench --bench records_list   # a million
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench records_list
//!
//! With BENCH_DATABASE_URL, a database of its own is created on that server and dropped after.

mod common;

use std::time::Instant;

use common::{time, BenchDb};
use diesel::connection::SimpleConnection;
use syncdesk::db::DbConn;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::records::list::{self, ListQuery, SortKey};

fn main() {
    let rows = common::rows(100_000);
    let db = BenchDb::new();
    let mut conn = db.pool.get().expect("connection");
    let tier = fields::create(
        &mut conn,
        RecordKind::Contact,
        &NewField {
            key: "tier".into(),
            label: "Tier".into(),
            field_type: "text".into(),
            options: String::new(),
        },
    )
    .expect("field");

    let started = Instant::now();
    seed(&mut conn, rows, tier.id);
    // As the console's start does for records written by hand.
    syncdesk::records::counts::fill_if_empty(&mut conn).expect("list totals");
    println!(
        "seeded {rows} contacts (with a custom value each) in {:.1?}",
        started.elapsed()
    );

    let defs = fields::list(&mut conn, RecordKind::Contact, false).expect("fields");
    let base = ListQuery::new(RecordKind::Contact);
    time("count + first page, by name", || {
        list::page(&mut conn, &base, &[]).expect("page");
    });
    let mut deep = base.clone();
    time("20 pages deep, by name (keyset)", || {
        deep.after = None;
        for _ in 0..20 {
            let page = list::page(&mut conn, &deep, &[]).expect("page");
            deep.after = page.next;
        }
    });
    let mut by_updated = base.clone();
    by_updated.sort = SortKey::Updated;
    by_updated.descending = true;
    time("first page, newest first", || {
        list::page(&mut conn, &by_updated, &[]).expect("page");
    });
    let mut search = base.clone();
    search.search = format!("contact {:07}", rows / 2);
    time("search for one name (substring scan)", || {
        list::page(&mut conn, &search, &[]).expect("page");
    });
    let mut custom = base.clone();
    custom.sort = SortKey::parse("tier", &defs);
    time("first page, by a custom field", || {
        list::page(&mut conn, &custom, std::slice::from_ref(&tier)).expect("page");
    });
}

/// Generates rows inside the database: the bench measures reads, not the insert path.
fn seed(conn: &mut DbConn, rows: u64, field_id: i64) {
    let sql = match conn {
        DbConn::Sqlite(_) => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO records (kind, name, name_norm, email, email_norm, phone, phone_norm, created_at, updated_at)
             SELECT 'contact', 'Contact ' || printf('%07d', i), 'contact ' || printf('%07d', i),
                    'c' || i || '@example.org', 'c' || i || '@example.org', '+3312' || printf('%07d', i),
                    '+3312' || printf('%07d', i), datetime('now'), datetime('now', '-' || (i % 1000) || ' minutes')
             FROM n;
             INSERT INTO record_values (record_id, field_id, value)
             SELECT id, {field_id}, 'tier ' || (id % 97) FROM records;
             ANALYZE;"
        ),
        DbConn::Pg(_) => format!(
            "INSERT INTO records (kind, name, name_norm, email, email_norm, phone, phone_norm, created_at, updated_at)
             SELECT 'contact', 'Contact ' || lpad(i::text, 7, '0'), 'contact ' || lpad(i::text, 7, '0'),
                    'c' || i || '@example.org', 'c' || i || '@example.org', '+3312' || lpad(i::text, 7, '0'),
                    '+3312' || lpad(i::text, 7, '0'), now(), now() - (i % 1000) * interval '1 minute'
             FROM generate_series(1, {rows}) AS i;
             INSERT INTO record_values (record_id, field_id, value)
             SELECT id, {field_id}, 'tier ' || (id % 97) FROM records;
             ANALYZE;"
        ),
    };
    conn.batch_execute(&sql).expect("seed");
}
