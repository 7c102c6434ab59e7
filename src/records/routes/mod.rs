//! Contact and company pages: the record page and its documents here; the lists and their
//! export in `list.rs`, the forms in `form.rs`.

mod form;
mod list;

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;

use super::documents::{self, DocumentError};
use super::model::{Actor, HistoryEntry, LinkView, RecordRow};
use super::service::RecordError;
use super::view::{self, FieldView};
use crate::auth::extract::{EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::RecordKind;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list::export_csv)
        .service(list::suggest_companies)
        .service(list::suggest_records)
        .service(form::new_record_page)
        .service(list::list_page)
        .service(form::create_record)
        .service(record_page)
        .service(form::edit_page)
        .service(form::update_record)
        .service(form::set_flag)
        .service(upload_document)
        .service(download_document);
}

impl From<RecordError> for AppError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Db(db) => db.into(),
            RecordError::NotFound => AppError::not_found("That record"),
            RecordError::Invalid(_) => AppError::BadRequest(e.to_string()),
        }
    }
}

impl From<DocumentError> for AppError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::Refused(message) => AppError::BadRequest(message),
            DocumentError::Io(io) => AppError::internal(io),
            DocumentError::Db(db) => db.into(),
            DocumentError::Record(e) => e.into(),
        }
    }
}

fn kind_of(segment: &str) -> Result<RecordKind, AppError> {
    match segment {
        "contacts" => Ok(RecordKind::Contact),
        "companies" => Ok(RecordKind::Company),
        _ => Err(AppError::NotFound(format!(
            "There is no page at /{segment}."
        ))),
    }
}

// ---- record page -----------------------------------------------------------------------

impl RecordPage {
    /// Pending fields of one of a company's contacts.
    pub fn contact_pending(&self, contact_id: &i64) -> i64 {
        self.contacts_pending.get(contact_id).copied().unwrap_or(0)
    }

    /// A history row's field as people know it: its label (or the property's name).
    pub fn label_of(&self, key: &str) -> String {
        match key {
            "company" => "Company".into(),
            "owner" => "Owner".into(),
            "created" => "Record created".into(),
            "forced_manual" => "Forced manual".into(),
            "archived" => "Archived".into(),
            _ => crate::fields::model::label_of(self.fields.iter().map(|f| &f.def), key),
        }
    }
}

#[derive(Template)]
#[template(path = "records/show.html")]
struct RecordPage {
    ctx: Ctx,
    record: RecordRow,
    kind: RecordKind,
    fields: Vec<FieldView>,
    company: Option<(i64, String)>,
    contacts: Vec<(i64, String)>,
    /// A company's contacts with fields waiting for a decision: contact id -> count.
    contacts_pending: BTreeMap<i64, i64>,
    owner: Option<String>,
    links: Vec<LinkView>,
    history: Vec<HistoryEntry>,
    proposals: Vec<crate::review::service::Proposal>,
    /// (application id, process name, status)
    applications: Vec<(i64, String, crate::processes::model::ApplicationStatus)>,
    can_edit: bool,
    max_upload_mb: usize,
    accepted: String,
}

#[get("/records/{id}")]
async fn record_page(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let data = state.db(move |conn| view::load(conn, id)).await?;
    render(
        StatusCode::OK,
        &RecordPage {
            ctx: me.ctx,
            kind: data.record.record_kind(),
            record: data.record,
            fields: data.fields,
            company: data.company,
            contacts: data.contacts,
            contacts_pending: data.contacts_pending,
            owner: data.owner,
            links: data.links,
            history: data.history,
            proposals: data.proposals,
            applications: data.applications,
            can_edit: me.user.can(Role::Editor),
            max_upload_mb: state.config.max_upload_bytes / (1024 * 1024),
            accepted: documents::accepted_extensions(),
        },
    )
}

// ---- documents -------------------------------------------------------------------------

#[post("/records/{id}/documents/{key}")]
async fn upload_document(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, String)>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let (id, key) = path.into_inner();
    let max = state.config.max_upload_bytes;
    let (filename, bytes) = crate::web::read_upload(payload, max).await?;
    let data_dir = state.config.data_dir.clone();
    let country = state.config.default_country;
    let actor = Actor::user(&me.user);
    let document = state
        .db(move |conn| {
            let upload = documents::Upload {
                filename: &filename,
                bytes: &bytes,
                max_bytes: max,
            };
            documents::attach(conn, &data_dir, id, &key, &upload, &actor, country)
        })
        .await?;
    flash(&session, format!("{} uploaded.", document.filename));
    Ok(see_other(&format!("/records/{id}")))
}

#[get("/documents/{id}")]
async fn download_document(
    state: web::Data<AppState>,
    _me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let data_dir = state.config.data_dir.clone();
    let (document, bytes) = state
        .db(move |conn| -> Result<_, AppError> {
            let document =
                documents::find(conn, id)?.ok_or_else(|| AppError::not_found("That document"))?;
            let file = documents::file_of(&data_dir, &document)
                .ok_or_else(|| AppError::internal(format!("document {id}: stored file missing")))?;
            let bytes = std::fs::read(file).map_err(AppError::internal)?;
            Ok((document, bytes))
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, document.content_type.clone()))
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(document.filename.clone())],
        })
        .body(bytes))
}
