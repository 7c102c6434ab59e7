//! Follow-up templates: saved after a check (syntax, known variables), previewed for a record,
//! rendered for every record of a list into CSV rows. A record's variables are its built-in
//! and custom fields (`contact.tag1`), and for a contact its company's (`company.max_credit`).

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::sandbox::{self, Problem};
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, RecordKind};
use crate::fields::service as fields;
use crate::records::list;
use crate::records::table::ListParams;
use crate::records::writer::{self, RecordState};
use crate::schema::followup_templates;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = followup_templates)]
pub struct FollowupTemplate {
    pub id: i64,
    pub name: String,
    #[diesel(deserialize_as = String)]
    pub kind: RecordKind,
    pub subject: String,
    pub body: String,
    pub html: bool,
    pub locked: bool,
    pub updated_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// What an editor types.
#[derive(Debug, Clone)]
pub struct TemplateInput {
    pub name: String,
    pub kind: RecordKind,
    pub subject: String,
    pub body: String,
    pub html: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Everything wrong with it, one problem per line.
    #[error("{}", .0.iter().map(|p| p.0.clone()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("This template is locked by an admin.")]
    Locked,
    #[error("That template does not exist.")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DieselError),
}

impl TemplateError {
    fn one(message: impl Into<String>) -> Self {
        TemplateError::Invalid(vec![Problem(message.into())])
    }
}

pub fn list(conn: &mut DbConn) -> QueryResult<Vec<FollowupTemplate>> {
    followup_templates::table
        .order(followup_templates::name.asc())
        .select(FollowupTemplate::as_select())
        .load(conn)
}

/// (id, name) of the templates for records of `kind`: the list pages offer to render them.
pub fn names_for(conn: &mut DbConn, kind: RecordKind) -> QueryResult<Vec<(i64, String)>> {
    followup_templates::table
        .filter(followup_templates::kind.eq(kind.as_str()))
        .order(followup_templates::name.asc())
        .select((followup_templates::id, followup_templates::name))
        .load(conn)
}

/// What is wrong with a template's subject and body, given the variables there are: checked
/// at save, and again in a saved template's preview (a field it uses may have been archived
/// since).
pub fn problems(known: &BTreeSet<String>, subject: &str, body: &str, html: bool) -> Vec<Problem> {
    sandbox::check(&[("Subject", subject), ("Body", body)], html, known)
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<FollowupTemplate>> {
    followup_templates::table
        .find(id)
        .select(FollowupTemplate::as_select())
        .first(conn)
        .optional()
}

/// The variables a template of `kind` may use, by name.
pub fn known_variables(conn: &mut DbConn, kind: RecordKind) -> QueryResult<BTreeSet<String>> {
    let mut known = BTreeSet::new();
    let mut add = |prefix: &str, defs: &[FieldDef]| {
        known.insert(format!("{prefix}.id"));
        for def in defs {
            known.insert(format!("{prefix}.{}", def.key));
        }
    };
    let companies = fields::list(conn, RecordKind::Company, false)?;
    if kind == RecordKind::Contact {
        add("contact", &fields::list(conn, RecordKind::Contact, false)?);
    }
    add("company", &companies);
    Ok(known)
}

/// Templates whose text names `key` of `kind` (for a warning before that field is archived).
pub fn using_field(conn: &mut DbConn, kind: RecordKind, key: &str) -> QueryResult<Vec<String>> {
    let prefix = match kind {
        RecordKind::Contact => "contact",
        RecordKind::Company => "company",
    };
    let needle = format!("{prefix}.{key}");
    Ok(list(conn)?
        .into_iter()
        .filter(|t| {
            [&t.subject, &t.body].iter().any(|text| {
                text.match_indices(&needle).any(|(at, _)| {
                    // `contact.tag1` but not `contact.tag10`.
                    !text[at + needle.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
        })
        .map(|t| t.name)
        .collect())
}

fn checked(conn: &mut DbConn, input: &TemplateInput) -> Result<(), TemplateError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TemplateError::one(
            "The name is required (at most 100 characters).",
        ));
    }
    let known = known_variables(conn, input.kind)?;
    let problems = problems(&known, &input.subject, &input.body, input.html);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TemplateError::Invalid(problems))
    }
}

fn name_taken(e: DieselError, name: &str) -> TemplateError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            TemplateError::one(format!("A template named '{name}' already exists."))
        }
        other => other.into(),
    }
}

pub fn create(conn: &mut DbConn, input: &TemplateInput, by: &str) -> Result<i64, TemplateError> {
    checked(conn, input)?;
    let now = db::now();
    diesel::insert_into(followup_templates::table)
        .values((
            followup_templates::name.eq(input.name.trim()),
            followup_templates::kind.eq(input.kind.as_str()),
            followup_templates::subject.eq(&input.subject),
            followup_templates::body.eq(&input.body),
            followup_templates::html.eq(input.html),
            followup_templates::updated_by.eq(by),
            followup_templates::created_at.eq(now),
            followup_templates::updated_at.eq(now),
        ))
        .returning(followup_templates::id)
        .get_result(conn)
        .map_err(|e| name_taken(e, input.name.trim()))
}

/// Saves a template; a locked one only by an admin (`admin`).
pub fn update(
    conn: &mut DbConn,
    id: i64,
    input: &TemplateInput,
    by: &str,
    admin: bool,
) -> Result<(), TemplateError> {
    let current = find(conn, id)?.ok_or(TemplateError::NotFound)?;
    if current.locked && !admin {
        return Err(TemplateError::Locked);
    }
    checked(conn, input)?;
    diesel::update(followup_templates::table.find(id))
        .set((
            followup_templates::name.eq(input.name.trim()),
            followup_templates::kind.eq(input.kind.as_str()),
            followup_templates::subject.eq(&input.subject),
            followup_templates::body.eq(&input.body),
            followup_templates::html.eq(input.html),
            followup_templates::updated_by.eq(by),
            followup_templates::updated_at.eq(db::now()),
        ))
        .execute(conn)
        .map_err(|e| name_taken(e, input.name.trim()))?;
    Ok(())
}

pub fn set_locked(conn: &mut DbConn, id: i64, locked: bool) -> Result<(), TemplateError> {
    let changed = diesel::update(followup_templates::table.find(id))
        .set(followup_templates::locked.eq(locked))
        .execute(conn)?;
    if changed == 0 {
        return Err(TemplateError::NotFound);
    }
    Ok(())
}

/// A record's fields as template variables: every known field, blank when it has no value.
fn fields_of(id: i64, state: Option<&RecordState>, defs: &[FieldDef]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(
        "id".into(),
        state.map_or(serde_json::Value::Null, |_| id.into()),
    );
    for def in defs {
        let value = state.map(|s| s.get(def).to_string()).unwrap_or_default();
        map.insert(def.key.clone(), value.into());
    }
    serde_json::Value::Object(map)
}

/// Everything needed to render a page of records: field definitions and states.
struct Renderer {
    template: FollowupTemplate,
    contact_defs: Vec<FieldDef>,
    company_defs: Vec<FieldDef>,
    /// A contact template that reads its company's fields: a contact without a company whose
    /// rendering fails is told so (a template may test `{% if company %}`).
    reads_company: bool,
}

/// One record's rendering: its subject and body, or why it could not be rendered.
pub struct Rendered {
    pub record_id: i64,
    pub email: String,
    pub result: Result<(String, String), Problem>,
}

impl Renderer {
    fn new(conn: &mut DbConn, template: FollowupTemplate) -> QueryResult<Self> {
        let reads_company = template.kind == RecordKind::Contact
            && (sandbox::reads(&template.subject, "company")
                || sandbox::reads(&template.body, "company"));
        Ok(Renderer {
            template,
            contact_defs: fields::list(conn, RecordKind::Contact, false)?,
            company_defs: fields::list(conn, RecordKind::Company, false)?,
            reads_company,
        })
    }

    /// Renders the records `ids` (of the template's kind) in a fixed number of queries.
    fn render(&self, conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<Rendered>> {
        let states: HashMap<i64, RecordState> = writer::load_states(conn, ids)?
            .into_iter()
            .map(|(id, (_, s))| (id, s))
            .collect();
        let company_ids: Vec<i64> = states.values().filter_map(|s| s.company_id).collect();
        let companies: HashMap<i64, RecordState> = if self.template.kind == RecordKind::Contact {
            writer::load_states(conn, &company_ids)?
                .into_iter()
                .map(|(id, (_, s))| (id, s))
                .collect()
        } else {
            HashMap::new()
        };
        let t = &self.template;
        Ok(ids
            .iter()
            .filter_map(|id| {
                let state = states.get(id)?;
                let context = match t.kind {
                    RecordKind::Contact => {
                        // No company is `none`: `{% if company %}` tells, a field of it fails.
                        let company = match state.company_id {
                            Some(company_id) => fields_of(
                                company_id,
                                companies.get(&company_id),
                                &self.company_defs,
                            ),
                            None => serde_json::Value::Null,
                        };
                        serde_json::json!({
                            "contact": fields_of(*id, Some(state), &self.contact_defs),
                            "company": company,
                        })
                    }
                    RecordKind::Company => serde_json::json!({
                        "company": fields_of(*id, Some(state), &self.company_defs),
                    }),
                };
                let result = sandbox::render("Subject", &t.subject, false, &context)
                    .and_then(|subject| {
                        Ok((subject, sandbox::render("Body", &t.body, t.html, &context)?))
                    })
                    .map_err(|problem| {
                        if self.reads_company && state.company_id.is_none() {
                            Problem(format!(
                                "{} has no company; the template uses its company's fields",
                                state.name
                            ))
                        } else {
                            problem
                        }
                    });
                Some(Rendered {
                    record_id: *id,
                    email: state.email.clone(),
                    result,
                })
            })
            .collect())
    }
}

/// The template rendered for one record of its kind.
pub fn preview(
    conn: &mut DbConn,
    template_id: i64,
    record_id: i64,
) -> Result<Rendered, TemplateError> {
    let template = find(conn, template_id)?.ok_or(TemplateError::NotFound)?;
    let kind = template.kind;
    let renderer = Renderer::new(conn, template)?;
    let found = crate::records::service::find(conn, record_id)?
        .filter(|r| r.record_kind() == kind)
        .ok_or_else(|| TemplateError::one(format!("There is no {kind} #{record_id}.")))?;
    renderer
        .render(conn, &[found.id])?
        .pop()
        .ok_or_else(|| TemplateError::one(format!("There is no {kind} #{record_id}.")))
}

/// The query of a list's first `limit` records of `kind`, without counting them.
fn first_page(
    conn: &mut DbConn,
    kind: RecordKind,
    list: &ListParams,
    limit: i64,
) -> QueryResult<list::ListQuery> {
    let defs = fields::list(conn, kind, false)?;
    let mut query = list.query(kind, &defs);
    query.after = None;
    query.count = false;
    query.limit = limit;
    Ok(query)
}

/// Why a list cannot be rendered at all, said before a download starts: the template's
/// problems (a field archived since it was saved, a construct refused since), or every
/// record of the list's first page failing, with the first one's problem.
pub fn render_check(
    conn: &mut DbConn,
    template_id: i64,
    list: &ListParams,
) -> Result<(), TemplateError> {
    let template = find(conn, template_id)?.ok_or(TemplateError::NotFound)?;
    let kind = template.kind;
    let known = known_variables(conn, kind)?;
    let problems = problems(&known, &template.subject, &template.body, template.html);
    if !problems.is_empty() {
        return Err(TemplateError::Invalid(problems));
    }
    let query = first_page(conn, kind, list, 50)?;
    let ids: Vec<i64> = list::page(conn, &query, &[])?
        .rows
        .iter()
        .map(|r| r.record.id)
        .collect();
    let rendered = Renderer::new(conn, template)?.render(conn, &ids)?;
    let tried = rendered.len();
    let mut failures = rendered.into_iter().map(|r| r.result.err());
    match failures.next() {
        Some(Some(first)) if failures.all(|failed| failed.is_some()) => {
            Err(TemplateError::one(format!(
                "No {kind} could be rendered (the first {tried} of the list all failed): {first}"
            )))
        }
        _ => Ok(()),
    }
}

/// Renders the template for every record of its kind a list selects (its search, owner,
/// flags and custom-field filters; every record when none), as CSV rows
/// `record_id,email,subject,body,error`, a page of records at a time.
pub fn render_csv(
    conn: &mut DbConn,
    template_id: i64,
    list: &ListParams,
    out: impl std::io::Write,
) -> Result<(), crate::sync::engine::ImportError> {
    use crate::sync::engine::ImportError;
    let template = find(conn, template_id)?
        .ok_or_else(|| ImportError::Refused("That template does not exist.".into()))?;
    let mut query = first_page(conn, template.kind, list, 500)?;
    let renderer = Renderer::new(conn, template)?;
    let mut writer = crate::records::export::SafeCsv::new(out);
    let failed = |e: csv::Error| ImportError::Refused(format!("cannot write the rows: {e}"));
    writer
        .row(["record_id", "email", "subject", "body", "error"])
        .map_err(failed)?;
    loop {
        let page = list::page(conn, &query, &[])?;
        let ids: Vec<i64> = page.rows.iter().map(|r| r.record.id).collect();
        for rendered in renderer.render(conn, &ids)? {
            let (subject, body, error) = match rendered.result {
                Ok((subject, body)) => (subject, body, String::new()),
                Err(problem) => (String::new(), String::new(), problem.0),
            };
            writer
                .row([
                    rendered.record_id.to_string(),
                    rendered.email,
                    subject,
                    body,
                    error,
                ])
                .map_err(failed)?;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    writer
        .flush()
        .map_err(|e| ImportError::Refused(format!("cannot write the rows: {e}")))?;
    Ok(())
}
