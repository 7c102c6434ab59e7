//! The API's caller: a bearer token, checked on every request (revocation takes effect at
//! once), with a per-token rate limit. Handlers ask it for the scope and source they need.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use super::model::{ApiToken, Scope};
use super::service;
use crate::AppState;

/// A token bucket per API token: `per_minute` requests, refilled evenly.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the token's bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, token_id: i64) -> Result<(), u64> {
        let capacity = f64::from(self.per_minute.max(1));
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, since) = buckets.entry(token_id).or_insert((capacity, now));
        *tokens = (*tokens + since.elapsed().as_secs_f64() * per_second).min(capacity);
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// The token a request came with.
pub struct ApiCaller {
    pub token: ApiToken,
}

impl ApiCaller {
    /// Refuses (403) a token without `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.token.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "This token may not {}: it lacks the scope '{scope}'.",
                scope.describe()
            )))
        }
    }

    /// Refuses (403) a token restricted to another source.
    pub fn require_source(&self, source_id: i64) -> Result<(), ApiError> {
        match self.token.source_id {
            Some(own) if own != source_id => Err(ApiError::forbidden(format!(
                "This token works for source #{own} only."
            ))),
            _ => Ok(()),
        }
    }
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let unauthorized = |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, detail);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("Send a token: Authorization: Bearer sdk_..."))?
        .to_str()
        .map_err(|_| unauthorized("The Authorization header is not readable text."))?;
    let (scheme, secret) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthorized("The Authorization header must be 'Bearer <token>'."))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "The Authorization header must be 'Bearer <token>'.",
        ));
    }
    Ok(secret.trim().to_string())
}

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let secret = secret?;
            let state = state.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no application state")
            })?;
            let token = state
                .db(move |conn| service::authenticate(conn, &secret))
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "This token is unknown or revoked.",
                    )
                })?;
            if let Err(seconds) = state.api_limits.take(token.id) {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "This token made more than {} requests in a minute: try again in {seconds} s.",
                        state.config.api_requests_per_minute
                    ),
                );
                error.retry_after = Some(seconds);
                return Err(error);
            }
            Ok(ApiCaller { token })
        })
    }
}
