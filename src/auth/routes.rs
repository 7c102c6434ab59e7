//! Setup, sign-in/out, own password, and the users page.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::extract::{self, AdminUser, Guest, SignedIn};
use super::model::{Role, User};
use super::service::{self, AuthError, NewUser, MIN_PASSWORD_LEN};
use super::sessions;
use crate::error::AppError;
use crate::web::{client_address, flash, render, safe_next, see_other, Ctx};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(setup_page)
        .service(setup_submit)
        .service(signin_page)
        .service(signin_submit)
        .service(signout)
        .service(password_page)
        .service(password_submit)
        .service(users_page)
        .service(new_user_page)
        .service(create_user)
        .service(change_role)
        .service(change_active)
        .service(sign_out_everywhere)
        .service(reset_password);
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Db(db) => db.into(),
            AuthError::Hash(cause) => AppError::internal(cause),
            AuthError::NoSuchUser => AppError::NotFound(e.to_string()),
            AuthError::Throttled { .. } => AppError::TooManyRequests(e.to_string()),
            AuthError::SetupDone | AuthError::LastAdmin(_) | AuthError::EmailTaken(_) => {
                AppError::Conflict(e.to_string())
            }
            AuthError::InvalidCredentials | AuthError::WrongPassword | AuthError::Invalid(_) => {
                AppError::BadRequest(e.to_string())
            }
        }
    }
}

/// A form page shown again with the error, with the status that fits it.
fn form_error_status(e: &AuthError) -> Option<StatusCode> {
    match e {
        AuthError::Invalid(_) | AuthError::WrongPassword => Some(StatusCode::UNPROCESSABLE_ENTITY),
        AuthError::InvalidCredentials => Some(StatusCode::UNAUTHORIZED),
        AuthError::Throttled { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
        AuthError::EmailTaken(_) => Some(StatusCode::CONFLICT),
        _ => None,
    }
}

// ---- first-run setup -------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "auth/setup.html")]
struct SetupPage {
    ctx: Ctx,
    email: String,
    display_name: String,
    error: Option<String>,
    min_password: usize,
}

#[derive(Deserialize)]
struct SetupForm {
    email: String,
    #[serde(default)]
    display_name: String,
    password: String,
    password_confirmation: String,
}

async fn setup_still_open(state: &AppState) -> Result<bool, AppError> {
    Ok(state.db(service::user_count).await? == 0)
}

fn setup_done() -> AppError {
    AppError::NotFound(
        "First-run setup is done: the first admin exists. Sign in, or ask an admin for an account."
            .into(),
    )
}

#[get("/setup")]
async fn setup_page(state: web::Data<AppState>, guest: Guest) -> Result<SetupPage, AppError> {
    if !setup_still_open(&state).await? {
        return Err(setup_done());
    }
    Ok(SetupPage {
        ctx: guest.ctx,
        email: String::new(),
        display_name: String::new(),
        error: None,
        min_password: MIN_PASSWORD_LEN,
    })
}

#[post("/setup")]
async fn setup_submit(
    state: web::Data<AppState>,
    guest: Guest,
    session: Session,
    // Read after the check: once set-up is done the page is gone (404), whatever was sent.
    form: Result<web::Form<SetupForm>, actix_web::Error>,
) -> Result<HttpResponse, AppError> {
    if !setup_still_open(&state).await? {
        return Err(setup_done());
    }
    let form = form
        .map_err(|e| AppError::BadRequest(e.to_string()))?
        .into_inner();
    let page = |error: String| SetupPage {
        ctx: guest.ctx.clone(),
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        error: Some(error),
        min_password: MIN_PASSWORD_LEN,
    };
    if form.password != form.password_confirmation {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &page("The password and its confirmation differ.".into()),
        );
    }
    let new = NewUser {
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        password: form.password.clone(),
        role: Role::Admin,
    };
    match state
        .db(move |conn| Ok::<_, AppError>(service::create_first_admin(conn, &new)))
        .await?
    {
        Ok(user) => {
            extract::start_session(&state, &session, user.id).await?;
            flash(
                &session,
                format!(
                    "Welcome, {}. You are the first admin of syncdesk.",
                    user.display_name
                ),
            );
            Ok(see_other("/"))
        }
        Err(AuthError::SetupDone) => Err(setup_done()),
        Err(e) => match form_error_status(&e) {
            Some(status) => render(status, &page(e.to_string())),
            None => Err(e.into()),
        },
    }
}

// ---- sign in / out ---------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "auth/signin.html")]
struct SigninPage {
    ctx: Ctx,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct SigninQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct SigninForm {
    email: String,
    password: String,
    next: Option<String>,
}

#[get("/signin")]
async fn signin_page(
    state: web::Data<AppState>,
    guest: Guest,
    session: Session,
    query: web::Query<SigninQuery>,
) -> Result<HttpResponse, AppError> {
    if setup_still_open(&state).await? {
        return Ok(see_other("/setup"));
    }
    if extract::has_session_user(&session) {
        return Ok(see_other(&safe_next(query.next.as_deref())));
    }
    render(
        StatusCode::OK,
        &SigninPage {
            ctx: guest.ctx,
            email: String::new(),
            next: safe_next(query.next.as_deref()),
            error: None,
        },
    )
}

#[post("/signin")]
async fn signin_submit(
    state: web::Data<AppState>,
    guest: Guest,
    session: Session,
    req: HttpRequest,
    form: web::Form<SigninForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    let address = client_address(&req);
    let (email, password) = (form.email.clone(), form.password);
    let outcome = state
        .db(move |conn| {
            Ok::<_, AppError>(service::authenticate(
                conn,
                &email,
                &password,
                &address,
                crate::db::now(),
            ))
        })
        .await?;
    match outcome {
        Ok(user) => {
            tracing::info!(user = %user.email, "signed in");
            extract::start_session(&state, &session, user.id).await?;
            Ok(see_other(&next))
        }
        Err(e) => {
            let Some(status) = form_error_status(&e) else {
                return Err(e.into());
            };
            tracing::warn!(email = %form.email, reason = %e, "sign-in refused");
            render(
                status,
                &SigninPage {
                    ctx: guest.ctx,
                    email: form.email,
                    next,
                    error: Some(e.to_string()),
                },
            )
        }
    }
}

#[post("/signout")]
async fn signout(state: web::Data<AppState>, session: Session) -> Result<HttpResponse, AppError> {
    if let Some(token) = extract::session_token(&session) {
        // The session ends on the server: a copy of this cookie opens nothing either.
        state.db(move |conn| sessions::end(conn, &token)).await?;
    }
    session.purge();
    Ok(see_other("/signin"))
}

// ---- own password ----------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "auth/password.html")]
struct PasswordPage {
    ctx: Ctx,
    error: Option<String>,
    min_password: usize,
    /// An admin reset the password: the page says why it comes first.
    must_change: bool,
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    new_password_confirmation: String,
}

#[get("/account/password")]
async fn password_page(me: SignedIn) -> PasswordPage {
    PasswordPage {
        ctx: me.ctx,
        error: None,
        min_password: MIN_PASSWORD_LEN,
        must_change: me.user.must_change_password,
    }
}

#[post("/account/password")]
async fn password_submit(
    state: web::Data<AppState>,
    me: SignedIn,
    session: Session,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let user_id = me.user.id;
    let keep = extract::session_token(&session);
    let outcome = state
        .db(move |conn| {
            Ok::<_, AppError>(service::change_password(
                conn,
                user_id,
                &form.current_password,
                &form.new_password,
                &form.new_password_confirmation,
                keep.as_deref(),
            ))
        })
        .await?;
    match outcome {
        Ok(ended) => {
            flash(
                &session,
                if ended > 0 {
                    format!(
                        "Your password has been changed; {ended} other session(s) were signed out."
                    )
                } else {
                    "Your password has been changed.".to_string()
                },
            );
            Ok(see_other("/"))
        }
        Err(e) => match form_error_status(&e) {
            Some(status) => render(
                status,
                &PasswordPage {
                    ctx: me.ctx,
                    error: Some(e.to_string()),
                    min_password: MIN_PASSWORD_LEN,
                    must_change: me.user.must_change_password,
                },
            ),
            None => Err(e.into()),
        },
    }
}

// ---- users (admin) ---------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "auth/users.html")]
struct UsersPage {
    ctx: Ctx,
    me: User,
    users: Vec<User>,
    roles: [Role; 3],
    active_admins: usize,
}

#[get("/users")]
async fn users_page(state: web::Data<AppState>, admin: AdminUser) -> Result<UsersPage, AppError> {
    let users = state.db(service::list_users).await?;
    let active_admins = users
        .iter()
        .filter(|u| u.active && u.role() == Role::Admin)
        .count();
    Ok(UsersPage {
        ctx: admin.ctx,
        me: admin.user,
        users,
        roles: Role::ALL,
        active_admins,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/user_new.html")]
struct NewUserPage {
    ctx: Ctx,
    email: String,
    display_name: String,
    role: Role,
    roles: [Role; 3],
    error: Option<String>,
    min_password: usize,
}

#[derive(Deserialize)]
struct NewUserForm {
    email: String,
    #[serde(default)]
    display_name: String,
    role: String,
    password: String,
}

#[get("/users/new")]
async fn new_user_page(admin: AdminUser) -> NewUserPage {
    NewUserPage {
        ctx: admin.ctx,
        email: String::new(),
        display_name: String::new(),
        role: Role::Editor,
        roles: Role::ALL,
        error: None,
        min_password: MIN_PASSWORD_LEN,
    }
}

#[post("/users")]
async fn create_user(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    form: web::Form<NewUserForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let role = Role::parse(&form.role);
    let page = |error: String| NewUserPage {
        ctx: admin.ctx.clone(),
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        role: role.unwrap_or(Role::Editor),
        roles: Role::ALL,
        error: Some(error),
        min_password: MIN_PASSWORD_LEN,
    };
    let Some(role) = role else {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &page(format!(
                "'{}' is not a role: choose admin, editor or viewer.",
                form.role
            )),
        );
    };
    let new = NewUser {
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        password: form.password.clone(),
        role,
    };
    match state
        .db(move |conn| Ok::<_, AppError>(service::create_user(conn, &new)))
        .await?
    {
        Ok(user) => {
            tracing::info!(by = %admin.user.email, user = %user.email, role = %role, "user created");
            flash(
                &session,
                format!("{} can now sign in as {}.", user.email, role),
            );
            Ok(see_other("/users"))
        }
        Err(e) => match form_error_status(&e) {
            Some(status) => render(status, &page(e.to_string())),
            None => Err(e.into()),
        },
    }
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

#[post("/users/{id}/role")]
async fn change_role(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = path.into_inner();
    let role = Role::parse(&form.role).ok_or_else(|| {
        AppError::BadRequest(format!(
            "'{}' is not a role: choose admin, editor or viewer.",
            form.role
        ))
    })?;
    let user = state
        .db(move |conn| service::set_role(conn, user_id, role))
        .await?;
    tracing::info!(by = %admin.user.email, user = %user.email, role = %role, "role changed");
    flash(&session, format!("{} is now {}.", user.email, role));
    // Admins who step down can no longer see the users page.
    let back = if user.id == admin.user.id && role != Role::Admin {
        "/"
    } else {
        "/users"
    };
    Ok(see_other(back))
}

#[derive(Deserialize)]
struct ActiveForm {
    active: bool,
}

#[post("/users/{id}/active")]
async fn change_active(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ActiveForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = path.into_inner();
    let active = form.active;
    let user = state
        .db(move |conn| service::set_active(conn, user_id, active))
        .await?;
    tracing::info!(by = %admin.user.email, user = %user.email, active, "activation changed");
    if user.id == admin.user.id && !active {
        session.purge();
        return Ok(see_other("/signin"));
    }
    let what = if active {
        "reactivated"
    } else {
        "deactivated: they can no longer sign in"
    };
    flash(&session, format!("{} is {what}.", user.email));
    Ok(see_other("/users"))
}

/// Ends every session of a user (a lost laptop, a shared password): they sign in again.
#[post("/users/{id}/signout-everywhere")]
async fn sign_out_everywhere(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let user_id = path.into_inner();
    let ended = state
        .db(move |conn| service::sign_out_everywhere(conn, user_id))
        .await?;
    tracing::info!(by = %admin.user.email, user_id, ended, "signed out everywhere");
    if user_id == admin.user.id {
        session.purge();
        return Ok(see_other("/signin"));
    }
    flash(&session, format!("{ended} session(s) ended."));
    Ok(see_other("/users"))
}

#[derive(Deserialize)]
struct ResetForm {
    password: String,
}

/// Sets a temporary password to hand over; the user replaces it at their next sign-in.
#[post("/users/{id}/password")]
async fn reset_password(
    state: web::Data<AppState>,
    admin: AdminUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = path.into_inner();
    let password = form.into_inner().password;
    let outcome = state
        .db(move |conn| Ok::<_, AppError>(service::reset_password(conn, user_id, &password)))
        .await?;
    match outcome {
        Ok(user) => {
            tracing::info!(by = %admin.user.email, user = %user.email, "password reset");
            flash(
                &session,
                format!(
                    "The password of {} is reset and their sessions ended. Give them the temporary password: they choose their own at their next sign-in.",
                    user.email
                ),
            );
        }
        Err(AuthError::Invalid(message)) => {
            flash(&session, format!("The password was not reset: {message}"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/users"))
}
