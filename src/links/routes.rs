//! The data links page of a process (admins only): list, create, edit, delete.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::model::{DataLink, DIRECTIONS};
use super::service::{self, LinkInput};
use crate::auth::extract::AdminUser;
use crate::error::AppError;
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::processes::model::{Item, Process};
use crate::processes::service::{self as processes, ProcessError};
use crate::rules::Rule;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(links_page)
        .service(create)
        .service(edit_page)
        .service(update)
        .service(delete);
}

#[derive(Debug, Clone, Deserialize)]
struct LinkForm {
    direction: String,
    record_kind: String,
    data_kind: String,
    item_id: i64,
    field_key: String,
    #[serde(default)]
    roles: String,
    to_record: String,
}

impl LinkForm {
    fn input(&self) -> Result<LinkInput, AppError> {
        Ok(LinkInput {
            direction: self.direction.clone(),
            record_kind: RecordKind::parse(&self.record_kind)
                .ok_or_else(|| AppError::BadRequest("Choose contact or company.".into()))?,
            data_kind: self.data_kind.clone(),
            item_id: self.item_id,
            field_key: self.field_key.clone(),
            roles: self.roles.clone(),
            to_record: Rule::parse(&self.to_record)
                .ok_or_else(|| AppError::BadRequest("Choose a rule for the record side.".into()))?,
        })
    }
}

#[derive(Template)]
#[template(path = "links/list.html")]
struct LinksPage {
    ctx: Ctx,
    process: Process,
    links: Vec<DataLink>,
    items: Vec<Item>,
    contact_fields: Vec<FieldDef>,
    company_fields: Vec<FieldDef>,
    directions: [&'static str; 3],
    rules: [Rule; 4],
    editing: Option<DataLink>,
    error: Option<String>,
}

impl LinksPage {
    pub fn item_label(&self, id: &i64) -> String {
        self.items
            .iter()
            .find(|i| i.id == *id)
            .map(|i| format!("{} ({})", i.label, i.item_type))
            .unwrap_or_default()
    }
}

fn page(
    conn: &mut crate::db::DbConn,
    ctx: Ctx,
    process_id: i64,
    editing: Option<DataLink>,
    error: Option<String>,
) -> Result<LinksPage, AppError> {
    let process =
        processes::find(conn, process_id)?.ok_or_else(|| AppError::not_found("That process"))?;
    Ok(LinksPage {
        ctx,
        links: service::list(conn, process_id)?,
        items: processes::items_of(conn, process_id)?,
        contact_fields: fields::list(conn, RecordKind::Contact, false)?,
        company_fields: fields::list(conn, RecordKind::Company, false)?,
        directions: DIRECTIONS,
        rules: Rule::ALL,
        process,
        editing,
        error,
    })
}

#[get("/processes/{id}/links")]
async fn links_page(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let ctx = admin.ctx;
    let page = state
        .db(move |conn| page(conn, ctx, id, None, None))
        .await?;
    render(StatusCode::OK, &page)
}

#[get("/links/{id}/edit")]
async fn edit_page(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let ctx = admin.ctx;
    let page = state
        .db(move |conn| -> Result<_, AppError> {
            let link =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That data link"))?;
            page(conn, ctx, link.process_id, Some(link), None)
        })
        .await?;
    render(StatusCode::OK, &page)
}

/// Saves a new link (`link_id` None) or an existing one; a refusal shows the page again.
async fn save(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    process_id: Option<i64>,
    link_id: Option<i64>,
    form: LinkForm,
) -> Result<HttpResponse, AppError> {
    let input = form.input()?;
    let ctx = admin.ctx;
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            let result = match link_id {
                Some(id) => service::update(conn, id, &input),
                None => service::create(conn, process_id.unwrap_or_default(), &input),
            };
            match result {
                Ok(link) => Ok(Ok(link)),
                Err(ProcessError::Invalid(message)) => {
                    let editing = match link_id {
                        Some(id) => service::find(conn, id)?,
                        None => None,
                    };
                    let process = editing
                        .as_ref()
                        .map(|l| l.process_id)
                        .or(process_id)
                        .unwrap_or_default();
                    Ok(Err(page(conn, ctx, process, editing, Some(message))?))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    match outcome {
        Ok(link) => {
            flash(&session, "Data link saved.");
            Ok(see_other(&format!("/processes/{}/links", link.process_id)))
        }
        Err(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
    }
}

#[post("/processes/{id}/links")]
async fn create(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, AppError> {
    save(
        state,
        admin,
        session,
        Some(path.into_inner()),
        None,
        form.into_inner(),
    )
    .await
}

#[post("/links/{id}")]
async fn update(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, AppError> {
    save(
        state,
        admin,
        session,
        None,
        Some(path.into_inner()),
        form.into_inner(),
    )
    .await
}

#[post("/links/{id}/delete")]
async fn delete(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let process = state
        .db(move |conn| -> Result<i64, AppError> {
            let link =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That data link"))?;
            service::delete(conn, id)?;
            Ok(link.process_id)
        })
        .await?;
    flash(&session, "Data link deleted.");
    Ok(see_other(&format!("/processes/{process}/links")))
}
