//! Contacts and companies: values, ownership and links, documents, history, lists and exports.

pub mod counts;
pub mod definitions;
pub mod demo;
pub mod documents;
pub mod export;
pub mod list;
pub mod model;
pub mod outbox;
pub mod routes;
pub mod search;
pub mod service;
pub mod table;
pub mod view;
pub mod writer;
