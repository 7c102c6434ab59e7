//! Activity data mapping: per source and activity type, an admin's templates turn an
//! activity's attributes (`{{ outcome }}`, `{{ duration }}`, ...) into the subject and body of
//! the contact's history entry, and field updates ("last call outcome" <- `{{ outcome }}`)
//! go to the contact through the write path under their rule (`review` makes a proposal).

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::followups::sandbox::{self, Problem};
use crate::records::model::{Actor, Origin};
use crate::records::writer::{self, Edit};
use crate::rules::{FieldRule, Rule};
use crate::schema::activity_mappings;

/// The attributes dialers and mail tools usually send: always variables (blank when absent).
pub const STANDARD_VARIABLES: [&str; 7] = [
    "outcome",
    "comments",
    "email_subject",
    "wrap_time",
    "list_name",
    "duration",
    "caller_id",
];

/// One field update: a contact field, the template of its value, the rule it writes under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldUpdate {
    pub field: String,
    pub template: String,
    pub rule: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = activity_mappings)]
pub struct ActivityMapping {
    pub id: i64,
    pub source_id: i64,
    pub activity_type: String,
    pub subject: String,
    pub body: String,
    pub field_updates: String,
    pub updated_at: chrono::NaiveDateTime,
}

impl ActivityMapping {
    pub fn updates(&self) -> Vec<FieldUpdate> {
        serde_json::from_str(&self.field_updates).unwrap_or_default()
    }
}

/// A sample activity for previews: every standard variable set.
pub fn sample() -> BTreeMap<String, String> {
    [
        ("outcome", "answered"),
        ("comments", "Asked for a quote for 25 seats."),
        ("email_subject", "Your renewal quote"),
        ("wrap_time", "45"),
        ("list_name", "Renewals Q4"),
        ("duration", "184"),
        ("caller_id", "+33 1 70 36 00 00"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What a mapping's templates may use: the standard variables, the attributes this source's
/// file columns and its newest activities of the type carry, and the subject and body they
/// were sent with; with a sample activity (the newest one over the standard sample).
pub struct Variables {
    pub names: Vec<String>,
    pub sample: BTreeMap<String, String>,
}

/// How many of a source's newest activities of a type are read for their attribute names.
const SEEN_ACTIVITIES: i64 = 200;

pub fn variables(conn: &mut DbConn, source_id: i64, activity_type: &str) -> QueryResult<Variables> {
    use crate::schema::{activities, source_fields};
    let mut names: Vec<String> = STANDARD_VARIABLES.iter().map(|v| v.to_string()).collect();
    let mut add = |name: &str| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    };
    // A source of activities maps its file's columns to attributes; a source of records maps
    // them to record fields, which are not attributes.
    let carries_activities =
        crate::sources::service::find(conn, source_id)?.is_some_and(|s| s.carries_activities());
    let columns: Vec<String> = if carries_activities {
        source_fields::table
            .filter(source_fields::source_id.eq(source_id))
            .select(source_fields::field_key)
            .load(conn)?
    } else {
        Vec::new()
    };
    for key in &columns {
        if let Ok(crate::activities::import::Target::Attribute(name)) =
            crate::activities::import::Target::parse(key)
        {
            add(&name);
        }
    }
    let newest: Vec<String> = activities::table
        .filter(activities::source_id.eq(source_id))
        .filter(activities::activity_type.eq(activity_type))
        .order(activities::id.desc())
        .limit(SEEN_ACTIVITIES)
        .select(activities::attributes)
        .load(conn)?;
    let mut sample = sample();
    for (i, attributes) in newest.iter().enumerate() {
        for (name, value) in super::model::attributes_of(attributes) {
            add(&name);
            if i == 0 {
                sample.insert(name, value);
            }
        }
    }
    for name in ["subject", "body"] {
        add(name);
    }
    for name in &names {
        if !sample.contains_key(name) && name != "subject" && name != "body" {
            sample.insert(name.clone(), format!("({name})"));
        }
    }
    Ok(Variables { names, sample })
}

/// "Source: type" of the mappings whose field updates write the contact field `key`.
pub fn using_field(conn: &mut DbConn, key: &str) -> QueryResult<Vec<String>> {
    use crate::schema::sources;
    let mappings: Vec<(ActivityMapping, String)> = activity_mappings::table
        .inner_join(sources::table)
        .select((ActivityMapping::as_select(), sources::name))
        .order((sources::name.asc(), activity_mappings::activity_type.asc()))
        .load(conn)?;
    Ok(mappings
        .into_iter()
        .filter(|(m, _)| m.updates().iter().any(|u| u.field == key))
        .map(|(m, source)| format!("{source}: {}", m.activity_type))
        .collect())
}

pub fn find(
    conn: &mut DbConn,
    source_id: i64,
    activity_type: &str,
) -> QueryResult<Option<ActivityMapping>> {
    activity_mappings::table
        .filter(activity_mappings::source_id.eq(source_id))
        .filter(activity_mappings::activity_type.eq(activity_type))
        .select(ActivityMapping::as_select())
        .first(conn)
        .optional()
}

/// The variables of an activity: the standard ones (blank when absent), its attributes, and
/// the subject and body it was sent with.
fn context(attributes: &BTreeMap<String, String>, subject: &str, body: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in STANDARD_VARIABLES {
        map.insert(name.into(), "".into());
    }
    for (k, v) in attributes {
        map.insert(k.clone(), v.clone().into());
    }
    map.insert("subject".into(), subject.into());
    map.insert("body".into(), body.into());
    serde_json::Value::Object(map)
}

/// The entry's subject and body, and each field update's value, for these attributes.
pub struct Mapped {
    pub subject: String,
    pub body: String,
    pub updates: Vec<(FieldUpdate, String)>,
}

pub fn apply_templates(
    subject: &str,
    body: &str,
    updates: &[FieldUpdate],
    attributes: &BTreeMap<String, String>,
    sent_subject: &str,
    sent_body: &str,
) -> Result<Mapped, Problem> {
    let context = context(attributes, sent_subject, sent_body);
    let render = |part: &str, source: &str| -> Result<String, Problem> {
        if source.trim().is_empty() {
            return Ok(String::new());
        }
        sandbox::render(part, source, false, &context)
    };
    let mut values = Vec::new();
    for update in updates {
        let value = render(&format!("Update of {}", update.field), &update.template)?;
        values.push((update.clone(), value.trim().to_string()));
    }
    Ok(Mapped {
        subject: render("Subject", subject)?,
        body: render("Body", body)?,
        updates: values,
    })
}

/// Problems of a mapping's templates: forbidden constructs, syntax, and variables that are
/// not among `known` (one no activity of this source carries would refuse every activity when
/// rendered, so it is refused before, with the variables there are).
pub fn check(
    subject: &str,
    body: &str,
    updates: &[FieldUpdate],
    known: &Variables,
) -> Vec<Problem> {
    let known: std::collections::BTreeSet<String> = known.names.iter().cloned().collect();
    let labels: Vec<String> = updates
        .iter()
        .map(|u| format!("Update of {}", u.field))
        .collect();
    let mut parts: Vec<(&str, &str)> = vec![("Subject", subject), ("Body", body)];
    parts.extend(
        labels
            .iter()
            .zip(updates)
            .map(|(label, u)| (label.as_str(), u.template.as_str())),
    );
    sandbox::check(&parts, false, &known)
}

/// Saves a mapping after checking its templates (syntax) and its field updates (fields of
/// contacts, rules); every problem is listed.
pub fn save(
    conn: &mut DbConn,
    source_id: i64,
    activity_type: &str,
    subject: &str,
    body: &str,
    updates: &[FieldUpdate],
) -> Result<(), Vec<Problem>> {
    let failed = |e: diesel::result::Error| vec![Problem(e.to_string())];
    let defs = crate::fields::service::list(conn, RecordKind::Contact, false).map_err(failed)?;
    let known = variables(conn, source_id, activity_type).map_err(failed)?;
    let mut problems = check(subject, body, updates, &known);
    for update in updates {
        if !defs
            .iter()
            .any(|d| d.key == update.field && d.ftype() != FieldType::Document)
        {
            problems.push(Problem(format!(
                "There is no contact field '{}' to update.",
                update.field
            )));
        }
        if Rule::parse(&update.rule).is_none() {
            problems.push(Problem(format!(
                "'{}' is not a rule: always, fill_blanks, review or never.",
                update.rule
            )));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let json = serde_json::to_string(updates).unwrap_or_else(|_| "[]".into());
    let saved = db::write_tx(conn, |conn| {
        diesel::delete(
            activity_mappings::table
                .filter(activity_mappings::source_id.eq(source_id))
                .filter(activity_mappings::activity_type.eq(activity_type)),
        )
        .execute(conn)?;
        diesel::insert_into(activity_mappings::table)
            .values((
                activity_mappings::source_id.eq(source_id),
                activity_mappings::activity_type.eq(activity_type),
                activity_mappings::subject.eq(subject),
                activity_mappings::body.eq(body),
                activity_mappings::field_updates.eq(&json),
                activity_mappings::updated_at.eq(db::now()),
            ))
            .execute(conn)
    });
    saved.map(|_| ()).map_err(|e| vec![Problem(e.to_string())])
}

/// Applies field updates to a contact through the write path, each under its rule: written
/// values get history rows, `review` makes proposals.
pub fn update_fields(
    conn: &mut DbConn,
    record_id: i64,
    source_id: i64,
    updates: &[(FieldUpdate, String)],
    actor: &Actor,
) -> QueryResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let catalog = writer::Catalog::load(conn)?;
    let defs: Vec<FieldDef> = crate::fields::service::list(conn, RecordKind::Contact, false)?;
    update_fields_many(
        conn,
        &catalog,
        &defs,
        source_id,
        &[(record_id, updates.to_vec())],
        actor,
    )
}

/// `update_fields` for many activities at once, in their order (several may update one
/// contact): the contacts are read in one go and written in one batch.
pub fn update_fields_many(
    conn: &mut DbConn,
    catalog: &writer::Catalog,
    defs: &[FieldDef],
    source_id: i64,
    items: &[(i64, Vec<(FieldUpdate, String)>)],
    actor: &Actor,
) -> QueryResult<()> {
    let mut ids: Vec<i64> = items
        .iter()
        .filter(|(_, updates)| !updates.is_empty())
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let mut states = writer::load_states(conn, &ids)?;
    let mut edits: BTreeMap<i64, Edit> = BTreeMap::new();
    let mut proposals = Vec::new();
    for (record_id, updates) in items {
        let edit = match edits.entry(*record_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let Some((_, state)) = states.remove(record_id) else {
                    continue;
                };
                e.insert(Edit::change(*record_id, state))
            }
        };
        let field_rules: Vec<FieldRule> = updates
            .iter()
            .filter_map(|(u, _)| {
                Some(FieldRule {
                    field_key: u.field.clone(),
                    rule: Rule::parse(&u.rule)?,
                    blanks_clear: false,
                })
            })
            .collect();
        let incoming: BTreeMap<String, String> = updates
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(u, value)| (u.field.clone(), value.clone()))
            .collect();
        let (_, proposed) =
            crate::sync::plan::apply_field_rules(&field_rules, defs, *record_id, edit, &incoming);
        proposals.extend(proposed);
    }
    let changed: Vec<Edit> = edits
        .into_values()
        .filter(|edit| edit.before != edit.after)
        .collect();
    writer::apply(conn, catalog, &changed, actor)?;
    crate::review::service::propose_many(conn, &proposals, RecordKind::Contact, source_id, actor)
}

/// The actor of an activity's field updates.
pub fn actor(activity_id: i64, source_id: i64, label: &str) -> Actor {
    Actor {
        origin: Origin::Import,
        origin_id: Some(activity_id),
        source_id: Some(source_id),
        user_id: None,
        label: format!("activity #{activity_id} ({label})"),
    }
}
