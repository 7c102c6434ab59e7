//! Imports: the decision logic (pure), file reading, the engine that applies a file through a
//! source's mapping, run reports, dry runs, apply-plan and undo, and the background jobs.

pub mod csvfile;
pub mod decide;
pub mod engine;
pub mod jobs;
pub mod model;
pub mod plan;
pub mod report;
pub mod routes;
pub mod undo;
