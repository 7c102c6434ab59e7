//! syncdesk: keeps contact and company records in step with external systems and applications.
//!
//! `build_app` is the whole web application; `serve` and the tests both run exactly it.

pub mod activities;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod fields;
pub mod followups;
pub mod home;
pub mod links;
pub mod processes;
pub mod records;
pub mod review;
pub mod rules;
pub mod schema;
pub mod sources;
pub mod stored;
pub mod sync;
pub mod text;
pub mod web;

use std::sync::Arc;

/// Shown in the page footer.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::body::MessageBody;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web as aweb, App};

use crate::config::Config;
use crate::db::{DbConn, DbPool};
use crate::error::AppError;

/// Shared by every request: the pool and the configuration.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub config: Arc<Config>,
    session_key: Key,
    /// Requests per minute per API token.
    pub api_limits: Arc<api::extract::RateLimiter>,
    /// Database work waits here in arrival order (a fair semaphore) instead of as a crowd of
    /// blocking threads racing for the pool's connections on a few cores.
    db_turns: Arc<tokio::sync::Semaphore>,
    /// Fields, sources, follow-up templates and processes as last read.
    pub definitions: Arc<records::definitions::DefinitionsCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("the session key is unusable: {0}")]
    SessionKey(String),
}

impl AppState {
    /// Opens the database, applies pending migrations and loads the session key.
    pub fn open(config: Config) -> Result<Self, StartError> {
        config.ensure_data_dir()?;
        let pool = db::connect(&config.database_url)?;
        let mut conn = pool.get().map_err(db::DbError::from)?;
        db::run_migrations(&mut conn)?;
        // A database from before the search index: its records are indexed once, here.
        let indexed = records::search::fill_missing(&mut conn).map_err(db::DbError::from)?;
        if indexed > 0 {
            tracing::info!(records = indexed, "search index filled");
        }
        let words = records::search::fill_words_if_empty(&mut conn).map_err(db::DbError::from)?;
        if words > 0 {
            tracing::info!(words, "search words kept");
        }
        if records::counts::fill_if_empty(&mut conn).map_err(db::DbError::from)? {
            tracing::info!("list totals counted");
        }
        records::counts::merge_if_many(&mut conn).map_err(db::DbError::from)?;
        if review::totals::fill_if_empty(&mut conn).map_err(db::DbError::from)? {
            tracing::info!("desynchronised totals counted");
        }
        review::totals::merge_if_many(&mut conn).map_err(db::DbError::from)?;
        drop(conn);
        let key_bytes = config.session_key_bytes()?;
        let session_key =
            Key::try_from(&key_bytes[..]).map_err(|e| StartError::SessionKey(e.to_string()))?;
        let api_limits = Arc::new(api::extract::RateLimiter::new(
            config.api_requests_per_minute,
        ));
        // More turns than connections would only move the queue into the pool, unordered.
        let turns = config
            .db_concurrency
            .map_or_else(
                || 2 * std::thread::available_parallelism().map_or(1, usize::from),
                |n| n as usize,
            )
            .min(pool.max_size() as usize);
        Ok(Self {
            pool,
            config: Arc::new(config),
            session_key,
            api_limits,
            db_turns: Arc::new(tokio::sync::Semaphore::new(turns)),
            definitions: Arc::default(),
        })
    }

    /// The session key's bytes, from which other secrets are derived (the connector's
    /// encrypted database URLs).
    pub fn secret(&self) -> Vec<u8> {
        self.session_key.master().to_vec()
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, never on the executor.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let _turn = self.db_turns.acquire().await.map_err(AppError::internal)?;
        aweb::block(move || {
            let mut conn = pool.get().map_err(AppError::from)?;
            f(&mut conn).map_err(Into::into)
        })
        .await?
    }
}

/// The application exactly as `serve` runs it.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let session =
        SessionMiddleware::builder(CookieSessionStore::default(), state.session_key.clone())
            .cookie_name("syncdesk_session".into())
            .cookie_secure(state.config.secure_cookies)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_content_security(CookieContentSecurity::Private)
            .session_lifecycle(PersistentSession::default().session_ttl(CookieDuration::days(7)))
            .build();
    App::new()
        .app_data(aweb::Data::new(state))
        .app_data(aweb::FormConfig::default().limit(web::FORM_LIMIT))
        .wrap(middleware::from_fn(auth::extract::load_signed_in_user))
        .wrap(middleware::from_fn(web::csrf_guard))
        .wrap(middleware::from_fn(web::refuse_control_characters))
        .wrap(middleware::from_fn(web::catch_panics))
        .wrap(middleware::from_fn(web::render_error_pages))
        .wrap(session)
        .wrap(web::security_headers())
        .wrap(tracing_actix_web::TracingLogger::default())
        .service(actix_files::Files::new("/static", web::static_dir()))
        .configure(home::routes)
        .configure(auth::routes::configure)
        .configure(fields::routes::configure)
        .configure(records::routes::configure)
        .configure(sources::routes::configure)
        .configure(sync::routes::configure)
        .configure(sync::feed_routes::configure)
        .configure(processes::routes::configure)
        .configure(links::routes::configure)
        .configure(review::routes::configure)
        .configure(activities::routes::configure)
        .configure(followups::routes::configure)
        .configure(api::routes::configure)
        .configure(api::console::configure)
        .default_service(aweb::to(web::not_found))
}
