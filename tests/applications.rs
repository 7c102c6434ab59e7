//! Processes, applications and data links: pre-fill from records, update records by rule.
//! Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::collections::BTreeMap;

use syncdesk::fields::model::RecordKind;
use syncdesk::fields::validate::PhoneCountry;
use syncdesk::links::service::{self as links, LinkInput};
use syncdesk::processes::service::{self as processes, NewItem};
use syncdesk::records::model::{Actor, RecordInput};
use syncdesk::records::service as records;
use syncdesk::rules::Rule;
use syncdesk::AppState;

fn fr() -> PhoneCountry {
    PhoneCountry::parse("FR").expect("country")
}

struct Env {
    state: AppState,
    _db: common::TestDb,
}

struct Onboarding {
    process: i64,
    shared_step: i64,
    partner_step: i64,
    phone_item: i64,
    partner_phone_item: i64,
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

    fn contact(&self, name: &str, phone: &str) -> i64 {
        let mut values = BTreeMap::from([("name".to_string(), name.to_string())]);
        if !phone.is_empty() {
            values.insert("phone".into(), phone.into());
        }
        records::create(
            &mut self.conn(),
            RecordKind::Contact,
            &RecordInput {
                values,
                company_id: None,
            },
            &Actor::system("setup"),
            fr(),
        )
        .expect("contact")
        .id
    }

    fn phone_of(&self, id: i64) -> String {
        records::find(&mut self.conn(), id)
            .expect("find")
            .expect("record")
            .phone
    }

    /// A contact process: a shared step with a phone item, a per-stakeholder step with one.
    fn onboarding(&self) -> Onboarding {
        let mut conn = self.conn();
        let process = processes::create(&mut conn, "Onboarding", RecordKind::Contact)
            .expect("process")
            .id;
        let shared_step = processes::add_step(&mut conn, process, "Your details", false)
            .expect("step")
            .id;
        let partner_step = processes::add_step(&mut conn, process, "People", true)
            .expect("step")
            .id;
        let item = |conn: &mut syncdesk::db::PooledConn, step: i64, key: &str| {
            processes::add_item(
                conn,
                step,
                &NewItem {
                    key: key.into(),
                    label: key.into(),
                    item_type: "phone".into(),
                    required: false,
                    options: String::new(),
                },
            )
            .expect("item")
            .id
        };
        let phone_item = item(&mut conn, shared_step, "phone");
        let partner_phone_item = item(&mut conn, partner_step, "person_phone");
        Onboarding {
            process,
            shared_step,
            partner_step,
            phone_item,
            partner_phone_item,
        }
    }

    fn link(
        &self,
        process: i64,
        item: i64,
        direction: &str,
        rule: Rule,
        roles: &str,
    ) -> Result<i64, String> {
        links::create(
            &mut self.conn(),
            process,
            &LinkInput {
                direction: direction.into(),
                record_kind: RecordKind::Contact,
                data_kind: "information".into(),
                item_id: item,
                field_key: "phone".into(),
                roles: roles.into(),
                to_record: rule,
            },
        )
        .map(|l| l.id)
        .map_err(|e| e.to_string())
    }

    fn answer(&self, application: i64, item: i64, stakeholder: i64) -> Option<(String, String)> {
        processes::answers(&mut self.conn(), application)
            .expect("answers")
            .into_iter()
            .find(|a| a.item_id == item && a.stakeholder_id == stakeholder)
            .map(|a| (a.value, a.origin.to_string()))
    }
}

/// Seed use case 1: a phone stored on the contact appears pre-filled in a new application.
#[core::prelude::v1::test]
fn use_case_1_prefill_from_the_contact() {
    let env = Env::new();
    let p = env.onboarding();
    env.link(p.process, p.phone_item, "to_application", Rule::Never, "")
        .expect("link");
    let ada = env.contact("Ada", "01 23 45 67 89");
    let app = processes::create_application(&mut env.conn(), p.process, ada, &[], None)
        .expect("application");
    assert_eq!(
        env.answer(app.id, p.phone_item, 0),
        Some(("+33123456789".into(), "prefill".into()))
    );
}

/// Seed use case 2: a new phone typed in an application updates the contact, or becomes a
/// proposal under `review`, with history naming the application.
#[core::prelude::v1::test]
fn use_case_2_update_the_contact_or_propose() {
    for (rule, expect_phone, expect_proposal) in [
        (Rule::Always, "+33612345678", false),
        (Rule::Review, "+33123456789", true),
        (Rule::Never, "+33123456789", false),
    ] {
        let env = Env::new();
        let p = env.onboarding();
        env.link(p.process, p.phone_item, "both", rule, "")
            .expect("link");
        let ada = env.contact("Ada", "01 23 45 67 89");
        let app = processes::create_application(&mut env.conn(), p.process, ada, &[], None)
            .expect("application");
        let typed = BTreeMap::from([((p.phone_item, 0), "06 12 34 56 78".to_string())]);
        let summary = processes::save_step(
            &mut env.conn(),
            app.id,
            p.shared_step,
            &typed,
            true,
            &Actor::system("Eve"),
            fr(),
        )
        .expect("submit");
        assert_eq!(env.phone_of(ada), expect_phone, "{rule}");
        let pending =
            syncdesk::review::service::pending_for(&mut env.conn(), ada).expect("proposals");
        assert_eq!(!pending.is_empty(), expect_proposal, "{rule}");
        if rule == Rule::Always {
            assert!(
                summary[0].contains("Phone of Ada set to +33612345678"),
                "{summary:?}"
            );
            let history = records::history_of(&mut env.conn(), ada, 10).expect("history");
            assert_eq!(history[0].origin.as_str(), "application");
            assert_eq!(history[0].origin_id, Some(app.id));
        }
        if rule == Rule::Review {
            assert_eq!(pending[0].proposed_value, "+33612345678");
            assert_eq!(pending[0].origin.as_str(), "application");
        }
    }
}

#[core::prelude::v1::test]
fn fill_blanks_only_fills_an_empty_field() {
    let env = Env::new();
    let p = env.onboarding();
    env.link(p.process, p.phone_item, "to_record", Rule::FillBlanks, "")
        .expect("link");
    let full = env.contact("Full", "01 23 45 67 89");
    let empty = env.contact("Empty", "");
    for contact in [full, empty] {
        let app = processes::create_application(&mut env.conn(), p.process, contact, &[], None)
            .expect("application");
        let typed = BTreeMap::from([((p.phone_item, 0), "06 12 34 56 78".to_string())]);
        processes::save_step(
            &mut env.conn(),
            app.id,
            p.shared_step,
            &typed,
            true,
            &Actor::system("Eve"),
            fr(),
        )
        .expect("submit");
    }
    assert_eq!(env.phone_of(full), "+33123456789");
    assert_eq!(env.phone_of(empty), "+33612345678");
}

#[core::prelude::v1::test]
fn directions_are_respected() {
    let env = Env::new();
    let p = env.onboarding();
    // to_record only: no pre-fill.
    env.link(p.process, p.phone_item, "to_record", Rule::Always, "")
        .expect("link");
    let ada = env.contact("Ada", "01 23 45 67 89");
    let app = processes::create_application(&mut env.conn(), p.process, ada, &[], None)
        .expect("application");
    assert_eq!(env.answer(app.id, p.phone_item, 0), None);

    // to_application only: a submitted answer does not touch the record.
    let env = Env::new();
    let p = env.onboarding();
    env.link(p.process, p.phone_item, "to_application", Rule::Always, "")
        .expect("link");
    let ada = env.contact("Ada", "01 23 45 67 89");
    let app = processes::create_application(&mut env.conn(), p.process, ada, &[], None)
        .expect("application");
    let typed = BTreeMap::from([((p.phone_item, 0), "06 12 34 56 78".to_string())]);
    processes::save_step(
        &mut env.conn(),
        app.id,
        p.shared_step,
        &typed,
        true,
        &Actor::system("Eve"),
        fr(),
    )
    .expect("submit");
    assert_eq!(env.phone_of(ada), "+33123456789");
}

#[core::prelude::v1::test]
fn stakeholder_roles_limit_prefill_and_updates() {
    let env = Env::new();
    let p = env.onboarding();
    env.link(
        p.process,
        p.partner_phone_item,
        "both",
        Rule::Always,
        "partner",
    )
    .expect("link");
    let company_owner = env.contact("Owner", "01 11 11 11 11");
    let partner = env.contact("Pat", "01 22 22 22 22");
    let applicant = env.contact("Al", "01 33 33 33 33");
    let app = processes::create_application(
        &mut env.conn(),
        p.process,
        company_owner,
        &[(partner, "partner".into()), (applicant, "applicant".into())],
        None,
    )
    .expect("application");
    let holders = processes::stakeholders(&mut env.conn(), app.id).expect("stakeholders");
    let (pat, al) = (holders[0].id, holders[1].id);
    assert_eq!(
        env.answer(app.id, p.partner_phone_item, pat).map(|a| a.0),
        Some("+33122222222".into())
    );
    assert_eq!(
        env.answer(app.id, p.partner_phone_item, al),
        None,
        "the link is for partners only"
    );
    let typed = BTreeMap::from([
        ((p.partner_phone_item, pat), "06 00 00 00 01".to_string()),
        ((p.partner_phone_item, al), "06 00 00 00 02".to_string()),
    ]);
    processes::save_step(
        &mut env.conn(),
        app.id,
        p.partner_step,
        &typed,
        true,
        &Actor::system("Eve"),
        fr(),
    )
    .expect("submit");
    assert_eq!(env.phone_of(partner), "+33600000001");
    assert_eq!(
        env.phone_of(applicant),
        "+33133333333",
        "not a partner: untouched"
    );
}

#[core::prelude::v1::test]
fn a_typed_answer_is_never_overwritten_by_prefill() {
    let env = Env::new();
    let p = env.onboarding();
    env.link(
        p.process,
        p.partner_phone_item,
        "to_application",
        Rule::Never,
        "",
    )
    .expect("link");
    let owner = env.contact("Owner", "");
    let first = env.contact("First", "01 22 22 22 22");
    let app = processes::create_application(
        &mut env.conn(),
        p.process,
        owner,
        &[(first, "partner".into())],
        None,
    )
    .expect("app");
    let holder = processes::stakeholders(&mut env.conn(), app.id).expect("holders")[0].id;
    let typed = BTreeMap::from([((p.partner_phone_item, holder), "06 99 99 99 99".to_string())]);
    processes::save_step(
        &mut env.conn(),
        app.id,
        p.partner_step,
        &typed,
        false,
        &Actor::system("Eve"),
        fr(),
    )
    .expect("draft");
    // A second stakeholder triggers pre-fill again: the typed answer stays.
    let second = env.contact("Second", "01 33 33 33 33");
    processes::add_stakeholder(&mut env.conn(), app.id, second, "partner").expect("add");
    assert_eq!(
        env.answer(app.id, p.partner_phone_item, holder),
        Some(("+33699999999".into(), "typed".into()))
    );
    let holder2 = processes::stakeholders(&mut env.conn(), app.id).expect("holders")[1].id;
    assert_eq!(
        env.answer(app.id, p.partner_phone_item, holder2)
            .map(|a| a.0),
        Some("+33133333333".into())
    );
}

#[core::prelude::v1::test]
fn type_mismatch_and_wrong_kind_are_refused_with_names() {
    let env = Env::new();
    let p = env.onboarding();
    let mut conn = env.conn();
    let text_item = processes::add_item(
        &mut conn,
        p.shared_step,
        &NewItem {
            key: "nickname".into(),
            label: "Nickname".into(),
            item_type: "text".into(),
            required: false,
            options: String::new(),
        },
    )
    .expect("item")
    .id;
    drop(conn);
    let err = env
        .link(p.process, text_item, "both", Rule::Always, "")
        .unwrap_err();
    assert!(
        err.contains("the item 'Nickname' is text and the field 'Phone' is phone"),
        "{err}"
    );
    let err = links::create(
        &mut env.conn(),
        p.process,
        &LinkInput {
            direction: "both".into(),
            record_kind: RecordKind::Company,
            data_kind: "information".into(),
            item_id: p.phone_item,
            field_key: "phone".into(),
            roles: String::new(),
            to_record: Rule::Always,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("link it to a contact field"), "{err}");
}

#[core::prelude::v1::test]
fn required_items_and_bad_values_block_submission() {
    let env = Env::new();
    let p = env.onboarding();
    let mut conn = env.conn();
    let birth = processes::add_item(
        &mut conn,
        p.shared_step,
        &NewItem {
            key: "birth".into(),
            label: "Birth date".into(),
            item_type: "date".into(),
            required: true,
            options: String::new(),
        },
    )
    .expect("item")
    .id;
    drop(conn);
    let ada = env.contact("Ada", "");
    let app = processes::create_application(&mut env.conn(), p.process, ada, &[], None)
        .expect("application");
    let typed = BTreeMap::from([((birth, 0), "12/31/1990".to_string())]);
    let err = processes::save_step(
        &mut env.conn(),
        app.id,
        p.shared_step,
        &typed,
        false,
        &Actor::system("Eve"),
        fr(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("Birth date: '12/31/1990' is not a date written as YYYY-MM-DD"),
        "{err}"
    );
    let err = processes::save_step(
        &mut env.conn(),
        app.id,
        p.shared_step,
        &BTreeMap::new(),
        true,
        &Actor::system("Eve"),
        fr(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Birth date: is required"), "{err}");
    // A draft may stay incomplete.
    processes::save_step(
        &mut env.conn(),
        app.id,
        p.shared_step,
        &BTreeMap::new(),
        false,
        &Actor::system("Eve"),
        fr(),
    )
    .expect("draft");
}

/// The console: an admin builds a process and links an item to the contact's phone; an editor
/// (who cannot create links) creates an application that is pre-filled, types a new phone and
/// submits: the contact is updated, with history naming the application.
#[actix_web::test]
async fn console_flow_link_prefill_submit() {
    use syncdesk::auth::model::Role;
    let mut admin = common::spawn().await;
    admin.signed_in_as("admin@example.org", Role::Admin).await;
    admin
        .post("/processes", &[("name", "Onboarding"), ("kind", "contact")])
        .await;
    let process: i64 = 1;
    admin
        .get(&format!("/processes/{process}"))
        .await
        .assert_status(200)
        .assert_contains("Process Onboarding created");
    admin
        .post(
            &format!("/processes/{process}/steps"),
            &[("title", "Your details")],
        )
        .await;
    admin
        .post(
            &format!("/processes/{process}/items"),
            &[
                ("step_id", "1"),
                ("key", "phone"),
                ("label", "Phone number"),
                ("item_type", "phone"),
            ],
        )
        .await;
    admin
        .post(
            &format!("/processes/{process}/items"),
            &[
                ("step_id", "1"),
                ("key", "nickname"),
                ("label", "Nickname"),
                ("item_type", "text"),
            ],
        )
        .await;
    let page = admin.get(&format!("/processes/{process}")).await;
    page.assert_contains("Phone number")
        .assert_contains("Nickname");
    let link = |item: &'static str| {
        vec![
            ("item_id", item),
            ("direction", "both"),
            ("record_kind", "contact"),
            ("field_key", "phone"),
            ("data_kind", "information"),
            ("to_record", "always"),
            ("roles", ""),
        ]
    };
    admin
        .post(&format!("/processes/{process}/links"), &link("2"))
        .await
        .assert_status(422)
        .assert_contains("Type mismatch: the item &#39;Nickname&#39; is text and the field &#39;Phone&#39; is phone");

    let mut editor = admin.fork();
    editor
        .signed_in_as("editor@example.org", Role::Editor)
        .await;
    editor
        .get(&format!("/processes/{process}/links"))
        .await
        .assert_status(403);
    editor
        .post(&format!("/processes/{process}/links"), &link("1"))
        .await
        .assert_status(403);
    admin
        .post(&format!("/processes/{process}/links"), &link("1"))
        .await
        .assert_redirect(&format!("/processes/{process}/links"));
    admin
        .get(&format!("/processes/{process}/links"))
        .await
        .assert_contains("Data link saved.")
        .assert_contains("contact.phone");

    let ada = editor
        .post(
            "/contacts",
            &[("f_name", "Ada Lovelace"), ("f_phone", "01 23 45 67 89")],
        )
        .await;
    let ada: i64 = ada
        .location()
        .and_then(|l| l.trim_start_matches("/records/").parse().ok())
        .expect("record");
    // The picker suggests records as the person types (the lists' search, names first).
    editor
        .post(
            "/contacts",
            &[("f_name", "Ada Lovelace"), ("f_email", "twin@example.org")],
        )
        .await;
    editor
        .get("/records/suggest?kind=contact&record=lovel")
        .await
        .assert_status(200)
        .assert_contains(&format!("value=\"#{ada} Ada Lovelace\""))
        .assert_contains("twin@example.org");
    // A name two contacts share comes back with what was typed and why.
    editor
        .post(
            &format!("/processes/{process}/applications"),
            &[
                ("record", "Ada Lovelace"),
                ("s0.contact", ""),
                ("s0.role", "applicant"),
            ],
        )
        .await
        .assert_status(422)
        .assert_contains("id=\"application-error\"")
        .assert_contains("value=\"Ada Lovelace\"")
        .assert_contains("value=\"applicant\"");
    let created = editor
        .post(
            &format!("/processes/{process}/applications"),
            &[
                ("record", &format!("#{ada} Ada Lovelace")),
                ("s0.contact", ""),
                ("s0.role", ""),
            ],
        )
        .await;
    let app_url = created.location().expect("application").to_string();
    let page = editor.get(&app_url).await;
    page.assert_contains("pre-filled from the record")
        .assert_contains("value=\"+33123456789\"");
    // A stakeholder the picker cannot tell apart comes back on the page with what was typed.
    editor
        .post(
            &format!("{app_url}/stakeholders"),
            &[("contact", "Ada Lovelace"), ("role", "partner")],
        )
        .await
        .assert_status(422)
        .assert_contains("id=\"stakeholder-error\"")
        .assert_contains("value=\"Ada Lovelace\"")
        .assert_contains("value=\"partner\"");
    editor
        .post(
            &format!("{app_url}/stakeholders"),
            &[("contact", &format!("#{ada} Ada Lovelace")), ("role", " ")],
        )
        .await
        .assert_status(422)
        .assert_contains("A stakeholder needs a role");
    let mut viewer = admin.fork();
    viewer
        .signed_in_as("viewer@example.org", Role::Viewer)
        .await;
    viewer.get(&app_url).await.assert_status(200);
    viewer
        .post(
            &format!("{app_url}/steps/1"),
            &[("a1_0", "0612345678"), ("action", "submit")],
        )
        .await
        .assert_status(403);

    editor
        .post(
            &format!("{app_url}/steps/1"),
            &[("a1_0", "not a phone"), ("action", "submit")],
        )
        .await
        .assert_status(422)
        .assert_contains("Phone number: &#39;not a phone&#39; is not a phone number");
    editor
        .post(
            &format!("{app_url}/steps/1"),
            &[("a1_0", "06 12 34 56 78"), ("action", "submit")],
        )
        .await
        .assert_redirect(&app_url);
    editor
        .get(&app_url)
        .await
        .assert_contains("Step submitted.")
        .assert_contains("Phone of Ada Lovelace set to +33612345678");
    let record = editor.get(&format!("/records/{ada}")).await;
    record
        .assert_contains("+33612345678")
        .assert_contains("application #1 (Onboarding)");
}

/// Documents are linked, not copied: the pre-filled answer is the record's document, and an
/// uploaded answer lands in the record's document field.
#[core::prelude::v1::test]
fn document_links_share_the_stored_document() {
    let env = Env::new();
    let mut conn = env.conn();
    syncdesk::fields::service::create(
        &mut conn,
        RecordKind::Contact,
        &syncdesk::fields::service::NewField {
            key: "passport".into(),
            label: "Passport".into(),
            field_type: "document".into(),
            options: String::new(),
        },
    )
    .expect("field");
    let process = processes::create(&mut conn, "KYC", RecordKind::Contact)
        .expect("process")
        .id;
    let step = processes::add_step(&mut conn, process, "Identity", false)
        .expect("step")
        .id;
    let item = processes::add_item(
        &mut conn,
        step,
        &NewItem {
            key: "passport".into(),
            label: "Passport".into(),
            item_type: "document".into(),
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
            data_kind: "document".into(),
            item_id: item,
            field_key: "passport".into(),
            roles: String::new(),
            to_record: Rule::Always,
        },
    )
    .expect("link");
    let data = env.state.config.data_dir.clone();
    let old =
        syncdesk::records::documents::store(&mut conn, &data, "old.pdf", b"%PDF-old", 1024, None)
            .expect("doc");
    drop(conn);
    let ada = env.contact("Ada", "");
    let mut input = RecordInput::default();
    input.values.insert("passport".into(), old.id.to_string());
    records::update(&mut env.conn(), ada, &input, &Actor::system("setup"), fr()).expect("attach");
    let app = processes::create_application(&mut env.conn(), process, ada, &[], None)
        .expect("application");
    assert_eq!(
        env.answer(app.id, item, 0).map(|a| a.0),
        Some(old.id.to_string()),
        "the same document, not a copy"
    );
    let new = syncdesk::records::documents::store(
        &mut env.conn(),
        &data,
        "new.pdf",
        b"%PDF-new",
        1024,
        None,
    )
    .expect("doc");
    let typed = BTreeMap::from([((item, 0), new.id.to_string())]);
    processes::save_step(
        &mut env.conn(),
        app.id,
        step,
        &typed,
        true,
        &Actor::system("Eve"),
        fr(),
    )
    .expect("submit");
    let record = records::find(&mut env.conn(), ada)
        .expect("find")
        .expect("ada");
    let defs =
        syncdesk::fields::service::list(&mut env.conn(), RecordKind::Contact, false).expect("defs");
    assert_eq!(
        records::values(&mut env.conn(), &record, &defs).expect("values")["passport"],
        new.id.to_string()
    );
}
