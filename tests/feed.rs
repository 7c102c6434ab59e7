//! The outbound change feed: each `to_source` rule, no echo, held changes, and exactly-once
//! reading while many writers commit at once. Runs on SQLite, and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod common;

use std::collections::BTreeMap;

use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::sources::model::{MappingInput, Source};
use syncdesk::sources::service::{self as sources, SourceInput};
use syncdesk::sync::feed::{self, FeedEntry};
use syncdesk::sync::jobs::{self, NewRun};
use syncdesk::AppState;

fn au() -> PhoneCountry {
    PhoneCountry::parse("AU").expect("country")
}

struct Env {
    state: AppState,
    _db: common::TestDb,
}

impl Env {
    fn new() -> Self {
        let db = common::TestDb::new();
        let state = AppState::open(db.config()).expect("state");
        Env { state, _db: db }
    }

    fn conn(&self) -> syncdesk::db::PooledConn {
        self.state.pool.get().expect("connection")
    }

    /// A CRM whose Name goes back `always`, Email `fill_blanks`, Phone on `review`, Title
    /// `always`. Only its Title is kept in step (`always`) inward, so people may edit the rest.
    fn crm(&self) -> Source {
        let mut conn = self.conn();
        fields::create(
            &mut conn,
            RecordKind::Contact,
            &NewField {
                key: "title".into(),
                label: "Title".into(),
                field_type: "text".into(),
                options: String::new(),
            },
        )
        .expect("field");
        let source = sources::create(
            &mut conn,
            &SourceInput {
                name: "CRM".into(),
                kind: RecordKind::Contact,
                id_column: "id".into(),
                full_mode: false,
            },
        )
        .expect("source");
        let line = |column: &str, field: &str, to_source: Rule| MappingInput {
            column_name: column.into(),
            field_key: field.into(),
            to_record: if field == "title" {
                Rule::Always
            } else {
                Rule::FillBlanks
            },
            to_source,
            blanks_clear: false,
        };
        sources::set_mapping(
            &mut conn,
            source.id,
            &[
                line("Name", "name", Rule::Always),
                line("Email", "email", Rule::FillBlanks),
                line("Phone", "phone", Rule::Review),
                line("Title", "title", Rule::Always),
            ],
        )
        .expect("mapping");
        source
    }

    fn import(&self, source: &Source, csv: &str) {
        let data_dir = &self.state.config.data_dir;
        let sha = jobs::store_file(data_dir, csv.as_bytes(), 1024 * 1024).expect("store");
        let format = syncdesk::sync::csvfile::detect(csv.as_bytes());
        jobs::enqueue(
            &mut self.conn(),
            &NewRun {
                source,
                file_name: "crm.csv",
                sha256: &sha,
                format,
                dry_run: false,
                plan_of: None,
                flag_confirmed: false,
                user_id: None,
                user_label: "test",
            },
        )
        .expect("enqueue");
        jobs::run_queued(&self.state.pool, data_dir, au()).expect("run");
    }

    fn record_of(&self, source: &Source, external_id: &str) -> i64 {
        use diesel::prelude::*;
        use syncdesk::schema::record_links;
        record_links::table
            .filter(record_links::source_id.eq(source.id))
            .filter(record_links::external_id.eq(external_id))
            .select(record_links::record_id)
            .first(&mut self.conn())
            .expect("linked record")
    }

    fn edit(&self, id: i64, values: &[(&str, &str)], by: &str) {
        let input = RecordInput {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            company_id: None,
        };
        records::update(&mut self.conn(), id, &input, &Actor::system(by), au()).expect("edit");
    }

    /// Everything in the feed after `after`, as "external_id column old>new" lines.
    fn read(&self, source: &Source, after: i64) -> (Vec<String>, i64) {
        let mut conn = self.conn();
        feed::sequence(&mut conn).expect("sequence");
        let entries = feed::page(&mut conn, source.id, after, 1_000).expect("page");
        let last = entries.last().and_then(|e| e.seq).unwrap_or(after);
        (entries.iter().map(describe).collect(), last)
    }
}

fn describe(e: &FeedEntry) -> String {
    format!(
        "{} {} {}>{}",
        e.external_id,
        e.column_name.as_deref().unwrap_or(&e.event),
        e.old_value.as_deref().unwrap_or(""),
        e.new_value.as_deref().unwrap_or("")
    )
}

#[test]
fn each_to_source_rule_feeds_what_it_says_and_never_echoes() {
    let env = Env::new();
    let crm = env.crm();
    env.import(
        &crm,
        "id,Name,Email,Phone,Title\nc1,Ada Lovelace,ada@example.org,+61 2 9374 4000,Countess\nc2,Bob Brown,,,\n",
    );
    let (entries, cursor) = env.read(&crm, 0);
    assert!(
        entries.is_empty(),
        "the source's own import came back: {entries:?}"
    );
    let (c1, c2) = (env.record_of(&crm, "c1"), env.record_of(&crm, "c2"));

    env.edit(c1, &[("name", "Ada King")], "Ann");
    env.edit(c1, &[("email", "ada@king.example")], "Ann");
    env.edit(c2, &[("email", "bob@example.org")], "Ann");
    env.edit(c1, &[("phone", "+61 2 9374 4001")], "Ann");
    env.edit(c2, &[("phone", "+61 2 9374 4002")], "Ann");
    records::set_archived(&mut env.conn(), c2, true, &Actor::system("Ann")).expect("archive");

    let (entries, cursor) = env.read(&crm, cursor);
    assert_eq!(
        entries,
        [
            "c1 Name Ada Lovelace>Ada King",
            // fill_blanks: c1's email was not blank, so only c2's goes back.
            "c2 Email >bob@example.org",
            "c2 archived no>yes",
        ]
    );

    // Review: phone changes wait for a person; approved ones enter the feed, dropped never.
    let mut conn = env.conn();
    let held = feed::held(&mut conn, crm.id, 10).expect("held");
    let held: BTreeMap<String, i64> = held.iter().map(|e| (describe(e), e.id)).collect();
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        [
            "c1 Phone +61293744000>+61293744001",
            "c2 Phone >+61293744002"
        ]
    );
    let ids: Vec<i64> = held.values().copied().collect();
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids[..1], true, "Ann").expect("approve"),
        1
    );
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids[1..], false, "Ann").expect("drop"),
        1
    );
    assert_eq!(
        feed::decide(&mut conn, crm.id, &ids, true, "Ann").expect("again"),
        0
    );
    drop(conn);
    let (entries, cursor) = env.read(&crm, cursor);
    assert_eq!(entries, ["c1 Phone +61293744000>+61293744001"]);

    // A new value from the CRM itself never goes back to it.
    env.import(&crm, "id,Title\nc1,Mathematician\n");
    let record = records::find(&mut env.conn(), c1)
        .expect("find")
        .expect("c1");
    let values = records::values(
        &mut env.conn(),
        &record,
        &fields::list(&mut env.conn(), RecordKind::Contact, false).expect("defs"),
    )
    .expect("values");
    assert_eq!(values["title"], "Mathematician");
    let (entries, _) = env.read(&crm, cursor);
    assert!(entries.is_empty(), "echo: {entries:?}");
}

/// Writers on many threads commit in any order; a reader polling by cursor the whole time
/// sees every change exactly once.
#[test]
fn a_polling_reader_sees_every_change_once_under_concurrent_writers() {
    let env = Env::new();
    let crm = env.crm();
    let mut csv = String::from("id,Name\n");
    for i in 0..8 {
        csv.push_str(&format!("c{i},Person {i}\n"));
    }
    env.import(&crm, &csv);
    let ids: Vec<i64> = (0..8)
        .map(|i| env.record_of(&crm, &format!("c{i}")))
        .collect();
    const EDITS: usize = 25;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(w, &id)| {
            let pool = env.state.pool.clone();
            std::thread::spawn(move || {
                for n in 0..EDITS {
                    let mut conn = pool.get().expect("connection");
                    let input = RecordInput {
                        values: [("name".to_string(), format!("Person {w} v{n}"))].into(),
                        company_id: None,
                    };
                    records::update(&mut conn, id, &input, &Actor::system("writer"), au())
                        .expect("write");
                }
            })
        })
        .collect();
    let reader = {
        let pool = env.state.pool.clone();
        let done = done.clone();
        let source = crm.id;
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let mut conn = pool.get().expect("connection");
                feed::sequence(&mut conn).expect("sequence");
                let page = feed::page(&mut conn, source, cursor, 50).expect("page");
                if let Some(last) = page.last() {
                    cursor = last.seq.expect("sequenced");
                }
                let empty = page.is_empty();
                seen.extend(page.iter().map(describe));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().expect("reader");
    assert_eq!(seen.len(), ids.len() * EDITS, "every change, once");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no change twice");
    for w in 0..ids.len() {
        let of_writer: Vec<&String> = seen
            .iter()
            .filter(|e| e.starts_with(&format!("c{w} ")))
            .collect();
        for (n, entry) in of_writer.iter().enumerate() {
            assert!(
                entry.ends_with(&format!(">Person {w} v{n}")),
                "in commit order: {entry}"
            );
        }
    }
}
