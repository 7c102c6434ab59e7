//! The JSON API: tokens (scopes, restriction to a source, revocation, hashed storage), pushed
//! rows with the seed's outcomes, idempotency, records, the change feed over HTTP, problem
//! documents and the rate limit. Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is
//! set.

mod common;

use actix_web::test::TestRequest;
use diesel::prelude::*;
use serde_json::{json, Value};
use syncdesk::api::model::Scope;
use syncdesk::api::service::{self as tokens, NewToken};
use syncdesk::auth::model::Role;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::sources::model::{MappingInput, Source};
use syncdesk::sources::service as sources;

fn source(state: &syncdesk::AppState, name: &str, to_source: Rule) -> Source {
    let mut conn = state.pool.get().expect("connection");
    let source =
        sources::create(&mut conn, &common::contacts_by(name, "External Id")).expect("source");
    let line = |column: &str, field: &str| MappingInput {
        column_name: column.into(),
        field_key: field.into(),
        to_record: Rule::Always,
        to_source,
        blanks_clear: false,
    };
    sources::set_mapping(
        &mut conn,
        source.id,
        &[
            line("Name", "name"),
            line("Email", "email"),
            line("Phone", "phone"),
        ],
    )
    .expect("mapping");
    source
}

fn token(state: &syncdesk::AppState, scopes: &[Scope], source: Option<i64>) -> String {
    let mut conn = state.pool.get().expect("connection");
    tokens::create(
        &mut conn,
        &NewToken {
            name: "test".into(),
            scopes: scopes.to_vec(),
            source_id: source,
            created_by: None,
        },
    )
    .expect("token")
    .1
}

fn contact(state: &syncdesk::AppState, name: &str, email: &str) -> i64 {
    let input = RecordInput {
        values: [("name", name), ("email", email)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        company_id: None,
    };
    records::create(
        &mut state.pool.get().expect("connection"),
        RecordKind::Contact,
        &input,
        &Actor::system("setup"),
        PhoneCountry::parse("AU").expect("country"),
    )
    .expect("contact")
    .id
}

fn bearer(req: TestRequest, secret: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {secret}")))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[track_caller]
fn assert_problem(res: &common::Response, status: u16, detail: &str) {
    res.assert_status(status);
    assert_eq!(
        res.header("content-type"),
        Some("application/problem+json"),
        "{}",
        res.body
    );
    let problem = json_of(&res.body);
    assert_eq!(problem["status"], status);
    assert!(
        problem["detail"].as_str().unwrap_or("").contains(detail),
        "expected {detail:?} in {problem}"
    );
}

#[actix_web::test]
async fn tokens_are_hashed_scoped_restricted_and_revocable() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Never);
    let other = source(&app.state, "Other", Rule::Never);
    let reader = token(&app.state, &[Scope::RecordsRead], None);
    assert!(reader.starts_with("sdk_") && reader.len() > 40, "{reader}");
    // Only the hash is stored.
    let stored: Vec<(String, String)> = syncdesk::schema::api_tokens::table
        .select((
            syncdesk::schema::api_tokens::prefix,
            syncdesk::schema::api_tokens::secret_hash,
        ))
        .load(&mut app.state.pool.get().expect("connection"))
        .expect("tokens");
    assert!(stored
        .iter()
        .all(|(prefix, hash)| !hash.contains(&reader[4..]) && reader.starts_with(prefix)));

    let res = app.get("/api/v1/records").await;
    assert_problem(&res, 401, "Bearer");
    let res = app
        .send(bearer(
            TestRequest::get().uri("/api/v1/records"),
            "sdk_nope",
        ))
        .await;
    assert_problem(&res, 401, "unknown or revoked");
    let res = app
        .send(bearer(TestRequest::get().uri("/api/v1/records"), &reader))
        .await;
    res.assert_status(200);
    let push = |secret: &str, source: i64| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{source}/rows"))
                .set_json(json!({"rows": [{"External Id": "A", "Name": "Ann"}]})),
            secret,
        )
    };
    let res = app.send(push(&reader, crm.id)).await;
    assert_problem(&res, 403, "rows:write");

    let crm_writer = token(&app.state, &[Scope::RowsWrite], Some(crm.id));
    let res = app.send(push(&crm_writer, other.id)).await;
    assert_problem(&res, 403, &format!("source #{} only", crm.id));
    app.send(push(&crm_writer, crm.id)).await.assert_status(200);

    // An admin revokes it on the tokens page; the next request is refused.
    app.signed_in_as("admin@example.org", Role::Admin).await;
    let page = app.get("/tokens").await;
    page.assert_status(200).assert_contains("rows:write");
    let id: i64 = syncdesk::schema::api_tokens::table
        .filter(syncdesk::schema::api_tokens::source_id.eq(crm.id))
        .select(syncdesk::schema::api_tokens::id)
        .first(&mut app.state.pool.get().expect("connection"))
        .expect("token id");
    app.post(&format!("/tokens/{id}/revoke"), &[])
        .await
        .assert_redirect("/tokens");
    let res = app.send(push(&crm_writer, crm.id)).await;
    assert_problem(&res, 401, "revoked");

    // Created in the console: the secret is shown once, and works.
    let created = app
        .post(
            "/tokens",
            &[
                ("name", "Console"),
                ("scope", "records:read"),
                ("source", ""),
            ],
        )
        .await;
    created.assert_status(200);
    let secret = created
        .body
        .split("<code id=\"token-secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token on the page")
        .to_string();
    app.send(bearer(TestRequest::get().uri("/api/v1/records"), &secret))
        .await
        .assert_status(200);
    assert!(!app.get("/tokens").await.body.contains(&secret));
    let refused = app.post("/tokens", &[("name", "No scopes")]).await;
    refused
        .assert_status(422)
        .assert_contains("at least one scope");
}

#[actix_web::test]
async fn pushed_rows_run_through_the_engine_with_every_outcome() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Never);
    let secret = token(
        &app.state,
        &[Scope::RowsWrite, Scope::RecordsRead],
        Some(crm.id),
    );
    let manual = contact(&app.state, "John Smith", "john@smith.com");
    let forced = contact(&app.state, "Harry Smith", "harry@smith.com");
    records::set_forced_manual(
        &mut app.state.pool.get().expect("connection"),
        forced,
        true,
        &Actor::system("setup"),
    )
    .expect("forced");
    let rows = json!({"rows": [
        {"External Id": "A", "Name": "John Smith", "Email": "john@smith.com"},
        {"External Id": "B", "Name": "Mary Smith", "Email": "mary@smith.com", "Phone": "0400 000 001"},
        {"External Id": "E", "Name": "Harry Smith", "Email": "harry@smith.com"},
        {"External Id": "", "Name": "No Id"},
        {"External Id": "F", "Name": "Fay", "Phone": 12},
    ]});
    let push = |body: &Value| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{}/rows", crm.id))
                .set_json(body),
            &secret,
        )
    };
    let res = app.send(push(&rows)).await;
    res.assert_status(200);
    let run = json_of(&res.body);
    assert_eq!(run["status"], "done");
    let outcomes: Vec<(String, String)> = run["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["row"].to_string(),
                r["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("1".into(), "converted".into()),
            ("2".into(), "created".into()),
            ("3".into(), "linked_forced_manual".into()),
            ("4".into(), "error".into()),
            ("5".into(), "created".into()),
        ],
        "{run}"
    );
    assert_eq!(run["rows"][0]["record_id"], manual);
    assert!(run["rows"][4]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("'12' is not a valid"));

    // A value with a line break spans two lines of the file, not two rows.
    let broken = json!({"rows": [
        {"External Id": "L1", "Name": "Two\nLines"},
        {"External Id": "L2", "Name": "After"},
    ]});
    let res = app.send(push(&broken)).await;
    let numbered: Vec<(i64, String)> = json_of(&res.body)["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["row"].as_i64().unwrap_or(0),
                r["external_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        numbered,
        [(1, "L1".into()), (2, "L2".into())],
        "{}",
        res.body
    );

    // Again: unchanged; and with a change: updated. The run can be polled.
    let res = app.send(push(&rows)).await;
    assert_eq!(json_of(&res.body)["counts"]["unchanged"], 3, "{}", res.body);
    let changed = json!({"rows": [{"External Id": "B", "Email": "mary@new.example"}]});
    let res = app.send(push(&changed)).await;
    let run = json_of(&res.body);
    assert_eq!(run["rows"][0]["outcome"], "updated", "{run}");
    let polled = app
        .send(bearer(
            TestRequest::get().uri(run["url"].as_str().expect("url")),
            &secret,
        ))
        .await;
    assert_eq!(json_of(&polled.body)["run_id"], run["run_id"]);

    // Bad pushes are problems that say what is wrong, and start nothing.
    let res = app
        .send(push(
            &json!({"rows": [{"External Id": "G", "Nmae": "typo"}]}),
        ))
        .await;
    assert_problem(&res, 422, "has no column 'Nmae'");
    let res = app.send(push(&json!({"rows": []}))).await;
    assert_problem(&res, 422, "at least one row");
    let res = app
        .send(push(&json!({"rows": [{"External Id": ["x"]}]})))
        .await;
    assert_problem(&res, 422, "Row 1, column 'External Id'");
    let res = app
        .send(bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{}/rows", crm.id))
                .insert_header(("content-type", "application/json"))
                .set_payload("{not json"),
            &secret,
        ))
        .await;
    assert_problem(&res, 422, "is not");
    let huge = format!(
        "{{\"rows\": [{{\"External Id\": \"{}\"}}]}}",
        "x".repeat(syncdesk::api::routes::MAX_BODY_BYTES)
    );
    let res = app
        .send(bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{}/rows", crm.id))
                .insert_header(("content-type", "application/json"))
                .set_payload(huge),
            &secret,
        ))
        .await;
    assert_problem(&res, 413, "larger than");

    // Records: keyset pages, by id, by external id (restricted to the token's source).
    let page = app
        .send(bearer(
            TestRequest::get().uri("/api/v1/records?limit=2"),
            &secret,
        ))
        .await;
    let page = json_of(&page.body);
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2), "{page}");
    let next = page["next"].as_str().expect("a next page").to_string();
    let rest = app
        .send(bearer(
            TestRequest::get().uri(&format!("/api/v1/records?limit=10&after={next}")),
            &secret,
        ))
        .await;
    let rest = json_of(&rest.body);
    assert_eq!(rest["records"].as_array().map(Vec::len), Some(4), "{rest}");
    assert!(rest["next"].is_null());
    let b = app
        .send(bearer(
            TestRequest::get().uri(&format!("/api/v1/sources/{}/records/B", crm.id)),
            &secret,
        ))
        .await;
    let b = json_of(&b.body);
    assert_eq!(b["fields"]["email"], "mary@new.example", "{b}");
    assert_eq!(b["links"][0]["external_id"], "B");
    assert_eq!(b["owner_source_id"], crm.id);
    let unknown = app
        .send(bearer(
            TestRequest::get().uri(&format!("/api/v1/sources/{}/records/ZZ", crm.id)),
            &secret,
        ))
        .await;
    assert_problem(&unknown, 404, "no record with external id 'ZZ'");
    let unlinked = contact(&app.state, "Not Linked", "");
    let hidden = app
        .send(bearer(
            TestRequest::get().uri(&format!("/api/v1/records/{unlinked}")),
            &secret,
        ))
        .await;
    assert_problem(&hidden, 404, "no record");
    let bad = app
        .send(bearer(
            TestRequest::get().uri("/api/v1/records?kind=people"),
            &secret,
        ))
        .await;
    assert_problem(&bad, 400, "unknown variant `people`");
    let nowhere = app
        .send(bearer(TestRequest::get().uri("/api/v1/nowhere"), &secret))
        .await;
    assert_problem(&nowhere, 404, "no endpoint");
}

#[actix_web::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Never);
    let secret = token(&app.state, &[Scope::RowsWrite], None);
    let push = |body: Value, key: &str| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{}/rows", crm.id))
                .insert_header(("Idempotency-Key", key.to_string()))
                .set_json(body),
            &secret,
        )
    };
    let body = json!({"rows": [{"External Id": "A", "Name": "Ann"}]});
    let first = app.send(push(body.clone(), "k1")).await;
    first.assert_status(200);
    let again = app.send(push(body.clone(), "k1")).await;
    again.assert_status(200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    let runs: i64 = syncdesk::schema::import_runs::table
        .count()
        .get_result(&mut app.state.pool.get().expect("connection"))
        .expect("count");
    assert_eq!(runs, 1, "a replay starts nothing");
    let other = app
        .send(push(json!({"rows": [{"External Id": "B"}]}), "k1"))
        .await;
    assert_problem(&other, 422, "another body");
}

#[actix_web::test]
async fn an_idempotency_key_is_scoped_by_token_and_path() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Never);
    let other = source(&app.state, "Other", Rule::Never);
    let secret = token(&app.state, &[Scope::RowsWrite], None);
    let second = token(&app.state, &[Scope::RowsWrite], None);
    let body = json!({"rows": [{"External Id": "A", "Name": "Ann"}]});
    let push = |secret: &str, source: i64| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{source}/rows"))
                .insert_header(("Idempotency-Key", "k1"))
                .set_json(&body),
            secret,
        )
    };
    let state = app.state.clone();
    let runs = || -> i64 {
        syncdesk::schema::import_runs::table
            .count()
            .get_result(&mut state.pool.get().expect("connection"))
            .expect("count")
    };
    let first = app.send(push(&secret, crm.id)).await;
    first.assert_status(200);
    // The same key on another source's path is a new request: it runs, for that source.
    let elsewhere = app.send(push(&secret, other.id)).await;
    elsewhere.assert_status(200);
    assert_eq!(
        elsewhere.header("idempotency-replayed"),
        None,
        "{}",
        elsewhere.body
    );
    assert_eq!(json_of(&elsewhere.body)["source_id"], other.id);
    assert_eq!(runs(), 2);
    // Another token's key is its own too.
    let theirs = app.send(push(&second, crm.id)).await;
    theirs.assert_status(200);
    assert_eq!(theirs.header("idempotency-replayed"), None);
    assert_eq!(runs(), 3);
    // The same token, path, key and body still replay the first answer.
    let again = app.send(push(&secret, crm.id)).await;
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    let again = app.send(push(&secret, other.id)).await;
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.body, elsewhere.body);
    assert_eq!(runs(), 3);
}

/// Runs the migrations before the one whose name contains `stop`.
fn migrate_until(conn: &mut syncdesk::db::DbConn, stop: &str) {
    use diesel::backend::Backend;
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
    fn steps<B: Backend, C: MigrationHarness<B>>(c: &mut C, all: EmbeddedMigrations, stop: &str) {
        for m in c.pending_migrations(all).expect("pending migrations") {
            if m.name().to_string().contains(stop) {
                return;
            }
            c.run_migration(&*m).expect("migration");
        }
        panic!("no migration {stop}");
    }
    match conn {
        syncdesk::db::DbConn::Pg(c) => steps(c, syncdesk::db::PG_MIGRATIONS, stop),
        syncdesk::db::DbConn::Sqlite(c) => steps(c, syncdesk::db::SQLITE_MIGRATIONS, stop),
    }
}

/// Keys stored before they were scoped by path keep their meaning on their push's path.
#[actix_web::test]
async fn idempotency_keys_of_before_the_path_scope_still_replay() {
    let db = common::TestDb::new();
    let body = r#"{"rows": [{"External Id": "A", "Name": "Ann"}]}"#;
    let (crm, open, restricted) = {
        let pool = syncdesk::db::connect(&db.url).expect("connect");
        let mut conn = pool.get().expect("connection");
        migrate_until(&mut conn, "_idempotency_paths");
        let crm = sources::create(&mut conn, &common::contacts_by("CRM", "External Id"))
            .expect("source")
            .id;
        let new = |source_id| NewToken {
            name: "old".into(),
            scopes: vec![Scope::RowsWrite],
            source_id,
            created_by: None,
        };
        let (open, open_secret) = tokens::create(&mut conn, &new(None)).expect("token");
        let (restricted, restricted_secret) =
            tokens::create(&mut conn, &new(Some(crm))).expect("token");
        let answer = format!(r#"{{"run_id":7,"source_id":{crm},"url":"/api/v1/runs/7"}}"#);
        for (token, key, status, stored) in [
            (open.id, "answered", 200, answer.as_str()),
            (restricted.id, "running", 0, ""),
        ] {
            diesel::sql_query(format!(
                "INSERT INTO api_idempotency (token_id, idempotency_key, body_sha256, \
                 status_code, response_body, created_at) \
                 VALUES ({token}, '{key}', '{}', {status}, '{stored}', '2026-12-01 10:00:00')",
                tokens::body_digest(body.as_bytes())
            ))
            .execute(&mut *conn)
            .expect("an old key");
        }
        (crm, open_secret, restricted_secret)
    };
    let state = syncdesk::AppState::open(db.config()).expect("state, migrated");
    let svc = actix_web::test::init_service(syncdesk::build_app(state)).await;
    let push = |secret: &str, key: &str| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{crm}/rows"))
                .insert_header(("Idempotency-Key", key.to_string()))
                .insert_header(("content-type", "application/json"))
                .set_payload(body),
            secret,
        )
        .to_request()
    };
    let replayed = actix_web::test::call_service(&svc, push(&open, "answered")).await;
    assert_eq!(replayed.status().as_u16(), 200);
    assert_eq!(
        replayed
            .headers()
            .get("idempotency-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replayed = actix_web::test::read_body(replayed).await;
    assert!(
        String::from_utf8_lossy(&replayed).contains(r#""run_id":7"#),
        "{replayed:?}"
    );
    let running = actix_web::test::call_service(&svc, push(&restricted, "running")).await;
    assert_eq!(running.status().as_u16(), 409);
}

#[actix_web::test]
async fn a_restricted_token_reaches_only_records_and_runs_of_its_source() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Never);
    let other = source(&app.state, "Other", Rule::Never);
    let crm_token = token(
        &app.state,
        &[Scope::RowsWrite, Scope::RecordsRead],
        Some(crm.id),
    );
    let other_token = token(&app.state, &[Scope::RowsWrite], Some(other.id));
    let hedy = contact(&app.state, "Hedy Lamarr", "hedy@example.org");
    let rows = json!({"rows": [{"External Id": "A", "Name": "Ann"}]});
    let push = |secret: &str, source: i64| {
        bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{source}/rows"))
                .set_json(&rows),
            secret,
        )
    };
    let mine = json_of(&app.send(push(&crm_token, crm.id)).await.body);
    let theirs = json_of(&app.send(push(&other_token, other.id)).await.body);
    let get = |uri: String| bearer(TestRequest::get().uri(&uri), &crm_token);

    // Records: only the one linked to CRM, by list, by id and by external id.
    let page = json_of(&app.send(get("/api/v1/records".into())).await.body);
    let ids: Vec<i64> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(ids, [mine["rows"][0]["record_id"].as_i64().expect("id")]);
    let unlinked = app.send(get(format!("/api/v1/records/{hedy}"))).await;
    let missing = app.send(get("/api/v1/records/999999".into())).await;
    assert_problem(&unlinked, 404, "There is no record #");
    assert_eq!(
        unlinked.body.replace(&format!("#{hedy}."), "#N."),
        missing.body.replace("#999999.", "#N.")
    );
    let other_record = theirs["rows"][0]["record_id"].as_i64().expect("id");
    let res = app
        .send(get(format!("/api/v1/records/{other_record}")))
        .await;
    assert_problem(&res, 404, "There is no record #");

    // Runs: another source's run answers as a run that does not exist.
    let run = app
        .send(get(format!("/api/v1/runs/{}", mine["run_id"])))
        .await;
    run.assert_status(200);
    let foreign = app
        .send(get(format!("/api/v1/runs/{}", theirs["run_id"])))
        .await;
    let nothing = app.send(get("/api/v1/runs/999999".into())).await;
    assert_problem(&foreign, 404, "There is no run #");
    assert_eq!(
        foreign
            .body
            .replace(&format!("#{}.", theirs["run_id"]), "#N."),
        nothing.body.replace("#999999.", "#N.")
    );
}

#[actix_web::test]
async fn the_feed_over_http_never_echoes_and_pages_by_cursor() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Always);
    let secret = token(&app.state, &[Scope::RowsWrite, Scope::ChangesRead], None);
    let res = app
        .send(bearer(
            TestRequest::post()
                .uri(&format!("/api/v1/sources/{}/rows", crm.id))
                .set_json(json!({"rows": [
                    {"External Id": "A", "Name": "Ann"},
                    {"External Id": "B", "Name": "Bob"},
                ]})),
            &secret,
        ))
        .await;
    res.assert_status(200);
    let changes = |after: &str| {
        bearer(
            TestRequest::get().uri(&format!(
                "/api/v1/sources/{}/changes?limit=1&after={after}",
                crm.id
            )),
            &secret,
        )
    };
    let empty = json_of(&app.send(changes("")).await.body);
    assert_eq!(
        empty["changes"],
        json!([]),
        "its own rows came back: {empty}"
    );
    assert_eq!(empty["next"], "0");
    // Forced manual records take people's edits; the CRM hears of them.
    let mut conn = app.state.pool.get().expect("connection");
    let ids: Vec<i64> = syncdesk::schema::record_links::table
        .order(syncdesk::schema::record_links::external_id)
        .select(syncdesk::schema::record_links::record_id)
        .load(&mut conn)
        .expect("links");
    let country = PhoneCountry::parse("AU").expect("country");
    for (id, name) in ids.iter().zip(["Ann Lee", "Bob Ray"]) {
        records::set_forced_manual(&mut conn, *id, true, &Actor::system("Ann")).expect("forced");
        let input = RecordInput {
            values: [("name".to_string(), name.to_string())].into(),
            company_id: None,
        };
        records::update(&mut conn, *id, &input, &Actor::system("Ann"), country).expect("edit");
    }
    drop(conn);
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let page = json_of(&app.send(changes(&cursor)).await.body);
        let entries = page["changes"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            assert_eq!(page["next"], cursor.as_str());
            break;
        }
        cursor = page["next"].as_str().expect("next").to_string();
        seen.extend(entries.into_iter().map(|e| {
            format!(
                "{} {} {}",
                e["external_id"].as_str().unwrap_or(""),
                e["column"]
                    .as_str()
                    .unwrap_or(e["event"].as_str().unwrap_or("")),
                e["new_value"].as_str().unwrap_or("")
            )
        }));
    }
    assert_eq!(
        seen,
        [
            "A forced_manual yes",
            "A Name Ann Lee",
            "B forced_manual yes",
            "B Name Bob Ray"
        ]
    );
    let res = app
        .send(bearer(
            TestRequest::get().uri(&format!("/api/v1/sources/{}/changes?after=x", crm.id)),
            &secret,
        ))
        .await;
    assert_problem(&res, 400, "not a cursor");
}

#[actix_web::test]
async fn the_openapi_document_is_public_and_lists_every_endpoint() {
    let mut app = common::spawn().await;
    let res = app.get("/api/v1/openapi.json").await;
    res.assert_status(200);
    let doc = json_of(&res.body);
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    for path in [
        "/api/v1/records",
        "/api/v1/records/{id}",
        "/api/v1/sources/{id}/records/{external_id}",
        "/api/v1/sources/{id}/rows",
        "/api/v1/runs/{id}",
        "/api/v1/sources/{id}/changes",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    app.get("/api")
        .await
        .assert_status(200)
        .assert_contains("POST /api/v1/sources/{id}/rows");
}

#[actix_web::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let db = common::TestDb::new();
    let mut config = db.config();
    config.api_requests_per_minute = 3;
    let state = syncdesk::AppState::open(config).expect("state");
    let svc = actix_web::test::init_service(syncdesk::build_app(state.clone())).await;
    let secret = token(&state, &[Scope::RecordsRead], None);
    let mut last = None;
    for _ in 0..4 {
        let req = bearer(TestRequest::get().uri("/api/v1/records"), &secret).to_request();
        last = Some(actix_web::test::call_service(&svc, req).await);
    }
    let res = last.expect("a response");
    assert_eq!(res.status().as_u16(), 429);
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
}

#[actix_web::test]
async fn the_feed_page_shows_changes_decides_held_ones_and_sets_the_webhook() {
    let mut app = common::spawn().await;
    let crm = source(&app.state, "CRM", Rule::Review);
    let secret = token(&app.state, &[Scope::RowsWrite], None);
    app.send(bearer(
        TestRequest::post()
            .uri(&format!("/api/v1/sources/{}/rows", crm.id))
            .set_json(json!({"rows": [{"External Id": "A", "Name": "Ann"}]})),
        &secret,
    ))
    .await
    .assert_status(200);
    let id: i64 = syncdesk::schema::record_links::table
        .select(syncdesk::schema::record_links::record_id)
        .first(&mut app.state.pool.get().expect("connection"))
        .expect("record");
    let mut conn = app.state.pool.get().expect("connection");
    records::set_forced_manual(&mut conn, id, true, &Actor::system("Ann")).expect("forced");
    let input = RecordInput {
        values: [("name".to_string(), "Ann Lee".to_string())].into(),
        company_id: None,
    };
    records::update(
        &mut conn,
        id,
        &input,
        &Actor::system("Ann"),
        PhoneCountry::parse("AU").expect("country"),
    )
    .expect("edit");
    drop(conn);

    app.signed_in_as("admin@example.org", Role::Admin).await;
    let page = app.get(&format!("/sources/{}/feed", crm.id)).await;
    page.assert_status(200)
        .assert_contains("Waiting for a decision (1)")
        .assert_contains("Ann Lee");
    let held: i64 = syncdesk::schema::source_changes::table
        .filter(syncdesk::schema::source_changes::status.eq("held"))
        .select(syncdesk::schema::source_changes::id)
        .first(&mut app.state.pool.get().expect("connection"))
        .expect("held change");
    app.post(
        &format!("/sources/{}/feed/held", crm.id),
        &[("change", &held.to_string()), ("action", "approve")],
    )
    .await
    .assert_redirect(&format!("/sources/{}/feed", crm.id));
    let page = app.get(&format!("/sources/{}/feed", crm.id)).await;
    page.assert_contains("Waiting for a decision (0)")
        .assert_contains("1 change(s) approved");

    let set = app
        .post(
            &format!("/sources/{}/webhook", crm.id),
            &[("url", "https://crm.example.com/hook")],
        )
        .await;
    set.assert_status(200).assert_contains("whsec_");
    let bad = app
        .post(&format!("/sources/{}/webhook", crm.id), &[("url", "crm")])
        .await;
    bad.assert_status(422).assert_contains("not an http");
    app.post(&format!("/sources/{}/webhook/remove", crm.id), &[])
        .await
        .assert_redirect(&format!("/sources/{}/feed", crm.id));
}
