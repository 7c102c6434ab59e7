//! Activities pages: the list with filters and its CSV export, activity types (admins), a
//! contact's timeline with the form that logs one (loaded into the record page by htmx), and
//! a source's activity data mapping (admins) with its variable picker and live preview.

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::mapping::{self, FieldUpdate};
use super::model::{Activity, ActivityOrigin, ActivityType, ContactRef, NewActivity};
use super::service::{self, ActivityError, ActivityFilter, Before};
use crate::auth::extract::{AdminUser, EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::web::{flash, is_htmx, render, see_other, Ctx};
use crate::AppState;

/// Activities per page of the list and of a timeline.
const PER_PAGE: i64 = 50;
const TIMELINE_PAGE: i64 = 20;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_page)
        .service(export_csv)
        .service(add_type)
        .service(timeline)
        .service(log_activity)
        .service(mapping_page)
        .service(save_mapping)
        .service(preview_mapping);
}

impl From<ActivityError> for AppError {
    fn from(e: ActivityError) -> Self {
        match e {
            ActivityError::Db(db) => db.into(),
            ActivityError::Invalid(message) => AppError::BadRequest(message),
        }
    }
}

/// The list's filters as the query string gives them.
#[derive(Debug, Clone, Default, Deserialize)]
struct ListQuery {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    record: String,
    #[serde(default)]
    before: String,
}

impl ListQuery {
    fn filter(&self) -> Result<ActivityFilter, AppError> {
        let day = |text: &str, what: &str| -> Result<Option<NaiveDate>, AppError> {
            match text.trim() {
                "" => Ok(None),
                t => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| {
                        AppError::BadRequest(format!(
                            "The {what} date '{t}' is not written YYYY-MM-DD."
                        ))
                    }),
            }
        };
        let id = |text: &str, what: &str| -> Result<Option<i64>, AppError> {
            match text.trim() {
                "" => Ok(None),
                t => t
                    .parse()
                    .map(Some)
                    .map_err(|_| AppError::BadRequest(format!("'{t}' is not a {what} number."))),
            }
        };
        let text = |t: &str| Some(t.trim().to_string()).filter(|t| !t.is_empty());
        Ok(ActivityFilter {
            record_id: id(&self.record, "contact")?,
            activity_type: text(&self.kind),
            source_id: id(&self.source, "source")?,
            from: day(&self.from, "from")?.and_then(|d| d.and_hms_opt(0, 0, 0)),
            // "To" a day includes that day.
            until: day(&self.to, "to")?
                .and_then(|d| d.succ_opt())
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
            outcome: text(&self.outcome),
        })
    }

    /// The filters as a query string (without the page position).
    fn params(&self) -> String {
        serde_urlencoded::to_string([
            ("type", self.kind.as_str()),
            ("source", self.source.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("outcome", self.outcome.as_str()),
            ("record", self.record.as_str()),
        ])
        .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "activities/list.html")]
struct ListPage {
    ctx: Ctx,
    query: ListQuery,
    types: Vec<ActivityType>,
    sources: Vec<crate::sources::model::Source>,
    rows: Vec<(Activity, String)>,
    next: Option<String>,
    params: String,
    is_admin: bool,
    error: Option<String>,
    /// A refused new type, as typed.
    type_form: TypeForm,
}

#[get("/activities")]
async fn list_page(
    state: web::Data<AppState>,
    me: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    list_with(&state, me.ctx, &me.user, query.into_inner(), None).await
}

/// The list; a filter it cannot read, or a refused new type, is said on it (422) with what
/// was typed.
async fn list_with(
    state: &AppState,
    ctx: Ctx,
    user: &crate::auth::model::User,
    query: ListQuery,
    refused_type: Option<(TypeForm, String)>,
) -> Result<HttpResponse, AppError> {
    let (filter, filter_error) = match query.filter() {
        Ok(filter) => (filter, None),
        Err(AppError::BadRequest(why)) => (ActivityFilter::default(), Some(why)),
        Err(e) => return Err(e),
    };
    let (type_form, type_error) = match refused_type {
        Some((form, why)) => (form, Some(why)),
        None => (TypeForm::default(), None),
    };
    let error = filter_error.or(type_error);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let before = Before::decode(&query.before);
    let (types, sources, (rows, next)) = state
        .db(move |conn| -> Result<_, AppError> {
            Ok((
                service::types(conn)?,
                crate::sources::service::list(conn)?,
                service::page(conn, &filter, before, PER_PAGE)?,
            ))
        })
        .await?;
    let next = next.map(|b| b.encode());
    render(
        status,
        &ListPage {
            is_admin: user.can(Role::Admin),
            ctx,
            params: query.params(),
            query,
            types,
            sources,
            rows,
            next,
            error,
            type_form,
        },
    )
}

#[get("/activities/export.csv")]
async fn export_csv(
    state: web::Data<AppState>,
    _me: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let filter = query.filter()?;
    Ok(crate::web::streamed_download(
        state.pool.clone(),
        "activities.csv".into(),
        "text/csv; charset=utf-8",
        move |conn, out| service::export_csv(conn, &filter, out),
    ))
}

#[derive(Debug, Deserialize, Default)]
struct TypeForm {
    key: String,
    label: String,
}

#[post("/activities/types")]
async fn add_type(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    form: web::Form<TypeForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let (key, label) = (form.key.clone(), form.label.clone());
    let added = state
        .db(move |conn| match service::add_type(conn, &key, &label) {
            Ok(added) => Ok(Ok(added)),
            Err(ActivityError::Invalid(why)) => Ok(Err(why)),
            Err(ActivityError::Db(e)) => Err(AppError::from(e)),
        })
        .await?;
    match added {
        Ok(added) => {
            flash(
                &session,
                format!("Activity type {} ({}) added.", added.label, added.key),
            );
            Ok(see_other("/activities"))
        }
        Err(why) => {
            list_with(
                &state,
                admin.ctx,
                &admin.user,
                ListQuery::default(),
                Some((form, why)),
            )
            .await
        }
    }
}

/// A contact's timeline: newest first, a page at a time, with the form that logs one.
#[derive(Template)]
#[template(path = "activities/timeline.html")]
struct Timeline {
    csrf: String,
    record_id: i64,
    types: Vec<ActivityType>,
    rows: Vec<(Activity, String)>,
    next: Option<String>,
    /// Only the next page's rows (an "older" link was followed).
    more_only: bool,
    can_log: bool,
    form: LogForm,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TimelineQuery {
    #[serde(default)]
    before: String,
}

async fn timeline_of(
    state: &AppState,
    record_id: i64,
    before: Option<Before>,
) -> Result<(Vec<ActivityType>, Vec<(Activity, String)>, Option<String>), AppError> {
    let filter = ActivityFilter {
        record_id: Some(record_id),
        ..Default::default()
    };
    let (types, (rows, next)) = state
        .db(move |conn| -> Result<_, AppError> {
            Ok((
                service::types(conn)?,
                service::page(conn, &filter, before, TIMELINE_PAGE)?,
            ))
        })
        .await?;
    let next = next.map(|b| b.encode());
    Ok((types, rows, next))
}

#[get("/records/{id}/activities")]
async fn timeline(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
    query: web::Query<TimelineQuery>,
) -> Result<HttpResponse, AppError> {
    let record_id = path.into_inner();
    let before = Before::decode(&query.before);
    let (types, rows, next) = timeline_of(&state, record_id, before).await?;
    render(
        StatusCode::OK,
        &Timeline {
            csrf: me.ctx.csrf.clone(),
            record_id,
            types,
            rows,
            next,
            more_only: before.is_some(),
            can_log: me.user.can(Role::Editor),
            form: LogForm::default(),
            error: None,
        },
    )
}

#[derive(Debug, Clone, Default, Deserialize)]
struct LogForm {
    #[serde(default, rename = "type")]
    kind: String,
    /// `YYYY-MM-DDTHH:MM` (a datetime-local input, UTC); empty: now.
    #[serde(default)]
    occurred_at: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    outcome: String,
}

#[post("/records/{id}/activities")]
async fn log_activity(
    state: web::Data<AppState>,
    editor: EditorUser,
    session: Session,
    req: HttpRequest,
    path: web::Path<i64>,
    form: web::Form<LogForm>,
) -> Result<HttpResponse, AppError> {
    let record_id = path.into_inner();
    let form = form.into_inner();
    let occurred_at = match form.occurred_at.trim() {
        "" => Ok(crate::db::now()),
        text => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
            .map_err(|_| format!("The time '{text}' is not a date and time.")),
    };
    let mut attributes = BTreeMap::new();
    if !form.outcome.trim().is_empty() {
        attributes.insert("outcome".to_string(), form.outcome.trim().to_string());
    }
    let user = editor.user.clone();
    let logged = match occurred_at {
        Err(message) => Err(ActivityError::Invalid(message)),
        Ok(occurred_at) => {
            let new = NewActivity {
                contact: ContactRef::Id { id: record_id },
                activity_type: form.kind.trim().to_string(),
                occurred_at,
                subject: form.subject.clone(),
                body: form.body.clone(),
                attributes,
                external_id: String::new(),
                source_id: None,
                origin: ActivityOrigin::User,
                origin_label: user.display_name.clone(),
                user_id: Some(user.id),
                sender: String::new(),
            };
            state
                .db(move |conn| Ok::<_, AppError>(service::log(conn, &new)))
                .await?
        }
    };
    let (status, form, error) = match logged {
        Ok(_) if !is_htmx(&req) => {
            flash(&session, "Activity logged.");
            return Ok(see_other(&format!("/records/{record_id}#activities")));
        }
        Ok(_) => (StatusCode::OK, LogForm::default(), None),
        // The form comes back with what was typed and why.
        Err(ActivityError::Invalid(message)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, form, Some(message))
        }
        Err(e) => return Err(e.into()),
    };
    let (types, rows, next) = timeline_of(&state, record_id, None).await?;
    render(
        status,
        &Timeline {
            csrf: editor.ctx.csrf.clone(),
            record_id,
            types,
            rows,
            next,
            more_only: false,
            can_log: true,
            form,
            error,
        },
    )
}

/// The mapping editor's form: subject, body, and up to `UPDATE_LINES` field updates.
#[derive(Debug, Clone, Default, Deserialize)]
struct MappingForm {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// Field update lines the editor offers.
const UPDATE_LINES: usize = 4;

impl MappingForm {
    /// `u<N>.field`, `u<N>.template`, `u<N>.rule`; lines without a field are dropped.
    fn updates(&self) -> Vec<FieldUpdate> {
        (0..UPDATE_LINES)
            .filter_map(|n| {
                let get = |part: &str| {
                    self.rest
                        .get(&format!("u{n}.{part}"))
                        .map(|v| v.trim().to_string())
                        .unwrap_or_default()
                };
                let field = get("field");
                (!field.is_empty()).then(|| FieldUpdate {
                    field,
                    template: get("template"),
                    rule: Some(get("rule"))
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "review".into()),
                })
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "activities/mapping.html")]
struct MappingPage {
    ctx: Ctx,
    source: crate::sources::model::Source,
    types: Vec<ActivityType>,
    kind: String,
    subject: String,
    body: String,
    /// Exactly `UPDATE_LINES` lines, blank ones included.
    updates: Vec<FieldUpdate>,
    fields: Vec<crate::fields::model::FieldDef>,
    variables: Vec<String>,
    rules: [crate::rules::Rule; 4],
    problems: Vec<String>,
    preview: Preview,
}

/// What a sample activity gives with the templates, or why it cannot.
#[derive(Template)]
#[template(path = "activities/mapping_preview.html")]
struct Preview {
    result: Result<mapping::Mapped, String>,
    sample: Vec<(String, String)>,
}

/// The preview checks what saving checks, then renders the sample activity.
fn preview_of(
    subject: &str,
    body: &str,
    updates: &[FieldUpdate],
    variables: &mapping::Variables,
) -> Preview {
    let problems = mapping::check(subject, body, updates, variables);
    let sample = &variables.sample;
    Preview {
        result: if problems.is_empty() {
            mapping::apply_templates(subject, body, updates, sample, "", "").map_err(|p| p.0)
        } else {
            Err(problems
                .into_iter()
                .map(|p| p.0)
                .collect::<Vec<_>>()
                .join(" "))
        },
        sample: sample.clone().into_iter().collect(),
    }
}

#[derive(Debug, Deserialize)]
struct MappingQuery {
    #[serde(default, rename = "type")]
    kind: String,
}

#[allow(clippy::too_many_arguments)]
async fn mapping_with(
    state: &AppState,
    ctx: Ctx,
    source_id: i64,
    kind: String,
    typed: Option<MappingForm>,
    problems: Vec<String>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let wanted = kind.clone();
    let (source, types, fields, saved) = state
        .db(move |conn| -> Result<_, AppError> {
            let source = crate::sources::service::find(conn, source_id)?
                .ok_or_else(|| AppError::not_found("That source"))?;
            let types = service::types(conn)?;
            let kind = if wanted.is_empty() {
                types.first().map(|t| t.key.clone()).unwrap_or_default()
            } else {
                wanted
            };
            let fields = crate::fields::service::list(
                conn,
                crate::fields::model::RecordKind::Contact,
                false,
            )?;
            let saved = mapping::find(conn, source_id, &kind)?;
            let variables = mapping::variables(conn, source_id, &kind)?;
            Ok((source, types, fields, (kind, saved, variables)))
        })
        .await?;
    let (kind, saved, variables) = saved;
    let (subject, body, mut updates) = match (typed, saved) {
        (Some(form), _) => {
            let updates = form.updates();
            (form.subject, form.body, updates)
        }
        (None, Some(m)) => {
            let updates = m.updates();
            (m.subject, m.body, updates)
        }
        (None, None) => (
            "{{ outcome }} call".to_string(),
            "{{ comments }}\nDuration: {{ duration }} s, list {{ list_name }}, from {{ caller_id }}.".to_string(),
            Vec::new(),
        ),
    };
    let preview = preview_of(&subject, &body, &updates, &variables);
    updates.resize(
        UPDATE_LINES.max(updates.len()),
        FieldUpdate {
            field: String::new(),
            template: String::new(),
            rule: "review".into(),
        },
    );
    render(
        status,
        &MappingPage {
            ctx,
            source,
            types,
            kind,
            subject,
            body,
            updates,
            fields,
            variables: variables.names,
            rules: crate::rules::Rule::ALL,
            problems,
            preview,
        },
    )
}

#[get("/sources/{id}/activity-mapping")]
async fn mapping_page(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
    query: web::Query<MappingQuery>,
) -> Result<HttpResponse, AppError> {
    let kind = query.into_inner().kind;
    mapping_with(
        &state,
        admin.ctx,
        path.into_inner(),
        kind,
        None,
        Vec::new(),
        StatusCode::OK,
    )
    .await
}

#[post("/sources/{id}/activity-mapping")]
async fn save_mapping(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<MappingForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let (kind, subject, body, updates) = (
        form.kind.clone(),
        form.subject.clone(),
        form.body.clone(),
        form.updates(),
    );
    let saved = state
        .db(move |conn| {
            Ok::<_, AppError>(mapping::save(conn, id, &kind, &subject, &body, &updates))
        })
        .await?;
    match saved {
        Ok(()) => {
            flash(
                &session,
                format!("Activity mapping for {} saved.", form.kind),
            );
            Ok(see_other(&format!(
                "/sources/{id}/activity-mapping?type={}",
                crate::text::url_encode(&form.kind)
            )))
        }
        Err(problems) => {
            let kind = form.kind.clone();
            mapping_with(
                &state,
                admin.ctx,
                id,
                kind,
                Some(form),
                problems.into_iter().map(|p| p.0).collect(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

/// The live preview: the templates as typed, with the sample activity.
#[post("/sources/{id}/activity-mapping/preview")]
async fn preview_mapping(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<i64>,
    form: web::Form<MappingForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let (source_id, kind) = (path.into_inner(), form.kind.clone());
    let variables = state
        .db(move |conn| mapping::variables(conn, source_id, &kind))
        .await?;
    render(
        StatusCode::OK,
        &preview_of(&form.subject, &form.body, &form.updates(), &variables),
    )
}
