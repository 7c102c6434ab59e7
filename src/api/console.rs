//! The console's side of the API: the admin page of tokens, and the API reference rendered
//! from the OpenAPI document (no external scripts or fonts).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use utoipa::OpenApi;

use super::model::{ApiToken, Scope};
use super::routes::ApiDoc;
use super::service::{self, NewToken, TokenError};
use crate::auth::extract::{AdminUser, SignedIn};
use crate::error::AppError;
use crate::sources::model::Source;
use crate::sources::service as sources;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(tokens_page)
        .service(create_token)
        .service(revoke_token)
        .service(reference_page);
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(m) => AppError::BadRequest(m),
            TokenError::Db(db) => db.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "api/tokens.html")]
struct TokensPage {
    ctx: Ctx,
    tokens: Vec<ApiToken>,
    sources: Vec<Source>,
    scopes: [Scope; 4],
    /// The secret of the token just created: shown on this page only.
    created: Option<(ApiToken, String)>,
    error: Option<String>,
}

impl TokensPage {
    fn source_name(&self, id: &Option<i64>) -> String {
        match id {
            None => "all sources".into(),
            Some(id) => self
                .sources
                .iter()
                .find(|s| s.id == *id)
                .map_or_else(|| format!("source #{id}"), |s| s.name.clone()),
        }
    }
}

async fn tokens_view(
    state: &AppState,
    ctx: Ctx,
    created: Option<(ApiToken, String)>,
    error: Option<String>,
) -> Result<TokensPage, AppError> {
    let (tokens, sources) = state
        .db(|conn| -> Result<_, AppError> { Ok((service::list(conn)?, sources::list(conn)?)) })
        .await?;
    Ok(TokensPage {
        ctx,
        tokens,
        sources,
        scopes: Scope::ALL,
        created,
        error,
    })
}

#[get("/tokens")]
async fn tokens_page(
    state: web::Data<AppState>,
    admin: AdminUser,
) -> Result<HttpResponse, AppError> {
    render(
        StatusCode::OK,
        &tokens_view(&state, admin.ctx, None, None).await?,
    )
}

#[post("/tokens")]
async fn create_token(
    state: web::Data<AppState>,
    admin: AdminUser,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let value = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let new = NewToken {
        name: value("name"),
        scopes: form
            .iter()
            .filter(|(k, _)| k == "scope")
            .filter_map(|(_, v)| Scope::parse(v))
            .collect(),
        source_id: value("source").parse().ok(),
        created_by: Some(admin.user.id),
    };
    let created = state
        .db(move |conn| Ok::<_, AppError>(service::create(conn, &new)))
        .await?;
    let (status, page) = match created {
        Ok(created) => (
            StatusCode::OK,
            tokens_view(&state, admin.ctx, Some(created), None).await?,
        ),
        Err(TokenError::Invalid(message)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            tokens_view(&state, admin.ctx, None, Some(message)).await?,
        ),
        Err(e) => return Err(e.into()),
    };
    render(status, &page)
}

#[post("/tokens/{id}/revoke")]
async fn revoke_token(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let token = state.db(move |conn| service::revoke(conn, id)).await?;
    flash(
        &session,
        format!(
            "Token {} ({}) is revoked: its next request is refused.",
            token.name, token.prefix
        ),
    );
    Ok(see_other("/tokens"))
}

/// One operation of the reference page.
struct Operation {
    method: String,
    path: String,
    summary: String,
    parameters: Vec<(String, String, bool, String)>,
    body: Option<String>,
    responses: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "api/reference.html")]
struct ReferencePage {
    ctx: Ctx,
    operations: Vec<Operation>,
    schemas: Vec<(String, String)>,
}

/// The API reference, from the same OpenAPI document `/api/v1/openapi.json` serves.
#[get("/api")]
async fn reference_page(me: SignedIn) -> Result<HttpResponse, AppError> {
    let doc = ApiDoc::openapi();
    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, op) in methods {
            let Some(op) = op else { continue };
            operations.push(Operation {
                method: method.into(),
                path: path.clone(),
                summary: op
                    .description
                    .clone()
                    .or_else(|| op.summary.clone())
                    .unwrap_or_default(),
                parameters: op
                    .parameters
                    .iter()
                    .flatten()
                    .map(|p| {
                        (
                            p.name.clone(),
                            serde_json::to_value(&p.parameter_in)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            matches!(p.required, utoipa::openapi::Required::True),
                            p.description.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
                body: op.request_body.as_ref().map(pretty),
                responses: op
                    .responses
                    .responses
                    .iter()
                    .map(|(code, r)| (code.clone(), pretty(r)))
                    .collect(),
            });
        }
    }
    let schemas = doc
        .components
        .as_ref()
        .map(|c| {
            c.schemas
                .iter()
                .map(|(name, schema)| (name.clone(), pretty(schema)))
                .collect()
        })
        .unwrap_or_default();
    render(
        StatusCode::OK,
        &ReferencePage {
            ctx: me.ctx,
            operations,
            schemas,
        },
    )
}

/// Pretty JSON of a part of the OpenAPI document, for the reference page.
fn pretty<T: serde::Serialize>(part: &T) -> String {
    serde_json::to_string_pretty(part).unwrap_or_default()
}
