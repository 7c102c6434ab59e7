//! Follow-up templates: text (or HTML) using a record's fields and custom fields as
//! variables, checked when saved, previewed for a chosen record and rendered for every record
//! of a list into a CSV for a mailing tool. Rendered in a sandbox (`sandbox`).

pub mod routes;
pub mod sandbox;
pub mod service;
