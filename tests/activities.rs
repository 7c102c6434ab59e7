//! Activities: sent through the API by each way of naming the contact, idempotent, refused for
//! an unknown or ambiguous contact; logged on the contact page; the timeline's pages; the
//! list's filters and export. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use actix_web::test::TestRequest;
use serde_json::{json, Value};
use syncdesk::api::model::Scope;
use syncdesk::api::service::{self as tokens, NewToken};
use syncdesk::auth::model::Role;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;

fn contact(state: &syncdesk::AppState, name: &str, email: &str) -> i64 {
    records::create(
        &mut state.pool.get().expect("connection"),
        RecordKind::Contact,
        &RecordInput {
            values: [("name", name), ("email", email)]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            company_id: None,
        },
        &Actor::system("setup"),
        PhoneCountry::parse("GB").expect("country"),
    )
    .expect("contact")
    .id
}

/// The source a dialer sends activities through.
fn dialer(conn: &mut syncdesk::db::DbConn) -> syncdesk::sources::model::Source {
    use syncdesk::sources::service as sources;
    sources::create(conn, &common::contacts_by("Dialer", "Id")).expect("source")
}

/// Links a contact to a source's external id, as an import of that source would have.
fn link(conn: &mut syncdesk::db::DbConn, record_id: i64, source_id: i64, external_id: &str) {
    use diesel::prelude::*;
    use syncdesk::schema::record_links;
    diesel::insert_into(record_links::table)
        .values((
            record_links::record_id.eq(record_id),
            record_links::source_id.eq(source_id),
            record_links::external_id.eq(external_id),
            record_links::created_at.eq(syncdesk::db::now()),
        ))
        .execute(conn)
        .expect("link");
}

fn token(state: &syncdesk::AppState, scopes: &[Scope]) -> String {
    tokens::create(
        &mut state.pool.get().expect("connection"),
        &NewToken {
            name: "dialer".into(),
            scopes: scopes.to_vec(),
            source_id: None,
            created_by: None,
        },
    )
    .expect("token")
    .1
}

fn post(secret: &str, body: Value) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/activities")
        .insert_header(("Authorization", format!("Bearer {secret}")))
        .set_json(body)
}

fn count(state: &syncdesk::AppState) -> i64 {
    use diesel::prelude::*;
    syncdesk::schema::activities::table
        .count()
        .get_result(&mut state.pool.get().expect("connection"))
        .expect("count")
}

#[actix_web::test]
async fn activities_come_in_by_id_external_id_or_email_once_each() {
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    contact(&app.state, "Twin One", "twin@example.org");
    contact(&app.state, "Twin Two", "twin@example.org");
    let source = {
        let mut conn = app.state.pool.get().expect("connection");
        let source = dialer(&mut conn);
        link(&mut conn, ann, source.id, "D-17");
        source
    };
    let secret = token(&app.state, &[Scope::ActivitiesWrite]);
    let call = |contact: Value, external_id: &str| {
        json!({
            "contact": contact,
            "type": "call",
            "occurred_at": "2026-11-30T10:15:00Z",
            "subject": "Renewal call",
            "external_id": external_id,
            "source_id": source.id,
            "attributes": {"outcome": "answered", "duration": 184, "caller_id": "+442079460101"}
        })
    };

    let res = app
        .send(post(&secret, call(json!({"id": ann}), "c-1")))
        .await;
    res.assert_status(201);
    let first: Value = serde_json::from_str(&res.body).expect("json");
    assert_eq!(first["created"], true);
    // Sent again: nothing changes, the same activity answers.
    let res = app
        .send(post(&secret, call(json!({"id": ann}), "c-1")))
        .await;
    res.assert_status(200);
    let again: Value = serde_json::from_str(&res.body).expect("json");
    assert_eq!(
        (again["id"].clone(), again["created"].clone()),
        (first["id"].clone(), json!(false))
    );
    app.send(post(
        &secret,
        call(json!({"email": "ANN@lee.example"}), "c-2"),
    ))
    .await
    .assert_status(201);
    app.send(post(
        &secret,
        call(
            json!({"source_id": source.id, "external_id": "D-17"}),
            "c-3",
        ),
    ))
    .await
    .assert_status(201);
    assert_eq!(count(&app.state), 3);

    // Never attached to a guess.
    let res = app
        .send(post(
            &secret,
            call(json!({"email": "nobody@example.org"}), "c-4"),
        ))
        .await;
    res.assert_status(422)
        .assert_contains("There is no contact with the email");
    let res = app
        .send(post(
            &secret,
            call(json!({"email": "twin@example.org"}), "c-5"),
        ))
        .await;
    res.assert_status(422)
        .assert_contains("Several contacts match");
    let mut unknown_type = call(json!({"id": ann}), "c-6");
    unknown_type["type"] = json!("fax");
    app.send(post(&secret, unknown_type))
        .await
        .assert_status(422)
        .assert_contains("'fax' is not an activity type: ");
    let reader = token(&app.state, &[Scope::RecordsRead]);
    app.send(post(&reader, call(json!({"id": ann}), "c-7")))
        .await
        .assert_status(403);
    assert_eq!(count(&app.state), 3);

    // The contact's timeline and the list show them, with what they came with.
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    app.get(&format!("/records/{ann}/activities"))
        .await
        .assert_status(200)
        .assert_contains("Renewal call")
        .assert_contains("duration: 184");
    app.get("/activities?type=call&outcome=answered&from=2026-11-30&to=2026-11-30")
        .await
        .assert_contains("Renewal call");
    let none = app.get("/activities?from=2026-12-01").await;
    none.assert_contains("No activities to show.");
    let csv = app.get("/activities/export.csv?type=call").await;
    csv.assert_status(200);
    assert_eq!(csv.body.lines().count(), 4, "{}", csv.body);
    assert!(csv.body.contains("Renewal call"));
}

/// The export opens in a spreadsheet: who logged an activity (its origin) is a user's name,
/// which may be a formula; no cell of the export is one.
#[actix_web::test]
async fn the_activities_export_is_safe_in_a_spreadsheet() {
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "@Ann", "");
    let editor = app.create_user("editor@example.org", Role::Editor);
    {
        use diesel::prelude::*;
        use syncdesk::schema::users;
        diesel::update(users::table.filter(users::id.eq(editor)))
            .set(users::display_name.eq("=USER()"))
            .execute(&mut app.state.pool.get().expect("connection"))
            .expect("rename");
    }
    app.sign_in("editor@example.org", common::PASSWORD)
        .await
        .assert_redirect("/");
    app.get(&format!("/records/{ann}")).await;
    app.htmx_form(
        &format!("/records/{ann}/activities"),
        &[
            ("type".to_string(), "call".to_string()),
            ("occurred_at".to_string(), String::new()),
            ("subject".to_string(), "+1+1".to_string()),
            ("body".to_string(), "-plain".to_string()),
            ("outcome".to_string(), "=1".to_string()),
        ],
    )
    .await
    .assert_status(200);
    let csv = app.get("/activities/export.csv").await;
    csv.assert_status(200);
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let origin = headers.iter().position(|h| h == "origin").expect("origin");
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 1, "{}", csv.body);
    assert!(rows[0][origin].starts_with("'"), "{}", csv.body);
    assert!(rows[0][origin].contains("=USER()"), "{}", csv.body);
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?} in {}",
            csv.body
        );
    }
}

#[actix_web::test]
async fn a_token_of_one_source_logs_activities_only_on_contacts_linked_to_it() {
    use diesel::prelude::*;
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    let hedy = contact(&app.state, "Hedy Lamarr", "hedy@example.org");
    let twin = contact(&app.state, "Twin One", "twin@example.org");
    contact(&app.state, "Twin Two", "twin@example.org");
    let (source, crm) = {
        let mut conn = app.state.pool.get().expect("connection");
        syncdesk::fields::service::create(
            &mut conn,
            RecordKind::Contact,
            &syncdesk::fields::service::NewField {
                key: "last_outcome".into(),
                label: "Last outcome".into(),
                field_type: "text".into(),
                options: String::new(),
            },
        )
        .expect("field");
        let source = dialer(&mut conn);
        let crm = syncdesk::sources::service::create(&mut conn, &common::contacts_by("CRM", "Id"))
            .expect("source");
        syncdesk::activities::mapping::save(
            &mut conn,
            source.id,
            "call",
            "",
            "",
            &[syncdesk::activities::mapping::FieldUpdate {
                field: "last_outcome".into(),
                template: "{{ outcome }}".into(),
                rule: "review".into(),
            }],
        )
        .expect("mapping");
        link(&mut conn, ann, source.id, "D-1");
        link(&mut conn, twin, source.id, "D-2");
        link(&mut conn, hedy, crm.id, "C-9");
        (source, crm)
    };
    let secret = tokens::create(
        &mut app.state.pool.get().expect("connection"),
        &NewToken {
            name: "dialer".into(),
            scopes: vec![Scope::ActivitiesWrite],
            source_id: Some(source.id),
            created_by: None,
        },
    )
    .expect("token")
    .1;
    let call = |contact: Value, external_id: &str| {
        json!({
            "contact": contact,
            "type": "call",
            "external_id": external_id,
            "attributes": {"outcome": "answered"}
        })
    };
    let state = app.state.clone();
    let proposals = || -> i64 {
        syncdesk::schema::proposals::table
            .count()
            .get_result(&mut state.pool.get().expect("connection"))
            .expect("count")
    };

    // Hedy exists but is not the dialer's: answered exactly as an e-mail nobody has.
    let hedy_by_email = app
        .send(post(
            &secret,
            call(json!({"email": "hedy@example.org"}), "h-1"),
        ))
        .await;
    let nobody = app
        .send(post(
            &secret,
            call(json!({"email": "nobody@example.org"}), "h-1"),
        ))
        .await;
    hedy_by_email.assert_status(422);
    assert_eq!(
        hedy_by_email.body.replace("hedy@example.org", "X"),
        nobody.body.replace("nobody@example.org", "X")
    );
    assert_eq!(
        hedy_by_email.header("content-type"),
        Some("application/problem+json")
    );
    // By id, and by another source's external id: the same.
    let by_id = app
        .send(post(&secret, call(json!({"id": hedy}), "h-2")))
        .await;
    let no_id = app
        .send(post(&secret, call(json!({"id": 999_999}), "h-2")))
        .await;
    by_id.assert_status(422);
    assert_eq!(
        by_id.body.replace(&format!("#{hedy}:"), "#N:"),
        no_id.body.replace("#999999:", "#N:")
    );
    app.send(post(
        &secret,
        call(json!({"source_id": crm.id, "external_id": "C-9"}), "h-3"),
    ))
    .await
    .assert_status(422)
    .assert_contains("There is no contact of source");
    assert_eq!((count(&app.state), proposals()), (0, 0));

    // Its own contacts: logged, and the mapping proposes on them.
    app.send(post(
        &secret,
        call(json!({"email": "ann@lee.example"}), "a-1"),
    ))
    .await
    .assert_status(201);
    // Of two contacts sharing an e-mail, only one is the dialer's: that one.
    let res = app
        .send(post(
            &secret,
            call(json!({"email": "twin@example.org"}), "t-1"),
        ))
        .await;
    res.assert_status(201);
    let logged: Value = serde_json::from_str(&res.body).expect("json");
    let on: i64 = syncdesk::schema::activities::table
        .find(logged["id"].as_i64().expect("id"))
        .select(syncdesk::schema::activities::record_id)
        .first(&mut app.state.pool.get().expect("connection"))
        .expect("activity");
    assert_eq!(on, twin);
    assert_eq!((count(&app.state), proposals()), (2, 2));
}

#[actix_web::test]
async fn an_activity_naming_an_unknown_source_is_refused_with_422() {
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    let secret = token(&app.state, &[Scope::ActivitiesWrite]);
    let res = app
        .send(post(
            &secret,
            json!({"contact": {"id": ann}, "type": "call", "source_id": 999_999}),
        ))
        .await;
    res.assert_status(422)
        .assert_contains("source_id")
        .assert_contains("There is no source #999999");
    assert_eq!(count(&app.state), 0);
}

#[actix_web::test]
async fn the_contact_page_logs_activities_and_pages_its_timeline() {
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "");
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    app.get(&format!("/records/{ann}"))
        .await
        .assert_contains(&format!("hx-get=\"/records/{ann}/activities\""));
    let refused = app
        .post(&format!("/records/{ann}/activities"), &[("type", "note")])
        .await;
    refused.assert_status(403);

    app.signed_in_as("editor@example.org", Role::Editor).await;
    app.get(&format!("/records/{ann}")).await;
    let form = |kind: &str, subject: &str| {
        vec![
            ("type".to_string(), kind.to_string()),
            ("occurred_at".to_string(), String::new()),
            ("subject".to_string(), subject.to_string()),
            (
                "body".to_string(),
                "Asked for the new price list.".to_string(),
            ),
            ("outcome".to_string(), "answered".to_string()),
        ]
    };
    // A mistake comes back with what was typed.
    let bad = app
        .htmx_form(
            &format!("/records/{ann}/activities"),
            &form("fax", "First call"),
        )
        .await;
    bad.assert_status(422)
        .assert_contains("&#39;fax&#39; is not an activity type")
        .assert_contains("value=\"First call\"");
    for n in 1..=25 {
        app.htmx_form(
            &format!("/records/{ann}/activities"),
            &form("call", &format!("Call number {n}")),
        )
        .await
        .assert_status(200);
    }
    // Newest first, twenty at a time.
    let first = app.get(&format!("/records/{ann}/activities")).await;
    first
        .assert_contains("Call number 25")
        .assert_contains("Older activities");
    assert!(!first.body.contains("Call number 5<"), "page one ends at 6");
    let before = first
        .body
        .split("activities?before=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("older link")
        .to_string();
    let older = app
        .get(&format!("/records/{ann}/activities?before={before}"))
        .await;
    older
        .assert_contains("Call number 5<")
        .assert_contains("Call number 1<");
    assert!(!older.body.contains("Older activities"));
    assert!(!older.body.contains("Call number 6<"));
}

#[actix_web::test]
async fn a_sources_mapping_writes_entries_from_attributes_and_updates_fields_by_rule() {
    use diesel::prelude::*;
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    let source = {
        let mut conn = app.state.pool.get().expect("connection");
        for key in ["last_outcome", "last_list", "last_caller", "never_set"] {
            syncdesk::fields::service::create(
                &mut conn,
                RecordKind::Contact,
                &syncdesk::fields::service::NewField {
                    key: key.into(),
                    label: key.into(),
                    field_type: "text".into(),
                    options: String::new(),
                },
            )
            .expect("field");
        }
        dialer(&mut conn)
    };
    app.signed_in_as("admin@example.org", Role::Admin).await;
    let url = format!("/sources/{}/activity-mapping", source.id);
    app.get(&format!("{url}?type=call"))
        .await
        .assert_status(200)
        .assert_contains("id=\"variable-picker\"")
        .assert_contains("caller_id");
    let form = |subject: &str| {
        vec![
            ("type", "call".to_string()),
            ("subject", subject.to_string()),
            (
                "body",
                "{{ comments }} (wrap time {{ wrap_time }} s, re {{ email_subject }})".to_string(),
            ),
            ("u0.field", "last_outcome".to_string()),
            ("u0.template", "{{ outcome }}".to_string()),
            ("u0.rule", "review".to_string()),
            ("u1.field", "last_list".to_string()),
            ("u1.template", "{{ list_name }}".to_string()),
            ("u1.rule", "always".to_string()),
            ("u2.field", "last_caller".to_string()),
            ("u2.template", "{{ caller_id }}".to_string()),
            ("u2.rule", "fill_blanks".to_string()),
            ("u3.field", "never_set".to_string()),
            ("u3.template", "{{ outcome }}".to_string()),
            ("u3.rule", "never".to_string()),
        ]
    };
    // The form with this subject, as the save and the preview's htmx request send it.
    let preview = |subject: &str| -> Vec<(String, String)> {
        form(subject)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    // The live preview, with a sample activity.
    let preview_form = preview("{{ outcome }} call, {{ duration }} s");
    app.htmx_form(&format!("{url}/preview"), &preview_form)
        .await
        .assert_status(200)
        .assert_contains("answered call, 184 s")
        .assert_contains("last_outcome ← “answered” (review)");
    // A syntax error is refused with its line; what was typed stays.
    app.post(&url, &pairs(&preview("{{ outcome call")))
        .await
        .assert_status(422)
        .assert_contains("Subject, line 1:")
        .assert_contains("value=\"{{ outcome call\"");
    // A variable no activity of this source carries, or a construct templates may not use,
    // is refused at save and in the preview, with the variables there are.
    app.post(&url, &pairs(&preview("{{ campaign }} call")))
        .await
        .assert_status(422)
        .assert_contains(
            "Subject: unknown variable campaign; the variables are body, caller_id, comments",
        )
        .assert_contains("value=\"{{ campaign }} call\"");
    let preview_unknown = preview("{{ campaign }} call");
    app.htmx_form(&format!("{url}/preview"), &preview_unknown)
        .await
        .assert_contains("Subject: unknown variable campaign");
    app.post(&url, &pairs(&preview("{% set x = outcome %}{{ x }}")))
        .await
        .assert_status(422)
        .assert_contains("Subject, line 1: `set` is not allowed in these templates");
    app.post(
        &url,
        &pairs(&preview("{{ outcome }} call, {{ duration }} s")),
    )
    .await
    .assert_status(303);

    let secret = token(&app.state, &[Scope::ActivitiesWrite]);
    app.send(post(
        &secret,
        json!({
            "contact": {"id": ann},
            "type": "call",
            "source_id": source.id,
            "external_id": "call-77",
            "attributes": {"outcome": "left a message", "duration": 35, "comments": "Call back Friday", "wrap_time": 12, "list_name": "Renewals", "email_subject": "Quote", "caller_id": "+44 20 7946 0000"}
        }),
    ))
    .await
    .assert_status(201);
    let mut conn = app.state.pool.get().expect("connection");
    let (subject, body): (String, String) = syncdesk::schema::activities::table
        .select((
            syncdesk::schema::activities::subject,
            syncdesk::schema::activities::body,
        ))
        .first(&mut conn)
        .expect("activity");
    assert_eq!(subject, "left a message call, 35 s");
    assert_eq!(body, "Call back Friday (wrap time 12 s, re Quote)");
    // `always` wrote the list (with history); `review` proposed the outcome.
    let ann_row = records::find(&mut conn, ann).expect("find").expect("Ann");
    let defs =
        syncdesk::fields::service::list(&mut conn, RecordKind::Contact, false).expect("defs");
    let values = records::values(&mut conn, &ann_row, &defs).expect("values");
    assert_eq!(
        values.get("last_list").map(String::as_str),
        Some("Renewals")
    );
    assert_eq!(values.get("last_outcome").map(String::as_str), Some(""));
    assert_eq!(
        values.get("last_caller").map(String::as_str),
        Some("+44 20 7946 0000"),
        "fill_blanks fills an empty field"
    );
    assert_eq!(
        values.get("never_set").map(String::as_str),
        Some(""),
        "never writes nothing"
    );
    let pending = syncdesk::review::service::pending_for(&mut conn, ann).expect("proposals");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].field_key.as_str(),
            pending[0].proposed_value.as_str()
        ),
        ("last_outcome", "left a message")
    );
    let history: i64 = syncdesk::schema::record_history::table
        .filter(syncdesk::schema::record_history::record_id.eq(ann))
        .filter(syncdesk::schema::record_history::field_key.eq("last_list"))
        .count()
        .get_result(&mut conn)
        .expect("history");
    assert_eq!(history, 1);
    drop(conn);
    // An attribute this source has sent ("campaign") is now a variable, offered by the picker;
    // the preview's sample is the newest activity.
    app.send(post(
        &secret,
        json!({
            "contact": {"id": ann},
            "type": "call",
            "source_id": source.id,
            "external_id": "call-78",
            "attributes": {"outcome": "answered", "duration": 61, "campaign": "Winter offer"}
        }),
    ))
    .await
    .assert_status(201);
    app.get(&format!("{url}?type=call"))
        .await
        .assert_contains("<option value=\"campaign\">campaign</option>")
        .assert_contains("campaign = Winter offer");
    let with_campaign = preview("{{ outcome }} ({{ campaign }})");
    app.htmx_form(&format!("{url}/preview"), &with_campaign)
        .await
        .assert_contains("answered (Winter offer)");
    // A refused new type and a filter the list cannot read come back on the list (422).
    app.post(
        "/activities/types",
        &[("key", "Bad Key"), ("label", "Product demo")],
    )
    .await
    .assert_status(422)
    .assert_contains("value=\"Product demo\"");
    app.get("/activities?from=yesterday")
        .await
        .assert_status(422)
        .assert_contains("is not written YYYY-MM-DD");
    // Archiving a field the mapping updates warns on the Fields page.
    let last_list = field_id(&app.state, "last_list");
    app.post(
        &format!("/fields/{last_list}/archive"),
        &[("archived", "true")],
    )
    .await;
    app.get("/fields?kind=contact")
        .await
        .assert_contains(&format!(
            "Warning: the activity mapping(s) {}: call update it",
            source.name
        ));
    // An archived field gets no update, not even a proposal under `review`.
    let last_outcome = field_id(&app.state, "last_outcome");
    app.post(
        &format!("/fields/{last_outcome}/archive"),
        &[("archived", "true")],
    )
    .await;
    let proposed = |state: &syncdesk::AppState| {
        syncdesk::review::service::pending_for(&mut state.pool.get().expect("connection"), ann)
            .expect("proposals")
            .into_iter()
            .map(|p| (p.field_key, p.proposed_value))
            .collect::<Vec<_>>()
    };
    let before = proposed(&app.state);
    assert!(!before.is_empty());
    app.send(post(
        &secret,
        json!({
            "contact": {"id": ann},
            "type": "call",
            "source_id": source.id,
            "external_id": "call-79",
            "attributes": {"outcome": "busy", "duration": 3}
        }),
    ))
    .await
    .assert_status(201);
    assert_eq!(proposed(&app.state), before);
}

/// The id of a contact field, by key.
fn field_id(state: &syncdesk::AppState, key: &str) -> i64 {
    use diesel::prelude::*;
    syncdesk::schema::field_defs::table
        .filter(syncdesk::schema::field_defs::key.eq(key))
        .select(syncdesk::schema::field_defs::id)
        .first(&mut state.pool.get().expect("connection"))
        .expect("field")
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs every queued import of the test app (as the background worker would).
fn run_imports(state: &syncdesk::AppState) {
    syncdesk::sync::jobs::run_queued(
        &state.pool,
        &state.config.data_dir,
        PhoneCountry::parse("GB").expect("country"),
    )
    .expect("run");
}

fn run_of(state: &syncdesk::AppState, id: i64) -> syncdesk::sync::model::ImportRun {
    syncdesk::sync::model::load_run(&mut state.pool.get().expect("connection"), id)
        .expect("load")
        .expect("run")
}

/// Uploads a file on the source page and starts it from its preview; the run's id.
async fn import_file<S, B>(
    app: &mut common::TestApp<S>,
    source_id: i64,
    csv: &[u8],
    action: &str,
) -> i64
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let res = app
        .upload(
            &format!("/sources/{source_id}/imports"),
            "calls.csv",
            csv,
            true,
        )
        .await;
    let preview = res.location().expect("preview").to_string();
    app.get(&preview).await.assert_status(200);
    let start = app
        .post(
            &format!("{}/run", preview.split('?').next().unwrap_or_default()),
            &[
                ("file_name", "calls.csv"),
                ("encoding", "utf-8"),
                ("delimiter", ","),
                ("action", action),
            ],
        )
        .await;
    let run: i64 = start
        .location()
        .and_then(|l| l.strip_prefix("/runs/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("run page: {} {}", start.status, start.body));
    run_imports(&app.state);
    run
}

#[actix_web::test]
async fn a_dialer_file_logs_each_call_once_on_the_contact_it_names() {
    use diesel::prelude::*;
    use syncdesk::schema::activities;
    use syncdesk::sources::service as sources;
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    let crm = {
        let mut conn = app.state.pool.get().expect("connection");
        syncdesk::fields::service::create(
            &mut conn,
            RecordKind::Contact,
            &syncdesk::fields::service::NewField {
                key: "last_outcome".into(),
                label: "Last call outcome".into(),
                field_type: "text".into(),
                options: String::new(),
            },
        )
        .expect("field");
        let crm = sources::create(&mut conn, &common::contacts_by("CRM", "Id")).expect("source");
        link(&mut conn, ann, crm.id, "C-7");
        crm
    };
    app.signed_in_as("admin@example.org", Role::Admin).await;
    app.get("/sources/new")
        .await
        .assert_status(200)
        .assert_contains("activities of contacts")
        .assert_contains(&format!("<option value=\"{}\">CRM</option>", crm.id));
    // A source of activities needs each activity's own id.
    let crm_id = crm.id.to_string();
    app.post(
        "/sources",
        &[
            ("name", "Dialer calls"),
            ("kind", "activity"),
            ("key", "id"),
            ("id_column", ""),
            ("contacts_from", &crm_id),
            ("activity_type", "call"),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("each activity&#39;s own id");
    app.post(
        "/sources",
        &[
            ("name", "Dialer calls"),
            ("kind", "activity"),
            ("key", "id"),
            ("id_column", "Call ID"),
            ("mode", "full"),
            ("contacts_from", &crm_id),
            ("activity_type", "call"),
        ],
    )
    .await
    .assert_status(303);
    let source = sources::find_by_name(&mut app.state.pool.get().expect("conn"), "Dialer calls")
        .expect("find")
        .expect("source");
    assert!(source.carries_activities());
    assert_eq!(
        source.mode, "delta",
        "activities are never missing from a source"
    );
    let page = app.get(&format!("/sources/{}", source.id)).await;
    page.assert_status(200)
        .assert_contains("activities of contacts")
        .assert_contains("list=\"activity-targets\"");

    // The mapping proposed from a dialer's export, part by part.
    let file = "Call ID,Customer ID,Start Time,Call Outcome,Agent Comments,Talk Time\n\
        c1,C-7,2026-11-30 14:05,answered,Wants a quote,184\n\
        c2,C-404,2026-11-30 14:10,no answer,,0\n\
        c3,C-7,30/11/2026,answered,,5\n\
        c1,C-7,2026-11-30 14:05,answered,Again,184\n\
        ,C-7,2026-11-30 14:20,answered,,1\n\
        c4,C-7,2026-11-30T15:00:00Z,voicemail,Left a message,30\n";
    app.upload(
        &format!("/sources/{}/propose", source.id),
        "calls.csv",
        file.as_bytes(),
        true,
    )
    .await
    .assert_status(200)
    .assert_contains("value=\"contact_external_id\"")
    .assert_contains("value=\"occurred_at\"")
    .assert_contains("value=\"outcome\"")
    .assert_contains("value=\"duration\"");
    // An unknown part name is refused with the column; a good mapping saves.
    let line = |i: usize, column: &'static str, field: &'static str| {
        [
            (format!("m{i}.column"), column),
            (format!("m{i}.field"), field),
            (format!("m{i}.to_record"), "always"),
            (format!("m{i}.to_source"), "never"),
        ]
    };
    let mapping: Vec<(String, &str)> = [
        line(0, "Customer ID", "contact_external_id"),
        line(1, "Start Time", "occurred_at"),
        line(2, "Call Outcome", "outcome"),
        line(3, "Agent Comments", "comments"),
        line(4, "Talk Time", "duration"),
    ]
    .concat();
    let mut bad = mapping.clone();
    bad.push(("m5.column".into(), "Agent"));
    bad.push(("m5.field".into(), "Agent Name"));
    bad.push(("m5.to_record".into(), "always"));
    bad.push(("m5.to_source".into(), "never"));
    let as_pairs = |v: &[(String, &'static str)]| -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    };
    let bad = as_pairs(&bad);
    app.post(&format!("/sources/{}/mapping", source.id), &pairs(&bad))
        .await
        .assert_status(422)
        .assert_contains("Column &#39;Agent&#39;: &#39;Agent Name&#39; is neither a part of an activity nor an attribute name");
    let good = as_pairs(&mapping);
    app.post(&format!("/sources/{}/mapping", source.id), &pairs(&good))
        .await
        .assert_status(303);
    // The entry's subject from the call's attributes; the outcome goes to the contact.
    syncdesk::activities::mapping::save(
        &mut app.state.pool.get().expect("conn"),
        source.id,
        "call",
        "Call: {{ outcome }} ({{ duration }} s)",
        "",
        &[syncdesk::activities::mapping::FieldUpdate {
            field: "last_outcome".into(),
            template: "{{ outcome }}".into(),
            rule: "always".into(),
        }],
    )
    .expect("activity mapping");

    // A dry run logs nothing.
    let dry = import_file(&mut app, source.id, file.as_bytes(), "dry_run").await;
    assert_eq!(run_of(&app.state, dry).count("created"), 2);
    assert_eq!(count(&app.state), 0);

    let run = import_file(&mut app, source.id, file.as_bytes(), "apply").await;
    let done = run_of(&app.state, run);
    assert_eq!(done.error, None);
    assert_eq!(
        (
            done.count("created"),
            done.count("unchanged"),
            done.count("error")
        ),
        (2, 1, 3),
        "{:?}",
        done.counts()
    );
    let page = app.get(&format!("/runs/{run}")).await;
    page.assert_status(200)
        .assert_contains("Line 3: there is no contact of source #")
        .assert_contains("with the id &#39;C-404&#39;: the activity was not logged.")
        .assert_contains("Line 4: column &#39;Start Time&#39;: &#39;30/11/2026&#39; is not a time")
        .assert_contains("Line 5: the same activity id as line 2")
        .assert_contains("Line 6: the activity&#39;s id is empty")
        .assert_contains("call of 2026-11-30 15:00 logged on Ann Lee")
        .assert_contains(&format!("/activities?source={}", source.id));
    assert!(!page.body.contains("Undo this run"));
    {
        let mut conn = app.state.pool.get().expect("conn");
        let logged: Vec<(String, String, String, i64)> = activities::table
            .order(activities::occurred_at.asc())
            .select((
                activities::external_id,
                activities::subject,
                activities::attributes,
                activities::record_id,
            ))
            .load(&mut conn)
            .expect("activities");
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0].0, "c1");
        assert_eq!(logged[0].1, "Call: answered (184 s)");
        assert!(logged[0].2.contains("\"comments\":\"Wants a quote\""));
        assert_eq!(logged[1].1, "Call: voicemail (30 s)");
        assert!(logged.iter().all(|l| l.3 == ann));
        // The last call's outcome, written with history under the import run.
        let ann_row = records::find(&mut conn, ann).expect("find").expect("Ann");
        let defs =
            syncdesk::fields::service::list(&mut conn, RecordKind::Contact, false).expect("defs");
        let values = records::values(&mut conn, &ann_row, &defs).expect("values");
        assert_eq!(
            values.get("last_outcome").map(String::as_str),
            Some("voicemail")
        );
        let history: i64 = syncdesk::schema::record_history::table
            .filter(syncdesk::schema::record_history::record_id.eq(ann))
            .filter(syncdesk::schema::record_history::field_key.eq("last_outcome"))
            .filter(syncdesk::schema::record_history::origin_id.eq(run))
            .count()
            .get_result(&mut conn)
            .expect("history");
        assert_eq!(history, 1);
        // Activities are kept: the run cannot be undone.
        let refused =
            syncdesk::sync::undo::request_undo(&mut conn, run, &Actor::system("test"), false)
                .expect_err("refused");
        assert!(
            refused.to_string().contains("Activities are kept"),
            "{refused}"
        );
    }
    app.get(&format!("/activities?source={}", source.id))
        .await
        .assert_status(200)
        .assert_contains("Call: voicemail (30 s)");

    // The same file again logs nothing twice.
    let again = import_file(&mut app, source.id, file.as_bytes(), "apply").await;
    let again = run_of(&app.state, again);
    assert_eq!(
        (
            again.count("created"),
            again.count("unchanged"),
            again.count("error")
        ),
        (0, 3, 3)
    );
    assert_eq!(count(&app.state), 2);

    // A file without a contact column cannot start, and says why.
    let res = app
        .upload(
            &format!("/sources/{}/imports", source.id),
            "calls.csv",
            b"Call ID,Start Time\nc9,2026-11-30 10:00\n",
            true,
        )
        .await;
    let preview = res.location().expect("preview").to_string();
    app.get(&preview)
        .await
        .assert_contains("No column of this file names the contact");
}

#[actix_web::test]
async fn activities_by_email_are_never_attached_to_a_guess() {
    use syncdesk::sources::service::{self as sources, ActivitySettings, SourceInput};
    let mut app = common::spawn().await;
    let bob = contact(&app.state, "Bob Ray", "bob@ray.example");
    contact(&app.state, "Twin One", "twin@example.org");
    contact(&app.state, "Twin Two", "twin@example.org");
    let source = {
        let mut conn = app.state.pool.get().expect("connection");
        let source = sources::create(
            &mut conn,
            &SourceInput {
                activities: Some(ActivitySettings {
                    contacts_from: None,
                    default_type: String::new(),
                }),
                ..common::contacts_by("Mail tool", "Message")
            },
        )
        .expect("source");
        sources::set_mapping(
            &mut conn,
            source.id,
            &[
                ("To", "contact_email"),
                ("Kind", "type"),
                ("Subject", "subject"),
                ("Sent", "occurred_at"),
            ]
            .map(|(column, field)| syncdesk::sources::model::MappingInput {
                column_name: column.into(),
                field_key: field.into(),
                to_record: syncdesk::rules::Rule::Always,
                to_source: syncdesk::rules::Rule::Never,
                blanks_clear: false,
            }),
        )
        .expect("mapping");
        source
    };
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let file = "Message,To,Kind,Subject,Sent\n\
        m1,BOB@ray.example,email,Your quote,2026-11-29 09:00\n\
        m2,twin@example.org,email,Hello,2026-11-29 09:05\n\
        m3,bob@ray.example,fax,Old school,2026-11-29 09:10\n\
        m4,,email,No one,2026-11-29 09:15\n";
    let run = import_file(&mut app, source.id, file.as_bytes(), "apply").await;
    let done = run_of(&app.state, run);
    assert_eq!(
        (done.count("created"), done.count("error")),
        (1, 3),
        "{:?}",
        done.counts()
    );
    app.get(&format!("/runs/{run}"))
        .await
        .assert_contains(
            "Line 3: several contacts match (contact with the email &#39;twin@example.org&#39;: #",
        )
        .assert_contains(
            "Line 4: &#39;fax&#39; is not an activity type: call, email, meeting, note",
        )
        .assert_contains("Line 5: the column &#39;To&#39; is empty");
    app.get(&format!("/records/{bob}")).await.assert_status(200);
    let timeline = app.get(&format!("/records/{bob}/activities")).await;
    timeline.assert_status(200).assert_contains("Your quote");
}

#[core::prelude::v1::test]
fn the_command_line_adds_a_source_of_activities_and_imports_its_file() {
    let db = common::TestDb::new();
    let config = db.config();
    let dir = db.dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncdesk"))
            .args(args)
            .env("SYNCDESK_DATA_DIR", &config.data_dir)
            .env("DATABASE_URL", &config.database_url)
            .env_remove("SYNCDESK_CONFIG")
            .output()
            .expect("run syncdesk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&[
        "source",
        "add",
        "CRM",
        "--kind",
        "contact",
        "--id-column",
        "Id",
        "--map",
        "Name=name",
        "--map",
        "Email=email",
    ]);
    assert!(ok, "{out}");
    let contacts = dir.join("contacts.csv");
    std::fs::write(&contacts, "Id,Name,Email\nC-1,Ann Lee,ann@lee.example\n").expect("file");
    let (ok, out) = run(&["import", "CRM", contacts.to_str().expect("path")]);
    assert!(ok, "{out}");

    let calls = dir.join("calls.csv");
    std::fs::write(
        &calls,
        "Call ID,Customer ID,Start Time,Call Outcome,Talk Time\n\
         k1,C-1,2026-11-30 09:00,answered,60\n\
         k2,C-2,2026-11-30 09:05,answered,10\n",
    )
    .expect("file");
    let (ok, out) = run(&[
        "source",
        "add",
        "Dialer",
        "--kind",
        "activity",
        "--id-column",
        "Call ID",
        "--contacts-from",
        "CRM",
        "--activity-type",
        "call",
        "--propose-from",
        calls.to_str().expect("path"),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("contact_external_id") && out.contains("activities of contacts"),
        "{out}"
    );
    let (ok, out) = run(&["import", "Dialer", calls.to_str().expect("path")]);
    assert!(ok, "{out}");
    let count = |out: &str, outcome: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(outcome).map(|n| n.trim().to_string()))
            .unwrap_or_default()
    };
    assert_eq!(
        (count(&out, "created"), count(&out, "error")),
        ("1".into(), "1".into()),
        "{out}"
    );
    let (ok, out) = run(&["import", "Dialer", calls.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert_eq!(
        (count(&out, "unchanged"), count(&out, "created")),
        ("1".into(), String::new()),
        "{out}"
    );
}

/// Issue 32: a mapping template that would build a value of any size is refused at save;
/// one stored before these checks (written straight into the table) is stopped on every
/// push and on its page, and the console keeps answering.
#[actix_web::test]
async fn a_mapping_that_would_build_too_much_is_refused_and_never_takes_the_console_down() {
    use diesel::prelude::*;
    use syncdesk::schema::activity_mappings;
    let mut app = common::spawn().await;
    let ann = contact(&app.state, "Ann Lee", "ann@lee.example");
    let source = dialer(&mut app.state.pool.get().expect("connection"));
    app.signed_in_as("admin@example.org", Role::Admin).await;
    let url = format!("/sources/{}/activity-mapping", source.id);
    let hostile = "{{ outcome|indent(1000000000000) }}";
    app.post(
        &url,
        &[
            ("type", "call"),
            ("subject", hostile),
            ("body", "{{ outcome }}"),
        ],
    )
    .await
    .assert_status(422)
    .assert_contains("width of 0 to 100");
    diesel::insert_into(activity_mappings::table)
        .values((
            activity_mappings::source_id.eq(source.id),
            activity_mappings::activity_type.eq("call"),
            activity_mappings::subject.eq(hostile),
            activity_mappings::body.eq("{% for a in ('x'*99999999)|list %}{% endfor %}"),
            activity_mappings::field_updates.eq("[]"),
            activity_mappings::updated_at.eq(syncdesk::db::now()),
        ))
        .execute(&mut app.state.pool.get().expect("connection"))
        .expect("stored");
    let secret = token(&app.state, &[Scope::ActivitiesWrite]);
    for n in 0..2 {
        let answer = app
            .send(post(
                &secret,
                json!({
                    "contact": {"id": ann},
                    "type": "call",
                    "source_id": source.id,
                    "external_id": format!("call-{n}"),
                    "attributes": {"outcome": "answered"}
                }),
            ))
            .await;
        answer
            .assert_status(422)
            .assert_contains("width of 0 to 100");
    }
    app.get(&format!("{url}?type=call"))
        .await
        .assert_status(200)
        .assert_contains("width of 0 to 100");
    app.get("/activities").await.assert_status(200);
}
