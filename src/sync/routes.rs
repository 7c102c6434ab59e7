//! Run pages: live progress, counts, the report line by line (filter by outcome), the CSV
//! report, "apply this plan", undo, and resolving ambiguous rows.

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::csvfile::{self, FileFormat, TextEncoding};
use super::jobs::{self, NewRun};
use super::model::{ImportRow, ImportRun, Outcome, RunStatus};
use super::{claims, engine, report, undo as undoing};
use crate::auth::extract::{EditorUser, SignedIn};
use crate::auth::model::{Role, User};
use crate::db::{self, DbConn};
use crate::error::AppError;
use crate::fields::validate::PhoneCountry;
use crate::records::model::Actor;
use crate::sources::model::{rows_problem, HeaderCheck, Source};
use crate::sources::service as sources;
use crate::web::{flash, is_htmx, render, see_other, upload_to_temp_file, Ctx};
use crate::AppState;

const ROWS_PER_PAGE: i64 = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(run_page)
        .service(progress)
        .service(report_csv)
        .service(apply_plan)
        .service(confirm_flagging)
        .service(upload_import)
        .service(preview)
        .service(start_run)
        .service(undo)
        .service(cancel)
        .service(resolve);
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    #[serde(default)]
    outcome: String,
    /// Keyset: the last (line, row id) of the previous page.
    after: Option<String>,
    /// A row whose picker was refused, and what was typed in it (given back to correct).
    refused: Option<i64>,
    #[serde(default)]
    typed: String,
}

fn parse_after(after: Option<&str>) -> Option<(i64, i64)> {
    let (line, id) = after?.split_once('.')?;
    Some((line.parse().ok()?, id.parse().ok()?))
}

#[derive(Template)]
#[template(path = "sync/run.html")]
struct RunPage {
    ctx: Ctx,
    run: ImportRun,
    source: Source,
    counts: Vec<(&'static str, i64)>,
    warnings: i64,
    outcome: String,
    rows: Vec<ImportRow>,
    next: Option<String>,
    can_edit: bool,
    /// A plan's check: the rows deciding differently from the dry run (first ones), and
    /// whether there are more.
    changed: Option<(Vec<super::report::DecisionChange>, bool)>,
    /// Names of the ambiguous rows' candidates on this page, for choosing between them.
    candidate_names: std::collections::BTreeMap<i64, String>,
    /// The row whose picker was refused, with what was typed in it.
    refused: Option<(i64, String)>,
    /// This page's position (empty on the first), carried by the rows' forms.
    after: String,
}

impl RunPage {
    /// "Ada Lovelace (#12)" for a candidate of an ambiguous row.
    pub fn candidate(&self, id: &i64) -> String {
        match self.candidate_names.get(id) {
            Some(name) => format!("{name} (#{id})"),
            None => format!("record #{id}"),
        }
    }
}

/// Changed decisions a plan's check page lists.
const CHANGES_SHOWN: i64 = 100;

#[derive(Template)]
#[template(path = "sync/run.html", block = "progress")]
struct ProgressFragment {
    run: ImportRun,
    counts: Vec<(&'static str, i64)>,
    warnings: i64,
}

fn counts_list(run: &ImportRun) -> Vec<(&'static str, i64)> {
    let counts = run.counts();
    Outcome::ALL
        .iter()
        .map(|o| (o.as_str(), counts.get(o.as_str()).copied().unwrap_or(0)))
        .collect()
}

fn load(conn: &mut DbConn, id: i64) -> Result<(ImportRun, Source), AppError> {
    let run = engine::load_run(conn, id)?.ok_or_else(|| AppError::not_found("That import run"))?;
    let source =
        sources::find(conn, run.source_id)?.ok_or_else(|| AppError::not_found("Its source"))?;
    Ok((run, source))
}

#[get("/runs/{id}")]
async fn run_page(
    state: web::Data<AppState>,
    me: SignedIn,
    path: web::Path<i64>,
    query: web::Query<RunQuery>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let query = query.into_inner();
    let outcome = query.outcome.clone();
    let after = parse_after(query.after.as_deref());
    let query_after = query.after.clone().unwrap_or_default();
    let refused = query.refused.map(|row| (row, query.typed.clone()));
    let filter = outcome.clone();
    let (run, source, rows, has_more, changed, candidate_names) = state
        .db(move |conn| -> Result<_, AppError> {
            let (run, source) = load(conn, id)?;
            let (rows, has_more) = super::report::page(conn, id, &filter, after, ROWS_PER_PAGE)?;
            let candidates: Vec<i64> = rows.iter().flat_map(|r| r.candidates_shown()).collect();
            let candidate_names = crate::records::service::names_of(conn, &candidates)?;
            // A plan's check lists what would now decide differently.
            let changed = match run.plan_of {
                Some(plan) if run.dry_run && run.finished() => Some(
                    super::report::decision_changes(conn, plan, run.id, CHANGES_SHOWN)?,
                ),
                _ => None,
            };
            Ok((run, source, rows, has_more, changed, candidate_names))
        })
        .await?;
    let next = has_more
        .then(|| rows.last().map(|r| format!("{}.{}", r.line, r.id)))
        .flatten();
    render(
        StatusCode::OK,
        &RunPage {
            ctx: me.ctx,
            counts: counts_list(&run),
            warnings: run.count("warnings"),
            can_edit: me.user.can(Role::Editor),
            run,
            source,
            outcome,
            rows,
            next,
            changed,
            candidate_names,
            refused,
            after: query_after,
        },
    )
}

/// Polled by htmx while the run works; a finished run tells the page to reload once.
#[get("/runs/{id}/progress")]
async fn progress(
    state: web::Data<AppState>,
    _me: SignedIn,
    req: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (run, _) = state.db(move |conn| load(conn, id)).await?;
    let fragment = ProgressFragment {
        counts: counts_list(&run),
        warnings: run.count("warnings"),
        run,
    };
    let mut response = render(StatusCode::OK, &fragment)?;
    if fragment.run.finished() && !fragment.run.undo_in_progress() && is_htmx(&req) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("hx-refresh"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[get("/runs/{id}/report.csv")]
async fn report_csv(
    state: web::Data<AppState>,
    _me: SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    // A run that does not exist is a 404 page, before any byte of a download is sent.
    state.db(move |conn| load(conn, id)).await?;
    Ok(crate::web::streamed_download(
        state.pool.clone(),
        format!("import-run-{id}.csv"),
        "text/csv; charset=utf-8",
        move |conn, out| report::report_csv(conn, id, out),
    ))
}

#[derive(Debug, Deserialize)]
struct ApplyForm {
    /// The check run the person saw (its changed decisions) before confirming.
    #[serde(default)]
    checked_by: Option<i64>,
}

/// Applies a dry run's plan in two steps: first a check (the same file decided again against
/// today's records, writing nothing) whose page lists the rows that would now decide
/// differently; then, confirmed there, the apply itself, noting rows changed since.
#[post("/runs/{id}/apply")]
async fn apply_plan(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
    form: web::Form<ApplyForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let checked_by = form.checked_by;
    let user = me.user.clone();
    let (new_run, applied) = state
        .db(move |conn| -> Result<(i64, bool), AppError> {
            let (run, source) = load(conn, id)?;
            if !run.dry_run || run.status != RunStatus::Done || run.plan_of.is_some() {
                return Err(AppError::BadRequest(
                    "Only a finished dry run has a plan to apply.".into(),
                ));
            }
            let confirmed = match checked_by {
                Some(check) => {
                    let (check, _) = load(conn, check)?;
                    if check.plan_of != Some(run.id)
                        || !check.dry_run
                        || check.status != RunStatus::Done
                    {
                        return Err(AppError::BadRequest(
                            "Confirm from the finished check of this dry run.".into(),
                        ));
                    }
                    true
                }
                None => false,
            };
            let new_run =
                import_again(conn, &run, &source, &user, Some(run.id), false, !confirmed)?;
            Ok((new_run, confirmed))
        })
        .await?;
    flash(
        &session,
        if applied {
            format!("Applying the plan of dry run #{id} as run #{new_run}.")
        } else {
            format!("Checking dry run #{id} against today's records (run #{new_run}, nothing written): confirm below once it is done.")
        },
    );
    Ok(see_other(&format!("/runs/{new_run}")))
}

/// A full-mode run that left more than a tenth of the source's records unflagged: the same
/// file again, now flagging them.
#[post("/runs/{id}/confirm-flagging")]
async fn confirm_flagging(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let user = me.user.clone();
    let new_run = state
        .db(move |conn| -> Result<i64, AppError> {
            let (run, source) = load(conn, id)?;
            if run.dry_run
                || run.status != RunStatus::Done
                || run.count(engine::MISSING_NOT_FLAGGED) == 0
            {
                return Err(AppError::BadRequest(
                    "Only a finished full-mode run that left records unflagged asks for this."
                        .into(),
                ));
            }
            Ok(import_again(conn, &run, &source, &user, None, true, false)?)
        })
        .await?;
    flash(
        &session,
        format!("Importing the file of run #{id} again as run #{new_run}, flagging the records it lacks."),
    );
    Ok(see_other(&format!("/runs/{new_run}")))
}

/// Queues the file of `run` again (as a dry run: a plan's check).
fn import_again(
    conn: &mut DbConn,
    run: &ImportRun,
    source: &Source,
    user: &User,
    plan_of: Option<i64>,
    flag_confirmed: bool,
    dry_run: bool,
) -> Result<i64, engine::ImportError> {
    let new = NewRun {
        source,
        file_name: &run.file_name,
        sha256: &run.file_sha256,
        format: engine::run_format(run),
        dry_run,
        plan_of,
        flag_confirmed,
        user_id: Some(user.id),
        user_label: &user.display_name,
    };
    // The same file read the same way: its upload's phone country too.
    let country = claims::country_of(conn, run.id)?;
    db::write_tx(conn, |conn| {
        let run_id = jobs::enqueue(conn, &new)?;
        claims::set_country(conn, run_id, &country)?;
        Ok(run_id)
    })
}

/// Stops a queued or running run; what it committed stays until undone.
#[post("/runs/{id}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let by = me.user.display_name.clone();
    state.db(move |conn| jobs::cancel(conn, id, &by)).await?;
    flash(
        &session,
        "Run cancelled: it stops at its next chunk. Rows imported before stay; undo the run to take them back.",
    );
    Ok(see_other(&format!("/runs/{id}")))
}

#[post("/runs/{id}/undo")]
async fn undo(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let actor = Actor::user(&me.user);
    state
        .db(move |conn| super::undo::request_undo(conn, id, &actor, false))
        .await?;
    flash(
        &session,
        "Undo started: it runs in the background; this page follows it.",
    );
    Ok(see_other(&format!("/runs/{id}")))
}

#[derive(Deserialize)]
struct ResolveForm {
    /// A candidate's record id, or `new`.
    #[serde(default)]
    choice: String,
    /// Another record, typed or picked in the record picker ("#12 Ada Lovelace"): when
    /// given, it is the choice.
    #[serde(default)]
    record: String,
    /// The page of the run the form was on, to come back to.
    #[serde(default)]
    after: String,
}

#[post("/runs/{id}/rows/{row}/resolve")]
async fn resolve(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, i64)>,
    form: web::Form<ResolveForm>,
) -> Result<HttpResponse, AppError> {
    let (id, row) = path.into_inner();
    let form = form.into_inner();
    let (typed, page) = (form.record.clone(), form.after.clone());
    let picked = match form.choice.as_str() {
        _ if !form.record.trim().is_empty() => Err(form.record),
        "new" => Ok(None),
        other => Ok(Some(other.parse::<i64>().map_err(|_| {
            AppError::BadRequest("Choose a candidate, another record or a new record.".into())
        })?)),
    };
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let message = state
        .db(move |conn| -> Result<String, AppError> {
            let choice = match picked {
                Ok(choice) => choice,
                Err(typed) => Some(picked_record(conn, id, &typed)?),
            };
            Ok(undoing::resolve_ambiguous(
                conn, row, choice, &actor, country,
            )?)
        })
        .await;
    match message {
        Ok(message) => {
            flash(&session, message);
            Ok(see_other(&format!("/runs/{id}?outcome=ambiguous")))
        }
        // Said on the run's page, beside the rows, with what was typed back in its picker.
        Err(AppError::BadRequest(problem)) => {
            flash(&session, problem);
            let back = serde_urlencoded::to_string([
                ("outcome", "ambiguous"),
                ("after", page.as_str()),
                ("refused", row.to_string().as_str()),
                ("typed", typed.as_str()),
            ])
            .unwrap_or_default();
            Ok(see_other(&format!("/runs/{id}?{back}")))
        }
        Err(e) => Err(e),
    }
}

/// The record a person typed in an ambiguous row's picker ("#12 Ada Lovelace", or a name only
/// one record of the run's kind has).
fn picked_record(conn: &mut db::DbConn, run_id: i64, typed: &str) -> Result<i64, AppError> {
    let run = engine::load_run(conn, run_id)?.ok_or_else(|| AppError::not_found("That run"))?;
    let source =
        sources::find(conn, run.source_id)?.ok_or_else(|| AppError::not_found("That source"))?;
    let kind = source.record_kind();
    let found = crate::records::service::resolve_record(conn, kind, "record", typed).map_err(
        |e| match e {
            crate::records::service::RecordError::Invalid(errors) => {
                AppError::BadRequest(errors.into_values().collect::<Vec<_>>().join(" "))
            }
            other => other.into(),
        },
    )?;
    found.ok_or_else(|| {
        AppError::BadRequest(format!(
            "Type the {kind} to link the line to, and pick it from the suggestions."
        ))
    })
}

// ---- uploading a file to a source, its preview, starting the run ------------------------

/// Stores the uploaded file under its hash, then shows the preview.
#[post("/sources/{id}/imports")]
async fn upload_import(
    state: web::Data<AppState>,
    _me: EditorUser,
    path: web::Path<i64>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    // Before the body is read: nothing is stored for a source that does not exist.
    state
        .db(move |conn| sources::find(conn, id))
        .await?
        .ok_or_else(|| AppError::not_found("That source"))?;
    let (file_name, file) = upload_to_temp_file(payload, state.config.max_import_bytes).await?;
    let data_dir = state.config.data_dir.clone();
    let sha = web::block(move || -> Result<String, AppError> {
        // A binary file is refused here, not kept.
        csvfile::sniff_file(file.path()).map_err(|e| AppError::BadRequest(e.to_string()))?;
        let input = std::fs::File::open(file.path()).map_err(AppError::internal)?;
        Ok(jobs::store_file(&data_dir, input, u64::MAX)?)
    })
    .await??;
    let query =
        serde_urlencoded::to_string([("file_name", file_name.as_str())]).unwrap_or_default();
    Ok(see_other(&format!("/sources/{id}/imports/{sha}?{query}")))
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    #[serde(default)]
    file_name: String,
    encoding: Option<String>,
    delimiter: Option<String>,
}

#[derive(Template)]
#[template(path = "sync/preview.html")]
struct PreviewPage {
    ctx: Ctx,
    source: Source,
    sha: String,
    file_name: String,
    format: FileFormat,
    detected: FileFormat,
    /// Bytes that are not UTF-8 in a UTF-8 file: where, and what each choice does.
    doubt: Option<String>,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Per header: the field it maps to, or `None`.
    mapped: Vec<Option<String>>,
    missing_columns: Vec<String>,
    /// Why the rows cannot be matched to records (no id column, key fields not mapped).
    key_problem: Option<String>,
    error: Option<String>,
    /// The console's phone country, shown when the source has none.
    console_country: String,
}

impl PreviewPage {
    /// Columns of the file no mapping line reads.
    pub fn unmapped(&self) -> usize {
        self.mapped.iter().filter(|m| m.is_none()).count()
    }
}

fn chosen_format(
    detected: FileFormat,
    encoding: Option<&str>,
    delimiter: Option<&str>,
) -> FileFormat {
    FileFormat {
        encoding: encoding
            .and_then(TextEncoding::parse)
            .unwrap_or(detected.encoding),
        delimiter: delimiter
            .and_then(FileFormat::parse_delimiter)
            .unwrap_or(detected.delimiter),
    }
}

#[get("/sources/{id}/imports/{sha}")]
async fn preview(
    state: web::Data<AppState>,
    me: EditorUser,
    path: web::Path<(i64, String)>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, AppError> {
    let (id, sha) = path.into_inner();
    let query = query.into_inner();
    let file = engine::file_path(&state.config.data_dir, &sha)
        .filter(|p| p.is_file())
        .ok_or_else(|| AppError::NotFound("That upload is gone: upload the file again.".into()))?;
    let (encoding, delimiter) = (query.encoding.clone(), query.delimiter.clone());
    let page = state
        .db(move |conn| -> Result<_, AppError> {
            let source =
                sources::find(conn, id)?.ok_or_else(|| AppError::not_found("That source"))?;
            let mapping = sources::mapping(conn, id)?;
            let (detected, doubt) =
                csvfile::detect_file(&file).map_err(|e| AppError::BadRequest(e.to_string()))?;
            let format = chosen_format(detected, encoding.as_deref(), delimiter.as_deref());
            let doubt = doubt.map(|d| d.to_string());
            let (headers, rows, error) = match csvfile::preview(&file, format, 5) {
                Ok((h, r)) => (h, r, None),
                Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
            };
            let HeaderCheck {
                mapped,
                missing_columns,
                key_problem,
            } = HeaderCheck::of(&source, &mapping, &headers);
            let key_problem = key_problem.filter(|_| error.is_none());
            Ok((
                source,
                detected,
                doubt,
                format,
                headers,
                rows,
                mapped,
                missing_columns,
                key_problem,
                error,
            ))
        })
        .await?;
    let (
        source,
        detected,
        doubt,
        format,
        headers,
        rows,
        mapped,
        missing_columns,
        key_problem,
        error,
    ) = page;
    render(
        StatusCode::OK,
        &PreviewPage {
            ctx: me.ctx,
            source,
            sha,
            file_name: query.file_name,
            format,
            detected,
            doubt,
            headers,
            rows,
            mapped,
            missing_columns,
            key_problem,
            error,
            console_country: state.config.default_country.code(),
        },
    )
}

#[derive(Debug, Deserialize)]
struct StartForm {
    #[serde(default)]
    file_name: String,
    encoding: String,
    delimiter: String,
    action: String,
    /// Phones written without a country: this upload's (two letters), else the source's.
    #[serde(default)]
    country: String,
}

#[post("/sources/{id}/imports/{sha}/run")]
async fn start_run(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    path: web::Path<(i64, String)>,
    form: web::Form<StartForm>,
) -> Result<HttpResponse, AppError> {
    let (id, sha) = path.into_inner();
    let form = form.into_inner();
    let file = engine::file_path(&state.config.data_dir, &sha)
        .filter(|p| p.is_file())
        .ok_or_else(|| AppError::NotFound("That upload is gone: upload the file again.".into()))?;
    let user = me.user.clone();
    let run_id = state
        .db(move |conn| -> Result<i64, AppError> {
            let source =
                sources::find(conn, id)?.ok_or_else(|| AppError::not_found("That source"))?;
            // The form carries the encoding and delimiter the person saw in the preview.
            let detected =
                csvfile::sniff_file(&file).map_err(|e| AppError::BadRequest(e.to_string()))?;
            let format = chosen_format(detected, Some(&form.encoding), Some(&form.delimiter));
            // A file without the id column is refused here, before any run exists.
            let (headers, _) = csvfile::preview(&file, format, 0)
                .map_err(|e| AppError::BadRequest(e.to_string()))?;
            let mapping = sources::mapping(conn, id)?;
            if let Some(problem) = rows_problem(&source, &mapping, &headers) {
                return Err(engine::ImportError::NoKey(problem).into());
            }
            let country = form.country.trim().to_ascii_uppercase();
            if !country.is_empty() {
                PhoneCountry::parse(&country).map_err(AppError::BadRequest)?;
            }
            let new = NewRun {
                source: &source,
                file_name: &form.file_name,
                sha256: &sha,
                format,
                dry_run: form.action != "apply",
                plan_of: None,
                flag_confirmed: false,
                user_id: Some(user.id),
                user_label: &user.display_name,
            };
            // Queued with its country in one transaction: no worker starts it without.
            Ok(db::write_tx(
                conn,
                |conn| -> Result<i64, engine::ImportError> {
                    let run_id = jobs::enqueue(conn, &new)?;
                    claims::set_country(conn, run_id, &country)?;
                    Ok(run_id)
                },
            )?)
        })
        .await?;
    flash(&session, format!("Import run #{run_id} queued."));
    Ok(see_other(&format!("/runs/{run_id}")))
}
