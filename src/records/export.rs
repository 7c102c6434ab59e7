//! CSV exports of a list, safe to open in a spreadsheet.

use super::list::{self, ListQuery};
use super::service;
use crate::db::DbConn;
use crate::fields::model::FieldDef;

/// A cell that a spreadsheet would run as a formula gets a leading apostrophe (OWASP advice).
pub fn spreadsheet_safe(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
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
/// page so the database never holds a long scan open.
pub fn list_csv(
    conn: &mut DbConn,
    mut query: ListQuery,
    defs: &[FieldDef],
    columns: &[String],
    labels: &[String],
) -> Result<Vec<u8>, ExportError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["id".to_string()];
    header.extend(labels.iter().map(|l| spreadsheet_safe(l)));
    out.write_record(&header)?;
    let custom: Vec<FieldDef> = defs
        .iter()
        .filter(|d| !d.builtin && columns.contains(&d.key))
        .cloned()
        .collect();
    let company_column = columns.iter().any(|c| c == "company");
    let sources = service::source_names(conn)?;
    query.limit = 500;
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
                    key => row
                        .record
                        .builtin_value(key)
                        .map(str::to_string)
                        .or_else(|| row.custom.get(key).cloned())
                        .unwrap_or_default(),
                };
                line.push(spreadsheet_safe(&value));
            }
            out.write_record(&line)?;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.into_inner()
        .map_err(|e| ExportError::Io(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_are_defused() {
        for risky in ["=1+1", "+33 1 23", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(spreadsheet_safe(risky).starts_with('\''), "{risky:?}");
        }
        assert_eq!(spreadsheet_safe("Ada"), "Ada");
        assert_eq!(spreadsheet_safe(""), "");
    }
}
