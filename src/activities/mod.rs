//! A contact's activities (calls, emails, meetings, notes, and types an admin adds): logged on
//! the contact page, sent through the API, listed, filtered and exported. Kept, never
//! overwritten; an activity a sender sends twice with its own id is kept once.

pub mod import;
pub mod mapping;
pub mod model;
pub mod routes;
pub mod service;
