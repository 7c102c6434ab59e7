//! The JSON API over loopback HTTP: pushing rows in batches of 1,000 through a source, then
//! reading that source's change feed after every record changed once.
//!
//!     cargo bench --bench api                                              # 100 000 rows, SQLite
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench api
//!
//! The server is the console's own app on 127.0.0.1 (two workers); the client sends one
//! request at a time, as a sync job would. It stops by itself.

mod common;

use std::time::Instant;

use common::BenchDb;
use syncdesk::api::model::Scope;
use syncdesk::api::service::{self as tokens, NewToken};
use syncdesk::fields::model::RecordKind;
use syncdesk::records::model::Actor;
use syncdesk::records::writer::{self, Catalog, Edit};
use syncdesk::rules::Rule;
use syncdesk::sources::model::MappingInput;
use syncdesk::sources::service::{self as sources, SourceInput};
use syncdesk::AppState;

const BATCH: u64 = 1_000;

fn main() {
    let rows = common::rows(100_000);
    let db = BenchDb::new();
    let dir = tempfile::tempdir().expect("temporary folder");
    let state = AppState::open(common::config(&db, dir.path().join("data"), "AU")).expect("state");
    let backend = if db.url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut conn = db.pool.get().expect("connection");
    let source = sources::create(
        &mut conn,
        &SourceInput {
            name: "CRM".into(),
            kind: RecordKind::Contact,
            id_column: "external_id".into(),
            match_by: Vec::new(),
            country: String::new(),
            watch_dir: String::new(),
            activities: None,
            full_mode: false,
        },
    )
    .expect("source");
    let line = |column: &str| MappingInput {
        column_name: column.into(),
        field_key: column.into(),
        to_record: Rule::FillBlanks,
        to_source: Rule::Always,
        blanks_clear: false,
    };
    sources::set_mapping(
        &mut conn,
        source.id,
        &[line("name"), line("email"), line("phone")],
    )
    .expect("mapping");
    let secret = tokens::create(
        &mut conn,
        &NewToken {
            name: "bench".into(),
            scopes: vec![Scope::RowsWrite, Scope::ChangesRead],
            source_id: None,
            created_by: None,
        },
    )
    .expect("token")
    .1;
    drop(conn);
    let base = common::serve(state);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    println!("{backend}: {rows} rows pushed in batches of {BATCH}, then a feed of {rows} changes");

    // Push.
    let start = Instant::now();
    let mut pushed = 0;
    while pushed < rows {
        let batch: Vec<serde_json::Value> = (pushed..(pushed + BATCH).min(rows))
            .map(|i| {
                serde_json::json!({
                    "external_id": format!("C{i:07}"),
                    "name": format!("Person {i}"),
                    "email": format!("person{i}@example.org"),
                    "phone": format!("+61 4{:08}", i % 100_000_000),
                })
            })
            .collect();
        let body = serde_json::json!({ "rows": batch }).to_string();
        let mut res = agent
            .post(&format!("{base}/api/v1/sources/{}/rows", source.id))
            .header("authorization", &format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .send(&body)
            .expect("push");
        assert_eq!(
            res.status().as_u16(),
            200,
            "{}",
            res.body_mut().read_to_string().unwrap_or_default()
        );
        pushed += batch.len() as u64;
    }
    let push_time = start.elapsed().as_secs_f64();

    // Every record changes once (a person's edit through the write path): one feed entry
    // each for the CRM.
    let mut conn = db.pool.get().expect("connection");
    let ids: Vec<i64> = {
        use diesel::prelude::*;
        syncdesk::schema::records::table
            .select(syncdesk::schema::records::id)
            .order(syncdesk::schema::records::id)
            .load(&mut conn)
            .expect("ids")
    };
    let catalog = Catalog::load(&mut conn).expect("catalog");
    let start = Instant::now();
    for part in ids.chunks(5_000) {
        syncdesk::db::write_tx(&mut conn, |conn| -> diesel::QueryResult<()> {
            let edits: Vec<Edit> = writer::load_states(conn, part)?
                .into_values()
                .map(|(row, state)| {
                    let mut edit = Edit::change(row.id, state);
                    edit.after.name = format!("{} Jr", row.name);
                    edit
                })
                .collect();
            writer::apply(conn, &catalog, &edits, &Actor::system("bench"))?;
            Ok(())
        })
        .expect("edits");
    }
    let edit_time = start.elapsed().as_secs_f64();
    drop(conn);

    // Read the feed.
    let start = Instant::now();
    let (mut after, mut read) = ("0".to_string(), 0u64);
    loop {
        let mut res = agent
            .get(&format!(
                "{base}/api/v1/sources/{}/changes?limit=10000&after={after}",
                source.id
            ))
            .header("authorization", &format!("Bearer {secret}"))
            .call()
            .expect("changes");
        let page: serde_json::Value =
            serde_json::from_str(&res.body_mut().read_to_string().expect("body")).expect("JSON");
        let n = page["changes"].as_array().map_or(0, Vec::len) as u64;
        if n == 0 {
            break;
        }
        read += n;
        after = page["next"].as_str().expect("next").to_string();
    }
    let read_time = start.elapsed().as_secs_f64();
    assert_eq!(read, rows, "every change read once");

    println!("                                         seconds      per second");
    println!(
        "push {rows} rows (HTTP, 1,000 per request)  {push_time:>8.1} {:>12.0} rows/s",
        rows as f64 / push_time
    );
    println!(
        "change every record (write path + feed)    {edit_time:>8.1} {:>12.0} records/s",
        rows as f64 / edit_time
    );
    println!(
        "read the feed (HTTP, 10,000 per page)      {read_time:>8.1} {:>12.0} changes/s",
        read as f64 / read_time
    );
}
