//! Import speed at scale, beside the floor of a bulk load of the same file in the same run.
//!
//!     cargo bench --bench import                                   # 100 000 rows, SQLite
//!     BENCH_ROWS=1048576 cargo bench --bench import                # HubSpot's file limit
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench import
//!
//! It generates `external_id,name,email,phone,tag1,tag2` rows as a real export has them
//! (`common::realistic`: names repeated by the dozen and surnames by the thousand, e-mails
//! that collide, phones typed in five countries' formats, about 2 % invalid; 1 % of rows equal
//! to existing manual records, 0.5 % matching one by name and e-mail but not phone), or with
//! `BENCH_DATA=uniform` the earlier file where every name is unique. It times: the first
//! import (creates), a re-import of the same file (all unchanged), a file with 10 % of values
//! changed (updates with history; tag2 is on `review`, so its changes become proposals), and
//! the undo of that run, with the database's size after each. The floor is the fastest bulk
//! load of the same file: `sqlite3 .import` (or psql `\copy`) into a plain table, then its
//! indexes on the id, name and email columns; the same load into a table indexed first is
//! shown beside it. Every ratio is against the fastest.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::BenchDb;
use syncdesk::db::DbPool;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::sources::model::MappingInput;
use syncdesk::sources::service::{self as sources, SourceInput};
use syncdesk::sync::csvfile::{FileFormat, TextEncoding};
use syncdesk::sync::{engine, jobs, undo};

const SURNAMES: [&str; 16] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
];
const GIVEN: [&str; 12] = [
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo",
    "Grace",
];

/// Whether the file is the uniform one (`BENCH_DATA=uniform`) rather than the realistic one.
fn uniform() -> bool {
    std::env::var("BENCH_DATA").is_ok_and(|v| v == "uniform")
}

/// A row of the file; `changed` alters a tenth of the rows (name, email or tag2 in turn).
fn row(i: u64, changed: bool) -> String {
    if uniform() {
        uniform_row(i, changed)
    } else {
        common::realistic::line(i, changed)
    }
}

/// A row of the uniform file: every name unique ("Grace Smith 12345").
fn uniform_row(i: u64, changed: bool) -> String {
    let given = GIVEN[(i % 12) as usize];
    let surname = SURNAMES[((i / 12) % 16) as usize];
    let mut name = format!("{given} {surname} {i}");
    let mut email = format!(
        "{}.{}{i}@example.org",
        given.to_lowercase(),
        surname.to_lowercase()
    );
    // About 2 % invalid phones (the field is skipped with a warning, the row kept).
    let phone = if i % 50 == 7 {
        format!("(968) 724-{:04}", i % 10_000)
    } else {
        format!("+614{:08}", i % 100_000_000)
    };
    let tag1 = ["gold", "silver", "bronze"][(i % 3) as usize];
    let mut tag2 = format!("t{}", i % 97);
    if changed && i % 10 == 3 {
        match (i / 10) % 3 {
            0 => name.push_str(" Jr"),
            1 => email = format!("new.{email}"),
            _ => tag2.push_str("-b"),
        }
    }
    format!("E{i},{name},{email},{phone},{tag1},{tag2}\n")
}

fn write_file(path: &Path, rows: u64, changed: bool) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    out.write_all(b"external_id,name,email,phone,tag1,tag2\n")
        .expect("write");
    for i in 0..rows {
        out.write_all(row(i, changed).as_bytes()).expect("write");
    }
    out.flush().expect("flush");
}

struct Phase {
    label: &'static str,
    seconds: f64,
    rss_mb: f64,
    db_mb: f64,
}

fn measure(db: &BenchDb, label: &'static str, f: impl FnOnce()) -> Phase {
    common::reset_peak_rss();
    let start = Instant::now();
    f();
    Phase {
        label,
        seconds: start.elapsed().as_secs_f64(),
        rss_mb: common::peak_rss_mb(),
        db_mb: db.size_mb(),
    }
}

/// A bulk load of the same file into a plain table with indexes on the id, name and email
/// columns: created after the load (`indexes_first` false, the fastest way) or before it.
fn floor(file: &Path, pg_url: Option<&str>, dir: &Path, indexes_first: bool) -> Duration {
    let (table, index) = (
        "CREATE TABLE floor_t (external_id TEXT, name TEXT, email TEXT, phone TEXT, tag1 TEXT, tag2 TEXT);\n",
        "CREATE INDEX floor_t_id ON floor_t (external_id);\nCREATE INDEX floor_t_name ON floor_t (name);\n\
         CREATE INDEX floor_t_email ON floor_t (email);\n",
    );
    let order = |load: String| {
        if indexes_first {
            format!("{table}{index}{load}")
        } else {
            format!("{table}{load}{index}")
        }
    };
    let start = Instant::now();
    let status = match pg_url {
        None => {
            let db = dir.join("floor.db");
            let _ = std::fs::remove_file(&db);
            let script = order(format!(
                ".mode csv\n.import --skip 1 {} floor_t\n",
                file.display()
            ));
            let mut child = Command::new("sqlite3")
                .arg(&db)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sqlite3");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("script");
            let status = child.wait().expect("sqlite3");
            let _ = std::fs::remove_file(&db);
            status
        }
        Some(url) => {
            let script = order(format!(
                "\\copy floor_t FROM '{}' WITH (FORMAT csv, HEADER true)\n",
                file.display()
            ));
            let mut child = Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("psql");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(
                    format!("DROP TABLE IF EXISTS floor_t;\n{script}DROP TABLE floor_t;\n")
                        .as_bytes(),
                )
                .expect("script");
            child.wait().expect("psql")
        }
    };
    assert!(status.success(), "the floor's bulk load failed");
    start.elapsed()
}

fn import(pool: &DbPool, data_dir: &Path, source_id: i64, file: &Path) -> i64 {
    let mut conn = pool.get().expect("connection");
    let source = sources::find(&mut conn, source_id)
        .expect("source")
        .expect("source");
    let sha = jobs::store_file(data_dir, std::fs::File::open(file).expect("file"), u64::MAX)
        .expect("store");
    let run = jobs::enqueue_claimed(
        &mut conn,
        &jobs::NewRun {
            source: &source,
            file_name: "bench.csv",
            sha256: &sha,
            format: FileFormat {
                encoding: TextEncoding::Utf8,
                delimiter: b',',
            },
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: None,
            user_label: "bench",
        },
    )
    .expect("enqueue");
    drop(conn);
    let country = PhoneCountry::parse("AU").expect("country");
    jobs::process(pool, run, data_dir, country, &mut |_, _| {}).expect("import");
    let mut conn = pool.get().expect("connection");
    let done = engine::load_run(&mut conn, run).expect("run").expect("run");
    println!("    run #{run}: {}", done.counts);
    run
}

fn main() {
    let rows = common::rows(100_000);
    let db = BenchDb::new();
    let dir = tempfile::tempdir().expect("temporary folder");
    let data_dir = dir.path().join("data");
    let pg_url = std::env::var("BENCH_DATABASE_URL").ok();
    let backend = if pg_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut conn = db.pool.get().expect("connection");
    for key in ["tag1", "tag2"] {
        fields::create(
            &mut conn,
            RecordKind::Contact,
            &NewField {
                key: key.into(),
                label: key.into(),
                field_type: "text".into(),
                options: String::new(),
            },
        )
        .expect("field");
    }
    let source = sources::create(
        &mut conn,
        &SourceInput {
            name: "Bench CRM".into(),
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
    let map = |column: &str, rule: Rule| MappingInput {
        column_name: column.into(),
        field_key: column.into(),
        to_record: rule,
        to_source: Rule::Never,
        blanks_clear: false,
    };
    sources::set_mapping(
        &mut conn,
        source.id,
        &[
            map("name", Rule::Always),
            map("email", Rule::Always),
            map("phone", Rule::Always),
            map("tag1", Rule::Always),
            map("tag2", Rule::Review),
        ],
    )
    .expect("mapping");
    // 1 % of the rows equal existing manual records: converted on the first import. In the
    // realistic file 0.5 % more match one by name and e-mail only: they must not convert.
    let country = PhoneCountry::parse("AU").expect("country");
    let actor = Actor::system("bench");
    for i in 0..rows {
        let near_miss = !uniform() && common::realistic::is_near_miss(i);
        let known = if uniform() {
            i % 100 == 0
        } else {
            common::realistic::is_known(i)
        };
        if !known && !near_miss {
            continue;
        }
        let line = row(i, false);
        let parts: Vec<&str> = line.trim_end().split(',').collect();
        let mut input = RecordInput::default();
        input.values.insert("name".into(), parts[1].into());
        input.values.insert("email".into(), parts[2].into());
        let phone = if near_miss {
            common::realistic::other_phone(i)
        } else {
            parts[3].to_string()
        };
        input.values.insert("phone".into(), phone);
        if records::create(&mut conn, RecordKind::Contact, &input, &actor, country).is_err() {
            // An invalid phone: the record is made without it, as the import will see it.
            input.values.remove("phone");
            records::create(&mut conn, RecordKind::Contact, &input, &actor, country)
                .expect("manual");
        }
    }
    drop(conn);

    let file = dir.path().join("contacts.csv");
    let changed = dir.path().join("contacts-changed.csv");
    write_file(&file, rows, false);
    write_file(&changed, rows, true);
    let size_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let data = if uniform() { "uniform" } else { "realistic" };
    println!("{backend}: {rows} rows, {size_mb:.1} MB {data} file");

    let floor_then_index = floor(&file, pg_url.as_deref(), dir.path(), false).as_secs_f64();
    let floor_indexed = floor(&file, pg_url.as_deref(), dir.path(), true).as_secs_f64();
    let floor_time = floor_then_index.min(floor_indexed);
    let mut phases = Vec::new();
    // A person editing a record every 50 ms during the first import: how long each save waits.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (pool, stop) = (db.pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conn = pool.get().expect("connection");
            let mut input = RecordInput::default();
            input.values.insert("name".into(), "Console User".into());
            let id = records::create(
                &mut conn,
                RecordKind::Contact,
                &input,
                &Actor::system("bench"),
                country,
            )
            .expect("record")
            .id;
            let mut waits = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let mut edit = RecordInput::default();
                edit.values
                    .insert("email".into(), format!("console{i}@example.org"));
                let start = Instant::now();
                records::update(&mut conn, id, &edit, &Actor::system("bench"), country)
                    .expect("a console write failed during the import");
                waits.push(start.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            waits
        })
    };
    let mut waits = Vec::new();
    phases.push(measure(&db, "first import (creates)", || {
        import(&db.pool, &data_dir, source.id, &file);
        // The editor stops with the import, so the size is read with no one writing.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        waits = editor.join().expect("editor");
    }));
    waits.sort();
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    phases.push(measure(&db, "re-import, all unchanged", || {
        import(&db.pool, &data_dir, source.id, &file);
    }));
    let mut changed_run = 0;
    phases.push(measure(&db, "10 % changed (updates, proposals)", || {
        changed_run = import(&db.pool, &data_dir, source.id, &changed);
    }));
    phases.push(measure(&db, "undo of the 10 % run", || {
        let mut conn = db.pool.get().expect("connection");
        undo::undo(&mut conn, changed_run, &Actor::system("bench")).expect("undo");
    }));

    println!();
    println!(
        "{:<36} {:>9} {:>10} {:>9} {:>10} {:>10}",
        "", "seconds", "rows/s", "x floor", "peak RSS", "db size"
    );
    for (label, seconds) in [
        ("floor: load, then 3 indexes", floor_then_index),
        ("floor: 3 indexes, then load", floor_indexed),
    ] {
        println!(
            "{:<36} {:>9.1} {:>10.0} {:>9.1} {:>10} {:>10}",
            label,
            seconds,
            rows as f64 / seconds,
            seconds / floor_time,
            "-",
            "-"
        );
    }
    for p in &phases {
        println!(
            "{:<36} {:>9.1} {:>10.0} {:>9.1} {:>7.0} MB {:>7.0} MB",
            p.label,
            p.seconds,
            rows as f64 / p.seconds,
            p.seconds / floor_time,
            p.rss_mb,
            p.db_mb
        );
    }
    println!(
        "database / file after the first import: {:.1}x; the unchanged re-import added {:.0} %",
        phases[0].db_mb / size_mb,
        (phases[1].db_mb - phases[0].db_mb) / phases[0].db_mb * 100.0
    );
    println!(
        "undo / its import: {:.2}",
        phases[3].seconds / phases[2].seconds
    );
    println!(
        "{} console saves during the first import: p50 {:.0?}, p99 {:.0?}, max {:.0?}",
        waits.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
