//! The JSON API under `/api/v1`: bearer tokens only, problem+json errors, and the OpenAPI
//! document generated from these handlers.

use actix_web::http::{header, StatusCode};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::error::{self, ApiError, Problem};
use super::extract::ApiCaller;
use super::model::Scope;
use super::push::{self, PushContext, PushError, PushRequest, RunAnswer};
use super::records::{self, ApiRecord, RecordPage};
use super::service;
use crate::activities::model::ContactRef;
use crate::fields::model::RecordKind;
use crate::sync::feed::{self, FeedEntry};
use crate::AppState;

/// Largest request body: 100,000 short rows.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest page of the change feed.
const MAX_FEED_PAGE: i64 = 10_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(error::query_config())
            .app_data(error::path_config())
            .service(openapi_json)
            .service(list_records)
            .service(get_record)
            .service(record_by_external_id)
            .service(push_rows)
            .service(get_run)
            .service(changes)
            .service(log_activity)
            .default_service(web::to(no_such_endpoint)),
    );
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "syncdesk API",
        description = "Push rows through a source, read records, follow a source's outbound change feed, and log contacts' activities. Every request but this document's needs `Authorization: Bearer sdk_...`; errors are `application/problem+json`."
    ),
    paths(list_records, get_record, record_by_external_id, push_rows, get_run, changes, log_activity),
    components(schemas(Problem, ApiRecord, RecordPage, PushRequest, RunAnswer, ChangePage, ChangeEntry, KindParam, ActivityRequest, ActivityAnswer, ContactRef)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3.1 document of this API (no token needed).
#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The request body, refused (413) past `limit` bytes without reading the rest.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    use futures_util::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("The body could not be read: {e}.")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The body is larger than {limit} bytes: send fewer rows per request."),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs `f` with a pooled connection on the blocking pool, its errors as problems.
async fn api_db<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut crate::db::DbConn) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool
            .get()
            .map_err(|e| ApiError::from(crate::error::AppError::from(e)))?;
        f(&mut conn)
    })
    .await?
}

async fn no_such_endpoint(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "There is no endpoint {} {}: see /api/v1/openapi.json.",
        req.method(),
        req.path()
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RecordsQuery {
    /// `contact` (default) or `company`.
    kind: Option<KindParam>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Records per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum KindParam {
    Contact,
    Company,
}

fn cursor(after: Option<&str>) -> Result<i64, ApiError> {
    match after.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(0),
        Some(a) => a.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "'{a}' is not a cursor: pass the `next` (or last `cursor`) of the previous page."
            ))
        }),
    }
}

/// Records of a kind, by id, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/records",
    params(RecordsQuery),
    responses(
        (status = 200, body = RecordPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment, parameter or value holds a control character", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/records")]
async fn list_records(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<RecordsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::RecordsRead)?;
    let kind = match query.kind {
        None | Some(KindParam::Contact) => RecordKind::Contact,
        Some(KindParam::Company) => RecordKind::Company,
    };
    let after = cursor(query.after.as_deref())?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=records::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}.",
            records::MAX_PAGE
        )));
    }
    let source = caller.token.source_id;
    let page = state
        .db(move |conn| records::page(conn, kind, after, limit, source))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One record by its id.
#[utoipa::path(
    get,
    path = "/api/v1/records/{id}",
    params(("id" = i64, Path, description = "The record's id")),
    responses(
        (status = 200, body = ApiRecord),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment, parameter or value holds a control character", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/records/{id}")]
async fn get_record(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::RecordsRead)?;
    let id = path.into_inner();
    let source = caller.token.source_id;
    let record = state
        .db(move |conn| records::one(conn, id, source))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("There is no record #{id}.")))?;
    Ok(HttpResponse::Ok().json(record))
}

/// The record a source knows by its external id.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/records/{external_id}",
    params(
        ("id" = i64, Path, description = "The source's id"),
        ("external_id" = String, Path, description = "The source's id of the record")
    ),
    responses(
        (status = 200, body = ApiRecord),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment, parameter or value holds a control character", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sources/{id}/records/{external_id}")]
async fn record_by_external_id(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::RecordsRead)?;
    let (source_id, external_id) = path.into_inner();
    caller.require_source(source_id)?;
    let shown = external_id.clone();
    let record = state
        .db(move |conn| records::by_external_id(conn, source_id, &external_id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Source #{source_id} has no record with external id '{shown}'."
            ))
        })?;
    Ok(HttpResponse::Ok().json(record))
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Invalid(m) => ApiError::unprocessable(m),
            PushError::NoSource(_) => ApiError::not_found(e.to_string()),
            PushError::Busy(m) => ApiError::new(StatusCode::CONFLICT, m),
            PushError::Import(
                i @ (crate::sync::engine::ImportError::Refused(_)
                | crate::sync::engine::ImportError::NoKey(_)),
            ) => ApiError::unprocessable(i.to_string()),
            PushError::Import(i) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, i.to_string()),
            PushError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            PushError::Db(db) => db.into(),
        }
    }
}

/// Push rows through a source, as an import of a file with those rows. Up to 1,000 rows are
/// run at once and answered with every row's outcome (200); more run in the background (202,
/// poll the run's `url`). With `Idempotency-Key`, the same key and body get the first answer
/// again and start nothing (409 while the first is still running); a key counts per token and
/// source, so the same key on another source is a new push; the same key with another
/// body is refused (422).
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/rows",
    params(
        ("id" = i64, Path, description = "The source's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried push safe")
    ),
    request_body = PushRequest,
    responses(
        (status = 200, description = "The run, finished, with every row's outcome", body = RunAnswer),
        (status = 202, description = "The run, started in the background", body = RunAnswer),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another run holds the source, or a push with this key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/sources/{id}/rows")]
async fn push_rows(
    state: web::Data<AppState>,
    caller: ApiCaller,
    req: HttpRequest,
    path: web::Path<i64>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::RowsWrite)?;
    let source_id = path.into_inner();
    caller.require_source(source_id)?;
    let body = read_body(payload, MAX_BODY_BYTES).await?;
    let request: PushRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::unprocessable(format!(
            "The body is not {{\"rows\": [{{...}}], \"dry_run\": false}}: {e}."
        ))
    })?;
    let key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request("Idempotency-Key must be 1 to 255 visible characters.")
                })?
                .to_string(),
        ),
    };
    let token = caller.token.clone();
    // Scoped by token and path: the same key on another source's push is a new request.
    let key = key.map(|key| service::KeyScope {
        token_id: token.id,
        path: format!("/api/v1/sources/{source_id}/rows"),
        key,
    });
    if let Some(scope) = key.clone() {
        let sha = service::body_digest(&body);
        let claim = api_db(&state, move |conn| {
            Ok(service::claim_key(conn, &scope, &sha)?)
        })
        .await?;
        match claim {
            service::KeyClaim::New => {}
            service::KeyClaim::Replay(stored) => {
                return Ok(HttpResponse::build(
                    StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK),
                )
                .insert_header(("Idempotency-Replayed", "true"))
                .content_type("application/json")
                .body(stored.body))
            }
            service::KeyClaim::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "A push with this Idempotency-Key is still running: ask again when it has answered.",
                ))
            }
            service::KeyClaim::OtherBody => {
                return Err(ApiError::unprocessable(
                    "This Idempotency-Key was used with another body: use a new key for new rows.",
                ))
            }
        }
    }
    let pool = state.pool.clone();
    let config = state.config.clone();
    let label = format!("API token {} ({})", token.name, token.prefix);
    let pushed = web::block(move || {
        let ctx = PushContext {
            pool: &pool,
            data_dir: &config.data_dir,
            country: config.default_country,
            label: &label,
        };
        push::push(&ctx, source_id, &request)
    })
    .await
    .map_err(ApiError::from)
    .and_then(|result| result.map_err(ApiError::from))
    .and_then(|(answer, finished)| {
        let json = serde_json::to_string(&answer)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((answer, finished, json))
    });
    let (answer, finished, json) = match pushed {
        Ok(done) => done,
        Err(e) => {
            if let Some(scope) = key {
                api_db(&state, move |conn| Ok(service::release_key(conn, &scope)?)).await?;
            }
            return Err(e);
        }
    };
    let status = if finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    if let Some(scope) = key {
        let stored = service::StoredAnswer {
            status_code: status.as_u16(),
            body: json.clone(),
        };
        api_db(&state, move |conn| {
            Ok(service::finish_key(conn, &scope, &stored)?)
        })
        .await?;
    }
    Ok(HttpResponse::build(status)
        .insert_header((header::LOCATION, answer.url.clone()))
        .content_type("application/json")
        .body(json))
}

/// A pushed run (or any import run of a source the token may push to).
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    params(("id" = i64, Path, description = "The run's id")),
    responses(
        (status = 200, body = RunAnswer),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment, parameter or value holds a control character", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/runs/{id}")]
async fn get_run(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::RowsWrite)?;
    let id = path.into_inner();
    // Another source's run is answered as one that does not exist: a restricted token
    // cannot tell which run ids are taken.
    let own = caller.token.source_id;
    let answer = api_db(&state, move |conn| Ok(push::run_answer(conn, id, own)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("There is no run #{id}.")))?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// The `next` of the previous page (or the last entry's `cursor`); from the start if absent.
    after: Option<String>,
    /// Entries per page (default 1,000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
}

/// One entry of a source's change feed (documentation of `FeedEntry`'s JSON).
#[derive(Serialize, ToSchema)]
struct ChangeEntry {
    /// Save the last one you processed and pass it as `after`.
    cursor: i64,
    record_id: i64,
    /// The source's id of the record.
    external_id: String,
    /// `value`, `archived`, `forced_manual` or `linked`.
    event: String,
    /// The source's column of a value change.
    column: Option<String>,
    field: Option<String>,
    old_value: Option<String>,
    new_value: Option<String>,
    /// user, import, application, review, undo or system.
    origin: String,
    by: String,
    #[schema(value_type = String, format = DateTime)]
    changed_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    #[schema(value_type = Vec<ChangeEntry>)]
    changes: Vec<FeedEntry>,
    /// Pass as `after` for the next page; the same cursor again when there is nothing new.
    next: String,
}

/// A source's outbound change feed, oldest first: the changes its mapping's `to_source`
/// rules send it, never its own. Poll with the last `next`: every change comes once.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/changes",
    params(("id" = i64, Path, description = "The source's id"), ChangesQuery),
    responses(
        (status = 200, body = ChangePage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A path segment, parameter or value holds a control character", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/sources/{id}/changes")]
async fn changes(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    query: web::Query<ChangesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::ChangesRead)?;
    let source_id = path.into_inner();
    caller.require_source(source_id)?;
    let after = cursor(query.after.as_deref())?;
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=MAX_FEED_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_FEED_PAGE}."
        )));
    }
    let entries = api_db(&state, move |conn| {
        if crate::sources::service::find(conn, source_id)?.is_none() {
            return Err(ApiError::not_found(format!(
                "There is no source #{source_id}."
            )));
        }
        feed::sequence(conn)?;
        Ok(feed::page(conn, source_id, after, limit)?)
    })
    .await?;
    let next = entries
        .last()
        .and_then(|e| e.seq)
        .unwrap_or(after)
        .to_string();
    Ok(HttpResponse::Ok().json(ChangePage {
        changes: entries,
        next,
    }))
}

/// An activity of a contact, as another system sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityRequest {
    /// The contact: `{"id": 42}`, `{"source_id": 3, "external_id": "A1"}` or
    /// `{"email": "ann@example.org"}`. One that matches no contact, or several, is refused.
    /// A token bound to a source reaches only contacts linked to that source: any other is
    /// refused in the words of one that does not exist.
    contact: ContactRef,
    /// call, email, meeting, note, or a type an admin added.
    #[serde(rename = "type")]
    activity_type: String,
    /// RFC 3339 (`2026-11-30T10:00:00Z`); default: now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    /// The sender's own id of the activity: sending it again changes nothing.
    #[serde(default)]
    external_id: String,
    /// The source it comes from, an existing one (a token bound to a source uses its own).
    #[serde(default)]
    source_id: Option<i64>,
    /// Anything else it came with (outcome, duration, caller_id, ...): text, numbers, booleans.
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityAnswer {
    id: i64,
    /// false: the same external id was sent before; nothing changed.
    created: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/activities",
    request_body = ActivityRequest,
    responses(
        (status = 201, description = "Logged", body = ActivityAnswer),
        (status = 200, description = "Sent before with the same external id: nothing changed", body = ActivityAnswer),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such contact (or several, or none of the token's source), source or type", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/activities")]
async fn log_activity(
    state: web::Data<AppState>,
    caller: ApiCaller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use crate::activities::model::{ActivityOrigin, Logged, NewActivity};
    use crate::activities::service::{self as activities, ActivityError};
    caller.require(Scope::ActivitiesWrite)?;
    let body = read_body(payload, MAX_ACTIVITY_BYTES).await?;
    let request: ActivityRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::unprocessable(format!(
            "The body is not an activity ({{\"contact\": {{\"email\": ...}}, \"type\": \"call\", ...}}): {e}."
        ))
    })?;
    let source_id = request.source_id.or(caller.token.source_id);
    if let Some(source) = source_id {
        caller.require_source(source)?;
    }
    let mut attributes = std::collections::BTreeMap::new();
    for (key, value) in request.attributes {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => continue,
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "The attribute '{key}' must be text, a number or true/false."
                )))
            }
        };
        attributes.insert(key, text);
    }
    let token = caller.token.clone();
    let new = NewActivity {
        contact: request.contact,
        activity_type: request.activity_type,
        // Whole seconds, as SQLite keeps them and as the lists' cursors page.
        occurred_at: request
            .occurred_at
            .map(|t| {
                use chrono::SubsecRound;
                t.naive_utc().trunc_subsecs(0)
            })
            .unwrap_or_else(crate::db::now),
        subject: request.subject,
        body: request.body,
        attributes,
        external_id: request.external_id,
        source_id,
        origin: ActivityOrigin::Api,
        origin_label: format!("API token {} ({})", token.name, token.prefix),
        user_id: None,
        sender: match source_id {
            Some(source) => format!("source:{source}"),
            None => format!("token:{}", token.id),
        },
    };
    // A token of one source reaches only the contacts linked to it.
    let within = token.source_id;
    let logged = api_db(&state, move |conn| {
        match activities::log_within(conn, &new, within) {
            Ok(logged) => Ok(logged),
            Err(ActivityError::Invalid(message)) => Err(ApiError::unprocessable(message)),
            Err(ActivityError::Db(e)) => Err(e.into()),
        }
    })
    .await?;
    let (status, created) = match logged {
        Logged::Created(_) => (StatusCode::CREATED, true),
        Logged::AlreadyThere(_) => (StatusCode::OK, false),
    };
    Ok(HttpResponse::build(status).json(ActivityAnswer {
        id: logged.id(),
        created,
    }))
}

/// Largest activity body.
const MAX_ACTIVITY_BYTES: usize = 256 * 1024;
