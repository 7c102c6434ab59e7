//! The create and edit forms of a record, and its archive and forced-manual switches.

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::kind_of;
use crate::auth::extract::EditorUser;
use crate::error::AppError;
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::records::model::{Actor, RecordRow};
use crate::records::service::{self, FieldErrors, RecordError, RecordFlag};
use crate::records::view;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub struct FormField {
    pub def: FieldDef,
    pub value: String,
    pub error: Option<String>,
    pub locked: Option<String>,
}

#[derive(Template)]
#[template(path = "records/form.html")]
struct RecordForm {
    ctx: Ctx,
    kind: RecordKind,
    /// `None` for a new record.
    record: Option<RecordRow>,
    fields: Vec<FormField>,
    company: String,
    company_error: Option<String>,
    form_error: Option<String>,
}

impl RecordForm {
    pub fn action(&self) -> String {
        match &self.record {
            Some(r) => format!("/records/{}", r.id),
            None => format!("/{}", self.kind.plural()),
        }
    }
}

/// The sentence above the form; errors of fields the form does not show are spelled out.
fn form_error(errors: &FieldErrors, shown: &[FormField]) -> String {
    let unshown: Vec<&str> = errors
        .iter()
        .filter(|(key, _)| *key != "company" && !shown.iter().any(|f| &f.def.key == *key))
        .map(|(_, message)| message.as_str())
        .collect();
    let mut text = "Nothing was saved: correct the fields marked below.".to_string();
    for message in unshown {
        text.push(' ');
        text.push_str(message);
    }
    text
}

fn form_fields(
    defs: Vec<FieldDef>,
    values: &BTreeMap<String, String>,
    errors: &FieldErrors,
    locked: &BTreeMap<String, String>,
) -> Vec<FormField> {
    defs.into_iter()
        .map(|def| FormField {
            value: values.get(&def.key).cloned().unwrap_or_default(),
            error: errors.get(&def.key).cloned(),
            locked: locked.get(&def.key).cloned(),
            def,
        })
        .collect()
}

#[get("/{kind:contacts|companies}/new")]
pub(super) async fn new_record_page(
    state: web::Data<AppState>,
    me: EditorUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&path)?;
    let defs = state
        .db(move |conn| fields::list(conn, kind, false))
        .await?;
    render(
        StatusCode::OK,
        &RecordForm {
            ctx: me.ctx,
            kind,
            record: None,
            fields: form_fields(
                defs,
                &BTreeMap::new(),
                &FieldErrors::new(),
                &BTreeMap::new(),
            ),
            company: String::new(),
            company_error: None,
            form_error: None,
        },
    )
}

/// The posted form: `f_<key>` inputs for fields, `company` for a contact's company.
struct PostedRecord {
    values: BTreeMap<String, String>,
    company: Option<String>,
}

fn posted(form: &[(String, String)]) -> PostedRecord {
    let mut values = BTreeMap::new();
    let mut company = None;
    for (name, value) in form {
        if let Some(key) = name.strip_prefix("f_") {
            values.insert(key.to_string(), value.clone());
        } else if name == "company" {
            company = Some(value.clone());
        }
    }
    PostedRecord { values, company }
}

#[post("/{kind:contacts|companies}")]
pub(super) async fn create_record(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&path)?;
    let posted = posted(&form);
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let values = posted.values.clone();
    let company = posted.company.clone().unwrap_or_default();
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            let result = service::create_typed(conn, kind, values, &company, &actor, country);
            let defs = fields::list(conn, kind, false)?;
            Ok((result, defs))
        })
        .await?;
    match outcome {
        (Ok(record), _) => {
            flash(&session, format!("{} created.", record.name));
            Ok(see_other(&format!("/records/{}", record.id)))
        }
        (Err(RecordError::Invalid(errors)), defs) => {
            let fields = form_fields(defs, &posted.values, &errors, &BTreeMap::new());
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RecordForm {
                    ctx: me.ctx,
                    kind,
                    record: None,
                    form_error: Some(form_error(&errors, &fields)),
                    fields,
                    company: posted.company.unwrap_or_default(),
                    company_error: errors.get("company").cloned(),
                },
            )
        }
        (Err(e), _) => Err(e.into()),
    }
}

fn company_text(company: &Option<(i64, String)>) -> String {
    company
        .as_ref()
        .map(|(id, name)| format!("#{id} {name}"))
        .unwrap_or_default()
}

#[get("/records/{id}/edit")]
pub(super) async fn edit_page(
    state: web::Data<AppState>,
    me: EditorUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (data, defs) = state
        .db(move |conn| -> Result<_, AppError> {
            let data = view::load(conn, id)?;
            let defs = fields::list(conn, data.record.record_kind(), false)?;
            Ok((data, defs))
        })
        .await?;
    let values: BTreeMap<String, String> = data
        .fields
        .iter()
        .map(|f| (f.def.key.clone(), f.value.clone()))
        .collect();
    let locked: BTreeMap<String, String> = data
        .fields
        .iter()
        .filter_map(|f| f.locked.clone().map(|l| (f.def.key.clone(), l)))
        .collect();
    render(
        StatusCode::OK,
        &RecordForm {
            ctx: me.ctx,
            kind: data.record.record_kind(),
            company: company_text(&data.company),
            record: Some(data.record),
            fields: form_fields(defs, &values, &FieldErrors::new(), &locked),
            company_error: None,
            form_error: None,
        },
    )
}

#[post("/records/{id}")]
pub(super) async fn update_record(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let posted = posted(&form);
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let values = posted.values.clone();
    let company = posted.company.clone();
    let (result, data) = state
        .db(move |conn| -> Result<_, AppError> {
            let result = service::update_typed(conn, id, values, company, &actor, country);
            let data = view::load(conn, id)?;
            Ok((result, data))
        })
        .await?;
    match result {
        Ok(changes) => {
            let message = if changes.is_empty() {
                "Nothing changed.".to_string()
            } else {
                format!(
                    "Saved: {} changed.",
                    changes
                        .iter()
                        .map(|c| c.field_key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            flash(&session, message);
            Ok(see_other(&format!("/records/{id}")))
        }
        Err(RecordError::Invalid(errors)) => {
            let locked: BTreeMap<String, String> = data
                .fields
                .iter()
                .filter_map(|f| f.locked.clone().map(|l| (f.def.key.clone(), l)))
                .collect();
            let mut values: BTreeMap<String, String> = data
                .fields
                .iter()
                .map(|f| (f.def.key.clone(), f.value.clone()))
                .collect();
            values.extend(posted.values.clone());
            let defs = data.fields.iter().map(|f| f.def.clone()).collect();
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &RecordForm {
                    ctx: me.ctx,
                    kind: data.record.record_kind(),
                    company: posted
                        .company
                        .unwrap_or_else(|| company_text(&data.company)),
                    record: Some(data.record),
                    fields: form_fields(defs, &values, &errors, &locked),
                    company_error: errors.get("company").cloned(),
                    form_error: Some("Nothing was saved: correct the fields marked below.".into()),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct FlagForm {
    value: bool,
}

/// Archive/restore, or force manual/lift it: `value=true|false`.
#[post("/records/{id}/{flag:archive|forced-manual}")]
pub(super) async fn set_flag(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, String)>,
    form: web::Form<FlagForm>,
) -> Result<HttpResponse, AppError> {
    let (id, flag) = path.into_inner();
    let flag = if flag == "archive" {
        RecordFlag::Archived
    } else {
        RecordFlag::ForcedManual
    };
    let value = form.value;
    let actor = Actor::user(&me.user);
    let record = state
        .db(move |conn| service::set_flag(conn, id, flag, value, &actor))
        .await?;
    let what = match (flag, value) {
        (RecordFlag::Archived, true) => {
            "archived: it no longer shows in lists, and nothing was deleted"
        }
        (RecordFlag::Archived, false) => "restored",
        (RecordFlag::ForcedManual, true) => {
            "forced manual: imports keep it linked but no longer change its values"
        }
        (RecordFlag::ForcedManual, false) => "no longer forced manual: its source updates it again",
    };
    flash(&session, format!("{} is {what}.", record.name));
    Ok(see_other(&format!("/records/{id}")))
}
