//! Test harness: builds exactly the app `serve` runs, on a fresh database per test.
//!
//! SQLite (a temporary file) by default; with `TEST_DATABASE_URL=postgres://…` each test creates
//! its own PostgreSQL database and drops it afterwards.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use actix_web::body::MessageBody;
use actix_web::cookie::Cookie;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use syncdesk::auth::model::Role;
use syncdesk::auth::service::{self, NewUser};
use syncdesk::config::Config;
use syncdesk::{build_app, AppState};

pub const PASSWORD: &str = "correct horse battery";

/// A database of its own: a SQLite file in a temporary folder, or a PostgreSQL database that is
/// dropped when this value is.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// PostgreSQL when TEST_DATABASE_URL is set, SQLite otherwise.
    pub fn new() -> Self {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) => Self::postgres(&admin_url),
            None => Self::sqlite(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            dir,
            pg_drop: None,
        }
    }

    /// A new database on the server of `admin_url`, dropped with this value.
    pub fn postgres(admin_url: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let name = format!("syncdesk_test_{}", &syncdesk::web::random_token()[..16]);
        let mut admin = diesel::PgConnection::establish(admin_url)
            .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        TestDb {
            url: replace_database(admin_url, &name),
            dir,
            pg_drop: Some((admin_url.to_string(), name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_drop.is_some()
    }

    /// The name of its PostgreSQL database (None on SQLite).
    pub fn pg_database(&self) -> Option<&str> {
        self.pg_drop.as_ref().map(|(_, name)| name.as_str())
    }

    pub fn config(&self) -> Config {
        Config {
            bind: "127.0.0.1:0".into(),
            database_url: self.url.clone(),
            data_dir: self.dir.path().join("data"),
            session_key: Some("ab".repeat(64)),
            secure_cookies: false,
            default_country: syncdesk::fields::validate::PhoneCountry::parse("FR")
                .expect("country"),
            max_upload_bytes: 1024 * 1024,
            max_import_bytes: 1024 * 1024,
            session_idle_hours: syncdesk::config::DEFAULT_SESSION_IDLE_HOURS,
            api_requests_per_minute: syncdesk::config::DEFAULT_API_REQUESTS_PER_MINUTE,
            feed_retention_days: syncdesk::config::DEFAULT_FEED_RETENTION_DAYS,
            db_concurrency: None,
            webhooks_allow_private: false,
            trusted_proxies: vec!["127.0.0.9".parse().expect("proxy")],
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.pg_drop {
            if let Ok(mut admin) = diesel::PgConnection::establish(admin_url) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// The PostgreSQL server of tests that need one even on a SQLite run: TEST_DATABASE_URL (a
/// server that fails to answer then fails the test), or else the local server every machine
/// of this kind runs; None, and the test is skipped, when neither is there.
pub fn pg_admin_url() -> Option<String> {
    use diesel::Connection;
    if let Some(explicit) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Some(explicit);
    }
    let local = "postgres://postgres@127.0.0.1:5432/test";
    if diesel::PgConnection::establish(local).is_err() {
        eprintln!("skipped: no PostgreSQL at {local} and TEST_DATABASE_URL is not set");
        return None;
    }
    Some(local.to_string())
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    format!("{}/{}{}", &base[..cut], name, query)
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body:\n{}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn assert_redirect(&self, to: &str) -> &Self {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "body:\n{}", self.body);
        assert_eq!(self.location(), Some(to));
        self
    }

    #[track_caller]
    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(
            self.body.contains(text),
            "expected {text:?} in body:\n{}",
            self.body
        );
        self
    }
}

/// One browser: a cookie jar and the last CSRF token seen in a page.
pub struct TestApp<S> {
    pub svc: Rc<S>,
    pub state: AppState,
    cookies: HashMap<String, String>,
    pub csrf: Option<String>,
    pub peer: SocketAddr,
    pub db: Rc<TestDb>,
}

pub async fn spawn() -> TestApp<
    impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
> {
    let db = TestDb::new();
    let state = AppState::open(db.config()).expect("app state");
    let svc = test::init_service(build_app(state.clone())).await;
    TestApp {
        svc: Rc::new(svc),
        state,
        cookies: HashMap::new(),
        csrf: None,
        peer: "127.0.0.1:40000".parse().expect("address"),
        db: Rc::new(db),
    }
}

impl<S> TestApp<S> {
    /// A copy of this browser's cookies in another browser (a stolen or copied cookie).
    pub fn copy_cookies(&self) -> Self {
        let mut copy = self.fork();
        copy.cookies = self.cookies.clone();
        copy.csrf = self.csrf.clone();
        copy
    }

    /// Another browser (its own cookies) on the same app and database.
    pub fn fork(&self) -> Self {
        TestApp {
            svc: Rc::clone(&self.svc),
            state: self.state.clone(),
            cookies: HashMap::new(),
            csrf: None,
            peer: self.peer,
            db: Rc::clone(&self.db),
        }
    }
}

impl<S, B> TestApp<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    pub async fn send(&mut self, req: TestRequest) -> Response {
        let mut req = req.peer_addr(self.peer);
        for (name, value) in &self.cookies {
            req = req.cookie(Cookie::new(name.clone(), value.clone()));
        }
        let res = test::call_service(&*self.svc, req.to_request()).await;
        for cookie in res.response().cookies() {
            let removed = cookie
                .max_age()
                .is_some_and(|a| a.is_zero() || a.is_negative())
                || cookie.value().is_empty();
            if removed {
                self.cookies.remove(cookie.name());
            } else {
                self.cookies
                    .insert(cookie.name().to_string(), cookie.value().to_string());
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = test::read_body(res).await;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(token) = meta_csrf(&body) {
            self.csrf = Some(token);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        self.send(TestRequest::get().uri(path)).await
    }

    /// An htmx request (with the header htmx sends, and the CSRF header for non-GET).
    pub async fn htmx(&mut self, method: Method, path: &str) -> Response {
        let mut req = TestRequest::default()
            .method(method)
            .uri(path)
            .insert_header(("HX-Request", "true"));
        if let Some(token) = &self.csrf {
            req = req.insert_header(("X-CSRF-Token", token.clone()));
        }
        self.send(req).await
    }

    /// A form post as htmx sends it: the CSRF token in its header.
    pub async fn htmx_form(&mut self, path: &str, fields: &[(String, String)]) -> Response {
        let token = self.csrf.clone().unwrap_or_default();
        self.send(
            TestRequest::post()
                .uri(path)
                .insert_header(("HX-Request", "true"))
                .insert_header(("X-CSRF-Token", token))
                .set_form(fields),
        )
        .await
    }

    /// A form post exactly as given (no token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let body = serde_urlencoded::to_string(fields).expect("form");
        self.send(
            TestRequest::post()
                .uri(path)
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(body),
        )
        .await
    }

    /// A form post with the CSRF token of the current session (fetching a page first if needed).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        if self.csrf.is_none() {
            self.get("/signin").await;
        }
        let token = self.csrf.clone().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// A file upload as a browser sends it (the form's token is its first field).
    pub async fn upload(
        &mut self,
        path: &str,
        filename: &str,
        bytes: &[u8],
        with_token: bool,
    ) -> Response {
        let boundary = "----syncdesk-test-boundary";
        let mut body = Vec::new();
        // The form's token comes first, as the console's upload forms send it.
        if let (Some(token), true) = (&self.csrf, with_token) {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let uri = path.to_string();
        self.send(
            TestRequest::post()
                .uri(&uri)
                .insert_header((
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                ))
                .set_payload(body),
        )
        .await
    }

    /// Creates a user directly through the service (as `syncdesk user create` does).
    pub fn create_user(&self, email: &str, role: Role) -> i64 {
        let mut conn = self.state.pool.get().expect("connection");
        service::create_user(
            &mut conn,
            &NewUser {
                email: email.into(),
                display_name: String::new(),
                password: PASSWORD.into(),
                role,
            },
        )
        .expect("create user")
        .id
    }

    /// Signs in; on success, follows the redirect as a browser would (picking up the new token).
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Response {
        self.get("/signin").await;
        let res = self
            .post("/signin", &[("email", email), ("password", password)])
            .await;
        if let Some(to) = res.location().filter(|_| res.status.as_u16() == 303) {
            let to = to.to_string();
            self.get(&to).await;
        }
        res
    }

    /// Creates a user with `role` and signs in as them.
    pub async fn signed_in_as(&mut self, email: &str, role: Role) {
        self.create_user(email, role);
        self.sign_in(email, PASSWORD).await.assert_redirect("/");
    }

    pub async fn sign_out(&mut self) {
        self.post("/signout", &[]).await.assert_redirect("/signin");
        self.csrf = None;
    }
}

fn meta_csrf(body: &str) -> Option<String> {
    let start =
        body.find("name=\"csrf-token\" content=\"")? + "name=\"csrf-token\" content=\"".len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

/// A delta-mode contact source keyed by `id_column`, nothing else set: tests change what they
/// need with `..contacts_by(...)`.
pub fn contacts_by(name: &str, id_column: &str) -> syncdesk::sources::service::SourceInput {
    syncdesk::sources::service::SourceInput {
        name: name.into(),
        kind: syncdesk::fields::model::RecordKind::Contact,
        id_column: id_column.into(),
        match_by: Vec::new(),
        full_mode: false,
        country: String::new(),
        watch_dir: String::new(),
        activities: None,
    }
}
