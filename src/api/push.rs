//! Rows pushed over the API become an import run of their source: written as a CSV file in
//! the source's columns and run through the same engine, rules and report as a file. Small
//! pushes run at once and are answered with every row's outcome; large ones run in the
//! background and are answered with the run to poll.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{DbConn, DbPool};
use crate::fields::validate::PhoneCountry;
use crate::schema::import_rows;
use crate::sources::model::{same_column, Source};
use crate::sources::service as sources;
use crate::sync::csvfile::{FileFormat, TextEncoding};
use crate::sync::engine::{self, ImportError};
use crate::sync::jobs::{self, NewRun};
use crate::sync::model::{ImportRow, ImportRun};

/// Pushes up to this many rows are run at once; larger ones in the background (202).
pub const ANSWER_AT_ONCE_ROWS: usize = 1_000;
/// Most rows in one push.
pub const MAX_ROWS: usize = 100_000;
/// A finished run's answer lists its rows up to this many.
const ROWS_IN_ANSWER: i64 = 10_000;

/// Rows keyed by the source's column names (its id column among them).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PushRequest {
    /// Each row: column name -> value (text, number, true/false or null for blank).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Plan only: the answer says what would happen and nothing is written.
    #[serde(default)]
    pub dry_run: bool,
}

/// What happened to one pushed row.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowAnswer {
    /// The row's position in `rows`, from 1.
    pub row: i64,
    pub external_id: String,
    /// created, updated, proposed, unchanged, converted, linked_forced_manual, ignored,
    /// ambiguous, error.
    pub outcome: String,
    pub reason: String,
    pub record_id: Option<i64>,
}

/// An import run as the API reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAnswer {
    pub run_id: i64,
    pub source_id: i64,
    /// Where to poll it: `GET /api/v1/runs/{id}`.
    pub url: String,
    /// queued, running, done, failed or cancelled.
    pub status: String,
    pub dry_run: bool,
    pub rows_total: i64,
    pub rows_done: i64,
    /// Rows by outcome (and `warnings`).
    pub counts: BTreeMap<String, i64>,
    pub error: Option<String>,
    pub notice: Option<String>,
    /// Every row's outcome, once the run has finished (up to 10,000 rows).
    pub rows: Option<Vec<RowAnswer>>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::text::utc")]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Invalid(String),
    #[error("There is no source #{0}.")]
    NoSource(i64),
    /// Another run holds the source.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Import(ImportError),
    /// No database connection to be had (the pool is exhausted or the database is down).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl From<ImportError> for PushError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::SourceBusy(message) => PushError::Busy(message),
            ImportError::Db(db) => PushError::Db(db),
            other => PushError::Import(other),
        }
    }
}

/// The rows as a CSV file in the source's columns: its id column, then its mapped columns.
/// A column the source does not have, or a value that is not text, is refused with its row.
pub fn to_csv(
    source: &Source,
    mapped: &[String],
    request: &PushRequest,
) -> Result<Vec<u8>, PushError> {
    if request.rows.is_empty() {
        return Err(PushError::Invalid(
            "`rows` is empty: send at least one row.".into(),
        ));
    }
    if request.rows.len() > MAX_ROWS {
        return Err(PushError::Invalid(format!(
            "{} rows in one push: send at most {MAX_ROWS}.",
            request.rows.len()
        )));
    }
    // A source matching by fields has no id column: its mapped columns carry the key.
    let mut columns: Vec<String> = Some(source.id_column.clone())
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect();
    columns.extend(
        mapped
            .iter()
            .filter(|c| !same_column(c, &source.id_column))
            .cloned(),
    );
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |e: csv::Error| PushError::Invalid(format!("cannot write the rows: {e}"));
    out.write_record(&columns).map_err(write)?;
    for (i, row) in request.rows.iter().enumerate() {
        let n = i + 1;
        if let Some(unknown) = row
            .keys()
            .find(|key| !columns.iter().any(|c| same_column(key, c)))
        {
            return Err(PushError::Invalid(format!(
                "Row {n}: source {} has no column '{unknown}'. Its columns are: {}.",
                source.name,
                columns.join(", ")
            )));
        }
        let mut line = Vec::with_capacity(columns.len());
        for column in &columns {
            let value = row
                .iter()
                .find(|(key, _)| same_column(key, column))
                .map(|(_, v)| v);
            line.push(match value {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(x)) => x.to_string(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(_) => {
                    return Err(PushError::Invalid(format!(
                        "Row {n}, column '{column}': a value must be text, a number, true/false or null."
                    )))
                }
            });
        }
        out.write_record(&line).map_err(write)?;
    }
    out.into_inner()
        .map_err(|e| PushError::Invalid(format!("cannot write the rows: {e}")))
}

/// Everything a push needs besides its rows.
pub struct PushContext<'a> {
    pub pool: &'a DbPool,
    pub data_dir: &'a Path,
    pub country: PhoneCountry,
    /// Who pushed: the token's name, for the run's "started by".
    pub label: &'a str,
}

/// Starts a run of the pushed rows; small ones are run to their end before answering.
/// Returns the run's answer and whether it finished.
pub fn push(
    ctx: &PushContext,
    source_id: i64,
    request: &PushRequest,
) -> Result<(RunAnswer, bool), PushError> {
    let mut conn = ctx
        .pool
        .get()
        .map_err(|e| PushError::Unavailable(format!("No database connection: {e}")))?;
    let source = sources::find(&mut conn, source_id)?.ok_or(PushError::NoSource(source_id))?;
    if !source.connected() {
        return Err(PushError::Busy(format!(
            "Source {} is disconnected: reconnect it before pushing rows.",
            source.name
        )));
    }
    let mapped: Vec<String> = sources::mapping(&mut conn, source_id)?
        .into_iter()
        .map(|m| m.column_name)
        .collect();
    let bytes = to_csv(&source, &mapped, request)?;
    let sha = jobs::store_file(ctx.data_dir, &bytes[..], u64::MAX)?;
    // A push is never the source's complete list: its run flags nothing missing.
    let mut source = source;
    source.mode = "delta".into();
    let new = NewRun {
        source: &source,
        file_name: "API push",
        sha256: &sha,
        format: FileFormat {
            encoding: TextEncoding::Utf8,
            delimiter: b',',
        },
        dry_run: request.dry_run,
        plan_of: None,
        flag_confirmed: false,
        user_id: None,
        user_label: ctx.label,
    };
    let at_once = request.rows.len() <= ANSWER_AT_ONCE_ROWS;
    let run_id = if at_once {
        jobs::enqueue_claimed_by(&mut conn, &new, "api")?
    } else {
        jobs::enqueue(&mut conn, &new)?
    };
    drop(conn);
    if at_once {
        // The run's own failure is in its answer (status `failed`, `error`).
        if let Err(e) = jobs::process(ctx.pool, run_id, ctx.data_dir, ctx.country, &mut |_, _| {}) {
            tracing::warn!(run_id, error = %e, "pushed rows failed");
        }
    }
    let mut conn = ctx
        .pool
        .get()
        .map_err(|e| PushError::Unavailable(format!("No database connection: {e}")))?;
    let answer = run_answer(&mut conn, run_id, None)?.ok_or(diesel::result::Error::NotFound)?;
    Ok((answer, at_once))
}

/// A run as the API reports it, with its rows once finished; with `source`, only a run of
/// that source (another is answered as none).
pub fn run_answer(
    conn: &mut DbConn,
    run_id: i64,
    source: Option<i64>,
) -> QueryResult<Option<RunAnswer>> {
    let Some(run) = engine::load_run(conn, run_id)? else {
        return Ok(None);
    };
    if source.is_some_and(|source| source != run.source_id) {
        return Ok(None);
    }
    let rows = if run.finished() && run.rows_total <= ROWS_IN_ANSWER {
        Some(rows_of(conn, &run)?)
    } else {
        None
    };
    Ok(Some(RunAnswer {
        run_id: run.id,
        source_id: run.source_id,
        url: format!("/api/v1/runs/{}", run.id),
        status: run.status.to_string(),
        dry_run: run.dry_run,
        rows_total: run.rows_total,
        rows_done: run.rows_done,
        counts: run.counts(),
        error: run.error.clone(),
        notice: run.notice.clone(),
        rows,
        created_at: run.created_at,
    }))
}

/// The run's report lines in file order. Each row pushed has one, so a row's number is its
/// line's rank (not its line number: a value with a line break spans several lines).
fn rows_of(conn: &mut DbConn, run: &ImportRun) -> QueryResult<Vec<RowAnswer>> {
    Ok(import_rows::table
        .filter(import_rows::run_id.eq(run.id))
        .filter(import_rows::line.gt(0))
        .order((import_rows::line.asc(), import_rows::id.asc()))
        .limit(ROWS_IN_ANSWER)
        .select(ImportRow::as_select())
        .load(conn)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| RowAnswer {
            row: i64::try_from(i).unwrap_or(i64::MAX) + 1,
            external_id: r.external_id,
            outcome: r.outcome.to_string(),
            reason: r.reason,
            record_id: r.record_id,
        })
        .collect())
}
