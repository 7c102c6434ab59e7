//! Desynchronised records and "check data": decisions, shortcuts, validation, races, replaced
//! proposals, roles, indicators and the desync view's counts and filters.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::collections::BTreeMap;

use actix_web::http::Method;
use common::spawn;
use diesel::prelude::*;
use syncdesk::auth::model::Role;
use syncdesk::db::DbPool;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::links::service::{self as links, LinkInput};
use syncdesk::processes::service::{self as processes, NewItem};
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::review::service::{self as review, Choice, DesyncFilter, Proposal};
use syncdesk::rules::Rule;
use syncdesk::schema::{proposals, record_history};
use syncdesk::sources::model::{MappingInput, Source};
use syncdesk::sources::service as sources;
use syncdesk::sync::jobs::{self, NewRun};

fn fr() -> PhoneCountry {
    PhoneCountry::parse("FR").expect("country")
}

/// An onboarding process whose phone, email and tag1 items propose changes to the contact
/// (rule `review`), and a contact Ada with values for all three.
struct Setup {
    process: i64,
    step: i64,
    items: BTreeMap<&'static str, i64>,
    ada: i64,
}

fn setup(pool: &DbPool) -> Setup {
    let mut conn = pool.get().expect("connection");
    fields::create(
        &mut conn,
        RecordKind::Contact,
        &NewField {
            key: "tag1".into(),
            label: "Tag 1".into(),
            field_type: "text".into(),
            options: String::new(),
        },
    )
    .expect("field");
    let process = processes::create(&mut conn, "Onboarding", RecordKind::Contact)
        .expect("process")
        .id;
    let step = processes::add_step(&mut conn, process, "Your details", false)
        .expect("step")
        .id;
    let mut items = BTreeMap::new();
    for (key, item_type) in [("phone", "phone"), ("email", "email"), ("tag1", "text")] {
        let item = processes::add_item(
            &mut conn,
            step,
            &NewItem {
                key: key.into(),
                label: key.into(),
                item_type: item_type.into(),
                required: false,
                options: String::new(),
            },
        )
        .expect("item")
        .id;
        links::create(
            &mut conn,
            process,
            &LinkInput {
                direction: "both".into(),
                record_kind: RecordKind::Contact,
                data_kind: "information".into(),
                item_id: item,
                field_key: key.into(),
                roles: String::new(),
                to_record: Rule::Review,
            },
        )
        .expect("link");
        items.insert(key, item);
    }
    let ada = contact(
        pool,
        &[
            ("name", "Ada Lovelace"),
            ("phone", "01 23 45 67 89"),
            ("email", "ada@example.org"),
            ("tag1", "vip"),
        ],
    );
    Setup {
        process,
        step,
        items,
        ada,
    }
}

fn contact(pool: &DbPool, values: &[(&str, &str)]) -> i64 {
    records::create(
        &mut pool.get().expect("connection"),
        RecordKind::Contact,
        &RecordInput {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            company_id: None,
        },
        &Actor::system("setup"),
        fr(),
    )
    .expect("contact")
    .id
}

impl Setup {
    /// An application for `record` whose submitted step proposes the given values.
    fn submit(&self, pool: &DbPool, record: i64, typed: &[(&str, &str)]) -> i64 {
        let mut conn = pool.get().expect("connection");
        let app = processes::create_application(&mut conn, self.process, record, &[], None)
            .expect("application");
        let typed: BTreeMap<(i64, i64), String> = typed
            .iter()
            .map(|(key, value)| ((self.items[key], 0), value.to_string()))
            .collect();
        processes::save_step(
            &mut conn,
            app.id,
            self.step,
            &typed,
            true,
            &Actor::system("Eve"),
            fr(),
        )
        .expect("submit");
        app.id
    }

    /// Ada's three proposals: phone, email and tag1.
    fn propose_all(&self, pool: &DbPool) -> i64 {
        self.submit(
            pool,
            self.ada,
            &[
                ("phone", "06 12 34 56 78"),
                ("email", "ada@newmail.example"),
                ("tag1", "gold"),
            ],
        )
    }
}

fn values(pool: &DbPool, id: i64) -> BTreeMap<String, String> {
    let mut conn = pool.get().expect("connection");
    let record = records::find(&mut conn, id).expect("find").expect("record");
    let defs = fields::list(&mut conn, record.record_kind(), false).expect("defs");
    records::values(&mut conn, &record, &defs).expect("values")
}

fn pending(pool: &DbPool, id: i64) -> BTreeMap<String, Proposal> {
    review::pending_for(&mut pool.get().expect("connection"), id)
        .expect("pending")
        .into_iter()
        .map(|p| (p.field_key.clone(), p))
        .collect()
}

fn proposal(pool: &DbPool, id: i64) -> Proposal {
    proposals::table
        .find(id)
        .select(Proposal::as_select())
        .first(&mut pool.get().expect("connection"))
        .expect("proposal")
}

/// History rows written by review decisions on this proposal.
fn review_rows(pool: &DbPool, proposal: i64) -> Vec<(String, Option<String>, Option<String>)> {
    record_history::table
        .filter(record_history::origin.eq("review"))
        .filter(record_history::origin_id.eq(proposal))
        .select((
            record_history::actor_label,
            record_history::old_value,
            record_history::new_value,
        ))
        .load(&mut pool.get().expect("connection"))
        .expect("history")
}

#[actix_web::test]
async fn keep_accept_and_new_value_each_with_history() {
    let mut app = spawn().await;
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    let application = s.propose_all(&pool);
    let p = pending(&pool, s.ada);
    assert_eq!(p.len(), 3);

    // Indicators: the list, the record's banner, the desync view.
    let list = app.get("/contacts").await;
    list.assert_status(200)
        .assert_contains("data-pending=\"3\"")
        .assert_contains("desynchronised: 3 fields to check");
    app.get(&format!("/records/{}", s.ada))
        .await
        .assert_contains("id=\"desync-banner\"")
        .assert_contains(&format!("href=\"/records/{}/check\"", s.ada))
        .assert_contains("Check data");
    let page = app.get(&format!("/records/{}/check", s.ada)).await;
    page.assert_status(200)
        .assert_contains("+33612345678")
        .assert_contains("+33123456789")
        .assert_contains(&format!("href=\"/applications/{application}\""))
        .assert_contains("Accept all")
        .assert_contains("Keep all");

    let (phone, email, tag) = (
        p["phone"].id.to_string(),
        p["email"].id.to_string(),
        p["tag1"].id.to_string(),
    );
    let res = app
        .post(
            &format!("/records/{}/check", s.ada),
            &[
                ("p", &phone),
                (&format!("c{phone}"), "accept"),
                ("p", &email),
                (&format!("c{email}"), "keep"),
                ("p", &tag),
                (&format!("c{tag}"), "new"),
                (&format!("v{tag}"), "platinum"),
            ],
        )
        .await;
    res.assert_redirect(&format!("/records/{}/check", s.ada));
    app.get(&format!("/records/{}/check", s.ada))
        .await
        .assert_contains("Applied:")
        .assert_contains("id=\"in-step\"")
        .assert_contains("id=\"earlier\"");

    let now = values(&pool, s.ada);
    assert_eq!(now["phone"], "+33612345678");
    assert_eq!(now["email"], "ada@example.org");
    assert_eq!(now["tag1"], "platinum");
    assert!(pending(&pool, s.ada).is_empty());
    for (id, status) in [(&phone, "accepted"), (&email, "kept"), (&tag, "new_value")] {
        let decided = proposal(&pool, id.parse().expect("id"));
        assert_eq!(decided.status.as_str(), status);
        assert_eq!(decided.decided_by.as_deref(), Some("editor"));
        let rows = review_rows(&pool, decided.id);
        assert_eq!(rows.len(), 1, "one history row for {status}: {rows:?}");
        assert!(rows[0].0.starts_with("editor: "), "{rows:?}");
    }
    assert_eq!(
        review_rows(&pool, p["phone"].id)[0].1.as_deref(),
        Some("+33123456789")
    );
    assert_eq!(
        review_rows(&pool, p["tag1"].id)[0].2.as_deref(),
        Some("platinum")
    );
    // The kept value is unchanged, and the row says what was discarded.
    let kept = &review_rows(&pool, p["email"].id)[0];
    assert_eq!(kept.1, kept.2);
    assert!(kept.0.contains("discarded ada@newmail.example"), "{kept:?}");
    assert_eq!(
        proposal(&pool, p["tag1"].id).decided_value.as_deref(),
        Some("platinum")
    );

    // In step again: no indicator, no banner, nothing in the desync view.
    assert!(!app.get("/contacts").await.body.contains("data-pending="));
    assert!(!app
        .get(&format!("/records/{}", s.ada))
        .await
        .body
        .contains("desync-banner"));
    app.get("/desync")
        .await
        .assert_contains("<strong id=\"desync-records\">0</strong>");
}

#[actix_web::test]
async fn shortcuts_accept_all_and_keep_all_in_place_with_htmx() {
    let mut app = spawn().await;
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.propose_all(&pool);
    app.get(&format!("/records/{}/check", s.ada)).await;
    let ids: Vec<String> = pending(&pool, s.ada)
        .values()
        .map(|p| p.id.to_string())
        .collect();
    let mut body: Vec<(String, String)> = ids.iter().map(|id| ("p".into(), id.clone())).collect();
    // A line's own choice gives way to the shortcut.
    body.push((format!("c{}", ids[0]), "keep".into()));
    body.push(("all".into(), "accept".into()));
    let res = app
        .htmx_form(&format!("/records/{}/check", s.ada), &body)
        .await;
    res.assert_status(200)
        .assert_contains("id=\"check\"")
        .assert_contains("id=\"applied\"")
        .assert_contains("id=\"in-step\"");
    assert!(!res.body.contains("<html"), "an htmx answer is a fragment");
    let now = values(&pool, s.ada);
    assert_eq!(
        (
            now["phone"].as_str(),
            now["email"].as_str(),
            now["tag1"].as_str()
        ),
        ("+33612345678", "ada@newmail.example", "gold")
    );

    // Keep all: a new round of proposals, all discarded; each still leaves a history row.
    s.submit(
        &pool,
        s.ada,
        &[
            ("phone", "06 70 00 00 01"),
            ("email", "x@example.org"),
            ("tag1", "bronze"),
        ],
    );
    let round: Vec<Proposal> = pending(&pool, s.ada).into_values().collect();
    assert_eq!(round.len(), 3);
    let mut fields: Vec<(String, String)> = round
        .iter()
        .map(|p| ("p".to_string(), p.id.to_string()))
        .collect();
    fields.push(("all".into(), "keep".into()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.post(&format!("/records/{}/check", s.ada), &pairs)
        .await
        .assert_redirect(&format!("/records/{}/check", s.ada));
    assert_eq!(values(&pool, s.ada), now);
    for p in &round {
        assert_eq!(proposal(&pool, p.id).status.as_str(), "kept");
        assert_eq!(review_rows(&pool, p.id).len(), 1);
    }
}

#[actix_web::test]
async fn an_invalid_new_value_applies_nothing_and_says_why() {
    let mut app = spawn().await;
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.propose_all(&pool);
    let before = values(&pool, s.ada);
    let p = pending(&pool, s.ada);
    let (phone, email) = (p["phone"].id.to_string(), p["email"].id.to_string());
    let fields = [
        ("p", phone.as_str()),
        (&format!("c{phone}"), "accept"),
        ("p", email.as_str()),
        (&format!("c{email}"), "new"),
        (&format!("v{email}"), "not-an-email"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let res = app.post(&format!("/records/{}/check", s.ada), &pairs).await;
    res.assert_status(422)
        .assert_contains("Nothing was applied")
        .assert_contains("&#39;not-an-email&#39; is not a valid email address")
        .assert_contains("value=\"not-an-email\"")
        .assert_contains("aria-invalid=\"true\"");
    assert!(
        res.body.contains("<html"),
        "without htmx the whole page comes back"
    );

    let htmx = app
        .htmx_form(&format!("/records/{}/check", s.ada), &fields)
        .await;
    htmx.assert_status(422)
        .assert_contains("not a valid email address");
    assert!(!htmx.body.contains("<html"));

    assert_eq!(values(&pool, s.ada), before, "nothing was written");
    assert_eq!(pending(&pool, s.ada).len(), 3, "every line still waits");
    assert!(review_rows(&pool, p["phone"].id).is_empty());

    // Nothing chosen at all is explained too.
    app.post(&format!("/records/{}/check", s.ada), &[("p", &phone)])
        .await
        .assert_redirect(&format!("/records/{}/check", s.ada));
    app.get(&format!("/records/{}/check", s.ada))
        .await
        .assert_contains("Choose Keep, Accept or New value");
}

/// Many people deciding one line at once: exactly one decision applies, once; every other
/// one is told who decided and how.
#[actix_web::test]
async fn concurrent_decisions_on_one_proposal_have_one_winner() {
    let app = spawn().await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.submit(&pool, s.ada, &[("phone", "06 12 34 56 78")]);
    let target = pending(&pool, s.ada)["phone"].id;
    let choices = [
        Choice::Accept,
        Choice::Keep,
        Choice::NewValue("06 11 22 33 44".into()),
    ];
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let pool = pool.clone();
            let choice = choices[i % choices.len()].clone();
            let ada = s.ada;
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("connection");
                let actor = Actor {
                    origin: syncdesk::records::model::Origin::User,
                    origin_id: None,
                    source_id: None,
                    user_id: None,
                    label: format!("person {i}"),
                };
                review::decide(&mut conn, ada, &[(target, choice)], &actor, fr()).expect("decide")
            })
        })
        .collect();
    let outcomes: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let winners: Vec<_> = outcomes.iter().filter(|o| !o.applied.is_empty()).collect();
    assert_eq!(winners.len(), 1, "exactly one decision applies");
    let decided = proposal(&pool, target);
    let winner = decided.decided_by.clone().expect("decided by");
    for outcome in outcomes.iter().filter(|o| o.applied.is_empty()) {
        assert_eq!(outcome.already_decided.len(), 1);
        let told = &outcome.already_decided[0];
        assert_eq!(told.by, winner);
        assert_eq!(told.how, decided.decision_text());
        assert!(
            told.sentence().contains("already decided by"),
            "{}",
            told.sentence()
        );
    }
    assert_eq!(
        review_rows(&pool, target).len(),
        1,
        "applied once, one history row"
    );
    let phone = values(&pool, s.ada)["phone"].clone();
    let expected = match decided.status.as_str() {
        "accepted" => "+33612345678",
        "kept" => "+33123456789",
        "new_value" => "+33611223344",
        other => panic!("unexpected status {other}"),
    };
    assert_eq!(phone, expected);
}

/// Applications submitted at the same moment for one field: each replaces the one before,
/// none fails, and exactly one proposal stays pending.
#[actix_web::test]
async fn concurrent_proposals_leave_one_pending() {
    let app = spawn().await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let pool = pool.clone();
            let ada = s.ada;
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("connection");
                syncdesk::db::write_tx(&mut conn, |conn| {
                    review::propose(
                        conn,
                        ada,
                        "phone",
                        "+33123456789",
                        &format!("+3361234560{i}"),
                        &Actor::system(&format!("sender {i}")),
                    )
                })
                .expect("propose")
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let all: Vec<String> = proposals::table
        .filter(proposals::record_id.eq(s.ada))
        .select(proposals::status)
        .load(&mut pool.get().expect("connection"))
        .expect("proposals");
    assert_eq!(all.len(), 8);
    assert_eq!(all.iter().filter(|st| *st == "pending").count(), 1);
    assert_eq!(all.iter().filter(|st| *st == "replaced").count(), 7);
}

/// Two people in the console on the same line: the second is told, by name, what happened.
#[actix_web::test]
async fn the_second_reviewer_is_told_who_decided() {
    let mut first = spawn().await;
    first.signed_in_as("first@example.org", Role::Editor).await;
    let mut second = first.fork();
    second
        .signed_in_as("second@example.org", Role::Editor)
        .await;
    let pool = first.state.pool.clone();
    let s = setup(&pool);
    s.submit(&pool, s.ada, &[("phone", "06 12 34 56 78")]);
    let id = pending(&pool, s.ada)["phone"].id.to_string();
    let check = format!("/records/{}/check", s.ada);
    first.get(&check).await;
    second.get(&check).await;
    first
        .post(&check, &[("p", &id), (&format!("c{id}"), "accept")])
        .await
        .assert_redirect(&check);
    second
        .post(&check, &[("p", &id), (&format!("c{id}"), "keep")])
        .await
        .assert_redirect(&check);
    second
        .get(&check)
        .await
        .assert_contains("already decided by first")
        .assert_contains("accepted the proposed value (+33612345678)")
        .assert_contains("your decision was not applied");
    assert_eq!(values(&pool, s.ada)["phone"], "+33612345678");
    assert_eq!(review_rows(&pool, id.parse().expect("id")).len(), 1);
}

#[actix_web::test]
async fn a_newer_proposal_replaces_an_older_one() {
    let mut app = spawn().await;
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.submit(&pool, s.ada, &[("phone", "06 12 34 56 78")]);
    let older = pending(&pool, s.ada)["phone"].id;
    let check = format!("/records/{}/check", s.ada);
    app.get(&check).await.assert_contains("+33612345678");
    s.submit(&pool, s.ada, &[("phone", "06 99 99 99 99")]);
    let now = pending(&pool, s.ada);
    assert_eq!(now.len(), 1, "one pending proposal per record and field");
    assert_eq!(now["phone"].proposed_value, "+33699999999");
    assert_eq!(proposal(&pool, older).status.as_str(), "replaced");

    // Deciding on the page read before the newer proposal came applies nothing.
    let older_id = older.to_string();
    app.post(
        &check,
        &[("p", &older_id), (&format!("c{older_id}"), "accept")],
    )
    .await
    .assert_redirect(&check);
    let page = app.get(&check).await;
    page.assert_contains("a newer proposal")
        .assert_contains("+33699999999")
        .assert_contains(&format!("data-earlier=\"{older}\""))
        .assert_contains("replaced by a newer proposal");
    assert_eq!(values(&pool, s.ada)["phone"], "+33123456789");
    assert!(review_rows(&pool, older).is_empty());
}

#[actix_web::test]
async fn viewers_see_the_lines_but_cannot_decide() {
    let mut app = spawn().await;
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.propose_all(&pool);
    let check = format!("/records/{}/check", s.ada);
    let page = app.get(&check).await;
    page.assert_status(200)
        .assert_contains("id=\"read-only\"")
        .assert_contains("+33612345678");
    assert!(!page.body.contains("type=\"radio\""));
    assert!(!page.body.contains("Accept all"));
    app.get(&format!("/records/{}", s.ada))
        .await
        .assert_contains("See the proposed values");
    let id = pending(&pool, s.ada)["phone"].id.to_string();
    app.post(&check, &[("p", &id), ("all", "accept")])
        .await
        .assert_status(403);
    assert_eq!(pending(&pool, s.ada).len(), 3);
    assert_eq!(values(&pool, s.ada)["phone"], "+33123456789");
}

/// Keep discards the proposal; the next application is pre-filled from the record.
#[actix_web::test]
async fn keep_means_the_next_application_starts_from_the_record() {
    let app = spawn().await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.submit(&pool, s.ada, &[("phone", "06 12 34 56 78")]);
    let id = pending(&pool, s.ada)["phone"].id;
    let outcome = review::decide(
        &mut pool.get().expect("connection"),
        s.ada,
        &[(id, Choice::Keep)],
        &Actor::system("Ann"),
        fr(),
    )
    .expect("decide");
    assert_eq!(outcome.applied.len(), 1);
    let next = processes::create_application(
        &mut pool.get().expect("connection"),
        s.process,
        s.ada,
        &[],
        None,
    )
    .expect("application");
    let answers =
        processes::answers(&mut pool.get().expect("connection"), next.id).expect("answers");
    let phone = answers
        .iter()
        .find(|a| a.item_id == s.items["phone"])
        .expect("pre-filled phone");
    assert_eq!(phone.value, "+33123456789");
}

fn import_source(pool: &DbPool) -> Source {
    let mut conn = pool.get().expect("connection");
    let source =
        sources::create(&mut conn, &common::contacts_by("Books", "External Id")).expect("source");
    let mapping = [
        ("Name", "name", Rule::Always),
        ("Phone", "phone", Rule::Review),
    ]
    .map(|(column, field, rule)| MappingInput {
        column_name: column.into(),
        field_key: field.into(),
        to_record: rule,
        to_source: Rule::Never,
        blanks_clear: false,
    });
    sources::set_mapping(&mut conn, source.id, &mapping).expect("mapping");
    source
}

fn import(app_state: &syncdesk::AppState, source: &Source, csv: &str) -> i64 {
    let data_dir = &app_state.config.data_dir;
    let sha = jobs::store_file(data_dir, csv.as_bytes(), 1024 * 1024).expect("store");
    let run = jobs::enqueue(
        &mut app_state.pool.get().expect("connection"),
        &NewRun {
            source,
            file_name: "books.csv",
            sha256: &sha,
            format: syncdesk::sync::csvfile::detect(csv.as_bytes()),
            dry_run: false,
            plan_of: None,
            flag_confirmed: false,
            user_id: None,
            user_label: "test",
        },
    )
    .expect("enqueue");
    jobs::run_queued(&app_state.pool, data_dir, fr()).expect("run");
    run
}

#[actix_web::test]
async fn lists_and_the_desync_view_count_and_filter() {
    let mut app = spawn().await;
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    s.propose_all(&pool);
    // Bob: a proposal from an import of the source Books.
    let books = import_source(&pool);
    import(
        &app.state,
        &books,
        "External Id,Name,Phone\nB1,Bob,01 11 11 11 11\n",
    );
    let run = import(
        &app.state,
        &books,
        "External Id,Name,Phone\nB1,Bob,06 22 22 22 22\n",
    );
    let bob_id: i64 = proposals::table
        .filter(proposals::origin.eq("import"))
        .select(proposals::record_id)
        .first(&mut pool.get().expect("connection"))
        .expect("bob's proposal");
    // Acme: a company with a proposal of its own.
    let acme = records::create(
        &mut pool.get().expect("connection"),
        RecordKind::Company,
        &RecordInput {
            values: [("name".to_string(), "Acme".to_string())].into(),
            company_id: None,
        },
        &Actor::system("setup"),
        fr(),
    )
    .expect("company")
    .id;
    review::propose(
        &mut pool.get().expect("connection"),
        acme,
        "registration_number",
        "",
        "RCS 123",
        &Actor::system("registry"),
    )
    .expect("propose");

    let counts = |page: &common::Response| {
        let number = |id: &str| {
            let start = page
                .body
                .find(&format!("<strong id=\"{id}\">"))
                .unwrap_or_else(|| panic!("no {id} in {}", page.body))
                + id.len()
                + 14;
            let end = page.body[start..].find('<').expect("end") + start;
            page.body[start..end].parse::<i64>().expect("number")
        };
        (number("desync-records"), number("desync-fields"))
    };
    for (query, expected) in [
        ("", (3, 5)),
        ("?kind=contact", (2, 4)),
        ("?kind=company", (1, 1)),
        (&format!("?source={}", books.id) as &str, (1, 1)),
        (&format!("?process={}", s.process), (1, 3)),
        (&format!("?process={}&kind=company", s.process), (0, 0)),
    ] {
        let page = app.get(&format!("/desync{query}")).await;
        page.assert_status(200);
        assert_eq!(counts(&page), expected, "/desync{query}");
    }
    let by_source = app.get(&format!("/desync?source={}", books.id)).await;
    by_source
        .assert_contains(&format!("data-record=\"{bob_id}\""))
        .assert_contains(&format!("href=\"/runs/{run}\""));
    assert!(!by_source
        .body
        .contains(&format!("data-record=\"{}\"", s.ada)));

    // The lists mark each desynchronised record with its count.
    let contacts = app.get("/contacts").await;
    contacts
        .assert_contains(&format!(
            "href=\"/records/{}/check\" title=\"Desynchronised: 3 fields",
            s.ada
        ))
        .assert_contains(&format!(
            "href=\"/records/{bob_id}/check\" title=\"Desynchronised: 1 field "
        ))
        .assert_contains("href=\"/desync?kind=contact\"");
    app.get("/companies")
        .await
        .assert_contains(&format!("href=\"/records/{acme}/check\""));
    app.get("/")
        .await
        .assert_contains("3 desynchronised records, 5 fields to check");
    // The source's and the process's pages lead to their own proposals.
    app.get(&format!("/sources/{}", books.id))
        .await
        .assert_contains("1 record</strong> has 1 field proposed by this source&#39;s imports")
        .assert_contains(&format!("href=\"/desync?source={}\"", books.id));
    app.get(&format!("/processes/{}", s.process))
        .await
        .assert_contains("1 record</strong> has 3 fields proposed")
        .assert_contains(&format!("href=\"/desync?process={}\"", s.process));
    // htmx asks for the results only.
    let fragment = app.htmx(Method::GET, "/desync?kind=company").await;
    fragment.assert_contains("id=\"desync-results\"");
    assert!(!fragment.body.contains("<html"));

    // Keyset pages: one record a page walks all three, in record order, once each.
    let mut conn = pool.get().expect("connection");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            review::desynchronised(&mut conn, &DesyncFilter::default(), after, 1).expect("page");
        assert_eq!(
            (page.records.count, page.fields.count, page.records.more),
            (3, 5, false)
        );
        seen.extend(page.entries.iter().map(|e| e.record.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = vec![s.ada, bob_id, acme];
    sorted.sort();
    assert_eq!(seen, sorted);
}

/// A proposal to blank a required field (a source sending an empty name with "blanks clear")
/// cannot be accepted: the record would lose its name.
#[actix_web::test]
async fn a_blank_required_field_cannot_be_accepted() {
    let app = spawn().await;
    let pool = app.state.pool.clone();
    let s = setup(&pool);
    let mut conn = pool.get().expect("connection");
    review::propose(
        &mut conn,
        s.ada,
        "name",
        "Ada Lovelace",
        "",
        &Actor::system("feed"),
    )
    .expect("propose");
    let id = pending(&pool, s.ada)["name"].id;
    let refused = review::decide(
        &mut conn,
        s.ada,
        &[(id, Choice::Accept)],
        &Actor::system("Ann"),
        fr(),
    );
    match refused {
        Err(review::ReviewError::Invalid(errors)) => {
            assert_eq!(errors[&id], "Name cannot be blank; keep it instead.")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(values(&pool, s.ada)["name"], "Ada Lovelace");
    assert_eq!(proposal(&pool, id).status.as_str(), "pending");
}

#[actix_web::test]
async fn desynchronised_totals_are_exact_past_ten_thousand_and_follow_every_decision() {
    use syncdesk::records::writer::{self, Catalog, Edit, RecordState};
    use syncdesk::review::totals;
    let mut app = spawn().await;
    let cap = review::DESYNC_COUNT_CAP;
    let all = DesyncFilter::default();
    let counted = |conn: &mut syncdesk::db::DbConn, filter: &DesyncFilter| {
        let (records, fields) = review::totals(conn, filter).expect("totals");
        (records.count, records.more, fields.count, fields.more)
    };
    let (source, first) = {
        let mut conn = app.state.pool.get().expect("connection");
        let source = sources::create(&mut conn, &common::contacts_by("CRM", "Id")).expect("source");
        let catalog = Catalog::load(&mut conn).expect("catalog");
        let edits: Vec<Edit> = (0..=cap)
            .map(|i| {
                let mut state = RecordState::blank(RecordKind::Contact);
                state.name = format!("Person {i}");
                Edit::create(state)
            })
            .collect();
        let proposed = |ids: &[i64], key: &str| -> Vec<review::NewProposal> {
            ids.iter()
                .map(|id| review::NewProposal {
                    record_id: *id,
                    field_key: key.into(),
                    current: String::new(),
                    proposed: format!("{key} {id}"),
                })
                .collect()
        };
        let ids = syncdesk::db::write_tx(&mut conn, |conn| -> diesel::QueryResult<Vec<i64>> {
            let written = writer::apply(conn, &catalog, &edits, &Actor::system("test"))?;
            let ids: Vec<i64> = written.iter().map(|w| w.record_id).collect();
            review::propose_many(
                conn,
                &proposed(&ids, "email"),
                RecordKind::Contact,
                source.id,
                &Actor::system("test"),
            )?;
            Ok(ids)
        })
        .expect("proposals");
        assert_eq!(counted(&mut conn, &all), (cap + 1, false, cap + 1, false));
        // A source's view is counted up to the cap.
        let from_source = DesyncFilter {
            source_id: Some(source.id),
            ..Default::default()
        };
        assert!(counted(&mut conn, &from_source).1);
        let companies = DesyncFilter {
            kind: Some(RecordKind::Company),
            ..Default::default()
        };
        assert_eq!(counted(&mut conn, &companies), (0, false, 0, false));
        // A second field of the first record, then the same field proposed again (replaced).
        for key in ["phone", "phone"] {
            syncdesk::db::write_tx(&mut conn, |conn| {
                review::propose_many(
                    conn,
                    &proposed(&ids[..1], key),
                    RecordKind::Contact,
                    source.id,
                    &Actor::system("test"),
                )
            })
            .expect("second field");
        }
        assert_eq!(counted(&mut conn, &all), (cap + 1, false, cap + 2, false));
        (source, ids[0])
    };
    assert_eq!(source.name, "CRM");
    // Deciding one of the first record's two fields leaves it desynchronised; the other not.
    let pending = {
        let mut conn = app.state.pool.get().expect("connection");
        review::pending_for(&mut conn, first).expect("pending")
    };
    assert_eq!(pending.len(), 2);
    for (n, p) in pending.iter().enumerate() {
        let mut conn = app.state.pool.get().expect("connection");
        review::decide(
            &mut conn,
            first,
            &[(p.id, Choice::Keep)],
            &Actor::system("Ann"),
            fr(),
        )
        .expect("decided");
        let left = if n == 0 { cap + 1 } else { cap };
        assert_eq!(
            counted(&mut conn, &all),
            (left, false, cap + 1 - n as i64, false)
        );
    }
    let mut conn = app.state.pool.get().expect("connection");
    assert_eq!(totals::differences(&mut conn).expect("check"), vec![]);
    // Merged, the same; a wrong total is put right by counting afresh.
    totals::merge(&mut conn).expect("merge");
    assert_eq!(
        syncdesk::schema::desync_counts::table
            .count()
            .get_result::<i64>(&mut conn)
            .expect("rows"),
        1
    );
    assert_eq!(totals::differences(&mut conn).expect("check"), vec![]);
    diesel::update(syncdesk::schema::desync_counts::table)
        .set(syncdesk::schema::desync_counts::records.eq(0))
        .execute(&mut conn)
        .expect("tamper");
    assert_eq!(totals::differences(&mut conn).expect("check").len(), 1);
    totals::recount(&mut conn).expect("recount");
    assert_eq!(totals::differences(&mut conn).expect("check"), vec![]);
    assert_eq!(counted(&mut conn, &all), (cap, false, cap, false));
    drop(conn);
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    app.get("/desync")
        .await
        .assert_status(200)
        .assert_contains("<strong id=\"desync-records\">10,000</strong> desynchronised records");
}
