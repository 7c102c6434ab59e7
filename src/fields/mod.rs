//! Field definitions per record kind (built-in and custom) and validation of values by type.

pub mod model;
pub mod routes;
pub mod service;
pub mod validate;
