//! The console stays usable while an import runs: people's writes wait their turn (on SQLite,
//! the import gives way between chunks) instead of failing with "database is locked".
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::time::{Duration, Instant};

use common::{spawn, PASSWORD};
use syncdesk::auth::model::Role;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::sources::model::MappingInput;
use syncdesk::sources::service as sources;
use syncdesk::sync::engine;
use syncdesk::sync::jobs::{self, NewRun};

const ROWS: usize = 30_000;

fn country() -> PhoneCountry {
    PhoneCountry::parse("AU").expect("country")
}

#[actix_web::test]
async fn console_writes_succeed_while_an_import_runs() {
    let mut editor = spawn().await;
    editor.signed_in_as("ed@example.org", Role::Editor).await;
    let signer = editor.fork();
    signer.create_user("viv@example.org", Role::Viewer);
    let (source, contacts) = {
        let mut conn = editor.state.pool.get().expect("connection");
        let source = sources::create(&mut conn, &common::contacts_by("CRM", "id")).expect("source");
        let map = |column: &str| MappingInput {
            column_name: column.into(),
            field_key: column.into(),
            to_record: Rule::Always,
            to_source: Rule::Never,
            blanks_clear: false,
        };
        sources::set_mapping(&mut conn, source.id, &[map("name"), map("email")]).expect("mapping");
        let contacts: Vec<i64> = (0..5)
            .map(|i| {
                let mut input = RecordInput::default();
                input.values.insert("name".into(), format!("Person {i}"));
                records::create(
                    &mut conn,
                    RecordKind::Contact,
                    &input,
                    &Actor::system("test"),
                    country(),
                )
                .expect("contact")
                .id
            })
            .collect();
        (source, contacts)
    };
    let mut file = String::from("id,name,email\n");
    for i in 0..ROWS {
        file.push_str(&format!("E{i},Imported {i},imported{i}@example.org\n"));
    }
    let data_dir = editor.state.config.data_dir.clone();
    let sha = jobs::store_file(&data_dir, file.as_bytes(), u64::MAX).expect("store");
    let run = {
        let mut conn = editor.state.pool.get().expect("connection");
        jobs::enqueue(
            &mut conn,
            &NewRun {
                source: &source,
                file_name: "big.csv",
                sha256: &sha,
                format: syncdesk::sync::csvfile::detect(file.as_bytes()),
                dry_run: false,
                plan_of: None,
                flag_confirmed: false,
                user_id: None,
                user_label: "test",
            },
        )
        .expect("enqueue")
    };
    let pool = editor.state.pool.clone();
    let worker = std::thread::spawn(move || jobs::run_queued(&pool, &data_dir, country()));
    let status = |pool: &syncdesk::db::DbPool| {
        let mut conn = pool.get().expect("connection");
        engine::load_run(&mut conn, run)
            .expect("run")
            .expect("run")
            .status
    };
    let waiting = Instant::now();
    while status(&editor.state.pool).as_str() == "queued"
        && waiting.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        status(&editor.state.pool).as_str(),
        "running",
        "the import started"
    );

    // 50 writes while it runs: edits, flags and sign-ins, one after another.
    let mut latencies = Vec::new();
    let mut during_import = 0;
    for i in 0..50 {
        let started = Instant::now();
        let id = contacts[i % contacts.len()];
        match i % 5 {
            4 => {
                let mut browser = signer.fork();
                let res = browser.sign_in("viv@example.org", PASSWORD).await;
                assert_eq!(res.status.as_u16(), 303, "sign-in {i}: {}", res.body);
            }
            3 => {
                let value = if i % 2 == 0 { "true" } else { "false" };
                editor
                    .post(&format!("/records/{id}/forced-manual"), &[("value", value)])
                    .await
                    .assert_redirect(&format!("/records/{id}"));
            }
            _ => {
                editor
                    .post(
                        &format!("/records/{id}"),
                        &[("f_email", &format!("person{i}@example.org"))],
                    )
                    .await
                    .assert_redirect(&format!("/records/{id}"));
            }
        }
        latencies.push(started.elapsed());
        if status(&editor.state.pool).as_str() == "running" {
            during_import += 1;
        }
    }
    let imported = worker.join().expect("worker").expect("import");
    assert_eq!(imported, 1);
    let mut conn = editor.state.pool.get().expect("connection");
    let done = engine::load_run(&mut conn, run).expect("run").expect("run");
    assert_eq!(done.status.as_str(), "done", "{:?}", done.error);
    assert_eq!(done.count("created"), ROWS as i64);
    latencies.sort();
    println!(
        "50 console writes, {during_import} of them during the import: p50 {:?}, max {:?}",
        latencies[25], latencies[49]
    );
    assert!(
        during_import >= 10,
        "the writes overlapped the import ({during_import} of 50)"
    );
}
