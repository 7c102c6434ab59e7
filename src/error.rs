//! The one error type that request code turns into responses.
//!
//! Services return their own errors (or diesel's); handlers convert them with `?`.
//! `web::render_error_pages` then renders the page (or the htmx fragment) for the status.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in: sent to the sign-in page, coming back to `next` afterwards.
    #[error("Please sign in to continue.")]
    SignInRequired { next: Option<String> },
    /// An admin reset this user's password: the password page comes first.
    #[error("Choose a new password to continue.")]
    PasswordChangeRequired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("Something went wrong on our side; it has been logged.")]
    Internal(String),
}

impl AppError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} was not found."))
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::not_found("That item"),
            other => Self::internal(format!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::internal(format!("database pool: {e}"))
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Query(q) => q.into(),
            other => Self::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::internal(format!("blocking task: {e}"))
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        Self::internal(format!("template: {e}"))
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::SignInRequired { .. } | Self::PasswordChangeRequired => StatusCode::SEE_OTHER,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignInRequired { next } => {
                let location = match next {
                    Some(next) => format!("/signin?next={}", crate::text::url_encode(next)),
                    None => "/signin".to_string(),
                };
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .finish()
            }
            Self::PasswordChangeRequired => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/account/password"))
                .finish(),
            Self::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                HttpResponse::InternalServerError().body(self.to_string())
            }
            other => HttpResponse::build(other.status_code()).body(other.to_string()),
        }
    }
}
