//! A source's outbound feed page: the latest changes sent, the held ones (rule `review`) to
//! approve or drop, and its webhook with its deliveries.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;

use super::feed::{self, FeedEntry};
use super::webhooks::{self, Delivery, Webhook, WebhookError};
use crate::auth::extract::{AdminUser, SignedIn};
use crate::error::AppError;
use crate::sources::model::Source;
use crate::sources::service as sources;
use crate::web::{flash, render, see_other, Ctx};
use crate::AppState;

const LATEST: i64 = 50;
const HELD: i64 = 200;
const DELIVERIES: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(feed_page)
        .service(decide_held)
        .service(set_webhook)
        .service(remove_webhook)
        .service(retry_delivery);
}

impl From<WebhookError> for AppError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => AppError::BadRequest(m),
            WebhookError::Db(db) => db.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "sync/feed.html")]
struct FeedPage {
    ctx: Ctx,
    source: Source,
    latest: Vec<FeedEntry>,
    held: Vec<FeedEntry>,
    webhook: Option<Webhook>,
    deliveries: Vec<Delivery>,
    /// A webhook secret just made: shown on this page only.
    new_secret: Option<String>,
    error: Option<String>,
    is_admin: bool,
}

struct FeedData {
    source: Source,
    latest: Vec<FeedEntry>,
    held: Vec<FeedEntry>,
    webhook: Option<Webhook>,
    deliveries: Vec<Delivery>,
}

fn load(conn: &mut crate::db::DbConn, id: i64) -> Result<FeedData, AppError> {
    let source = sources::find(conn, id)?.ok_or_else(|| AppError::not_found("That source"))?;
    feed::sequence(conn)?;
    Ok(FeedData {
        latest: feed::latest(conn, id, LATEST)?,
        held: feed::held(conn, id, HELD)?,
        webhook: webhooks::find(conn, id)?,
        deliveries: webhooks::deliveries(conn, id, DELIVERIES)?,
        source,
    })
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    id: i64,
    new_secret: Option<String>,
    error: Option<String>,
) -> Result<FeedPage, AppError> {
    let is_admin = ctx.is_admin();
    let data = state.db(move |conn| load(conn, id)).await?;
    Ok(FeedPage {
        ctx,
        source: data.source,
        latest: data.latest,
        held: data.held,
        webhook: data.webhook,
        deliveries: data.deliveries,
        new_secret,
        error,
        is_admin,
    })
}

#[get("/sources/{id}/feed")]
async fn feed_page(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let page = page(&state, me.ctx, path.into_inner(), None, None).await?;
    render(StatusCode::OK, &page)
}

/// Approve (into the feed) or drop the held changes ticked on the page.
#[post("/sources/{id}/feed/held")]
async fn decide_held(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let approve = match form
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str())
    {
        Some("approve") => true,
        Some("drop") => false,
        _ => return Err(AppError::BadRequest("Choose approve or drop.".into())),
    };
    let ids: Vec<i64> = form
        .iter()
        .filter(|(k, _)| k == "change")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    if ids.is_empty() {
        flash(&session, "Tick the changes to approve or drop first.");
        return Ok(see_other(&format!("/sources/{id}/feed")));
    }
    let by = admin.user.display_name.clone();
    let decided = state
        .db(move |conn| feed::decide(conn, id, &ids, approve, &by))
        .await?;
    flash(
        &session,
        if approve {
            format!("{decided} change(s) approved: they are in the feed now.")
        } else {
            format!("{decided} change(s) dropped: they will never be sent.")
        },
    );
    Ok(see_other(&format!("/sources/{id}/feed")))
}

#[post("/sources/{id}/webhook")]
async fn set_webhook(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let url = form
        .iter()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let settings = webhooks::Settings::new(&state.secret(), state.config.webhooks_allow_private);
    let result = state
        .db(move |conn| Ok::<_, AppError>(webhooks::set(conn, id, &url, &settings)))
        .await?;
    let (status, page) = match result {
        Ok(secret) => (
            StatusCode::OK,
            page(&state, admin.ctx, id, Some(secret), None).await?,
        ),
        Err(WebhookError::Invalid(message)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            page(&state, admin.ctx, id, None, Some(message)).await?,
        ),
        Err(e) => return Err(e.into()),
    };
    render(status, &page)
}

#[post("/sources/{id}/webhook/remove")]
async fn remove_webhook(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    state.db(move |conn| webhooks::remove(conn, id)).await?;
    flash(
        &session,
        "The webhook is removed: nothing more is sent to it.",
    );
    Ok(see_other(&format!("/sources/{id}/feed")))
}

#[post("/sources/{id}/deliveries/{delivery}/retry")]
async fn retry_delivery(
    state: web::Data<AppState>,
    _admin: AdminUser,
    session: Session,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, AppError> {
    let (id, delivery) = path.into_inner();
    state
        .db(move |conn| webhooks::retry(conn, id, delivery))
        .await?;
    flash(
        &session,
        format!("Delivery #{delivery} will be tried again now."),
    );
    Ok(see_other(&format!("/sources/{id}/feed")))
}
