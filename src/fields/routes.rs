//! The Fields page (admins): add, edit, order and archive custom fields per record kind.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::model::{FieldDef, FieldType, RecordKind};
use super::service::{self, FieldError, NewField};
use crate::auth::extract::AdminUser;
use crate::error::AppError;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(fields_page)
        .service(create_field)
        .service(edit_field_page)
        .service(update_field)
        .service(archive_field)
        .service(move_field);
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::Db(db) => db.into(),
            FieldError::NotFound => AppError::not_found("That field"),
            FieldError::KeyTaken { .. } => AppError::Conflict(e.to_string()),
            FieldError::Invalid(_) | FieldError::Builtin => AppError::BadRequest(e.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "fields/list.html")]
struct FieldsPage {
    ctx: Ctx,
    kind: RecordKind,
    fields: Vec<FieldDef>,
    types: [FieldType; 7],
    form: NewFieldForm,
    error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct NewFieldForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    field_type: String,
    #[serde(default)]
    options: String,
}

#[derive(Deserialize)]
struct KindQuery {
    kind: Option<String>,
}

fn kind_param(kind: Option<&str>) -> RecordKind {
    kind.and_then(RecordKind::parse)
        .unwrap_or(RecordKind::Contact)
}

#[get("/fields")]
async fn fields_page(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<KindQuery>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_param(query.kind.as_deref());
    let fields = state
        .db(move |conn| service::list(conn, kind, true))
        .await?;
    render(
        StatusCode::OK,
        &FieldsPage {
            ctx: admin.ctx,
            kind,
            fields,
            types: FieldType::ALL,
            form: NewFieldForm {
                field_type: "text".into(),
                ..Default::default()
            },
            error: None,
        },
    )
}

#[post("/fields")]
async fn create_field(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    query: web::Query<KindQuery>,
    form: web::Form<NewFieldForm>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_param(query.kind.as_deref());
    let form = form.into_inner();
    let new = NewField {
        key: form.key.clone(),
        label: form.label.clone(),
        field_type: form.field_type.clone(),
        options: form.options.clone(),
    };
    let (result, fields) = state
        .db(move |conn| -> Result<_, AppError> {
            let result = service::create(conn, kind, &new);
            Ok((result, service::list(conn, kind, true)?))
        })
        .await?;
    match result {
        Ok(field) => {
            flash(
                &session,
                format!(
                    "Field {} ({}) added to {}.",
                    field.label,
                    field.key,
                    kind.plural()
                ),
            );
            Ok(see_other(&format!("/fields?kind={kind}")))
        }
        Err(e @ (FieldError::Invalid(_) | FieldError::KeyTaken { .. })) => {
            let status = if matches!(e, FieldError::KeyTaken { .. }) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            render(
                status,
                &FieldsPage {
                    ctx: admin.ctx,
                    kind,
                    fields,
                    types: FieldType::ALL,
                    form,
                    error: Some(e.to_string()),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "fields/edit.html")]
struct EditFieldPage {
    ctx: Ctx,
    field: FieldDef,
    label: String,
    options: String,
    error: Option<String>,
}

#[get("/fields/{id}/edit")]
async fn edit_field_page(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let field = state
        .db(move |conn| service::find(conn, id))
        .await?
        .ok_or_else(|| AppError::not_found("That field"))?;
    render(
        StatusCode::OK,
        &EditFieldPage {
            ctx: admin.ctx,
            label: field.label.clone(),
            options: field.options.clone(),
            field,
            error: None,
        },
    )
}

#[derive(Deserialize)]
struct EditFieldForm {
    label: String,
    #[serde(default)]
    options: String,
}

#[post("/fields/{id}")]
async fn update_field(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<EditFieldForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let (label, options) = (form.label.clone(), form.options.clone());
    let (result, field) = state
        .db(move |conn| -> Result<_, AppError> {
            let result = service::update(conn, id, &label, &options);
            Ok((result, service::find(conn, id)?))
        })
        .await?;
    match (result, field) {
        (Ok(field), _) => {
            flash(&session, format!("Field {} saved.", field.label));
            Ok(see_other(&format!("/fields?kind={}", field.kind)))
        }
        (Err(e @ FieldError::Invalid(_)), Some(field)) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &EditFieldPage {
                ctx: admin.ctx,
                field,
                label: form.label,
                options: form.options,
                error: Some(e.to_string()),
            },
        ),
        (Err(e), _) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct ArchiveForm {
    archived: bool,
}

#[post("/fields/{id}/archive")]
async fn archive_field(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ArchiveForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let archived = form.archived;
    let (field, used_by, updated_by) = state
        .db(move |conn| -> Result<_, AppError> {
            let field = service::set_archived(conn, id, archived)?;
            let kind = RecordKind::parse(&field.kind).unwrap_or(RecordKind::Contact);
            if !archived {
                return Ok((field, Vec::new(), Vec::new()));
            }
            let used_by = crate::followups::service::using_field(conn, kind, &field.key)?;
            let updated_by = if kind == RecordKind::Contact {
                crate::activities::mapping::using_field(conn, &field.key)?
            } else {
                Vec::new()
            };
            Ok((field, used_by, updated_by))
        })
        .await?;
    let what = if archived {
        "archived: it leaves forms and lists, its values are kept"
    } else {
        "restored"
    };
    let mut warning = String::new();
    if !used_by.is_empty() {
        warning.push_str(&format!(
            " Warning: the follow-up template(s) {} use it and will report it as unknown until it is restored or they change.",
            used_by.join(", ")
        ));
    }
    if !updated_by.is_empty() {
        warning.push_str(&format!(
            " Warning: the activity mapping(s) {} update it; those updates are skipped until it is restored or the mappings change.",
            updated_by.join(", ")
        ));
    }
    flash(
        &session,
        format!("Field {} is {what}.{warning}", field.label),
    );
    Ok(see_other(&format!("/fields?kind={}", field.kind)))
}

#[derive(Deserialize)]
struct MoveForm {
    direction: String,
}

#[post("/fields/{id}/move")]
async fn move_field(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<i64>,
    form: web::Form<MoveForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let up = form.direction == "up";
    let kind = state
        .db(move |conn| -> Result<_, AppError> {
            service::move_field(conn, id, up)?;
            Ok(service::find(conn, id)?.map(|f| f.kind).unwrap_or_default())
        })
        .await?;
    Ok(see_other(&format!("/fields?kind={kind}")))
}
