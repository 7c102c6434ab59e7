//! Sources pages: list, create and edit (admins), field mapping with a proposal from a sample
//! file, disconnect/reconnect, and the import upload with its preview (editors and admins).

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::connector;
use super::model::{Mapping, MappingInput, OnInvalid, RowKey, Source};
use super::propose::{self as proposal, ProposedLine};
use super::service::{self, ActivitySettings, SourceError, SourceInput};
use crate::auth::extract::{AdminUser, EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service::{self as fields, NewField};
use crate::records::model::Actor;
use crate::rules::Rule;
use crate::sync::csvfile;
use crate::sync::engine;
use crate::sync::model::ImportRun;
use crate::web::{flash, render, see_other, upload_to_temp_file, Ctx};
use crate::AppState;

/// Rows of a sample file read to propose a mapping and show each column's values.
const PROPOSAL_ROWS: usize = 20;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_page)
        .service(new_page)
        .service(create)
        .service(show)
        .service(update)
        .service(save_mapping)
        .service(propose)
        .service(propose_from_upload)
        .service(disconnect)
        .service(reconnect)
        .service(save_connector)
        .service(run_connector);
}

impl From<SourceError> for AppError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Db(db) => db.into(),
            SourceError::NotFound => AppError::not_found("That source"),
            SourceError::NameTaken(_) => AppError::Conflict(e.to_string()),
            SourceError::Invalid(_) => AppError::BadRequest(e.to_string()),
        }
    }
}

impl From<engine::ImportError> for AppError {
    fn from(e: engine::ImportError) -> Self {
        match e {
            engine::ImportError::Db(db) => db.into(),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "sources/list.html")]
struct ListPage {
    ctx: Ctx,
    sources: Vec<Source>,
    is_admin: bool,
}

#[get("/sources")]
async fn list_page(state: web::Data<AppState>, me: SignedIn) -> Result<HttpResponse, AppError> {
    let sources = state.db(service::list).await?;
    render(
        StatusCode::OK,
        &ListPage {
            is_admin: me.user.can(Role::Admin),
            ctx: me.ctx,
            sources,
        },
    )
}

#[derive(Template)]
#[template(path = "sources/new.html")]
struct NewPage {
    ctx: Ctx,
    form: SourceForm,
    choices: ActivityChoices,
    error: Option<String>,
}

impl NewPage {
    fn picked_from(&self) -> String {
        self.form.contacts_from.trim().to_string()
    }

    fn picked_type(&self) -> String {
        self.form.activity_type.trim().to_string()
    }
}

/// What a source of activities may name: the sources of contacts and the activity types.
#[derive(Default)]
struct ActivityChoices {
    contact_sources: Vec<Source>,
    types: Vec<crate::activities::model::ActivityType>,
}

impl ActivityChoices {
    fn load(conn: &mut crate::db::DbConn) -> Result<Self, AppError> {
        Ok(ActivityChoices {
            contact_sources: service::list(conn)?
                .into_iter()
                .filter(|s| s.kind == RecordKind::Contact && !s.carries_activities())
                .collect(),
            types: crate::activities::service::types(conn)?,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SourceForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    id_column: String,
    /// `id` (the id column) or `fields` (match by `match_by`).
    #[serde(default)]
    key: String,
    /// Field keys, comma-separated.
    #[serde(default)]
    match_by: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    watch_dir: String,
    #[serde(default)]
    mode: String,
    /// `skip_field` or `reject_row`; absent on the creation form.
    #[serde(default)]
    on_invalid: String,
    /// For `kind` activity: the contact source whose ids the files name (an id or empty),
    /// and the type of rows without a type column.
    #[serde(default)]
    contacts_from: String,
    #[serde(default)]
    activity_type: String,
}

impl SourceForm {
    fn input(&self) -> Result<SourceInput, AppError> {
        let activities = (self.kind == ACTIVITIES)
            .then(|| -> Result<_, AppError> {
                Ok(ActivitySettings {
                    contacts_from: match self.contacts_from.trim() {
                        "" => None,
                        id => Some(id.parse().map_err(|_| {
                            AppError::BadRequest("Choose the contact source in the list.".into())
                        })?),
                    },
                    default_type: self.activity_type.clone(),
                })
            })
            .transpose()?;
        let kind = match activities {
            Some(_) => Some(RecordKind::Contact),
            None => RecordKind::parse(&self.kind),
        };
        Ok(SourceInput {
            name: self.name.clone(),
            kind: kind.ok_or_else(|| {
                AppError::BadRequest("Choose contacts, companies or activities.".into())
            })?,
            activities,
            id_column: self.id_column.clone(),
            match_by: if self.key == "fields" {
                self.match_by.split(',').map(String::from).collect()
            } else {
                Vec::new()
            },
            full_mode: self.mode != "delta",
            country: self.country.clone(),
            watch_dir: self.watch_dir.clone(),
        })
    }
}

/// The form's kind of a source whose rows are activities (of contacts).
const ACTIVITIES: &str = "activity";

#[get("/sources/new")]
async fn new_page(state: web::Data<AppState>, admin: AdminUser) -> Result<HttpResponse, AppError> {
    let choices = state.db(ActivityChoices::load).await?;
    render(
        StatusCode::OK,
        &NewPage {
            ctx: admin.ctx,
            choices,
            form: SourceForm {
                kind: "contact".into(),
                mode: "full".into(),
                id_column: "External Id".into(),
                key: "id".into(),
                match_by: "email".into(),
                ..Default::default()
            },
            error: None,
        },
    )
}

#[post("/sources")]
async fn create(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    form: web::Form<SourceForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let input = form.input()?;
    let (created, choices) = state
        .db(move |conn| {
            Ok::<_, AppError>((service::create(conn, &input), ActivityChoices::load(conn)?))
        })
        .await?;
    match created {
        Ok(source) => {
            flash(
                &session,
                format!(
                    "Source {} created. Map its columns to fields next.",
                    source.name
                ),
            );
            Ok(see_other(&format!("/sources/{}", source.id)))
        }
        Err(e @ (SourceError::Invalid(_) | SourceError::NameTaken(_))) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewPage {
                ctx: admin.ctx,
                form,
                choices,
                error: Some(e.to_string()),
            },
        ),
        Err(e) => Err(e.into()),
    }
}

/// One line of the mapping editor.
pub struct MappingLine {
    pub column: String,
    pub field: String,
    pub to_record: Rule,
    pub to_source: Rule,
    pub blanks_clear: bool,
    /// From a proposal: why it maps the column so, and the column's first values.
    pub why: String,
    pub sample: String,
    /// The custom field the column may become (chosen with the field `+`).
    pub new_field: Option<NewField>,
}

impl From<&Mapping> for MappingLine {
    fn from(m: &Mapping) -> Self {
        Self {
            column: m.column_name.clone(),
            field: m.field_key.clone(),
            to_record: m.to_record_rule(),
            to_source: m.to_source_rule(),
            blanks_clear: m.blanks_clear,
            why: String::new(),
            sample: String::new(),
            new_field: None,
        }
    }
}

impl From<ProposedLine> for MappingLine {
    fn from(p: ProposedLine) -> Self {
        Self {
            column: p.column,
            field: p.field_key.unwrap_or_default(),
            to_record: Rule::Always,
            to_source: Rule::Never,
            blanks_clear: false,
            why: p.why,
            sample: p.sample,
            new_field: p.new_field,
        }
    }
}

impl From<&(MappingInput, Option<NewField>)> for MappingLine {
    fn from((m, new_field): &(MappingInput, Option<NewField>)) -> Self {
        Self {
            column: m.column_name.clone(),
            field: if new_field.is_some() {
                NEW_FIELD.into()
            } else {
                m.field_key.clone()
            },
            to_record: m.to_record,
            to_source: m.to_source,
            blanks_clear: m.blanks_clear,
            why: String::new(),
            sample: String::new(),
            new_field: new_field.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "sources/show.html")]
struct ShowPage {
    ctx: Ctx,
    source: Source,
    lines: Vec<MappingLine>,
    fields: Vec<FieldDef>,
    /// Types a column can become (documents are uploaded, not imported).
    field_types: Vec<FieldType>,
    rules: [Rule; 4],
    on_invalid_choices: [OnInvalid; 2],
    runs: Vec<ImportRun>,
    is_admin: bool,
    can_import: bool,
    mapping_note: Option<String>,
    error: Option<String>,
    max_import_mb: usize,
    /// Records and fields with pending proposals from this source's imports.
    desync: crate::review::service::DesyncTotals,
    choices: ActivityChoices,
    /// For a source of activities: the parts a column can fill, with labels.
    activity_targets: Vec<(&'static str, &'static str)>,
}

impl ShowPage {
    fn picked_from(&self) -> String {
        self.source
            .contacts_from
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    fn picked_type(&self) -> String {
        self.source.activity_type.clone()
    }

    /// The desynchronised view filtered on this source.
    pub fn desync_query(&self) -> String {
        format!("source={}", self.source.id)
    }
}

struct SourceData {
    source: Source,
    mapping: Vec<Mapping>,
    fields: Vec<FieldDef>,
    runs: Vec<ImportRun>,
    desync: crate::review::service::DesyncTotals,
    choices: ActivityChoices,
}

fn load(conn: &mut crate::db::DbConn, id: i64) -> Result<SourceData, AppError> {
    let source = service::find(conn, id)?.ok_or_else(|| AppError::not_found("That source"))?;
    let mapping = service::mapping(conn, id)?;
    let fields = fields::list(conn, source.record_kind(), false)?;
    let runs = crate::sync::jobs::runs_of(conn, id, 20)?;
    let from_source = crate::review::service::DesyncFilter {
        source_id: Some(id),
        ..Default::default()
    };
    let desync = crate::review::service::totals(conn, &from_source)?;
    let choices = if source.carries_activities() {
        ActivityChoices::load(conn)?
    } else {
        ActivityChoices::default()
    };
    Ok(SourceData {
        choices,
        source,
        mapping,
        fields,
        runs,
        desync,
    })
}

fn show_page(
    ctx: Ctx,
    user: &crate::auth::model::User,
    data: SourceData,
    lines: Option<Vec<MappingLine>>,
    mapping_note: Option<String>,
    error: Option<String>,
    max_import_bytes: usize,
) -> ShowPage {
    ShowPage {
        ctx,
        lines: lines.unwrap_or_else(|| data.mapping.iter().map(MappingLine::from).collect()),
        source: data.source,
        fields: data.fields,
        field_types: FieldType::ALL
            .into_iter()
            .filter(|t| *t != FieldType::Document)
            .collect(),
        rules: Rule::ALL,
        on_invalid_choices: OnInvalid::ALL,
        runs: data.runs,
        is_admin: user.can(Role::Admin),
        can_import: user.can(Role::Editor),
        mapping_note,
        error,
        max_import_mb: max_import_bytes / (1024 * 1024),
        desync: data.desync,
        choices: data.choices,
        activity_targets: activity_targets(),
    }
}

/// The parts of an activity, then the standard variables of activity mappings.
fn activity_targets() -> Vec<(&'static str, &'static str)> {
    use crate::activities::{import::TARGETS, mapping::STANDARD_VARIABLES};
    TARGETS
        .into_iter()
        .chain(STANDARD_VARIABLES.into_iter().map(|v| (v, "attribute")))
        .collect()
}

/// The source page again, with what was refused and why (422).
fn refused(
    admin: AdminUser,
    data: SourceData,
    lines: Option<Vec<MappingLine>>,
    error: String,
    max_import_bytes: usize,
) -> Result<HttpResponse, AppError> {
    let page = show_page(
        admin.ctx,
        &admin.user,
        data,
        lines,
        None,
        Some(error),
        max_import_bytes,
    );
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[get("/sources/{id}")]
async fn show(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let data = state.db(move |conn| load(conn, id)).await?;
    let page = show_page(
        me.ctx,
        &me.user,
        data,
        None,
        None,
        None,
        state.config.max_import_bytes,
    );
    render(StatusCode::OK, &page)
}

#[post("/sources/{id}")]
async fn update(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<SourceForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let input = form.input()?;
    let on_invalid = OnInvalid::parse(&form.on_invalid);
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            let saved = service::update(conn, id, &input).and_then(|source| match on_invalid {
                Some(choice) => service::set_on_invalid(conn, id, choice),
                None => Ok(source),
            });
            Ok((saved, load(conn, id)?))
        })
        .await?;
    match outcome {
        (Ok(source), _) => {
            flash(&session, format!("Source {} saved.", source.name));
            Ok(see_other(&format!("/sources/{id}")))
        }
        (Err(e @ (SourceError::Invalid(_) | SourceError::NameTaken(_))), data) => refused(
            admin,
            data,
            None,
            e.to_string(),
            state.config.max_import_bytes,
        ),
        (Err(e), _) => Err(e.into()),
    }
}

/// The field choice that makes the column a new custom field.
const NEW_FIELD: &str = "+";

/// `m<N>.column`, `m<N>.field`, `m<N>.to_record`, `m<N>.to_source`, `m<N>.clear`; lines
/// without a field are dropped (that is how a line is removed). A field `+` makes a new
/// custom field of `m<N>.new_key`, `.new_label`, `.new_type` and `.new_options`.
fn parse_mapping(
    form: &[(String, String)],
) -> Result<Vec<(MappingInput, Option<NewField>)>, AppError> {
    let mut lines: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in form {
        let Some(rest) = name.strip_prefix('m') else {
            continue;
        };
        let Some((index, part)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        lines
            .entry(index)
            .or_default()
            .insert(part.to_string(), value.clone());
    }
    let mut out = Vec::new();
    for parts in lines.values() {
        let get = |key: &str| {
            parts
                .get(key)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let (column, field) = (get("column"), get("field"));
        if field.is_empty() || column.is_empty() {
            continue;
        }
        let rule = |key: &str| {
            Rule::parse(&get(key)).ok_or_else(|| {
                AppError::BadRequest(format!("Column '{column}': choose a rule for {key}."))
            })
        };
        let new_field = (field == NEW_FIELD).then(|| NewField {
            key: get("new_key"),
            label: get("new_label"),
            field_type: get("new_type"),
            options: get("new_options"),
        });
        let field_key = new_field.as_ref().map_or(field, |f| f.key.clone());
        let line = MappingInput {
            to_record: rule("to_record")?,
            to_source: rule("to_source")?,
            blanks_clear: parts.contains_key("clear"),
            column_name: column.clone(),
            field_key,
        };
        out.push((line, new_field));
    }
    Ok(out)
}

#[post("/sources/{id}/mapping")]
async fn save_mapping(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let parsed = parse_mapping(&form)?;
    let submitted: Vec<MappingLine> = parsed.iter().map(MappingLine::from).collect();
    let (lines, new_fields): (Vec<_>, Vec<_>) = parsed.into_iter().unzip();
    let new_fields: Vec<NewField> = new_fields.into_iter().flatten().collect();
    let created = new_fields.len();
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            let saved = service::create_fields_and_map(conn, id, &new_fields, &lines);
            Ok((saved, load(conn, id)?))
        })
        .await?;
    match outcome {
        (Ok(mapping), _) => {
            let fields_note = match created {
                0 => String::new(),
                n => format!(" {n} new custom field(s) created."),
            };
            flash(
                &session,
                format!("Mapping saved: {} column(s).{fields_note}", mapping.len()),
            );
            Ok(see_other(&format!("/sources/{id}")))
        }
        (Err(e @ SourceError::Invalid(_)), data) => refused(
            admin,
            data,
            Some(submitted),
            e.to_string(),
            state.config.max_import_bytes,
        ),
        (Err(e), _) => Err(e.into()),
    }
}

/// Reads a sample file's header and shows a proposed mapping (not saved) to correct.
#[post("/sources/{id}/propose")]
async fn propose(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (file_name, file) = upload_to_temp_file(payload, state.config.max_import_bytes).await?;
    let path = file.path().to_path_buf();
    let page = proposal_page(&state, admin, id, file_name, path).await;
    drop(file);
    page
}

#[derive(Debug, Deserialize)]
struct FromUploadQuery {
    #[serde(default)]
    file_name: String,
}

/// The same proposal for a file already uploaded for import (from its preview).
#[get("/sources/{id}/propose/{sha}")]
async fn propose_from_upload(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<(i64, String)>,
    query: web::Query<FromUploadQuery>,
) -> Result<HttpResponse, AppError> {
    let (id, sha) = path.into_inner();
    let file = engine::file_path(&state.config.data_dir, &sha)
        .filter(|p| p.is_file())
        .ok_or_else(|| AppError::NotFound("That upload is gone: upload the file again.".into()))?;
    let name = Some(query.into_inner().file_name)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "the uploaded file".into());
    proposal_page(&state, admin, id, name, file).await
}

/// The source page with the mapping proposed for a file's header and first rows.
async fn proposal_page(
    state: &AppState,
    admin: AdminUser,
    id: i64,
    file_name: String,
    file: std::path::PathBuf,
) -> Result<HttpResponse, AppError> {
    let country = state.config.default_country;
    let (data, proposal, key_problem) = state
        .db(move |conn| -> Result<_, AppError> {
            let data = load(conn, id)?;
            let format =
                csvfile::sniff_file(&file).map_err(|e| AppError::BadRequest(e.to_string()))?;
            let (headers, rows) = csvfile::preview(&file, format, PROPOSAL_ROWS)
                .map_err(|e| AppError::BadRequest(e.to_string()))?;
            let proposal = if data.source.carries_activities() {
                crate::activities::import::propose(&headers, &rows, &data.source.id_column)
            } else {
                proposal::propose(
                    &headers,
                    &rows,
                    &data.source.id_column,
                    &data.fields,
                    data.source.phone_country(country),
                )
            };
            let key_problem = if data.source.match_fields().is_empty() {
                RowKey::of(&data.source, &[], &headers).err()
            } else {
                None
            };
            Ok((data, proposal, key_problem))
        })
        .await?;
    let matched = proposal.iter().filter(|l| l.field_key.is_some()).count();
    let note = format!(
        "Proposed from {file_name}: {matched} of {} lines map to a field; each line says why, with the column's first values. Check it, then save.{}",
        proposal.len(),
        key_problem.map(|p| format!(" Note: {p}")).unwrap_or_default()
    );
    let lines: Vec<MappingLine> = proposal.into_iter().map(MappingLine::from).collect();
    let page = show_page(
        admin.ctx,
        &admin.user,
        data,
        Some(lines),
        Some(note),
        None,
        state.config.max_import_bytes,
    );
    render(StatusCode::OK, &page)
}

#[post("/sources/{id}/disconnect")]
async fn disconnect(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let actor = Actor::user(&admin.user);
    let count = state
        .db(move |conn| service::disconnect(conn, id, &actor))
        .await?;
    flash(
        &session,
        format!("Disconnected: {count} record(s) became manual and keep their links. The next import reconnects them."),
    );
    Ok(see_other(&format!("/sources/{id}")))
}

#[post("/sources/{id}/reconnect")]
async fn reconnect(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    state.db(move |conn| service::reconnect(conn, id)).await?;
    flash(
        &session,
        "Connected. Import a file: records linked to it convert back through their links.",
    );
    Ok(see_other(&format!("/sources/{id}")))
}

#[derive(Debug, Deserialize)]
struct ConnectorForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    url_env: String,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    every_minutes: String,
}

/// Saves the database connector's settings (the URL is kept encrypted, never shown again).
#[post("/sources/{id}/connector")]
async fn save_connector(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ConnectorForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let form = form.into_inner();
    let every_minutes = match form.every_minutes.trim() {
        "" => 0,
        text => text
            .parse::<i64>()
            .map_err(|_| AppError::BadRequest(format!("'{text}' is not a number of minutes.")))?,
    };
    let input = connector::ConnectorInput {
        url: form.url,
        url_env: form.url_env,
        sql: form.sql,
        every_minutes,
    };
    let key = state.secret();
    let outcome = state
        .db(move |conn| -> Result<_, AppError> {
            Ok((connector::save(conn, id, &input, &key), load(conn, id)?))
        })
        .await?;
    match outcome {
        (Ok(source), _) => {
            flash(&session, format!("Connector of {} saved.", source.name));
            Ok(see_other(&format!("/sources/{id}#connector")))
        }
        (Err(e @ SourceError::Invalid(_)), data) => refused(
            admin,
            data,
            None,
            e.to_string(),
            state.config.max_import_bytes,
        ),
        (Err(e), _) => Err(e.into()),
    }
}

/// Runs the source's query now; its rows go through the engine as an applied import.
#[post("/sources/{id}/connector/run")]
async fn run_connector(
    state: web::Data<AppState>,
    editor: EditorUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let key = state.secret();
    let data_dir = state.config.data_dir.clone();
    let user = editor.user.clone();
    let run_id = state
        .db(move |conn| -> Result<i64, AppError> {
            let source =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That source"))?;
            let label = format!("query run by {}", user.display_name);
            Ok(connector::run_now(
                conn,
                &source,
                &data_dir,
                &key,
                (Some(user.id), &label),
            )?)
        })
        .await?;
    flash(&session, format!("Query run: import run #{run_id} queued."));
    Ok(see_other(&format!("/runs/{run_id}")))
}
