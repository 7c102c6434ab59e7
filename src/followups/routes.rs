//! Follow-up template pages: the list and a new one (editors), a template's editor with its
//! variables and a preview for a chosen record, lock and unlock (admins), and the CSV of a
//! list rendered.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::sandbox::Problem;
use super::service::{self, FollowupTemplate, Rendered, TemplateError, TemplateInput};
use crate::auth::extract::{AdminUser, EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::RecordKind;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_page)
        .service(followups)
        .service(create)
        .service(edit_page)
        .service(update)
        .service(lock)
        .service(render_csv);
}

impl From<TemplateError> for AppError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Db(db) => db.into(),
            TemplateError::NotFound => AppError::not_found("That template"),
            TemplateError::Locked => AppError::Forbidden(e.to_string()),
            TemplateError::Invalid(_) => AppError::BadRequest(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TemplateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    /// A checkbox: present when checked.
    #[serde(default)]
    html: Option<String>,
}

impl TemplateForm {
    fn input(&self) -> TemplateInput {
        TemplateInput {
            name: self.name.clone(),
            kind: RecordKind::parse(&self.kind).unwrap_or(RecordKind::Contact),
            subject: self.subject.clone(),
            body: self.body.clone(),
            html: self.html.is_some(),
        }
    }

    fn of(t: &FollowupTemplate) -> Self {
        TemplateForm {
            name: t.name.clone(),
            kind: t.kind.as_str().into(),
            subject: t.subject.clone(),
            body: t.body.clone(),
            html: t.html.then(|| "1".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "followups/list.html")]
struct ListPage {
    ctx: Ctx,
    templates: Vec<FollowupTemplate>,
    can_edit: bool,
    form: TemplateForm,
    problems: Vec<String>,
}

async fn list_with(
    state: &AppState,
    ctx: Ctx,
    can_edit: bool,
    form: TemplateForm,
    problems: Vec<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let templates = state.db(service::list).await?;
    render(
        status,
        &ListPage {
            ctx,
            templates,
            can_edit,
            form,
            problems,
        },
    )
}

#[get("/templates")]
async fn list_page(state: web::Data<AppState>, me: SignedIn) -> Result<HttpResponse, AppError> {
    let form = TemplateForm {
        kind: "contact".into(),
        subject: "Your account, {{ contact.name }}".into(),
        body: "Dear {{ contact.name }},\n\n".into(),
        ..Default::default()
    };
    let can_edit = me.user.can(Role::Editor);
    list_with(&state, me.ctx, can_edit, form, Vec::new(), StatusCode::OK).await
}

/// The seeds call them follow-ups: the same pages.
#[get("/followups")]
async fn followups(_me: SignedIn) -> HttpResponse {
    see_other("/templates")
}

fn problems_of(e: &TemplateError) -> Vec<String> {
    match e {
        TemplateError::Invalid(problems) => problems.iter().map(|p| p.0.clone()).collect(),
        other => vec![other.to_string()],
    }
}

#[post("/templates")]
async fn create(
    state: web::Data<AppState>,
    editor: EditorUser,
    session: Session,
    form: web::Form<TemplateForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let input = form.input();
    let by = editor.user.display_name.clone();
    match state
        .db(move |conn| Ok::<_, AppError>(service::create(conn, &input, &by)))
        .await?
    {
        Ok(id) => {
            flash(&session, "Template saved. Preview it for a record below.");
            Ok(see_other(&format!("/templates/{id}")))
        }
        Err(e @ TemplateError::Invalid(_)) => {
            list_with(
                &state,
                editor.ctx,
                true,
                form,
                problems_of(&e),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "followups/edit.html")]
struct EditPage {
    ctx: Ctx,
    template: FollowupTemplate,
    form: TemplateForm,
    known: Vec<String>,
    can_edit: bool,
    is_admin: bool,
    problems: Vec<String>,
    record: String,
    preview: Option<Rendered>,
    preview_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    /// The record to preview for.
    #[serde(default)]
    record: String,
}

#[allow(clippy::too_many_arguments)]
async fn edit_with(
    state: &AppState,
    ctx: Ctx,
    user: &crate::auth::model::User,
    id: i64,
    form: Option<TemplateForm>,
    problems: Vec<String>,
    record: String,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    // A bare number is a record's number, as "#12 Ann Lee" from the picker is.
    let typed = match record.trim().parse::<i64>() {
        Ok(id) => format!("#{id}"),
        Err(_) => record.clone(),
    };
    let (template, known, preview) = state
        .db(move |conn| -> Result<_, AppError> {
            let template =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That template"))?;
            let known = service::known_variables(conn, template.kind)?;
            if typed.trim().is_empty() {
                return Ok((template, known, None));
            }
            // What a field archived since the save (say) breaks is said before any render.
            let problems =
                service::problems(&known, &template.subject, &template.body, template.html);
            let preview = if !problems.is_empty() {
                Err(TemplateError::Invalid(problems))
            } else {
                match crate::records::service::resolve_record(conn, template.kind, "record", &typed)
                {
                    Ok(Some(record)) => service::preview(conn, id, record),
                    Ok(None) => Err(TemplateError::Invalid(vec![Problem(format!(
                        "Type a {} to preview for, and pick it from the suggestions.",
                        template.kind
                    ))])),
                    Err(crate::records::service::RecordError::Invalid(errors)) => Err(
                        TemplateError::Invalid(errors.into_values().map(Problem).collect()),
                    ),
                    Err(e) => return Err(e.into()),
                }
            };
            Ok((template, known, Some(preview)))
        })
        .await?;
    let (preview, preview_error) = match preview {
        None => (None, None),
        Some(Ok(rendered)) => (Some(rendered), None),
        Some(Err(TemplateError::Db(e))) => return Err(e.into()),
        Some(Err(e)) => (None, Some(e.to_string())),
    };
    let can_edit = user.can(Role::Editor) && (!template.locked || user.can(Role::Admin));
    render(
        status,
        &EditPage {
            ctx,
            form: form.unwrap_or_else(|| TemplateForm::of(&template)),
            template,
            known: known.into_iter().collect(),
            can_edit,
            is_admin: user.can(Role::Admin),
            problems,
            record,
            preview,
            preview_error,
        },
    )
}

#[get("/templates/{id}")]
async fn edit_page(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, AppError> {
    let record = query.into_inner().record;
    edit_with(
        &state,
        me.ctx,
        &me.user,
        path.into_inner(),
        None,
        Vec::new(),
        record,
        StatusCode::OK,
    )
    .await
}

#[post("/templates/{id}")]
async fn update(
    state: web::Data<AppState>,
    editor: EditorUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<TemplateForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let input = form.input();
    let by = editor.user.display_name.clone();
    let admin = editor.user.can(Role::Admin);
    match state
        .db(move |conn| Ok::<_, AppError>(service::update(conn, id, &input, &by, admin)))
        .await?
    {
        Ok(()) => {
            flash(&session, "Template saved.");
            Ok(see_other(&format!("/templates/{id}")))
        }
        Err(e @ TemplateError::Invalid(_)) => {
            edit_with(
                &state,
                editor.ctx,
                &editor.user,
                id,
                Some(form),
                problems_of(&e),
                String::new(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
struct LockForm {
    locked: String,
}

#[post("/templates/{id}/lock")]
async fn lock(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<LockForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let locked = form.locked == "1";
    state
        .db(move |conn| service::set_locked(conn, id, locked))
        .await?;
    flash(
        &session,
        if locked {
            "Template locked: only admins can change it."
        } else {
            "Template unlocked: editors can change it."
        },
    );
    Ok(see_other(&format!("/templates/{id}")))
}

#[get("/templates/{id}/render.csv")]
async fn render_csv(
    state: web::Data<AppState>,
    _me: SignedIn,
    path: web::Path<i64>,
    // The list's own query (search, filters): only the records it shows, all when none.
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let list = crate::records::table::ListParams::parse(&query);
    // A template that does not exist is a 404 page, and one that cannot render this list a
    // 400 page with its problems, before any byte of a download is sent.
    let checked = list.clone();
    state
        .db(move |conn| service::render_check(conn, id, &checked).map_err(AppError::from))
        .await?;
    Ok(crate::web::streamed_download(
        state.pool.clone(),
        format!("followup-{id}.csv"),
        "text/csv; charset=utf-8",
        move |conn, out| service::render_csv(conn, id, &list, out),
    ))
}
