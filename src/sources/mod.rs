//! External systems: name, record kind, id column, mode, status, and the field mapping.

pub mod connector;
pub mod model;
pub mod propose;
pub mod routes;
pub mod service;
