//! The dashboard and the health check.

use actix_web::{get, web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde_json::json;

use crate::auth::extract::SignedIn;
use crate::auth::model::{Role, User};
use crate::auth::service;
use crate::error::AppError;
use crate::fields::model::RecordKind;
use crate::records::list;
use crate::web::{see_other, Ctx};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(dashboard);
}

#[derive(Template, WebTemplate)]
#[template(path = "home/dashboard.html")]
struct Dashboard {
    ctx: Ctx,
    me: User,
    role: Role,
    user_count: i64,
    contacts: list::Total,
    companies: list::Total,
    /// (desynchronised records, fields waiting for a decision)
    desync: crate::review::service::DesyncTotals,
    backend: &'static str,
}

/// The first visit to a new console goes to setup; anonymous visits go to sign-in.
#[get("/")]
async fn dashboard(
    state: web::Data<AppState>,
    me: Result<SignedIn, AppError>,
) -> Result<HttpResponse, AppError> {
    let me = match me {
        Ok(me) => me,
        Err(e) => {
            if state.db(service::user_count).await? == 0 {
                return Ok(see_other("/setup"));
            }
            return Err(e);
        }
    };
    let user_count = state.db(service::user_count).await?;
    let (contacts, companies, desync) = state
        .db(|conn| -> Result<_, AppError> {
            Ok((
                list::count(conn, RecordKind::Contact)?,
                list::count(conn, RecordKind::Company)?,
                crate::review::service::totals(conn, &Default::default())?,
            ))
        })
        .await?;
    let backend = match crate::db::DbTarget::parse(&state.config.database_url) {
        Ok(target) => target.backend_name(),
        Err(_) => "unknown",
    };
    let page = Dashboard {
        role: me.user.role(),
        me: me.user,
        ctx: me.ctx,
        user_count,
        contacts,
        companies,
        desync,
        backend,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// 200 when the database answers, 503 otherwise; for load balancers and monitors.
#[get("/healthz")]
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.db(crate::db::check).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ok", "database": "ok" })),
        Err(e) => {
            tracing::error!(error = ?e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "unavailable", "database": "unreachable" }))
        }
    }
}
