//! `syncdesk demo` shows every seed's feature and loads once: a second run adds nothing.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use diesel::prelude::*;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::schema::{
    activities, activity_mappings, applications, data_links, followup_templates, import_runs,
    proposals, records, sources,
};

fn counts(conn: &mut syncdesk::db::DbConn) -> [i64; 9] {
    [
        records::table.count().get_result(conn).expect("records"),
        sources::table.count().get_result(conn).expect("sources"),
        import_runs::table.count().get_result(conn).expect("runs"),
        proposals::table
            .filter(proposals::status.eq("pending"))
            .count()
            .get_result(conn)
            .expect("proposals"),
        applications::table
            .filter(applications::status.eq("submitted"))
            .count()
            .get_result(conn)
            .expect("applications"),
        activities::table
            .count()
            .get_result(conn)
            .expect("activities"),
        followup_templates::table
            .count()
            .get_result(conn)
            .expect("templates"),
        activity_mappings::table
            .count()
            .get_result(conn)
            .expect("mappings"),
        data_links::table.count().get_result(conn).expect("links"),
    ]
}

#[core::prelude::v1::test]
fn the_demo_shows_every_seed_and_loads_once() {
    let db = common::TestDb::new();
    let state = syncdesk::AppState::open(db.config()).expect("state");
    let mut conn = state.pool.get().expect("connection");
    let country = PhoneCountry::parse("GB").expect("country");
    let first = syncdesk::demo::load(&state.pool, &state.config.data_dir, country).expect("demo");
    assert_eq!(
        (
            first.sources,
            first.runs,
            first.processes,
            first.templates,
            first.activities
        ),
        (3, 4, 1, 1, 5),
        "{first:?}"
    );
    let before = counts(&mut conn);
    let [_, sources, runs, pending, submitted, logged, templates, mappings, links] = before;
    assert_eq!((sources, runs, submitted, logged), (3, 4, 1, 5));
    assert_eq!(
        (templates, mappings),
        (1, 2),
        "the Practice manager's and the Dialer calls' call mappings"
    );
    assert!(links >= 3, "data links in all three directions: {links}");
    assert!(
        pending >= 4,
        "Ada's tag1, Acme's credit, Katherine's newsletter, a call's list for review: {pending}"
    );
    // Seed 001: the dialer mapping's field update waits for review (a proposal of tag2).
    let from_calls: i64 = proposals::table
        .filter(proposals::status.eq("pending"))
        .filter(proposals::field_key.eq("tag2"))
        .count()
        .get_result(&mut conn)
        .expect("tag2 proposals");
    assert!(from_calls >= 1);
    assert_eq!(
        syncdesk::review::totals::differences(&mut conn).expect("totals"),
        vec![]
    );

    // Seed 002: Ada converted and owned by the source, Grace forced manual and left alone.
    let named = |conn: &mut syncdesk::db::DbConn, name: &str| {
        records::table
            .filter(records::name.eq(name))
            .select((
                records::owner_source_id,
                records::forced_manual,
                records::email,
            ))
            .first::<(Option<i64>, bool, String)>(conn)
            .expect(name)
    };
    let (owner, _, _) = named(&mut conn, "Ada Lovelace");
    assert!(owner.is_some(), "Ada was converted");
    let (_, forced, email) = named(&mut conn, "Grace Hopper");
    assert!(forced);
    assert_eq!(
        email, "grace@globex.example",
        "a forced-manual record keeps its values"
    );
    let kinds: i64 = records::table
        .filter(records::kind.eq(RecordKind::Company.as_str()))
        .count()
        .get_result(&mut conn)
        .expect("companies");
    assert!(kinds >= 3);

    let again = syncdesk::demo::load(&state.pool, &state.config.data_dir, country).expect("again");
    assert_eq!(again, syncdesk::demo::DemoSummary::default());
    assert_eq!(counts(&mut conn), before);

    // A demo stopped half-way (here: an import that failed) picks up where it stopped.
    diesel::update(import_runs::table.filter(import_runs::file_name.eq("accounts.csv")))
        .set(import_runs::status.eq("failed"))
        .execute(&mut conn)
        .expect("a failed run");
    let resumed =
        syncdesk::demo::load(&state.pool, &state.config.data_dir, country).expect("resumed");
    assert_eq!(
        (resumed.sources, resumed.runs, resumed.activities),
        (0, 1, 0),
        "{resumed:?}"
    );
}
