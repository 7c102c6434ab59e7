//! The JSON API for external systems: tokens with scopes, records, pushed rows (through the
//! import engine), the outbound change feed, and the OpenAPI document; and their console
//! pages (tokens, reference).

pub mod console;
pub mod error;
pub mod extract;
pub mod model;
pub mod push;
pub mod records;
pub mod routes;
pub mod service;
