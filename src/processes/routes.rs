//! Processes (admins build steps and items) and applications (editors create and fill them).

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::model::{Answer, AnswerOrigin, Application, Process, Stakeholder, StepView};
use super::service::{self, answer_key, NewItem, ProcessError};
use crate::auth::extract::{AdminUser, EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::{FieldType, RecordKind};
use crate::records::documents;
use crate::records::model::Actor;
use crate::records::service::{self as records, RecordError};
use crate::web::{flash, read_upload, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_page)
        .service(create_process)
        .service(show_process)
        .service(add_step)
        .service(add_item)
        .service(create_application)
        .service(application_page)
        .service(save_step)
        .service(submit)
        .service(add_stakeholder)
        .service(upload_answer_document);
}

impl From<ProcessError> for AppError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Db(db) => db.into(),
            ProcessError::NotFound(what) => AppError::not_found(what),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "processes/list.html")]
struct ListPage {
    ctx: Ctx,
    processes: Vec<Process>,
    is_admin: bool,
}

#[get("/processes")]
async fn list_page(state: web::Data<AppState>, me: SignedIn) -> Result<HttpResponse, AppError> {
    let processes = state.db(service::list).await?;
    render(
        StatusCode::OK,
        &ListPage {
            is_admin: me.user.can(Role::Admin),
            ctx: me.ctx,
            processes,
        },
    )
}

#[derive(Deserialize)]
struct ProcessForm {
    name: String,
    kind: String,
}

#[post("/processes")]
async fn create_process(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    form: web::Form<ProcessForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let kind = RecordKind::parse(&form.kind)
        .ok_or_else(|| AppError::BadRequest("Choose contacts or companies.".into()))?;
    let process = state
        .db(move |conn| service::create(conn, &form.name, kind))
        .await?;
    flash(
        &session,
        format!("Process {} created: add its steps and items.", process.name),
    );
    Ok(see_other(&format!("/processes/{}", process.id)))
}

#[derive(Template)]
#[template(path = "processes/show.html")]
struct ShowPage {
    ctx: Ctx,
    process: Process,
    steps: Vec<StepView>,
    applications: Vec<(Application, String)>,
    types: [FieldType; 7],
    is_admin: bool,
    can_edit: bool,
    /// Records and fields with pending proposals from this process's applications.
    desync: crate::review::service::DesyncTotals,
    /// The new-application form as typed (kept when it comes back with an error).
    typed: BTreeMap<String, String>,
    application_error: Option<String>,
}

impl ShowPage {
    /// What was typed in a field of the new-application form.
    pub fn typed(&self, name: &str) -> &str {
        self.typed.get(name).map(String::as_str).unwrap_or("")
    }
}

impl ShowPage {
    /// The desynchronised view filtered on this process.
    pub fn desync_query(&self) -> String {
        format!("process={}", self.process.id)
    }
}

#[get("/processes/{id}")]
async fn show_process(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    show_with(
        &state,
        me.ctx,
        &me.user,
        id,
        BTreeMap::new(),
        None,
        StatusCode::OK,
    )
    .await
}

/// The process page; `typed` and `application_error` bring back a refused new application.
async fn show_with(
    state: &AppState,
    ctx: Ctx,
    user: &crate::auth::model::User,
    id: i64,
    typed: BTreeMap<String, String>,
    application_error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let (process, steps, applications, desync) = state
        .db(move |conn| -> Result<_, AppError> {
            let process =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That process"))?;
            let steps = service::steps(conn, id)?;
            let apps = service::applications_of_process(conn, id)?;
            let ids: Vec<i64> = apps.iter().map(|a| a.record_id).collect();
            let names = records::names_of(conn, &ids)?;
            let applications = apps
                .into_iter()
                .map(|a| {
                    let name = names.get(&a.record_id).cloned().unwrap_or_default();
                    (a, name)
                })
                .collect();
            let from_process = crate::review::service::DesyncFilter {
                process_id: Some(id),
                ..Default::default()
            };
            let desync = crate::review::service::totals(conn, &from_process)?;
            Ok((process, steps, applications, desync))
        })
        .await?;
    render(
        status,
        &ShowPage {
            is_admin: user.can(Role::Admin),
            can_edit: user.can(Role::Editor),
            ctx,
            process,
            steps,
            applications,
            types: FieldType::ALL,
            desync,
            typed,
            application_error,
        },
    )
}

#[derive(Deserialize)]
struct StepForm {
    title: String,
    #[serde(default)]
    per_stakeholder: Option<String>,
}

#[post("/processes/{id}/steps")]
async fn add_step(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<StepForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let per = form.per_stakeholder.is_some();
    let step = state
        .db(move |conn| service::add_step(conn, id, &form.title, per))
        .await?;
    flash(&session, format!("Step {} added.", step.title));
    Ok(see_other(&format!("/processes/{id}")))
}

#[derive(Deserialize)]
struct ItemForm {
    step_id: i64,
    key: String,
    label: String,
    item_type: String,
    #[serde(default)]
    required: Option<String>,
    #[serde(default)]
    options: String,
}

#[post("/processes/{id}/items")]
async fn add_item(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ItemForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let new = NewItem {
        key: form.key,
        label: form.label,
        item_type: form.item_type,
        required: form.required.is_some(),
        options: form.options,
    };
    let step_id = form.step_id;
    let item = state
        .db(move |conn| -> Result<_, AppError> {
            let step = service::find_step(conn, step_id)?
                .filter(|s| s.process_id == id)
                .ok_or_else(|| AppError::not_found("That step"))?;
            Ok(service::add_item(conn, step.id, &new)?)
        })
        .await?;
    flash(&session, format!("Item {} added.", item.label));
    Ok(see_other(&format!("/processes/{id}")))
}

/// `record`, then `s<N>.contact` and `s<N>.role` for stakeholders (blank lines ignored).
#[post("/processes/{id}/applications")]
async fn create_application(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let record = get("record");
    let mut lines: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (name, value) in form.iter() {
        if let Some((index, part)) = name.strip_prefix('s').and_then(|r| r.split_once('.')) {
            let line = lines.entry(index.to_string()).or_default();
            match part {
                "contact" => line.0 = value.clone(),
                "role" => line.1 = value.clone(),
                _ => {}
            }
        }
    }
    let user_id = me.user.id;
    let typed: BTreeMap<String, String> = form.iter().cloned().collect();
    let created = state
        .db(move |conn| -> Result<Application, AppError> {
            let process =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That process"))?;
            let record_id = records::resolve_record(conn, process.record_kind(), "record", &record)
                .map_err(record_error)?
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "Choose the {} the application is for.",
                        process.kind
                    ))
                })?;
            let mut holders = Vec::new();
            for (contact, role) in lines.values().filter(|(c, _)| !c.trim().is_empty()) {
                let contact_id =
                    records::resolve_record(conn, RecordKind::Contact, "stakeholder", contact)
                        .map_err(record_error)?
                        .ok_or_else(|| {
                            AppError::BadRequest("A stakeholder line has no contact.".into())
                        })?;
                holders.push((contact_id, role.clone()));
            }
            Ok(service::create_application(
                conn,
                id,
                record_id,
                &holders,
                Some(user_id),
            )?)
        })
        .await;
    let application = match created {
        Ok(application) => application,
        // The form comes back with what was typed and why.
        Err(AppError::BadRequest(message)) => {
            return show_with(
                &state,
                me.ctx,
                &me.user,
                id,
                typed,
                Some(message),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => return Err(e),
    };
    flash(
        &session,
        format!(
            "Application #{} created, pre-filled from the records.",
            application.id
        ),
    );
    Ok(see_other(&format!("/applications/{}", application.id)))
}

fn record_error(e: RecordError) -> AppError {
    match e {
        RecordError::Invalid(errors) => {
            AppError::BadRequest(errors.into_values().collect::<Vec<_>>().join(" "))
        }
        other => other.into(),
    }
}

/// One input of an application form.
pub struct AnswerView {
    pub key: String,
    pub label: String,
    pub input_type: &'static str,
    pub field_type: FieldType,
    pub options: Vec<String>,
    pub required: bool,
    pub value: String,
    pub prefilled: bool,
    pub error: Option<String>,
    pub document: Option<crate::records::model::Document>,
    pub item_id: i64,
    pub stakeholder_id: i64,
}

pub struct StepSection {
    pub view: StepView,
    pub submitted: bool,
    /// (heading, answers): one group for a shared step, one per stakeholder otherwise.
    pub groups: Vec<(String, Vec<AnswerView>)>,
}

#[derive(Template)]
#[template(path = "processes/application.html")]
struct ApplicationPage {
    ctx: Ctx,
    application: Application,
    process: Process,
    record_name: String,
    stakeholders: Vec<(Stakeholder, String)>,
    steps: Vec<StepSection>,
    can_edit: bool,
    message: Option<String>,
    /// What was typed in the stakeholder form when it was refused, and why.
    stakeholder_form: StakeholderForm,
    stakeholder_error: Option<String>,
}

fn build_steps(
    conn: &mut crate::db::DbConn,
    steps: Vec<StepView>,
    answers: &[Answer],
    holders: &[(Stakeholder, String)],
    submitted: &[i64],
    typed: &BTreeMap<(i64, i64), String>,
    errors: &BTreeMap<String, String>,
) -> Result<Vec<StepSection>, AppError> {
    let mut out = Vec::new();
    for view in steps {
        let targets: Vec<(i64, String)> = if view.step.per_stakeholder {
            holders
                .iter()
                .map(|(h, name)| (h.id, format!("{name} ({})", h.role)))
                .collect()
        } else {
            vec![(0, String::new())]
        };
        let mut groups = Vec::new();
        for (holder, heading) in targets {
            let mut items = Vec::new();
            for item in &view.items {
                let stored = answers
                    .iter()
                    .find(|a| a.item_id == item.id && a.stakeholder_id == holder);
                let value = typed
                    .get(&(item.id, holder))
                    .cloned()
                    .or_else(|| stored.map(|a| a.value.clone()))
                    .unwrap_or_default();
                let document = match (item.ftype(), value.parse::<i64>()) {
                    (FieldType::Document, Ok(doc)) => documents::find(conn, doc)?,
                    _ => None,
                };
                items.push(AnswerView {
                    key: answer_key(item.id, holder),
                    label: item.label.clone(),
                    input_type: item.ftype().input_type(),
                    field_type: item.ftype(),
                    options: item.option_list(),
                    required: item.required,
                    prefilled: stored.is_some_and(|a| a.origin == AnswerOrigin::Prefill),
                    error: errors.get(&answer_key(item.id, holder)).cloned(),
                    value,
                    document,
                    item_id: item.id,
                    stakeholder_id: holder,
                });
            }
            groups.push((heading, items));
        }
        out.push(StepSection {
            submitted: submitted.contains(&view.step.id),
            view,
            groups,
        });
    }
    Ok(out)
}

fn build_page(
    conn: &mut crate::db::DbConn,
    ctx: Ctx,
    id: i64,
    can_edit: bool,
    typed: &BTreeMap<(i64, i64), String>,
    errors: &BTreeMap<String, String>,
    message: Option<String>,
) -> Result<ApplicationPage, AppError> {
    let application = service::find_application(conn, id)?
        .ok_or_else(|| AppError::not_found("That application"))?;
    let process = service::find(conn, application.process_id)?
        .ok_or_else(|| AppError::not_found("Its process"))?;
    let record_name = records::find(conn, application.record_id)?
        .map(|r| r.name)
        .unwrap_or_default();
    let holders = service::stakeholders(conn, id)?;
    let names = records::names_of(
        conn,
        &holders.iter().map(|h| h.contact_id).collect::<Vec<_>>(),
    )?;
    let stakeholders: Vec<(Stakeholder, String)> = holders
        .into_iter()
        .map(|h| {
            let name = names.get(&h.contact_id).cloned().unwrap_or_default();
            (h, name)
        })
        .collect();
    let answers = service::answers(conn, id)?;
    let submitted = service::submitted_steps(conn, id)?;
    let views = service::steps(conn, process.id)?;
    let steps = build_steps(
        conn,
        views,
        &answers,
        &stakeholders,
        &submitted,
        typed,
        errors,
    )?;
    Ok(ApplicationPage {
        ctx,
        application,
        process,
        record_name,
        stakeholders,
        steps,
        can_edit,
        message,
        stakeholder_form: StakeholderForm::default(),
        stakeholder_error: None,
    })
}

#[get("/applications/{id}")]
async fn application_page(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let can_edit = me.user.can(Role::Editor);
    let ctx = me.ctx;
    let page = state
        .db(move |conn| {
            build_page(
                conn,
                ctx,
                id,
                can_edit,
                &BTreeMap::new(),
                &BTreeMap::new(),
                None,
            )
        })
        .await?;
    render(StatusCode::OK, &page)
}

/// `a<item>_<stakeholder>` inputs, and `action=draft|submit`.
#[post("/applications/{id}/steps/{step}")]
async fn save_step(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, i64)>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (id, step) = path.into_inner();
    let mut typed = BTreeMap::new();
    let mut submitting = false;
    for (name, value) in form.iter() {
        if name == "action" {
            submitting = value == "submit";
        } else if let Some((item, holder)) = name.strip_prefix('a').and_then(|r| r.split_once('_'))
        {
            if let (Ok(item), Ok(holder)) = (item.parse::<i64>(), holder.parse::<i64>()) {
                typed.insert((item, holder), value.clone());
            }
        }
    }
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let ctx = me.ctx.clone();
    let typed_for_db = typed.clone();
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            match service::save_step(conn, id, step, &typed_for_db, submitting, &actor, country) {
                Ok(summary) => Ok(Ok(summary)),
                Err(ProcessError::Answers(errors)) => {
                    let page = build_page(
                        conn,
                        ctx,
                        id,
                        true,
                        &typed_for_db,
                        &errors,
                        Some("Nothing was saved: correct the answers marked below.".into()),
                    )?;
                    Ok(Err(page))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    match outcome {
        Ok(summary) => {
            let mut message = if submitting {
                "Step submitted.".to_string()
            } else {
                "Draft saved.".to_string()
            };
            for line in summary {
                message.push(' ');
                message.push_str(&line);
            }
            flash(&session, message);
            Ok(see_other(&format!("/applications/{id}")))
        }
        Err(page) => render(StatusCode::UNPROCESSABLE_ENTITY, &page),
    }
}

#[post("/applications/{id}/submit")]
async fn submit(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let summary = state
        .db(move |conn| service::submit_application(conn, id, &actor, country))
        .await?;
    let mut message = "Application submitted.".to_string();
    for line in summary {
        message.push(' ');
        message.push_str(&line);
    }
    flash(&session, message);
    Ok(see_other(&format!("/applications/{id}")))
}

#[derive(Deserialize, Default)]
struct StakeholderForm {
    contact: String,
    role: String,
}

#[post("/applications/{id}/stakeholders")]
async fn add_stakeholder(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<StakeholderForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let ctx = me.ctx;
    // A refusal comes back on the page with what was typed and why.
    let refused = state
        .db(move |conn| -> Result<Option<ApplicationPage>, AppError> {
            let why = match records::resolve_record(
                conn,
                RecordKind::Contact,
                "contact",
                &form.contact,
            ) {
                Ok(Some(contact)) => {
                    match service::add_stakeholder(conn, id, contact, &form.role) {
                        Ok(()) => return Ok(None),
                        Err(ProcessError::Invalid(why)) => why,
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None) => {
                    "Choose a contact: type a name, an email or a phone and pick one.".into()
                }
                Err(e) => match record_error(e) {
                    AppError::BadRequest(why) => why,
                    other => return Err(other),
                },
            };
            let mut page = build_page(
                conn,
                ctx,
                id,
                true,
                &BTreeMap::new(),
                &BTreeMap::new(),
                None,
            )?;
            page.stakeholder_error = Some(why);
            page.stakeholder_form = form;
            Ok(Some(page))
        })
        .await?;
    if let Some(page) = refused {
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    flash(
        &session,
        "Stakeholder added; their linked items are pre-filled.",
    );
    Ok(see_other(&format!("/applications/{id}")))
}

/// A document answer: stored once (content-addressed) and referenced by the answer.
#[post("/applications/{id}/documents/{item}/{holder}")]
async fn upload_answer_document(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, i64, i64)>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let (id, item_id, holder) = path.into_inner();
    let max = state.config.max_upload_bytes;
    let (filename, bytes) = read_upload(payload, max).await?;
    let data_dir = state.config.data_dir.clone();
    let user_id = me.user.id;
    let document = state
        .db(move |conn| -> Result<_, AppError> {
            let application = service::find_application(conn, id)?
                .ok_or_else(|| AppError::not_found("That application"))?;
            let item = service::find_item(conn, item_id)?
                .filter(|i| {
                    i.process_id == application.process_id && i.ftype() == FieldType::Document
                })
                .ok_or_else(|| {
                    AppError::BadRequest("That is not a document item of this application.".into())
                })?;
            crate::db::write_tx(conn, |conn| -> Result<_, AppError> {
                let document =
                    documents::store(conn, &data_dir, &filename, &bytes, max, Some(user_id))?;
                service::set_answer(
                    conn,
                    id,
                    item.id,
                    holder,
                    &document.id.to_string(),
                    AnswerOrigin::Typed,
                )?;
                Ok(document)
            })
        })
        .await?;
    flash(&session, format!("{} attached.", document.filename));
    Ok(see_other(&format!("/applications/{id}")))
}
