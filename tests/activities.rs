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
    use syncdesk::sources::service::{self as sources, SourceInput};
    sources::create(
        conn,
        &SourceInput {
            name: "Dialer".into(),
            kind: RecordKind::Contact,
            id_column: "Id".into(),
            match_by: Vec::new(),
            full_mode: false,
            country: String::new(),
            watch_dir: String::new(),
        },
    )
    .expect("source")
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
        use diesel::prelude::*;
        diesel::insert_into(syncdesk::schema::record_links::table)
            .values((
                syncdesk::schema::record_links::record_id.eq(ann),
                syncdesk::schema::record_links::source_id.eq(source.id),
                syncdesk::schema::record_links::external_id.eq("D-17"),
                syncdesk::schema::record_links::created_at.eq(syncdesk::db::now()),
            ))
            .execute(&mut conn)
            .expect("link");
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
    let as_refs = |f: &[(&'static str, String)]| -> Vec<(&'static str, String)> { f.to_vec() };
    // The live preview, with a sample activity.
    let preview_form: Vec<(String, String)> =
        as_refs(&form("{{ outcome }} call, {{ duration }} s"))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    app.htmx_form(&format!("{url}/preview"), &preview_form)
        .await
        .assert_status(200)
        .assert_contains("answered call, 184 s")
        .assert_contains("last_outcome ← “answered” (review)");
    // A syntax error is refused with its line; what was typed stays.
    let bad: Vec<(&str, String)> = form("{{ outcome call");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post(&url, &bad)
        .await
        .assert_status(422)
        .assert_contains("Subject, line 1:")
        .assert_contains("value=\"{{ outcome call\"");
    let good: Vec<(&str, String)> = form("{{ outcome }} call, {{ duration }} s");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post(&url, &good).await.assert_status(303);

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
}
