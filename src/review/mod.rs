//! Proposals and the "check data" review: desynchronised records, decided field by field.

pub mod routes;
pub mod service;
pub mod totals;
