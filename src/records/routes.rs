//! Contact and company pages: lists, record page, forms, documents, CSV export.

use std::collections::BTreeMap;

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::documents::{self, DocumentError};
use super::export;
use super::list::{self, Cursor, ListQuery, OwnerFilter, SortKey};
use super::model::{Actor, HistoryEntry, LinkView, RecordInput, RecordRow};
use super::service::{self, FieldErrors, RecordError, RecordFlag};
use super::view::{self, FieldView};
use crate::auth::extract::{EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::web::{flash, is_htmx, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(export_csv)
        .service(suggest_companies)
        .service(new_record_page)
        .service(list_page)
        .service(create_record)
        .service(record_page)
        .service(edit_page)
        .service(update_record)
        .service(set_flag)
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

// ---- list ------------------------------------------------------------------------------

/// The list's parameters as they arrive in the query string (repeated `col` keys included).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub q: String,
    pub owner: String,
    pub forced: String,
    pub missing: bool,
    pub archived: bool,
    pub sort: String,
    pub desc: bool,
    pub after: String,
    pub columns: Vec<String>,
    pub columns_chosen: bool,
    /// `cf_<key>=value`: custom field filters.
    pub custom: Vec<(String, String)>,
}

impl ListParams {
    fn parse(pairs: &[(String, String)]) -> Self {
        let mut p = ListParams::default();
        for (key, value) in pairs {
            match key.as_str() {
                "q" => p.q = value.clone(),
                "owner" => p.owner = value.clone(),
                "forced" => p.forced = value.clone(),
                "missing" => p.missing = value == "1",
                "archived" => p.archived = value == "1",
                "sort" => p.sort = value.clone(),
                "dir" => p.desc = value == "desc",
                "after" => p.after = value.clone(),
                "col" => p.columns.push(value.clone()),
                "cols" => p.columns_chosen = true,
                other => {
                    if let Some(field) = other
                        .strip_prefix("cf_")
                        .filter(|_| !value.trim().is_empty())
                    {
                        p.custom.push((field.to_string(), value.trim().to_string()));
                    }
                }
            }
        }
        p
    }

    fn query(&self, kind: RecordKind, defs: &[FieldDef]) -> ListQuery {
        let mut q = ListQuery::new(kind);
        q.search = self.q.clone();
        q.owner = OwnerFilter::parse(&self.owner);
        q.forced_manual = match self.forced.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        q.missing_from_source = self.missing;
        q.archived = self.archived;
        q.custom = self
            .custom
            .iter()
            .filter_map(|(key, value)| {
                let def = defs.iter().find(|d| &d.key == key && !d.builtin)?;
                Some((def.id, value.clone(), def.ftype() == FieldType::List))
            })
            .collect();
        q.sort = SortKey::parse(&self.sort, defs);
        q.descending = self.desc;
        q.after = Cursor::decode(&self.after);
        q
    }

    /// The query string with the given changes: for sort links and the next page.
    pub fn link(&self, sort: Option<&str>, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let push = |pairs: &mut Vec<(&str, String)>, k, v: &str| {
            if !v.is_empty() {
                pairs.push((k, v.to_string()));
            }
        };
        push(&mut pairs, "q", &self.q);
        push(&mut pairs, "owner", &self.owner);
        push(&mut pairs, "forced", &self.forced);
        if self.missing {
            pairs.push(("missing", "1".into()));
        }
        if self.archived {
            pairs.push(("archived", "1".into()));
        }
        let custom: Vec<(String, String)> = self
            .custom
            .iter()
            .map(|(k, v)| (format!("cf_{k}"), v.clone()))
            .collect();
        for (k, v) in &custom {
            pairs.push((k.as_str(), v.clone()));
        }
        match sort {
            Some(key) => {
                let flip = self.sort_key() == key && !self.desc;
                pairs.push(("sort", key.to_string()));
                if flip {
                    pairs.push(("dir", "desc".into()));
                }
            }
            None => {
                push(&mut pairs, "sort", &self.sort);
                if self.desc {
                    pairs.push(("dir", "desc".into()));
                }
            }
        }
        if self.columns_chosen {
            pairs.push(("cols", "1".into()));
            for c in &self.columns {
                pairs.push(("col", c.clone()));
            }
        }
        if let Some(after) = after {
            pairs.push(("after", after.to_string()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    fn sort_key(&self) -> &str {
        if self.sort.is_empty() {
            "name"
        } else {
            &self.sort
        }
    }

    /// The value of the filter on custom field `key`, for the filter form.
    pub fn custom_value(&self, key: &str) -> &str {
        self.custom
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// "▲" or "▼" beside the sorted column's header.
    pub fn arrow(&self, key: &str) -> &'static str {
        match (self.sort_key() == key, self.desc) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        }
    }
}

/// A column of the list: a built-in, a custom field, or a record property.
pub struct Column {
    pub key: String,
    pub label: String,
    pub sortable: bool,
    pub shown: bool,
}

fn columns_for(kind: RecordKind, defs: &[FieldDef], params: &ListParams) -> Vec<Column> {
    let mut all: Vec<Column> = defs
        .iter()
        .filter(|d| d.ftype() != FieldType::Document)
        .map(|d| Column {
            key: d.key.clone(),
            label: d.label.clone(),
            sortable: matches!(d.key.as_str(), "name" | "email" | "phone") || !d.builtin,
            shown: false,
        })
        .collect();
    if kind == RecordKind::Contact {
        all.push(Column {
            key: "company".into(),
            label: "Company".into(),
            sortable: false,
            shown: false,
        });
    }
    all.push(Column {
        key: "owner".into(),
        label: "Owner".into(),
        sortable: false,
        shown: false,
    });
    all.push(Column {
        key: "updated".into(),
        label: "Updated".into(),
        sortable: true,
        shown: false,
    });
    let defaults = ["name", "email", "phone", "company", "owner"];
    for column in &mut all {
        column.shown = column.key == "name"
            || if params.columns_chosen {
                params.columns.contains(&column.key)
            } else {
                defaults.contains(&column.key.as_str())
            };
    }
    all
}

pub struct ListEntry {
    pub record: RecordRow,
    pub cells: Vec<Cell>,
    /// Fields waiting for a decision (the desync indicator beside the name).
    pub pending: i64,
}

pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub is_name: bool,
}

#[derive(Template)]
#[template(path = "records/list.html")]
struct ListPage {
    ctx: Ctx,
    kind: RecordKind,
    params: ListParams,
    columns: Vec<Column>,
    entries: Vec<ListEntry>,
    total: i64,
    next: Option<String>,
    first_page: bool,
    sources: BTreeMap<i64, String>,
    can_edit: bool,
    /// Custom fields offered as filters.
    filters: Vec<FieldDef>,
}

#[derive(Template)]
#[template(path = "records/list.html", block = "results")]
struct ListResults {
    kind: RecordKind,
    params: ListParams,
    columns: Vec<Column>,
    entries: Vec<ListEntry>,
    total: i64,
    next: Option<String>,
    first_page: bool,
    can_edit: bool,
}

/// One column's cell for one record; names link to their record pages.
fn cell(
    column: &str,
    record: &RecordRow,
    custom: &BTreeMap<String, String>,
    sources: &BTreeMap<i64, String>,
    company: Option<&(i64, String)>,
) -> Cell {
    let (text, href) = match column {
        "name" => (record.name.clone(), Some(format!("/records/{}", record.id))),
        "owner" => (service::owner_label(record, sources), None),
        "company" => match company {
            Some((id, name)) => (name.clone(), Some(format!("/records/{id}"))),
            None => (String::new(), None),
        },
        "updated" => (record.updated_at.format("%Y-%m-%d %H:%M").to_string(), None),
        key => (
            record
                .builtin_value(key)
                .map(str::to_string)
                .or_else(|| custom.get(key).cloned())
                .unwrap_or_default(),
            None,
        ),
    };
    Cell {
        text,
        href,
        is_name: column == "name",
    }
}

#[get("/{kind:contacts|companies}")]
async fn list_page(
    state: web::Data<AppState>,
    me: SignedIn,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&path)?;
    let params = ListParams::parse(&query);
    let first_page = params.after.is_empty();
    let params_for_db = params.clone();
    let (columns, entries, total, next, sources, filters) = state
        .db(move |conn| -> Result<_, AppError> {
            let defs = fields::list(conn, kind, false)?;
            let columns = columns_for(kind, &defs, &params_for_db);
            let custom_shown: Vec<FieldDef> = defs
                .iter()
                .filter(|d| !d.builtin && columns.iter().any(|c| c.shown && c.key == d.key))
                .cloned()
                .collect();
            let q = params_for_db.query(kind, &defs);
            let page = list::page(conn, &q, &custom_shown)?;
            let sources = service::source_names(conn)?;
            let company_ids: Vec<i64> = page
                .rows
                .iter()
                .filter_map(|r| r.record.company_id)
                .collect();
            let companies = service::names_of(conn, &company_ids)?;
            let record_ids: Vec<i64> = page.rows.iter().map(|r| r.record.id).collect();
            let pending = crate::review::service::pending_counts(conn, &record_ids)?;
            let entries = page
                .rows
                .into_iter()
                .map(|row| {
                    let company = row
                        .record
                        .company_id
                        .and_then(|id| companies.get(&id).map(|name| (id, name.clone())));
                    let cells = columns
                        .iter()
                        .filter(|c| c.shown)
                        .map(|c| cell(&c.key, &row.record, &row.custom, &sources, company.as_ref()))
                        .collect();
                    ListEntry {
                        pending: pending.get(&row.record.id).copied().unwrap_or(0),
                        record: row.record,
                        cells,
                    }
                })
                .collect();
            let filters = defs
                .into_iter()
                .filter(|d| !d.builtin && d.ftype() != FieldType::Document)
                .collect::<Vec<_>>();
            Ok((
                columns,
                entries,
                page.total,
                page.next.map(|c| c.encode()),
                sources,
                filters,
            ))
        })
        .await?;
    let can_edit = me.user.can(Role::Editor);
    if is_htmx(&req) {
        return render(
            StatusCode::OK,
            &ListResults {
                kind,
                params,
                columns,
                entries,
                total,
                next,
                first_page,
                can_edit,
            },
        );
    }
    render(
        StatusCode::OK,
        &ListPage {
            ctx: me.ctx,
            kind,
            params,
            columns,
            entries,
            total,
            next,
            first_page,
            sources,
            can_edit,
            filters,
        },
    )
}

#[get("/{kind:contacts|companies}/export.csv")]
async fn export_csv(
    state: web::Data<AppState>,
    _me: SignedIn,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&path)?;
    let params = ListParams::parse(&query);
    let bytes = state
        .db(move |conn| -> Result<Vec<u8>, AppError> {
            let defs = fields::list(conn, kind, false)?;
            let mut q = params.query(kind, &defs);
            q.after = None;
            let columns = columns_for(kind, &defs, &params);
            let shown: Vec<String> = columns
                .iter()
                .filter(|c| c.shown)
                .map(|c| c.key.clone())
                .collect();
            let labels: Vec<String> = columns
                .iter()
                .filter(|c| c.shown)
                .map(|c| c.label.clone())
                .collect();
            export::list_csv(conn, q, &defs, &shown, &labels).map_err(AppError::internal)
        })
        .await?;
    let filename = format!(
        "{}-{}.csv",
        kind.plural(),
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .body(bytes))
}

#[derive(Deserialize)]
struct SuggestQuery {
    #[serde(default)]
    company: String,
}

#[derive(Template)]
#[template(path = "records/company_options.html")]
struct CompanyOptions {
    companies: Vec<(i64, String)>,
}

/// Options for the company picker (a datalist), refreshed as the person types.
#[get("/companies/suggest")]
async fn suggest_companies(
    state: web::Data<AppState>,
    _me: SignedIn,
    query: web::Query<SuggestQuery>,
) -> Result<HttpResponse, AppError> {
    let typed = query.into_inner().company;
    let companies = state
        .db(move |conn| service::companies_named(conn, &typed, 20))
        .await?;
    render(StatusCode::OK, &CompanyOptions { companies })
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
    applications: Vec<(i64, String, String)>,
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

// ---- create and edit forms -------------------------------------------------------------

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
async fn new_record_page(
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
async fn create_record(
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
            let result = service::resolve_company(conn, &company).and_then(|company_id| {
                let input = RecordInput {
                    values,
                    company_id: (kind == RecordKind::Contact).then_some(company_id),
                };
                service::create(conn, kind, &input, &actor, country)
            });
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
async fn edit_page(
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
async fn update_record(
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
            let record =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That record"))?;
            let is_contact = record.record_kind() == RecordKind::Contact;
            let result = match company.filter(|_| is_contact) {
                Some(typed) => service::resolve_company(conn, &typed).map(Some),
                None => Ok(None),
            }
            .and_then(|company_id| {
                let input = RecordInput { values, company_id };
                service::update(conn, id, &input, &actor, country)
            });
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
async fn set_flag(
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
    let user = me.user.clone();
    let document = state
        .db(move |conn| -> Result<_, AppError> {
            let record =
                service::find(conn, id)?.ok_or_else(|| AppError::not_found("That record"))?;
            let defs = fields::list(conn, record.record_kind(), false)?;
            if !defs
                .iter()
                .any(|d| d.key == key && d.ftype() == FieldType::Document)
            {
                return Err(AppError::BadRequest(format!(
                    "'{key}' is not a document field."
                )));
            }
            crate::db::write_tx(conn, |conn| -> Result<_, AppError> {
                let document =
                    documents::store(conn, &data_dir, &filename, &bytes, max, Some(user.id))?;
                let mut input = RecordInput::default();
                input.values.insert(key.clone(), document.id.to_string());
                service::update(conn, id, &input, &Actor::user(&user), country)?;
                Ok(document)
            })
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
