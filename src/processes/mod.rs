//! Processes (application templates: steps and items) and applications (instances for a
//! record, with stakeholders and answers).

pub mod model;
pub mod routes;
pub mod service;
pub mod store;
