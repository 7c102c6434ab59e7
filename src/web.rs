//! Pieces every page shares: the page context, CSRF, security headers, error pages.

use std::path::PathBuf;

use actix_session::{Session, SessionExt};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::auth::model::{Role, User};
use crate::error::AppError;

pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "X-CSRF-Token";
const CSRF_SESSION_KEY: &str = "csrf";
const FLASH_SESSION_KEY: &str = "flash";

/// What the layout needs on every page.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: Option<User>,
    pub csrf: String,
    /// The request path, to mark the current navigation entry.
    pub path: String,
    pub flash: Option<String>,
}

impl Ctx {
    pub fn new(req: &HttpRequest, session: &Session, user: Option<User>) -> Self {
        Self {
            user,
            csrf: csrf_token(session),
            path: req.path().to_string(),
            flash: session
                .remove_as::<String>(FLASH_SESSION_KEY)
                .and_then(Result::ok),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role() == Role::Admin)
    }

    /// `aria-current` for the navigation entry under `prefix`.
    pub fn current(&self, prefix: &str) -> &'static str {
        let here = if prefix == "/" {
            self.path == "/"
        } else {
            self.path.starts_with(prefix)
        };
        if here {
            "page"
        } else {
            "false"
        }
    }
}

/// The session's CSRF token, made on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF_SESSION_KEY) {
        return token;
    }
    renew_csrf_token(session)
}

/// A new token, e.g. at sign-in, so a token seen before sign-in is worthless after it.
pub fn renew_csrf_token(session: &Session) -> String {
    let token = random_token();
    // A failed insert only means the next form post is refused and the page asks for a reload.
    let _ = session.insert(CSRF_SESSION_KEY, &token);
    token
}

/// A message shown once on the next page.
pub fn flash(session: &Session, message: impl Into<String>) {
    let _ = session.insert(FLASH_SESSION_KEY, message.into());
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses every state-changing request without the session's token, sent either in the
/// `X-CSRF-Token` header (htmx) or in the `csrf_token` field of a url-encoded form.
pub async fn csrf_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // The JSON API authenticates with bearer tokens, not cookies, so it needs no CSRF token.
    if safe || req.path().starts_with("/api/") {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let expected = req
        .get_session()
        .get::<String>(CSRF_SESSION_KEY)
        .ok()
        .flatten();
    let mut provided = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // A file upload's body is not buffered: its form sends the token as its first field, read
    // here from the body's first bytes, which are then put back in front of the rest.
    if provided.is_none() && content_type.starts_with("multipart/form-data") {
        use actix_web::HttpMessage;
        use futures_util::StreamExt;
        let mut rest = req.take_payload();
        let mut head = web::BytesMut::new();
        while head.len() < MULTIPART_TOKEN_WITHIN && multipart_token(&head).is_none() {
            match rest.next().await {
                Some(chunk) => {
                    let chunk: web::Bytes = chunk?;
                    head.extend_from_slice(&chunk);
                }
                None => break,
            }
        }
        provided = multipart_token(&head);
        let head = futures_util::stream::once(std::future::ready(Ok(head.freeze())));
        req.set_payload(Payload::Stream {
            payload: Box::pin(head.chain(rest)),
        });
    }
    if provided.is_none() && content_type.starts_with("application/x-www-form-urlencoded") {
        let body = req.extract::<web::Bytes>().await?;
        provided = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .ok()
            .and_then(|fields| fields.into_iter().find(|(k, _)| k == CSRF_FIELD))
            .map(|(_, v)| v);
        // Put the body back for the handler's own form extractor.
        req.set_payload(Payload::from(body));
    }
    match (expected, provided) {
        (Some(expected), Some(provided))
            if constant_time_eq(expected.as_bytes(), provided.as_bytes()) =>
        {
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        _ => Ok(req
            .error_response(AppError::Forbidden(
                "This form could not be accepted: its security token is missing or out of date. \
                 Reload the page and try again."
                    .into(),
            ))
            .map_into_right_body()),
    }
}

/// Largest url-encoded form the console reads (its `FormConfig` limit).
pub const FORM_LIMIT: usize = 64 * 1024;

/// Refuses a request holding a stray control character (NUL and the other C0 controls but
/// tab and line breaks, DEL, C1), raw or percent-encoded, in its path, its query string, a
/// url-encoded form or a JSON body: 400 naming the parameter on the console, a 422 problem
/// under `/api/`. Once here, so no handler or database (PostgreSQL text holds no NUL) sees
/// one. Bodies are read up to their route's limit at most; multipart uploads are left to
/// their readers (an import judges its file's bytes itself).
pub async fn refuse_control_characters(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    use crate::text::{self, Stray};
    let api = req.path().starts_with("/api/");
    let mut found = text::stray_in_path(req.path())
        .map(Stray::Path)
        .or_else(|| text::stray_in_urlencoded(req.query_string().as_bytes()));
    if found.is_none() {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let form = content_type.starts_with("application/x-www-form-urlencoded");
        let json = content_type.starts_with("application/json") || content_type.contains("+json");
        // The API reads every body as JSON, whatever its content type says. Without a
        // token it refuses before reading one, so nothing is read for it here either.
        let api_body = api
            && !content_type.starts_with("multipart/")
            && req.headers().contains_key(header::AUTHORIZATION);
        if api_body || (!api && (form || json)) {
            let limit = if api {
                crate::api::routes::MAX_BODY_BYTES
            } else {
                FORM_LIMIT
            };
            let Some(body) = read_limited(&mut req, limit).await? else {
                return Ok(if api {
                    req.error_response(crate::api::error::ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "The body is larger than {limit} bytes: send fewer rows per request."
                        ),
                    ))
                } else {
                    req.error_response(AppError::PayloadTooLarge(format!(
                        "The form is larger than {} KB.",
                        limit / 1024
                    )))
                }
                .map_into_right_body());
            };
            found = if form && !api {
                text::stray_in_urlencoded(&body)
            } else {
                text::stray_in_json(&body)
            };
            // Put the body back for the next reader.
            req.set_payload(Payload::from(body));
        }
    }
    let Some(found) = found else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let (place, c) = match found {
        Stray::Path(c) => ("The address".to_string(), c),
        Stray::Parameter(name, c) => (format!("'{name}'"), c),
        Stray::Body(c) => ("The body".to_string(), c),
    };
    let message = format!(
        "{place} holds a control character (U+{:04X}), which no value may hold: remove it and \
         send again.",
        u32::from(c)
    );
    Ok(if api {
        req.error_response(crate::api::error::ApiError::unprocessable(message))
    } else {
        req.error_response(AppError::BadRequest(message))
    }
    .map_into_right_body())
}

/// The request body, or None when it passes `limit` bytes (said by its length before any is
/// read, or found while reading, which then stops).
async fn read_limited(
    req: &mut ServiceRequest,
    limit: usize,
) -> Result<Option<web::Bytes>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut payload = req.take_payload();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// A panic in a handler (or a middleware inside this one) answers 500 with the error page,
/// or a problem under `/api/`, and logs its message; the worker goes on serving the other
/// connections. Without this the panic would end the worker and every connection on it.
pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use futures_util::FutureExt;
    // Routing needs the request to itself (no clone of it may live on), so the answer is
    // made from what is known now, and goes out as an error (`Panicked`).
    let answer = Panicked {
        api: req.path().starts_with("/api/"),
        htmx: req.headers().contains_key("HX-Request"),
        path: req.path().to_string(),
    };
    let method = req.method().clone();
    match std::panic::AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .await
    {
        Ok(res) => res,
        Err(panic) => {
            tracing::error!(
                panic = panic_message(panic.as_ref()),
                %method,
                path = %answer.path,
                "request handler panicked"
            );
            Err(answer.into())
        }
    }
}

/// The 500 of a panicked request, whole in itself (the middlewares around it see an error,
/// not a response): the error page or problem, with the security headers.
#[derive(Debug, thiserror::Error)]
#[error("a request handler panicked")]
struct Panicked {
    api: bool,
    htmx: bool,
    path: String,
}

impl actix_web::ResponseError for Panicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let message = AppError::internal("").to_string();
        let mut builder = HttpResponse::build(status);
        for (name, value) in SECURITY_HEADERS {
            builder.insert_header((name, value));
        }
        if self.api {
            let problem = crate::api::error::Problem {
                kind: "about:blank",
                title: "Internal Server Error",
                status: status.as_u16(),
                detail: message,
            };
            return builder
                .content_type("application/problem+json")
                .body(serde_json::to_string(&problem).unwrap_or_default());
        }
        error_html(
            builder,
            status,
            self.htmx,
            || Ctx {
                user: None,
                csrf: String::new(),
                path: self.path.clone(),
                flash: None,
            },
            message,
        )
    }
}

/// What a panic said, when it said it as text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Where an upload form's token must be: its first field, in the body's first bytes.
const MULTIPART_TOKEN_WITHIN: usize = 8 * 1024;

/// The value of a multipart body's `csrf_token` field, once the bytes hold all of it.
fn multipart_token(head: &[u8]) -> Option<String> {
    let name = format!("name=\"{CSRF_FIELD}\"");
    let at = head
        .windows(name.len())
        .position(|w| w == name.as_bytes())?;
    let after = &head[at..];
    let start = after.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let value = &after[start..];
    let end = value.windows(2).position(|w| w == b"\r\n")?;
    std::str::from_utf8(&value[..end]).ok().map(str::to_string)
}

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
];

/// Sent with every response.
pub fn security_headers() -> DefaultHeaders {
    SECURITY_HEADERS
        .into_iter()
        .fold(DefaultHeaders::new(), |headers, pair| headers.add(pair))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: Ctx,
    status: u16,
    title: &'a str,
    message: String,
}

#[derive(Template)]
#[template(path = "error.html", block = "message")]
struct ErrorFragment<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

pub fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request")
}

/// Renders handler and extractor errors as pages, or as fragments for htmx requests (shown in
/// the page's message area, since htmx would otherwise put them where the content should go).
pub async fn render_error_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let Some(error) = res.response().error() else {
        return Ok(res.map_into_boxed_body());
    };
    let htmx = is_htmx(res.request());
    if let Some(redirect @ (AppError::SignInRequired { .. } | AppError::PasswordChangeRequired)) =
        error.as_error::<AppError>()
    {
        // Signing in is the normal way in, not a failure: a fresh response carries no error
        // for the request log to report.
        let response = if htmx {
            let to = match redirect {
                AppError::SignInRequired { .. } => "/signin",
                _ => "/account/password",
            };
            HttpResponse::NoContent()
                .insert_header(("HX-Redirect", to))
                .finish()
        } else {
            actix_web::ResponseError::error_response(redirect)
        };
        return Ok(res.into_response(response));
    }
    if res.request().path().starts_with("/api/")
        || !(status.is_client_error() || status.is_server_error())
    {
        return Ok(res.map_into_boxed_body());
    }
    let message = match error.as_error::<AppError>() {
        Some(app_error) => app_error.to_string(),
        None if status.is_server_error() => {
            tracing::error!(%error, "request failed");
            AppError::internal("").to_string()
        }
        None => error.to_string(),
    };
    let response = error_html(
        HttpResponse::build(status),
        status,
        htmx,
        || Ctx::new(res.request(), &res.request().get_session(), None),
        message,
    );
    Ok(res.into_response(response))
}

/// The error page of `status` saying `message`, or for htmx the fragment swapped into
/// `#messages`; plain text with the status's title if the template fails.
fn error_html(
    mut builder: actix_web::HttpResponseBuilder,
    status: StatusCode,
    htmx: bool,
    ctx: impl FnOnce() -> Ctx,
    message: String,
) -> HttpResponse {
    let title = status_title(status);
    let rendered = if htmx {
        builder.insert_header(("HX-Retarget", "#messages"));
        builder.insert_header(("HX-Reswap", "innerHTML"));
        ErrorFragment {
            status: status.as_u16(),
            title,
            message,
        }
        .render()
    } else {
        ErrorPage {
            ctx: ctx(),
            status: status.as_u16(),
            title,
            message,
        }
        .render()
    };
    match rendered {
        Ok(html) => builder.content_type("text/html; charset=utf-8").body(html),
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            builder
                .content_type("text/plain; charset=utf-8")
                .body(title)
        }
    }
}

fn status_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Conflict",
        413 => "Too large",
        429 => "Too many attempts",
        s if s >= 500 => "Something went wrong",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound(format!(
        "There is no page at {}.",
        req.path()
    )))
}

/// A rendered page with the given status (forms shown again with their errors use 4xx).
pub fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// A 303 to `location`: the answer to a successful form post.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Only a path of this site may follow a sign-in. Browsers drop tabs and line breaks from a
/// URL and read a backslash as `/`, so `/\t/evil.example` would become `//evil.example`: anything
/// but visible ASCII, any backslash and a leading `//` send the person home instead.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The static folder: `SYNCDESK_STATIC_DIR`, else the project's own `static/`.
pub fn static_dir() -> PathBuf {
    std::env::var_os("SYNCDESK_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")))
}

/// The client address for throttling: the TCP peer, never a header a client could forge.
pub fn client_address(req: &HttpRequest) -> String {
    let trusted = req
        .app_data::<web::Data<crate::AppState>>()
        .map(|state| state.config.trusted_proxies.clone())
        .unwrap_or_default();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    match req.peer_addr() {
        Some(peer) => client_ip(peer.ip(), &forwarded, &trusted).to_string(),
        None => "unknown".to_string(),
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy; then the nearest
/// address of `X-Forwarded-For` (read from the right) that is not a trusted proxy. Entries
/// further left were written by the client and prove nothing.
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: &str,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.rsplit(',') {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

/// Reads the `file` part of a multipart upload into memory, refusing it as soon as it passes
/// `max_bytes` (documents).
pub async fn read_upload(
    payload: actix_multipart::Multipart,
    max_bytes: usize,
) -> Result<(String, Vec<u8>), AppError> {
    let mut bytes = Vec::new();
    let filename = each_upload_chunk(payload, max_bytes, |chunk| {
        bytes.extend_from_slice(&chunk);
        async { Ok(()) }
    })
    .await?;
    Ok((filename, bytes))
}

/// Streams the `file` part of a multipart upload to a temporary file (imports: memory does not
/// grow with the file). Writes happen on the blocking pool.
pub async fn upload_to_temp_file(
    payload: actix_multipart::Multipart,
    max_bytes: usize,
) -> Result<(String, tempfile::NamedTempFile), AppError> {
    use std::io::Write;
    let file = web::block(tempfile::NamedTempFile::new)
        .await?
        .map_err(AppError::internal)?;
    let cell = std::rc::Rc::new(std::cell::RefCell::new(Some(file)));
    let filename = each_upload_chunk(payload, max_bytes, |chunk| {
        let cell = cell.clone();
        async move {
            let mut file = cell
                .borrow_mut()
                .take()
                .ok_or_else(|| AppError::internal("upload file lost"))?;
            let file = web::block(move || file.write_all(&chunk).map(|_| file))
                .await?
                .map_err(AppError::internal)?;
            *cell.borrow_mut() = Some(file);
            Ok(())
        }
    })
    .await?;
    let file = cell
        .borrow_mut()
        .take()
        .ok_or_else(|| AppError::internal("upload file lost"))?;
    Ok((filename, file))
}

async fn each_upload_chunk<F, Fut>(
    mut payload: actix_multipart::Multipart,
    max_bytes: usize,
    mut on_chunk: F,
) -> Result<String, AppError>
where
    F: FnMut(web::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    use futures_util::StreamExt;
    let unreadable = |e: actix_multipart::MultipartError| {
        AppError::BadRequest(format!("The upload could not be read: {e}"))
    };
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(unreadable)?;
        if field.name() != Some("file") {
            continue;
        }
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .unwrap_or("upload")
            .to_string();
        let mut total = 0usize;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(unreadable)?;
            total += chunk.len();
            if total > max_bytes {
                return Err(AppError::PayloadTooLarge(format!(
                    "'{filename}' is larger than the {} MB limit.",
                    max_bytes / (1024 * 1024)
                )));
            }
            on_chunk(chunk).await?;
        }
        if total == 0 {
            return Err(AppError::BadRequest(format!("'{filename}' is empty.")));
        }
        return Ok(filename);
    }
    Err(AppError::BadRequest("Choose a file to upload.".into()))
}

/// Bytes handed from the thread that writes a download to the response, a chunk at a time.
const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Chunks written ahead of what the client has read: memory stays bounded whatever the size.
const DOWNLOADS_AHEAD: usize = 4;

/// `std::io::Write` into the channel of a streamed download.
struct ChannelWriter {
    buffer: Vec<u8>,
    sender: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(DOWNLOAD_CHUNK));
        self.sender
            .send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download stopped"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= DOWNLOAD_CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// A download written by `write` with a connection of its own, on a thread of its own, and
/// sent as it is written: constant memory whatever its size, and it stops when the client
/// goes away. An error after the first bytes ends the download short (the client sees an
/// incomplete transfer) and is logged.
pub fn streamed_download<F, E>(
    pool: crate::db::DbPool,
    filename: String,
    content_type: &'static str,
    write: F,
) -> HttpResponse
where
    F: FnOnce(&mut crate::db::DbConn, &mut dyn std::io::Write) -> Result<(), E> + Send + 'static,
    E: std::fmt::Display,
{
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(DOWNLOADS_AHEAD);
    let (failed_tx, failed_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut out = ChannelWriter {
            buffer: Vec::with_capacity(DOWNLOAD_CHUNK),
            sender,
        };
        // A panic must cut the download too, not end it as if it were whole.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match pool.get() {
            Ok(mut conn) => write(&mut conn, &mut out).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }))
        .unwrap_or_else(|panic| Err(format!("panic: {}", panic_message(panic.as_ref()))));
        let result =
            result.and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string()));
        if let Err(error) = result {
            if !error.contains("download stopped") {
                tracing::error!(%error, "download failed");
                let _ = failed_tx.send(());
            }
        }
    });
    let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
    let chunks =
        futures_util::stream::unfold((receiver, failed_rx), |(receiver, failed)| async move {
            let next = {
                let receiver = receiver.clone();
                web::block(move || {
                    receiver
                        .lock()
                        .map_err(|_| ())
                        .and_then(|r| r.recv().map_err(|_| ()))
                })
                .await
            };
            match next {
                Ok(Ok(chunk)) => Some((Ok(web::Bytes::from(chunk)), (receiver, failed))),
                // The writer is done: cleanly, or with an error that must cut the download.
                _ if failed.try_recv().is_ok() => Some((
                    Err(std::io::Error::other(
                        "the download failed; the server log has why",
                    )),
                    (receiver, failed),
                )),
                _ => None,
            }
        });
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(header::ContentDisposition {
            disposition: header::DispositionType::Attachment,
            parameters: vec![header::DispositionParam::Filename(filename)],
        })
        .streaming(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn boom() -> HttpResponse {
        panic!("a bug in a handler")
    }

    async fn fine() -> HttpResponse {
        HttpResponse::Ok().body("fine")
    }

    /// The middleware as `build_app` mounts it, in front of handlers that panic: each panic
    /// is a 500 (a page, or a problem under /api/) with the security headers, and the same
    /// worker answers next.
    #[actix_web::test]
    async fn a_panicking_handler_answers_500_and_the_worker_goes_on() {
        use actix_web::dev::Service;
        use actix_web::{middleware::from_fn, test, App};
        let app = test::init_service(
            App::new()
                .wrap(from_fn(catch_panics))
                .wrap(from_fn(render_error_pages))
                .route("/boom", web::get().to(boom))
                .route("/api/v1/boom", web::get().to(boom))
                .route("/fine", web::get().to(fine)),
        )
        .await;
        // As the server does with an error no middleware turned into a response.
        let answer = |res: Result<ServiceResponse<_>, actix_web::Error>| match res {
            Ok(res) => res.into_parts().1.map_into_boxed_body(),
            Err(e) => e.error_response().map_into_boxed_body(),
        };
        for _ in 0..2 {
            let res = answer(
                app.call(test::TestRequest::get().uri("/boom").to_request())
                    .await,
            );
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
            let body = actix_web::body::to_bytes(res.into_body())
                .await
                .expect("body");
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("<!doctype html>"), "{body}");
            assert!(body.contains("Something went wrong"), "{body}");
            assert!(!body.contains("a bug in a handler"), "{body}");

            let res = answer(
                app.call(test::TestRequest::get().uri("/api/v1/boom").to_request())
                    .await,
            );
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                res.headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json")
            );
            let body = actix_web::body::to_bytes(res.into_body())
                .await
                .expect("body");
            let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem");
            assert_eq!(problem["status"], 500);

            let res = answer(
                app.call(test::TestRequest::get().uri("/fine").to_request())
                    .await,
            );
            assert_eq!(res.status(), StatusCode::OK);
        }
    }

    /// A download whose writer panics after its first bytes ends as an error, never as a
    /// short file that looks whole.
    #[actix_web::test]
    async fn a_panicking_download_is_cut_not_ended() {
        let dir = tempfile::tempdir().expect("folder");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::db::connect(&url).expect("pool");
        let res = streamed_download(
            pool,
            "x.csv".into(),
            "text/csv",
            |_conn, out| -> Result<(), String> {
                out.write_all(&vec![b'x'; 3 * DOWNLOAD_CHUNK])
                    .map_err(|e| e.to_string())?;
                panic!("a bug half-way")
            },
        );
        let read = actix_web::body::to_bytes(res.into_body()).await;
        assert!(read.is_err(), "the download ended as if whole");
    }

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxies = [ip("10.0.0.2"), ip("10.0.0.3")];
        // Not through a proxy: the header is the client's own word.
        assert_eq!(
            client_ip(ip("203.0.113.9"), "1.2.3.4", &proxies),
            ip("203.0.113.9")
        );
        // Through the proxies: the nearest untrusted hop; spoofed entries further left are ignored.
        assert_eq!(
            client_ip(ip("10.0.0.2"), "6.6.6.6, 198.51.100.7, 10.0.0.3", &proxies),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), "", &proxies), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), "garbage", &proxies),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn next_paths_stay_on_site() {
        assert_eq!(safe_next(Some("/users")), "/users");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
