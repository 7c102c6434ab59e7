//! The one way into `records`, `record_values`, `record_links` and `record_history`.
//!
//! Every change to a record (values, company, owner, flags, links), whatever asked for it, is
//! an [`Edit`]: the record's state before and after, plus links to add or remove. The writer
//! diffs the two states into history rows, so nothing changes without one, and writes a whole
//! batch of edits with a few multi-row statements inside the caller's transaction.
//! `apply` writes the history rows and the outbound change feed's entries (`outbox`) in the
//! same transaction as the change.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::counts;
use super::model::{Actor, Change, RecordRow};
use super::outbox::{self, EditEvents, OutboundLine};
use super::search;
use crate::db::{self, DbConn};
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::validate::{norm_phone, norm_text};
use crate::schema::{field_defs, record_history, record_links, record_values, records};

/// Ids per `IN (...)` list when reading states.
const IDS_PER_QUERY: usize = 10_000;

/// Everything about a record that people see change: built-in values, custom values, company,
/// owner and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub kind: RecordKind,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub registration_number: String,
    pub address: String,
    pub company_id: Option<i64>,
    pub owner_source_id: Option<i64>,
    pub forced_manual: bool,
    /// A sync status (the source's last full import did not bring it), not a value: changes
    /// show on the run report, not in the history.
    pub missing_from_source: bool,
    pub archived: bool,
    /// Custom field id -> value; blank values are absent.
    pub custom: BTreeMap<i64, String>,
}

impl RecordState {
    /// A record that does not exist yet.
    pub fn blank(kind: RecordKind) -> Self {
        Self {
            kind,
            name: String::new(),
            email: String::new(),
            phone: String::new(),
            registration_number: String::new(),
            address: String::new(),
            company_id: None,
            owner_source_id: None,
            forced_manual: false,
            missing_from_source: false,
            archived: false,
            custom: BTreeMap::new(),
        }
    }

    pub fn of(row: &RecordRow, custom: BTreeMap<i64, String>) -> Self {
        Self {
            kind: row.record_kind(),
            name: row.name.clone(),
            email: row.email.clone(),
            phone: row.phone.clone(),
            registration_number: row.registration_number.clone(),
            address: row.address.clone(),
            company_id: row.company_id,
            owner_source_id: row.owner_source_id,
            forced_manual: row.forced_manual,
            missing_from_source: row.missing_from_source,
            archived: row.archived,
            custom,
        }
    }

    fn builtin(&self, key: &str) -> Option<&str> {
        match key {
            "name" => Some(&self.name),
            "email" => Some(&self.email),
            "phone" => Some(&self.phone),
            "registration_number" => Some(&self.registration_number),
            "address" => Some(&self.address),
            _ => None,
        }
    }

    pub fn get(&self, def: &FieldDef) -> &str {
        match self.builtin(&def.key) {
            Some(v) if def.builtin => v,
            _ => self.custom.get(&def.id).map(String::as_str).unwrap_or(""),
        }
    }

    pub fn set(&mut self, def: &FieldDef, value: &str) {
        let slot = match def.key.as_str() {
            _ if !def.builtin => None,
            "name" => Some(&mut self.name),
            "email" => Some(&mut self.email),
            "phone" => Some(&mut self.phone),
            "registration_number" => Some(&mut self.registration_number),
            "address" => Some(&mut self.address),
            _ => None,
        };
        match slot {
            Some(slot) => *slot = value.to_string(),
            None if value.is_empty() => {
                self.custom.remove(&def.id);
            }
            None => {
                self.custom.insert(def.id, value.to_string());
            }
        }
    }

    /// Every value by field key (blank ones included).
    pub fn values(&self, defs: &[FieldDef]) -> BTreeMap<String, String> {
        defs.iter()
            .map(|def| (def.key.clone(), self.get(def).to_string()))
            .collect()
    }
}

/// How the history tells a record's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedHistory {
    /// One row per initial value (a person's form).
    PerField,
    /// One "created" row listing the initial values (imports: a million rows stay compact).
    Summary,
}

/// One change to one record.
#[derive(Debug, Clone)]
pub struct Edit {
    /// `None` creates the record.
    pub record_id: Option<i64>,
    pub before: RecordState,
    pub after: RecordState,
    /// (source, external id) links to add and to remove.
    pub link: Vec<(i64, String)>,
    pub unlink: Vec<(i64, String)>,
    pub created_history: CreatedHistory,
}

impl Edit {
    pub fn create(after: RecordState) -> Self {
        Self {
            record_id: None,
            before: RecordState::blank(after.kind),
            after,
            link: Vec::new(),
            unlink: Vec::new(),
            created_history: CreatedHistory::PerField,
        }
    }

    pub fn change(record_id: i64, before: RecordState) -> Self {
        Self {
            record_id: Some(record_id),
            after: before.clone(),
            before,
            link: Vec::new(),
            unlink: Vec::new(),
            created_history: CreatedHistory::PerField,
        }
    }

    fn touches_record(&self) -> bool {
        self.record_id.is_none() || self.before != self.after
    }
}

/// What one edit wrote: the record (new or not) and its value and company changes.
#[derive(Debug, Clone)]
pub struct Written {
    pub record_id: i64,
    pub changes: Vec<Change>,
}

/// The field definitions and source names history rows are written with.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    fields: Vec<FieldDef>,
    sources: HashMap<i64, String>,
    /// Mapping lines that send changes back to their source, by source.
    outbound: HashMap<i64, Vec<OutboundLine>>,
}

impl Catalog {
    /// Both tables are small: read whole.
    pub fn load(conn: &mut DbConn) -> QueryResult<Self> {
        let fields = field_defs::table
            .order((field_defs::position.asc(), field_defs::id.asc()))
            .select(FieldDef::as_select())
            .load(conn)?;
        let sources = super::service::source_names(conn)?.into_iter().collect();
        let outbound = outbox::outbound_lines(conn)?;
        Ok(Self {
            fields,
            sources,
            outbound,
        })
    }

    fn fields_of(&self, kind: RecordKind) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(move |f| f.kind == kind.as_str())
    }

    pub fn source_name(&self, id: i64) -> String {
        self.sources
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("source {id}"))
    }

    fn owner_label(&self, owner: Option<i64>) -> String {
        owner.map_or_else(|| "manual".to_string(), |id| self.source_name(id))
    }
}

#[derive(Insertable)]
#[diesel(table_name = records, treat_none_as_default_value = false)]
struct NewRecord<'a> {
    id: i64,
    kind: &'a str,
    name: &'a str,
    email: &'a str,
    phone: &'a str,
    registration_number: &'a str,
    address: &'a str,
    name_norm: String,
    email_norm: String,
    phone_norm: String,
    company_id: Option<i64>,
    owner_source_id: Option<i64>,
    forced_manual: bool,
    missing_from_source: bool,
    archived: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(AsChangeset)]
#[diesel(table_name = records, treat_none_as_null = true)]
struct RecordChangeset<'a> {
    name: &'a str,
    email: &'a str,
    phone: &'a str,
    registration_number: &'a str,
    address: &'a str,
    name_norm: String,
    email_norm: String,
    phone_norm: String,
    company_id: Option<i64>,
    owner_source_id: Option<i64>,
    forced_manual: bool,
    missing_from_source: bool,
    archived: bool,
    updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = record_values, treat_none_as_default_value = false)]
struct NewValue<'a> {
    record_id: i64,
    field_id: i64,
    value: &'a str,
    /// A number field's value as a number, for sorting by it (`None` for other fields).
    number: Option<f64>,
}

#[derive(Insertable)]
#[diesel(table_name = record_links, treat_none_as_default_value = false)]
struct NewLink<'a> {
    record_id: i64,
    source_id: i64,
    external_id: &'a str,
    created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = record_history, treat_none_as_default_value = false)]
struct NewHistory<'a> {
    record_id: i64,
    field_key: String,
    old_value: Option<String>,
    new_value: Option<String>,
    origin: &'a str,
    origin_id: Option<i64>,
    actor_id: Option<i64>,
    actor_label: &'a str,
    changed_at: NaiveDateTime,
}

/// Reserves `n` consecutive record ids. On SQLite the caller's immediate transaction holds the
/// write lock, so the next ids are free; on PostgreSQL the sequence hands them out.
fn reserve_ids(conn: &mut DbConn, n: usize) -> QueryResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    match conn {
        // The sequence looked up once, not for every id (2.3 s of a million-row import).
        DbConn::Pg(_) => Ok(diesel::sql_query(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('records', 'id')::regclass AS seq) \
             SELECT nextval(s.seq) AS id FROM s, generate_series(1, $1)",
        )
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(n).unwrap_or(i64::MAX))
        .load::<Id>(conn)?
        .into_iter()
        .map(|r| r.id)
        .collect()),
        DbConn::Sqlite(_) => {
            let last = diesel::sql_query(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'records'), 0), \
                 COALESCE((SELECT MAX(id) FROM records), 0)) AS id",
            )
            .get_result::<Id>(conn)?
            .id;
            Ok((1..=n as i64).map(|i| last + i).collect())
        }
    }
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn yes_no(flag: bool) -> Option<String> {
    Some(if flag { "yes" } else { "no" }.to_string())
}

/// One history row before it is written: field key, old value, new value.
type HistoryLine = (String, Option<String>, Option<String>);

/// The history of one edit, in the order people read it, and its value changes.
fn diff(catalog: &Catalog, edit: &Edit) -> (Vec<HistoryLine>, Vec<Change>) {
    let (before, after) = (&edit.before, &edit.after);
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    if edit.record_id.is_none() && edit.created_history == CreatedHistory::Summary {
        let mut parts: Vec<String> = catalog
            .fields_of(after.kind)
            .filter(|def| !after.get(def).is_empty())
            .map(|def| format!("{}: {}", def.label, after.get(def)))
            .collect();
        for def in catalog.fields_of(after.kind) {
            let new = after.get(def);
            if !new.is_empty() {
                changes.push(Change {
                    field_key: def.key.clone(),
                    old: String::new(),
                    new: new.to_string(),
                });
            }
        }
        if let Some(owner) = after.owner_source_id {
            parts.push(format!("Owner: {}", catalog.source_name(owner)));
        }
        rows.push(("created".to_string(), None, Some(parts.join("; "))));
        return (rows, changes);
    }
    if before.owner_source_id != after.owner_source_id {
        rows.push((
            "owner".into(),
            Some(catalog.owner_label(before.owner_source_id)),
            Some(catalog.owner_label(after.owner_source_id)),
        ));
    }
    if before.forced_manual != after.forced_manual {
        rows.push((
            "forced_manual".into(),
            yes_no(before.forced_manual),
            yes_no(after.forced_manual),
        ));
    }
    if before.archived != after.archived {
        rows.push((
            "archived".into(),
            yes_no(before.archived),
            yes_no(after.archived),
        ));
    }
    for def in catalog.fields_of(after.kind) {
        let (old, new) = (before.get(def), after.get(def));
        if old != new {
            rows.push((def.key.clone(), optional(old), optional(new)));
            changes.push(Change {
                field_key: def.key.clone(),
                old: old.to_string(),
                new: new.to_string(),
            });
        }
    }
    if before.company_id != after.company_id {
        let text = |c: Option<i64>| c.map(|c| c.to_string());
        rows.push((
            "company".into(),
            text(before.company_id),
            text(after.company_id),
        ));
        changes.push(Change {
            field_key: "company".into(),
            old: text(before.company_id).unwrap_or_default(),
            new: text(after.company_id).unwrap_or_default(),
        });
    }
    (rows, changes)
}

/// Writes a batch of edits, in order, with their history rows. Call inside a write
/// transaction. Returns one `Written` per edit, in the same order.
pub fn apply(
    conn: &mut DbConn,
    catalog: &Catalog,
    edits: &[Edit],
    actor: &Actor,
) -> QueryResult<Vec<Written>> {
    let now = db::now();
    let mut ids =
        reserve_ids(conn, edits.iter().filter(|e| e.record_id.is_none()).count())?.into_iter();
    let mut written = Vec::with_capacity(edits.len());
    let mut history = Vec::new();
    let mut new_records = Vec::new();
    // The last state of each existing record that changed (several edits may touch one).
    let mut updates: BTreeMap<i64, &RecordState> = BTreeMap::new();
    let mut value_deletes: Vec<(i64, i64)> = Vec::new();
    let mut value_inserts: BTreeMap<(i64, i64), &str> = BTreeMap::new();
    let mut links = Vec::new();
    let mut unlinks = Vec::new();
    let mut counted = counts::Deltas::default();
    for edit in edits {
        let record_id = match edit.record_id {
            Some(id) => id,
            None => ids.next().ok_or(diesel::result::Error::NotFound)?,
        };
        let (rows, changes) = diff(catalog, edit);
        for (field_key, old_value, new_value) in rows {
            history.push(NewHistory {
                record_id,
                field_key,
                old_value,
                new_value,
                origin: actor.origin.as_str(),
                origin_id: actor.origin_id,
                actor_id: actor.user_id,
                actor_label: &actor.label,
                changed_at: now,
            });
        }
        let (before, after) = (&edit.before, &edit.after);
        counted.add(edit.record_id.map(|_| before), after);
        if edit.record_id.is_none() {
            new_records.push((record_id, after));
            for (field_id, value) in &after.custom {
                value_inserts.insert((record_id, *field_id), value);
            }
        } else if edit.touches_record() {
            updates.insert(record_id, after);
            for (field_id, _) in before.custom.iter().chain(after.custom.iter()) {
                if before.custom.get(field_id) != after.custom.get(field_id) {
                    value_deletes.push((record_id, *field_id));
                    match after.custom.get(field_id) {
                        Some(value) => value_inserts.insert((record_id, *field_id), value),
                        None => value_inserts.remove(&(record_id, *field_id)),
                    };
                }
            }
        }
        for (source_id, external_id) in &edit.link {
            links.push(NewLink {
                record_id,
                source_id: *source_id,
                external_id,
                created_at: now,
            });
        }
        for (source_id, external_id) in &edit.unlink {
            unlinks.push((record_id, *source_id, external_id.as_str()));
        }
        written.push(Written { record_id, changes });
    }

    let inserts: Vec<NewRecord> = new_records
        .iter()
        .map(|(id, s)| NewRecord {
            id: *id,
            kind: s.kind.as_str(),
            name: &s.name,
            email: &s.email,
            phone: &s.phone,
            registration_number: &s.registration_number,
            address: &s.address,
            name_norm: norm_text(&s.name),
            email_norm: norm_text(&s.email),
            phone_norm: norm_phone(&s.phone),
            company_id: s.company_id,
            owner_source_id: s.owner_source_id,
            forced_manual: s.forced_manual,
            missing_from_source: s.missing_from_source,
            archived: s.archived,
            created_at: now,
            updated_at: now,
        })
        .collect();
    db::insert_all!(conn, records::table, inserts);
    if let DbConn::Pg(pg) = conn {
        // One statement per batch: a round trip per changed record dominates otherwise.
        update_records_pg(pg, &updates, now)?;
        delete_values_pg(pg, &value_deletes)?;
    } else {
        for (id, s) in &updates {
            diesel::update(records::table.find(*id))
                .set(RecordChangeset {
                    name: &s.name,
                    email: &s.email,
                    phone: &s.phone,
                    registration_number: &s.registration_number,
                    address: &s.address,
                    name_norm: norm_text(&s.name),
                    email_norm: norm_text(&s.email),
                    phone_norm: norm_phone(&s.phone),
                    company_id: s.company_id,
                    owner_source_id: s.owner_source_id,
                    forced_manual: s.forced_manual,
                    missing_from_source: s.missing_from_source,
                    archived: s.archived,
                    updated_at: now,
                })
                .execute(conn)?;
        }
        value_deletes.sort_unstable();
        value_deletes.dedup();
        for (record_id, field_id) in value_deletes {
            diesel::delete(
                record_values::table
                    .filter(record_values::record_id.eq(record_id))
                    .filter(record_values::field_id.eq(field_id)),
            )
            .execute(conn)?;
        }
    }
    let number_fields: HashSet<i64> = catalog
        .fields
        .iter()
        .filter(|f| f.ftype() == FieldType::Number)
        .map(|f| f.id)
        .collect();
    let values: Vec<NewValue> = value_inserts
        .into_iter()
        .map(|((record_id, field_id), value)| NewValue {
            record_id,
            field_id,
            value,
            number: if number_fields.contains(&field_id) {
                value.trim().parse::<f64>().ok().filter(|n| n.is_finite())
            } else {
                None
            },
        })
        .collect();
    db::insert_all!(conn, record_values::table, values);
    for (record_id, source_id, external_id) in unlinks {
        diesel::delete(
            record_links::table
                .filter(record_links::record_id.eq(record_id))
                .filter(record_links::source_id.eq(source_id))
                .filter(record_links::external_id.eq(external_id)),
        )
        .execute(conn)?;
    }
    db::insert_all!(conn, record_links::table, links);
    db::insert_all!(conn, record_history::table, history);
    search::reindex(conn, &search_changes(edits, &written))?;
    counts::record(conn, counted)?;
    let events: Vec<EditEvents> = edits
        .iter()
        .zip(&written)
        .map(|(edit, w)| EditEvents {
            record_id: w.record_id,
            before: &edit.before,
            after: &edit.after,
            changes: &w.changes,
            new_links: &edit.link,
        })
        .collect();
    outbox::write_events(conn, &catalog.outbound, &events, actor, now)?;
    Ok(written)
}

/// Updates changed records on PostgreSQL with one `UPDATE ... FROM unnest(...)` per batch.
fn update_records_pg(
    pg: &mut diesel::PgConnection,
    updates: &BTreeMap<i64, &RecordState>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamp};
    if updates.is_empty() {
        return Ok(());
    }
    let states: Vec<&RecordState> = updates.values().copied().collect();
    let texts = |f: fn(&RecordState) -> String| states.iter().map(|s| f(s)).collect::<Vec<_>>();
    diesel::sql_query(
        "UPDATE records AS r SET name = v.name, email = v.email, phone = v.phone, \
         registration_number = v.registration_number, address = v.address, \
         name_norm = v.name_norm, email_norm = v.email_norm, phone_norm = v.phone_norm, \
         company_id = v.company_id, owner_source_id = v.owner_source_id, \
         forced_manual = v.forced_manual, missing_from_source = v.missing_from_source, \
         archived = v.archived, updated_at = $15 \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         AS v(id, name, email, phone, registration_number, address, name_norm, email_norm, \
              phone_norm, company_id, owner_source_id, forced_manual, missing_from_source, \
              archived) \
         WHERE r.id = v.id",
    )
    .bind::<Array<BigInt>, _>(updates.keys().copied().collect::<Vec<i64>>())
    .bind::<Array<Text>, _>(texts(|s| s.name.clone()))
    .bind::<Array<Text>, _>(texts(|s| s.email.clone()))
    .bind::<Array<Text>, _>(texts(|s| s.phone.clone()))
    .bind::<Array<Text>, _>(texts(|s| s.registration_number.clone()))
    .bind::<Array<Text>, _>(texts(|s| s.address.clone()))
    .bind::<Array<Text>, _>(texts(|s| norm_text(&s.name)))
    .bind::<Array<Text>, _>(texts(|s| norm_text(&s.email)))
    .bind::<Array<Text>, _>(texts(|s| norm_phone(&s.phone)))
    .bind::<Array<Nullable<BigInt>>, _>(states.iter().map(|s| s.company_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(
        states.iter().map(|s| s.owner_source_id).collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(states.iter().map(|s| s.forced_manual).collect::<Vec<_>>())
    .bind::<Array<Bool>, _>(
        states
            .iter()
            .map(|s| s.missing_from_source)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(states.iter().map(|s| s.archived).collect::<Vec<_>>())
    .bind::<Timestamp, _>(now)
    .execute(pg)?;
    Ok(())
}

/// Deletes (record, field) values on PostgreSQL with one statement per batch.
fn delete_values_pg(pg: &mut diesel::PgConnection, pairs: &[(i64, i64)]) -> QueryResult<()> {
    use diesel::sql_types::{Array, BigInt};
    if pairs.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "DELETE FROM record_values rv USING unnest($1, $2) AS d(record_id, field_id) \
         WHERE rv.record_id = d.record_id AND rv.field_id = d.field_id",
    )
    .bind::<Array<BigInt>, _>(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
    .execute(pg)?;
    Ok(())
}

/// The search tokens of the records of a batch whose name, email or phone it set or changed
/// (a record edited twice counts once): (record id, whether it had tokens, its tokens now).
fn search_changes(edits: &[Edit], written: &[Written]) -> Vec<(i64, bool, search::Tokens)> {
    let mut last: BTreeMap<i64, (&RecordState, bool)> = BTreeMap::new();
    for (edit, w) in edits.iter().zip(written) {
        let (before, after) = (&edit.before, &edit.after);
        let created = edit.record_id.is_none();
        if created
            || before.name != after.name
            || before.email != after.email
            || before.phone != after.phone
        {
            last.entry(w.record_id)
                .and_modify(|span| span.0 = after)
                .or_insert((after, !created));
        }
    }
    last.into_iter()
        .map(|(id, (after, existed))| (id, existed, search::tokens_of(after)))
        .collect()
}

/// One edit on its own.
pub fn apply_one(conn: &mut DbConn, edit: &Edit, actor: &Actor) -> QueryResult<Written> {
    let catalog = Catalog::load(conn)?;
    apply(conn, &catalog, std::slice::from_ref(edit), actor)?
        .pop()
        .ok_or(diesel::result::Error::NotFound)
}

/// A history row for an event that changes no value (a review decision that kept the value).
pub fn note(
    conn: &mut DbConn,
    record_id: i64,
    field_key: &str,
    value: Option<String>,
    actor: &Actor,
) -> QueryResult<()> {
    diesel::insert_into(record_history::table)
        .values(NewHistory {
            record_id,
            field_key: field_key.to_string(),
            old_value: value.clone(),
            new_value: value,
            origin: actor.origin.as_str(),
            origin_id: actor.origin_id,
            actor_id: actor.user_id,
            actor_label: &actor.label,
            changed_at: db::now(),
        })
        .execute(conn)?;
    Ok(())
}

/// Current states of the given records (custom values included), by id: two queries.
pub fn load_states(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<HashMap<i64, (RecordRow, RecordState)>> {
    let mut out = HashMap::with_capacity(ids.len());
    for part in ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<RecordRow> = records::table
            .filter(records::id.eq_any(part))
            .select(RecordRow::as_select())
            .load(conn)?;
        let mut custom: HashMap<i64, BTreeMap<i64, String>> = HashMap::new();
        for (record_id, field_id, value) in record_values::table
            .filter(record_values::record_id.eq_any(part))
            .select((
                record_values::record_id,
                record_values::field_id,
                record_values::value,
            ))
            .load::<(i64, i64, String)>(conn)?
        {
            custom.entry(record_id).or_default().insert(field_id, value);
        }
        for row in rows {
            let state = RecordState::of(&row, custom.remove(&row.id).unwrap_or_default());
            out.insert(row.id, (row, state));
        }
    }
    Ok(out)
}

/// The current state of one record.
pub fn load_state(conn: &mut DbConn, id: i64) -> QueryResult<Option<(RecordRow, RecordState)>> {
    Ok(load_states(conn, &[id])?.remove(&id))
}
