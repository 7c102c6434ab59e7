//! What a record's page shows: its fields (with documents and locks), company or contacts,
//! owner, links, history, pending proposals and applications. Read here, shown by routes.

use std::collections::{BTreeMap, HashMap};

use super::documents;
use super::model::{Document, HistoryEntry, LinkView, RecordRow};
use super::service::{self, RecordError};
use crate::db::DbConn;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;

/// A field of the record with its value, its document and why it is locked, if it is.
pub struct FieldView {
    pub def: FieldDef,
    pub value: String,
    pub document: Option<Document>,
    pub locked: Option<String>,
}

impl FieldView {
    /// The value as the page shows it (phones with spaces).
    pub fn shown(&self) -> String {
        crate::fields::validate::display(self.def.ftype(), &self.value)
    }
}

pub struct RecordView {
    pub record: RecordRow,
    pub fields: Vec<FieldView>,
    pub company: Option<(i64, String)>,
    pub contacts: Vec<(i64, String)>,
    pub contacts_pending: BTreeMap<i64, i64>,
    pub owner: Option<String>,
    pub links: Vec<LinkView>,
    pub history: Vec<HistoryEntry>,
    pub proposals: Vec<crate::review::service::Proposal>,
    pub applications: Vec<(i64, String, crate::processes::model::ApplicationStatus)>,
}

/// Everything the record's page shows, in a fixed number of queries whatever the number of
/// fields, documents or applications.
pub fn load(conn: &mut DbConn, id: i64) -> Result<RecordView, RecordError> {
    let record = service::find(conn, id)?.ok_or(RecordError::NotFound)?;
    let kind = record.record_kind();
    let defs = fields::list(conn, kind, false)?;
    let values = service::values(conn, &record, &defs)?;
    let locked = service::locked_fields(conn, &record)?;
    let document_ids: Vec<i64> = defs
        .iter()
        .filter(|def| def.ftype() == FieldType::Document)
        .filter_map(|def| values.get(&def.key)?.parse().ok())
        .collect();
    let mut documents = documents::find_many(conn, &document_ids)?;
    let mut views = Vec::new();
    for def in defs {
        let value = values.get(&def.key).cloned().unwrap_or_default();
        let document = match (def.ftype(), value.parse::<i64>()) {
            (FieldType::Document, Ok(doc)) => documents.remove(&doc),
            _ => None,
        };
        views.push(FieldView {
            locked: locked.get(&def.key).cloned(),
            def,
            value,
            document,
        });
    }
    let company = match record.company_id {
        Some(cid) => service::find(conn, cid)?.map(|c| (c.id, c.name)),
        None => None,
    };
    let contacts = if kind == RecordKind::Company {
        service::contacts_of(conn, id)?
    } else {
        Vec::new()
    };
    let contact_ids: Vec<i64> = contacts.iter().map(|(id, _)| *id).collect();
    let contacts_pending = crate::review::service::pending_counts(conn, &contact_ids)?;
    let owner = match record.owner_source_id {
        Some(source) => service::source_name(conn, source)?,
        None => None,
    };
    let links = service::links_of(conn, id)?;
    let history = service::history_of(conn, id, 200)?;
    let proposals = crate::review::service::pending_for(conn, id)?;
    let process_names: HashMap<i64, String> = crate::processes::service::list(conn)?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let applications = crate::processes::service::applications_of_record(conn, id)?
        .into_iter()
        .map(|app| {
            let process = process_names
                .get(&app.process_id)
                .cloned()
                .unwrap_or_default();
            (app.id, process, app.status)
        })
        .collect();
    Ok(RecordView {
        applications,
        proposals,
        record,
        fields: views,
        company,
        contacts,
        contacts_pending,
        owner,
        links,
        history,
    })
}
