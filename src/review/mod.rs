//! Proposals: pending changes to one field of one record, waiting for a person's decision.
//! (Imports and applications store them; the "check data" screens come with the review issue.)

pub mod service;
