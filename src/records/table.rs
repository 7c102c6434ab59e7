//! The contact and company list as a table: the parameters a person gave, the columns to
//! show, and one page of records as cells. Read here, shown by `routes/list.rs`.

use std::collections::BTreeMap;

use super::definitions::Definitions;
use super::export::{self, ExportError};
use super::list::{self, Cursor, ListQuery, ListRow, OwnerFilter, SortKey, Total};
use super::model::RecordRow;
use super::service;
use crate::db::DbConn;
use crate::fields::model::{FieldDef, FieldType, RecordKind};
use crate::fields::service as fields;
use crate::fields::validate::display;

/// The list's parameters as they arrive in the query string (repeated `col` keys included).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub q: String,
    pub owner: String,
    pub forced: String,
    pub missing: bool,
    pub archived: bool,
    pub sort: String,
    pub desc: bool,
    pub after: String,
    pub columns: Vec<String>,
    pub columns_chosen: bool,
    /// `cf_<key>=value`: custom field filters.
    pub custom: Vec<(String, String)>,
}

impl ListParams {
    pub fn parse(pairs: &[(String, String)]) -> Self {
        let mut p = ListParams::default();
        for (key, value) in pairs {
            match key.as_str() {
                "q" => p.q = value.clone(),
                "owner" => p.owner = value.clone(),
                "forced" => p.forced = value.clone(),
                "missing" => p.missing = value == "1",
                "archived" => p.archived = value == "1",
                "sort" => p.sort = value.clone(),
                "dir" => p.desc = value == "desc",
                "after" => p.after = value.clone(),
                "col" => p.columns.push(value.clone()),
                "cols" => p.columns_chosen = true,
                other => {
                    if let Some(field) = other
                        .strip_prefix("cf_")
                        .filter(|_| !value.trim().is_empty())
                    {
                        p.custom.push((field.to_string(), value.trim().to_string()));
                    }
                }
            }
        }
        p
    }

    pub fn query(&self, kind: RecordKind, defs: &[FieldDef]) -> ListQuery {
        let mut q = ListQuery::new(kind);
        q.search = self.q.clone();
        q.owner = OwnerFilter::parse(&self.owner);
        q.forced_manual = match self.forced.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        q.missing_from_source = self.missing;
        q.archived = self.archived;
        q.custom = self
            .custom
            .iter()
            .filter_map(|(key, value)| {
                let def = defs.iter().find(|d| &d.key == key && !d.builtin)?;
                Some((def.id, value.clone(), def.ftype() == FieldType::List))
            })
            .collect();
        q.sort = if self.sort.is_empty() && !self.q.trim().is_empty() {
            SortKey::Relevance
        } else {
            SortKey::parse(&self.sort, defs)
        };
        q.descending = self.desc;
        q.after = Cursor::decode(&self.after);
        q
    }

    /// The query string with the given changes: for sort links and the next page.
    pub fn link(&self, sort: Option<&str>, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let push = |pairs: &mut Vec<(&str, String)>, k, v: &str| {
            if !v.is_empty() {
                pairs.push((k, v.to_string()));
            }
        };
        push(&mut pairs, "q", &self.q);
        push(&mut pairs, "owner", &self.owner);
        push(&mut pairs, "forced", &self.forced);
        if self.missing {
            pairs.push(("missing", "1".into()));
        }
        if self.archived {
            pairs.push(("archived", "1".into()));
        }
        let custom: Vec<(String, String)> = self
            .custom
            .iter()
            .map(|(k, v)| (format!("cf_{k}"), v.clone()))
            .collect();
        for (k, v) in &custom {
            pairs.push((k.as_str(), v.clone()));
        }
        match sort {
            Some(key) => {
                let flip = self.sort_key() == key && !self.desc;
                pairs.push(("sort", key.to_string()));
                if flip {
                    pairs.push(("dir", "desc".into()));
                }
            }
            None => {
                push(&mut pairs, "sort", &self.sort);
                if self.desc {
                    pairs.push(("dir", "desc".into()));
                }
            }
        }
        if self.columns_chosen {
            pairs.push(("cols", "1".into()));
            for c in &self.columns {
                pairs.push(("col", c.clone()));
            }
        }
        if let Some(after) = after {
            pairs.push(("after", after.to_string()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    /// The sorted column: a search without one is in best-match order (no column).
    fn sort_key(&self) -> &str {
        match (self.sort.is_empty(), self.q.trim().is_empty()) {
            (false, _) => &self.sort,
            (true, true) => "name",
            (true, false) => "",
        }
    }

    /// The value of the filter on custom field `key`, for the filter form.
    pub fn custom_value(&self, key: &str) -> &str {
        self.custom
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// "▲" or "▼" beside the sorted column's header.
    pub fn arrow(&self, key: &str) -> &'static str {
        match (self.sort_key() == key, self.desc) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        }
    }
}

/// A column of the list: a built-in, a custom field, or a record property.
pub struct Column {
    pub key: String,
    pub label: String,
    pub sortable: bool,
    pub shown: bool,
    /// The field's type, for a field column.
    pub field_type: Option<FieldType>,
}

/// Every column the list can show, with the ones to show marked.
pub fn columns_for(kind: RecordKind, defs: &[FieldDef], params: &ListParams) -> Vec<Column> {
    let mut all: Vec<Column> = defs
        .iter()
        .filter(|d| d.ftype() != FieldType::Document)
        .map(|d| Column {
            key: d.key.clone(),
            label: d.label.clone(),
            sortable: matches!(d.key.as_str(), "name" | "email" | "phone") || !d.builtin,
            shown: false,
            field_type: Some(d.ftype()),
        })
        .collect();
    if kind == RecordKind::Contact {
        all.push(Column {
            key: "company".into(),
            label: "Company".into(),
            sortable: false,
            shown: false,
            field_type: None,
        });
    }
    all.push(Column {
        key: "owner".into(),
        label: "Owner".into(),
        sortable: false,
        shown: false,
        field_type: None,
    });
    all.push(Column {
        key: "updated".into(),
        label: "Updated".into(),
        sortable: true,
        shown: false,
        field_type: None,
    });
    let defaults = ["name", "email", "phone", "company", "owner"];
    for column in &mut all {
        column.shown = column.key == "name"
            || if params.columns_chosen {
                params.columns.contains(&column.key)
            } else {
                defaults.contains(&column.key.as_str())
            };
    }
    all
}

pub struct ListEntry {
    pub record: RecordRow,
    pub cells: Vec<Cell>,
    /// Fields waiting for a decision (the desync indicator beside the name).
    pub pending: i64,
}

pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub is_name: bool,
}

/// One column's cell for one record; names link to their record pages.
fn cell(
    column: &Column,
    row: &ListRow,
    sources: &BTreeMap<i64, String>,
    company: Option<&(i64, String)>,
) -> Cell {
    let record = &row.record;
    let (text, href) = match column.key.as_str() {
        "name" => (record.name.clone(), Some(format!("/records/{}", record.id))),
        "owner" => (service::owner_label(record, sources), None),
        "company" => match company {
            Some((id, name)) => (name.clone(), Some(format!("/records/{id}"))),
            None => (String::new(), None),
        },
        "updated" => (record.updated_at.format("%Y-%m-%d %H:%M").to_string(), None),
        key => (
            display(column.field_type.unwrap_or(FieldType::Text), row.value(key)),
            None,
        ),
    };
    Cell {
        text,
        href,
        is_name: column.key == "name",
    }
}

/// One page of the list, ready to show.
pub struct Table {
    pub columns: Vec<Column>,
    pub entries: Vec<ListEntry>,
    pub total: Total,
    /// The next page's cursor, if there is one.
    pub next: Option<String>,
    pub sources: BTreeMap<i64, String>,
    /// Custom fields offered as filters.
    pub filters: Vec<FieldDef>,
}

/// The page of `kind` records that `params` asks for: a few queries whatever the page size
/// (the page, the page's companies and pending counts).
pub fn page(
    conn: &mut DbConn,
    definitions: &Definitions,
    kind: RecordKind,
    params: &ListParams,
) -> diesel::QueryResult<Table> {
    let defs = definitions.fields(kind, false);
    let columns = columns_for(kind, &defs, params);
    let custom_shown: Vec<FieldDef> = defs
        .iter()
        .filter(|d| !d.builtin && columns.iter().any(|c| c.shown && c.key == d.key))
        .cloned()
        .collect();
    let page = list::page(conn, &params.query(kind, &defs), &custom_shown)?;
    let sources = definitions.sources.clone();
    let company_ids: Vec<i64> = page
        .rows
        .iter()
        .filter_map(|r| r.record.company_id)
        .collect();
    let companies = service::names_of(conn, &company_ids)?;
    let record_ids: Vec<i64> = page.rows.iter().map(|r| r.record.id).collect();
    let pending = crate::review::service::pending_counts(conn, &record_ids)?;
    let entries = page
        .rows
        .into_iter()
        .map(|row| {
            let company = row
                .record
                .company_id
                .and_then(|id| companies.get(&id).map(|name| (id, name.clone())));
            let cells = columns
                .iter()
                .filter(|c| c.shown)
                .map(|c| cell(c, &row, &sources, company.as_ref()))
                .collect();
            ListEntry {
                pending: pending.get(&row.record.id).copied().unwrap_or(0),
                record: row.record,
                cells,
            }
        })
        .collect();
    let filters = defs
        .into_iter()
        .filter(|d| !d.builtin && d.ftype() != FieldType::Document)
        .collect();
    Ok(Table {
        columns,
        entries,
        total: page.total,
        next: page.next.map(|c| c.encode()),
        sources,
        filters,
    })
}

/// Every record the list's filters select (all pages), with the shown columns, as CSV.
pub fn csv(
    conn: &mut DbConn,
    kind: RecordKind,
    params: &ListParams,
    out: &mut dyn std::io::Write,
) -> Result<(), ExportError> {
    let defs = fields::list(conn, kind, false)?;
    let mut query = params.query(kind, &defs);
    query.after = None;
    let (keys, labels): (Vec<String>, Vec<String>) = columns_for(kind, &defs, params)
        .into_iter()
        .filter(|c| c.shown)
        .map(|c| (c.key, c.label))
        .unzip();
    export::list_csv(conn, query, &defs, &keys, &labels, out)
}
