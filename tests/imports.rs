//! Sources and the import engine: the seed's two worked examples, bad files, dry run, apply
//! plan, undo, idempotence, disconnect/reconnect, one run per source, proposals, ambiguity.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use diesel::prelude::*;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::schema::{import_rows, record_history, record_links, records as records_t};
use syncdesk::sources::model::{MappingInput, OnInvalid, Source};
use syncdesk::sources::service::{self as sources, SourceInput};
use syncdesk::sync::jobs::{self, NewRun};
use syncdesk::sync::model::ImportRow;
use syncdesk::sync::{claims, engine, report, undo};
use syncdesk::AppState;

fn au() -> PhoneCountry {
    PhoneCountry::parse("AU").expect("country")
}

struct Env {
    state: AppState,
    /// Dropped last, with the database; `None` when a test app holds it.
    _db: Option<common::TestDb>,
}

impl Env {
    fn new() -> Self {
        let db = common::TestDb::new();
        let state = AppState::open(db.config()).expect("state");
        Env {
            state,
            _db: Some(db),
        }
    }

    /// The same helpers over a test app's database (the app keeps it).
    fn of<S>(app: &common::TestApp<S>) -> Self {
        Env {
            state: app.state.clone(),
            _db: None,
        }
    }

    fn conn(&self) -> syncdesk::db::PooledConn {
        self.state.pool.get().expect("connection")
    }

    fn source(&self, name: &str, full: bool, maps: &[(&str, &str, Rule)]) -> Source {
        let mut conn = self.conn();
        let source = sources::create(
            &mut conn,
            &SourceInput {
                full_mode: full,
                ..common::contacts_by(name, "External Id")
            },
        )
        .expect("source");
        let lines: Vec<MappingInput> = maps
            .iter()
            .map(|(column, field, rule)| MappingInput {
                column_name: column.to_string(),
                field_key: field.to_string(),
                to_record: *rule,
                to_source: Rule::Never,
                blanks_clear: false,
            })
            .collect();
        sources::set_mapping(&mut conn, source.id, &lines).expect("mapping");
        source
    }

    fn standard_source(&self) -> Source {
        self.source(
            "Contact Sync",
            true,
            &[
                ("Name", "name", Rule::Always),
                ("Email", "email", Rule::Always),
                ("Phone", "phone", Rule::Always),
            ],
        )
    }

    fn contact(&self, name: &str, email: &str, phone: &str) -> i64 {
        let mut conn = self.conn();
        let input = RecordInput {
            values: [("name", name), ("email", email), ("phone", phone)]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            company_id: None,
        };
        records::create(
            &mut conn,
            RecordKind::Contact,
            &input,
            &Actor::system("setup"),
            au(),
        )
        .expect("contact")
        .id
    }

    fn own(&self, record_id: i64, source: &Source, external_id: Option<&str>) {
        let mut conn = self.conn();
        let record = records::find(&mut conn, record_id)
            .expect("find")
            .expect("record");
        records::set_owner(
            &mut conn,
            &record,
            Some((source.id, &source.name)),
            &Actor::system("setup"),
        )
        .expect("owner");
        if let Some(ext) = external_id {
            self.link(record_id, source, ext);
        }
    }

    fn link(&self, record_id: i64, source: &Source, external_id: &str) {
        let mut conn = self.conn();
        diesel::insert_into(record_links::table)
            .values((
                record_links::record_id.eq(record_id),
                record_links::source_id.eq(source.id),
                record_links::external_id.eq(external_id),
                record_links::created_at.eq(syncdesk::db::now()),
            ))
            .execute(&mut conn)
            .expect("link");
    }

    fn enqueue(
        &self,
        source: &Source,
        csv: &[u8],
        dry_run: bool,
        plan_of: Option<i64>,
    ) -> Result<i64, String> {
        self.enqueue_confirmed(source, csv, dry_run, plan_of, false)
    }

    fn enqueue_confirmed(
        &self,
        source: &Source,
        csv: &[u8],
        dry_run: bool,
        plan_of: Option<i64>,
        flag_confirmed: bool,
    ) -> Result<i64, String> {
        let data_dir = &self.state.config.data_dir;
        let sha = jobs::store_file(data_dir, csv, 1024 * 1024).map_err(|e| e.to_string())?;
        let format = syncdesk::sync::csvfile::detect(csv);
        let mut conn = self.conn();
        jobs::enqueue(
            &mut conn,
            &NewRun {
                source,
                file_name: "test.csv",
                sha256: &sha,
                format,
                dry_run,
                plan_of,
                flag_confirmed,
                user_id: None,
                user_label: "test",
            },
        )
        .map_err(|e| e.to_string())
    }

    /// Runs the `syncdesk` binary on this environment's data: (success, stdout then stderr).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args(args)
            .env("SYNCDESK_DATA_DIR", &self.state.config.data_dir)
            .env("DATABASE_URL", &self.state.config.database_url)
            .env_remove("SYNCDESK_CONFIG")
            .output()
            .expect("run syncdesk");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Imports a full-mode file whose missing records the person confirmed flagging.
    fn import_flagging(&self, source: &Source, csv: &str) -> i64 {
        let run = self
            .enqueue_confirmed(source, csv.as_bytes(), false, None, true)
            .expect("enqueue");
        jobs::run_queued(&self.state.pool, &self.state.config.data_dir, au()).expect("run");
        run
    }

    /// Imports a file and returns the run id (the run is finished, done or failed).
    fn import(&self, source: &Source, csv: &str, dry_run: bool) -> i64 {
        let run = self
            .enqueue(source, csv.as_bytes(), dry_run, None)
            .expect("enqueue");
        jobs::run_queued(&self.state.pool, &self.state.config.data_dir, au()).expect("run");
        run
    }

    fn rows(&self, run_id: i64) -> Vec<ImportRow> {
        let mut conn = self.conn();
        import_rows::table
            .filter(import_rows::run_id.eq(run_id))
            .order((import_rows::line.asc(), import_rows::id.asc()))
            .select(ImportRow::as_select())
            .load(&mut conn)
            .expect("rows")
    }

    fn run(&self, run_id: i64) -> syncdesk::sync::model::ImportRun {
        engine::load_run(&mut self.conn(), run_id)
            .expect("load")
            .expect("run")
    }

    /// (owner name or "manual", forced manual, links "Source:id", email, phone, archived)
    fn state_of(&self, id: i64) -> (String, bool, Vec<String>, String, String, bool) {
        let mut conn = self.conn();
        let record = records::find(&mut conn, id).expect("find").expect("record");
        let owner = match record.owner_source_id {
            Some(s) => records::source_name(&mut conn, s)
                .expect("name")
                .unwrap_or_default(),
            None => "manual".into(),
        };
        let links = records::links_of(&mut conn, id)
            .expect("links")
            .into_iter()
            .map(|l| format!("{}:{}", l.source_name, l.external_id))
            .collect();
        (
            owner,
            record.forced_manual,
            links,
            record.email,
            record.phone,
            record.archived,
        )
    }

    fn record_count(&self) -> i64 {
        records_t::table
            .count()
            .get_result(&mut self.conn())
            .expect("count")
    }
}

fn outcome_of(rows: &[ImportRow], external_id: &str) -> (String, Option<i64>, String) {
    let row = rows
        .iter()
        .find(|r| r.external_id == external_id)
        .unwrap_or_else(|| panic!("no row {external_id}"));
    (row.outcome.to_string(), row.record_id, row.reason.clone())
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Seed example 1: first connection with five existing records and five rows.
#[core::prelude::v1::test]
fn seed_example_1_first_connection() {
    let env = Env::new();
    let bgl = env.source("BGL", false, &[("Name", "name", Rule::Always)]);
    let sync = env.standard_source();
    assert_eq!(env.contact("John Smith", "john@smith.com", ""), 1);
    assert_eq!(env.contact("Mary Smith", "mary@smith.com", ""), 2);
    assert_eq!(env.contact("Chris Smith", "chris@smith.com", ""), 3);
    assert_eq!(env.contact("Leila Smith", "leila@smith.com", ""), 4);
    assert_eq!(env.contact("Harry Smith", "harry_manual@smith.com", ""), 5);
    env.own(3, &bgl, Some("X3"));
    env.link(4, &sync, "D");
    env.link(5, &sync, "E");
    records::set_forced_manual(&mut env.conn(), 5, true, &Actor::system("setup")).expect("forced");

    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\n\
         A,John Smith,john@smith.com,\n\
         B,Mary Smith,mary@smith.com,0400 000 001\n\
         C,Chris Smith,chris@smith.com,\n\
         D,Leila Smith,leila.smith@smith.com,0400 000 002\n\
         E,Harry Smith,harry@smith.com,0400 000 003\n",
        false,
    );
    assert_eq!(env.run(run).status.as_str(), "done");
    let rows = env.rows(run);
    // Outcome of every row, and the record it landed on.
    let (outcome, record, reason) = outcome_of(&rows, "A");
    assert_eq!((outcome.as_str(), record), ("converted", Some(1)));
    assert!(reason.contains("Name, email and phone matched"), "{reason}");
    let (outcome, record, reason) = outcome_of(&rows, "B");
    assert_eq!((outcome.as_str(), record), ("created", Some(6)));
    assert!(reason.contains("no existing record matched"), "{reason}");
    let (outcome, record, reason) = outcome_of(&rows, "C");
    assert_eq!((outcome.as_str(), record), ("created", Some(7)));
    assert!(reason.contains("belongs to source BGL"), "{reason}");
    let (outcome, record, reason) = outcome_of(&rows, "D");
    assert_eq!((outcome.as_str(), record), ("updated", Some(4)));
    assert!(
        reason.contains("external id D") && reason.contains("Updated: email, phone"),
        "{reason}"
    );
    let (outcome, record, reason) = outcome_of(&rows, "E");
    assert_eq!(
        (outcome.as_str(), record),
        ("linked_forced_manual", Some(5))
    );
    assert!(reason.contains("forced manual"), "{reason}");

    // Every record after the import: owner, forced manual, links, values (the seed's table).
    let sync_name = "Contact Sync";
    assert_eq!(
        env.state_of(1),
        (
            s(sync_name),
            false,
            vec![s("Contact Sync:A")],
            s("john@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(2),
        (
            s("manual"),
            false,
            vec![],
            s("mary@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(3),
        (
            s("BGL"),
            false,
            vec![s("BGL:X3")],
            s("chris@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(4),
        (
            s(sync_name),
            false,
            vec![s("Contact Sync:D")],
            s("leila.smith@smith.com"),
            s("+61400000002"),
            false
        )
    );
    assert_eq!(
        env.state_of(5),
        (
            s(sync_name),
            true,
            vec![s("Contact Sync:E")],
            s("harry_manual@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(6),
        (
            s(sync_name),
            false,
            vec![s("Contact Sync:B")],
            s("mary@smith.com"),
            s("+61400000001"),
            false
        )
    );
    assert_eq!(
        env.state_of(7),
        (
            s(sync_name),
            false,
            vec![s("Contact Sync:C")],
            s("chris@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(env.record_count(), 7);

    // Re-running the same import changes nothing.
    let again = env.import(
        &sync,
        "External Id,Name,Email,Phone\n\
         A,John Smith,john@smith.com,\n\
         B,Mary Smith,mary@smith.com,0400 000 001\n\
         C,Chris Smith,chris@smith.com,\n\
         D,Leila Smith,leila.smith@smith.com,0400 000 002\n\
         E,Harry Smith,harry@smith.com,0400 000 003\n",
        false,
    );
    let outcomes: Vec<String> = env
        .rows(again)
        .iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(
        outcomes,
        [
            "unchanged",
            "unchanged",
            "unchanged",
            "unchanged",
            "linked_forced_manual"
        ]
    );
    assert_eq!(env.record_count(), 7);
}

/// Seed example 2: the ongoing sync.
#[core::prelude::v1::test]
fn seed_example_2_ongoing_sync() {
    let env = Env::new();
    let sync = env.standard_source();
    let john = env.contact("John Smith", "john@smith.com", "");
    let gap1 = env.contact("placeholder", "", "");
    let gap2 = env.contact("placeholder", "", "");
    let leila = env.contact("Leila Smith", "leila@smith.com", "0400 000 002");
    let harry = env.contact("Harry Smith", "harry@smith.com", "");
    assert_eq!((john, leila, harry), (1, 4, 5));
    diesel::delete(records_t::table.filter(records_t::id.eq_any([gap1, gap2])))
        .execute(&mut env.conn())
        .expect("delete placeholders");
    env.own(1, &sync, Some("A"));
    env.own(4, &sync, Some("D"));
    env.own(5, &sync, Some("E"));
    records::set_forced_manual(&mut env.conn(), 5, true, &Actor::system("setup")).expect("forced");

    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\n\
         A,John Smith,john@smith.com,\n\
         D,Leila Smith,leila.smith@smith.com,0400 000 012\n\
         E,Harry Smith,harry@smith.com,0400 000 003\n\
         F,Cleo Smith,cleo@smith.com,\n",
        false,
    );
    let rows = env.rows(run);
    assert_eq!(outcome_of(&rows, "A").0, "unchanged");
    assert!(outcome_of(&rows, "A").2.contains("No value changed"));
    assert_eq!(
        (outcome_of(&rows, "D").0.as_str(), outcome_of(&rows, "D").1),
        ("updated", Some(4))
    );
    assert!(outcome_of(&rows, "D").2.contains("Updated: email, phone"));
    assert_eq!(
        (outcome_of(&rows, "E").0.as_str(), outcome_of(&rows, "E").1),
        ("linked_forced_manual", Some(5))
    );
    assert_eq!(
        (outcome_of(&rows, "F").0.as_str(), outcome_of(&rows, "F").1),
        ("created", Some(6))
    );

    assert_eq!(
        env.state_of(1),
        (
            s("Contact Sync"),
            false,
            vec![s("Contact Sync:A")],
            s("john@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(4),
        (
            s("Contact Sync"),
            false,
            vec![s("Contact Sync:D")],
            s("leila.smith@smith.com"),
            s("+61400000012"),
            false
        )
    );
    assert_eq!(
        env.state_of(5),
        (
            s("Contact Sync"),
            true,
            vec![s("Contact Sync:E")],
            s("harry@smith.com"),
            s(""),
            false
        )
    );
    assert_eq!(
        env.state_of(6),
        (
            s("Contact Sync"),
            false,
            vec![s("Contact Sync:F")],
            s("cleo@smith.com"),
            s(""),
            false
        )
    );
    // The history names the run for every value it changed.
    let mut conn = env.conn();
    let by_run: i64 = record_history::table
        .filter(record_history::record_id.eq(4))
        .filter(record_history::origin.eq("import"))
        .filter(record_history::origin_id.eq(run))
        .count()
        .get_result(&mut conn)
        .expect("history");
    assert_eq!(by_run, 2);
}

#[core::prelude::v1::test]
fn bad_files_are_explained_and_lose_nothing() {
    let env = Env::new();
    let sync = env.standard_source();
    // Missing id column: the run fails before anything is written.
    let run = env.import(&sync, "Id,Name\n1,Ann\n", false);
    let failed = env.run(run);
    assert_eq!(failed.status.as_str(), "failed");
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("no column 'External Id'")
            && error.contains("'Id', 'Name'")
            && error.contains("Nothing was imported"),
        "{error}"
    );
    assert_eq!(env.record_count(), 0);

    // Wrong number of fields, invalid value (rejected rows, as the source asks), duplicate id,
    // empty id: error rows; others apply.
    sources::set_on_invalid(&mut env.conn(), sync.id, OnInvalid::RejectRow).expect("setting");
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\n\
         1,Ann,ann@example.org,\n\
         2,Bob\n\
         3,Cy,not-an-email,\n\
         1,Ann again,ann2@example.org,\n\
         ,Nobody,,\n\
         4,\"Dee\nSecond line\",dee@example.org,\n",
        false,
    );
    let rows = env.rows(run);
    let reasons: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.line, r.outcome.to_string(), r.reason.clone()))
        .collect();
    assert_eq!(reasons[0].1, "created");
    assert!(
        reasons[1]
            .2
            .contains("Line 3 has 2 fields; the header has 4"),
        "{reasons:?}"
    );
    assert!(
        reasons[2]
            .2
            .contains("Line 4, column 'Email': Email: 'not-an-email' is not a valid email address"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].2.contains(
            "Line 5: the external id 1 already appeared on line 2; only line 2 was applied"
        ),
        "{reasons:?}"
    );
    assert!(
        reasons[4]
            .2
            .contains("Line 6: the id column 'External Id' is empty"),
        "{reasons:?}"
    );
    assert_eq!((reasons[5].0, reasons[5].1.as_str()), (7, "created"));
    assert_eq!(env.record_count(), 2);
    let dee = rows[5].record_id.expect("record");
    assert_eq!(
        records::find(&mut env.conn(), dee)
            .expect("find")
            .expect("dee")
            .name,
        "Dee Second line"
    );

    // Windows-1252, semicolons and a BOM are read as such.
    let mut latin =
        b"External Id;Name;Email;Phone\r\n9;Z\xE9lie M\xFCller;zelie@example.org;\r\n".to_vec();
    env.enqueue(&sync, &latin, false, None).expect("enqueue");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    latin.clear();
    let bom = "\u{feff}External Id,Name,Email,Phone\n10,Åsa,asa@example.org,\n";
    let run = env.import(&sync, bom, false);
    assert_eq!(
        outcome_of(&env.rows(run), "10").0,
        "created",
        "the BOM is not part of the first column's name"
    );
    let names: Vec<String> = records_t::table
        .select(records_t::name)
        .load(&mut env.conn())
        .expect("names");
    assert!(
        names.contains(&s("Zélie Müller")) && names.contains(&s("Åsa")),
        "{names:?}"
    );

    // Over the upload limit: refused before a run exists.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let err = env.enqueue(&sync, &big, false, None).unwrap_err();
    assert!(err.contains("larger than the 1 MB upload limit"), "{err}");
}

/// By default a bad value skips its field, not the row: the row is created or updated without
/// it, its reason says so, and the run counts the warning.
#[core::prelude::v1::test]
fn an_invalid_value_skips_the_field_and_keeps_the_row() {
    let env = Env::new();
    let sync = env.standard_source();
    let kept = env.contact("Kim Park", "kim@example.org", "0400 000 001");
    env.own(kept, &sync, Some("K"));
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone
         N,Noor Haddad,noor@example.org,(968) 724-4843
         K,Kim Park,kim@new.example.org,not a phone
         X,,broken-email,
",
        false,
    );
    let rows = env.rows(run);
    let (outcome, record, reason) = outcome_of(&rows, "N");
    assert_eq!(outcome, "created", "{reason}");
    assert!(
        reason.contains("'(968) 724-4843'") && reason.contains("the field was left unchanged"),
        "{reason}"
    );
    let (name, _, _, email, phone, _) = env.state_of(record.expect("record"));
    assert_eq!(
        (name.as_str(), email.as_str(), phone.as_str()),
        ("Contact Sync", "noor@example.org", "")
    );
    // An existing record: the valid email is written, the phone stays as it was.
    let (outcome, _, reason) = outcome_of(&rows, "K");
    assert_eq!(outcome, "updated", "{reason}");
    assert!(
        reason.contains("Updated: email") && reason.contains("'not a phone'"),
        "{reason}"
    );
    let (_, _, _, email, phone, _) = env.state_of(kept);
    assert_eq!(
        (email.as_str(), phone.as_str()),
        ("kim@new.example.org", "+61400000001")
    );
    // Without a name a new record still cannot be made.
    assert_eq!(outcome_of(&rows, "X").0, "error");
    let counts = env.run(run).counts();
    assert_eq!(counts.get("warnings"), Some(&2), "{counts:?}");
}

#[core::prelude::v1::test]
fn dry_run_writes_nothing_and_its_plan_applies() {
    let env = Env::new();
    let sync = env.standard_source();
    let ann = env.contact("ann lee", "ann@example.org", "");
    let file = "External Id,Name,Email,Phone\n1,Ann Lee,ann@example.org,\n2,Bob,bob@example.org,\n";
    let history_before: i64 = record_history::table
        .count()
        .get_result(&mut env.conn())
        .expect("count");
    let dry = env.import(&sync, file, true);
    let rows = env.rows(dry);
    assert_eq!(
        rows.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        ["converted", "created"]
    );
    assert_eq!(rows[0].changes_text(), "name: ann lee → Ann Lee");
    // Nothing written: no record, no link, no owner, no value, no history.
    assert_eq!(env.record_count(), 1);
    assert_eq!(
        env.state_of(ann),
        (
            s("manual"),
            false,
            vec![],
            s("ann@example.org"),
            s(""),
            false
        )
    );
    assert_eq!(
        records::find(&mut env.conn(), ann)
            .expect("find")
            .expect("ann")
            .name,
        "ann lee"
    );
    let history_after: i64 = record_history::table
        .count()
        .get_result(&mut env.conn())
        .expect("count");
    assert_eq!(history_before, history_after);

    // Someone edits Ann before the plan is applied: the apply reports it.
    diesel::update(records_t::table.find(ann))
        .set(records_t::updated_at.eq(syncdesk::db::now() + chrono::Duration::minutes(5)))
        .execute(&mut env.conn())
        .expect("touch");
    let run = env
        .enqueue(&sync, file.as_bytes(), false, Some(dry))
        .expect("enqueue");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    let applied = env.rows(run);
    assert_eq!(
        applied
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["converted", "created"]
    );
    assert!(
        applied[0].reason.contains("changed since the dry run"),
        "{}",
        applied[0].reason
    );
    assert!(!applied[1].reason.contains("changed since"));
    assert_eq!(
        records::find(&mut env.conn(), ann)
            .expect("find")
            .expect("ann")
            .name,
        "Ann Lee"
    );
    assert_eq!(env.record_count(), 2);
}

#[core::prelude::v1::test]
fn undo_restores_values_and_reports_later_edits() {
    let env = Env::new();
    let sync = env.standard_source();
    let ann = env.contact("Ann", "ann@example.org", "");
    let leila = env.contact("Leila", "leila@example.org", "0400 000 002");
    env.own(leila, &sync, Some("L"));
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\nA,Ann,ann@example.org,\nL,Leila,leila@new.example,0400 000 012\nN,New Person,new@example.org,\n",
        false,
    );
    let rows = env.rows(run);
    assert_eq!(
        rows.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        ["converted", "updated", "created"]
    );
    let new_id = rows[2].record_id.expect("created");
    // A person edits Leila's email after the import (as a review decision would).
    let mut conn = env.conn();
    let record = records::find(&mut conn, leila)
        .expect("find")
        .expect("leila");
    let defs =
        syncdesk::fields::service::list(&mut conn, RecordKind::Contact, false).expect("defs");
    let email = defs.into_iter().find(|d| d.key == "email").expect("email");
    records::write_values(
        &mut conn,
        &record,
        &[(email, "leila@person.example".into())],
        &Actor::system("a person"),
    )
    .expect("edit");
    drop(conn);

    let report = undo::undo(&mut env.conn(), run, &Actor::system("tester")).expect("undo");
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].contains("email: left as 'leila@person.example'")
            && report[0].contains("edited after the import"),
        "{report:?}"
    );
    // Leila: phone restored, the later email edit kept, still owned (she was before).
    assert_eq!(
        env.state_of(leila),
        (
            s("Contact Sync"),
            false,
            vec![s("Contact Sync:L")],
            s("leila@person.example"),
            s("+61400000002"),
            false
        )
    );
    // Ann: converted back to manual, link removed.
    assert_eq!(
        env.state_of(ann),
        (
            s("manual"),
            false,
            vec![],
            s("ann@example.org"),
            s(""),
            false
        )
    );
    // The created record: archived, unlinked, manual.
    assert_eq!(
        env.state_of(new_id),
        (
            s("manual"),
            false,
            vec![],
            s("new@example.org"),
            s(""),
            true
        )
    );
    let undo_rows: i64 = record_history::table
        .filter(record_history::origin.eq("undo"))
        .count()
        .get_result(&mut env.conn())
        .expect("count");
    assert!(undo_rows >= 4, "history rows for the undo: {undo_rows}");
    let err = undo::undo(&mut env.conn(), run, &Actor::system("tester")).unwrap_err();
    assert!(err.to_string().contains("already been undone"));
    // The lists' totals followed the import and its undo (a record archived, owners back).
    assert_eq!(
        syncdesk::records::counts::differences(&mut env.conn()).expect("totals"),
        vec![]
    );
    assert_eq!(
        syncdesk::review::totals::differences(&mut env.conn()).expect("totals"),
        vec![]
    );
}

#[core::prelude::v1::test]
fn disconnect_then_reconnect_through_links() {
    let env = Env::new();
    let sync = env.standard_source();
    let file = "External Id,Name,Email,Phone\nA,Ann,ann@example.org,\nB,Bob,bob@example.org,\n";
    env.import(&sync, file, false);
    let count =
        sources::disconnect(&mut env.conn(), sync.id, &Actor::system("admin")).expect("disconnect");
    assert_eq!(count, 2);
    assert_eq!(
        env.state_of(1),
        (
            s("manual"),
            false,
            vec![s("Contact Sync:A")],
            s("ann@example.org"),
            s(""),
            false
        )
    );
    let source = sources::find(&mut env.conn(), sync.id)
        .expect("find")
        .expect("source");
    assert_eq!(source.status, "disconnected");
    // Reconnecting is the next import: links convert the records back.
    let run = env.import(&source, file, false);
    let rows = env.rows(run);
    assert!(
        rows.iter().all(|r| r.outcome.as_str() == "unchanged"
            && r.reason.contains("now belongs to Contact Sync")),
        "{:?}",
        rows.iter().map(|r| &r.reason).collect::<Vec<_>>()
    );
    assert_eq!(env.state_of(1).0, "Contact Sync");
    assert_eq!(
        sources::find(&mut env.conn(), sync.id)
            .expect("find")
            .expect("source")
            .status,
        "connected"
    );
    assert_eq!(env.record_count(), 2);
}

#[core::prelude::v1::test]
fn one_running_import_per_source() {
    let env = Env::new();
    let sync = env.standard_source();
    let other = env.source("Other", false, &[("Name", "name", Rule::Always)]);
    let file = b"External Id,Name,Email,Phone\nA,Ann,,\n";
    env.enqueue(&sync, file, false, None).expect("first");
    let err = env.enqueue(&sync, file, false, None).unwrap_err();
    assert!(
        err.contains("An import is already running for source Contact Sync"),
        "{err}"
    );
    // Another source is not blocked.
    env.enqueue(&other, file, false, None)
        .expect("other source");
    // Many at once: exactly one is accepted.
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    let accepted: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| env.enqueue(&sync, file, false, None).is_ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(accepted.iter().filter(|ok| **ok).count(), 1, "{accepted:?}");
}

#[core::prelude::v1::test]
fn full_mode_flags_missing_records_and_delta_does_not() {
    let env = Env::new();
    let full = env.standard_source();
    env.import(
        &full,
        "External Id,Name,Email,Phone\nA,Ann,,\nB,Bob,,\n",
        false,
    );
    // Half the source missing: flagged only once a person confirms.
    let run = env.import_flagging(&full, "External Id,Name,Email,Phone\nA,Ann,,\n");
    let rows = env.rows(run);
    let missing = rows
        .iter()
        .find(|r| r.outcome.as_str() == "missing_from_source")
        .expect("missing row");
    assert_eq!(missing.external_id, "B");
    assert!(missing.reason.contains("nothing is deleted"));
    let bob = missing.record_id.expect("record");
    assert!(
        records::find(&mut env.conn(), bob)
            .expect("find")
            .expect("bob")
            .missing_from_source
    );
    // Back in the next file: the flag goes.
    env.import(
        &full,
        "External Id,Name,Email,Phone\nA,Ann,,\nB,Bob,,\n",
        false,
    );
    assert!(
        !records::find(&mut env.conn(), bob)
            .expect("find")
            .expect("bob")
            .missing_from_source
    );

    let delta = env.source("Delta", false, &[("Name", "name", Rule::Always)]);
    env.import(&delta, "External Id,Name\nX,Xena\nY,Yann\n", false);
    let run = env.import(&delta, "External Id,Name\nX,Xena\n", false);
    assert!(env
        .rows(run)
        .iter()
        .all(|r| r.outcome.as_str() != "missing_from_source"));
}

#[core::prelude::v1::test]
fn rules_review_makes_proposals_and_custom_columns_map_to_custom_fields() {
    let env = Env::new();
    syncdesk::fields::service::create(
        &mut env.conn(),
        RecordKind::Contact,
        &syncdesk::fields::service::NewField {
            key: "tag1".into(),
            label: "Tag 1".into(),
            field_type: "text".into(),
            options: String::new(),
        },
    )
    .expect("field");
    let src = env.source(
        "Books",
        false,
        &[
            ("Name", "name", Rule::Always),
            ("Phone", "phone", Rule::Review),
            ("Email", "email", Rule::FillBlanks),
            ("tag1", "tag1", Rule::Always),
        ],
    );
    env.import(
        &src,
        "External Id,Name,Email,Phone,tag1\nA,Ann,ann@example.org,0400 000 001,vip\n",
        false,
    );
    let run = env.import(
        &src,
        "External Id,Name,Email,Phone,tag1\nA,Ann,other@example.org,0400 000 009,gold\n",
        false,
    );
    let row = &env.rows(run)[0];
    assert_eq!(row.outcome.as_str(), "updated");
    assert!(
        row.reason.contains("Updated: tag1") && row.reason.contains("Proposed for review: phone"),
        "{}",
        row.reason
    );
    let id = row.record_id.expect("record");
    let pending = syncdesk::review::service::pending_for(&mut env.conn(), id).expect("proposals");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].field_key.as_str(),
            pending[0].current_value.as_str(),
            pending[0].proposed_value.as_str()
        ),
        ("phone", "+61400000001", "+61400000009")
    );
    assert_eq!(pending[0].origin_id, Some(run));
    // fill_blanks kept the email; always wrote the custom field.
    assert_eq!(env.state_of(id).3, "ann@example.org");
    let defs =
        syncdesk::fields::service::list(&mut env.conn(), RecordKind::Contact, false).expect("defs");
    let record = records::find(&mut env.conn(), id)
        .expect("find")
        .expect("record");
    assert_eq!(
        records::values(&mut env.conn(), &record, &defs).expect("values")["tag1"],
        "gold"
    );
    // A newer proposal replaces the older one.
    let run = env.import(
        &src,
        "External Id,Name,Email,Phone,tag1\nA,Ann,,0400 000 008,gold\n",
        false,
    );
    // Nothing written, a change proposed: counted as proposed, not unchanged.
    assert_eq!(env.rows(run)[0].outcome.as_str(), "proposed");
    assert_eq!(env.run(run).counts().get("proposed"), Some(&1));
    let pending = syncdesk::review::service::pending_for(&mut env.conn(), id).expect("proposals");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].proposed_value, "+61400000008");
    // Undoing that run withdraws its proposal; the desynchronised totals follow.
    undo::undo(&mut env.conn(), run, &Actor::system("tester")).expect("undo");
    assert!(syncdesk::review::service::pending_for(&mut env.conn(), id)
        .expect("proposals")
        .is_empty());
    assert_eq!(
        syncdesk::review::totals::differences(&mut env.conn()).expect("totals"),
        vec![]
    );
}

#[core::prelude::v1::test]
fn ambiguous_rows_wait_for_a_person() {
    let env = Env::new();
    let sync = env.standard_source();
    let first = env.contact("Sam Lee", "sam@example.org", "");
    let second = env.contact("Sam  LEE ", "SAM@example.org", "");
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\nS1,sam lee,sam@example.org,\nS2,Sam Lee,sam@example.org,\n",
        false,
    );
    let rows = env.rows(run);
    assert_eq!(rows[0].outcome.as_str(), "ambiguous");
    assert_eq!(rows[0].candidates(), Ok(vec![first, second]));
    assert!(
        rows[0].reason.contains("2 manual records")
            && rows[0].reason.contains(&format!("#{first}, #{second}"))
    );
    assert_eq!(env.record_count(), 2, "nothing applied");

    let message = undo::resolve_ambiguous(
        &mut env.conn(),
        rows[0].id,
        Some(second),
        &Actor::system("Ada"),
        au(),
    )
    .expect("link");
    assert!(message.contains(&format!("linked to record #{second}")));
    assert_eq!(env.state_of(second).0, "Contact Sync");
    assert_eq!(env.state_of(second).2, vec![s("Contact Sync:S1")]);
    let err = undo::resolve_ambiguous(
        &mut env.conn(),
        rows[0].id,
        Some(first),
        &Actor::system("Ada"),
        au(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not ambiguous"));
    // The other row: a new record instead.
    let message = undo::resolve_ambiguous(
        &mut env.conn(),
        rows[1].id,
        None,
        &Actor::system("Ada"),
        au(),
    )
    .expect("create");
    assert!(message.contains("new record"));
    assert_eq!(env.record_count(), 3);
    let counts = env.run(run).counts();
    assert_eq!(
        (
            counts.get("converted"),
            counts.get("created"),
            counts.get("ambiguous")
        ),
        (Some(&1), Some(&1), None)
    );
}

#[actix_web::test]
async fn an_ambiguous_row_links_to_a_record_picked_by_search() {
    use syncdesk::auth::model::Role;
    let mut app = common::spawn().await;
    let env = Env::of(&app);
    let sync = env.standard_source();
    let first = env.contact("Sam Lee", "sam@example.org", "");
    env.contact("Sam Lee", "sam@example.org", "");
    let right = env.contact("Samuel Lee-Wong", "samuel@example.org", "");
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\nS1,Sam Lee,sam@example.org,\nS2,Sam Lee,sam@example.org,\n",
        false,
    );
    let rows = env.rows(run);
    assert_eq!(rows[0].outcome.as_str(), "ambiguous");
    app.signed_in_as("editor@example.org", Role::Editor).await;
    app.get(&format!("/runs/{run}?outcome=ambiguous"))
        .await
        .assert_status(200)
        .assert_contains(&format!("list=\"pick-row-{}\"", rows[0].id))
        .assert_contains("hx-get=\"/records/suggest?kind=contact\"");
    app.get("/records/suggest?kind=contact&record=samuel")
        .await
        .assert_contains(&format!("#{right} Samuel Lee-Wong"));
    // A record typed in the picker wins over the candidates' list.
    let url = |row: i64| format!("/runs/{run}/rows/{row}/resolve");
    let picked = format!("#{right} Samuel Lee-Wong");
    let first_id = first.to_string();
    app.post(
        &url(rows[0].id),
        &[("choice", first_id.as_str()), ("record", picked.as_str())],
    )
    .await
    .assert_status(303);
    assert_eq!(env.state_of(right).0, "Contact Sync");
    assert_eq!(env.state_of(right).2, vec![s("Contact Sync:S1")]);
    assert!(env.state_of(first).2.is_empty());
    // A name nobody has is said on the run's page; the row stays ambiguous.
    let refused = app
        .post(
            &url(rows[1].id),
            &[
                ("choice", "new"),
                ("record", "Nobody Here"),
                ("after", "0.0"),
            ],
        )
        .await;
    refused.assert_status(303);
    // Back on the run's page (the one the form was on), with what was typed in that row's
    // picker.
    let back = refused.location().expect("back").to_string();
    assert!(back.contains(&format!("refused={}", rows[1].id)), "{back}");
    assert!(back.contains("after=0.0"), "{back}");
    app.get(&back)
        .await
        .assert_contains("Contact: no contact is named &#39;Nobody Here&#39;.")
        .assert_contains("value=\"Nobody Here\" aria-invalid=\"true\"");
    assert_eq!(env.rows(run)[1].outcome.as_str(), "ambiguous");
}

#[core::prelude::v1::test]
fn the_report_downloads_as_csv() {
    let env = Env::new();
    let sync = env.standard_source();
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\n=1,=Evil,,\n2,Bob,bob@example.org,\n",
        false,
    );
    let mut out = Vec::new();
    report::report_csv(&mut env.conn(), run, &mut out).expect("report");
    let text = String::from_utf8(out).expect("utf-8");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "line",
            "external_id",
            "outcome",
            "record_id",
            "reason",
            "changes"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(&rows[0][1], "'=1");
    assert_eq!(&rows[0][2], "created");
    assert!(rows[0][5].contains("name: (blank) → =Evil"));
    assert_eq!(&rows[1][0], "3");
}

/// The console flow: an admin sets up a source, an editor uploads, previews, dry-runs, applies
/// the plan, reads the report and undoes it; viewers only read.
#[actix_web::test]
async fn console_flow_from_source_to_undo() {
    use syncdesk::auth::model::Role;
    let mut admin = common::spawn().await;
    admin.signed_in_as("admin@example.org", Role::Admin).await;
    admin
        .get("/sources")
        .await
        .assert_status(200)
        .assert_contains("No sources yet");
    admin
        .post(
            "/sources",
            &[
                ("name", "Practice"),
                ("kind", "contact"),
                ("id_column", "External Id"),
                ("mode", "full"),
            ],
        )
        .await;
    let source_id: i64 = syncdesk::schema::sources::table
        .select(syncdesk::schema::sources::id)
        .first(&mut admin.state.pool.get().expect("conn"))
        .expect("source");
    let page = admin.get(&format!("/sources/{source_id}")).await;
    page.assert_status(200)
        .assert_contains("Source Practice created");
    // Propose a mapping from a sample header, then save it as corrected.
    let sample = b"External Id;Name;E-mail;Phone;Notes\n1;Ann;ann@example.org;;x\n";
    let proposal = admin
        .upload(
            &format!("/sources/{source_id}/propose"),
            "sample.csv",
            sample,
            true,
        )
        .await;
    proposal
        .assert_status(200)
        .assert_contains("3 of 5 lines map to a field")
        .assert_contains("value=\"E-mail\"");
    admin
        .post(
            &format!("/sources/{source_id}/mapping"),
            &[
                ("m0.column", "Name"),
                ("m0.field", "name"),
                ("m0.to_record", "always"),
                ("m0.to_source", "never"),
                ("m1.column", "Phone"),
                ("m1.field", "phone"),
                ("m1.to_record", "always"),
                ("m1.to_source", "never"),
                ("m2.column", "E-mail"),
                ("m2.field", "email"),
                ("m2.to_record", "review"),
                ("m2.to_source", "always"),
                ("m3.column", "Notes"),
                ("m3.field", ""),
                ("m3.to_record", "always"),
                ("m3.to_source", "never"),
            ],
        )
        .await
        .assert_redirect(&format!("/sources/{source_id}"));
    admin
        .get(&format!("/sources/{source_id}"))
        .await
        .assert_contains("Mapping saved: 3 column(s).");
    admin
        .post(
            &format!("/sources/{source_id}/mapping"),
            &[
                ("m0.column", "Name"),
                ("m0.field", "nope"),
                ("m0.to_record", "always"),
                ("m0.to_source", "never"),
            ],
        )
        .await
        .assert_status(422)
        .assert_contains("there is no active contact field &#39;nope&#39;");

    let mut viewer = admin.fork();
    viewer
        .signed_in_as("viewer@example.org", Role::Viewer)
        .await;
    viewer
        .get("/sources")
        .await
        .assert_status(200)
        .assert_contains("Practice");
    viewer
        .get(&format!("/sources/{source_id}"))
        .await
        .assert_status(200);
    viewer.get("/sources/new").await.assert_status(403);
    viewer
        .upload(
            &format!("/sources/{source_id}/imports"),
            "a.csv",
            b"External Id\n1\n",
            true,
        )
        .await
        .assert_status(403);

    let mut editor = admin.fork();
    editor
        .signed_in_as("editor@example.org", Role::Editor)
        .await;
    editor
        .post(
            "/sources",
            &[("name", "X"), ("kind", "contact"), ("id_column", "Id")],
        )
        .await
        .assert_status(403);
    editor
        .post(&format!("/sources/{source_id}/disconnect"), &[])
        .await
        .assert_status(403);
    editor.get(&format!("/sources/{source_id}")).await;
    // One byte that is not UTF-8 in a UTF-8 file: the preview names its line and asks.
    let res = editor
        .upload(
            &format!("/sources/{source_id}/imports"),
            "zoe.csv",
            b"External Id;Name\n1;Zo\xC3\xA9\n2;Caf\xE9\n",
            true,
        )
        .await;
    let preview_url = res.location().expect("preview").to_string();
    editor
        .get(&preview_url)
        .await
        .assert_contains("Line 3 has a byte that is not UTF-8 (0xE9)")
        .assert_contains("Choose the encoding below");
    // A binary file is refused at the upload.
    editor
        .upload(
            &format!("/sources/{source_id}/imports"),
            "contacts.csv",
            b"PK\x03\x04\x14\0\0\0",
            true,
        )
        .await
        .assert_status(400)
        .assert_contains("This is not a text file");
    editor.get(&format!("/sources/{source_id}")).await;
    // A file without the id column: the preview says so and nothing can start.
    let res = editor
        .upload(
            &format!("/sources/{source_id}/imports"),
            "bad.csv",
            b"Id;Name\n1;Ann\n",
            true,
        )
        .await;
    let preview_url = res.location().expect("preview").to_string();
    editor
        .get(&preview_url)
        .await
        .assert_contains("has no column &#39;External Id&#39;");
    let sha = preview_url
        .split('/')
        .nth(4)
        .and_then(|s| s.split('?').next())
        .expect("sha")
        .to_string();
    editor
        .post(
            &format!("/sources/{source_id}/imports/{sha}/run"),
            &[
                ("encoding", "utf-8"),
                ("delimiter", "semicolon"),
                ("action", "apply"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Nothing was imported");

    // A good file: preview with the detected format, dry run, plan, report, undo.
    let file = "External Id;Name;E-mail;Phone\n1;Ann;ann@example.org;\n2;Bob;bob@example.org;+61 400 000 001\n".as_bytes();
    let res = editor
        .upload(
            &format!("/sources/{source_id}/imports"),
            "people.csv",
            file,
            true,
        )
        .await;
    let preview_url = res.location().expect("preview").to_string();
    let preview = editor.get(&preview_url).await;
    preview
        .assert_status(200)
        .assert_contains("Read as <strong>UTF-8</strong>, separated by <strong>semicolon (;)</strong> (detected)")
        .assert_contains("→ email (review)")
        .assert_contains("<td>bob@example.org</td>");
    let sha = preview_url
        .split('/')
        .nth(4)
        .and_then(|s| s.split('?').next())
        .expect("sha")
        .to_string();
    let start = format!("/sources/{source_id}/imports/{sha}/run");
    let queued = editor
        .post(
            &start,
            &[
                ("file_name", "people.csv"),
                ("encoding", "utf-8"),
                ("delimiter", "semicolon"),
                ("action", "dry_run"),
            ],
        )
        .await;
    let run_url = queued.location().expect("run page").to_string();
    // Still queued: a second import of the same source is refused with a clear message.
    editor
        .post(
            &start,
            &[
                ("file_name", "people.csv"),
                ("encoding", "utf-8"),
                ("delimiter", "semicolon"),
                ("action", "apply"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("An import is already running for source Practice");
    editor
        .get(&run_url)
        .await
        .assert_contains("Status: <strong>queued</strong>")
        .assert_contains("hx-trigger=\"every 1s\"");
    jobs::run_queued(&editor.state.pool, &editor.state.config.data_dir, au()).expect("run");
    let run_page = editor.get(&run_url).await;
    run_page
        .assert_contains("Status: <strong>done</strong>")
        .assert_contains("created: 2")
        .assert_contains("nothing was written")
        .assert_contains("Apply this plan");
    assert!(
        !run_page.body.contains("every 1s"),
        "no polling once finished"
    );
    let progress = editor
        .htmx(actix_web::http::Method::GET, &format!("{run_url}/progress"))
        .await;
    assert_eq!(progress.header("HX-Refresh"), Some("true"));
    let dry_id: i64 = run_url.trim_start_matches("/runs/").parse().expect("id");
    // "Apply this plan" checks the file against today's records first, writing nothing.
    let check = editor.post(&format!("/runs/{dry_id}/apply"), &[]).await;
    let check_url = check.location().expect("check run").to_string();
    let check_id: i64 = check_url.trim_start_matches("/runs/").parse().expect("id");
    // Meanwhile someone creates Bob by hand: the file's Bob now converts him.
    let mut conn = editor.state.pool.get().expect("conn");
    records::create(
        &mut conn,
        RecordKind::Contact,
        &RecordInput {
            values: [
                ("name".to_string(), "Bob".to_string()),
                ("email".to_string(), "bob@example.org".to_string()),
                ("phone".to_string(), "+61 400 000 001".to_string()),
            ]
            .into(),
            company_id: None,
        },
        &Actor::system("meanwhile"),
        au(),
    )
    .expect("Bob by hand");
    jobs::run_queued(&editor.state.pool, &editor.state.config.data_dir, au()).expect("check");
    let checked = editor.get(&check_url).await;
    checked
        .assert_contains("row(s) now decide differently from the dry run")
        .assert_contains("outcome-converted")
        .assert_contains(&format!("Apply the plan of dry run #{dry_id}"));
    assert_eq!(
        records_t::table
            .filter(records_t::name.eq("Bob"))
            .count()
            .get_result::<i64>(&mut conn)
            .expect("count"),
        1,
        "the check wrote nothing"
    );
    let applied = editor
        .post(
            &format!("/runs/{dry_id}/apply"),
            &[("checked_by", &check_id.to_string())],
        )
        .await;
    let applied_url = applied.location().expect("applied run").to_string();
    jobs::run_queued(&editor.state.pool, &editor.state.config.data_dir, au()).expect("run");
    let report_page = editor.get(&format!("{applied_url}?outcome=created")).await;
    report_page
        .assert_contains("data-outcome=\"created\"")
        .assert_contains("Undo this run");
    let csv = editor.get(&format!("{applied_url}/report.csv")).await;
    csv.assert_status(200)
        .assert_contains("line,external_id,outcome,record_id,reason,changes");
    assert_eq!(csv.body.lines().count(), 3);
    editor
        .get("/contacts")
        .await
        .assert_contains(">Bob<")
        .assert_contains("Practice");
    viewer
        .post(&format!("{applied_url}/undo"), &[])
        .await
        .assert_status(403);
    editor.post(&format!("{applied_url}/undo"), &[]).await;
    // The undo runs in the background: the worker's turn.
    jobs::run_queued(&editor.state.pool, &editor.state.config.data_dir, au()).expect("undo");
    editor
        .get(&applied_url)
        .await
        .assert_contains("Run undone")
        .assert_contains("<strong>undone</strong>");
    let contacts = editor.get("/contacts").await;
    assert!(
        !contacts.body.contains(">Ann<"),
        "created records are archived"
    );
    assert!(
        contacts.body.contains(">Bob<"),
        "the converted one is manual again"
    );
}

/// A server that stops mid-import leaves its run "running"; the worker puts it back in the
/// queue and the next claim resumes after the last committed batch: every row once.
#[core::prelude::v1::test]
fn an_interrupted_import_completes_cleanly() {
    use syncdesk::schema::import_runs;
    let env = Env::new();
    let sync = env.standard_source();
    let mut file = String::from("External Id,Name,Email,Phone\n");
    for i in 0..600 {
        file.push_str(&format!("{i},Person {i},p{i}@example.org,\n"));
    }
    let run = env.import(&sync, &file, false);
    // As if the process died after the first batch: later report rows were never committed.
    let mut conn = env.conn();
    diesel::delete(
        import_rows::table
            .filter(import_rows::run_id.eq(run))
            .filter(import_rows::line.gt(251)),
    )
    .execute(&mut conn)
    .expect("cut");
    diesel::update(import_runs::table.find(run))
        .set((
            import_runs::status.eq("running"),
            import_runs::heartbeat_at.eq(Some(syncdesk::db::now() - chrono::Duration::hours(1))),
        ))
        .execute(&mut conn)
        .expect("stale");
    assert_eq!(jobs::recover_stale(&mut conn).expect("recover"), 1);
    drop(conn);
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("resume");
    let finished = env.run(run);
    assert_eq!(
        (
            finished.status.as_str(),
            finished.rows_total,
            finished.rows_done
        ),
        ("done", 600, 600)
    );
    let rows = env.rows(run);
    assert_eq!(rows.len(), 600);
    let mut lines: Vec<i64> = rows.iter().map(|r| r.line).collect();
    lines.dedup();
    assert_eq!(lines.len(), 600, "every line reported once");
    assert_eq!(env.record_count(), 600, "no record twice");
}

#[core::prelude::v1::test]
fn command_line_sources_import_and_export() {
    let db = common::TestDb::new();
    let config = db.config();
    let dir = db.dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args(args)
            .env("SYNCDESK_DATA_DIR", &config.data_dir)
            .env("DATABASE_URL", &config.database_url)
            .env("SYNCDESK_DEFAULT_COUNTRY", "AU")
            .env_remove("SYNCDESK_CONFIG")
            .output()
            .expect("run syncdesk");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "source",
        "add",
        "Practice",
        "--kind",
        "contact",
        "--id-column",
        "External Id",
        "--mode",
        "full",
        "--map",
        "Name=name",
        "--map",
        "Phone=phone:fill_blanks",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Created source Practice") && out.contains("2 mapped column(s)"),
        "{out}"
    );
    let (ok, _, err) = run(&[
        "source",
        "add",
        "Bad",
        "--kind",
        "contact",
        "--id-column",
        "Id",
        "--map",
        "Name=nope",
    ]);
    assert!(
        !ok && err.contains("no active contact field 'nope'"),
        "{err}"
    );
    let (_, out, _) = run(&["source", "list"]);
    assert!(
        out.contains("Practice (contact, connected, full mode")
            && out.contains("Phone -> phone (to record: fill_blanks"),
        "{out}"
    );

    let file = dir.join("people.csv");
    std::fs::write(
        &file,
        "External Id;Name;Phone\r\n1;Ann;0400 000 001\r\n2;Bob;\r\n3;;\r\n",
    )
    .expect("file");
    let report = dir.join("report.csv");
    let (ok, out, err) = run(&[
        "import",
        "Practice",
        file.to_str().expect("path"),
        "--dry-run",
        "--report",
        report.to_str().expect("path"),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("(dry run, nothing written): 3 rows")
            && out.contains("created")
            && out.contains("error"),
        "{out}"
    );
    assert!(err.contains("UTF-8, semicolon (;)"), "{err}");
    let text = std::fs::read_to_string(&report).expect("report");
    assert!(
        text.starts_with("line,external_id,outcome,record_id,reason,changes"),
        "{text}"
    );
    assert!(text.contains("a new record needs a name"), "{text}");
    let (_, out, _) = run(&["records", "export", "--kind", "contact", "--format", "json"]);
    assert_eq!(out.trim(), "[\n]", "the dry run wrote nothing");

    let (ok, out, err) = run(&["import", "Practice", file.to_str().expect("path")]);
    assert!(ok, "{err}");
    assert!(out.contains("created                2"), "{out}");
    let (_, out, _) = run(&["records", "export", "--kind", "contact", "--format", "json"]);
    let records: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ann = &records[0];
    assert_eq!(ann["fields"]["phone"], "+61400000001");
    assert_eq!(ann["owner"], "Practice");
    assert_eq!(ann["links"][0]["external_id"], "1");
    let (_, out, _) = run(&["records", "export", "--kind", "contact"]);
    assert!(
        out.starts_with(
            "id,name,email,phone,company_id,owner,forced_manual,missing_from_source,archived,links"
        ),
        "{out}"
    );
    assert!(out.contains("Practice:1"), "{out}");
    let (ok, _, err) = run(&["import", "Nope", file.to_str().expect("path")]);
    assert!(!ok && err.contains("no source named 'Nope'"), "{err}");
}

/// Hostile bytes: a NUL in an id fails that row alone, a NUL in a value skips that field, and
/// a binary file renamed `.csv` fails its run (with an error that can be saved, NUL and all)
/// without holding the source: the next import runs.
#[core::prelude::v1::test]
fn nul_bytes_fail_a_row_or_a_run_never_the_source() {
    let env = Env::new();
    let sync = env.standard_source();
    let run = env
        .enqueue(
            &sync,
            b"External Id,Name,Email,Phone\n\
              a\0b,Ann,ann@example.org,\n\
              2,Bob,bob\0@example.org,\n\
              3,Cy,cy@example.org,\n",
            false,
            None,
        )
        .expect("enqueue");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    assert_eq!(env.run(run).status.as_str(), "done");
    let rows = env.rows(run);
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(outcomes[0].0, "error", "{outcomes:?}");
    assert!(
        outcomes[0]
            .1
            .contains("Line 2: the id 'a\\u{0}b' holds a control character"),
        "{outcomes:?}"
    );
    assert_eq!(rows[0].external_id, "a\\u{0}b");
    assert_eq!(outcomes[1].0, "created", "{outcomes:?}");
    assert!(outcomes[1].1.contains("\\u{0}"), "{outcomes:?}");
    assert_eq!(outcomes[2].0, "created");

    // Over-long ids are refused with their length.
    let long_id = "x".repeat(300);
    let run = env.import(
        &sync,
        &format!("External Id,Name,Email,Phone\n{long_id},Dee,,\n"),
        false,
    );
    let (outcome, _, reason) = outcome_of(&env.rows(run), &long_id);
    assert_eq!(outcome, "error");
    assert!(
        reason.contains("is 300 characters long; ids have at most 255"),
        "{reason}"
    );

    // A zip renamed .csv: its "header" has no id column; the run fails and says so.
    let mut zip = b"PK\x03\x04\x14\0\0\0\x08\0".to_vec();
    zip.extend_from_slice(&[0u8, 1, 2, 3, 0xff, 0xfe, b'\n', 0, 0, b',', 7]);
    let run = env.enqueue(&sync, &zip, false, None).expect("enqueue");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    let failed = env.run(run);
    assert_eq!(failed.status.as_str(), "failed");
    assert!(
        failed
            .error
            .unwrap_or_default()
            .contains("no column 'External Id'"),
        "the failure is saved"
    );
    let next = env.import(&sync, "External Id,Name,Email,Phone\n4,Eve,,\n", false);
    assert_eq!(
        env.run(next).status.as_str(),
        "done",
        "the source is not held"
    );
}

/// A full-mode file flags nothing when it has no valid row or mostly errors, and flags more
/// than a tenth of the source's records only when a person confirms; the counts and the run's
/// notice say what happened.
#[core::prelude::v1::test]
fn full_mode_flags_only_from_files_that_list_the_source() {
    let env = Env::new();
    let full = env.standard_source();
    let all: String = (1..=20).map(|i| format!("{i},Person {i},,\n")).collect();
    let header = "External Id,Name,Email,Phone\n";
    env.import(&full, &format!("{header}{all}"), false);
    let flagged = |env: &Env| -> i64 {
        records_t::table
            .filter(records_t::missing_from_source.eq(true))
            .count()
            .get_result(&mut env.conn())
            .expect("count")
    };

    for (file, says) in [
        (header.to_string(), "the file has no valid row"),
        (
            format!("{header}1,Ragged\n2\n"),
            "the file has no valid row",
        ),
        (
            format!(
                "{header}{}3,Ragged\n4,Ragged\n",
                (5..=20)
                    .map(|i| format!("{i},Person {i},,\n"))
                    .collect::<String>()
            ),
            "2 of the file's 18 rows have errors (more than 10 %)",
        ),
    ] {
        let run = env.run(env.import(&full, &file, false));
        assert_eq!(run.status.as_str(), "done");
        let notice = run.notice.clone().unwrap_or_default();
        assert!(notice.contains(says), "{notice}");
        assert_eq!(run.count("missing_from_source"), 0);
        assert_eq!(flagged(&env), 0);
    }

    // 18 of 20 present: 2 missing (10 %) are flagged at once.
    let most: String = (1..=18).map(|i| format!("{i},Person {i},,\n")).collect();
    let run = env.run(env.import(&full, &format!("{header}{most}"), false));
    assert_eq!(run.count("missing_from_source"), 2);
    assert_eq!(run.notice, None);
    assert_eq!(flagged(&env), 2);

    // 5 of 20 present: 15 missing (75 %) wait for a confirmation.
    let few: String = (1..=5).map(|i| format!("{i},Person {i},,\n")).collect();
    let file = format!("{header}{few}");
    let run = env.run(env.import(&full, &file, false));
    assert_eq!(run.count("missing_from_source"), 0);
    assert_eq!(run.count(engine::MISSING_NOT_FLAGGED), 15);
    let notice = run.notice.clone().unwrap_or_default();
    assert!(
        notice.contains("15 of the source's 20 records (75 %) are not in this file"),
        "{notice}"
    );
    assert_eq!(flagged(&env), 2, "the earlier flags stay; no new ones");
    let run = env.run(env.import_flagging(&full, &file));
    assert_eq!(run.count("missing_from_source"), 15);
    assert_eq!(flagged(&env), 15);
}

/// Runs that stop: a refusal names the run and process holding the source; a silent run of
/// `serve` goes back to the queue, one of the command line waits for `resume` or `cancel`; a
/// cancelled run stops at its next chunk and stays cancelled.
#[core::prelude::v1::test]
fn stopped_runs_are_named_resumed_and_cancelled() {
    let env = Env::new();
    let sync = env.standard_source();
    let csv = "External Id,Name,Email,Phone\n1,Ann,,\n2,Bob,,\n";
    let file = env.state.config.data_dir.join("people.csv");
    std::fs::write(&file, csv).expect("file");
    let file = file.to_string_lossy().into_owned();

    // A run of the command line in this (live) process holds the source.
    let sha = jobs::store_file(&env.state.config.data_dir, csv.as_bytes(), 1 << 20).expect("store");
    let held = jobs::enqueue_claimed(
        &mut env.conn(),
        &NewRun {
            source: &sync,
            file_name: "people.csv",
            sha256: &sha,
            format: syncdesk::sync::csvfile::detect(csv.as_bytes()),
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: None,
            user_label: "test",
        },
    )
    .expect("claimed run");
    let (ok, out) = env.cli(&["import", "Contact Sync", &file]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "already running for source Contact Sync: run #{held} is running in cli {}@",
            std::process::id()
        )) && out.contains("last progress"),
        "{out}"
    );
    let err = env.enqueue(&sync, csv.as_bytes(), false, None).unwrap_err();
    assert!(
        err.contains(&format!("run #{held} is running in cli")),
        "{err}"
    );

    // Its process gone and silent: a worker leaves it alone; the message says what to do.
    claims::set_claimant(&mut env.conn(), held, Some("cli 4194999@elsewhere")).expect("claimant");
    diesel::update(syncdesk::schema::import_runs::table.find(held))
        .set(
            syncdesk::schema::import_runs::heartbeat_at
                .eq(Some(syncdesk::db::now() - chrono::Duration::minutes(2))),
        )
        .execute(&mut env.conn())
        .expect("silence");
    assert_eq!(jobs::recover_stale(&mut env.conn()).expect("recover"), 0);
    let (ok, out) = env.cli(&["import", "Contact Sync", &file]);
    assert!(!ok);
    assert!(
        out.contains(&format!("it looks interrupted: `syncdesk resume {held}` carries it on, `syncdesk cancel {held}` ends it")),
        "{out}"
    );
    let (ok, out) = env.cli(&["resume", &held.to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("Run #{held}: 2 rows.")), "{out}");
    assert_eq!(env.run(held).status.as_str(), "done");

    // A silent run of `serve` goes back to the queue and is resumed by the next worker.
    let run = env
        .enqueue(&sync, csv.as_bytes(), false, None)
        .expect("enqueue");
    assert_eq!(jobs::claim_next(&mut env.conn()).expect("claim"), Some(run));
    claims::set_claimant(&mut env.conn(), run, Some("serve 1@another-host")).expect("claimant");
    assert_eq!(
        jobs::recover_stale(&mut env.conn()).expect("recover"),
        0,
        "not silent yet"
    );
    diesel::update(syncdesk::schema::import_runs::table.find(run))
        .set(
            syncdesk::schema::import_runs::heartbeat_at
                .eq(Some(syncdesk::db::now() - chrono::Duration::seconds(31))),
        )
        .execute(&mut env.conn())
        .expect("silence");
    assert_eq!(jobs::recover_stale(&mut env.conn()).expect("recover"), 1);
    assert_eq!(env.run(run).status.as_str(), "queued");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    assert_eq!(env.run(run).status.as_str(), "done");

    // Cancelled while it runs: its next chunk rolls back, and it stays cancelled.
    let run = env
        .enqueue(
            &sync,
            b"External Id,Name,Email,Phone\n3,Cy,,\n",
            false,
            None,
        )
        .expect("enqueue");
    assert_eq!(jobs::claim_next(&mut env.conn()).expect("claim"), Some(run));
    jobs::cancel(&mut env.conn(), run, "Ops").expect("cancel");
    let stopped = jobs::process(
        &env.state.pool,
        run,
        &env.state.config.data_dir,
        au(),
        &mut |_, _| {},
    );
    assert!(
        matches!(stopped, Err(engine::ImportError::Stopped)),
        "{stopped:?}"
    );
    let cancelled = env.run(run);
    assert_eq!(cancelled.status.as_str(), "cancelled");
    assert!(cancelled
        .error
        .unwrap_or_default()
        .contains("Cancelled by Ops"));
    assert!(env.rows(run).is_empty());
    assert_eq!(env.record_count(), 2);
    let (ok, out) = env.cli(&["cancel", &run.to_string()]);
    assert!(!ok);
    assert!(out.contains("is not queued or running"), "{out}");
}

/// A UTF-8 file with one byte that is not UTF-8 is never read as Windows-1252 silently: the
/// command line refuses it with the line unless told the encoding; read as UTF-8, that row
/// alone is refused.
#[core::prelude::v1::test]
fn one_stray_byte_is_never_silent_mojibake() {
    let env = Env::new();
    env.standard_source();
    let file = env.state.config.data_dir.join("zoe.csv");
    std::fs::write(
        &file,
        b"External Id,Name,Email,Phone\n1,Zo\xC3\xA9,,\n2,Caf\xE9 Owner,,\n3,L\xC3\xA9a,,\n",
    )
    .expect("file");
    let file = file.to_string_lossy().into_owned();
    let (ok, out) = env.cli(&["import", "Contact Sync", &file]);
    assert!(!ok);
    assert!(
        out.contains("Line 3 has a byte that is not UTF-8 (0xE9)")
            && out.contains("give --encoding utf-8 or --encoding windows-1252"),
        "{out}"
    );
    assert_eq!(env.record_count(), 0);
    let (ok, out) = env.cli(&["import", "Contact Sync", &file, "--encoding", "utf-8"]);
    assert!(ok, "{out}");
    let names: Vec<String> = records_t::table
        .order(records_t::id)
        .select(records_t::name)
        .load(&mut env.conn())
        .expect("names");
    assert_eq!(names, ["Zoé", "Léa"]);
    let run: i64 = syncdesk::schema::import_runs::table
        .select(diesel::dsl::max(syncdesk::schema::import_runs::id))
        .first::<Option<i64>>(&mut env.conn())
        .expect("run")
        .expect("a run");
    let (outcome, _, reason) = outcome_of(&env.rows(run), "2");
    assert_eq!(outcome, "error");
    assert!(
        reason.contains("Line 3, column 'Name': a byte that is not UTF-8"),
        "{reason}"
    );
}

/// A report line whose changes cannot be read stops the undo with its line named; it never
/// reads as "nothing to restore".
#[core::prelude::v1::test]
fn an_unreadable_report_stops_the_undo() {
    let env = Env::new();
    let sync = env.standard_source();
    env.import(
        &sync,
        "External Id,Name,Email,Phone\n1,Ann,ann@example.org,\n",
        false,
    );
    let run = env.import(
        &sync,
        "External Id,Name,Email,Phone\n1,Ann,ann@new.example.org,\n",
        false,
    );
    diesel::update(import_rows::table.filter(import_rows::run_id.eq(run)))
        .set(import_rows::changes.eq("[{broken"))
        .execute(&mut env.conn())
        .expect("corrupt");
    let err = undo::undo(&mut env.conn(), run, &Actor::system("test")).unwrap_err();
    assert!(
        err.to_string().contains("Line 2 of run #")
            && err.to_string().contains("unreadable changes"),
        "{err}"
    );
    let emails: Vec<String> = records_t::table
        .select(records_t::email)
        .load(&mut env.conn())
        .expect("emails");
    assert_eq!(emails, ["ann@new.example.org"], "nothing was half-undone");
}

/// A Google Contacts export: UTF-8 with a BOM, accents, a multi-line note, empty cells.
const GOOGLE_EXPORT: &str = "\u{feff}Name,Given Name,Additional Name,Family Name,Nickname,Notes,E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Type,Phone 1 - Value,Organization 1 - Name,Organization 1 - Title\r\n\
Zoé Lefèvre,Zoé,,Lefèvre,,\"Met at the fair.\r\nCall back in May\",* Home,zoe.lefevre@example.fr,Mobile,06 12 34 56 78,Atelier Lumière,Owner\r\n\
bartholomew   QUILL,bartholomew,,QUILL,,,* Work,Bart@Quill.example,,,,\r\n\
Ann Lee,Ann,,Lee,,,,ann@lee.example,Work,+44 20 7946 0101,,\r\n\
No Mail,No,,Mail,,,,,,,,\r\n";

fn contact_source(env: &Env, name: &str, match_by: &[&str], country: &str) -> Source {
    sources::create(
        &mut env.conn(),
        &SourceInput {
            match_by: match_by.iter().map(|k| k.to_string()).collect(),
            country: country.into(),
            ..common::contacts_by(name, "")
        },
    )
    .expect("source")
}

/// Maps what the proposal for `csv` maps, and returns (column, field) of those lines.
fn map_as_proposed(env: &Env, source: &Source, csv: &[u8]) -> Vec<(String, String)> {
    let format = syncdesk::sync::csvfile::detect(csv);
    let path = env.state.config.data_dir.join("sample.csv");
    std::fs::write(&path, csv).expect("sample");
    let (headers, rows) = syncdesk::sync::csvfile::preview(&path, format, 20).expect("preview");
    let mut conn = env.conn();
    let defs =
        syncdesk::fields::service::list(&mut conn, RecordKind::Contact, false).expect("defs");
    let proposed = syncdesk::sources::propose::propose(&headers, &rows, "", &defs, au());
    let lines: Vec<MappingInput> = proposed
        .iter()
        .filter_map(|l| {
            Some(MappingInput {
                column_name: l.column.clone(),
                field_key: l.field_key.clone()?,
                to_record: Rule::Always,
                to_source: Rule::Never,
                blanks_clear: false,
            })
        })
        .collect();
    sources::set_mapping(&mut conn, source.id, &lines).expect("mapping");
    // Every unmapped column says why.
    assert!(proposed.iter().all(|l| !l.why.is_empty()), "{proposed:?}");
    lines
        .into_iter()
        .map(|l| (l.column_name, l.field_key))
        .collect()
}

/// A file without an id column, matched by email: the proposal maps Google's headers, the
/// email both keys the row and fills the field, phones in the source's country are read as
/// such, names lose their inner runs of spaces, and a second import changes nothing.
#[core::prelude::v1::test]
fn an_address_book_export_is_matched_by_email_with_a_proposed_mapping() {
    let env = Env::new();
    let google = contact_source(&env, "Google", &["email"], "FR");
    assert_eq!(google.key_description(), "matched by email");
    let mapped = map_as_proposed(&env, &google, GOOGLE_EXPORT.as_bytes());
    assert_eq!(
        mapped,
        [
            ("Name".to_string(), "name".to_string()),
            ("E-mail 1 - Value".into(), "email".into()),
            ("Phone 1 - Value".into(), "phone".into()),
            ("Organization 1 - Name".into(), "company".into()),
        ]
    );

    let run = env.import(&google, GOOGLE_EXPORT, false);
    let rows = env.rows(run);
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.outcome.as_str(), r.external_id.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("created", "zoe.lefevre@example.fr"),
            ("created", "bart@quill.example"),
            ("created", "ann@lee.example"),
            ("error", ""),
        ],
        "{rows:?}"
    );
    assert!(
        rows[3]
            .reason
            .contains("no valid email to match the row by (this source matches rows by email)"),
        "{}",
        rows[3].reason
    );
    let zoe = rows[0].record_id.expect("record");
    let (owner, _, links, email, phone, _) = env.state_of(zoe);
    assert_eq!(owner, "Google");
    assert_eq!(links, ["Google:zoe.lefevre@example.fr"]);
    assert_eq!(email, "zoe.lefevre@example.fr");
    assert_eq!(phone, "+33612345678", "a French number in a French source");
    let company = records::find(&mut env.conn(), zoe)
        .expect("find")
        .expect("record")
        .company_id
        .expect("Zoé's organisation became her company");
    let company = records::find(&mut env.conn(), company)
        .expect("find")
        .expect("company");
    assert_eq!(
        (company.kind.as_str(), company.name.as_str()),
        ("company", "Atelier Lumière")
    );
    let bart = records::find(&mut env.conn(), rows[1].record_id.expect("record"))
        .expect("find")
        .expect("record");
    assert_eq!(bart.name, "bartholomew QUILL");

    let again = env.import(&google, GOOGLE_EXPORT, false);
    let outcomes: Vec<&str> = env
        .rows(again)
        .iter()
        .map(|r| r.outcome.as_str())
        .collect::<Vec<_>>();
    assert_eq!(outcomes, ["unchanged", "unchanged", "unchanged", "error"]);
    assert_eq!(env.record_count(), 4, "three contacts and one company");
}

/// An Outlook export in Windows-1252 has no full-name column: the proposal builds the name
/// from first, middle and last names, and its business phone is preferred.
#[core::prelude::v1::test]
fn an_outlook_export_gets_its_name_built_from_its_parts() {
    let env = Env::new();
    let outlook = contact_source(&env, "Outlook", &["email"], "FR");
    let text =
        "First Name,Middle Name,Last Name,Company,E-mail Address,Business Phone,Mobile Phone\r\n\
Zoé,,Lefèvre,Atelier Lumière,zoe.lefevre@example.fr,01 23 45 67 89,06 12 34 56 78\r\n\
Jean,Luc,Picard,,jl@enterprise.example,,\r\n";
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    let mapped = map_as_proposed(&env, &outlook, &cp1252);
    assert_eq!(
        mapped,
        [
            (
                "{First Name} {Middle Name} {Last Name}".to_string(),
                "name".to_string()
            ),
            ("Company".into(), "company".into()),
            ("E-mail Address".into(), "email".into()),
            ("Business Phone".into(), "phone".into()),
        ]
    );
    let sha = jobs::store_file(&env.state.config.data_dir, &cp1252[..], 1 << 20).expect("store");
    jobs::enqueue(
        &mut env.conn(),
        &NewRun {
            source: &outlook,
            file_name: "outlook.csv",
            sha256: &sha,
            format: syncdesk::sync::csvfile::detect(&cp1252),
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: None,
            user_label: "test",
        },
    )
    .expect("enqueue");
    jobs::run_queued(&env.state.pool, &env.state.config.data_dir, au()).expect("run");
    let names: Vec<String> = records_t::table
        .order(records_t::id.asc())
        .select(records_t::name)
        .load(&mut env.conn())
        .expect("names");
    assert_eq!(names, ["Atelier Lumière", "Zoé Lefèvre", "Jean Luc Picard"]);
}

/// The command line proposes the mapping from a file, column by column, and uses it.
#[core::prelude::v1::test]
fn the_command_line_proposes_a_mapping_from_a_file() {
    let env = Env::new();
    let file = env.state.config.data_dir.join("google.csv");
    std::fs::write(&file, GOOGLE_EXPORT).expect("file");
    let (ok, out) = env.cli(&[
        "source",
        "add",
        "Google",
        "--kind",
        "contact",
        "--match-by",
        "email",
        "--country",
        "FR",
        "--propose-from",
        &file.to_string_lossy(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("E-mail 1 - Value"), "{out}");
    assert!(out.contains("matched by email"), "{out}");
    assert!(out.contains("with 4 mapped column(s)"), "{out}");
    let (ok, out) = env.cli(&[
        "source",
        "add",
        "Bad",
        "--kind",
        "contact",
        "--match-by",
        "shoe size",
    ]);
    assert!(!ok);
    assert!(out.contains("'shoe size' is not a contact field"), "{out}");
}

/// Unmatched columns become custom fields in one step: the proposal offers each with a key
/// from its header and a type from its values; the admin confirms it in the mapping form.
#[actix_web::test]
async fn a_column_becomes_a_custom_field_from_the_mapping_page() {
    use syncdesk::auth::model::Role;
    let mut admin = common::spawn().await;
    admin.signed_in_as("admin@example.org", Role::Admin).await;
    let source = sources::create(
        &mut admin.state.pool.get().expect("conn"),
        &common::contacts_by("Client file", "Client Id"),
    )
    .expect("source");
    let sample = b"Client Id,Name,tag1,Tier\n1,Ann,800,gold\n2,Bob,1200.5,silver\n3,Cy,15000,gold\n4,Di,,gold\n";
    admin
        .upload(
            &format!("/sources/{}/propose", source.id),
            "clients.csv",
            sample,
            true,
        )
        .await
        .assert_status(200)
        .assert_contains("New field: tag1 (number)")
        .assert_contains("New field: Tier (list)")
        .assert_contains("the id column: it links each row to its record");
    let line = |n: usize, column: &str, field: &str| {
        vec![
            (format!("m{n}.column"), column.to_string()),
            (format!("m{n}.field"), field.to_string()),
            (format!("m{n}.to_record"), "always".to_string()),
            (format!("m{n}.to_source"), "never".to_string()),
        ]
    };
    let mut form = line(0, "Name", "name");
    form.extend(line(1, "tag1", "+"));
    form.extend([
        ("m1.new_key".to_string(), "tag1".to_string()),
        ("m1.new_label".to_string(), "Tag 1".to_string()),
        ("m1.new_type".to_string(), "number".to_string()),
    ]);
    // A bad key comes back with what was typed, and nothing is created.
    let mut bad = form.clone();
    for (name, value) in bad.iter_mut() {
        if name == "m1.new_key" {
            *value = "Tag One".into();
        }
    }
    fn form_ref(f: &[(String, String)]) -> Vec<(&str, &str)> {
        f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    admin
        .post(&format!("/sources/{}/mapping", source.id), &form_ref(&bad))
        .await
        .assert_status(422)
        .assert_contains("must start with a lowercase letter")
        .assert_contains("value=\"Tag One\"");
    admin
        .post(&format!("/sources/{}/mapping", source.id), &form_ref(&form))
        .await
        .assert_status(303);
    let mut conn = admin.state.pool.get().expect("conn");
    let defs =
        syncdesk::fields::service::list(&mut conn, RecordKind::Contact, false).expect("defs");
    let tag1 = defs.iter().find(|d| d.key == "tag1").expect("tag1 created");
    assert_eq!(
        (tag1.label.as_str(), tag1.field_type.as_str()),
        ("Tag 1", "number")
    );
    let mapping = sources::mapping(&mut conn, source.id).expect("mapping");
    assert_eq!(mapping.len(), 2);

    // The command line does the same with --map 'column=+key:type'.
    let (ok, out) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args([
                "source",
                "add",
                "Accounting",
                "--kind",
                "company",
                "--id-column",
                "Code",
                "--map",
                "Name=name",
                "--map",
                "max_credit=+max_credit:number",
            ])
            .env("SYNCDESK_DATA_DIR", &admin.state.config.data_dir)
            .env("DATABASE_URL", &admin.state.config.database_url)
            .env_remove("SYNCDESK_CONFIG")
            .output()
            .expect("run syncdesk");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    assert!(ok, "{out}");
    let company_defs =
        syncdesk::fields::service::list(&mut conn, RecordKind::Company, false).expect("defs");
    assert!(company_defs
        .iter()
        .any(|d| d.key == "max_credit" && d.field_type == "number"));
}

/// A contact row's company column links the contact to the company of that name (case and
/// spaces aside), creates a missing one once, and holds a row whose name several share.
#[core::prelude::v1::test]
fn contacts_link_to_their_company_by_name() {
    let env = Env::new();
    let sync = env.source(
        "CRM",
        false,
        &[
            ("Name", "name", Rule::Always),
            ("Company", "company", Rule::Always),
        ],
    );
    let company = |name: &str| {
        records::create(
            &mut env.conn(),
            RecordKind::Company,
            &RecordInput {
                values: [("name".to_string(), name.to_string())].into(),
                company_id: None,
            },
            &Actor::system("setup"),
            au(),
        )
        .expect("company")
        .id
    };
    let acme = company("Acme Ltd");
    let twins = [company("Twin"), company("Twin")];
    let file =
        "External Id,Name,Company\n1,Ann,acme  LTD\n2,Bob,Newco\n3,Cy,newco\n4,Di,Twin\n5,Ed,\n";
    let run = env.import(&sync, file, false);
    let rows = env.rows(run);
    let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["created", "created", "created", "ambiguous", "created"]
    );
    assert!(
        rows[3].reason.contains(&format!(
            "several companies are named 'Twin' (#{}, #{})",
            twins[0], twins[1]
        )),
        "{}",
        rows[3].reason
    );
    let company_of = |row: &ImportRow| {
        records::find(&mut env.conn(), row.record_id.expect("record"))
            .expect("find")
            .expect("contact")
            .company_id
    };
    assert_eq!(company_of(&rows[0]), Some(acme));
    let newco = company_of(&rows[1]).expect("Newco");
    assert_eq!(company_of(&rows[2]), Some(newco), "one Newco for both rows");
    assert_eq!(company_of(&rows[4]), None);
    assert!(
        rows[1]
            .changes_text()
            .contains(&format!("company: (blank) → #{newco} Newco")),
        "{}",
        rows[1].changes_text()
    );

    // Again: nothing changes and no second Newco appears.
    let count = env.record_count();
    let again = env.import(&sync, file, false);
    let outcomes: Vec<String> = env
        .rows(again)
        .iter()
        .map(|r| r.outcome.as_str().to_string())
        .collect();
    assert_eq!(
        outcomes,
        [
            "unchanged",
            "unchanged",
            "unchanged",
            "ambiguous",
            "unchanged"
        ]
    );
    assert_eq!(env.record_count(), count);

    // A manual contact the CRM links to Acme: undo takes the company back, and a row whose
    // rule leaves companies alone creates none.
    let dee = env.contact("Dee Lane", "", "");
    let linked = env.import(
        &sync,
        "External Id,Name,Company\n6,Dee Lane,Acme Ltd\n",
        false,
    );
    assert_eq!(env.rows(linked)[0].outcome.as_str(), "converted");
    let company_of_dee = |env: &Env| {
        records::find(&mut env.conn(), dee)
            .expect("find")
            .expect("Dee")
            .company_id
    };
    assert_eq!(company_of_dee(&env), Some(acme));
    undo::undo(&mut env.conn(), linked, &Actor::system("tester")).expect("undo");
    assert_eq!(company_of_dee(&env), None, "undo restores the company");
    let never = env.source(
        "Sheet",
        false,
        &[
            ("Name", "name", Rule::Always),
            ("Company", "company", Rule::Never),
        ],
    );
    let before = env.record_count();
    env.import(
        &never,
        "External Id,Name,Company\nS1,Eve Moss,Brand New Co\n",
        false,
    );
    assert_eq!(
        env.record_count(),
        before + 1,
        "the contact, and no company"
    );
}

/// A watched folder: a file still being written waits, a finished one is imported with the
/// source's settings and filed in done/ with its report; after a restart a file whose run
/// already ended is filed, not imported again; a file that is not text goes to failed/.
#[core::prelude::v1::test]
fn files_dropped_in_a_watched_folder_import_by_themselves() {
    use std::time::Duration;
    use syncdesk::sync::watch::{Step, Watcher};
    let env = Env::new();
    let drop = env.state.config.data_dir.join("drop");
    std::fs::create_dir_all(&drop).expect("folder");
    let source = sources::create(
        &mut env.conn(),
        &SourceInput {
            watch_dir: drop.to_string_lossy().into_owned(),
            activities: None,
            ..common::contacts_by("Dropbox", "External Id")
        },
    )
    .expect("source");
    sources::set_mapping(
        &mut env.conn(),
        source.id,
        &[MappingInput {
            column_name: "Name".into(),
            field_key: "name".into(),
            to_record: Rule::Always,
            to_source: Rule::Never,
            blanks_clear: false,
        }],
    )
    .expect("mapping");
    let data_dir = env.state.config.data_dir.clone();
    let scan = |watcher: &mut Watcher| {
        watcher
            .scan(&mut env.conn(), &data_dir, 1 << 20, Duration::ZERO)
            .expect("scan")
    };
    let work = || jobs::run_queued(&env.state.pool, &data_dir, au()).expect("run");

    // Written in two goes: each change waits for one more look.
    let file = drop.join("monday.csv");
    std::fs::write(&file, "External Id,Name\n1,Ann\n").expect("write");
    std::fs::write(drop.join(".monday.csv.tmp"), "partial").expect("tmp");
    let mut watcher = Watcher::default();
    assert_eq!(scan(&mut watcher), [Step::Waiting(file.clone())]);
    std::fs::write(&file, "External Id,Name\n1,Ann\n2,Bob\n").expect("append");
    assert_eq!(scan(&mut watcher), [Step::Waiting(file.clone())]);
    let Step::Queued { run_id, .. } = scan(&mut watcher).remove(0) else {
        panic!("the stable file is queued");
    };
    assert_eq!(env.run(run_id).started_by_label, "automatic import");
    assert_eq!(
        scan(&mut watcher),
        [Step::Waiting(file.clone())],
        "its run is queued"
    );
    work();
    let done = drop.join("done").join(format!("{run_id}-monday.csv"));
    assert_eq!(
        scan(&mut watcher),
        [Step::Moved {
            from: file.clone(),
            to: done.clone()
        }]
    );
    let report = std::fs::read_to_string(
        drop.join("done")
            .join(format!("{run_id}-monday.csv.report.csv")),
    )
    .expect("report beside the file");
    assert_eq!(report.matches(",created,").count(), 2, "{report}");
    assert_eq!(env.record_count(), 2);

    // A restart between the run and the move: the file is filed, not imported twice.
    let tuesday = drop.join("tuesday.csv");
    std::fs::write(&tuesday, "External Id,Name\n3,Cy\n").expect("write");
    let mut watcher = Watcher::default();
    scan(&mut watcher);
    let Step::Queued { run_id, .. } = scan(&mut watcher).remove(0) else {
        panic!("queued");
    };
    work();
    let mut restarted = Watcher::default();
    assert_eq!(scan(&mut restarted), [Step::Waiting(tuesday.clone())]);
    assert!(
        matches!(&scan(&mut restarted)[..], [Step::Moved { to, .. }] if to.ends_with(format!("done/{run_id}-tuesday.csv")))
    );
    assert_eq!(
        jobs::runs_of(&mut env.conn(), source.id, 10)
            .expect("runs")
            .len(),
        2
    );
    assert_eq!(env.record_count(), 3);

    // Not a text file: set aside with the reason.
    let bad = drop.join("photo.csv");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("write");
    scan(&mut watcher);
    let moved = scan(&mut watcher);
    let [Step::Moved { to, .. }] = &moved[..] else {
        panic!("{moved:?}");
    };
    assert!(to.starts_with(drop.join("failed")), "{to:?}");
    let mut note = to.clone().into_os_string();
    note.push(".error.txt");
    let why = std::fs::read_to_string(note).expect("note");
    assert!(why.contains("not a text file"), "{why}");
    assert!(
        drop.join(".monday.csv.tmp").exists(),
        "files being written are left alone"
    );

    // A folder holding the console's own files is never watched.
    let own = sources::create(
        &mut env.conn(),
        &SourceInput {
            watch_dir: data_dir.to_string_lossy().into_owned(),
            activities: None,
            ..common::contacts_by("Careless", "External Id")
        },
    )
    .expect("source");
    std::fs::write(data_dir.join("keep.csv"), "External Id,Name\n9,Zed\n").expect("write");
    let mut fresh = Watcher::default();
    scan(&mut fresh);
    scan(&mut fresh);
    assert!(data_dir.join("keep.csv").exists());
    assert_eq!(
        jobs::runs_of(&mut env.conn(), own.id, 10)
            .expect("runs")
            .len(),
        0
    );
}

/// The database connector against a second database on the local PostgreSQL: the query's
/// rows go through the mapping like a file's (a numeric column into a number field); the URL
/// is kept encrypted or read from a named environment variable; nothing but one SELECT runs,
/// and that in a read-only transaction; a schedule runs it when due.
#[core::prelude::v1::test]
fn a_query_on_another_database_imports_like_a_file() {
    use diesel::connection::SimpleConnection;
    use syncdesk::fields::service::NewField;
    use syncdesk::sources::connector::{self, ConnectorInput};
    let env = Env::new();
    let accounts = common::TestDb::postgres("postgres://postgres@127.0.0.1:5432/test");
    let mut remote = diesel::PgConnection::establish(&accounts.url).expect("accounts database");
    remote
        .batch_execute(
            "CREATE TABLE clients (code TEXT, name TEXT, email TEXT, tag1 NUMERIC);
             INSERT INTO clients VALUES ('C1', 'Ann Lee', 'ann@lee.example', 800),
               ('C2', 'Bob   Ray', NULL, 1200.5), ('C3', 'Cy Fox', 'cy@fox.example', NULL);",
        )
        .expect("clients");
    // A role that can only read: the connector refuses any other.
    let reader = PgRole::new(&accounts.url, "reader");
    reader.grant(&accounts.url, "GRANT SELECT ON clients TO {role}");
    let reader_url = reader.url(&accounts.url);
    let mut conn = env.conn();
    let source = sources::create(
        &mut conn,
        &SourceInput {
            full_mode: true,
            ..common::contacts_by("Accounting", "code")
        },
    )
    .expect("source");
    let line = |column: &str, field: &str| MappingInput {
        column_name: column.into(),
        field_key: field.into(),
        to_record: Rule::Always,
        to_source: Rule::Never,
        blanks_clear: false,
    };
    sources::create_fields_and_map(
        &mut conn,
        source.id,
        &[NewField {
            key: "tag1".into(),
            label: "Tag 1".into(),
            field_type: "number".into(),
            options: String::new(),
        }],
        &[
            line("name", "name"),
            line("email", "email"),
            line("tag1", "tag1"),
        ],
    )
    .expect("mapping");
    let key = env.state.secret();
    let data_dir = env.state.config.data_dir.clone();

    // The URL given: kept encrypted.
    let source = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url: reader_url.clone(),
            sql: "SELECT code, name, email, tag1 FROM clients ORDER BY code;".into(),
            ..Default::default()
        },
        &key,
    )
    .expect("save");
    assert!(!source.query_url_secret.contains("postgres"));
    assert_eq!(
        connector::decrypt(&key, &source.query_url_secret).expect("readable"),
        reader_url
    );
    let run = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test")).expect("run");
    jobs::run_queued(&env.state.pool, &data_dir, au()).expect("import");
    let outcomes: Vec<(String, String)> = env
        .rows(run)
        .iter()
        .map(|r| (r.external_id.clone(), r.outcome.as_str().to_string()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("C1".to_string(), "created".to_string()),
            ("C2".into(), "created".into()),
            ("C3".into(), "created".into())
        ]
    );
    let bob = env.rows(run)[1].record_id.expect("Bob");
    let view = records::find(&mut conn, bob).expect("find").expect("Bob");
    assert_eq!(view.name, "Bob Ray");
    let tag1: String = syncdesk::schema::record_values::table
        .filter(syncdesk::schema::record_values::record_id.eq(bob))
        .select(syncdesk::schema::record_values::value)
        .first(&mut conn)
        .expect("tag1");
    assert_eq!(tag1, "1200.5");

    // Read from a named environment variable; one SELECT only, read-only.
    let var = format!("SYNCDESK_CONNECTOR_TEST_{}", std::process::id());
    std::env::set_var(&var, &reader_url);
    let source = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: var.clone(),
            sql: "SELECT code, name FROM clients; DELETE FROM clients".into(),
            ..Default::default()
        },
        &key,
    )
    .expect("save");
    let refused = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test"))
        .expect_err("two statements");
    assert!(
        refused.to_string().contains("The query failed"),
        "{refused}"
    );
    let source = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: var.clone(),
            sql: "SELECT code, name FROM clients FOR UPDATE".into(),
            ..Default::default()
        },
        &key,
    )
    .expect("save");
    let refused = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test"))
        .expect_err("read-only");
    assert!(refused.to_string().contains("read-only"), "{refused}");
    let left: i64 = diesel::sql_query("SELECT COUNT(*) AS n FROM clients")
        .get_result::<Count>(&mut remote)
        .expect("count")
        .n;
    assert_eq!(left, 3, "nothing was written to the other database");

    // Only connector variables; a WITH query is one SELECT too.
    let refused = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: "SYNCDESK_SESSION_KEY".into(),
            sql: "SELECT 1".into(),
            ..Default::default()
        },
        &key,
    )
    .expect_err("not a connector variable");
    assert!(
        refused.to_string().contains("is not a connector variable"),
        "{refused}"
    );
    let with_query = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: var.clone(),
            sql: "WITH c AS (SELECT code, name FROM clients) SELECT * FROM c -- every client"
                .into(),
            ..Default::default()
        },
        &key,
    )
    .expect("a WITH query");
    let run = connector::run_now(&mut conn, &with_query, &data_dir, &key, (None, "test"))
        .expect("a trailing comment does not break the query");
    jobs::run_queued(&env.state.pool, &data_dir, au()).expect("import");
    assert_eq!(env.run(run).status.as_str(), "done");

    // On a schedule: due once its minutes have passed since the last run.
    connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: var.clone(),
            sql: "SELECT code, name FROM clients".into(),
            every_minutes: 60,
            ..Default::default()
        },
        &key,
    )
    .expect("save");
    assert!(
        connector::run_due(&mut conn, &data_dir, &key)
            .expect("due")
            .is_empty(),
        "ran a moment ago"
    );
    diesel::update(syncdesk::schema::sources::table.find(source.id))
        .set(
            syncdesk::schema::sources::query_last_at
                .eq(Some(syncdesk::db::now() - chrono::Duration::minutes(61))),
        )
        .execute(&mut conn)
        .expect("an hour ago");
    let queued = connector::run_due(&mut conn, &data_dir, &key).expect("due");
    assert_eq!(queued.len(), 1);
    assert_eq!(env.run(queued[0]).started_by_label, connector::SCHEDULED);
    jobs::run_queued(&env.state.pool, &data_dir, au()).expect("import");
    let unchanged = env
        .rows(queued[0])
        .iter()
        .filter(|r| r.outcome.as_str() == "unchanged")
        .count();
    assert_eq!(unchanged, 3);
    std::env::remove_var(&var);
}

/// A login role on the test's PostgreSQL server, made for one test and dropped with what it
/// was granted when the test ends.
struct PgRole {
    name: String,
    admin_url: String,
    granted_in: std::cell::RefCell<Vec<String>>,
}

impl PgRole {
    fn new(admin_url: &str, what: &str) -> Self {
        use diesel::connection::SimpleConnection;
        let name = format!(
            "syncdesk_{what}_{}",
            &syncdesk::web::random_token()[..10].to_ascii_lowercase()
        );
        diesel::PgConnection::establish(admin_url)
            .expect("server")
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .expect("role");
        PgRole {
            name,
            admin_url: admin_url.to_string(),
            granted_in: Default::default(),
        }
    }

    /// Runs `sql` (`{role}` standing for this role) as the server's admin on database `url`.
    fn grant(&self, url: &str, sql: &str) {
        use diesel::connection::SimpleConnection;
        diesel::PgConnection::establish(url)
            .expect("database")
            .batch_execute(&sql.replace("{role}", &self.name))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        self.granted_in.borrow_mut().push(url.to_string());
    }

    /// `url` with this role as its user (the local server trusts it).
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}@{host}", self.name)
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        for url in self.granted_in.borrow().iter() {
            if let Ok(mut conn) = diesel::PgConnection::establish(url) {
                let _ = conn.batch_execute(&format!("DROP OWNED BY {}", self.name));
            }
        }
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

/// The connector reads another system's database with a role that can only read: it refuses
/// the console's own database (the same server and database, whatever the URL's text), a
/// superuser, and any role that can write or reach the server's files, both when it is saved
/// and when it runs (a role may have been granted more since).
#[core::prelude::v1::test]
fn the_connector_refuses_the_consoles_database_superusers_and_writing_roles() {
    use diesel::connection::SimpleConnection;
    use syncdesk::sources::connector::{self, ConnectorInput};
    let env = Env::new();
    let Some(admin_url) = common::pg_admin_url() else {
        return;
    };
    let accounts = common::TestDb::postgres(&admin_url);
    diesel::PgConnection::establish(&accounts.url)
        .expect("accounts database")
        .batch_execute(
            "CREATE TABLE clients (code TEXT, name TEXT);
             INSERT INTO clients VALUES ('C1', 'Ann Lee');",
        )
        .expect("clients");
    let mut conn = env.conn();
    let source =
        sources::create(&mut conn, &common::contacts_by("Accounting", "code")).expect("source");
    sources::set_mapping(
        &mut conn,
        source.id,
        &[MappingInput {
            column_name: "name".into(),
            field_key: "name".into(),
            to_record: Rule::Always,
            to_source: Rule::Never,
            blanks_clear: false,
        }],
    )
    .expect("mapping");
    let key = env.state.secret();
    let data_dir = env.state.config.data_dir.clone();
    let save = |conn: &mut syncdesk::db::PooledConn, url: &str| {
        connector::save(
            conn,
            source.id,
            &ConnectorInput {
                url: url.into(),
                sql: "SELECT code, name FROM clients".into(),
                ..Default::default()
            },
            &key,
        )
    };
    let refused = |conn: &mut syncdesk::db::PooledConn, url: &str, why: &[&str]| {
        let message = save(conn, url).expect_err(url).to_string();
        for part in why {
            assert!(message.contains(part), "{url}: {message}");
        }
        message
    };

    // The server's superuser (the test's own admin role).
    refused(&mut conn, &accounts.url, &["superuser", "can only read"]);
    // Roles that can write, by a privilege, their own table, a schema or a server role,
    // directly or through a role they may become.
    let writer = PgRole::new(&admin_url, "writer");
    writer.grant(&accounts.url, "GRANT SELECT, INSERT ON clients TO {role}");
    refused(
        &mut conn,
        &writer.url(&accounts.url),
        &["can do more than read", "may write table public.clients"],
    );
    let schema = PgRole::new(&admin_url, "schema");
    schema.grant(
        &accounts.url,
        "GRANT SELECT ON clients TO {role}; GRANT CREATE ON SCHEMA public TO {role}",
    );
    refused(
        &mut conn,
        &schema.url(&accounts.url),
        &["may create objects in schema public"],
    );
    let files = PgRole::new(&admin_url, "files");
    files.grant(
        &accounts.url,
        "GRANT SELECT ON clients TO {role}; GRANT pg_write_server_files TO {role}",
    );
    refused(
        &mut conn,
        &files.url(&accounts.url),
        &["pg_write_server_files"],
    );
    let member = PgRole::new(&admin_url, "member");
    member.grant(
        &accounts.url,
        &format!("ALTER ROLE {{role}} NOINHERIT; GRANT SELECT ON clients TO {{role}}; GRANT {} TO {{role}}", writer.name),
    );
    refused(
        &mut conn,
        &member.url(&accounts.url),
        &[&format!(
            "role {} may write table public.clients",
            writer.name
        )],
    );
    assert!(sources::find(&mut conn, source.id)
        .expect("find")
        .expect("source")
        .query_url_secret
        .is_empty());

    // A role that can only read is accepted and runs.
    let reader = PgRole::new(&admin_url, "reader");
    reader.grant(&accounts.url, "GRANT SELECT ON clients TO {role}");
    let source = save(&mut conn, &reader.url(&accounts.url)).expect("a reader");
    let run = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test")).expect("run");
    jobs::run_queued(&env.state.pool, &data_dir, au()).expect("import");
    assert_eq!(env.run(run).status.as_str(), "done");
    // Granted more since it was saved: refused when it runs.
    reader.grant(&accounts.url, "GRANT UPDATE ON clients TO {role}");
    let late = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test"))
        .expect_err("a writer now")
        .to_string();
    assert!(late.contains("may write table public.clients"), "{late}");

    // The console's own database, through a URL written differently, with a role that may
    // only read it: refused when saved, and when a variable's URL points there at run time.
    if !env.state.config.database_url.starts_with("postgres") {
        eprintln!(
            "the console runs on SQLite: its database is not reachable through a postgres:// URL"
        );
        return;
    }
    let console_url = env.state.config.database_url.clone();
    let spy = PgRole::new(&admin_url, "spy");
    spy.grant(&console_url, "GRANT SELECT ON users TO {role}");
    let own = format!(
        "postgresql{}?application_name=reports",
        spy.url(&console_url).trim_start_matches("postgres")
    );
    refused(&mut conn, &own, &["the console's own database"]);
    let var = format!("SYNCDESK_CONNECTOR_OWN_{}", std::process::id());
    let spy_accounts = spy.url(&accounts.url);
    spy.grant(&accounts.url, "GRANT SELECT ON clients TO {role}");
    std::env::set_var(&var, &spy_accounts);
    let source = connector::save(
        &mut conn,
        source.id,
        &ConnectorInput {
            url_env: var.clone(),
            sql: "SELECT code, name FROM clients".into(),
            ..Default::default()
        },
        &key,
    )
    .expect("another database");
    std::env::set_var(&var, &own);
    let late = connector::run_now(&mut conn, &source, &data_dir, &key, (None, "test"))
        .expect_err("the console's database")
        .to_string();
    std::env::remove_var(&var);
    assert!(late.contains("the console's own database"), "{late}");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// A file from another country: its preview sets the phone country for that upload only,
/// and applying its plan later reads it the same way.
#[actix_web::test]
async fn an_upload_may_say_which_country_its_phones_are_from() {
    use syncdesk::auth::model::Role;
    let mut editor = common::spawn().await;
    editor.signed_in_as("editor@example.org", Role::Admin).await;
    let source = sources::create(
        &mut editor.state.pool.get().expect("conn"),
        &common::contacts_by("Paris office", "Id"),
    )
    .expect("source");
    let line = |column: &str, field: &str| MappingInput {
        column_name: column.into(),
        field_key: field.into(),
        to_record: Rule::Always,
        to_source: Rule::Never,
        blanks_clear: false,
    };
    sources::set_mapping(
        &mut editor.state.pool.get().expect("conn"),
        source.id,
        &[line("Nom", "name"), line("Téléphone", "phone")],
    )
    .expect("mapping");
    let res = editor
        .upload(
            &format!("/sources/{}/imports", source.id),
            "paris.csv",
            "Id,Nom,Téléphone\n1,Zoé Lefèvre,06 12 34 56 78\n".as_bytes(),
            true,
        )
        .await;
    let preview_url = res.location().expect("preview").to_string();
    editor
        .get(&preview_url)
        .await
        .assert_contains("Phones written without a country are from");
    let sha = preview_url
        .split('/')
        .nth(4)
        .and_then(|s| s.split('?').next())
        .expect("sha")
        .to_string();
    let form = |country: &'static str| {
        [
            ("file_name", "paris.csv"),
            ("encoding", "utf-8"),
            ("delimiter", "comma"),
            ("action", "dry_run"),
            ("country", country),
        ]
    };
    editor
        .post(
            &format!("/sources/{}/imports/{sha}/run", source.id),
            &form("Gaul"),
        )
        .await
        .assert_status(400)
        .assert_contains("not a two-letter country code");
    let dry = editor
        .post(
            &format!("/sources/{}/imports/{sha}/run", source.id),
            &form("fr"),
        )
        .await;
    let dry_url = dry.location().expect("run").to_string();
    let data_dir = editor.state.config.data_dir.clone();
    jobs::run_queued(&editor.state.pool, &data_dir, au()).expect("dry run");
    editor
        .get(&dry_url)
        .await
        .assert_contains("phone: (blank) → +33612345678");
    // Applying the plan (check, then confirm) keeps the upload's country.
    let dry_id: i64 = dry_url.trim_start_matches("/runs/").parse().expect("id");
    let check = editor.post(&format!("/runs/{dry_id}/apply"), &[]).await;
    let check_id: i64 = check
        .location()
        .expect("check")
        .trim_start_matches("/runs/")
        .parse()
        .expect("id");
    jobs::run_queued(&editor.state.pool, &data_dir, au()).expect("check");
    editor
        .post(
            &format!("/runs/{dry_id}/apply"),
            &[("checked_by", &check_id.to_string())],
        )
        .await;
    jobs::run_queued(&editor.state.pool, &data_dir, au()).expect("apply");
    let phone: String = records_t::table
        .select(records_t::phone)
        .first(&mut editor.state.pool.get().expect("conn"))
        .expect("the contact");
    assert_eq!(phone, "+33612345678");
}

/// The proposal covers the usual exports, in English and French: name (whole or built from
/// its parts), email, phone and company for contacts; unknown columns are left unmapped.
#[core::prelude::v1::test]
fn proposals_cover_the_usual_exports_in_english_and_french() {
    let env = Env::new();
    let defs =
        syncdesk::fields::service::list(&mut env.conn(), RecordKind::Contact, false).expect("defs");
    let files: [(&str, &str, [&str; 4]); 5] = [
        (
            "Apple (vCard to CSV)",
            "First name,Last name,Organization,E-mail,Phone,Note\nZoé,Lefèvre,Atelier,zoe@example.fr,06 12 34 56 78,\"a\nb\"\n",
            ["{First name} {Last name}", "E-mail", "Phone", "Organization"],
        ),
        (
            "HubSpot",
            "Record ID,First Name,Last Name,Email,Phone Number,Company Name,Lifecycle Stage\n1,Ann,Lee,ann@lee.example,+44 20 7946 0101,Acme,lead\n",
            ["{First Name} {Last Name}", "Email", "Phone Number", "Company Name"],
        ),
        (
            "Salesforce",
            "Contact ID,Salutation,First Name,Last Name,Account Name,Email,Phone,Mobile\n003,Ms,Ann,Lee,Acme,ann@lee.example,,+44 7700 900123\n",
            ["{First Name} {Last Name}", "Email", "Mobile", "Account Name"],
        ),
        (
            "Outlook (French)",
            "Prénom,Deuxième prénom,Nom,Société,Adresse de messagerie,Téléphone (bureau),Téléphone mobile\nZoé,,Lefèvre,Atelier,zoe@example.fr,,06 12 34 56 78\n",
            ["{Prénom} {Nom}", "Adresse de messagerie", "Téléphone mobile", "Société"],
        ),
        (
            "a French spreadsheet",
            "Nom,Courriel,Téléphone,Entreprise,Remarque\nZoé Lefèvre,zoe@example.fr,06 12 34 56 78,Atelier,\n",
            ["Nom", "Courriel", "Téléphone", "Entreprise"],
        ),
    ];
    for (export, csv, [name, email, phone, company]) in files {
        let format = syncdesk::sync::csvfile::detect(csv.as_bytes());
        let path = env.state.config.data_dir.join("export.csv");
        std::fs::write(&path, csv).expect("file");
        let (headers, rows) = syncdesk::sync::csvfile::preview(&path, format, 20).expect("read");
        let proposed = syncdesk::sources::propose::propose(&headers, &rows, "", &defs, au());
        let column_of = |field: &str| {
            proposed
                .iter()
                .find(|l| l.field_key.as_deref() == Some(field))
                .map(|l| l.column.as_str())
        };
        assert_eq!(
            [
                column_of("name"),
                column_of("email"),
                column_of("phone"),
                column_of("company")
            ],
            [Some(name), Some(email), Some(phone), Some(company)],
            "{export}: {proposed:#?}"
        );
    }
}

/// A source matching by name and email: a row is its record's when both are the same (case
/// and spaces aside); the email column still fills the field.
#[core::prelude::v1::test]
fn a_source_may_match_rows_by_several_fields() {
    let env = Env::new();
    let source = contact_source(&env, "Sheet", &["name", "email"], "");
    let line = |column: &str, field: &str| MappingInput {
        column_name: column.into(),
        field_key: field.into(),
        to_record: Rule::Always,
        to_source: Rule::Never,
        blanks_clear: false,
    };
    sources::set_mapping(
        &mut env.conn(),
        source.id,
        &[
            line("Name", "name"),
            line("Email", "email"),
            line("Phone", "phone"),
        ],
    )
    .expect("mapping");
    let first = env.import(
        &source,
        "Name,Email,Phone\nAnn Lee,ann@lee.example,\nAnn Lee,ann@work.example,\n",
        false,
    );
    let ids: Vec<String> = env
        .rows(first)
        .iter()
        .map(|r| r.external_id.clone())
        .collect();
    assert_eq!(ids, ["ann lee|ann@lee.example", "ann lee|ann@work.example"]);
    let again = env.import(
        &source,
        "Name,Email,Phone\nann  LEE,ANN@lee.example,+61 400 000 001\n",
        false,
    );
    let row = &env.rows(again)[0];
    assert_eq!(row.outcome.as_str(), "updated", "{}", row.reason);
    assert_eq!(row.record_id, env.rows(first)[0].record_id);
    assert_eq!(env.record_count(), 2);
}

/// An ambiguous row's candidates are offered by name on the run page.
#[actix_web::test]
async fn an_ambiguous_rows_candidates_are_named_on_the_run_page() {
    use syncdesk::auth::model::Role;
    let mut app = common::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            records::create(
                &mut app.state.pool.get().expect("conn"),
                RecordKind::Contact,
                &RecordInput {
                    values: [("name".to_string(), "Ann Twin".to_string())].into(),
                    company_id: None,
                },
                &Actor::system("setup"),
                au(),
            )
            .expect("contact")
            .id,
        );
    }
    let source = sources::create(
        &mut app.state.pool.get().expect("conn"),
        &common::contacts_by("CRM", "Id"),
    )
    .expect("source");
    sources::set_mapping(
        &mut app.state.pool.get().expect("conn"),
        source.id,
        &[MappingInput {
            column_name: "Name".into(),
            field_key: "name".into(),
            to_record: Rule::Always,
            to_source: Rule::Never,
            blanks_clear: false,
        }],
    )
    .expect("mapping");
    let data_dir = app.state.config.data_dir.clone();
    let csv = b"Id,Name\nX1,Ann Twin\n";
    let sha = jobs::store_file(&data_dir, &csv[..], 1 << 20).expect("store");
    let run = jobs::enqueue(
        &mut app.state.pool.get().expect("conn"),
        &NewRun {
            source: &source,
            file_name: "twins.csv",
            sha256: &sha,
            format: syncdesk::sync::csvfile::detect(csv),
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: None,
            user_label: "test",
        },
    )
    .expect("run");
    jobs::run_queued(&app.state.pool, &data_dir, au()).expect("import");
    app.signed_in_as("editor@example.org", Role::Editor).await;
    app.get(&format!("/runs/{run}"))
        .await
        .assert_contains(&format!("link to Ann Twin (#{})", ids[0]))
        .assert_contains(&format!("link to Ann Twin (#{})", ids[1]));
}
