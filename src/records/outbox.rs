//! The outbound change feed's events (a transactional outbox), written by the write path in the
//! transaction of the change they describe. Per mapping line, its `to_source` rule decides:
//! `always` sends every change, `fill_blanks` only one that fills a blank, `review` holds it
//! for a person, `never` sends nothing. A change whose data came from a source is never sent
//! back to it. Reading, ordering and approving the feed is `sync::feed`'s work.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::model::{Actor, Change};
use super::writer::RecordState;
use crate::db::{self, DbConn};
use crate::rules::Rule;
use crate::schema::{record_links, source_changes, source_fields, sources};
use crate::stored::stored_enum;

stored_enum! {
    /// What a feed entry tells a source.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum FeedEvent as "feed event" {
        /// A mapped field's value changed.
        Value = "value",
        Archived = "archived",
        ForcedManual = "forced_manual",
        /// The record was linked to the source's external id.
        Linked = "linked",
    }
}

stored_enum! {
    /// `ready` entries are in the feed; `held` ones wait for a person (rule `review`);
    /// `dropped` ones were refused and never enter it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FeedStatus as "feed status" {
        Ready = "ready",
        Held = "held",
        Dropped = "dropped",
    }
}

/// A mapping line that sends values back to its source.
#[derive(Debug, Clone)]
pub struct OutboundLine {
    pub column_name: String,
    pub field_key: String,
    pub rule: Rule,
}

/// Every connected source's mapping lines whose `to_source` rule is not `never`. Empty (the
/// usual case) means no feed work at all.
pub fn outbound_lines(conn: &mut DbConn) -> QueryResult<HashMap<i64, Vec<OutboundLine>>> {
    let rows: Vec<(i64, String, String, String)> = source_fields::table
        .inner_join(sources::table)
        .filter(source_fields::to_source.ne(Rule::Never.as_str()))
        .filter(sources::status.eq("connected"))
        .select((
            source_fields::source_id,
            source_fields::column_name,
            source_fields::field_key,
            source_fields::to_source,
        ))
        .load(conn)?;
    let mut lines: HashMap<i64, Vec<OutboundLine>> = HashMap::new();
    for (source_id, column_name, field_key, rule) in rows {
        if let Some(rule) = Rule::parse(&rule) {
            lines.entry(source_id).or_default().push(OutboundLine {
                column_name,
                field_key,
                rule,
            });
        }
    }
    Ok(lines)
}

/// One edit as the feed sees it.
pub struct EditEvents<'a> {
    pub record_id: i64,
    pub before: &'a RecordState,
    pub after: &'a RecordState,
    pub changes: &'a [Change],
    /// Links this edit added: (source, external id).
    pub new_links: &'a [(i64, String)],
}

#[derive(Insertable)]
#[diesel(table_name = source_changes, treat_none_as_default_value = false)]
struct NewFeedEntry<'a> {
    source_id: i64,
    record_id: i64,
    external_id: &'a str,
    event: &'static str,
    column_name: Option<&'a str>,
    field_key: Option<&'a str>,
    old_value: Option<&'a str>,
    new_value: Option<&'a str>,
    origin: &'static str,
    origin_id: Option<i64>,
    actor_label: &'a str,
    changed_at: NaiveDateTime,
    status: &'static str,
}

/// Ids per `IN (...)` list when reading links.
const IDS_PER_QUERY: usize = 10_000;

/// Writes the feed entries of a batch of edits (links included, so call it after the batch's
/// links are written). One query for the links of the records concerned.
pub fn write_events(
    conn: &mut DbConn,
    lines: &HashMap<i64, Vec<OutboundLine>>,
    edits: &[EditEvents],
    actor: &Actor,
    now: NaiveDateTime,
) -> QueryResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let concerned: Vec<i64> = edits
        .iter()
        .filter(|e| {
            !e.changes.is_empty()
                || !e.new_links.is_empty()
                || e.before.archived != e.after.archived
                || e.before.forced_manual != e.after.forced_manual
        })
        .map(|e| e.record_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if concerned.is_empty() {
        return Ok(());
    }
    let sources: Vec<i64> = lines.keys().copied().collect();
    let mut links: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for part in concerned.chunks(IDS_PER_QUERY) {
        let rows: Vec<(i64, i64, String)> = record_links::table
            .filter(record_links::record_id.eq_any(part))
            .filter(record_links::source_id.eq_any(&sources))
            .select((
                record_links::record_id,
                record_links::source_id,
                record_links::external_id,
            ))
            .load(conn)?;
        for (record_id, source_id, external_id) in rows {
            links
                .entry(record_id)
                .or_default()
                .push((source_id, external_id));
        }
    }
    let mut entries = Vec::new();
    for edit in edits {
        let Some(record_links) = links.get(&edit.record_id) else {
            continue;
        };
        for (source_id, external_id) in record_links {
            // No echo: a source never gets its own changes back.
            if actor.source_id == Some(*source_id) {
                continue;
            }
            let Some(source_lines) = lines.get(source_id) else {
                continue;
            };
            let target = Target {
                source_id: *source_id,
                record_id: edit.record_id,
                external_id,
                actor,
                now,
            };
            for change in edit.changes {
                for line in source_lines
                    .iter()
                    .filter(|l| l.field_key == change.field_key)
                {
                    let status = match line.rule {
                        Rule::Always => FeedStatus::Ready,
                        Rule::FillBlanks if change.old.is_empty() => FeedStatus::Ready,
                        Rule::Review => FeedStatus::Held,
                        Rule::FillBlanks | Rule::Never => continue,
                    };
                    entries.push(target.entry(
                        FeedEvent::Value,
                        Some(line),
                        Some(&change.old),
                        Some(&change.new),
                        status,
                    ));
                }
            }
            let flags = [
                (
                    FeedEvent::Archived,
                    edit.before.archived,
                    edit.after.archived,
                ),
                (
                    FeedEvent::ForcedManual,
                    edit.before.forced_manual,
                    edit.after.forced_manual,
                ),
            ];
            for (event, was, is) in flags {
                if was != is {
                    entries.push(target.entry(
                        event,
                        None,
                        Some(yes_no(was)),
                        Some(yes_no(is)),
                        FeedStatus::Ready,
                    ));
                }
            }
            if edit
                .new_links
                .iter()
                .any(|(s, e)| s == source_id && e == external_id)
            {
                entries.push(target.entry(
                    FeedEvent::Linked,
                    None,
                    None,
                    Some(external_id),
                    FeedStatus::Ready,
                ));
            }
        }
    }
    db::insert_all!(conn, source_changes::table, entries);
    Ok(())
}

/// Where an entry goes: a source's external id of a record, and who made the change.
struct Target<'a> {
    source_id: i64,
    record_id: i64,
    external_id: &'a str,
    actor: &'a Actor,
    now: NaiveDateTime,
}

impl<'a> Target<'a> {
    fn entry(
        &self,
        event: FeedEvent,
        line: Option<&'a OutboundLine>,
        old: Option<&'a str>,
        new: Option<&'a str>,
        status: FeedStatus,
    ) -> NewFeedEntry<'a> {
        NewFeedEntry {
            source_id: self.source_id,
            record_id: self.record_id,
            external_id: self.external_id,
            event: event.as_str(),
            column_name: line.map(|l| l.column_name.as_str()),
            field_key: line.map(|l| l.field_key.as_str()),
            old_value: old,
            new_value: new,
            origin: self.actor.origin.as_str(),
            origin_id: self.actor.origin_id,
            actor_label: &self.actor.label,
            changed_at: self.now,
            status: status.as_str(),
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}
