//! The desynchronised-records view and the "check data" page of a record.

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;

use super::service::{self, Choice, DesyncFilter, DesyncPage, Outcome, Proposal, ReviewError};
use crate::auth::extract::{definitions_seen, EditorUser, SignedIn};
use crate::auth::model::Role;
use crate::db::DbConn;
use crate::error::AppError;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::records::model::{Actor, RecordRow};
use crate::records::service as records;
use crate::web::{flash, is_htmx, render, see_other, Ctx};
use crate::AppState;

pub const PAGE_SIZE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(desync_page).service(check_page).service(decide);
}

impl From<ReviewError> for AppError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Db(db) => db.into(),
            ReviewError::NotFound => AppError::not_found("That record"),
            ReviewError::Invalid(_) => AppError::BadRequest(e.to_string()),
        }
    }
}

// ---- check data ------------------------------------------------------------------------

/// One pending field on the check-data page, with what the person chose last time the form
/// was sent (kept when the form comes back with an error).
pub struct Line {
    pub proposal: Proposal,
    pub label: String,
    pub input_type: &'static str,
    pub is_document: bool,
    pub options: Vec<String>,
    /// The record's value now (it may differ from the one the proposal saw).
    pub current: String,
    /// "keep", "accept", "new" or "".
    pub choice: String,
    pub typed: String,
    pub error: Option<String>,
}

impl Line {
    pub fn changed_since(&self) -> bool {
        self.current != self.proposal.current_value
    }
}

/// What the check-data page shows; the same for the whole page and its htmx fragment.
pub struct CheckView {
    pub record: RecordRow,
    pub csrf: String,
    pub lines: Vec<Line>,
    /// Decided and replaced proposals, newest first: (field label, proposal).
    pub earlier: Vec<(String, Proposal)>,
    pub can_decide: bool,
    pub outcome: Option<Outcome>,
    pub form_error: Option<String>,
}

#[derive(Template)]
#[template(path = "review/check.html")]
struct CheckPage {
    ctx: Ctx,
    view: CheckView,
}

#[derive(Template)]
#[template(path = "review/check.html", block = "check")]
struct CheckFragment {
    view: CheckView,
}

/// What was posted for one line: (choice, typed value).
type Posted = BTreeMap<i64, (String, String)>;

/// A record with its pending lines and its earlier proposals.
struct Loaded {
    record: RecordRow,
    lines: Vec<Line>,
    earlier: Vec<(String, Proposal)>,
}

fn load_check(
    conn: &mut DbConn,
    record_id: i64,
    posted: &Posted,
    errors: &BTreeMap<i64, String>,
) -> Result<Loaded, AppError> {
    let record =
        records::find(conn, record_id)?.ok_or_else(|| AppError::not_found("That record"))?;
    let defs = fields::list(conn, record.record_kind(), true)?;
    let values = records::values(conn, &record, &defs)?;
    let def_of = |key: &str| defs.iter().find(|d| d.key == key);
    let lines = service::pending_for(conn, record_id)?
        .into_iter()
        .map(|proposal| {
            let def: Option<&FieldDef> = def_of(&proposal.field_key);
            let (choice, typed) = posted.get(&proposal.id).cloned().unwrap_or_default();
            Line {
                label: service::label_of(&defs, &proposal.field_key),
                input_type: def.map(|d| d.ftype().input_type()).unwrap_or("text"),
                is_document: def.is_some_and(|d| d.ftype() == FieldType::Document),
                options: def.map(FieldDef::option_list).unwrap_or_default(),
                current: values.get(&proposal.field_key).cloned().unwrap_or_default(),
                error: errors.get(&proposal.id).cloned(),
                choice,
                typed,
                proposal,
            }
        })
        .collect();
    let earlier = service::earlier_for(conn, record_id, 50)?
        .into_iter()
        .map(|p| (service::label_of(&defs, &p.field_key), p))
        .collect();
    Ok(Loaded {
        record,
        lines,
        earlier,
    })
}

/// What to show on the check-data page besides the record's current proposals.
#[derive(Default)]
struct CheckState {
    posted: Posted,
    errors: BTreeMap<i64, String>,
    outcome: Option<Outcome>,
    form_error: Option<String>,
}

async fn show_check(
    state: &AppState,
    req: &HttpRequest,
    ctx: Ctx,
    can_decide: bool,
    record_id: i64,
    status: StatusCode,
    shown: CheckState,
) -> Result<HttpResponse, AppError> {
    let CheckState {
        posted,
        errors,
        outcome,
        form_error,
    } = shown;
    let loaded = state
        .db(move |conn| load_check(conn, record_id, &posted, &errors))
        .await?;
    let view = CheckView {
        record: loaded.record,
        csrf: ctx.csrf.clone(),
        lines: loaded.lines,
        earlier: loaded.earlier,
        can_decide,
        outcome,
        form_error,
    };
    if is_htmx(req) {
        render(status, &CheckFragment { view })
    } else {
        render(status, &CheckPage { ctx, view })
    }
}

/// "Check data": every pending field side by side. Viewers see it without the choices.
#[get("/records/{id}/check")]
async fn check_page(
    state: web::Data<AppState>,
    me: SignedIn,
    req: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let can_decide = me.user.can(Role::Editor);
    show_check(
        &state,
        &req,
        me.ctx,
        can_decide,
        path.into_inner(),
        StatusCode::OK,
        CheckState::default(),
    )
    .await
}

/// Reads the form: `p` (each line's proposal id), `c<id>` (keep|accept|new), `v<id>` (the new
/// value) and `all` (accept|keep: the shortcuts). A value typed without a choice counts as
/// "new value", so the form works the same without JavaScript.
fn decisions_of(form: &[(String, String)]) -> (Vec<(i64, Choice)>, Posted) {
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let all = get("all");
    let mut decisions = Vec::new();
    let mut posted = Posted::new();
    for (_, id) in form.iter().filter(|(k, _)| k == "p") {
        let Ok(id) = id.parse::<i64>() else { continue };
        if posted.contains_key(&id) {
            continue; // a line sent twice is decided once
        }
        let choice = get(&format!("c{id}")).to_string();
        let typed = get(&format!("v{id}")).to_string();
        let decision = match (all, choice.as_str()) {
            ("accept", _) => Some(Choice::Accept),
            ("keep", _) => Some(Choice::Keep),
            (_, "accept") => Some(Choice::Accept),
            (_, "keep") => Some(Choice::Keep),
            (_, "new") => Some(Choice::NewValue(typed.clone())),
            _ if !typed.trim().is_empty() => Some(Choice::NewValue(typed.clone())),
            _ => None,
        };
        if let Some(decision) = decision {
            decisions.push((id, decision));
        }
        posted.insert(id, (choice, typed));
    }
    (decisions, posted)
}

/// Applies the decisions sent together; htmx gets the updated section, a plain form post a
/// redirect with the summary.
#[post("/records/{id}/check")]
async fn decide(
    state: web::Data<AppState>,
    me: EditorUser,
    session: Session,
    req: HttpRequest,
    path: web::Path<i64>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let record_id = path.into_inner();
    let (decisions, posted) = decisions_of(&form);
    if decisions.is_empty() {
        let message =
            "Choose Keep, Accept or New value on at least one line, or use Accept all or Keep all.";
        if !is_htmx(&req) {
            flash(&session, message);
            return Ok(see_other(&format!("/records/{record_id}/check")));
        }
        let shown = CheckState {
            posted,
            form_error: Some(message.into()),
            ..CheckState::default()
        };
        return show_check(
            &state,
            &req,
            me.ctx,
            true,
            record_id,
            StatusCode::UNPROCESSABLE_ENTITY,
            shown,
        )
        .await;
    }
    let actor = Actor::user(&me.user);
    let country = state.config.default_country;
    let result = state
        .db(move |conn| -> Result<_, AppError> {
            match service::decide(conn, record_id, &decisions, &actor, country) {
                Err(ReviewError::Invalid(errors)) => Ok(Err(errors)),
                other => Ok(Ok(other?)),
            }
        })
        .await?;
    match result {
        Ok(outcome) if !is_htmx(&req) => {
            flash(&session, outcome.summary());
            Ok(see_other(&format!("/records/{record_id}/check")))
        }
        Ok(outcome) => {
            let shown = CheckState {
                outcome: Some(outcome),
                ..CheckState::default()
            };
            show_check(&state, &req, me.ctx, true, record_id, StatusCode::OK, shown).await
        }
        Err(errors) => {
            let shown = CheckState {
                posted,
                errors,
                form_error: Some(
                    "Nothing was applied: correct the values marked below, then send the decisions again."
                        .into(),
                ),
                ..CheckState::default()
            };
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            show_check(&state, &req, me.ctx, true, record_id, status, shown).await
        }
    }
}

// ---- the desynchronised-records view ---------------------------------------------------

/// The view's parameters as they arrive in the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DesyncParams {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub process: String,
    #[serde(default)]
    pub after: String,
}

impl DesyncParams {
    fn filter(&self) -> DesyncFilter {
        DesyncFilter {
            kind: RecordKind::parse(&self.kind),
            source_id: self.source.parse().ok(),
            process_id: self.process.parse().ok(),
        }
    }

    /// The query string of the same filters, starting after `after`.
    pub fn link(&self, after: Option<i64>) -> String {
        let mut pairs: Vec<(&str, String)> = [
            ("kind", &self.kind),
            ("source", &self.source),
            ("process", &self.process),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.clone()))
        .collect();
        if let Some(after) = after {
            pairs.push(("after", after.to_string()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

pub struct DesyncView {
    pub params: DesyncParams,
    pub page: DesyncPage,
    /// (kind, field key) -> label
    pub labels: BTreeMap<(String, String), String>,
    pub sources: BTreeMap<i64, String>,
    pub processes: Vec<(i64, String)>,
}

impl DesyncView {
    pub fn label(&self, kind: &str, key: &str) -> String {
        self.labels
            .get(&(kind.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    pub fn owner(&self, record: &RecordRow) -> String {
        records::owner_label(record, &self.sources)
    }

    /// The query string of the next page, when there is one.
    pub fn next_link(&self) -> Option<String> {
        self.page
            .next_after
            .map(|after| self.params.link(Some(after)))
    }

    pub fn first_page(&self) -> bool {
        self.params.after.is_empty()
    }
}

#[derive(Template)]
#[template(path = "review/desync.html")]
struct DesyncListPage {
    ctx: Ctx,
    view: DesyncView,
}

#[derive(Template)]
#[template(path = "review/desync.html", block = "results")]
struct DesyncResults {
    view: DesyncView,
}

/// Every desynchronised record, filterable by kind, source and process, with counts.
#[get("/desync")]
async fn desync_page(
    state: web::Data<AppState>,
    me: SignedIn,
    req: HttpRequest,
    query: web::Query<DesyncParams>,
) -> Result<HttpResponse, AppError> {
    let params = query.into_inner();
    let filter = params.filter();
    let after = params.after.parse::<i64>().ok();
    let seen = definitions_seen(&req);
    let definitions = state.definitions.clone();
    let (page, labels, sources, processes) = state
        .db(move |conn| -> Result<_, AppError> {
            let definitions = definitions.at_least(conn, seen)?;
            let page = service::desynchronised(conn, &filter, after, PAGE_SIZE)?;
            let mut labels = BTreeMap::new();
            for kind in [RecordKind::Contact, RecordKind::Company] {
                for def in definitions.fields(kind, true) {
                    labels.insert((kind.as_str().to_string(), def.key), def.label);
                }
            }
            Ok((
                page,
                labels,
                definitions.sources.clone(),
                definitions.processes.clone(),
            ))
        })
        .await?;
    let view = DesyncView {
        params,
        page,
        labels,
        sources,
        processes,
    };
    if is_htmx(&req) {
        render(StatusCode::OK, &DesyncResults { view })
    } else {
        render(StatusCode::OK, &DesyncListPage { ctx: me.ctx, view })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_reads_as_decisions() {
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, Choice)>);
        let cases: Vec<Case> = vec![
            (
                vec![("p", "1"), ("c1", "keep"), ("p", "2"), ("c2", "accept")],
                vec![(1, Choice::Keep), (2, Choice::Accept)],
            ),
            (
                vec![("p", "1"), ("c1", "new"), ("v1", "x@example.org")],
                vec![(1, Choice::NewValue("x@example.org".into()))],
            ),
            // A typed value alone means "new value"; an untouched line is left pending.
            (
                vec![("p", "1"), ("v1", "typed"), ("p", "2"), ("v2", " ")],
                vec![(1, Choice::NewValue("typed".into()))],
            ),
            // The shortcuts decide every line, whatever was chosen on each.
            (
                vec![("p", "1"), ("c1", "keep"), ("p", "2"), ("all", "accept")],
                vec![(1, Choice::Accept), (2, Choice::Accept)],
            ),
            (
                vec![("p", "1"), ("c1", "accept"), ("p", "2"), ("all", "keep")],
                vec![(1, Choice::Keep), (2, Choice::Keep)],
            ),
            (vec![("p", "x"), ("cx", "keep")], vec![]),
        ];
        for (pairs, expected) in cases {
            assert_eq!(decisions_of(&form(&pairs)).0, expected, "{pairs:?}");
        }
    }
}
