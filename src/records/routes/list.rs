//! The contact and company lists, their CSV export and the company picker.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::kind_of;
use crate::auth::extract::{definitions_seen, SignedIn};
use crate::auth::model::Role;
use crate::error::AppError;
use crate::fields::model::{FieldDef, RecordKind};
use crate::records::list::Total;
use crate::records::service;
use crate::records::table::{self, Column, ListEntry, ListParams};
use crate::web::{is_htmx, render, streamed_download, Ctx};
use crate::AppState;

#[derive(Template)]
#[template(path = "records/list.html")]
struct ListPage {
    ctx: Ctx,
    kind: RecordKind,
    params: ListParams,
    columns: Vec<Column>,
    entries: Vec<ListEntry>,
    total: Total,
    next: Option<String>,
    first_page: bool,
    sources: BTreeMap<i64, String>,
    can_edit: bool,
    /// Custom fields offered as filters.
    filters: Vec<FieldDef>,
    /// Follow-up templates of this kind, offered to render for the filtered list.
    followups: Vec<(i64, String)>,
    /// Whether the toolbar is swapped in out of band (an htmx response).
    oob: bool,
}

#[derive(Template)]
#[template(path = "records/list.html", block = "results")]
struct ListResults {
    kind: RecordKind,
    params: ListParams,
    columns: Vec<Column>,
    entries: Vec<ListEntry>,
    total: Total,
    next: Option<String>,
    first_page: bool,
    can_edit: bool,
    followups: Vec<(i64, String)>,
    oob: bool,
}

#[get("/{kind:contacts|companies}")]
pub(super) async fn list_page(
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
    let htmx = is_htmx(&req);
    let seen = definitions_seen(&req);
    let definitions = state.definitions.clone();
    let (table, followups) = state
        .db(move |conn| -> Result<_, AppError> {
            let definitions = definitions.at_least(conn, seen)?;
            let table = table::page(conn, &definitions, kind, &params_for_db)?;
            Ok((table, definitions.followups(kind)))
        })
        .await?;
    let can_edit = me.user.can(Role::Editor);
    if htmx {
        return render(
            StatusCode::OK,
            &ListResults {
                kind,
                params,
                columns: table.columns,
                entries: table.entries,
                total: table.total,
                next: table.next,
                first_page,
                can_edit,
                followups,
                oob: true,
            },
        );
    }
    render(
        StatusCode::OK,
        &ListPage {
            ctx: me.ctx,
            kind,
            params,
            columns: table.columns,
            entries: table.entries,
            total: table.total,
            next: table.next,
            first_page,
            sources: table.sources,
            can_edit,
            filters: table.filters,
            followups,
            oob: false,
        },
    )
}

#[get("/{kind:contacts|companies}/export.csv")]
pub(super) async fn export_csv(
    state: web::Data<AppState>,
    _me: SignedIn,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&path)?;
    let params = ListParams::parse(&query);
    let filename = format!(
        "{}-{}.csv",
        kind.plural(),
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    Ok(streamed_download(
        state.pool.clone(),
        filename,
        "text/csv; charset=utf-8",
        move |conn, out| table::csv(conn, kind, &params, out),
    ))
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
pub(super) async fn suggest_companies(
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

#[derive(Template)]
#[template(path = "records/record_options.html")]
struct RecordOptions {
    /// (id, name, email)
    records: Vec<(i64, String, String)>,
}

/// Options for a record picker (a datalist), refreshed as the person types: the indexed
/// search of the lists (names first), ten at most. The typed text comes in whatever name the
/// form's input has (`record`, `contact`, `s0.contact`...); `kind` says which records.
#[get("/records/suggest")]
pub(super) async fn suggest_records(
    state: web::Data<AppState>,
    _me: SignedIn,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let kind = query
        .iter()
        .find(|(k, _)| k == "kind")
        .and_then(|(_, v)| RecordKind::parse(v))
        .unwrap_or(RecordKind::Contact);
    let typed = query
        .iter()
        .find(|(k, _)| k != "kind")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    // "#12 Ada Lovelace" (an option already chosen) searches for nothing new.
    if typed.is_empty() || typed.starts_with('#') {
        return render(
            StatusCode::OK,
            &RecordOptions {
                records: Vec::new(),
            },
        );
    }
    let records = state
        .db(move |conn| {
            let mut q = crate::records::list::ListQuery::new(kind);
            q.search = typed;
            q.sort = crate::records::list::SortKey::Relevance;
            q.limit = 10;
            q.count = false;
            crate::records::list::page(conn, &q, &[]).map(|page| {
                page.rows
                    .into_iter()
                    .map(|r| (r.record.id, r.record.name, r.record.email))
                    .collect()
            })
        })
        .await?;
    render(StatusCode::OK, &RecordOptions { records })
}
