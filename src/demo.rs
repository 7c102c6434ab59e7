//! `syncdesk demo`: data that shows every part of the product, loaded idempotently (a part
//! already there is left as it is). Companies and contacts with custom fields
//! (`records::demo`); the two worked examples of an import (a first connection converting
//! manual records, then an ongoing sync with a forced-manual record, an update and a proposal);
//! a company with a pending proposal; a process with steps, items, data links in each direction
//! and a submitted application; a follow-up template using tag1 and tag2; a dialer's calls
//! written by an activity mapping, sent one by one and imported from its export.

use std::collections::BTreeMap;
use std::path::Path;

use diesel::prelude::*;

use crate::activities::model::{ActivityOrigin, ContactRef, NewActivity};
use crate::db::{DbConn, DbPool};
use crate::fields::model::RecordKind;
use crate::fields::validate::{norm_text, PhoneCountry};
use crate::records::model::Actor;
use crate::rules::Rule;
use crate::schema::{import_runs, records};
use crate::sources::model::MappingInput;
use crate::sources::service::{self as sources, SourceInput};
use crate::sync::jobs::{self, NewRun};

/// What a run of the demo added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub fields: usize,
    pub records: usize,
    pub sources: usize,
    pub runs: usize,
    pub processes: usize,
    pub templates: usize,
    pub activities: usize,
}

/// Any step of the demo failing, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

macro_rules! step {
    ($step:expr, $result:expr) => {
        $result.map_err(|e| DemoError(format!("{}: {e}", $step)))
    };
}

fn record_named(conn: &mut DbConn, kind: RecordKind, name: &str) -> Result<i64, DemoError> {
    step!(
        format!("finding {name}"),
        records::table
            .filter(records::kind.eq(kind.as_str()))
            .filter(records::name_norm.eq(norm_text(name)))
            .select(records::id)
            .first::<i64>(conn)
    )
}

/// Imports `csv` through `source` in the foreground, as the command line does.
fn import(
    pool: &DbPool,
    conn: &mut DbConn,
    source: &crate::sources::model::Source,
    name: &str,
    csv: &str,
    data_dir: &Path,
    country: PhoneCountry,
) -> Result<Option<i64>, DemoError> {
    let what = format!("importing {name}");
    // Each file is imported once: a demo stopped half-way picks up where it stopped.
    let done: Option<i64> = step!(
        what,
        import_runs::table
            .filter(import_runs::source_id.eq(source.id))
            .filter(import_runs::file_name.eq(name))
            .filter(import_runs::status.eq(crate::sync::model::RunStatus::Done.as_str()))
            .select(import_runs::id)
            .first(conn)
            .optional()
    )?;
    if done.is_some() {
        return Ok(None);
    }
    let sha = step!(what, jobs::store_file(data_dir, csv.as_bytes(), u64::MAX))?;
    let run = step!(
        what,
        jobs::enqueue_claimed(
            conn,
            &NewRun {
                source,
                file_name: name,
                sha256: &sha,
                format: crate::sync::csvfile::detect(csv.as_bytes()),
                dry_run: false,
                plan_of: None,
                flag_confirmed: false,
                user_id: None,
                user_label: "demo",
            },
        )
    )?;
    step!(
        what,
        jobs::process(pool, run, data_dir, country, &mut |_, _| {})
    )?;
    Ok(Some(run))
}

/// A template's problems as one sentence, for the demo's errors.
fn in_words(problems: Vec<crate::followups::sandbox::Problem>) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The source of that name, created with its mapping (rule to record per column) when it is
/// not there yet (then counted in the summary).
fn source_named(
    conn: &mut DbConn,
    summary: &mut DemoSummary,
    name: &str,
    kind: RecordKind,
    id_column: &str,
    lines: &[(&str, &str, Rule)],
    activities: Option<sources::ActivitySettings>,
) -> Result<crate::sources::model::Source, DemoError> {
    if let Some(source) = step!("sources", sources::find_by_name(conn, name))? {
        return Ok(source);
    }
    let what = format!("the {name} source");
    let source = step!(
        what,
        sources::create(
            conn,
            &SourceInput {
                name: name.into(),
                kind,
                id_column: id_column.into(),
                match_by: Vec::new(),
                full_mode: false,
                country: String::new(),
                watch_dir: String::new(),
                activities,
            },
        )
    )?;
    let mapping: Vec<MappingInput> = lines
        .iter()
        .map(|(column, field, rule)| MappingInput {
            column_name: column.to_string(),
            field_key: field.to_string(),
            to_record: *rule,
            to_source: Rule::Never,
            blanks_clear: false,
        })
        .collect();
    step!(what, sources::set_mapping(conn, source.id, &mapping))?;
    summary.sources += 1;
    Ok(source)
}

/// The seed's two worked examples: a first file converts the manual records it matches by
/// name, email and phone and creates the others; a person then forces one record manual; a
/// second file updates, proposes (rule review), leaves the forced-manual record alone and adds.
fn sources_and_imports(
    pool: &DbPool,
    conn: &mut DbConn,
    data_dir: &Path,
    country: PhoneCountry,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    let source = source_named(
        conn,
        summary,
        "Practice manager",
        RecordKind::Contact,
        "External Id",
        &[
            ("Name", "name", Rule::Always),
            ("Email", "email", Rule::Always),
            ("Phone", "phone", Rule::Always),
            ("Tag 1", "tag1", Rule::Review),
            ("Tag 2", "tag2", Rule::Always),
        ],
        None,
    )?;
    let first = import(
        pool,
        conn,
        &source,
        "first-connection.csv",
        "External Id,Name,Email,Phone,Tag 1,Tag 2\n\
             P-1,Ada Lovelace,ada@acme.example,+33 6 12 34 56 78,decision maker,monthly\n\
             P-2,Grace Hopper,grace@globex.example,+44 20 7946 0123,billing,quarterly\n\
             P-3,Joan Clarke,joan@example.org,+44 20 7946 0777,,\n",
        data_dir,
        country,
    )?;
    if first.is_some() {
        summary.runs += 1;
        let grace = record_named(conn, RecordKind::Contact, "Grace Hopper")?;
        step!(
            "forcing Grace Hopper manual",
            crate::records::service::set_forced_manual(
                conn,
                grace,
                true,
                &Actor::system("demo data")
            )
        )?;
    }
    let second = import(
        pool,
        conn,
        &source,
        "ongoing-sync.csv",
        "External Id,Name,Email,Phone,Tag 1,Tag 2\n\
             P-1,Ada Lovelace,ada@acme.example,+33 6 12 34 56 78,board member,weekly\n\
             P-2,Grace Hopper,grace.hopper@globex.example,+44 20 7946 0123,billing,quarterly\n\
             P-3,Joan Clarke,joan@example.org,+44 20 7946 0777,,\n\
             P-4,Mary Somerville,mary@example.org,,,monthly\n",
        data_dir,
        country,
    )?;
    summary.runs += usize::from(second.is_some());
    let accounting = source_named(
        conn,
        summary,
        "Accounting",
        RecordKind::Company,
        "Code",
        &[
            ("Name", "name", Rule::Always),
            ("Email", "email", Rule::Always),
            ("Phone", "phone", Rule::Always),
            ("Max credit", "max_credit", Rule::Review),
        ],
        None,
    )?;
    let accounts = import(
        pool,
        conn,
        &accounting,
        "accounts.csv",
        "Code,Name,Email,Phone,Max credit\n\
         A-1,Acme Trading,accounts@acme.example,+33 1 42 68 53 00,30000\n",
        data_dir,
        country,
    )?;
    summary.runs += usize::from(accounts.is_some());
    Ok(())
}

/// A process with a shared step and a per-stakeholder step, data links to the application,
/// to the record and both ways, and one submitted application.
fn process_and_application(
    conn: &mut DbConn,
    country: PhoneCountry,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    use crate::links::service::{self as links, LinkInput};
    use crate::processes::service::{self as processes, NewItem};
    let present = step!("processes", processes::list(conn))?
        .iter()
        .any(|p| p.name == "Customer onboarding");
    if present {
        return Ok(());
    }
    let process = step!(
        "the onboarding process",
        processes::create(conn, "Customer onboarding", RecordKind::Contact)
    )?;
    let details = step!(
        "its first step",
        processes::add_step(conn, process.id, "Your details", false)
    )?;
    let signatories = step!(
        "its second step",
        processes::add_step(conn, process.id, "Signatories", true)
    )?;
    let item = |key: &str, label: &str, item_type: &str| NewItem {
        key: key.into(),
        label: label.into(),
        item_type: item_type.into(),
        required: false,
        options: String::new(),
    };
    let email = step!(
        "an item",
        processes::add_item(conn, details.id, &item("email", "Email", "email"))
    )?;
    let phone = step!(
        "an item",
        processes::add_item(conn, details.id, &item("phone", "Phone", "phone"))
    )?;
    let newsletter = step!(
        "an item",
        processes::add_item(conn, details.id, &item("newsletter", "Newsletter", "text"))
    )?;
    step!(
        "an item",
        processes::add_item(conn, signatories.id, &item("title", "Job title", "text"))
    )?;
    for (item_id, direction, field, rule) in [
        (email.id, "to_application", "email", Rule::Never),
        (phone.id, "both", "phone", Rule::Always),
        (newsletter.id, "to_record", "tag2", Rule::Review),
    ] {
        step!(
            "a data link",
            links::create(
                conn,
                process.id,
                &LinkInput {
                    direction: direction.into(),
                    record_kind: RecordKind::Contact,
                    data_kind: "information".into(),
                    item_id,
                    field_key: field.into(),
                    roles: String::new(),
                    to_record: rule,
                },
            )
        )?;
    }
    let katherine = record_named(conn, RecordKind::Contact, "Katherine Johnson")?;
    let hedy = record_named(conn, RecordKind::Contact, "Hedy Lamarr")?;
    let application = step!(
        "an application",
        processes::create_application(
            conn,
            process.id,
            katherine,
            &[(hedy, "signatory".into())],
            None
        )
    )?;
    let actor = Actor::system("demo data");
    let typed: BTreeMap<(i64, i64), String> = [
        ((phone.id, 0), "+1 202 555 0199".to_string()),
        ((newsletter.id, 0), "weekly".to_string()),
    ]
    .into();
    step!(
        "answering it",
        processes::save_step(
            conn,
            application.id,
            details.id,
            &typed,
            false,
            &actor,
            country
        )
    )?;
    step!(
        "submitting it",
        processes::submit_application(conn, application.id, &actor, country)
    )?;
    summary.processes += 1;
    Ok(())
}

fn template(conn: &mut DbConn, summary: &mut DemoSummary) -> Result<(), DemoError> {
    use crate::followups::service::{self as followups, TemplateInput};
    let present = step!("templates", followups::list(conn))?
        .iter()
        .any(|t| t.name == "Account review");
    if !present {
        step!(
            "the follow-up template",
            followups::create(
                conn,
                &TemplateInput {
                    name: "Account review".into(),
                    kind: RecordKind::Contact,
                    subject: "{{ contact.name }}: your {{ contact.tag1 }} account".into(),
                    body: "Dear {{ contact.name }},\n\nYou asked for {{ contact.tag2 }} news. {{ company.name }} may order up to {{ company.max_credit | money(\"EUR\") }}.\n\nBest regards".into(),
                    html: false,
                },
                "demo data",
            )
        )?;
        summary.templates += 1;
    }
    Ok(())
}

/// A dialer's calls and an email on Ada Lovelace, sent once each (their ids keep them so).
fn activities(conn: &mut DbConn, summary: &mut DemoSummary) -> Result<(), DemoError> {
    use crate::activities::model::Logged;
    use crate::activities::service as activities;
    let ada = record_named(conn, RecordKind::Contact, "Ada Lovelace")?;
    // The dialer is the Practice manager's: its calls are written by an activity mapping.
    let dialer = step!("sources", sources::find_by_name(conn, "Practice manager"))?
        .ok_or_else(|| DemoError("the Practice manager source is missing".into()))?;
    if step!(
        "the activity mapping",
        crate::activities::mapping::find(conn, dialer.id, "call")
    )?
    .is_none()
    {
        step!(
            "the activity mapping",
            crate::activities::mapping::save(
                conn,
                dialer.id,
                "call",
                "Call: {{ outcome }} ({{ duration }} s)",
                "{{ comments }}\nList {{ list_name }}, caller {{ caller_id }}.",
                &[crate::activities::mapping::FieldUpdate {
                    field: "tag2".into(),
                    template: "{{ list_name }}".into(),
                    rule: "review".into(),
                }],
            )
            .map_err(in_words)
        )?;
    }
    let at = |days: i64, hour: u32| {
        (crate::db::now() - chrono::Duration::days(days))
            .date()
            .and_hms_opt(hour, 15, 0)
            .unwrap_or_default()
    };
    let sent = [
        (
            "demo-call-1",
            "call",
            at(6, 9),
            "Renewal call",
            "Asked for the new price list.",
            [
                ("outcome", "answered"),
                ("duration", "184"),
                ("caller_id", "+33 1 70 36 00 00"),
                ("list_name", "Renewals Q4"),
            ],
        ),
        (
            "demo-call-2",
            "call",
            at(3, 14),
            "Follow-up call",
            "",
            [
                ("outcome", "left a message"),
                ("duration", "35"),
                ("caller_id", "+33 1 70 36 00 00"),
                ("list_name", "Renewals Q4"),
            ],
        ),
        (
            "demo-email-1",
            "email",
            at(1, 11),
            "Renewal quote",
            "Quote sent for 25 seats.",
            [
                ("outcome", "sent"),
                ("email_subject", "Your renewal quote"),
                ("duration", ""),
                ("list_name", ""),
            ],
        ),
    ];
    for (id, kind, when, subject, body, attributes) in sent {
        let new = NewActivity {
            contact: ContactRef::Id { id: ada },
            activity_type: kind.into(),
            occurred_at: when,
            subject: subject.into(),
            body: body.into(),
            attributes: attributes
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_id: id.into(),
            source_id: Some(dialer.id),
            origin: ActivityOrigin::Api,
            origin_label: "Dialer (demo)".into(),
            user_id: None,
            sender: format!("source:{}", dialer.id),
        };
        if let Logged::Created(_) = step!("an activity", activities::log(conn, &new))? {
            summary.activities += 1;
        }
    }
    Ok(())
}

/// A dialer's export, imported through a source of activities: each call logged once on the
/// contact the Practice manager knows by that id, through the dialer's activity mapping.
fn dialer_calls(
    pool: &DbPool,
    conn: &mut DbConn,
    data_dir: &Path,
    country: PhoneCountry,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    let practice = step!("sources", sources::find_by_name(conn, "Practice manager"))?
        .ok_or_else(|| DemoError("the Practice manager source is missing".into()))?;
    let source = source_named(
        conn,
        summary,
        "Dialer calls",
        RecordKind::Contact,
        "Call ID",
        &[
            ("Customer ID", "contact_external_id", Rule::Always),
            ("Start Time", "occurred_at", Rule::Always),
            ("Call Outcome", "outcome", Rule::Always),
            ("Agent Comments", "comments", Rule::Always),
            ("Talk Time", "duration", Rule::Always),
            ("Campaign", "list_name", Rule::Always),
        ],
        Some(sources::ActivitySettings {
            contacts_from: Some(practice.id),
            default_type: "call".into(),
        }),
    )?;
    let mapped = step!(
        "the dialer's activity mapping",
        crate::activities::mapping::find(conn, source.id, "call")
    )?;
    if mapped.is_none() {
        step!(
            "the dialer's activity mapping",
            crate::activities::mapping::save(
                conn,
                source.id,
                "call",
                "Call: {{ outcome }} ({{ duration }} s)",
                "{{ comments }}",
                &[],
            )
            .map_err(in_words)
        )?;
    }
    let day = (crate::db::now() - chrono::Duration::days(2)).date();
    let file = format!(
        "Call ID,Customer ID,Start Time,Call Outcome,Agent Comments,Talk Time,Campaign\n\
         D-1001,P-3,{day} 10:02,answered,Interested in the onboarding offer,212,Onboarding\n\
         D-1002,P-4,{day} 10:09,no answer,,0,Onboarding\n\
         D-1003,P-9,{day} 10:15,answered,Wrong number,14,Onboarding\n"
    );
    let Some(run) = import(
        pool,
        conn,
        &source,
        "dialer-calls.csv",
        &file,
        data_dir,
        country,
    )?
    else {
        return Ok(());
    };
    let logged = step!("the dialer's run", crate::sync::engine::load_run(conn, run))?
        .map_or(0, |run| run.count("created"));
    summary.runs += 1;
    summary.activities += usize::try_from(logged).unwrap_or(0);
    Ok(())
}

/// Loads every part of the demo that is not there yet.
pub fn load(
    pool: &DbPool,
    data_dir: &Path,
    country: PhoneCountry,
) -> Result<DemoSummary, DemoError> {
    let mut conn = step!("the database", pool.get())?;
    let conn = &mut *conn;
    let records = step!("records", crate::records::demo::load(conn, country))?;
    let mut summary = DemoSummary {
        fields: records.fields_added,
        records: records.records_added,
        ..Default::default()
    };
    sources_and_imports(pool, conn, data_dir, country, &mut summary)?;
    process_and_application(conn, country, &mut summary)?;
    template(conn, &mut summary)?;
    activities(conn, &mut summary)?;
    dialer_calls(pool, conn, data_dir, country, &mut summary)?;
    Ok(summary)
}
