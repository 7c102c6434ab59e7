//! Data links: an application item connected to a record field, so that applications pre-fill
//! from records and update them by rule.

pub mod model;
pub mod routes;
pub mod service;
