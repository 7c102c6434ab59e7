//! Accounts: first-run setup, sign-in with throttling, roles, the users page.

pub mod extract;
pub mod model;
pub mod routes;
pub mod service;
pub mod sessions;
