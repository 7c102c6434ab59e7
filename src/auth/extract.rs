//! Request guards: a handler names the least role it needs by the extractor it takes.
//!
//! `Guest` (anyone), `SignedIn` (any active user), `EditorUser`, `AdminUser`. Anonymous requests
//! are sent to sign-in; a signed-in user without the role gets the 403 page.

use actix_session::SessionExt;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use actix_web::{web, FromRequest, HttpRequest};

use super::model::{Role, User};
use super::sessions;
use crate::error::AppError;
use crate::web::Ctx;
use crate::AppState;

/// The cookie's session token (see `sessions`).
const SESSION_TOKEN_KEY: &str = "sid";

pub fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal("application state is not configured"))
}

/// Signs the browser in as `user_id`: a new server-side session, in a fresh cookie.
pub async fn start_session(
    state: &AppState,
    session: &actix_session::Session,
    user_id: i64,
) -> Result<(), AppError> {
    let token = state.db(move |conn| sessions::open(conn, user_id)).await?;
    session.renew();
    session
        .insert(SESSION_TOKEN_KEY, token)
        .map_err(AppError::internal)?;
    crate::web::renew_csrf_token(session);
    Ok(())
}

/// The browser's session token, if it has one.
pub fn session_token(session: &actix_session::Session) -> Option<String> {
    session.get::<String>(SESSION_TOKEN_KEY).ok().flatten()
}

/// The user whose live session this request carries, found by `load_signed_in_user`, and the
/// version of the definitions then (`records::definitions`).
#[derive(Clone)]
struct SignedInAs(User, i64);

/// The definitions' version the request saw when its user was found; None without a session.
pub fn definitions_seen(req: &HttpRequest) -> Option<i64> {
    req.extensions()
        .get::<SignedInAs>()
        .map(|SignedInAs(_, version)| *version)
}

/// Middleware: finds the session's user before any extractor runs, so that a role guard
/// answers at once (a wrong-role POST gets 403, whatever its body holds). A session that has
/// ended (signed out elsewhere, idle too long, user deactivated) is cleared here.
pub async fn load_signed_in_user(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !req.path().starts_with("/static/") {
        let session = req.get_session();
        if let Some(token) = session_token(&session) {
            let state = state(req.request())?;
            let idle = chrono::Duration::hours(i64::from(state.config.session_idle_hours));
            let user = state
                .db(move |conn| sessions::user_of(conn, &token, idle, crate::db::now()))
                .await?;
            match user {
                Some((user, definitions_version)) => {
                    req.extensions_mut()
                        .insert(SignedInAs(user, definitions_version));
                }
                None => session.purge(),
            }
        }
    }
    next.call(req).await
}

fn signed_in_user(req: &HttpRequest, needed: Role) -> Result<(User, Ctx), AppError> {
    let next = (req.method() == Method::GET).then(|| {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.path().to_string())
    });
    let Some(SignedInAs(user, _)) = req.extensions().get::<SignedInAs>().cloned() else {
        return Err(AppError::SignInRequired { next });
    };
    // After an admin's reset, only the password page and signing out are open.
    if user.must_change_password && !matches!(req.path(), "/account/password" | "/signout") {
        return Err(AppError::PasswordChangeRequired);
    }
    if user.role() < needed {
        return Err(AppError::Forbidden(format!(
            "This needs the {needed} role; you are signed in as {} with the {} role.",
            user.email,
            user.role()
        )));
    }
    let ctx = Ctx::new(req, &req.get_session(), Some(user.clone()));
    Ok((user, ctx))
}

macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name {
            pub user: User,
            pub ctx: Ctx,
        }

        impl FromRequest for $name {
            type Error = AppError;
            type Future = std::future::Ready<Result<Self, AppError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                std::future::ready(
                    signed_in_user(req, $role).map(|(user, ctx)| $name { user, ctx }),
                )
            }
        }
    };
}

role_guard!(
    /// Any active user (viewers included).
    SignedIn,
    Role::Viewer
);
role_guard!(
    /// Editors and admins.
    EditorUser,
    Role::Editor
);
role_guard!(
    /// Admins only.
    AdminUser,
    Role::Admin
);

/// Anyone, signed in or not: pages such as sign-in and setup.
pub struct Guest {
    pub ctx: Ctx,
}

impl FromRequest for Guest {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.get_session();
        std::future::ready(Ok(Guest {
            ctx: Ctx::new(req, &session, None),
        }))
    }
}

/// Whether the session names a user (without checking the database).
pub fn has_session_user(session: &actix_session::Session) -> bool {
    session_token(session).is_some()
}
