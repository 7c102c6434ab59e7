//! `syncdesk demo`: a few companies and contacts with custom fields, to look around with.
//! Running it again adds nothing twice.

use diesel::prelude::*;

use super::model::{Actor, RecordInput};
use super::service::{self, RecordError};
use crate::db::DbConn;
use crate::fields::model::RecordKind;
use crate::fields::service::{self as fields, FieldError, NewField};
use crate::fields::validate::{norm_text, PhoneCountry};
use crate::schema::records;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

#[derive(Debug, Default)]
pub struct DemoSummary {
    pub fields_added: usize,
    pub records_added: usize,
}

const FIELDS: [(RecordKind, &str, &str, &str, &str); 7] = [
    (RecordKind::Contact, "tag1", "Tag 1", "text", ""),
    (RecordKind::Contact, "tag2", "Tag 2", "text", ""),
    (
        RecordKind::Contact,
        "segment",
        "Segment",
        "list",
        "Gold\nSilver\nBronze",
    ),
    (RecordKind::Contact, "birthday", "Birthday", "date", ""),
    (
        RecordKind::Contact,
        "id_document",
        "Identity document",
        "document",
        "",
    ),
    (
        RecordKind::Company,
        "max_credit",
        "Maximum credit",
        "number",
        "",
    ),
    (RecordKind::Company, "tag1", "Tag 1", "text", ""),
];

type Values<'a> = &'a [(&'a str, &'a str)];

const COMPANIES: [Values<'static>; 3] = [
    &[
        ("name", "Acme Trading"),
        ("email", "accounts@acme.example"),
        ("phone", "+33 1 42 68 53 00"),
        ("registration_number", "552 100 554"),
        ("address", "12 rue de la Paix\n75002 Paris"),
        ("max_credit", "25000"),
        ("tag1", "key account"),
    ],
    &[
        ("name", "Globex Logistics"),
        ("email", "hello@globex.example"),
        ("phone", "+44 20 7946 0958"),
        ("registration_number", "GB 09876543"),
        ("max_credit", "8000"),
    ],
    &[
        ("name", "Initech Services"),
        ("email", "office@initech.example"),
        ("registration_number", "FR 784 671 695"),
        ("max_credit", "1500.5"),
        ("tag1", "late payer"),
    ],
];

/// (company name, contact values)
const CONTACTS: [(&str, Values<'static>); 6] = [
    (
        "Acme Trading",
        &[
            ("name", "Ada Lovelace"),
            ("email", "ada@acme.example"),
            ("phone", "+33 6 12 34 56 78"),
            ("tag1", "decision maker"),
            ("tag2", "monthly"),
            ("segment", "Gold"),
            ("birthday", "1985-12-10"),
        ],
    ),
    (
        "Acme Trading",
        &[
            ("name", "Charles Babbage"),
            ("email", "charles@acme.example"),
            ("segment", "Silver"),
        ],
    ),
    (
        "Globex Logistics",
        &[
            ("name", "Grace Hopper"),
            ("email", "grace@globex.example"),
            ("phone", "+44 20 7946 0123"),
            ("tag1", "billing"),
            ("tag2", "quarterly"),
        ],
    ),
    (
        "Globex Logistics",
        &[
            ("name", "Alan Turing"),
            ("phone", "+44 20 7946 0321"),
            ("segment", "Bronze"),
        ],
    ),
    (
        "Initech Services",
        &[
            ("name", "Katherine Johnson"),
            ("email", "kj@initech.example"),
            ("tag1", "decision maker"),
            ("segment", "Gold"),
        ],
    ),
    (
        "",
        &[
            ("name", "Hedy Lamarr"),
            ("email", "hedy@example.org"),
            ("phone", "+1 202 555 0143"),
        ],
    ),
];

fn exists(conn: &mut DbConn, kind: RecordKind, name: &str) -> QueryResult<Option<i64>> {
    records::table
        .filter(records::kind.eq(kind.as_str()))
        .filter(records::name_norm.eq(norm_text(name)))
        .select(records::id)
        .first(conn)
        .optional()
}

pub fn load(conn: &mut DbConn, country: PhoneCountry) -> Result<DemoSummary, DemoError> {
    let mut summary = DemoSummary::default();
    for (kind, key, label, field_type, options) in FIELDS {
        let present = fields::list(conn, kind, true)?.iter().any(|f| f.key == key);
        if !present {
            fields::create(
                conn,
                kind,
                &NewField {
                    key: key.into(),
                    label: label.into(),
                    field_type: field_type.into(),
                    options: options.into(),
                },
            )?;
            summary.fields_added += 1;
        }
    }
    let actor = Actor::system("demo data");
    let input = |values: Values| RecordInput {
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        company_id: None,
    };
    for values in COMPANIES {
        let name = values[0].1;
        if exists(conn, RecordKind::Company, name)?.is_none() {
            service::create(conn, RecordKind::Company, &input(values), &actor, country)?;
            summary.records_added += 1;
        }
    }
    for (company, values) in CONTACTS {
        let name = values[0].1;
        if exists(conn, RecordKind::Contact, name)?.is_some() {
            continue;
        }
        let mut contact = input(values);
        if !company.is_empty() {
            contact.company_id = Some(exists(conn, RecordKind::Company, company)?);
        }
        service::create(conn, RecordKind::Contact, &contact, &actor, country)?;
        summary.records_added += 1;
    }
    Ok(summary)
}
