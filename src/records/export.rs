//! CSV exports of a list, safe to open in a spreadsheet, and `SafeCsv`, the writer of every
//! CSV the console or the command line writes.

use std::borrow::Cow;

use super::list::{self, ListQuery};
use super::service;
use crate::db::DbConn;
use crate::fields::model::FieldDef;

/// A cell that a spreadsheet would run as a formula gets a leading apostrophe (OWASP advice),
/// the full-width signs some spreadsheets read as their ASCII twins included; a plain
/// international phone number (`+33142685300`) is data, not a formula, and stays as is.
fn spreadsheet_safe(value: &str) -> Cow<'_, str> {
    let e164 = value.strip_prefix('+').is_some_and(|digits| {
        (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    });
    match value.chars().next() {
        Some(
            '=' | '+' | '-' | '@' | '\t' | '\r' | '\u{ff1d}' | '\u{ff0b}' | '\u{ff0d}' | '\u{ff20}',
        ) if !e164 => Cow::Owned(format!("'{value}")),
        _ => Cow::Borrowed(value),
    }
}

/// The one CSV writer of exports (lists, records, activities, follow-up renders, run
/// reports): every cell it writes, headers included, is made spreadsheet-safe, so no caller
/// can forget one. Files read back as imports (pushed rows, a connector's query) are not
/// exports and keep their values exact.
pub struct SafeCsv<W: std::io::Write> {
    out: csv::Writer<W>,
}

impl<W: std::io::Write> SafeCsv<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: csv::Writer::from_writer(out),
        }
    }

    /// One row.
    pub fn row<I, T>(&mut self, cells: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for cell in cells {
            self.out
                .write_field(spreadsheet_safe(cell.as_ref()).as_bytes())?;
        }
        // An empty record ends the row of the fields written.
        self.out.write_record(None::<&[u8]>)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Every record matching the list's filters, in its order, with the given columns, read page by
/// page (a few queries each, no count) so the database never holds a long scan open, and
/// written as it is read.
pub fn list_csv(
    conn: &mut DbConn,
    mut query: ListQuery,
    defs: &[FieldDef],
    columns: &[String],
    labels: &[String],
    out: &mut dyn std::io::Write,
) -> Result<(), ExportError> {
    let mut out = SafeCsv::new(out);
    let mut header = vec!["id".to_string()];
    header.extend(labels.iter().cloned());
    out.row(&header)?;
    let custom: Vec<FieldDef> = defs
        .iter()
        .filter(|d| !d.builtin && columns.contains(&d.key))
        .cloned()
        .collect();
    let company_column = columns.iter().any(|c| c == "company");
    let sources = service::source_names(conn)?;
    query.limit = 1_000;
    query.count = false;
    loop {
        let page = list::page(conn, &query, &custom)?;
        let companies = if company_column {
            let ids: Vec<i64> = page
                .rows
                .iter()
                .filter_map(|r| r.record.company_id)
                .collect();
            service::names_of(conn, &ids)?
        } else {
            Default::default()
        };
        for row in &page.rows {
            let mut line = vec![row.record.id.to_string()];
            for column in columns {
                let value = match column.as_str() {
                    "owner" => service::owner_label(&row.record, &sources),
                    "company" => row
                        .record
                        .company_id
                        .and_then(|id| companies.get(&id).cloned())
                        .unwrap_or_default(),
                    "updated" => row
                        .record
                        .updated_at
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                    key => row.value(key).to_string(),
                };
                line.push(value);
            }
            out.row(&line)?;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

enum Sink<'a> {
    Csv(Box<SafeCsv<&'a mut dyn std::io::Write>>),
    Json(&'a mut dyn std::io::Write),
}

/// Every record of a kind with its values, owner, flags and links, for scripts
/// (`syncdesk records export`). Read in id order, a thousand at a time.
pub fn all_records(
    conn: &mut DbConn,
    kind: crate::fields::model::RecordKind,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<usize, ExportError> {
    use crate::schema::records;
    use diesel::prelude::*;
    let defs = crate::fields::service::list(conn, kind, true)?;
    let sources = service::source_names(conn)?;
    let mut sink = if json {
        out.write_all(b"[")?;
        Sink::Json(out)
    } else {
        let mut w = SafeCsv::new(out);
        let mut header = vec!["id".to_string()];
        header.extend(defs.iter().map(|d| d.key.clone()));
        header.extend(
            [
                "company_id",
                "owner",
                "forced_manual",
                "missing_from_source",
                "archived",
                "links",
            ]
            .map(String::from),
        );
        w.row(&header)?;
        Sink::Csv(Box::new(w))
    };
    let mut after = 0i64;
    let mut count = 0usize;
    loop {
        let batch: Vec<super::model::RecordRow> = records::table
            .filter(records::kind.eq(kind.as_str()))
            .filter(records::id.gt(after))
            .order(records::id.asc())
            .limit(1000)
            .select(super::model::RecordRow::as_select())
            .load(conn)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        // The batch's values and links in three queries, not two per record.
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        let mut states = super::writer::load_states(conn, &ids)?;
        let mut links_by_record = service::links_of_many(conn, &ids)?;
        for record in &batch {
            let values = states
                .remove(&record.id)
                .map(|(_, state)| state.values(&defs))
                .unwrap_or_default();
            let links = links_by_record.remove(&record.id).unwrap_or_default();
            let owner = service::owner_label(record, &sources);
            match &mut sink {
                Sink::Csv(w) => {
                    let mut line = vec![record.id.to_string()];
                    line.extend(
                        defs.iter()
                            .map(|d| values.get(&d.key).cloned().unwrap_or_default()),
                    );
                    line.push(record.company_id.map(|c| c.to_string()).unwrap_or_default());
                    line.push(owner);
                    line.push(record.forced_manual.to_string());
                    line.push(record.missing_from_source.to_string());
                    line.push(record.archived.to_string());
                    let links: Vec<String> = links
                        .iter()
                        .map(|l| format!("{}:{}", l.source_name, l.external_id))
                        .collect();
                    line.push(links.join("; "));
                    w.row(&line)?;
                }
                Sink::Json(out) => {
                    let item = serde_json::json!({
                        "id": record.id,
                        "kind": record.kind,
                        "fields": values,
                        "company_id": record.company_id,
                        "owner": owner,
                        "forced_manual": record.forced_manual,
                        "missing_from_source": record.missing_from_source,
                        "archived": record.archived,
                        "links": links
                            .iter()
                            .map(|l| serde_json::json!({"source": l.source_name, "external_id": l.external_id}))
                            .collect::<Vec<_>>(),
                    });
                    let separator: &[u8] = if count > 0 { b",\n  " } else { b"\n  " };
                    out.write_all(separator)?;
                    out.write_all(item.to_string().as_bytes())?;
                }
            }
            count += 1;
        }
    }
    match sink {
        Sink::Csv(mut w) => w.flush()?,
        Sink::Json(out) => out.write_all(b"\n]\n")?,
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::{spreadsheet_safe, SafeCsv};

    #[test]
    fn formulas_are_defused() {
        for risky in [
            "=1+1",
            "+33 1 23",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "+1+1",
            "+12",
            "\u{ff1d}1+1",
            "\u{ff20}A1",
        ] {
            assert!(spreadsheet_safe(risky).starts_with('\''), "{risky:?}");
        }
        assert_eq!(spreadsheet_safe("+33142685300"), "+33142685300");
        assert_eq!(spreadsheet_safe("Ada"), "Ada");
        assert_eq!(spreadsheet_safe(""), "");
    }

    #[test]
    fn every_cell_of_safe_csv_is_defused_headers_included() {
        let mut bytes = Vec::new();
        let mut out = SafeCsv::new(&mut bytes);
        out.row(["id", "=label"]).expect("header");
        out.row(["1", "@x"]).expect("row");
        out.row(["2", "plain, \"quoted\""]).expect("row");
        out.flush().expect("flush");
        drop(out);
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "id,'=label\n1,'@x\n2,\"plain, \"\"quoted\"\"\"\n"
        );
    }
}
