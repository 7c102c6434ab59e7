//! One chunk of an import: read what its rows need in a few queries, then decide every row in
//! memory with the pure `decide` and `apply_rules`, in file order, as if the rows had been
//! applied one at a time (a row sees what the rows before it did; in a dry run, nothing).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::decide::{self, Candidate, Decision};
use super::model::{FieldChange, Outcome};
use crate::db::DbConn;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::validate::{norm_phone, norm_text, normalize_for, PhoneCountry, MAX_ID_CHARS};
use crate::records::model::RecordRow;
use crate::records::writer::{self, Catalog, CreatedHistory, Edit, RecordState};
use crate::review::service::NewProposal;
use crate::rules::{self, FieldRule};
use crate::schema::{import_rows, record_links, records};
use crate::sources::model::{ColumnValue, OnInvalid, RowKey, Source};
use crate::text;

/// Everything a row needs that does not change during a run.
pub struct RunRules {
    pub source: Source,
    pub kind: RecordKind,
    pub key: RowKey,
    pub header_len: usize,
    pub headers: Vec<String>,
    /// (where the value is, column name or pattern, field, rule)
    pub columns: Vec<(ColumnValue, String, FieldDef, FieldRule)>,
    /// A contact source's column naming the contact's company (linked by name, created when
    /// missing), with its rule: `always` and `fill_blanks` apply, `review` and `never` leave
    /// the company alone.
    pub company: Option<(ColumnValue, crate::rules::Rule)>,
    pub defs: Vec<FieldDef>,
    pub country: PhoneCountry,
    pub on_invalid: OnInvalid,
    pub dry_run: bool,
    pub catalog: Catalog,
}

impl RunRules {
    fn rules(&self) -> Vec<FieldRule> {
        self.columns.iter().map(|(_, _, _, r)| r.clone()).collect()
    }
}

/// What happened to one row: becomes a line of the report.
#[derive(Debug, Clone, Default)]
pub struct RowOutcome {
    pub line: i64,
    pub external_id: String,
    pub outcome: Outcome,
    pub record_id: Option<i64>,
    pub reason: String,
    pub changes: Vec<FieldChange>,
    pub candidates: Vec<i64>,
    /// Kept only where a person may act on the row later (ambiguous and error rows).
    pub values: BTreeMap<String, String>,
    pub record_created: bool,
    pub link_added: bool,
    pub previous_owner: Option<i64>,
    pub owner_changed: bool,
    pub record_updated_at: Option<NaiveDateTime>,
    pub warnings: usize,
}

pub fn error_row(line: i64, external_id: &str, reason: String) -> RowOutcome {
    RowOutcome {
        line,
        external_id: external_id.to_string(),
        outcome: Outcome::Error,
        reason,
        ..Default::default()
    }
}

/// A row that passed the checks that need no database.
#[derive(Debug, Clone)]
pub struct ReadyRow {
    pub line: i64,
    pub external_id: String,
    pub values: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    /// Normalised name, email and phone for identity matching.
    pub identity: (String, String, String),
    /// The company named on the row ('' when none).
    pub company: String,
}

#[derive(Debug, Clone)]
pub enum Parsed {
    Done(RowOutcome),
    Ready(ReadyRow),
}

/// Validates one file row: its shape, its id and every mapped value. `first_line` says where
/// an earlier row of the run had the same external id.
/// Why an external id cannot be stored, if it cannot.
fn id_problem(external_id: &str) -> Option<String> {
    if external_id.chars().any(text::is_stray_control) {
        return Some(format!(
            "'{}' holds a control character (is the file plain text?)",
            text::storable(external_id)
        ));
    }
    let length = external_id.chars().count();
    (length > MAX_ID_CHARS)
        .then(|| format!("is {length} characters long; ids have at most {MAX_ID_CHARS}"))
}

/// A row's external id: its id column, or for a source matching by fields, their values as
/// identity compares them (case and spaces folded, phones as digits) joined by `|`; empty when
/// one of them is blank or invalid.
pub fn external_id_of(rules: &RunRules, record: &csv::StringRecord) -> String {
    let fields = match &rules.key {
        RowKey::Column(index) => return record.get(*index).unwrap_or("").trim().to_string(),
        RowKey::Fields(fields) => fields,
    };
    let mut parts = Vec::with_capacity(fields.len());
    for key in fields {
        let Some((value, _, def, _)) = rules.columns.iter().find(|c| &c.2.key == key) else {
            return String::new();
        };
        let part = match normalize_for(def, &value.read(record), rules.country) {
            Ok(v) if def.ftype() == FieldType::Phone => norm_phone(&v),
            Ok(v) => norm_text(&v),
            Err(_) => String::new(),
        };
        if part.is_empty() {
            return String::new();
        }
        parts.push(part);
    }
    parts.join("|")
}

pub fn parse_row(
    rules: &RunRules,
    line: i64,
    record: &csv::StringRecord,
    external_id: String,
    first_line: Option<i64>,
) -> Parsed {
    if record.len() != rules.header_len {
        return Parsed::Done(error_row(
            line,
            &external_id,
            format!(
                "Line {line} has {} fields; the header has {}. The row was not imported.",
                record.len(),
                rules.header_len
            ),
        ));
    }
    if let Some(index) = record.iter().position(|cell| cell.contains('\u{FFFD}')) {
        return Parsed::Done(error_row(
            line,
            &external_id,
            format!(
                "Line {line}, column '{}': a byte that is not UTF-8 (shown as \u{FFFD}). The row was not imported; import the file as Windows-1252 if that is what it is.",
                rules.headers.get(index).map(String::as_str).unwrap_or("?")
            ),
        ));
    }
    if let Some(problem) = id_problem(&external_id) {
        return Parsed::Done(error_row(
            line,
            &external_id,
            format!("Line {line}: the id {problem}. The row was not imported."),
        ));
    }
    if external_id.is_empty() {
        let reason = match &rules.key {
            RowKey::Column(_) => format!(
                "Line {line}: the id column '{}' is empty.",
                rules.source.id_column
            ),
            RowKey::Fields(fields) => format!(
                "Line {line}: no valid {} to match the row by (this source matches rows by {}). The row was not imported.",
                fields.join(" and "),
                fields.join(" + ")
            ),
        };
        return Parsed::Done(error_row(line, "", reason));
    }
    if let Some(first) = first_line {
        return Parsed::Done(error_row(
            line,
            &external_id,
            format!("Line {line}: the external id {external_id} already appeared on line {first}; only line {first} was applied."),
        ));
    }
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    let mut skipped_identity: BTreeMap<&str, String> = BTreeMap::new();
    for (value, column, def, _) in &rules.columns {
        let raw = value.read(record);
        let raw = raw.as_ref();
        match normalize_for(def, raw, rules.country) {
            Ok(value) => {
                values.insert(def.key.clone(), value);
            }
            // A blank name is only an error for a new record; caught at creation.
            Err(_) if def.required() && raw.trim().is_empty() => {
                values.insert(def.key.clone(), String::new());
            }
            Err(message) => {
                if matches!(def.key.as_str(), "name" | "email" | "phone") {
                    skipped_identity.insert(def.key.as_str(), raw.to_string());
                }
                problems.push((column.clone(), message));
            }
        }
    }
    if !problems.is_empty() && rules.on_invalid == OnInvalid::RejectRow {
        let text: Vec<String> = problems
            .iter()
            .map(|(column, message)| format!("column '{column}': {message}"))
            .collect();
        let mut row = error_row(
            line,
            &external_id,
            format!(
                "Line {line}, {}. The row was not imported.",
                text.join("; ")
            ),
        );
        row.values = values;
        return Parsed::Done(row);
    }
    let warnings = problems
        .into_iter()
        .map(|(column, message)| {
            format!("column '{column}': {message}; the field was left unchanged.")
        })
        .collect();
    // An invalid name, email or phone still identifies the row as typed.
    let identity_part = |key: &str| -> String {
        skipped_identity
            .get(key)
            .cloned()
            .or_else(|| values.get(key).cloned())
            .unwrap_or_default()
    };
    let identity = (
        norm_text(&identity_part("name")),
        norm_text(&identity_part("email")),
        norm_phone(&identity_part("phone")),
    );
    let company = rules
        .company
        .as_ref()
        .map(|(value, _)| {
            value
                .read(record)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Parsed::Ready(ReadyRow {
        line,
        external_id,
        values,
        warnings,
        identity,
        company,
    })
}

/// What the database knows about a chunk's rows, read in a few queries.
pub struct ChunkState {
    /// External id -> record linked to it under this source.
    links: HashMap<String, i64>,
    /// Identity -> records of the kind with that name, email and phone, by id.
    identity: HashMap<(String, String, String), Vec<i64>>,
    /// Records linked to this source (under any id): never identity candidates.
    linked_here: HashSet<i64>,
    states: HashMap<i64, RecordState>,
    updated_at: HashMap<i64, NaiveDateTime>,
    /// For "apply this plan": the dry run's record and its updated_at then, by line.
    plan: HashMap<i64, (Option<i64>, Option<NaiveDateTime>)>,
    /// Normalised company name -> active companies of that name, for the rows' companies.
    companies: HashMap<String, Vec<i64>>,
}

/// Rows per `IN (...)` list.
const IN_LIST: usize = 5_000;

/// Identities per statement of `identity_matches`: every statement has this many, the last
/// padded, so that it is one prepared statement.
const IDENTITIES_PER_QUERY: usize = 200;

#[derive(QueryableByName)]
struct IdentityMatch {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    phone: String,
}

/// The active records of `kind` whose normalised name, email and phone are one of
/// `identities`, each looked up by its whole key in `records_identity_idx`: a chunk reads
/// only the records that match its rows, however many share a name.
fn identity_matches(
    conn: &mut DbConn,
    kind: RecordKind,
    identities: &[&(String, String, String)],
) -> QueryResult<Vec<IdentityMatch>> {
    use diesel::sql_types::{Text, Untyped};
    let Some(last) = identities.last() else {
        return Ok(Vec::new());
    };
    let mut query = crate::db::kept_sql::<Untyped>(
        "SELECT r.id AS id, r.name_norm AS name, r.email_norm AS email, r.phone_norm AS phone \
         FROM (VALUES ",
    );
    for n in 0..IDENTITIES_PER_QUERY {
        let (name, email, phone) = identities.get(n).unwrap_or(last);
        query = query
            .sql(if n == 0 { "(" } else { ", (" })
            .bind::<Text, _>(name.clone())
            .sql(", ")
            .bind::<Text, _>(email.clone())
            .sql(", ")
            .bind::<Text, _>(phone.clone())
            .sql(")");
    }
    query
        // CROSS JOIN: SQLite keeps the identities as the outer loop. With statistics of a
        // smaller table it scanned the records instead, probing the identities, once per
        // chunk (a first import of 131,072 rows took 25 times longer).
        .sql(") AS wanted CROSS JOIN records r WHERE r.kind = ")
        .bind::<Text, _>(kind.as_str().to_string())
        .sql(
            " AND r.archived = false AND r.name_norm = wanted.column1 \
             AND r.email_norm = wanted.column2 AND r.phone_norm = wanted.column3",
        )
        .load(conn)
}

pub fn load_chunk(
    conn: &mut DbConn,
    rules: &RunRules,
    rows: &[&ReadyRow],
    plan_of: Option<i64>,
) -> QueryResult<ChunkState> {
    let mut links = HashMap::new();
    let ext_ids: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
    for part in ext_ids.chunks(IN_LIST) {
        for (external_id, record_id) in record_links::table
            .filter(record_links::source_id.eq(rules.source.id))
            .filter(record_links::external_id.eq_any(part))
            .select((record_links::external_id, record_links::record_id))
            .load::<(String, i64)>(conn)?
        {
            links.insert(external_id, record_id);
        }
    }
    let mut wanted: Vec<&(String, String, String)> = rows
        .iter()
        .filter(|r| !links.contains_key(&r.external_id))
        .map(|r| &r.identity)
        // A NUL (an invalid value, kept for identity as typed) is in no stored record, and
        // PostgreSQL refuses it in a bound text.
        .filter(|(name, email, phone)| ![name, email, phone].iter().any(|v| v.contains('\0')))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut identity: HashMap<(String, String, String), Vec<i64>> = HashMap::new();
    for part in wanted.chunks(IDENTITIES_PER_QUERY) {
        for found in identity_matches(conn, rules.kind, part)? {
            let ids = identity
                .entry((found.name, found.email, found.phone))
                .or_default();
            if !ids.contains(&found.id) {
                ids.push(found.id);
            }
        }
    }
    // Candidates in id order, as the decision lists them (sorted here: an ORDER BY would let
    // the planner walk the whole table in id order instead of the name index).
    for ids in identity.values_mut() {
        ids.sort_unstable();
    }
    let candidate_ids: Vec<i64> = identity.values().flatten().copied().collect();
    let mut linked_here = HashSet::new();
    for part in candidate_ids.chunks(IN_LIST) {
        // By record (record_links_record_idx), the source checked here: filtering on the
        // source in SQL lets SQLite walk every link of the source instead.
        linked_here.extend(
            record_links::table
                .filter(record_links::record_id.eq_any(part))
                .select((record_links::record_id, record_links::source_id))
                .load::<(i64, i64)>(conn)?
                .into_iter()
                .filter(|(_, source)| *source == rules.source.id)
                .map(|(record, _)| record),
        );
    }
    let mut ids: Vec<i64> = links.values().copied().chain(candidate_ids).collect();
    ids.sort_unstable();
    ids.dedup();
    let loaded = writer::load_states(conn, &ids)?;
    let mut states = HashMap::with_capacity(loaded.len());
    let mut updated_at = HashMap::with_capacity(loaded.len());
    for (id, (row, state)) in loaded {
        updated_at.insert(id, row.updated_at);
        states.insert(id, state);
    }
    let plan = match (plan_of, rows.first(), rows.last()) {
        (Some(dry), Some(first), Some(last)) => import_rows::table
            .filter(import_rows::run_id.eq(dry))
            .filter(import_rows::line.between(first.line, last.line))
            .select((
                import_rows::line,
                import_rows::record_id,
                import_rows::record_updated_at,
            ))
            .load::<(i64, Option<i64>, Option<NaiveDateTime>)>(conn)?
            .into_iter()
            .map(|(line, record, at)| (line, (record, at)))
            .collect(),
        _ => HashMap::new(),
    };
    let mut company_names: Vec<String> = rows
        .iter()
        .filter(|r| !r.company.is_empty())
        .map(|r| norm_text(&r.company))
        .collect();
    company_names.sort_unstable();
    company_names.dedup();
    let mut companies: HashMap<String, Vec<i64>> = HashMap::new();
    for part in company_names.chunks(IN_LIST) {
        for (id, name) in records::table
            .filter(records::kind.eq(RecordKind::Company.as_str()))
            .filter(records::archived.eq(false))
            .filter(records::name_norm.eq_any(part))
            .select((records::id, records::name_norm))
            .load::<(i64, String)>(conn)?
        {
            companies.entry(name).or_default().push(id);
        }
    }
    for ids in companies.values_mut() {
        ids.sort_unstable();
    }
    Ok(ChunkState {
        links,
        identity,
        linked_here,
        states,
        updated_at,
        plan,
        companies,
    })
}

/// The chunk's plan: one report line per row, and what to write.
pub struct ChunkPlan {
    pub outcomes: Vec<RowOutcome>,
    /// (index into `outcomes`, edit): creates fill the report line's record id once written.
    pub edits: Vec<(usize, Edit)>,
    pub proposals: Vec<NewProposal>,
    /// Companies rows named that do not exist yet: written before `edits`, whose entries
    /// at `dependents` (indexes into `edits`) then get the new company's id.
    pub new_companies: Vec<NewCompany>,
}

pub struct NewCompany {
    pub name: String,
    pub dependents: Vec<usize>,
}

/// What a row's company column asks for.
enum CompanyChoice {
    Nothing,
    Existing(i64),
    /// Index into `ChunkPlan::new_companies`.
    New(usize),
    Several(Vec<i64>),
}

impl CompanyChoice {
    fn of(row: &ReadyRow, db: &ChunkState, plan: &mut ChunkPlan) -> Self {
        if row.company.is_empty() {
            return CompanyChoice::Nothing;
        }
        let key = norm_text(&row.company);
        match db.companies.get(&key).map(Vec::as_slice) {
            Some([id]) => CompanyChoice::Existing(*id),
            Some(ids) if ids.len() > 1 => CompanyChoice::Several(ids.to_vec()),
            _ => {
                let known = plan
                    .new_companies
                    .iter()
                    .position(|c| norm_text(&c.name) == key);
                CompanyChoice::New(known.unwrap_or_else(|| {
                    plan.new_companies.push(NewCompany {
                        name: row.company.clone(),
                        dependents: Vec::new(),
                    });
                    plan.new_companies.len() - 1
                }))
            }
        }
    }

    /// Sets the company on the edit if the rule lets it and it changes; the report's change
    /// and reason, and for a new company, that `edit_index` waits for its id.
    fn apply(
        &self,
        rule: crate::rules::Rule,
        row: &ReadyRow,
        edit: &mut Edit,
        edit_index: usize,
        plan: &mut ChunkPlan,
        out: &mut RowOutcome,
    ) {
        use crate::rules::Rule;
        let current = edit.after.company_id;
        let allowed = match rule {
            Rule::Always => true,
            Rule::FillBlanks => current.is_none(),
            Rule::Review | Rule::Never => false,
        };
        let old = current.map(|id| format!("#{id}")).unwrap_or_default();
        match self {
            CompanyChoice::Existing(id) if allowed && current != Some(*id) => {
                edit.after.company_id = Some(*id);
                out.changes.push(FieldChange {
                    field: "company".into(),
                    old,
                    new: format!("#{id} {}", row.company),
                });
                out.reason
                    .push_str(&format!(" Company: {} (#{id}).", row.company));
            }
            CompanyChoice::New(index) if allowed => {
                if let Some(company) = plan.new_companies.get_mut(*index) {
                    company.dependents.push(edit_index);
                }
                out.changes.push(FieldChange {
                    field: "company".into(),
                    old,
                    new: row.company.clone(),
                });
                out.reason
                    .push_str(&format!(" Company: {}, a new company record.", row.company));
            }
            _ => {}
        }
    }
}

/// A new record from a row's values, owned by the source and linked to the external id, and
/// its values as report changes. Values of fields not in `defs` are left out.
pub fn new_record(
    kind: RecordKind,
    defs: &[FieldDef],
    source_id: i64,
    external_id: &str,
    values: &BTreeMap<String, String>,
) -> (Edit, Vec<FieldChange>) {
    let mut state = RecordState::blank(kind);
    let mut changes = Vec::new();
    for (key, value) in values.iter().filter(|(_, v)| !v.is_empty()) {
        if let Some(def) = defs.iter().find(|d| &d.key == key) {
            state.set(def, value);
            changes.push(FieldChange {
                field: key.clone(),
                old: String::new(),
                new: value.clone(),
            });
        }
    }
    state.owner_source_id = Some(source_id);
    let mut edit = Edit::create(state);
    edit.link.push((source_id, external_id.to_string()));
    edit.created_history = CreatedHistory::Summary;
    (edit, changes)
}

/// The field rules against an edit's current values: writes go into the edit (a blank name
/// never), proposals come back for a person to decide.
pub fn apply_field_rules(
    field_rules: &[FieldRule],
    defs: &[FieldDef],
    record_id: i64,
    edit: &mut Edit,
    incoming: &BTreeMap<String, String>,
) -> (Vec<FieldChange>, Vec<NewProposal>) {
    let current = edit.after.values(defs);
    let result = rules::apply_rules(field_rules, &current, incoming);
    let mut changes = Vec::new();
    for (key, value) in &result.writes {
        if key == "name" && value.is_empty() {
            continue;
        }
        let Some(def) = defs.iter().find(|d| &d.key == key) else {
            continue;
        };
        let old = edit.after.get(def).to_string();
        if &old != value {
            edit.after.set(def, value);
            changes.push(FieldChange {
                field: key.clone(),
                old,
                new: value.clone(),
            });
        }
    }
    // A field missing from `defs` (archived) gets no proposal, as it gets no write.
    let proposals = result
        .proposals
        .into_iter()
        .filter(|(key, _)| defs.iter().any(|d| &d.key == key))
        .map(|(key, proposed)| NewProposal {
            record_id,
            current: current.get(&key).cloned().unwrap_or_default(),
            field_key: key,
            proposed,
        })
        .collect();
    (changes, proposals)
}

fn candidate(catalog: &Catalog, id: i64, state: &RecordState) -> Candidate {
    Candidate {
        record_id: id,
        owner: state
            .owner_source_id
            .map(|owner| (owner, catalog.source_name(owner))),
        forced_manual: state.forced_manual,
    }
}

/// Decides every row of the chunk, in order, against the chunk's state.
pub fn plan_chunk(
    rules: &RunRules,
    parsed: &[Parsed],
    mut db: ChunkState,
    now: NaiveDateTime,
) -> ChunkPlan {
    let field_rules = rules.rules();
    let source = &rules.source;
    let mut plan = ChunkPlan {
        outcomes: Vec::with_capacity(parsed.len()),
        edits: Vec::new(),
        proposals: Vec::new(),
        new_companies: Vec::new(),
    };
    for item in parsed {
        let row = match item {
            Parsed::Done(outcome) => {
                plan.outcomes.push(outcome.clone());
                continue;
            }
            Parsed::Ready(row) => row,
        };
        let linked = db
            .links
            .get(&row.external_id)
            .and_then(|id| db.states.get(id).map(|s| candidate(&rules.catalog, *id, s)));
        let identity: Vec<Candidate> = match (&linked, db.identity.get(&row.identity)) {
            (None, Some(ids)) => ids
                .iter()
                .filter(|id| !db.linked_here.contains(id))
                .filter_map(|id| {
                    let state = db.states.get(id)?;
                    (!state.archived).then(|| candidate(&rules.catalog, *id, state))
                })
                .collect(),
            _ => Vec::new(),
        };
        let decision = decide::decide(
            (source.id, &source.name),
            &row.external_id,
            linked.as_ref(),
            &identity,
        );
        let company_rule = rules.company.as_ref().map(|(_, rule)| *rule);
        // Only a rule that may set the company looks it up (and may create it).
        let company = match company_rule {
            Some(crate::rules::Rule::Always | crate::rules::Rule::FillBlanks) => {
                CompanyChoice::of(row, &db, &mut plan)
            }
            _ => CompanyChoice::Nothing,
        };
        if let CompanyChoice::Several(ids) = &company {
            // Held like an ambiguous row, to be imported again once one company is kept.
            let listed: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
            let mut held = error_row(
                row.line,
                &row.external_id,
                format!(
                    "Line {}: several companies are named '{}' ({}); the row was held. Archive or rename all but one, then import it again.",
                    row.line,
                    row.company,
                    listed.join(", ")
                ),
            );
            held.outcome = Outcome::Ambiguous;
            held.values = row.values.clone();
            plan.outcomes.push(held);
            continue;
        }
        let mut out = RowOutcome {
            line: row.line,
            external_id: row.external_id.clone(),
            warnings: row.warnings.len(),
            ..Default::default()
        };
        let index = plan.outcomes.len();
        match decision {
            Decision::Ignore { record_id, reason } => {
                out.outcome = Outcome::Ignored;
                out.record_id = Some(record_id);
                out.reason = reason;
            }
            Decision::Ambiguous { candidates, reason } => {
                out.outcome = Outcome::Ambiguous;
                out.candidates = candidates;
                out.reason = reason;
                out.values = row.values.clone();
            }
            Decision::Create { reason } => {
                if row.values.get("name").is_none_or(|n| n.is_empty()) {
                    let mut error = error_row(
                        row.line,
                        &row.external_id,
                        format!(
                            "Line {}: a new record needs a name, and the row has none.",
                            row.line
                        ),
                    );
                    error.values = row.values.clone();
                    plan.outcomes.push(error);
                    continue;
                }
                let (mut edit, changes) = new_record(
                    rules.kind,
                    &rules.defs,
                    source.id,
                    &row.external_id,
                    &row.values,
                );
                out.changes = changes;
                out.outcome = Outcome::Created;
                out.record_created = true;
                out.link_added = true;
                out.reason = reason;
                if let Some(rule) = company_rule {
                    let edit_index = plan.edits.len();
                    company.apply(rule, row, &mut edit, edit_index, &mut plan, &mut out);
                }
                if !rules.dry_run {
                    plan.edits.push((index, edit));
                }
            }
            Decision::Use {
                record_id,
                convert,
                link,
                forced_manual,
                by_identity,
                reason,
            } => {
                let Some(state) = db.states.get(&record_id) else {
                    plan.outcomes.push(error_row(
                        row.line,
                        &row.external_id,
                        format!("Line {}: record #{record_id} disappeared.", row.line),
                    ));
                    continue;
                };
                let updated_at = db.updated_at.get(&record_id).copied();
                out.record_id = Some(record_id);
                out.record_updated_at = updated_at;
                out.reason = reason;
                if let (Some((Some(planned), Some(at))), Some(now_at)) =
                    (db.plan.get(&row.line), updated_at)
                {
                    if *planned == record_id && *at != now_at {
                        out.reason.push_str(&format!(
                            " Note: this record changed since the dry run (at {} UTC).",
                            now_at.format("%Y-%m-%d %H:%M:%S")
                        ));
                    }
                }
                let mut edit = Edit::change(record_id, state.clone());
                if convert {
                    out.previous_owner = state.owner_source_id;
                    out.owner_changed = true;
                    edit.after.owner_source_id = Some(source.id);
                }
                if link {
                    edit.link.push((source.id, row.external_id.clone()));
                    out.link_added = true;
                }
                edit.after.missing_from_source = false;
                if forced_manual {
                    out.outcome = Outcome::LinkedForcedManual;
                } else {
                    let (changes, proposals) = apply_field_rules(
                        &field_rules,
                        &rules.defs,
                        record_id,
                        &mut edit,
                        &row.values,
                    );
                    out.changes = changes;
                    if let Some(rule) = company_rule {
                        let edit_index = plan.edits.len();
                        company.apply(rule, row, &mut edit, edit_index, &mut plan, &mut out);
                    }
                    let proposed: Vec<String> =
                        proposals.iter().map(|p| p.field_key.clone()).collect();
                    if !rules.dry_run {
                        plan.proposals.extend(proposals);
                    }
                    out.outcome = match (by_identity, out.changes.is_empty(), proposed.is_empty()) {
                        (true, _, _) => Outcome::Converted,
                        (false, false, _) => Outcome::Updated,
                        (false, true, false) => Outcome::Proposed,
                        (false, true, true) => Outcome::Unchanged,
                    };
                    if !out.changes.is_empty() {
                        let fields: Vec<&str> =
                            out.changes.iter().map(|c| c.field.as_str()).collect();
                        out.reason
                            .push_str(&format!(" Updated: {}.", fields.join(", ")));
                    } else if !by_identity {
                        out.reason.push_str(" No value changed.");
                    }
                    if !proposed.is_empty() {
                        out.reason
                            .push_str(&format!(" Proposed for review: {}.", proposed.join(", ")));
                    }
                }
                // A company created in this chunk is set once written.
                let waits_for_company = matches!(company, CompanyChoice::New(_))
                    && out.changes.iter().any(|c| c.field == "company");
                if !rules.dry_run
                    && (edit.before != edit.after || !edit.link.is_empty() || waits_for_company)
                {
                    // Later rows of the chunk see this row's effect, as row by row.
                    db.linked_here.insert(record_id);
                    db.updated_at.insert(record_id, now);
                    db.states.insert(record_id, edit.after.clone());
                    plan.edits.push((index, edit));
                }
            }
        }
        for warning in &row.warnings {
            out.reason.push(' ');
            out.reason.push_str(warning);
        }
        plan.outcomes.push(out);
    }
    plan
}

/// A page of the source's links with their records, in external id order: the unique index
/// (source_id, external_id) serves both the filter and the order, so a page costs its own rows.
pub fn owned_links_page(
    conn: &mut DbConn,
    source_id: i64,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<(i64, String, RecordRow)>> {
    record_links::table
        .inner_join(records::table.on(records::id.eq(record_links::record_id)))
        .filter(record_links::source_id.eq(source_id))
        .filter(record_links::external_id.gt(after))
        .order(record_links::external_id.asc())
        .limit(limit)
        .select((
            record_links::record_id,
            record_links::external_id,
            RecordRow::as_select(),
        ))
        .load(conn)
}
